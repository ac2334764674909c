"""Small builders shared by the ingest route tests (test_routes_*.py)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import InfraEndpoints, StreamEvent, read_stream

__all__ = [
    "add_messages",
    "assert_422",
    "make_pdf",
    "make_session",
    "make_workspace",
    "message_seqs",
    "read_events",
    "ws_url",
]


async def read_events(
    infra: InfraEndpoints, subject: str, *, expect: int | None = None, wait_s: float = 15.0
) -> list[StreamEvent]:
    """``read_stream``, retried when nats-py's ``fetch`` leaks a bare ``TimeoutError`` (its
    lingering pull request can time out with ``asyncio.TimeoutError``, which ``read_stream``
    does not catch)."""
    for attempt in range(5):
        try:
            return await read_stream(infra, subject, expect=expect, wait_s=wait_s)
        except TimeoutError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def ws_url(ws: str, rest: str = "") -> str:
    return f"/v3/workspaces/{ws}{rest}"


async def make_workspace(client: httpx.AsyncClient, ws: str, **body: Any) -> dict[str, Any]:
    r = await client.post("/v3/workspaces", json={"id": ws, **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def make_session(
    client: httpx.AsyncClient,
    ws: str,
    session: str = "s1",
    *,
    peers: dict[str, dict[str, Any]] | None = None,
    ensure_workspace: bool = True,
    **body: Any,
) -> dict[str, Any]:
    if ensure_workspace:
        r = await client.post("/v3/workspaces", json={"id": ws})
        assert r.status_code in (200, 201), r.text
    payload: dict[str, Any] = {"id": session, **body}
    if peers is not None:
        payload["peers"] = peers
    r = await client.post(ws_url(ws, "/sessions"), json=payload)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def add_messages(
    client: httpx.AsyncClient, ws: str, session: str, *messages: tuple[str, str] | dict[str, Any]
) -> list[dict[str, Any]]:
    """Post one batch; each message is ``(peer_id, content)`` or a full dict."""
    body = [{"peer_id": m[0], "content": m[1]} if isinstance(m, tuple) else m for m in messages]
    r = await client.post(ws_url(ws, f"/sessions/{session}/messages"), json={"messages": body})
    assert r.status_code == 201, r.text
    return list(r.json())


async def message_seqs(db: Any, ws: str, session: str) -> dict[str, int]:
    """``{message id: seq}`` as stored in the messages table."""
    cur = await db.execute(
        "select id, seq from messages where workspace_id = %s and session_id = %s",
        (ws, session),
    )
    return {row[0]: row[1] for row in await cur.fetchall()}


def assert_422(r: httpx.Response, *fragments: str) -> None:
    """A 422 whose detail (string or FastAPI list) mentions every fragment."""
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    text = detail if isinstance(detail, str) else " ".join(str(e) for e in detail)
    if isinstance(detail, list):
        assert all({"type", "loc", "msg"} <= set(e) for e in detail), detail
    for fragment in fragments:
        assert fragment in text, (fragment, detail)


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page (correct xref offsets)."""
    n = len(pages)
    font_obj = 3 + 2 * n
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        (
            "<< /Type /Pages /Kids ["
            + " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
            + f"] /Count {n} >>"
        ).encode(),
    ]
    for i, text in enumerate(pages):
        content = f"BT /F1 12 Tf 72 720 Td ({_pdf_escape(text)}) Tj ET".encode()
        objects.append(
            (
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                f"/Resources << /Font << /F1 {font_obj} 0 R >> >> /Contents {4 + 2 * i} 0 R >>"
            ).encode()
        )
        objects.append(
            b"<< /Length "
            + str(len(content)).encode()
            + b" >>\nstream\n"
            + content
            + b"\nendstream"
        )
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)
