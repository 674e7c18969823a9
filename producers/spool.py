"""A write-ahead spool: finished games wait here, on local disk, until the broker has them.

A self-play worker appends every game here before it is sent, so a broker that is down or
slow never costs a game and never stalls the worker's loop for longer than one fsync. The
spool is a directory of append-only segment files named after the sequence number of their
first frame, plus an ``acked`` file holding the first sequence number not yet acknowledged.

Frame: ``<u32 payload length><u32 crc32(length bytes + payload)><payload>``. A crash can only
tear the frame being written, which is always the last frame of the last segment: recovery
truncates that frame with a warning naming file and offset and keeps everything before it.
Any other bad frame is corruption, which is reported, never repaired.
"""
from __future__ import annotations

import logging
import os
import re
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Iterator

from playstream.durable import fsync_dir
from playstream.errors import PlaystreamError
from playstream.locks import ProcessLock, holder_of
from playstream.records import MAX_RECORD_BYTES

HEADER = struct.Struct("<II")
ACK_FILE = "acked"
LOCK_FILE = "lock"
SEGMENT_RE = re.compile(r"^(\d{20})\.seg$")
DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024

log = logging.getLogger("playstream.producers")


class SpoolFullError(PlaystreamError):
    """The spool holds ``max_bytes`` of unacknowledged games: refuse the next one rather than
    drop it, so the worker stops playing instead of losing work."""


class SpoolCorruptError(PlaystreamError):
    """A spool file fails a check that a crash cannot explain (names the file and offset)."""


def _crc(length_bytes: bytes, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(length_bytes))


def _frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload), _crc(struct.pack("<I", len(payload)), payload)) + payload


@dataclass
class _Segment:
    first_seq: int
    path: Path
    count: int
    size: int


class Spool:
    """Append-only, fsync'd, crash-safe queue of opaque payloads numbered 0, 1, 2, ...

    Thread-safe: one thread may append while another reads ``pending()`` and acks. One
    process per directory (an exclusive lock file enforces it).
    """

    def __init__(self, directory: str | Path, *, max_bytes: int,
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 max_payload: int = MAX_RECORD_BYTES) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.max_payload = max_payload
        self._mutex = threading.Lock()  # in-memory state; never held across an fsync of data
        self._append_lock = threading.Lock()
        self._ack_lock = threading.Lock()
        self.directory.mkdir(parents=True, exist_ok=True)
        lock = ProcessLock.acquire(self.directory / LOCK_FILE)
        if lock is None:
            raise PlaystreamError("spool is in use by another process", path=str(self.directory),
                                  holder_pid=holder_of(self.directory / LOCK_FILE))
        self._lock = lock
        try:
            self._position = self._read_position()
            self._segments = self._recover()
            self._check_sequence()
        except BaseException:
            self._lock.release()
            raise
        self._acked_ahead: set[int] = set()
        self._active: BinaryIO | None = None
        self._hint: tuple[Path, int, int] | None = None
        self._delete_acked_segments()

    # ------------------------------------------------------------------ state
    @property
    def position(self) -> int:
        """First sequence number not yet acknowledged (everything below it is delivered)."""
        return self._position

    @property
    def next_seq(self) -> int:
        last = self._segments[-1] if self._segments else None
        return last.first_seq + last.count if last else self._position

    @property
    def pending_count(self) -> int:
        with self._mutex:
            return self.next_seq - self._position - len(self._acked_ahead)

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    # ------------------------------------------------------------------ writing
    def append(self, payload: bytes) -> int:
        """Store one payload durably (fsync'd) and return its sequence number."""
        if not 0 < len(payload) <= self.max_payload:
            raise PlaystreamError(f"spool payload must be 1..{self.max_payload} bytes, got "
                                  f"{len(payload)}", path=str(self.directory))
        frame = _frame(payload)
        with self._append_lock:
            with self._mutex:
                if self.size_bytes + len(frame) > self.max_bytes:
                    self._reclaim_active()
                if self.size_bytes + len(frame) > self.max_bytes:
                    raise SpoolFullError(
                        f"spool is full: {self.size_bytes} bytes held, {len(frame)} more would "
                        f"exceed max_bytes={self.max_bytes}; {self.next_seq - self._position} "
                        "games await the broker", path=str(self.directory))
                segment, fh = self._writable_segment()
            # Written and fsync'd outside the mutex, so readers and acks are not held up:
            # they never look past the frames counted in ``segment.count``.
            try:
                view = memoryview(frame)
                while view:
                    view = view[os.write(fh.fileno(), view):]
                os.fsync(fh.fileno())
            except OSError as err:
                self._rollback(segment)
                raise PlaystreamError(f"spool write failed: {err.strerror}",
                                      file=str(segment.path), offset=segment.size) from None
            with self._mutex:
                segment.count += 1
                segment.size += len(frame)
                return segment.first_seq + segment.count - 1

    def _writable_segment(self) -> tuple[_Segment, BinaryIO]:
        last = self._segments[-1] if self._segments else None
        if last is None or last.size >= self.segment_bytes:
            self._start_segment()
            last = self._segments[-1]
        if self._active is None:
            self._active = open(last.path, "ab", buffering=0)
        return last, self._active

    def _rollback(self, segment: _Segment) -> None:
        """Cut our own partial frame off after a failed write (a full disk, say), so the
        next append does not land behind garbage."""
        if self._active is not None:
            self._active.close()
            self._active = None
        with open(segment.path, "r+b") as fh:
            fh.truncate(segment.size)
            os.fsync(fh.fileno())

    def _start_segment(self) -> None:
        if self._active is not None:
            self._active.close()
            self._active = None
        first = self.next_seq
        path = self.directory / f"{first:020d}.seg"
        path.touch(exist_ok=False)
        fsync_dir(self.directory)
        self._segments.append(_Segment(first, path, 0, 0))

    def _reclaim_active(self) -> None:
        """A fully acknowledged active segment still counts against ``max_bytes``: start a
        fresh one so the old one can be deleted."""
        last = self._segments[-1] if self._segments else None
        if last is not None and last.count and last.first_seq + last.count <= self._position:
            self._start_segment()
            self._delete_acked_segments()

    # ------------------------------------------------------------------ reading and acking
    def pending(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """Unacknowledged payloads with ``seq >= start``, in order, as they stood when the
        iteration began (payloads appended later are left for the next call)."""
        with self._mutex:
            segments = [(s.first_seq, s.path, s.count) for s in self._segments]
        for first, path, count in segments:
            with self._mutex:
                low = max(start, self._position)
                if first + count <= low:
                    continue
                fh = open(path, "rb")  # under the lock: ack() cannot delete it before this
                seq, offset = self._resume_point(path, first, low)
            with fh:
                fh.seek(offset)
                for seq in range(seq, first + count):
                    if seq < low:
                        self._skip_frame(fh, path)
                        continue
                    payload = self._read_frame(fh, path)
                    self._hint = (path, seq + 1, fh.tell())
                    with self._mutex:
                        acked = seq in self._acked_ahead
                    if not acked:
                        yield seq, payload

    def _resume_point(self, path: Path, first: int, low: int) -> tuple[int, int]:
        """Where to start reading a segment: where the last read stopped if that is not past
        ``low``, so a reader that follows the writer does not rescan the segment each time."""
        if self._hint is not None:
            hint_path, seq, offset = self._hint
            if hint_path == path and first <= seq <= low:
                return seq, offset
        return first, 0

    def ack(self, *seqs: int) -> None:
        """Mark payloads as delivered, in any order. The durable position only advances over
        a contiguous run, so a crash can repeat a delivery but never skip one."""
        with self._ack_lock:
            with self._mutex:
                for seq in seqs:
                    if not self._position <= seq < self.next_seq:
                        raise PlaystreamError(f"ack of seq {seq} outside the unacknowledged "
                                              f"range {self._position}..{self.next_seq - 1}",
                                              path=str(self.directory))
                self._acked_ahead.update(seqs)
                old = position = self._position
                while position in self._acked_ahead:
                    position += 1
            if position == old:
                return
            self._write_position(position)  # outside the mutex: its fsyncs stall nobody
            with self._mutex:
                self._acked_ahead.difference_update(range(old, position))
                self._position = position
                self._delete_acked_segments()

    def _delete_acked_segments(self) -> None:
        """Delete every segment but the active one whose frames are all acknowledged."""
        doomed = [s for s in self._segments[:-1] if s.first_seq + s.count <= self._position]
        for segment in doomed:
            segment.path.unlink()
            self._segments.remove(segment)
        if doomed:
            fsync_dir(self.directory)

    # ------------------------------------------------------------------ ack file
    def _read_position(self) -> int:
        path = self.directory / ACK_FILE
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            return 0
        except UnicodeDecodeError:
            text = ""
        if not re.fullmatch(r"\d{1,19}\n", text):
            raise SpoolCorruptError("ack position file is not one decimal number", file=str(path))
        return int(text)

    def _write_position(self, position: int) -> None:
        """Write temp, fsync, rename, fsync the directory: the file is always old or new."""
        tmp = self.directory / (ACK_FILE + ".tmp")
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(f"{position}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.directory / ACK_FILE)
        fsync_dir(self.directory)

    # ------------------------------------------------------------------ recovery
    def _recover(self) -> list[_Segment]:
        found = sorted((int(m.group(1)), p) for p in self.directory.iterdir()
                       if (m := SEGMENT_RE.match(p.name)))
        segments = []
        for index, (first, path) in enumerate(found):
            count, size = self._scan(path, last=index == len(found) - 1)
            segments.append(_Segment(first, path, count, size))
        return segments

    def _scan(self, path: Path, *, last: bool) -> tuple[int, int]:
        """Count the valid frames of a segment; truncate a torn tail of the last segment."""
        data = path.read_bytes()
        offset = count = 0
        while offset < len(data):
            problem = self._frame_problem(data, offset)
            if problem is None:
                offset += HEADER.size + HEADER.unpack_from(data, offset)[0]
                count += 1
                continue
            torn, reason = problem
            if not (last and torn):
                raise SpoolCorruptError(f"bad frame: {reason}", file=str(path), offset=offset)
            log.warning("spool: truncating a torn frame left by a crash",
                        extra={"file": str(path), "offset": offset, "reason": reason,
                               "dropped_bytes": len(data) - offset})
            with open(path, "r+b") as fh:
                fh.truncate(offset)
                os.fsync(fh.fileno())
            break
        return count, offset

    def _frame_problem(self, data: bytes, offset: int) -> tuple[bool, str] | None:
        """None for a valid frame, else (could this be a torn write?, why not valid)."""
        if len(data) - offset < HEADER.size:
            return True, "incomplete frame header"
        length, crc = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        if not 0 < length <= self.max_payload:
            return True, f"frame length {length} outside 1..{self.max_payload}"
        if end > len(data):
            return True, f"frame of {length} bytes runs past the end of the file"
        if _crc(data[offset:offset + 4], data[offset + HEADER.size:end]) != crc:
            # a torn write leaves nothing valid after it: a bad checksum followed by more
            # frames is damage to data that was once fsync'd
            return end == len(data), "checksum mismatch"
        return None

    def _check_sequence(self) -> None:
        expected = self._segments[0].first_seq if self._segments else self._position
        for segment in self._segments:
            if segment.first_seq != expected:
                raise SpoolCorruptError(f"segment starts at seq {segment.first_seq}, expected "
                                        f"{expected}: a segment is missing",
                                        file=str(segment.path))
            expected += segment.count
        first = self._segments[0].first_seq if self._segments else self._position
        if not first <= self._position <= expected:
            raise SpoolCorruptError(f"ack position {self._position} lies outside the spooled "
                                    f"range {first}..{expected}",
                                    file=str(self.directory / ACK_FILE))

    @staticmethod
    def _read_header(fh: BinaryIO, path: Path) -> tuple[int, bytes]:
        offset = fh.tell()
        header = fh.read(HEADER.size)
        if len(header) != HEADER.size:
            raise SpoolCorruptError("segment shorter than its frames", file=str(path),
                                    offset=offset)
        return offset, header

    def _read_frame(self, fh: BinaryIO, path: Path) -> bytes:
        offset, header = self._read_header(fh, path)
        length, crc = HEADER.unpack(header)
        payload = fh.read(length) if 0 < length <= self.max_payload else b""
        if not payload or len(payload) != length or _crc(header[:4], payload) != crc:
            raise SpoolCorruptError("frame changed on disk since it was written",
                                    file=str(path), offset=offset)
        return payload

    def _skip_frame(self, fh: BinaryIO, path: Path) -> None:
        _, header = self._read_header(fh, path)
        fh.seek(HEADER.unpack(header)[0], os.SEEK_CUR)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        with self._mutex:
            if self._active is not None:
                self._active.close()
                self._active = None
            self._lock.release()

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
