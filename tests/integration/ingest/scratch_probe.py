from __future__ import annotations

import json
import httpx


async def test_probe(client: httpx.AsyncClient, ws_id: str, db) -> None:
    out = []
    def rec(name, r):
        out.append(f"{name}: {r.status_code} {r.text[:300]}")
    async def call(name, coro):
        try:
            rec(name, await coro)
        except Exception as e:
            out.append(f"{name}: EXC {type(e).__name__} {str(e)[:200]}")
    await client.post("/v3/workspaces", json={"id": ws_id})
    await client.post(f"/v3/workspaces/{ws_id}/sessions", json={"id": "s1"})
    M = f"/v3/workspaces/{ws_id}/sessions/s1/messages"
    H = {"content-type": "application/json"}
    await call("empty list body", client.post(f"{M}/list", content=b"", headers=H))
    await call("null filters", client.post(f"{M}/list", json={"filters": None}))
    await call("filters list", client.post(f"{M}/list", json={"filters": [1]}))
    await call("body array", client.post(f"{M}/list", json=[1]))
    for f in [
        {"metadata": {"a": float("nan")}},
        {"id": "a\u0000b"},
        {"metadata": {"a": "x\u0000"}},
        {"metadata": {"score": {"gte": 10**400}}},
        {"token_count": {"gte": 10**30}},
        {"created_at": {"gte": "2024-01-01"}},
        {"created_at": {"gte": "0000-01-01"}},
        {"NOT": [{"metadata": {"score": {"gte": 3}}}]},
        {"metadata": {"k": {"contains": "\u0000"}}},
    ]:
        body = json.dumps({"filters": f}).replace("NaN", "NaN")
        await call(f"filter {str(f)[:60]}", client.post(f"{M}/list", content=body.encode(), headers=H))
    deep = '{"filters": ' + '{"AND":[' * 3000 + '{}' + ']}' * 3000 + '}'
    await call("deep json", client.post(f"{M}/list", content=deep.encode(), headers=H))
    deepm = '{"filters": {"metadata": ' + '{"a":' * 3000 + '1' + '}' * 3000 + '}}'
    await call("deep metadata filter", client.post(f"{M}/list", content=deepm.encode(), headers=H))
    deepm = '{"filters": {"metadata": ' + '{"a":' * 500 + '1' + '}' * 500 + '}}'
    await call("deep metadata filter 500", client.post(f"{M}/list", content=deepm.encode(), headers=H))
    for raw in [
        '{"messages":[{"peer_id":"a","content":"\\ud800"}]}',
        '{"messages":[{"peer_id":"a","content":"x","metadata":{"k":"\\ud800"}}]}',
        '{"messages":[{"peer_id":"a","content":"x","metadata":{"\\ud800":1}}]}',
        '{"messages":[{"peer_id":"a","content":"x","metadata":{"k":100000000000000000000000000}}]}',
        '{"messages":[{"peer_id":"a","content":"x","created_at":"9999-12-31T23:59:59-12:00"}]}',
        '{"messages":[{"peer_id":"a","content":"x","created_at":"0001-01-01T00:00:00+01:00"}]}',
        '{"messages":[{"peer_id":"a","content":"x","created_at":1e20}]}',
        '{"messages":[{"peer_id":"a","content":"x","created_at":NaN}]}',
        '{"messages":[{"peer_id":"a","content":"x","metadata":{"a":NaN}}]}',
        '{"messages":[{"peer_id":"a","content":1}]}',
    ]:
        await call(f"post {raw[:80]}", client.post(M, content=raw.encode(), headers=H))
    await call("filters ud800", client.post(f"{M}/list", content=b'{"filters":{"peer_id":"\\ud800"}}', headers=H))
    await call("filters md ud800", client.post(f"{M}/list", content=b'{"filters":{"metadata":{"k":"\\ud800"}}}', headers=H))
    await call("ws ud800", client.post("/v3/workspaces", content=b'{"id":"x","metadata":{"k":"\\ud800"}}', headers=H))
    await call("ws conf", client.post("/v3/workspaces", content=b'{"id":"y","configuration":{"custom_instructions":"\\ud800"}}', headers=H))
    await call("path empty", client.post("/v3/workspaces//peers", json={"id": "p"}))
    await call("path slash", client.post("/v3/workspaces/a%2Fb/peers", json={"id": "p"}))
    await call("path nul", client.post("/v3/workspaces/a%00b/peers", json={"id": "p"}))
    await call("path ud800", client.post("/v3/workspaces/a%ED%A0%80b/peers", json={"id": "p"}))
    await call("path dots", client.post("/v3/workspaces/../peers", json={"id": "p"}))
    await call("unknown sess get", client.get(f"/v3/workspaces/{ws_id}/sessions/nope/messages/abc"))
    await call("unknown ws msg", client.post(f"/v3/workspaces/nope/sessions/s1/messages", json={"messages":[{"peer_id":"a","content":"x"}]}))
    await call("malformed", client.post("/v3/workspaces", content=b'{"id":', headers=H))
    await call("peers map bad", client.post(f"/v3/workspaces/{ws_id}/sessions", json={"id":"s2","peers":{"alice":1}}))
    await call("text/plain", client.post("/v3/workspaces", content=b'{"id":"zz"}', headers={"content-type":"text/plain"}))
    await call("peers ud800 key", client.post(f"/v3/workspaces/{ws_id}/sessions", content=b'{"id":"s3","peers":{"\\ud800":{}}}', headers=H))
    await call("peers nul key", client.post(f"/v3/workspaces/{ws_id}/sessions", content=b'{"id":"s3","peers":{"a\\u0000":{}}}', headers=H))
    await call("unknown key ud800", client.post(f"/v3/workspaces/{ws_id}/sessions", content=b'{"id":"s3","\\ud800":1}', headers=H))
    await call("md8", client.post("/v3/workspaces", json={"id": "d8", "metadata": {"a": {"a": {"a": {"a": {"a": {"a": {"a": 1}}}}}}}}))
    r = await db.execute("select count(*) from messages")
    out.append(str(await r.fetchone()))
    open("/tmp/probe/out.txt", "w").write("\n".join(out))
