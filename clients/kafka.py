"""How to reach a Kafka cluster: bootstrap servers, security protocol, SASL and TLS settings.

One validated :class:`KafkaConnection` feeds every client the project uses, so producers,
consumers, admin clients (kafka-python) and the faust/aiokafka processors all connect the
same way:

* :meth:`KafkaConnection.kafka_python_kwargs` for ``KafkaProducer``, ``KafkaConsumer``,
  ``KafkaAdminClient`` (kafka-python 3.0.x);
* :meth:`KafkaConnection.aiokafka_kwargs` for ``AIOKafkaProducer`` / ``AIOKafkaConsumer``;
* :meth:`KafkaConnection.faust_broker_credentials` (and :meth:`faust_broker_urls`) for
  ``faust.App(broker=..., broker_credentials=...)``.

The password is a :class:`pydantic.SecretStr`: ``repr``, ``str`` and :meth:`describe` never
show it. Invalid settings raise :class:`~playstream.errors.KafkaConfigError` naming the field.

Connection failures: both client libraries report a wrong password or an untrusted
certificate only as a generic bootstrap failure (kafka-python 3.0.12: ``KafkaTimeoutError
('Unable to bootstrap from ...')`` after ``bootstrap_timeout_ms``; aiokafka 0.14:
``KafkaConnectionError('Unable to bootstrap from ...')``), with the cause only in their logs.
:func:`explain_kafka_error` / :func:`kafka_errors` turn such a failure into one clear
:class:`~playstream.errors.KafkaConnectError` line by probing each bootstrap server once with
aiokafka's single-connection ``create_conn``, which raises the real cause.
:func:`refuse_bad_credentials` runs the same probe *before* a client is built, so that a
wrong password or an untrusted certificate fails within a second instead of after the
clients' bootstrap timeout (every command calls it through ``ensure_topics`` or first thing).

This module imports no Kafka library at import time; each is imported where it is used.
"""
from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator, \
    model_validator

from playstream.errors import KafkaAuthError, KafkaConfigError, KafkaConnectError, KafkaTLSError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SECURITY_PROTOCOLS: tuple[str, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
SSL_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})


def _split_host_port(server: str) -> tuple[str, int]:
    host, sep, port = server.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise KafkaConfigError(f"{server!r} is not HOST:PORT", field="bootstrap_servers")
    return host.strip("[]"), int(port)


class KafkaConnection(BaseModel):
    """Validated connection settings. Build with keyword arguments (or ``model_validate``);
    ``bootstrap_servers`` takes a list or a comma-separated string."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    bootstrap_servers: tuple[str, ...]
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: Optional[SaslMechanism] = None
    username: Optional[str] = None
    password: Optional[SecretStr] = None
    ssl_cafile: Optional[Path] = None
    ssl_certfile: Optional[Path] = None
    ssl_keyfile: Optional[Path] = None
    ssl_check_hostname: bool = True

    # pydantic's own ValidationError becomes a KafkaConfigError naming the field; its message
    # is taken from pydantic's 'msg' only, never the input (which could be the password).
    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _config_error(exc) from None

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> "KafkaConnection":
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise _config_error(exc) from None

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _bootstrap(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, (list, tuple)):
            value = tuple(str(v).strip() for v in value if str(v).strip())
            if not value:
                raise KafkaConfigError("at least one HOST:PORT is required",
                                       field="bootstrap_servers")
            for server in value:
                _split_host_port(server)
        return value

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("username", "password", "ssl_cafile", "ssl_certfile", "ssl_keyfile",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value if value.get_secret_value() else None
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _consistent(self) -> "KafkaConnection":
        proto = self.security_protocol
        if proto in SASL_PROTOCOLS:
            if self.sasl_mechanism is None:
                raise KafkaConfigError(f"required with security_protocol {proto} (one of "
                                       f"{', '.join(SASL_MECHANISMS)})", field="sasl_mechanism")
            if self.username is None:
                raise KafkaConfigError(f"required with security_protocol {proto}",
                                       field="username")
            if self.password is None:
                raise KafkaConfigError(f"required with security_protocol {proto}",
                                       field="password")
        else:
            for name in ("sasl_mechanism", "username", "password"):
                if getattr(self, name) is not None:
                    raise KafkaConfigError(
                        f"set, but security_protocol {proto} does not use SASL "
                        "(use SASL_PLAINTEXT or SASL_SSL)", field=name)
        files = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
        if proto not in SSL_PROTOCOLS:
            for name in files:
                if getattr(self, name) is not None:
                    raise KafkaConfigError(f"set, but security_protocol {proto} does not use "
                                           "TLS (use SSL or SASL_SSL)", field=name)
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise KafkaConfigError("a client key needs its certificate (ssl_certfile)",
                                   field="ssl_keyfile")
        for name in files:
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise KafkaConfigError(f"no such file: {path}", field=name)
        return self

    # ------------------------------------------------------------------ derived
    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in SASL_PROTOCOLS

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in SSL_PROTOCOLS

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers as Kafka's comma-separated ``--bootstrap-server`` value."""
        return ",".join(self.bootstrap_servers)

    def describe(self) -> str:
        """One line for logs, without the password, e.g.
        ``SASL_SSL 127.0.0.1:9094 (SCRAM-SHA-256, user 'alice', ssl_cafile=/etc/ca.pem)``."""
        parts = []
        if self.uses_sasl:
            parts += [str(self.sasl_mechanism), f"user {self.username!r}"]
        if self.uses_tls:
            parts.append(f"ssl_cafile={self.ssl_cafile}" if self.ssl_cafile
                         else "system CA store")
            if self.ssl_certfile:
                parts.append(f"ssl_certfile={self.ssl_certfile}")
            if not self.ssl_check_hostname:
                parts.append("hostname not checked")
        extra = f" ({', '.join(parts)})" if parts else ""
        return f"{self.security_protocol} {self.bootstrap}{extra}"

    def __str__(self) -> str:
        return self.describe()

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context (verifies the broker; loads the client certificate if given),
        or None when the protocol uses no TLS. A new context on each call."""
        if not self.uses_tls:
            return None
        try:
            ctx = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH,
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        except ssl.SSLError as exc:
            raise KafkaConfigError(f"not a PEM CA certificate file: {self.ssl_cafile} "
                                   f"({exc.reason or exc})", field="ssl_cafile") from None
        ctx.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile:
            try:
                ctx.load_cert_chain(str(self.ssl_certfile),
                                    str(self.ssl_keyfile) if self.ssl_keyfile else None)
            except ssl.SSLError as exc:
                raise KafkaConfigError(
                    f"cannot load the client certificate {self.ssl_certfile} with key "
                    f"{self.ssl_keyfile or '(in the same file)'} ({exc.reason or exc})",
                    field="ssl_certfile") from None
        return ctx

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python 3.0.x ``KafkaProducer``, ``KafkaConsumer`` and
        ``KafkaAdminClient``, ``bootstrap_servers`` included."""
        kw: dict[str, Any] = {"bootstrap_servers": list(self.bootstrap_servers),
                              "security_protocol": self.security_protocol}
        if self.uses_sasl:
            assert self.password is not None
            kw.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.username,
                      sasl_plain_password=self.password.get_secret_value())
        if self.uses_tls:
            kw.update(ssl_check_hostname=self.ssl_check_hostname,
                      ssl_cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                      ssl_certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                      ssl_keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None)
        return kw

    def aiokafka_auth_kwargs(self) -> dict[str, Any]:
        """The security part of :meth:`aiokafka_kwargs` (no ``bootstrap_servers``): what
        aiokafka's ``create_conn`` and faust's ``credentials_to_aiokafka_auth`` produce."""
        kw: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_sasl:
            assert self.password is not None
            kw.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.username,
                      sasl_plain_password=self.password.get_secret_value())
        if self.uses_tls:
            kw["ssl_context"] = self.ssl_context()
        return kw

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaProducer`` / ``AIOKafkaConsumer`` /
        ``AIOKafkaAdminClient`` (aiokafka 0.13-0.14), ``bootstrap_servers`` included."""
        return {"bootstrap_servers": list(self.bootstrap_servers), **self.aiokafka_auth_kwargs()}

    def faust_broker_urls(self) -> list[str]:
        """``faust.App(broker=...)``: one ``kafka://HOST:PORT`` URL per bootstrap server."""
        return [f"kafka://{server}" for server in self.bootstrap_servers]

    def faust_broker_credentials(self) -> Any:
        """``faust.App(broker_credentials=...)`` for faust-streaming 0.15.3: None (PLAINTEXT),
        ``faust.SSLCredentials(context)`` (SSL) or ``faust.SASLCredentials(username=, password=,
        mechanism=, ssl_context=)`` (SASL_PLAINTEXT; SASL_SSL when ssl_context is set). faust
        hands these to aiokafka unchanged (``credentials_to_aiokafka_auth``), SCRAM included."""
        if not self.uses_sasl and not self.uses_tls:
            return None
        import faust

        if not self.uses_sasl:
            return faust.SSLCredentials(self.ssl_context())
        assert self.password is not None
        return faust.SASLCredentials(username=self.username,
                                     password=self.password.get_secret_value(),
                                     mechanism=self.sasl_mechanism,
                                     ssl_context=self.ssl_context())

    def with_password(self, password: str | SecretStr | None) -> "KafkaConnection":
        """A copy with another password (e.g. taken from the environment), validated again."""
        data = self.model_dump()
        data["password"] = password
        return KafkaConnection(**data)


def _config_error(exc: ValidationError) -> KafkaConfigError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or None
    return KafkaConfigError(first.get("msg", "invalid value"), field=field)


# ---------------------------------------------------------------------- connection failures
def _mechanism_note(conn: KafkaConnection) -> str:
    return f"{conn.security_protocol}, {conn.sasl_mechanism}" if conn.uses_sasl \
        else conn.security_protocol


def _classify(exc: BaseException, conn: KafkaConnection, server: str) -> KafkaConnectError | None:
    """A clear error for one raw failure on ``server``, or None if ``exc`` is not one we know."""
    where = f"{server} ({_mechanism_note(conn)})"
    common = dict(bootstrap=server, security_protocol=conn.security_protocol,
                  sasl_mechanism=conn.sasl_mechanism)
    name = type(exc).__name__
    text = str(exc)

    if name in ("SaslAuthenticationFailed", "SaslAuthenticationFailedError"):
        return KafkaAuthError(f"authentication failed on {where}: wrong user or password "
                              f"(user {conn.username!r})", reason="credentials", **common)
    if name in ("UnsupportedSaslMechanismError", "UnsupportedSaslMechanism"):
        return KafkaAuthError(f"authentication failed on {where}: the listener does not enable "
                              f"{conn.sasl_mechanism}", reason="mechanism", **common)

    tls = f"TLS handshake with {where} failed"
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        code = getattr(exc, "verify_code", None)
        message = getattr(exc, "verify_message", None) or text
        if code == 62 or "Hostname mismatch" in message or "IP address mismatch" in message:
            return KafkaTLSError(f"{tls}: certificate does not match the host ({message}; "
                                 f"ssl_check_hostname={conn.ssl_check_hostname})",
                                 reason="hostname", **common)
        if code == 10 or "expired" in message:
            return KafkaTLSError(f"{tls}: certificate expired", reason="expired", **common)
        cafile = conn.ssl_cafile if conn.ssl_cafile else "the system CA store"
        return KafkaTLSError(f"{tls}: certificate not trusted (ssl_cafile={cafile}): {message}",
                             reason="untrusted", **common)
    for alert in ("ALERT_CERTIFICATE_UNKNOWN", "ALERT_BAD_CERTIFICATE",
                  "ALERT_CERTIFICATE_REQUIRED", "ALERT_UNKNOWN_CA"):
        if alert in text:
            return KafkaTLSError(f"{tls}: the broker rejected the client certificate "
                                 f"(ssl_certfile={conn.ssl_certfile})", reason="client-cert",
                                 **common)
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return KafkaTLSError(f"{tls}: the listener does not speak TLS (is {server} a "
                             "PLAINTEXT or SASL_PLAINTEXT port?)", reason="not-tls", **common)
    if isinstance(exc, ssl.SSLError):
        return KafkaTLSError(f"{tls}: {text}", reason="tls", **common)
    if isinstance(exc, ConnectionRefusedError) or "ECONNREFUSED" in text:
        return KafkaConnectError(f"cannot connect to {where}: connection refused",
                                 reason="refused", **common)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return KafkaConnectError(f"no answer from {where} in time (wrong port or protocol?)",
                                 reason="timeout", **common)
    if isinstance(exc, OSError):
        return KafkaConnectError(f"cannot connect to {where}: "
                                 f"{exc.strerror or text or type(exc).__name__}",
                                 reason="network", **common)
    return None


def _tls_probe(conn: KafkaConnection, server: str, timeout: float) -> KafkaConnectError | None:
    """TLS handshake with the stdlib, then wait briefly for an alert: with TLS 1.3 a rejected
    client certificate is only reported after the handshake has completed."""
    import socket

    host, port = _split_host_port(server)
    ctx = conn.ssl_context()
    assert ctx is not None
    common = dict(bootstrap=server, security_protocol=conn.security_protocol,
                  sasl_mechanism=conn.sasl_mechanism)
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                tls.settimeout(min(timeout, 1.0))
                try:
                    tls.recv(1)
                except (socket.timeout, TimeoutError):
                    pass   # silence: the broker waits for a request, the handshake is fine
    except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError):
        return KafkaTLSError(f"TLS handshake with {server} ({_mechanism_note(conn)}) failed: "
                             f"the listener closed the connection (is {server} a PLAINTEXT "
                             "or SASL_PLAINTEXT port?)",
                             reason="not-tls", **common)
    except Exception as exc:  # noqa: BLE001 -- classified below
        return _classify(exc, conn, server)
    return None


async def adiagnose(conn: KafkaConnection, timeout: float = 10.0) -> KafkaConnectError | None:
    """Open one connection to each bootstrap server (a stdlib TLS handshake first when the
    protocol uses TLS, then aiokafka's ``create_conn``: TCP, TLS, SASL authentication) and
    return a clear error for the first that fails, or None when all of them accept us."""
    from aiokafka.conn import create_conn

    auth = conn.aiokafka_auth_kwargs()
    loop = asyncio.get_running_loop()
    for server in conn.bootstrap_servers:
        host, port = _split_host_port(server)
        if conn.uses_tls:
            found = await loop.run_in_executor(None, _tls_probe, conn, server, timeout)
            if found is not None:
                return found
        try:
            kafka_conn = await asyncio.wait_for(
                create_conn(host, port, client_id="playstream-diagnose",
                            request_timeout_ms=int(timeout * 1000), **auth), timeout)
        except Exception as exc:  # noqa: BLE001 -- classified below, else re-described
            found = _classify(exc, conn, server)
            if found is not None:
                return found
            common = dict(bootstrap=server, security_protocol=conn.security_protocol,
                          sasl_mechanism=conn.sasl_mechanism)
            if "closed" in str(exc):
                return KafkaConnectError(
                    f"{server} closed the connection ({_mechanism_note(conn)}): does this "
                    f"listener speak {conn.security_protocol}? check the port", reason="closed",
                    **common)
            return KafkaConnectError(f"connection to {server} ({_mechanism_note(conn)}) "
                                     f"failed: {type(exc).__name__}: {exc}", reason="other",
                                     **common)
        kafka_conn.close()
    return None


def diagnose(conn: KafkaConnection, timeout: float = 10.0) -> KafkaConnectError | None:
    """Synchronous :func:`adiagnose`; runs its own event loop in a helper thread, so it also
    works from code that already runs inside an event loop."""
    result: list[KafkaConnectError | None] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(adiagnose(conn, timeout)))
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="kafka-diagnose", daemon=True)
    thread.start()
    thread.join(timeout * (len(conn.bootstrap_servers) + 1) + 5)
    if failure:
        raise failure[0]
    return result[0] if result else None


def _is_connection_failure(exc: BaseException) -> bool:
    """kafka-python / aiokafka exceptions that stand for 'could not bootstrap or connect'."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"KafkaTimeoutError", "NoBrokersAvailable", "KafkaConnectionError",
                         "NodeNotReadyError", "SaslAuthenticationFailed",
                         "SaslAuthenticationFailedError"}) \
        or isinstance(exc, (OSError, asyncio.TimeoutError, ssl.SSLError))


def explain_kafka_error(exc: BaseException, conn: KafkaConnection, *, probe: bool = True,
                        timeout: float = 10.0) -> KafkaConnectError | None:
    """Turn a client's connection/authentication/TLS failure into one clear error naming the
    listener, protocol and mechanism (never the password). The exception itself is used when
    it tells the cause; a generic bootstrap failure is explained by probing the bootstrap
    servers (``probe=True``). Returns None for exceptions that are not connection failures,
    and for a failure the probe cannot reproduce."""
    if isinstance(exc, KafkaConnectError):
        return exc
    if not _is_connection_failure(exc):
        return None
    first = conn.bootstrap_servers[0] if len(conn.bootstrap_servers) == 1 else conn.bootstrap
    direct = _classify(exc, conn, first)
    if direct is not None and direct.reason not in ("timeout", "network", "refused"):
        return direct
    if probe:
        found = diagnose(conn, timeout)
        if found is not None:
            return found
    return direct


@contextlib.contextmanager
def kafka_errors(conn: KafkaConnection, *, probe: bool = True,
                 timeout: float = 10.0) -> Iterator[None]:
    """``with kafka_errors(conn): KafkaProducer(**conn.kafka_python_kwargs())`` re-raises a
    connection, authentication or TLS failure as a :class:`KafkaConnectError` (chained to the
    original). Other exceptions pass through unchanged. Works around ``await`` calls too."""
    try:
        yield
    except Exception as exc:
        err = explain_kafka_error(exc, conn, probe=probe, timeout=timeout)
        if err is None:
            raise
        raise err from exc


def refuse_bad_credentials(conn: KafkaConnection, timeout: float = 10.0) -> None:
    """Raise :class:`KafkaAuthError` / :class:`KafkaTLSError` at once when a broker refuses
    the credentials or its certificate is not trusted: kafka-python would only time out after
    ``bootstrap_timeout_ms`` and say nothing of the cause. One connection per bootstrap server
    (SASL and TLS connections only; PLAINTEXT has nothing to refuse). A server that cannot be
    reached is left to the clients, which retry it and use the others."""
    if not (conn.uses_sasl or conn.uses_tls):
        return
    found = diagnose(conn, timeout)
    if isinstance(found, (KafkaAuthError, KafkaTLSError)):
        raise found
