"""Shared steps of the deriver tests."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


async def wait_derived(
    client: httpx.AsyncClient, ws: str, *, wait_s: float = 30.0, expect_total: int | None = None
) -> dict[str, Any]:
    """Poll queue status until nothing is pending (and ``expect_total`` units exist)."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        status = (await client.get(f"/v3/workspaces/{ws}/queue/status")).json()
        settled = status["pending_work_units"] == 0 and status["in_progress_work_units"] == 0
        if settled and (expect_total is None or status["total_work_units"] >= expect_total):
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"derivation did not finish: {status}")
        await asyncio.sleep(0.2)


async def conclusions(
    client: httpx.AsyncClient, ws: str, observer: str, observed: str
) -> list[str]:
    r = await client.post(
        f"/v3/workspaces/{ws}/conclusions/list?size=100",
        json={"filters": {"observer_id": observer, "observed_id": observed}},
    )
    assert r.status_code == 200, r.text
    return [c["content"] for c in r.json()["items"]]


async def say(
    client: httpx.AsyncClient, ws: str, session: str, *lines: tuple[str, str], **extra: Any
) -> list[dict[str, Any]]:
    r = await client.post(
        f"/v3/workspaces/{ws}/sessions/{session}/messages",
        json={"messages": [{"peer_id": p, "content": c, **extra} for p, c in lines]},
    )
    assert r.status_code == 201, r.text
    return list(r.json())
