"""Metrics without Kafka: the processor core reports through the `Metrics` interface exactly
what it seals, the Prometheus edge serves it with health and readiness on 127.0.0.1, and the
store inventory behind `playstream status` counts what the store holds."""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from playstream.chunks import ChunkStore, SealedChunk, topic_stream_id
from playstream.cli.main import main
from playstream.compaction import CompactOptions, compact
from playstream.compaction.inventory import newest_datasets, store_inventory
from playstream.dataset import read_metadata
from playstream.errors import PlaystreamError
from playstream.metrics import NULL_METRICS, Metrics
from playstream.prometheus import MetricsServer, PrometheusMetrics
from playstream.selfplay import generate_records
from playstream.streams import DeadLetter, StreamProcessor

TOPIC = "games"


@dataclass
class Recorded:
    """A `Metrics` that remembers every call."""

    consumed: Counter[int] = field(default_factory=Counter)
    invalid: list[str] = field(default_factory=list)
    sealed: list[tuple[str, int]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    seals: list[float] = field(default_factory=list)

    def record_consumed(self, topic: str, partition: int) -> None:
        self.consumed[partition] += 1

    def record_invalid(self, topic: str, field: str) -> None:
        self.invalid.append(field)

    def dead_lettered(self, topic: str) -> None: ...

    def chunk_sealed(self, config_key: str, rows: int) -> None:
        self.sealed.append((config_key, rows))

    def seal_seconds(self, seconds: float) -> None:
        self.seals.append(seconds)

    def publish_to_sealed_seconds(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def compaction_seconds(self, config_key: str, seconds: float) -> None: ...

    def dataset_published(self, config_key: str) -> None: ...

    def partition_lag(self, topic: str, partition: int, lag: int) -> None: ...

    def open_rows(self, rows: int) -> None: ...

    def spool(self, depth: int, oldest_age_s: float | None) -> None: ...


def run_processor(store: ChunkStore, metrics: Metrics, *, count: int = 12,
                  max_rows: int = 150) -> tuple[StreamProcessor, list[SealedChunk]]:
    """``count`` games and one poison record on partition 0, every record stamped 1 s ago."""
    announced: list[SealedChunk] = []

    def letter(_: DeadLetter) -> None:
        pass

    processor = StreamProcessor(store, topic=TOPIC, feature_version="v1", history_length=0,
                                max_rows=max_rows, max_age_s=None, dead_letter=letter,
                                announce=announced.append, metrics=metrics)
    assert processor.assign(0) == 0
    records = list(generate_records(board_type="square8", num_players=2, agent="random",
                                    seed=3, count=count, node="t"))
    payloads = [r.to_msgpack() for r in records[:5]] + [b"\xc1 not msgpack"] + [
        r.to_msgpack() for r in records[5:]]
    stamp = time.time() - 1.0
    for offset, payload in enumerate(payloads):
        processor.process(0, offset, payload, timestamp_s=stamp)
    return processor, announced


def test_the_processor_reports_what_it_seals(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "store")
    metrics = Recorded()
    processor, announced = run_processor(store, metrics)
    sealed_before_finalize = processor.sealed_through()[0]
    assert 0 < sealed_before_finalize < 13  # some seals on size, an open tail
    assert metrics.consumed == {0: 13}
    assert metrics.invalid == ["record"]
    assert metrics.sealed == [(c.config_key, c.rows) for c in announced]
    assert len(metrics.latencies) == sealed_before_finalize  # one per record sealed
    assert all(1.0 <= s < 60 for s in metrics.latencies)
    assert processor.open_rows > 0
    processor.finalize()
    assert processor.sealed_through() == {0: 13} and processor.open_rows == 0
    assert len(metrics.latencies) == 13
    assert len(metrics.seals) == len({c.name for c in announced})
    # the store agrees with what was reported
    inventory = store_inventory(store)
    [config] = inventory.configurations
    assert (config.chunks, config.rows, config.games) == (
        len(announced), sum(c.rows for c in announced), 12)
    assert inventory.sealed_through == {topic_stream_id(TOPIC, 0): 13}
    processor.close()


def test_newest_datasets_reads_the_current_version_and_its_age(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "store")
    processor, _ = run_processor(store, NULL_METRICS)
    processor.finalize()
    processor.close()
    [key] = store.config_keys()
    assert newest_datasets(tmp_path / "out", [key]) == {key: None}
    compact(store, key, tmp_path / "out" / key, CompactOptions())
    version = newest_datasets(tmp_path / "out", [key])[key]
    assert version is not None
    rows = sum(int(read_metadata(p)["rows"]) for _, p in store.sealed(key))
    assert (version.rows, version.games) == (rows, 12)
    assert version.version == (tmp_path / "out" / key / "current").resolve().name
    assert 0 <= version.age_s() < 60


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_the_endpoint_serves_metrics_health_and_readiness_on_loopback() -> None:
    metrics = PrometheusMetrics()
    metrics.record_consumed("games", 2)
    metrics.record_consumed("games", 2)
    metrics.chunk_sealed("cfg", 40)
    metrics.spool(3, 1.5)
    scrapes: list[int] = []
    metrics.refresh.append(lambda: scrapes.append(1))
    with MetricsServer(metrics, port=0) as server:
        assert server.host == "127.0.0.1"
        base = f"http://127.0.0.1:{server.port}"
        code, kind, text = get(f"{base}/metrics")
        assert code == 200 and kind.startswith("text/plain") and scrapes == [1]
        assert 'playstream_records_total{partition="2",topic="games"} 2.0' in text
        assert 'playstream_rows_sealed_total{config="cfg"} 40.0' in text
        assert 'playstream_chunks_sealed_total{config="cfg"} 1.0' in text
        assert "playstream_spool_depth 3.0" in text
        assert "playstream_spool_oldest_age_seconds 1.5" in text
        assert get(f"{base}/healthz")[::2] == (200, "ok\n")
        assert get(f"{base}/readyz")[::2] == (503, "starting\n")
        server.ready = lambda: (True, "caught up")
        assert get(f"{base}/readyz")[::2] == (200, "caught up\n")
        assert get(f"{base}/other")[0] == 404


def test_status_and_selfplay_refuse_inconsistent_options(tmp_path: Path) -> None:
    runner = CliRunner()
    run = runner.invoke(main, ["status", "--bootstrap-server", "127.0.0.1:1",
                               "--max-dataset-age", "1h"])
    assert run.exit_code == 2 and "--max-dataset-age needs --output" in run.output
    run = runner.invoke(main, ["selfplay", "--board-type", "square8", "--num-players", "2",
                               "--games", "1", "--output", str(tmp_path / "g.jsonl"),
                               "--metrics-port", "9999"])
    assert run.exit_code == 2 and "--metrics-port needs --bootstrap-server" in run.output
    run = runner.invoke(main, ["stream", "--bootstrap-server", "x:1", "--metrics-port",
                               "70000"])
    assert run.exit_code == 2 and "--metrics-port" in run.output


def test_a_taken_metrics_port_is_one_clear_error() -> None:
    with MetricsServer(PrometheusMetrics(), port=0) as first:
        with pytest.raises(PlaystreamError, match="cannot serve metrics"):
            MetricsServer(PrometheusMetrics(), port=first.port)
