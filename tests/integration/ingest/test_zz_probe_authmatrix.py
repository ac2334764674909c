import time
from tests.conftest import bearer

async def test_probe(auth_client, ws_id, db):
    admin = bearer(admin=True)
    for i in range(4):
        w = f"{ws_id}-{i}"
        for (p, body) in [("/v3/workspaces", {"id": w}), (f"/v3/workspaces/{w}/sessions", {"id": "s1", "peers": {"alice": {}, "bob": {}}}),
                          (f"/v3/workspaces/{w}/sessions/s1/messages", {"messages": [{"content": "hi", "peer_id": "alice"}]}),
                          (f"/v3/workspaces/{w}/peers", {"id": "carol"}), (f"/v3/workspaces/{w}/peers", {"id": "carol"})]:
            t = time.perf_counter()
            r = await auth_client.post(p, json=body, headers=admin)
            print(p.split("/")[-1], r.status_code, round((time.perf_counter() - t)*1000, 1))
    print((await (await db.execute("show fsync")).fetchone()), (await (await db.execute("show synchronous_commit")).fetchone()))
