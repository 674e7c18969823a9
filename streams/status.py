"""The Kafka side of `playstream status`: end offsets and the oldest unsealed record of each
games partition, the dead-letter topic's size and newest reasons, the groups' members and
committed offsets. Read-only: a consumer without a group (manual assignment, so it joins no
group and moves no offset) and an admin client; it works whether or not processors run.

The chunk store says how far each partition is sealed (`store_inventory`); the lag is the
records after that, and the age of the oldest unsealed record is read from the record at the
sealed-through offset (its Kafka timestamp).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from playstream.chunks import topic_stream_id
from playstream.clients.kafka import KafkaConnection, refuse_bad_credentials
from playstream.errors import PlaystreamError
from playstream.topics import MAX_MESSAGE_BYTES

FETCH_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_MS = 10_000  # a check must fail fast when the cluster is away
REASON_HEADER = "playstream-reason"
CLIENT_ID = "playstream-status"


@dataclass
class PartitionStatus:
    topic: str
    partition: int
    end_offset: int
    start_offset: int
    sealed_through: int
    lag: int
    committed: int | None
    oldest_unsealed_age_s: float | None


@dataclass
class DeadLetterStatus:
    topic: str
    records: int
    newest: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class GroupMember:
    member_id: str
    client_id: str
    host: str
    partitions: list[str]


@dataclass
class GroupStatus:
    group: str
    state: str
    members: list[GroupMember]


def _fail(what: str, err: KafkaError, **ctx: Any) -> PlaystreamError:
    return PlaystreamError(f"{what}: {type(err).__name__}: {err}", **ctx)


class KafkaStatus:
    """One read-only look at the cluster; ``close`` releases the clients."""

    def __init__(self, kafka: KafkaConnection) -> None:
        self.bootstrap = kafka.bootstrap
        refuse_bad_credentials(kafka)
        try:
            self._consumer = KafkaConsumer(**kafka.kafka_python_kwargs(),
                                           group_id=None, client_id=CLIENT_ID,
                                           enable_auto_commit=False,
                                           auto_offset_reset="earliest",
                                           max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
                                           bootstrap_timeout_ms=CONNECT_TIMEOUT_MS)
            self._admin = KafkaAdminClient(**kafka.kafka_python_kwargs(),
                                           client_id=CLIENT_ID,
                                           bootstrap_timeout_ms=CONNECT_TIMEOUT_MS)
        except KafkaError as err:
            raise _fail("cannot reach Kafka", err, bootstrap=kafka.bootstrap) from None

    def close(self) -> None:
        self._consumer.close()
        self._admin.close()

    def __enter__(self) -> KafkaStatus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _partitions(self, topic: str) -> list[TopicPartition]:
        partitions = self._consumer.partitions_for_topic(topic)
        if not partitions:
            raise PlaystreamError("topic does not exist or has no partitions", topic=topic,
                                  bootstrap=self.bootstrap)
        return [TopicPartition(topic, p) for p in sorted(partitions)]

    def _fetch_one(self, tp: TopicPartition, offset: int) -> Any | None:
        """The first record at or after ``offset`` (None if none arrives in time)."""
        self._consumer.assign([tp])
        self._consumer.seek(tp, offset)
        deadline = time.monotonic() + FETCH_TIMEOUT_S
        while time.monotonic() < deadline:
            for records in self._consumer.poll(timeout_ms=500, max_records=1).values():
                if records:
                    return records[0]
        return None

    def games_partitions(self, topic: str, sealed_through: dict[str, int],
                         group: str) -> list[PartitionStatus]:
        """Per partition of ``topic``: offsets, lag against ``sealed_through`` (by stream
        id, from the chunk store) and the committed offset of ``group``."""
        try:
            tps = self._partitions(topic)
            ends = self._consumer.end_offsets(tps)
            starts = self._consumer.beginning_offsets(tps)
            committed = self._admin.list_group_offsets(group).get(group, {})
            out = []
            now = time.time()
            for tp in tps:
                through = sealed_through.get(topic_stream_id(topic, tp.partition), 0)
                lag = max(0, ends[tp] - max(through, starts[tp]))
                age = None
                if lag:
                    record = self._fetch_one(tp, max(through, starts[tp]))
                    if record is not None and record.timestamp is not None:
                        age = max(0.0, now - record.timestamp / 1000)
                meta = committed.get(tp)
                out.append(PartitionStatus(topic, tp.partition, ends[tp], starts[tp], through,
                                           lag, meta.offset if meta is not None else None,
                                           age))
            return out
        except KafkaError as err:
            raise _fail("cannot read the games topic", err, topic=topic) from None

    def dead_letters(self, topic: str, newest: int) -> DeadLetterStatus:
        """The records the dead-letter topic holds and the ``newest`` reasons, newest first."""
        try:
            tps = self._partitions(topic)
            ends = self._consumer.end_offsets(tps)
            starts = self._consumer.beginning_offsets(tps)
            status = DeadLetterStatus(topic, sum(ends[tp] - starts[tp] for tp in tps))
            letters = []
            for tp in tps:
                first = max(starts[tp], ends[tp] - newest)
                if first >= ends[tp]:
                    continue
                self._consumer.assign([tp])
                self._consumer.seek(tp, first)
                deadline = time.monotonic() + FETCH_TIMEOUT_S
                got: list[Any] = []
                while len(got) < ends[tp] - first and time.monotonic() < deadline:
                    for records in self._consumer.poll(timeout_ms=500).values():
                        got += [r for r in records if r.offset < ends[tp]]
                letters += got
            letters.sort(key=lambda r: (r.timestamp or 0, r.partition, r.offset), reverse=True)
            for record in letters[:newest]:
                headers = {k: v.decode("utf-8", "replace") for k, v in record.headers or []}
                status.newest.append({
                    "partition": record.partition, "offset": record.offset,
                    "timestamp_ms": record.timestamp, "reason": headers.get(REASON_HEADER),
                    "field": headers.get("playstream-field"),
                    "game_id": headers.get("playstream-game-id")})
            return status
        except KafkaError as err:
            raise _fail("cannot read the dead-letter topic", err, topic=topic) from None

    def groups(self, groups: list[str]) -> list[GroupStatus]:
        """Members (and their partitions) of each group; a group nobody ever joined is
        reported with its state (``Dead``) and no members."""
        try:
            described = self._admin.describe_groups(groups)
        except KafkaError as err:
            raise _fail("cannot describe the consumer groups", err, groups=groups) from None
        out = []
        for group in groups:
            info = described.get(group, {})
            members = []
            for m in info.get("members", []):
                assignment = m.get("member_assignment")
                owned = sorted((a["topic"], p) for a in assignment.get("assigned_partitions", [])
                               for p in a["partitions"]) if isinstance(assignment, dict) else []
                members.append(GroupMember(m["member_id"], m["client_id"],
                                           m["client_host"].lstrip("/"),
                                           [f"{topic}:{p}" for topic, p in owned]))
            out.append(GroupStatus(group, info.get("group_state", "Unknown"), members))
        return out
