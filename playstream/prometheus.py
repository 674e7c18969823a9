"""The Prometheus edge: `playstream.metrics.Metrics` as prometheus_client metrics, served
with ``/healthz`` and ``/readyz`` on one HTTP port (docs/METRICS.md lists every name).

The only module that imports prometheus_client (the optional ``metrics`` extra). Each
process gets its own registry, not the library's global one, so nothing but playstream's
metrics (and the process collector's) is exported, and tests can build several.
The server binds 127.0.0.1 unless told otherwise: a metrics port is for the local agent
(Prometheus, a node exporter's sidecar), not for the world.
"""
from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, ProcessCollector, generate_latest)

from playstream.errors import PlaystreamError

DEFAULT_HOST = "127.0.0.1"
# Seconds; from a sub-second seal on a paced stream to minutes behind a backlog.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

Readiness = Callable[[], tuple[bool, str]]
log = logging.getLogger("playstream.metrics")


class PrometheusMetrics:
    """A `Metrics` that feeds prometheus_client counters, histograms and gauges.
    ``refresh`` callbacks run before every scrape, to set gauges that are cheaper to read
    on demand (a spool's depth) than to keep current."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self._records = Counter("playstream_records", "Records consumed (first delivery to "
                                "this owner, valid or not).", ["topic", "partition"],
                                registry=r)
        self._invalid = Counter("playstream_invalid_records", "Records that failed "
                                "validation or encoding.", ["topic", "field"], registry=r)
        self._dead = Counter("playstream_dead_letters", "Dead letters acknowledged by the "
                             "broker.", ["topic"], registry=r)
        self._rows = Counter("playstream_rows_sealed", "Rows in sealed chunks.",
                             ["config"], registry=r)
        self._chunks = Counter("playstream_chunks_sealed", "Chunks sealed.", ["config"],
                               registry=r)
        self._datasets = Counter("playstream_dataset_versions_published",
                                 "Dataset versions published.", ["config"], registry=r)
        self._latency = Histogram("playstream_publish_to_sealed_seconds", "From a record's "
                                  "Kafka timestamp to the seal of its chunk.",
                                  buckets=LATENCY_BUCKETS, registry=r)
        self._seal = Histogram("playstream_seal_duration_seconds", "Duration of one seal "
                               "(every chunk of a group).", buckets=DURATION_BUCKETS,
                               registry=r)
        self._compaction = Histogram("playstream_compaction_duration_seconds", "Duration of "
                                     "one compaction into a dataset version.", ["config"],
                                     buckets=DURATION_BUCKETS, registry=r)
        self._lag = Gauge("playstream_partition_lag", "Records of an assigned partition not "
                          "yet in a sealed chunk.", ["topic", "partition"], registry=r)
        self._open = Gauge("playstream_open_chunk_rows", "Rows held in open chunks.",
                           registry=r)
        self._spool_depth = Gauge("playstream_spool_depth", "Games in the spool awaiting the "
                                  "broker's acknowledgement.", registry=r)
        self._spool_age = Gauge("playstream_spool_oldest_age_seconds", "Age of the oldest "
                                "game in the spool (0 when it is empty).", registry=r)
        self.refresh: list[Callable[[], None]] = []

    def record_consumed(self, topic: str, partition: int) -> None:
        self._records.labels(topic, str(partition)).inc()

    def record_invalid(self, topic: str, field: str) -> None:
        self._invalid.labels(topic, field).inc()

    def dead_lettered(self, topic: str) -> None:
        self._dead.labels(topic).inc()

    def chunk_sealed(self, config_key: str, rows: int) -> None:
        self._chunks.labels(config_key).inc()
        self._rows.labels(config_key).inc(rows)

    def seal_seconds(self, seconds: float) -> None:
        self._seal.observe(seconds)

    def publish_to_sealed_seconds(self, seconds: float) -> None:
        self._latency.observe(seconds)

    def compaction_seconds(self, config_key: str, seconds: float) -> None:
        self._compaction.labels(config_key).observe(seconds)

    def dataset_published(self, config_key: str) -> None:
        self._datasets.labels(config_key).inc()

    def partition_lag(self, topic: str, partition: int, lag: int) -> None:
        self._lag.labels(topic, str(partition)).set(lag)

    def open_rows(self, rows: int) -> None:
        self._open.set(rows)

    def spool(self, depth: int, oldest_age_s: float | None) -> None:
        self._spool_depth.set(depth)
        self._spool_age.set(oldest_age_s or 0.0)

    def exposition(self) -> bytes:
        """The text format of every metric, after the refresh callbacks ran."""
        for refresh in self.refresh:
            refresh()
        return generate_latest(self.registry)


def _not_started() -> tuple[bool, str]:
    return False, "starting"


class MetricsServer:
    """``/metrics``, ``/healthz`` (200 while the process serves) and ``/readyz`` (200 when
    ``ready()`` says so, else 503 with its reason) on ``host:port`` in a daemon thread.
    ``ready`` may be set after the start (the command builds what it checks later); until
    then the process is not ready."""

    def __init__(self, metrics: PrometheusMetrics, *, port: int,
                 host: str = DEFAULT_HOST) -> None:
        self.ready: Readiness = _not_started
        handler = _handler(metrics, self)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as err:
            raise PlaystreamError(f"cannot serve metrics: {err.strerror or err}", host=host,
                                  port=port) from None
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"playstream-metrics[{self.port}]")
        self._thread.start()
        log.info("serving metrics", extra={"host": self.host, "port": self.port})

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler(metrics: PrometheusMetrics,
             server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._reply(200, b"ok\n")
            elif path == "/readyz":
                ok, reason = server.ready()
                self._reply(200 if ok else 503, f"{reason}\n".encode())
            else:
                self._reply(404, b"not found: /metrics, /healthz, /readyz\n")

        def _reply(self, code: int, body: bytes,
                   content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would flood stderr; errors still raise

    return Handler
