"""A local single-node Kafka broker driven through ``deploy/kafka/kafka.sh``.

Used by the test session, the demo and the benchmarks, so all three run the broker the same
way: Maven Central jars, KRaft, bound to 127.0.0.1 only, stopped by its own pid.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pydantic import SecretStr

from playstream.errors import PlaystreamError
from playstream.clients.kafka import KafkaConnection

DEFAULT_SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "kafka" / "kafka.sh"


def kafka_script() -> Path:
    script = Path(os.environ.get("PLAYSTREAM_KAFKA_SCRIPT", DEFAULT_SCRIPT))
    if not script.is_file():
        raise PlaystreamError("deploy/kafka/kafka.sh not found: run from a source checkout or "
                              "set PLAYSTREAM_KAFKA_SCRIPT", path=str(script))
    return script


class LocalKafka:
    """One broker whose config, data and log live in ``directory``.

    ``sasl_scram``, ``tls`` and ``sasl_ssl`` add listeners besides PLAINTEXT (kafka.sh
    ``--sasl-scram`` / ``--tls`` / ``--sasl-ssl``): SASL_PLAINTEXT and SASL_SSL accept the test
    user with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN; SSL and SASL_SSL present a certificate
    from a CA made in ``directory`` (:attr:`ca_file`). The listeners are fixed when the
    directory is first formatted; a restarted directory keeps them, with the same ports,
    user and certificates. ``sasl_user`` / ``sasl_password`` choose the test user (default
    ``playstream`` with a random password), applied when the directory is first formatted.
    """

    def __init__(self, directory: str | Path, *, sasl_scram: bool = False, tls: bool = False,
                 sasl_ssl: bool = False, sasl_user: str | None = None,
                 sasl_password: str | None = None) -> None:
        self.directory = Path(directory)
        self.bootstrap: str | None = None
        self.sasl_scram = sasl_scram
        self.tls = tls
        self.sasl_ssl = sasl_ssl
        self._sasl_user = sasl_user
        self._sasl_password = sasl_password

    def _start_flags(self) -> list[str]:
        return [flag for flag, on in (("--sasl-scram", self.sasl_scram), ("--tls", self.tls),
                                      ("--sasl-ssl", self.sasl_ssl)) if on]

    def _run(self, *args: str, timeout: float = 600) -> str:
        env = None
        if self._sasl_user is not None or self._sasl_password is not None:
            env = dict(os.environ)
            if self._sasl_user is not None:
                env["PLAYSTREAM_KAFKA_SASL_USER"] = self._sasl_user
            if self._sasl_password is not None:
                env["PLAYSTREAM_KAFKA_SASL_PASSWORD"] = self._sasl_password
        proc = subprocess.run(["bash", str(kafka_script()), *args], capture_output=True,
                              text=True, timeout=timeout, env=env)
        self.last_stderr = proc.stderr   # kafka.sh progress lines (tests check them for secrets)
        if proc.returncode != 0:
            raise PlaystreamError(f"kafka.sh {args[0]} failed: {proc.stderr.strip()[-2000:]}",
                                  path=str(self.directory))
        return proc.stdout.strip()

    def start(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.bootstrap = self._run("start", "--dir", str(self.directory),
                                   *self._start_flags()).splitlines()[-1]
        return self.bootstrap

    def restart(self) -> str:
        self.bootstrap = self._run("restart", "--dir", str(self.directory)).splitlines()[-1]
        return self.bootstrap

    def stop(self) -> None:
        self._run("stop", "--dir", str(self.directory), timeout=120)

    # ------------------------------------------------------------ extra listeners
    def _read(self, name: str, flag: str) -> str:
        path = self.directory / name
        if not path.is_file():
            raise PlaystreamError(f"{path} not found: the broker was not started with {flag}",
                                  path=str(self.directory))
        return path.read_text().strip()

    @property
    def sasl_bootstrap(self) -> str:
        """SASL_PLAINTEXT listener (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN), from DIR/bootstrap.sasl."""
        return self._read("bootstrap.sasl", "--sasl-scram")

    @property
    def tls_bootstrap(self) -> str:
        """SSL listener, from DIR/bootstrap.tls."""
        return self._read("bootstrap.tls", "--tls")

    @property
    def sasl_ssl_bootstrap(self) -> str:
        """SASL_SSL listener, from DIR/bootstrap.sasl_ssl."""
        return self._read("bootstrap.sasl_ssl", "--sasl-ssl")

    @property
    def ca_file(self) -> Path:
        """The test CA (PEM) that signed the broker's certificate: the clients' ssl_cafile."""
        self._read("ca.pem", "--tls or --sasl-ssl")
        return self.directory / "ca.pem"

    @property
    def client_cert_file(self) -> Path:
        """A client certificate signed by :attr:`ca_file` (the broker requests, not requires, one)."""
        self._read("client.pem", "--tls or --sasl-ssl")
        return self.directory / "client.pem"

    @property
    def client_key_file(self) -> Path:
        self._read("client.key", "--tls or --sasl-ssl")
        return self.directory / "client.key"

    def _credentials(self) -> dict[str, str]:
        text = self._read("sasl.credentials", "--sasl-scram or --sasl-ssl")
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    @property
    def sasl_username(self) -> str:
        return self._credentials()["username"]

    @property
    def sasl_password(self) -> SecretStr:
        """The test user's password (a SecretStr: it does not show in repr or logs)."""
        return SecretStr(self._credentials()["password"])

    def connection(self, security_protocol: str = "PLAINTEXT", sasl_mechanism: str | None = None,
                   **overrides: object) -> KafkaConnection:
        """A :class:`KafkaConnection` to one of this broker's listeners with the test user and
        CA filled in, e.g. ``broker.connection("SASL_SSL", "SCRAM-SHA-512")``. ``overrides``
        replace any field (``password=...``, ``ssl_cafile=...``)."""
        proto = security_protocol.upper()
        bootstrap = {"PLAINTEXT": lambda: self.bootstrap or self._read("bootstrap", "start"),
                     "SASL_PLAINTEXT": lambda: self.sasl_bootstrap,
                     "SSL": lambda: self.tls_bootstrap,
                     "SASL_SSL": lambda: self.sasl_ssl_bootstrap}
        if proto not in bootstrap:
            raise PlaystreamError(f"unknown security protocol {security_protocol!r}")
        fields: dict[str, object] = {"bootstrap_servers": bootstrap[proto](),
                                     "security_protocol": proto}
        if proto.startswith("SASL_"):
            fields.update(sasl_mechanism=sasl_mechanism or "SCRAM-SHA-256",
                          username=self.sasl_username, password=self.sasl_password)
        if proto in ("SSL", "SASL_SSL"):
            fields["ssl_cafile"] = self.ca_file
        fields.update(overrides)
        return KafkaConnection(**fields)

    def __enter__(self) -> "LocalKafka":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
