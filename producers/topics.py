"""Topic creation and checks for the game bus (kafka-python admin).

The names and the message-size bound are in `playstream.topics`; here they become topic
configurations, and an existing topic whose limits are below them is refused.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Mapping

from playstream.clients.kafka import KafkaConnection, kafka_errors, refuse_bad_credentials
from playstream.errors import PlaystreamError, error_text
from playstream.topics import MAX_MESSAGE_BYTES

ADMIN_TIMEOUT_MS = 10_000

log = logging.getLogger("playstream.producers")

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient


def topic_configs(retention_ms: int) -> dict[str, str]:
    """Configs every playstream topic is created with (``retention_ms=-1`` keeps forever)."""
    return {"retention.ms": str(retention_ms), "max.message.bytes": str(MAX_MESSAGE_BYTES)}


def ensure_topics(kafka: KafkaConnection, partitions: Mapping[str, int], *,
                  retention_ms: int = -1, timeout_ms: int = ADMIN_TIMEOUT_MS) -> None:
    """Create the missing topics; accept the existing ones if they fit.

    Idempotent, and safe when several workers race to create the same topic. An existing
    topic with another partition count, or a ``max.message.bytes`` below the record limit,
    raises PlaystreamError naming the topic: keyed partitioning or large games would
    silently go wrong otherwise, and altering a live topic is an operator's decision.
    Refused credentials or an untrusted certificate raise KafkaAuthError / KafkaTLSError
    at once, naming the listener and the mechanism; so does a broker that cannot be reached,
    after ``timeout_ms``.
    """
    # kafka-python is the optional "kafka" extra: the names above stay importable without it
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError
    refuse_bad_credentials(kafka, timeout_ms / 1000)
    try:
        with kafka_errors(kafka, timeout=timeout_ms / 1000):
            admin = KafkaAdminClient(**kafka.kafka_python_kwargs(), client_id="playstream-admin",
                                     request_timeout_ms=timeout_ms,
                                     bootstrap_timeout_ms=timeout_ms)
    except KafkaError as err:
        raise PlaystreamError(f"cannot reach Kafka: {error_text(err)}",
                              bootstrap=kafka.bootstrap) from None
    try:
        existing = _partition_counts(admin, list(partitions))
        missing = {name: n for name, n in partitions.items() if name not in existing}
        if missing:
            _create(admin, missing, retention_ms, timeout_ms)
            existing.update(_partition_counts(admin, list(missing)))
        for name, want in partitions.items():
            _check_topic(admin, name, want, existing.get(name))
    except KafkaError as err:
        raise PlaystreamError(f"topic administration failed: {error_text(err)}",
                              bootstrap=kafka.bootstrap) from None
    finally:
        admin.close()


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)
            if t["error_code"] == 0}


def _create(admin: KafkaAdminClient, missing: Mapping[str, int], retention_ms: int,
            timeout_ms: int) -> None:
    from kafka.errors import TopicAlreadyExistsError, for_code

    spec = {name: {"num_partitions": n, "replication_factor": -1,
                   "configs": topic_configs(retention_ms)} for name, n in missing.items()}
    result = admin.create_topics(spec, timeout_ms=timeout_ms, raise_errors=False)
    for topic in result["topics"]:
        error = for_code(topic["error_code"])
        if topic["error_code"] == 0:
            log.info("created topic", extra={"topic": topic["name"],
                                             "partitions": missing[topic["name"]],
                                             "retention_ms": retention_ms})
        elif error is not TopicAlreadyExistsError:  # another worker won the race: fine
            raise PlaystreamError(f"cannot create topic: {error.__name__}: "
                                  f"{topic['error_message']}", topic=topic["name"])
    admin.wait_for_topics(list(missing), timeout_ms=timeout_ms)


def _check_topic(admin: KafkaAdminClient, name: str, want: int, have: int | None) -> None:
    from kafka.admin import ConfigResource

    if have != want:
        raise PlaystreamError(f"topic has {have} partitions, expected {want}", topic=name,
                              partitions=have, expected=want)
    configs = admin.describe_configs([ConfigResource("TOPIC", name, {"max.message.bytes": None})],
                                     config_filter="all")
    limit = int(configs["topic"][name]["max.message.bytes"]["value"])
    if limit < MAX_MESSAGE_BYTES:
        raise PlaystreamError(f"topic max.message.bytes is {limit}, below the {MAX_MESSAGE_BYTES} "
                              "a record of the maximum size needs", topic=name)
