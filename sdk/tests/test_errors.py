"""Error mapping: one exception type per status, with status_code, detail and body."""

from __future__ import annotations

import httpx
import pytest

import rapport
from rapport import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RapportError,
    RateLimitError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
)

from .conftest import FakeServer

PEERS = "/v3/workspaces/ws/peers"

STATUS_TYPES = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (409, ConflictError),
    (413, PayloadTooLargeError),
    (415, UnsupportedMediaTypeError),
    (422, UnprocessableEntityError),
    (429, RateLimitError),
    (500, InternalServerError),
    (501, InternalServerError),
    (502, InternalServerError),
    (503, InternalServerError),
    (504, InternalServerError),
    (599, InternalServerError),
]


@pytest.mark.parametrize(("status", "error_type"), STATUS_TYPES)
def test_each_status_maps_to_its_error(
    server: FakeServer, status: int, error_type: type[APIStatusError]
) -> None:
    server.json("POST", PEERS, {"detail": f"nope {status}"}, status=status)
    with server.sync_client(max_retries=0) as client, pytest.raises(error_type) as caught:
        client.peer("alice")
    error = caught.value
    assert type(error) is error_type
    assert isinstance(error, APIStatusError)
    assert isinstance(error, RapportError)
    assert error.status_code == status
    assert error.detail == f"nope {status}"
    assert error.body == {"detail": f"nope {status}"}
    assert error.response is not None and error.response.status_code == status
    assert str(error) == f"{status}: nope {status}"


@pytest.mark.parametrize(("status", "error_type"), STATUS_TYPES)
async def test_each_status_maps_to_its_error_async(
    server: FakeServer, status: int, error_type: type[APIStatusError]
) -> None:
    server.json("POST", PEERS, {"detail": "bad"}, status=status)
    async with server.async_client(max_retries=0) as client:
        with pytest.raises(error_type) as caught:
            await client.peer("alice")
    assert type(caught.value) is error_type
    assert caught.value.status_code == status
    assert caught.value.detail == "bad"


def test_unlisted_client_error_is_the_base_status_error(server: FakeServer) -> None:
    server.json("POST", PEERS, {"detail": "I am a teapot"}, status=418)
    with server.sync_client() as client, pytest.raises(APIStatusError) as caught:
        client.peer("alice")
    assert type(caught.value) is APIStatusError
    assert caught.value.status_code == 418
    assert caught.value.detail == "I am a teapot"


def test_fastapi_validation_list_is_flattened(server: FakeServer) -> None:
    body = {
        "detail": [
            {"type": "string_too_short", "loc": ["body", "id"], "msg": "too short"},
            {"type": "missing", "loc": ["query", "size"], "msg": "Field required"},
        ]
    }
    server.json("POST", PEERS, body, status=422)
    with server.sync_client() as client, pytest.raises(UnprocessableEntityError) as caught:
        client.peer("alice")
    assert caught.value.detail == "body.id: too short; query.size: Field required"
    assert caught.value.body == body


def test_message_and_error_keys_are_fallbacks(server: FakeServer) -> None:
    server.json("POST", PEERS, {"message": "from message"}, status=400)
    with server.sync_client() as client, pytest.raises(BadRequestError) as caught:
        client.peer("alice")
    assert caught.value.detail == "from message"

    server.json("POST", PEERS, {"error": "from error"}, status=400)
    with server.sync_client() as client, pytest.raises(BadRequestError) as caught:
        client.peer("alice")
    assert caught.value.detail == "from error"


def test_non_json_error_body_keeps_text(server: FakeServer) -> None:
    server.on("POST", PEERS, httpx.Response(502, text="Bad Gateway from nginx"))
    with server.sync_client(max_retries=0) as client, pytest.raises(InternalServerError) as caught:
        client.peer("alice")
    assert caught.value.detail == "Bad Gateway from nginx"
    assert caught.value.body == "Bad Gateway from nginx"


def test_empty_error_body_says_the_status(server: FakeServer) -> None:
    server.on("POST", PEERS, httpx.Response(403))
    with server.sync_client() as client, pytest.raises(PermissionDeniedError) as caught:
        client.peer("alice")
    assert caught.value.detail == "HTTP 403"
    assert caught.value.body is None


def test_rate_limit_error_carries_retry_after(server: FakeServer) -> None:
    server.on(
        "POST",
        PEERS,
        httpx.Response(429, json={"detail": "slow down"}, headers={"Retry-After": "7"}),
    )
    with server.sync_client(max_retries=0) as client, pytest.raises(RateLimitError) as caught:
        client.peer("alice")
    assert caught.value.retry_after == 7.0
    assert caught.value.detail == "slow down"


def test_connection_failure_is_api_connection_error(server: FakeServer) -> None:
    server.on("POST", PEERS, httpx.ConnectError("refused"))
    with server.sync_client(max_retries=0) as client, pytest.raises(APIConnectionError) as caught:
        client.peer("alice")
    assert not isinstance(caught.value, APITimeoutError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_timeout_is_api_timeout_error(server: FakeServer) -> None:
    server.on("POST", PEERS, httpx.ReadTimeout("slow"))
    with server.sync_client(max_retries=0) as client, pytest.raises(APITimeoutError) as caught:
        client.peer("alice")
    assert isinstance(caught.value, APIConnectionError)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


def test_success_with_non_json_body_is_a_validation_error(server: FakeServer) -> None:
    server.on("POST", PEERS, httpx.Response(200, text="<html>proxy page</html>"))
    with server.sync_client() as client, pytest.raises(APIResponseValidationError) as caught:
        client.peer("alice")
    assert caught.value.status_code == 200
    assert caught.value.body == "<html>proxy page</html>"


def test_success_with_wrong_shape_is_a_validation_error(server: FakeServer) -> None:
    server.json("POST", PEERS, {"id": "alice"})  # no workspace_id, no created_at
    with server.sync_client() as client, pytest.raises(APIResponseValidationError) as caught:
        client.peer("alice")
    assert caught.value.body == {"id": "alice"}


def test_unknown_response_fields_are_ignored(server: FakeServer) -> None:
    from .conftest import peer_json

    server.json("POST", PEERS, peer_json("alice", uid="abc", brand_new_field=[1, 2]))
    with server.sync_client() as client:
        assert client.peer("alice").info == rapport.PeerInfo.model_validate(peer_json("alice"))


def test_every_error_is_exported_and_documented() -> None:
    for name in rapport.__all__:
        obj = getattr(rapport, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, RapportError)
            assert obj.__doc__
