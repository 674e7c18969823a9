"""`--metrics-port` for the long-running commands: the Prometheus edge, started only when
asked for, and the no-op `playstream.metrics.NULL_METRICS` otherwise."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from playstream.cli.common import needs_extra
from playstream.cli.options import MetricsEndpoint
from playstream.metrics import NULL_METRICS, Metrics

Readiness = Callable[[], tuple[bool, str]]


@dataclass
class MetricsHandle:
    """What a command feeds: ``metrics`` to hand to the pipeline, and setters for what the
    endpoint reads on demand (readiness, gauges refreshed at each scrape); both do nothing
    when metrics are off."""

    metrics: Metrics = NULL_METRICS
    _set_ready: Callable[[Readiness], None] = lambda ready: None
    _refresh: list[Callable[[], None]] = field(default_factory=list)

    def ready_when(self, ready: Readiness) -> None:
        self._set_ready(ready)

    def on_scrape(self, refresh: Callable[[], None]) -> None:
        self._refresh.append(refresh)


@contextmanager
def serving_metrics(endpoint: MetricsEndpoint, command: str) -> Iterator[MetricsHandle]:
    """Serve the metrics of ``command`` for the duration of the block (if a port is set)."""
    if endpoint.port == 0:
        yield MetricsHandle()
        return
    with needs_extra(f"{command} --metrics-port", "metrics", ("prometheus_client",)):
        from playstream.prometheus import MetricsServer, PrometheusMetrics
    metrics = PrometheusMetrics()
    with MetricsServer(metrics, port=endpoint.port, host=endpoint.host) as server:
        def set_ready(ready: Readiness) -> None:
            server.ready = ready

        yield MetricsHandle(metrics, set_ready, metrics.refresh)
