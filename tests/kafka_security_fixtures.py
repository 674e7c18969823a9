"""Fixtures for the secured-cluster tests: one extra broker started by the project's own
script with SASL/SCRAM, TLS and SASL_SSL listeners, and a CA that did not sign it."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from playstream.localkafka import LocalKafka


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    broker = LocalKafka(tmp_path_factory.mktemp("kafka-secure"), sasl_scram=True, tls=True,
                        sasl_ssl=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def foreign_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed CA that signed nothing the test broker presents."""
    d = tmp_path_factory.mktemp("foreign-ca")
    subprocess.run(["openssl", "req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes",
                    "-days", "2", "-subj", "/CN=not the playstream test CA",
                    "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem")],
                   check=True, capture_output=True)
    return d / "ca.pem"
