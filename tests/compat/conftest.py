"""The newest official ``honcho-ai`` SDK against a real Rapport server over real HTTP.

One all-in-one server process (auth on, deriver on) serves the whole package; every test gets
a fresh workspace and a ``Honcho`` client holding an admin key, exactly as an application would
point the SDK at Rapport: ``Honcho(base_url=..., api_key=..., workspace_id=...)``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from honcho import Honcho

from libs.common.auth import create_jwt
from tests.conftest import JWT_SECRET, InfraEndpoints
from tests.live_server import live_server


@pytest.fixture(scope="package")
def base_url(infra: InfraEndpoints) -> Iterator[str]:
    with live_server(infra, RAPPORT_AUTH_ENABLED="true", RAPPORT_JWT_SECRET=JWT_SECRET) as url:
        yield url


@pytest.fixture(scope="package")
def admin_key() -> str:
    return create_jwt(JWT_SECRET, admin=True)


@pytest.fixture
def workspace_id() -> str:
    return f"compat-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(base_url: str, admin_key: str, workspace_id: str) -> Iterator[Honcho]:
    """A Honcho client on a fresh workspace (created lazily by the SDK's first call)."""
    yield Honcho(base_url=base_url, api_key=admin_key, workspace_id=workspace_id, max_retries=0)


def wait_for_deriver(client: Honcho, timeout: float = 60.0) -> None:
    """Poll the workspace's queue status until the deriver has nothing left to do."""
    deadline = time.monotonic() + timeout
    while True:
        status = client.queue_status()
        if status.pending_work_units == 0 and status.in_progress_work_units == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the deriver did not finish in {timeout}s: {status}")
        time.sleep(0.2)
