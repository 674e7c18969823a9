"""What the pipeline reports to a metrics system, as a small interface with a no-op default.

The processor core, the finalizer and the publisher call a `Metrics` object at the moments
that matter (a record consumed, a chunk sealed, a dataset published); they never import a
metrics library. The Prometheus implementation lives in the `playstream.prometheus` edge and
is created only when a command is given ``--metrics-port`` (docs/METRICS.md lists the names
and labels). `NULL_METRICS` is what everything uses otherwise, so a call costs one method
lookup and nothing else.
"""
from __future__ import annotations

from typing import Protocol


class Metrics(Protocol):
    """The measurements. Counters take a label set; gauges are set to the current value."""

    def record_consumed(self, topic: str, partition: int) -> None:
        """A record was read for the first time by this owner (valid or not)."""

    def record_invalid(self, topic: str, field: str) -> None:
        """A record failed validation or encoding; ``field`` is the offending field."""

    def dead_lettered(self, topic: str) -> None:
        """A dead letter was acknowledged by the broker on ``topic``."""

    def chunk_sealed(self, config_key: str, rows: int) -> None:
        """A chunk of ``rows`` rows of ``config_key`` was sealed."""

    def seal_seconds(self, seconds: float) -> None:
        """How long one seal (every chunk of a group) took."""

    def publish_to_sealed_seconds(self, seconds: float) -> None:
        """From a record's Kafka timestamp to the seal of the chunk holding it."""

    def compaction_seconds(self, config_key: str, seconds: float) -> None:
        """How long one compaction of ``config_key`` into a dataset version took."""

    def dataset_published(self, config_key: str) -> None:
        """A new dataset version of ``config_key`` was published."""

    def partition_lag(self, topic: str, partition: int, lag: int) -> None:
        """Records of the partition not yet in a sealed chunk (end offset - sealed-through)."""

    def open_rows(self, rows: int) -> None:
        """Rows held in open (unsealed) chunks by this process."""

    def spool(self, depth: int, oldest_age_s: float | None) -> None:
        """Games waiting in the spool and the age of the oldest (None when it is empty)."""


class NullMetrics:
    """Measures nothing: the default when no metrics endpoint is configured."""

    def record_consumed(self, topic: str, partition: int) -> None:
        pass

    def record_invalid(self, topic: str, field: str) -> None:
        pass

    def dead_lettered(self, topic: str) -> None:
        pass

    def chunk_sealed(self, config_key: str, rows: int) -> None:
        pass

    def seal_seconds(self, seconds: float) -> None:
        pass

    def publish_to_sealed_seconds(self, seconds: float) -> None:
        pass

    def compaction_seconds(self, config_key: str, seconds: float) -> None:
        pass

    def dataset_published(self, config_key: str) -> None:
        pass

    def partition_lag(self, topic: str, partition: int, lag: int) -> None:
        pass

    def open_rows(self, rows: int) -> None:
        pass

    def spool(self, depth: int, oldest_age_s: float | None) -> None:
        pass


NULL_METRICS: Metrics = NullMetrics()
