"""The console in Debian's headless Chromium (driven by Playwright's Python package, whose wheel
carries its driver; no browser is downloaded) against a live all-in-one server with data.

The server runs with auth on, the deriver on (extractive reasoner, local embedder) and a fast
redelivery policy so a storage fault dead-letters a message within seconds. The scenario is the
breakfast / Diplomacy table: alice, bob and charlie share a table; alice and bob have a side
chat charlie never saw.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from libs.common.auth import create_jwt
from libs.common.migrate import upgrade_to_head
from tests.conftest import JWT_SECRET, InfraEndpoints
from tests.live_server import live_server

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("RAPPORT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
#: Set to a directory (e.g. docs/console) to write a PNG of every screen while the tests run.
SCREENSHOTS = os.environ.get("RAPPORT_CONSOLE_SCREENSHOTS")
PEERS = ("alice", "bob", "charlie")
TABLE = [
    ("alice", "I love pancakes with maple syrup for breakfast"),
    ("bob", "I always drink black coffee in the morning"),
    ("charlie", "I play Diplomacy every Friday night"),
    ("alice", "I am going to be peaceful this turn"),
]
SIDE_CHAT = [
    ("alice", "I am secretly going to attack Charlie in Moscow"),
    ("bob", "I will support your army in Warsaw"),
]


@dataclass(frozen=True)
class Console:
    base: str
    ws: str
    other_ws: str
    admin_key: str
    api: httpx.Client
    #: libpq DSN of the server's database (for fault injection).
    dsn: str

    def key(self, **claims: Any) -> str:
        return create_jwt(JWT_SECRET, **claims)

    def url(self, path: str) -> str:
        return f"{self.base}/console{path}"


def _wait_settled(api: httpx.Client, ws: str, total: int, wait_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    while True:
        status: dict[str, Any] = api.get(f"/v3/workspaces/{ws}/queue/status").json()
        settled = status["pending_work_units"] == 0 and status["in_progress_work_units"] == 0
        if settled and status["total_work_units"] >= total:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"derivation did not finish: {status}")
        time.sleep(0.3)


def _say(api: httpx.Client, ws: str, session: str, lines: list[tuple[str, str]]) -> None:
    r = api.post(
        f"/v3/workspaces/{ws}/sessions/{session}/messages",
        json={"messages": [{"peer_id": p, "content": c} for p, c in lines]},
    )
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def own_database(infra: InfraEndpoints) -> Iterator[InfraEndpoints]:
    """A database of this module's own: no other relay (e.g. one of an in-process app on a
    paused event loop while these synchronous tests run) can hold its outbox's leader lock."""
    name = f"rapport_console_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(infra.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = infra.database_url.rpartition("/")
    url = f"{base}/{name}"
    upgrade_to_head(url)
    try:
        yield dataclasses.replace(infra, database_url=url)
    finally:
        with psycopg.connect(infra.admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="module")
def console(own_database: InfraEndpoints) -> Iterator[Console]:
    infra = own_database
    with live_server(
        infra,
        RAPPORT_AUTH_ENABLED="true",
        RAPPORT_JWT_SECRET=JWT_SECRET,
        RAPPORT_DERIVER_ENABLED="true",
        RAPPORT_DERIVER_MAX_DELIVER="2",
        RAPPORT_DERIVER_BACKOFF_BASE_S="0.05",
        RAPPORT_DERIVER_BACKOFF_MAX_S="0.2",
    ) as base:
        admin = create_jwt(JWT_SECRET, admin=True)
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"}, timeout=30)
        ws = f"table-{uuid.uuid4().hex[:6]}"
        other = f"other-{uuid.uuid4().hex[:6]}"
        for w in (ws, other):
            assert api.post("/v3/workspaces", json={"id": w}).status_code == 201
        everyone = {p: {"observe_others": True} for p in PEERS}
        api.post(f"/v3/workspaces/{ws}/sessions", json={"id": "breakfast", "peers": everyone})
        api.post(
            f"/v3/workspaces/{ws}/sessions",
            json={"id": "side-chat", "peers": {p: {"observe_others": True} for p in PEERS[:2]}},
        )
        api.post(f"/v3/workspaces/{other}/sessions", json={"id": "secret", "peers": {"zed": {}}})
        _say(api, ws, "breakfast", TABLE)
        _say(api, ws, "side-chat", SIDE_CHAT)
        _say(api, other, "secret", [("zed", "The vault code is 4711")])
        _wait_settled(api, ws, total=len(TABLE) + len(SIDE_CHAT))
        try:
            yield Console(base=base, ws=ws, other_ws=other, admin_key=admin, api=api, dsn=infra.dsn)
        finally:
            api.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    profile = tempfile.mkdtemp(prefix="rapport-chromium-")
    with playwright_sync.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1360, "height": 900},
            device_scale_factor=1,
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    """A tab with no console cookie (every test logs in with the key it needs)."""
    browser.clear_cookies()
    tab = browser.new_page()
    try:
        yield tab
    finally:
        tab.close()


def login(page: Any, console: Console, key: str) -> None:
    page.goto(console.url("/login"))
    page.fill("textarea[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def shot(page: Any, name: str) -> None:
    """A PNG of the screen for docs/console.md (only with RAPPORT_CONSOLE_SCREENSHOTS)."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)
