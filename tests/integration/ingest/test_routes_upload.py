"""POST …/messages/upload: text, markdown, JSON and PDF files become messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import AppFactory
from tests.integration.ingest._routes_helpers import (
    assert_422,
    make_pdf,
    make_session,
    make_workspace,
    message_seqs,
    ws_url,
)


def upload_url(ws: str, session: str = "s1") -> str:
    return ws_url(ws, f"/sessions/{session}/messages/upload")


async def upload(
    client: httpx.AsyncClient,
    ws: str,
    *,
    name: str,
    data: bytes,
    content_type: str | None,
    session: str = "s1",
    **form: str,
) -> httpx.Response:
    file: tuple[Any, ...] = (name, data) if content_type is None else (name, data, content_type)
    return await client.post(
        upload_url(ws, session), files={"file": file}, data={"peer_id": "alice", **form}
    )


@pytest.mark.parametrize(
    ("name", "content_type", "data", "expected"),
    [
        (
            "notes.txt",
            "text/plain; charset=utf-8",
            b"\xef\xbb\xbfFirst paragraph.\n\nSecond paragraph.\n",
            ["First paragraph.\n\nSecond paragraph."],
        ),
        ("readme.md", "text/markdown", b"# Title\n\n- item\n", ["# Title\n\n- item"]),
        ("readme.md", "application/octet-stream", b"*md by extension*", ["*md by extension*"]),
        (
            "list.json",
            "application/json",
            b'["one", "two", "  ", "three"]',
            ["one", "two", "three"],
        ),
        (
            "chat.json",
            None,
            json.dumps([{"content": "hi", "role": "user"}, {"content": "yo"}]).encode(),
            ["hi", "yo"],
        ),
        ("obj.json", "application/json", b'{"a": [1, 2]}', ['{\n  "a": [\n    1,\n    2\n  ]\n}']),
        (
            "doc.pdf",
            "application/pdf",
            make_pdf(["Hello PDF page one.", "Second page text."]),
            ["Hello PDF page one.\n\nSecond page text."],
        ),
        ("doc.bin", "application/octet-stream", make_pdf(["Sniffed PDF."]), ["Sniffed PDF."]),
    ],
    ids=[
        "txt",
        "md",
        "md-by-ext",
        "json-strings",
        "json-objects",
        "json-other",
        "pdf",
        "pdf-magic",
    ],
)
async def test_upload_turns_file_into_messages(
    client: httpx.AsyncClient,
    ws_id: str,
    db: Any,
    name: str,
    content_type: str | None,
    data: bytes,
    expected: list[str],
) -> None:
    await make_session(client, ws_id, "s1")
    r = await upload(client, ws_id, name=name, data=data, content_type=content_type)
    assert r.status_code == 201, r.text
    got = r.json()
    assert [m["content"] for m in got] == expected
    assert all(m["peer_id"] == "alice" and m["session_id"] == "s1" for m in got)
    assert all(m["workspace_id"] == ws_id and m["metadata"] == {} for m in got)
    seqs = await message_seqs(db, ws_id, "s1")
    assert [seqs[m["id"]] for m in got] == list(range(1, len(expected) + 1))
    listed = (await client.post(ws_url(ws_id, "/sessions/s1/messages/list"))).json()["items"]
    assert listed == got


async def test_upload_applies_metadata_created_at_and_author_joins(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_session(client, ws_id, "s1")
    r = await client.post(
        upload_url(ws_id),
        files={"file": ("a.json", b'["x", "y"]', "application/json")},
        data={
            "peer_id": "uploader",
            "metadata": json.dumps({"source": "import", "n": 2}),
            "configuration": json.dumps({"reasoning": {"enabled": False}}),
            "created_at": "2019-12-31T23:00:00+00:00",
        },
    )
    assert r.status_code == 201, r.text
    got = r.json()
    assert [m["content"] for m in got] == ["x", "y"]
    assert all(m["peer_id"] == "uploader" for m in got)
    assert all(m["metadata"] == {"source": "import", "n": 2} for m in got)
    when = datetime(2019, 12, 31, 23, tzinfo=UTC)
    assert all(datetime.fromisoformat(m["created_at"]) == when for m in got)
    peers = (await client.get(ws_url(ws_id, "/sessions/s1/peers"))).json()["items"]
    assert [p["id"] for p in peers] == ["uploader"]


async def test_upload_splits_long_text_across_batches(app_factory: AppFactory, ws_id: str) -> None:
    client = await app_factory(max_message_chars=30, max_messages_per_batch=2)
    await make_session(client, ws_id, "s1")
    text = "Sentence number one is here. Sentence two follows it.\n\nA paragraph. And more text."
    r = await upload(client, ws_id, name="long.txt", data=text.encode(), content_type="text/plain")
    assert r.status_code == 201, r.text
    pieces = [m["content"] for m in r.json()]
    assert len(pieces) > 2  # more than one batch
    assert all(len(p) <= 30 for p in pieces)
    assert " ".join(pieces).split() == text.split()
    listed = await client.post(ws_url(ws_id, "/sessions/s1/messages/list"), params={"size": 100})
    assert [m["content"] for m in listed.json()["items"]] == pieces


async def test_upload_too_large_is_413(app_factory: AppFactory, ws_id: str, db: Any) -> None:
    client = await app_factory(max_upload_bytes=1024)
    await make_session(client, ws_id, "s1")
    r = await upload(client, ws_id, name="big.txt", data=b"a " * 1000, content_type="text/plain")
    assert r.status_code == 413
    assert r.json() == {"detail": "File too large; the limit is 1024 bytes"}
    ok = await upload(client, ws_id, name="ok.txt", data=b"b" * 1024, content_type="text/plain")
    assert ok.status_code == 201, ok.text
    assert len(await message_seqs(db, ws_id, "s1")) == 1


@pytest.mark.parametrize(
    ("name", "content_type", "fragment"),
    [
        ("photo.png", "image/png", "has type 'image/png', which is not supported"),
        ("sheet.xlsx", "application/octet-stream", "has extension '.xlsx', which is not supported"),
        ("page.html", "text/html", "has type 'text/html'"),
    ],
)
async def test_upload_unsupported_type_is_415(
    client: httpx.AsyncClient, ws_id: str, name: str, content_type: str, fragment: str
) -> None:
    await make_session(client, ws_id, "s1")
    r = await upload(client, ws_id, name=name, data=b"some bytes", content_type=content_type)
    assert r.status_code == 415
    assert fragment in r.json()["detail"]
    assert "supported types" in r.json()["detail"]


@pytest.mark.parametrize(
    ("form", "fragment"),
    [
        ({"metadata": "{not json"}, "Form field 'metadata' is not valid JSON"),
        ({"metadata": "[1, 2]"}, "Form field 'metadata' must be a JSON object"),
        ({"configuration": "nope"}, "Form field 'configuration' is not valid JSON"),
        ({"configuration": '{"bogus": 1}'}, "Invalid upload fields"),
        ({"created_at": "last tuesday"}, "is not an ISO-8601 date-time"),
        ({"peer_id": "bad id"}, "pattern"),
        ({"peer_id": ""}, "peer_id"),
    ],
    ids=[
        "meta-not-json",
        "meta-list",
        "config-not-json",
        "config-bad-key",
        "bad-date",
        "bad-peer",
        "empty-peer",
    ],
)
async def test_upload_rejects_bad_form_fields(
    client: httpx.AsyncClient, ws_id: str, db: Any, form: dict[str, str], fragment: str
) -> None:
    await make_session(client, ws_id, "s1")
    r = await upload(client, ws_id, name="a.txt", data=b"hello", content_type="text/plain", **form)
    assert_422(r, fragment)
    assert await message_seqs(db, ws_id, "s1") == {}


@pytest.mark.parametrize("missing", ["file", "peer_id"])
async def test_upload_without_required_part_is_422(
    client: httpx.AsyncClient, ws_id: str, missing: str
) -> None:
    await make_session(client, ws_id, "s1")
    files = {"file": ("a.txt", b"hello", "text/plain")}
    data = {"peer_id": "alice"}
    if missing == "file":
        r = await client.post(upload_url(ws_id), data=data, files={"other": ("x", b"y")})
    else:
        r = await client.post(upload_url(ws_id), files=files, data={"metadata": "{}"})
    assert_422(r, missing)


@pytest.mark.parametrize(
    ("name", "content_type", "data", "fragment"),
    [
        ("empty.txt", "text/plain", b"", "is empty"),
        ("blank.txt", "text/plain", b"   \n\n  ", "contains no text"),
        ("bad.json", "application/json", b"{oops", "is not valid JSON"),
        ("broken.pdf", "application/pdf", b"%PDF-1.4 garbage", "could not be read as a PDF"),
        ("latin1.txt", "text/plain", "caf\u00e9".encode("latin-1"), "is not valid UTF-8"),
    ],
    ids=["empty", "blank", "bad-json", "broken-pdf", "not-utf8"],
)
async def test_upload_unreadable_file_is_400(
    client: httpx.AsyncClient, ws_id: str, name: str, content_type: str, data: bytes, fragment: str
) -> None:
    await make_session(client, ws_id, "s1")
    r = await upload(client, ws_id, name=name, data=data, content_type=content_type)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["detail"]


async def test_upload_to_unknown_session_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_workspace(client, ws_id)
    r = await upload(
        client, ws_id, name="a.txt", data=b"x", content_type="text/plain", session="no"
    )
    assert r.status_code == 404
    assert r.json() == {"detail": f"Session 'no' not found in workspace '{ws_id}'"}
