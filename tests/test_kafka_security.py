"""Secured clusters: the KafkaConnection model, and real round trips over the SASL/SCRAM,
TLS and SASL_SSL listeners of a broker started by deploy/kafka/kafka.sh (via LocalKafka)."""
from __future__ import annotations

import asyncio
import os
import ssl
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from playstream.errors import KafkaAuthError, KafkaConfigError, KafkaTLSError, PlaystreamError
from playstream.clients.kafka import KafkaConnection, diagnose, kafka_errors
from playstream.localkafka import LocalKafka

SECRET = "s3cret-Pa55word-xyz"


# ------------------------------------------------------------------------------ the model
@pytest.fixture
def ca(foreign_ca: Path) -> Path:
    return foreign_ca


def test_unreadable_tls_files_name_the_field(tmp_path: Path, ca: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(KafkaConfigError) as info:
        KafkaConnection(bootstrap_servers="b:1", security_protocol="SSL",
                        ssl_cafile=junk).ssl_context()
    assert info.value.field == "ssl_cafile" and str(junk) in str(info.value)
    with pytest.raises(KafkaConfigError) as info:
        KafkaConnection(bootstrap_servers="b:1", security_protocol="SSL", ssl_cafile=ca,
                        ssl_certfile=junk).aiokafka_kwargs()
    assert info.value.field == "ssl_certfile"


def test_bootstrap_servers_from_list_or_comma_string() -> None:
    a = KafkaConnection(bootstrap_servers="h1:9092, h2:9093")
    b = KafkaConnection(bootstrap_servers=["h1:9092", "h2:9093"])
    assert a.bootstrap_servers == b.bootstrap_servers == ("h1:9092", "h2:9093")
    assert a.bootstrap == "h1:9092,h2:9093"
    assert a.kafka_python_kwargs() == {"bootstrap_servers": ["h1:9092", "h2:9093"],
                                       "security_protocol": "PLAINTEXT"}
    assert a.aiokafka_kwargs() == {"bootstrap_servers": ["h1:9092", "h2:9093"],
                                   "security_protocol": "PLAINTEXT"}
    assert a.faust_broker_credentials() is None
    assert a.faust_broker_urls() == ["kafka://h1:9092", "kafka://h2:9093"]


@pytest.mark.parametrize("fields, field, words", [
    ({"bootstrap_servers": ""}, "bootstrap_servers", "HOST:PORT"),
    ({"bootstrap_servers": "kafka"}, "bootstrap_servers", "'kafka' is not HOST:PORT"),
    ({"bootstrap_servers": "kafka:99999"}, "bootstrap_servers", "not HOST:PORT"),
    ({"security_protocol": "TLS"}, "security_protocol", "SASL_SSL"),
    ({"security_protocol": "SASL_PLAINTEXT", "username": "u", "password": SECRET},
     "sasl_mechanism", "required with security_protocol SASL_PLAINTEXT"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "username": "u",
      "password": SECRET}, "sasl_mechanism", "SCRAM-SHA-256"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
      "password": SECRET}, "username", "required with security_protocol SASL_PLAINTEXT"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
      "username": "u"}, "password", "required"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "username": "u",
      "password": ""}, "password", "required"),
    ({"username": "u", "password": SECRET}, "username", "PLAINTEXT does not use SASL"),
    ({"password": SECRET}, "password", "does not use SASL"),
    ({"ssl_cafile": "/etc/hostname"}, "ssl_cafile", "does not use TLS"),
    ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "ssl_cafile",
     "no such file: /nonexistent/ca.pem"),
    ({"security_protocol": "SSL", "ssl_keyfile": "/etc/hostname"}, "ssl_keyfile",
     "ssl_certfile"),
    ({"nonsense": 1}, "nonsense", "Extra inputs"),
])
def test_validation_errors_are_typed_and_name_the_field(fields: dict, field: str,
                                                        words: str) -> None:
    fields = {"bootstrap_servers": "127.0.0.1:9092", **fields}
    with pytest.raises(KafkaConfigError) as info:
        KafkaConnection(**fields)
    err = info.value
    assert isinstance(err, PlaystreamError)
    assert err.field == field
    assert str(err).startswith(f"field={field}: ")
    assert words in str(err)
    assert SECRET not in str(err)
    assert err.__cause__ is None  # pydantic's error (which would show the input) is dropped


def test_model_validate_raises_the_typed_error_too() -> None:
    with pytest.raises(KafkaConfigError) as info:
        KafkaConnection.model_validate({"bootstrap_servers": "a:1",
                                        "security_protocol": "sasl_ssl"})
    assert info.value.field == "sasl_mechanism"


def test_wrongly_typed_password_does_not_leak_into_the_error() -> None:
    with pytest.raises(KafkaConfigError) as info:
        KafkaConnection(bootstrap_servers="a:1", security_protocol="SASL_PLAINTEXT",
                        sasl_mechanism="PLAIN", username="u", password=987654321)
    assert info.value.field == "password"
    assert "987654321" not in str(info.value)


def test_password_never_in_repr_str_describe_or_dump(ca: Path) -> None:
    conn = KafkaConnection(bootstrap_servers="127.0.0.1:9096", security_protocol="sasl_ssl",
                           sasl_mechanism="scram-sha-512", username="alice", password=SECRET,
                           ssl_cafile=ca)
    assert conn.security_protocol == "SASL_SSL" and conn.sasl_mechanism == "SCRAM-SHA-512"
    assert isinstance(conn.password, SecretStr)
    shown = [repr(conn), str(conn), conn.describe(), f"{conn}", conn.model_dump_json(),
             repr(conn.model_dump()), repr(conn.faust_broker_credentials())]
    for text in shown:
        assert SECRET not in text, text
    assert conn.describe() == (f"SASL_SSL 127.0.0.1:9096 (SCRAM-SHA-512, user 'alice', "
                               f"ssl_cafile={ca})")
    # the clients do get it
    assert conn.kafka_python_kwargs()["sasl_plain_password"] == SECRET
    assert conn.aiokafka_kwargs()["sasl_plain_password"] == SECRET
    assert conn.with_password("other-pw").password.get_secret_value() == "other-pw"


def test_client_kwargs_per_protocol(ca: Path) -> None:
    scram = KafkaConnection(bootstrap_servers="b:1", security_protocol="SASL_PLAINTEXT",
                            sasl_mechanism="SCRAM-SHA-256", username="u", password=SECRET)
    assert scram.kafka_python_kwargs() == {
        "bootstrap_servers": ["b:1"], "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "u",
        "sasl_plain_password": SECRET}
    assert scram.aiokafka_kwargs() == {
        "bootstrap_servers": ["b:1"], "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "u",
        "sasl_plain_password": SECRET}
    assert scram.ssl_context() is None

    tls = KafkaConnection(bootstrap_servers="b:2", security_protocol="SSL", ssl_cafile=ca,
                          ssl_check_hostname=False)
    assert tls.kafka_python_kwargs() == {
        "bootstrap_servers": ["b:2"], "security_protocol": "SSL", "ssl_check_hostname": False,
        "ssl_cafile": str(ca), "ssl_certfile": None, "ssl_keyfile": None}
    akw = tls.aiokafka_kwargs()
    assert set(akw) == {"bootstrap_servers", "security_protocol", "ssl_context"}
    assert isinstance(akw["ssl_context"], ssl.SSLContext)
    assert akw["ssl_context"].check_hostname is False
    assert akw["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert tls.describe() == f"SSL b:2 (ssl_cafile={ca}, hostname not checked)"


def test_faust_credentials_reach_aiokafka_unchanged(ca: Path) -> None:
    """faust 0.15.3 turns broker_credentials into aiokafka arguments with
    credentials_to_aiokafka_auth: SCRAM mechanisms pass through as they are."""
    import faust
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    for proto, mech, cafile in [("SASL_PLAINTEXT", "SCRAM-SHA-256", None),
                                ("SASL_SSL", "SCRAM-SHA-512", ca),
                                ("SASL_PLAINTEXT", "PLAIN", None)]:
        conn = KafkaConnection(bootstrap_servers="b:1", security_protocol=proto,
                               sasl_mechanism=mech, username="u", password=SECRET,
                               ssl_cafile=cafile)
        creds = conn.faust_broker_credentials()
        assert isinstance(creds, faust.SASLCredentials)
        got = credentials_to_aiokafka_auth(creds)
        want = conn.aiokafka_auth_kwargs()
        assert got["security_protocol"] == want["security_protocol"] == proto
        assert got["sasl_mechanism"] == mech
        assert got["sasl_plain_username"] == "u" and got["sasl_plain_password"] == SECRET
        assert (got["ssl_context"] is None) == (cafile is None)
    tls = KafkaConnection(bootstrap_servers="b:1", security_protocol="SSL", ssl_cafile=ca)
    creds = tls.faust_broker_credentials()
    assert isinstance(creds, faust.SSLCredentials)
    got = credentials_to_aiokafka_auth(creds)
    assert got["security_protocol"] == "SSL" and isinstance(got["ssl_context"], ssl.SSLContext)


def test_module_imports_no_kafka_library() -> None:
    code = ("import sys, playstream.clients.kafka, playstream.localkafka; "
            "bad = [m for m in ('kafka', 'aiokafka', 'faust') if m in sys.modules]; "
            "assert not bad, bad")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# ------------------------------------------------------------------------------ real broker
LISTENERS = [("SASL_PLAINTEXT", "SCRAM-SHA-256"), ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
             ("SASL_PLAINTEXT", "PLAIN"), ("SSL", None), ("SASL_SSL", "SCRAM-SHA-512")]


def _payloads(n: int = 5) -> list[bytes]:
    tag = uuid.uuid4().hex
    return [f"{tag}-{i}".encode() for i in range(n)]


def _kafka_python_round_trip(conn: KafkaConnection, topic: str, payloads: list[bytes]) -> list:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    with kafka_errors(conn):
        admin = KafkaAdminClient(**conn.kafka_python_kwargs())
        try:
            admin.create_topics([NewTopic(topic, 2, 1)])
            assert topic in admin.list_topics()
        finally:
            admin.close()
        producer = KafkaProducer(acks="all", **conn.kafka_python_kwargs())
        try:
            for i, value in enumerate(payloads):
                producer.send(topic, value=value, partition=i % 2).get(timeout=30)
        finally:
            producer.close()
        consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000,
                                 group_id=f"g-{topic}", **conn.kafka_python_kwargs())
        try:
            got = []
            for record in consumer:
                got.append(record.value)
                if len(got) == len(payloads):
                    break
        finally:
            consumer.close()
    return got


@pytest.mark.kafka
@pytest.mark.parametrize("protocol, mechanism", LISTENERS)
def test_kafka_python_round_trip(secure_kafka: LocalKafka, topic_prefix: str, protocol: str,
                                 mechanism: str | None) -> None:
    conn = secure_kafka.connection(protocol, mechanism)
    assert diagnose(conn) is None
    payloads = _payloads()
    got = _kafka_python_round_trip(conn, f"{topic_prefix}-kp", payloads)
    assert sorted(got) == sorted(payloads)


@pytest.mark.kafka
def test_kafka_python_mutual_tls(secure_kafka: LocalKafka, topic_prefix: str) -> None:
    conn = secure_kafka.connection("SSL", ssl_certfile=secure_kafka.client_cert_file,
                                   ssl_keyfile=secure_kafka.client_key_file)
    payloads = _payloads(3)
    assert sorted(_kafka_python_round_trip(conn, f"{topic_prefix}-mtls", payloads)) == \
        sorted(payloads)


async def _aiokafka_round_trip(kwargs: dict, topic: str, payloads: list[bytes]) -> list:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(acks="all", **kwargs)
    await producer.start()
    try:
        for value in payloads:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", group_id=f"g-{topic}",
                                **kwargs)
    await consumer.start()
    got: list[bytes] = []
    try:
        async def drain() -> None:
            async for record in consumer:
                got.append(record.value)
                if len(got) == len(payloads):
                    return
        await asyncio.wait_for(drain(), 30)
    finally:
        await consumer.stop()
    return got


@pytest.mark.kafka
@pytest.mark.parametrize("protocol, mechanism", [("SASL_PLAINTEXT", "SCRAM-SHA-256"),
                                                 ("SSL", None),
                                                 ("SASL_SSL", "SCRAM-SHA-256")])
def test_aiokafka_round_trip(secure_kafka: LocalKafka, topic_prefix: str, protocol: str,
                             mechanism: str | None) -> None:
    conn = secure_kafka.connection(protocol, mechanism)
    payloads = _payloads()
    got = asyncio.run(_aiokafka_round_trip(conn.aiokafka_kwargs(), f"{topic_prefix}-ak",
                                           payloads))
    assert got == payloads  # one partition (auto-created), so in order


@pytest.mark.kafka
@pytest.mark.parametrize("protocol, mechanism", [("SASL_PLAINTEXT", "SCRAM-SHA-512"),
                                                 ("SSL", None)])
def test_faust_credentials_round_trip(secure_kafka: LocalKafka, topic_prefix: str,
                                      protocol: str, mechanism: str | None) -> None:
    """What a faust app with broker_credentials=conn.faust_broker_credentials() hands to
    aiokafka (faust's own credentials_to_aiokafka_auth) connects and consumes for real."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    conn = secure_kafka.connection(protocol, mechanism)
    kwargs = {"bootstrap_servers": list(conn.bootstrap_servers),
              **credentials_to_aiokafka_auth(conn.faust_broker_credentials())}
    payloads = _payloads(4)
    assert asyncio.run(_aiokafka_round_trip(kwargs, f"{topic_prefix}-fa", payloads)) == payloads


def _assert_one_clear_line(err: Exception, *parts: str, secret: str) -> None:
    text = str(err)
    assert "\n" not in text
    for part in parts:
        assert part in text, (part, text)
    assert secret not in text


@pytest.mark.kafka
@pytest.mark.parametrize("protocol, mechanism", [("SASL_PLAINTEXT", "SCRAM-SHA-256"),
                                                 ("SASL_SSL", "SCRAM-SHA-512")])
def test_wrong_password_kafka_python(secure_kafka: LocalKafka, protocol: str,
                                     mechanism: str) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError

    wrong = "wrong-" + uuid.uuid4().hex
    conn = secure_kafka.connection(protocol, mechanism, password=wrong)
    listener = conn.bootstrap_servers[0]
    with pytest.raises(KafkaAuthError) as info:
        with kafka_errors(conn):
            KafkaProducer(bootstrap_timeout_ms=3000, **conn.kafka_python_kwargs())
    err = info.value
    # kafka-python 3.0.12 itself only says it could not bootstrap
    assert isinstance(err.__cause__, KafkaTimeoutError)
    assert "Unable to bootstrap" in str(err.__cause__)
    assert str(err) == (f"authentication failed on {listener} ({protocol}, {mechanism}): "
                        f"wrong user or password (user '{secure_kafka.sasl_username}')")
    _assert_one_clear_line(err, listener, mechanism, protocol, secret=wrong)
    assert secure_kafka.sasl_password.get_secret_value() not in str(err)
    assert (err.bootstrap, err.security_protocol, err.sasl_mechanism) == \
        (listener, protocol, mechanism)


@pytest.mark.kafka
def test_wrong_password_aiokafka(secure_kafka: LocalKafka) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaConnectionError

    wrong = "wrong-" + uuid.uuid4().hex
    conn = secure_kafka.connection("SASL_PLAINTEXT", "SCRAM-SHA-256", password=wrong)

    async def start() -> None:
        consumer = AIOKafkaConsumer("any-topic", **conn.aiokafka_kwargs())
        try:
            with kafka_errors(conn):
                await consumer.start()
        finally:
            await consumer.stop()

    with pytest.raises(KafkaAuthError) as info:
        asyncio.run(start())
    assert isinstance(info.value.__cause__, KafkaConnectionError)
    assert "Unable to bootstrap" in str(info.value.__cause__)
    _assert_one_clear_line(info.value, conn.bootstrap_servers[0], "SASL_PLAINTEXT",
                           "SCRAM-SHA-256", "wrong user or password", secret=wrong)


@pytest.mark.kafka
def test_unknown_user(secure_kafka: LocalKafka) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    conn = secure_kafka.connection("SASL_PLAINTEXT", "SCRAM-SHA-512", username="mallory",
                                   password=wrong)
    err = diagnose(conn)
    assert isinstance(err, KafkaAuthError)
    _assert_one_clear_line(err, conn.bootstrap_servers[0], "SCRAM-SHA-512", "'mallory'",
                           secret=wrong)


@pytest.mark.kafka
@pytest.mark.parametrize("protocol, mechanism", [("SSL", None), ("SASL_SSL", "SCRAM-SHA-256")])
def test_untrusted_ca_kafka_python(secure_kafka: LocalKafka, foreign_ca: Path, protocol: str,
                                   mechanism: str | None) -> None:
    from kafka import KafkaConsumer

    conn = secure_kafka.connection(protocol, mechanism, ssl_cafile=foreign_ca)
    listener = conn.bootstrap_servers[0]
    with pytest.raises(KafkaTLSError) as info:
        with kafka_errors(conn):
            KafkaConsumer(bootstrap_timeout_ms=3000, **conn.kafka_python_kwargs())
    assert str(info.value).startswith(
        f"TLS handshake with {listener} ({conn.security_protocol}"
        + (f", {mechanism}" if mechanism else "")
        + f") failed: certificate not trusted (ssl_cafile={foreign_ca})")
    _assert_one_clear_line(info.value, listener, secret=secure_kafka.sasl_password
                           .get_secret_value())
    assert info.value.reason == "untrusted"


@pytest.mark.kafka
def test_untrusted_ca_aiokafka(secure_kafka: LocalKafka, foreign_ca: Path) -> None:
    from aiokafka import AIOKafkaProducer

    conn = secure_kafka.connection("SSL", ssl_cafile=foreign_ca)

    async def start() -> None:
        producer = AIOKafkaProducer(**conn.aiokafka_kwargs())
        try:
            with kafka_errors(conn):
                await producer.start()
        finally:
            await producer.stop()

    with pytest.raises(KafkaTLSError) as info:
        asyncio.run(start())
    assert "certificate not trusted" in str(info.value)
    assert conn.bootstrap_servers[0] in str(info.value)


@pytest.mark.kafka
def test_wrong_port_and_foreign_client_cert_are_explained(secure_kafka: LocalKafka,
                                                          foreign_ca: Path) -> None:
    # TLS client against the PLAINTEXT port
    conn = KafkaConnection(bootstrap_servers=secure_kafka.bootstrap, security_protocol="SSL",
                           ssl_cafile=secure_kafka.ca_file)
    err = diagnose(conn)
    assert isinstance(err, KafkaTLSError) and err.reason == "not-tls"
    # a client certificate the broker's truststore does not know
    conn = secure_kafka.connection("SSL", ssl_certfile=foreign_ca,
                                   ssl_keyfile=foreign_ca.with_name("ca.key"))
    err = diagnose(conn)
    assert isinstance(err, KafkaTLSError) and err.reason == "client-cert", err


@pytest.mark.kafka
def test_broker_dir_secrets_and_restart(secure_kafka: LocalKafka, topic_prefix: str) -> None:
    d = secure_kafka.directory
    password = secure_kafka.sasl_password.get_secret_value()
    # the password is only in the two mode-600 files that must hold it
    holders = sorted(p.name for p in d.rglob("*") if p.is_file()
                     and password.encode() in p.read_bytes())
    assert holders == ["sasl.credentials", "server.properties"]
    for name in ("sasl.credentials", "server.properties", "client.key", "format.log"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    assert password not in secure_kafka.last_stderr
    # listener files hold 127.0.0.1 addresses, all different
    addresses = [secure_kafka.bootstrap, secure_kafka.sasl_bootstrap, secure_kafka.tls_bootstrap,
                 secure_kafka.sasl_ssl_bootstrap]
    assert all(a.startswith("127.0.0.1:") for a in addresses) and len(set(addresses)) == 4
    ca_before = secure_kafka.ca_file.read_bytes()

    assert secure_kafka.restart() == addresses[0]
    assert [secure_kafka.bootstrap, secure_kafka.sasl_bootstrap, secure_kafka.tls_bootstrap,
            secure_kafka.sasl_ssl_bootstrap] == addresses
    assert secure_kafka.ca_file.read_bytes() == ca_before
    assert secure_kafka.sasl_password.get_secret_value() == password
    payloads = _payloads(2)
    got = _kafka_python_round_trip(secure_kafka.connection("SASL_SSL", "SCRAM-SHA-256"),
                                   f"{topic_prefix}-rs", payloads)
    assert sorted(got) == sorted(payloads)
