"""S3 fixtures: one real S3Proxy per session, started with the project's own script
(deploy/s3/s3.sh) in a temp dir; no mocks. Registered in tests/conftest.py (pytest_plugins)."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest

from playstream.storage.locals3 import BUCKET, LocalS3


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    server = LocalS3(tmp_path_factory.mktemp("s3proxy"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: LocalS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The server's AWS_* variables set in the environment (as `eval "$(s3.sh env)"` would),
    with no other AWS configuration in reach, so boto3 finds everything through AWS_*."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3",
                "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    env = s3_server.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def s3_prefix() -> str:
    """A unique key prefix per test, so tests sharing the bucket never see each other."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def s3_bucket() -> str:
    return BUCKET
