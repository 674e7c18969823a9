"""The write-ahead spool without a broker: durability, recovery after a crash, rotation,
and refusing (never dropping) games when full."""
from __future__ import annotations

import logging
import struct
import threading
import zlib
from pathlib import Path

import pytest

from playstream.errors import PlaystreamError
from playstream.producers.spool import (HEADER, Spool, SpoolCorruptError, SpoolFullError)

MiB = 1024 * 1024


def payloads(n: int, size: int = 40) -> list[bytes]:
    return [bytes([i % 251]) * size + f"game-{i}".encode() for i in range(n)]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def test_append_pending_ack_and_restart(tmp_path: Path) -> None:
    data = payloads(5)
    with Spool(tmp_path, max_bytes=MiB) as spool:
        assert [spool.append(p) for p in data] == [0, 1, 2, 3, 4]
        assert list(spool.pending()) == list(enumerate(data))
        spool.ack(1, 3)  # out of order: the position waits for 0
        assert spool.position == 0
        assert [seq for seq, _ in spool.pending()] == [0, 2, 4]
        assert spool.pending_count == 3
        spool.ack(0)
        assert spool.position == 2
        assert (tmp_path / "acked").read_text() == "2\n"
        assert list(spool.pending(start=4)) == [(4, data[4])]
    with Spool(tmp_path, max_bytes=MiB) as spool:
        # the ack of 3 beyond the contiguous run was not durable: it is delivered again
        assert spool.position == 2
        assert list(spool.pending()) == [(2, data[2]), (3, data[3]), (4, data[4])]
        assert spool.append(b"next") == 5
        spool.ack(2, 3, 4, 5)
        assert list(spool.pending()) == []
        assert spool.pending_count == 0


def test_ack_outside_the_unacknowledged_range_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=MiB) as spool:
        spool.append(b"a")
        spool.ack(0)
        with pytest.raises(PlaystreamError, match="ack of seq 0 outside"):
            spool.ack(0)
        with pytest.raises(PlaystreamError, match="ack of seq 1 outside"):
            spool.ack(1)


def test_payload_bounds(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=MiB, max_payload=100) as spool:
        with pytest.raises(PlaystreamError, match="1..100 bytes, got 0"):
            spool.append(b"")
        with pytest.raises(PlaystreamError, match="1..100 bytes, got 101"):
            spool.append(b"x" * 101)
        assert spool.next_seq == 0


@pytest.mark.parametrize("tail", ["header", "payload"])
def test_torn_last_frame_is_truncated_with_a_warning(tmp_path: Path, tail: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    data = payloads(3)
    with Spool(tmp_path, max_bytes=MiB) as spool:
        for p in data:
            spool.append(p)
    segment = segments(tmp_path)[-1]
    intact = segment.stat().st_size
    frame = struct.pack("<II", 50, 0) + b"y" * 20  # a frame cut off by a crash
    with open(segment, "ab") as fh:
        fh.write(frame[:3] if tail == "header" else frame)
    with caplog.at_level(logging.WARNING, logger="playstream.producers"):
        spool = Spool(tmp_path, max_bytes=MiB)
    with spool:
        warning = [r for r in caplog.records if "torn frame" in r.getMessage()]
        assert len(warning) == 1
        assert warning[0].file == str(segment)  # type: ignore[attr-defined]
        assert warning[0].offset == intact  # type: ignore[attr-defined]
        assert segment.stat().st_size == intact
        assert list(spool.pending()) == list(enumerate(data))
        assert spool.append(b"after") == 3
        assert list(spool.pending(start=3)) == [(3, b"after")]


def _frame_offsets(segment: Path) -> list[int]:
    raw = segment.read_bytes()
    offsets, offset = [], 0
    while offset < len(raw):
        offsets.append(offset)
        offset += HEADER.size + HEADER.unpack_from(raw, offset)[0]
    return offsets


def _flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_checksum_flip_inside_the_spool_is_reported_not_repaired(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=MiB) as spool:
        for p in payloads(3):
            spool.append(p)
    segment = segments(tmp_path)[0]
    second = _frame_offsets(segment)[1]
    _flip_byte(segment, second + HEADER.size + 5)
    before = segment.read_bytes()
    with pytest.raises(SpoolCorruptError) as info:
        Spool(tmp_path, max_bytes=MiB)
    assert info.value.context == {"file": str(segment), "offset": second}
    assert "checksum mismatch" in info.value.message
    assert segment.read_bytes() == before  # nothing repaired behind the user's back


def test_checksum_flip_in_the_last_frame_counts_as_torn(tmp_path: Path) -> None:
    """A damaged final frame cannot be told from a torn write: it is cut off, with the
    warning, and everything before it is kept."""
    data = payloads(3)
    with Spool(tmp_path, max_bytes=MiB) as spool:
        for p in data:
            spool.append(p)
    segment = segments(tmp_path)[0]
    last = _frame_offsets(segment)[2]
    _flip_byte(segment, last + HEADER.size)
    with Spool(tmp_path, max_bytes=MiB) as spool:
        assert list(spool.pending()) == list(enumerate(data[:2]))
        assert segment.stat().st_size == last


def test_damage_in_an_earlier_segment_is_corruption(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=MiB, segment_bytes=100) as spool:
        for p in payloads(6):
            spool.append(p)
    first = segments(tmp_path)[0]
    with open(first, "ab") as fh:
        fh.write(b"\x01\x02")
    with pytest.raises(SpoolCorruptError, match="incomplete frame header") as info:
        Spool(tmp_path, max_bytes=MiB, segment_bytes=100)
    assert info.value.context["file"] == str(first)


def test_a_missing_segment_is_corruption(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=MiB, segment_bytes=100) as spool:
        for p in payloads(6):
            spool.append(p)
    files = segments(tmp_path)
    assert len(files) == 3
    files[1].unlink()
    with pytest.raises(SpoolCorruptError, match="a segment is missing"):
        Spool(tmp_path, max_bytes=MiB, segment_bytes=100)


def test_rotation_and_deletion_of_acknowledged_segments(tmp_path: Path) -> None:
    data = payloads(9)  # 8 + 46 bytes per frame: two frames fill a 100-byte segment
    with Spool(tmp_path, max_bytes=MiB, segment_bytes=100) as spool:
        for p in data:
            spool.append(p)
        assert [f.name for f in segments(tmp_path)] == [
            f"{n:020d}.seg" for n in (0, 2, 4, 6, 8)]
        spool.ack(0, 1, 2)  # segment 0 fully acknowledged, segment 2 half
        assert [f.name for f in segments(tmp_path)] == [
            f"{n:020d}.seg" for n in (2, 4, 6, 8)]
        assert [seq for seq, _ in spool.pending()] == [3, 4, 5, 6, 7, 8]
    with Spool(tmp_path, max_bytes=MiB, segment_bytes=100) as spool:
        assert list(spool.pending()) == [(s, data[s]) for s in range(3, 9)]
        spool.ack(*range(3, 9))
        # the active (last) segment stays for appending; all others are gone
        assert [f.name for f in segments(tmp_path)] == [f"{8:020d}.seg"]
        assert spool.append(b"more") == 9


def test_full_spool_refuses_instead_of_dropping(tmp_path: Path) -> None:
    frame = HEADER.size + 100
    with Spool(tmp_path, max_bytes=3 * frame) as spool:
        for _ in range(3):
            spool.append(b"g" * 100)
        size = spool.size_bytes
        with pytest.raises(SpoolFullError) as info:
            spool.append(b"h" * 100)
        assert info.value.context == {"path": str(tmp_path)}
        assert "3 games await the broker" in info.value.message
        assert spool.size_bytes == size == 3 * frame
        assert [seq for seq, _ in spool.pending()] == [0, 1, 2]
        spool.ack(0, 1, 2)  # delivered: the space is reclaimed, even in the active segment
        assert spool.append(b"h" * 100) == 3
        assert list(spool.pending()) == [(3, b"h" * 100)]


def test_one_process_per_spool(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=MiB):
        with pytest.raises(PlaystreamError, match="in use by another process"):
            Spool(tmp_path, max_bytes=MiB)
    with Spool(tmp_path, max_bytes=MiB) as spool:  # released on close
        assert spool.next_seq == 0


def test_corrupt_ack_file_is_reported(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=MiB) as spool:
        spool.append(b"a")
        spool.ack(0)
    (tmp_path / "acked").write_text("1x\n")
    with pytest.raises(SpoolCorruptError, match="not one decimal number"):
        Spool(tmp_path, max_bytes=MiB)
    (tmp_path / "acked").write_text("7\n")
    with pytest.raises(SpoolCorruptError, match="ack position 7 lies outside"):
        Spool(tmp_path, max_bytes=MiB)


def test_concurrent_append_read_and_ack_deliver_each_payload_once_in_order(
        tmp_path: Path) -> None:
    data = payloads(600, size=10)
    seen: list[tuple[int, bytes]] = []
    done = threading.Event()
    with Spool(tmp_path, max_bytes=MiB, segment_bytes=2000) as spool:
        def reader() -> None:
            cursor = 0
            while len(seen) < len(data):
                for seq, payload in spool.pending(start=cursor):
                    seen.append((seq, payload))
                    cursor = seq + 1
                    spool.ack(seq)
            done.set()

        thread = threading.Thread(target=reader)
        thread.start()
        for p in data:
            spool.append(p)
        assert done.wait(30)
        thread.join()
        assert seen == list(enumerate(data))
        assert spool.position == len(data)
        assert len(segments(tmp_path)) == 1


def test_frame_layout_is_length_crc_payload(tmp_path: Path) -> None:
    """The on-disk format other tools may read: little-endian length, crc32 over the length
    bytes and the payload, then the payload."""
    with Spool(tmp_path, max_bytes=MiB) as spool:
        spool.append(b"hello")
    raw = segments(tmp_path)[0].read_bytes()
    length = struct.pack("<I", 5)
    assert raw == length + struct.pack("<I", zlib.crc32(length + b"hello")) + b"hello"
