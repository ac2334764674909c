"""The local multi-process mode (``make up``): ingest, two derivers, two dialectic processes and
context, each its own process, behind nginx with the gateway's route table. Two derivers share
the work: every message is derived exactly once (none twice, none missed)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from scripts import multiproc
from tests.conftest import InfraEndpoints

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
    reason="nginx is not installed (apt-get install -y nginx; .ci/run does it)",
)


@pytest.fixture(scope="module")
def cluster(
    infra: InfraEndpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[multiproc.Cluster]:
    stream, prefix = infra.private_stream()
    env = {
        "RAPPORT_DATABASE_URL": infra.database_url,
        "RAPPORT_NATS_URL": infra.nats_url,
        "RAPPORT_NATS_STREAM": stream,
        "RAPPORT_NATS_SUBJECT_PREFIX": prefix,
        "RAPPORT_LOG_LEVEL": "WARNING",
        "RAPPORT_LOG_JSON": "false",
        "RAPPORT_DB_POOL_SIZE": "3",
        "RAPPORT_OUTBOX_POLL_INTERVAL_S": "0.2",
    }
    data_dir = tmp_path_factory.mktemp("multiproc")
    data_dir.chmod(0o755)
    c = multiproc.start(env, data_dir, multiproc.free_port())
    yield c
    c.stop()


def _acks(metrics: str, consumer: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        m = re.match(r"rapport_consumer_messages_total\{(.*)\} ([0-9.e+]+)", line)
        if m and f'consumer="{consumer}"' in m.group(1) and 'outcome="ack"' in m.group(1):
            total += float(m.group(2))
    return total


async def test_two_derivers_share_the_work_exactly_once(
    cluster: multiproc.Cluster, infra: InfraEndpoints, ws_id: str
) -> None:
    assert len(cluster.ports("deriver")) == 2 and len(cluster.ports("dialectic")) == 2
    async with httpx.AsyncClient(base_url=cluster.proxy_url, timeout=30) as http:
        assert (await http.post("/v3/workspaces", json={"id": ws_id})).status_code == 201
        r = await http.post(
            f"/v3/workspaces/{ws_id}/sessions",
            json={"id": "chat", "peers": {"alice": {}, "bob": {"observe_others": True}}},
        )
        assert r.status_code == 201
        ids: list[str] = []
        for i in range(20):  # separate requests, so both derivers' pulls get deliveries
            speaker = "alice" if i % 2 == 0 else "bob"
            r = await http.post(
                f"/v3/workspaces/{ws_id}/sessions/chat/messages",
                json={
                    "messages": [
                        {
                            "peer_id": speaker,
                            "content": f"I live in city number {i} and I like tea {j}.",
                        }
                        for j in range(3)
                    ]
                },
            )
            assert r.status_code == 201, r.text
            ids += [m["id"] for m in r.json()]
            await asyncio.sleep(0.05)

        # Every message derived exactly once.
        deadline = asyncio.get_running_loop().time() + 90
        async with await psycopg.AsyncConnection.connect(infra.dsn, autocommit=True) as db:
            while True:
                rows = await (
                    await db.execute(
                        "SELECT message_id, status, attempts FROM derivation_status "
                        "WHERE workspace_id = %s",
                        (ws_id,),
                    )
                ).fetchall()
                if sum(1 for _, s, _ in rows if s == "done") == len(ids):
                    break
                assert asyncio.get_running_loop().time() < deadline, (
                    f"derived {len(rows)}/{len(ids)}"
                )
                await asyncio.sleep(0.3)
        assert {m for m, _, _ in rows} == set(ids), "a message was missed"
        # One derivation writes the status twice ("derived" after the observations, "done" after
        # indexing); a second derivation of the same message would write it again.
        assert all(a == 2 for _, _, a in rows), f"derived twice: {[r for r in rows if r[2] != 2]}"

        # Both deriver processes took part, and together acknowledged each event once.
        acks = []
        for port in cluster.ports("deriver"):
            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            acks.append(_acks(metrics, "representation"))
        assert sum(acks) == len(ids), acks
        assert all(a > 0 for a in acks), f"one deriver did all the work: {acks}"

        # The proxy routes context and dialectic routes to their own services.
        r = await http.get(f"/v3/workspaces/{ws_id}/sessions/chat/context", params={"tokens": 500})
        assert r.status_code == 200, r.text
        r = await http.post(
            f"/v3/workspaces/{ws_id}/peers/bob/chat", json={"query": "Where does alice live?"}
        )
        assert r.status_code == 200, r.text
        r = await http.get(f"/v3/workspaces/{ws_id}/queue/status")
        assert r.status_code == 200, r.text
        for service in ("context", "dialectic"):
            served = 0.0
            for port in cluster.ports(service):
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                served += sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("rapport_http_request_duration_seconds_count")
                    and "/v3/" in line
                )
            assert served >= 1, f"{service} served nothing through the proxy"


async def test_the_console_runs_as_its_own_process_behind_the_proxy(
    cluster: multiproc.Cluster, ws_id: str
) -> None:
    """/console goes to the console process, which calls the API back through the proxy (so
    the views route reaches the context service and the chat stream the dialectic one)."""
    assert len(cluster.ports("console")) == 1
    async with httpx.AsyncClient(base_url=cluster.proxy_url, timeout=30) as http:
        await http.post("/v3/workspaces", json={"id": ws_id})
        for peer in ("alice", "bob"):
            await http.post(f"/v3/workspaces/{ws_id}/peers", json={"id": peer})
        r = await http.post(
            f"/v3/workspaces/{ws_id}/conclusions",
            json={
                "conclusions": [
                    {"observer_id": "bob", "observed_id": "alice", "content": "alice likes tea"}
                ]
            },
        )
        assert r.status_code == 201, r.text
        r = await http.get("/console/")
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        # The shared database holds other tests' workspaces too (paged): find ours by its id.
        r = await http.get("/console/", params={"q": ws_id})
        assert r.status_code == 200 and ws_id in r.text
        r = await http.get(f"/console/w/{ws_id}/graph")
        assert r.status_code == 200, r.text
        assert 'data-observer="bob" data-observed="alice" data-conclusions="1"' in r.text
        r = await http.get("/console/static/console.css")
        assert r.status_code == 200 and "text/css" in r.headers["content-type"]
        async with http.stream(
            "POST", f"/console/w/{ws_id}/peers/bob/chat", json={"query": "What does alice like?"}
        ) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            body = (await stream.aread()).decode()
        frames = [json.loads(f.removeprefix("data: ")) for f in body.strip().split("\n\n")]
        assert len(frames) >= 2 and all(not f["done"] for f in frames[:-1])
        assert frames[-1]["done"] is True and "evidence" in frames[-1]
        assert "".join(f["delta"]["content"] for f in frames[:-1]).strip()
        [console_port] = cluster.ports("console")
        assert (await http.get(f"http://127.0.0.1:{console_port}/health")).status_code == 200
