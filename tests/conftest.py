"""Shared fixtures. Kafka tests share one real broker per session, started from the
project's own script (deploy/kafka/kafka.sh), or the one named by PLAYSTREAM_BOOTSTRAP."""
from __future__ import annotations

import os
import uuid
from typing import Iterator

import pytest

from playstream.clients.kafka import KafkaConnection
from playstream.localkafka import LocalKafka

pytest_plugins = ["kafka_security_fixtures", "s3_fixtures"]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("PLAYSTREAM_BOOTSTRAP")
    if given:
        yield given
        return
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker.bootstrap  # type: ignore[misc]
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_connection(kafka_bootstrap: str) -> KafkaConnection:
    """The session broker as the clients take it (PLAINTEXT)."""
    return KafkaConnection(bootstrap_servers=kafka_bootstrap)


@pytest.fixture
def topic_prefix() -> str:
    """A unique topic prefix per test, so tests sharing the broker never see each other."""
    return f"t{uuid.uuid4().hex[:10]}"
