"""libs.common.auth: minting and verifying keys, the scope rules, the Authorization header,
and the AuthSettings guard against default or short secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jwt
import pydantic
import pytest

from allinone.app import AllInOneSettings
from libs.common.auth import (
    ADMIN,
    Principal,
    bearer_token,
    create_jwt,
    decode_jwt,
)
from libs.common.errors import AuthenticationError, ForbiddenError
from libs.common.settings import DEFAULT_DEV_JWT_SECRET, AuthSettings
from services.ingest.app import IngestSettings

SECRET = "unit-secret-" + "z" * 60  # ≥ 64 bytes, so HS512 (refused) is not weak-keyed
NOW = datetime.now(UTC)
PAST = NOW - timedelta(minutes=1)
FUTURE = NOW + timedelta(hours=1)

WORKSPACE = Principal(workspace_id="w")
PEER = Principal(workspace_id="w", peer_id="alice")
SESSION = Principal(workspace_id="w", session_id="s1")
OTHER_WORKSPACE = Principal(workspace_id="w2")


def signed(claims: Any, *, secret: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], payload: bytes, secret: str = SECRET) -> str:
    """A correctly HS256-signed token around an arbitrary payload (PyJWT only signs dicts)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(payload)}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def refused(token: str) -> str:
    with pytest.raises(AuthenticationError) as info:
        decode_jwt(token, SECRET)
    assert info.value.status_code == 401
    return info.value.detail


# -- Principal.kind and the synchronous checks ---------------------------------------------
@pytest.mark.parametrize(
    ("principal", "kind"),
    [(ADMIN, "admin"), (WORKSPACE, "workspace"), (PEER, "peer"), (SESSION, "session")],
)
def test_kind(principal: Principal, kind: str) -> None:
    assert principal.kind == kind


def test_require_admin_accepts_admin() -> None:
    ADMIN.require_admin()


@pytest.mark.parametrize("principal", [WORKSPACE, PEER, SESSION])
def test_require_admin_refuses_every_scoped_key(principal: Principal) -> None:
    with pytest.raises(ForbiddenError, match=r"^This route needs an admin key$"):
        principal.require_admin()


@pytest.mark.parametrize("principal", [ADMIN, WORKSPACE])
def test_require_workspace_accepts_admin_and_the_workspace_key(principal: Principal) -> None:
    principal.require_workspace("w")


@pytest.mark.parametrize(
    ("principal", "detail"),
    [
        (OTHER_WORKSPACE, "This key has no access to workspace 'w'"),
        (PEER, "This peer-scoped key cannot use workspace-wide routes; use a workspace key"),
        (SESSION, "This session-scoped key cannot use workspace-wide routes; use a workspace key"),
    ],
)
def test_require_workspace_refuses(principal: Principal, detail: str) -> None:
    with pytest.raises(ForbiddenError) as info:
        principal.require_workspace("w")
    assert info.value.detail == detail
    assert info.value.status_code == 403


@pytest.mark.parametrize("principal", [ADMIN, WORKSPACE, PEER, SESSION])
def test_require_workspace_member_accepts_any_key_of_the_workspace(principal: Principal) -> None:
    principal.require_workspace_member("w")


@pytest.mark.parametrize("principal", [OTHER_WORKSPACE, PEER, SESSION, WORKSPACE])
def test_require_workspace_member_refuses_keys_of_another_workspace(
    principal: Principal,
) -> None:
    with pytest.raises(ForbiddenError, match=r"^This key has no access to workspace 'elsewhere'$"):
        principal.require_workspace_member("elsewhere")


@pytest.mark.parametrize(
    ("principal", "peer_id"),
    [(ADMIN, "bob"), (WORKSPACE, "bob"), (WORKSPACE, "alice"), (PEER, "alice")],
)
def test_require_peer_accepts(principal: Principal, peer_id: str) -> None:
    principal.require_peer("w", peer_id)


@pytest.mark.parametrize(
    ("principal", "peer_id", "detail"),
    [
        (PEER, "bob", "This key has no access to peer 'bob'"),
        (SESSION, "alice", "This key has no access to peer 'alice'"),
        (OTHER_WORKSPACE, "alice", "This key has no access to workspace 'w'"),
        (Principal(workspace_id="w2", peer_id="alice"), "alice", "This key has no access to "
         "workspace 'w'"),
    ],
)  # fmt: skip
def test_require_peer_refuses(principal: Principal, peer_id: str, detail: str) -> None:
    with pytest.raises(ForbiddenError) as info:
        principal.require_peer("w", peer_id)
    assert info.value.detail == detail


# -- require_session -------------------------------------------------------------------------
def membership(*members: str) -> tuple[Callable[[str], Awaitable[bool]], list[str]]:
    """An ``is_member`` callback and the list of peer ids it was asked about."""
    asked: list[str] = []

    async def is_member(peer_id: str) -> bool:
        asked.append(peer_id)
        return peer_id in members

    return is_member, asked


@pytest.mark.parametrize("write", [False, True])
@pytest.mark.parametrize("principal", [ADMIN, WORKSPACE, SESSION])
async def test_require_session_accepts_workspace_level_and_own_session_keys(
    principal: Principal, write: bool
) -> None:
    is_member, asked = membership()
    await principal.require_session("w", "s1", write=write, is_member=is_member)
    assert asked == []  # membership is only looked up for peer keys


async def test_require_session_lets_a_member_peer_read() -> None:
    is_member, asked = membership("alice")
    await PEER.require_session("w", "s1", write=False, is_member=is_member)
    assert asked == ["alice"]


@pytest.mark.parametrize(
    ("principal", "session_id", "write", "members", "detail", "looked_up"),
    [
        (PEER, "s1", True, ("alice",), "A peer-scoped key can read sessions but not change them",
         []),
        (PEER, "s2", False, ("bob",), "Peer 'alice' is not a member of session 's2'", ["alice"]),
        (SESSION, "s2", False, (), "This key has no access to session 's2'", []),
        (SESSION, "s2", True, (), "This key has no access to session 's2'", []),
        (OTHER_WORKSPACE, "s1", False, (), "This key has no access to workspace 'w'", []),
        (Principal(workspace_id="w2", peer_id="alice"), "s1", False, ("alice",),
         "This key has no access to workspace 'w'", []),
    ],
)  # fmt: skip
async def test_require_session_refuses(
    principal: Principal,
    session_id: str,
    write: bool,
    members: tuple[str, ...],
    detail: str,
    looked_up: list[str],
) -> None:
    is_member, asked = membership(*members)
    with pytest.raises(ForbiddenError) as info:
        await principal.require_session("w", session_id, write=write, is_member=is_member)
    assert info.value.detail == detail
    assert asked == looked_up


# -- create_jwt / decode_jwt round trips ------------------------------------------------------
@pytest.mark.parametrize(
    ("claims", "principal"),
    [
        ({"admin": True}, ADMIN),
        ({"workspace_id": "w"}, WORKSPACE),
        ({"workspace_id": "w", "peer_id": "alice"}, PEER),
        ({"workspace_id": "w", "session_id": "s1"}, SESSION),
        ({"workspace_id": "w", "expires_at": FUTURE}, WORKSPACE),
    ],
)
def test_minted_key_decodes_to_its_principal(claims: dict[str, Any], principal: Principal) -> None:
    assert decode_jwt(create_jwt(SECRET, **claims), SECRET) == principal


def test_minted_key_is_hs256_with_integer_exp() -> None:
    token = create_jwt(SECRET, workspace_id="w", expires_at=FUTURE)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["w"] == "w"
    assert claims["exp"] == int(FUTURE.timestamp())


def test_minted_key_treats_a_naive_expiry_as_utc() -> None:
    naive = datetime(2099, 1, 2, 3, 4, 5)
    claims = jwt.decode(create_jwt(SECRET, admin=True, expires_at=naive), SECRET, ["HS256"])
    assert claims["exp"] == int(naive.replace(tzinfo=UTC).timestamp())


def test_minted_key_without_expiry_has_no_exp_claim() -> None:
    claims = jwt.decode(create_jwt(SECRET, workspace_id="w"), SECRET, ["HS256"])
    assert "exp" not in claims
    assert set(claims) == {"t", "w"}


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"peer_id": "alice"}, "peer and session keys need a workspace"),
        ({"session_id": "s1"}, "peer and session keys need a workspace"),
        ({"workspace_id": "w", "peer_id": "a", "session_id": "s"}, "a peer or a session, not both"),
    ],
)
def test_create_jwt_refuses_impossible_scopes(claims: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_jwt(SECRET, **claims)


# -- decode_jwt: expiry -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "exp",
    [
        int(PAST.timestamp()),
        PAST.timestamp(),  # float NumericDate
        PAST.isoformat(),  # ISO string with offset
        PAST.isoformat().replace("+00:00", "Z"),
        PAST.replace(tzinfo=None).isoformat(),  # naive ISO string: UTC
        "2001-01-01",
    ],
    ids=["int", "float", "iso-offset", "iso-z", "iso-naive", "iso-date"],
)
def test_expired_key_is_refused(exp: Any) -> None:
    assert refused(signed({"w": "w", "exp": exp})) == "Token expired"


def test_expired_admin_key_is_refused() -> None:
    assert refused(create_jwt(SECRET, admin=True, expires_at=PAST)) == "Token expired"


@pytest.mark.parametrize(
    "exp",
    [int(FUTURE.timestamp()), FUTURE.isoformat(), FUTURE.replace(tzinfo=None).isoformat(), None],
    ids=["int", "iso-offset", "iso-naive", "null"],
)
def test_unexpired_key_is_accepted(exp: Any) -> None:
    assert decode_jwt(signed({"w": "w", "exp": exp}), SECRET) == WORKSPACE


def test_iso_expiry_offset_is_honoured() -> None:
    """An hour from now written in UTC-05:00 is still an hour from now."""
    minus5 = FUTURE.astimezone(timezone(timedelta(hours=-5)))
    assert decode_jwt(signed({"w": "w", "exp": minus5.isoformat()}), SECRET) == WORKSPACE


@pytest.mark.parametrize(
    "exp",
    [True, False, "soon", "", [1], {"at": 1}, 1e20, -1e20],
    ids=["true", "false", "word", "empty", "list", "object", "huge", "huge-negative"],
)
def test_malformed_expiry_is_a_401(exp: Any) -> None:
    assert refused(signed({"w": "w", "exp": exp})) == "Invalid token: malformed 'exp' claim"


def test_nan_expiry_is_a_401() -> None:
    token = hand_signed({"alg": "HS256", "typ": "JWT"}, b'{"w": "w", "exp": NaN}')
    assert refused(token) == "Invalid token: malformed 'exp' claim"


# -- decode_jwt: forged and malformed tokens --------------------------------------------------
def test_wrong_secret_is_refused() -> None:
    token = signed({"ad": True}, secret="another-secret-" + "q" * 40)
    assert refused(token) == "Invalid token: Signature verification failed"


def test_alg_none_is_refused() -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    token = f"{header}.{_b64(json.dumps({'ad': True}).encode())}."
    assert refused(token) == "Invalid token: The specified alg value is not allowed"


def test_other_hmac_algorithm_is_refused_even_with_the_right_secret() -> None:
    token = signed({"ad": True}, alg="HS512")
    assert refused(token) == "Invalid token: The specified alg value is not allowed"


@pytest.mark.parametrize(
    ("original", "edit"),
    [({"w": "w"}, {"w": "w2"}), ({"w": "w", "p": "alice"}, {"ad": True}), ({"w": "w"}, {"exp": 0})],
    ids=["workspace", "to-admin", "exp"],
)
def test_payload_edited_after_signing_is_refused(
    original: dict[str, Any], edit: dict[str, Any]
) -> None:
    header, _, signature = signed(original).split(".")
    forged = f"{header}.{_b64(json.dumps({**original, **edit}).encode())}.{signature}"
    assert refused(forged) == "Invalid token: Signature verification failed"


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        ("garbage", "Invalid token: Not enough segments"),
        ("a.b.c", "Invalid token: Invalid header padding"),
        ("", "Invalid token: Not enough segments"),
    ],
)
def test_garbage_is_refused(token: str, detail: str) -> None:
    assert refused(token) == detail


def test_non_object_payload_is_refused() -> None:
    token = hand_signed({"alg": "HS256", "typ": "JWT"}, b"[1, 2]")
    assert refused(token).startswith("Invalid token: ")


# -- decode_jwt: claims -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "claims",
    [{}, {"t": "x"}, {"p": "alice"}, {"s": "s1"}, {"ad": "true"}, {"ad": 1}, {"ad": False}],
    ids=["empty", "only-t", "peer-without-w", "session-without-w", "ad-str", "ad-int", "ad-false"],
)
def test_key_without_scope_is_refused(claims: dict[str, Any]) -> None:
    assert refused(signed(claims)) == "Invalid token: it grants no scope (no 'ad' or 'w' claim)"


@pytest.mark.parametrize(
    ("claims", "name"),
    [
        ({"w": ""}, "w"),
        ({"w": 7}, "w"),
        ({"w": ["w"]}, "w"),
        ({"w": "w", "p": ""}, "p"),
        ({"w": "w", "p": 1}, "p"),
        ({"w": "w", "s": {"id": "s1"}}, "s"),
        ({"ad": True, "w": 3}, "w"),
    ],
)
def test_non_string_scope_claim_is_refused(claims: dict[str, Any], name: str) -> None:
    assert refused(signed(claims)) == f"Invalid token: claim '{name}' must be a non-empty string"


def test_admin_claim_wins_over_narrower_claims() -> None:
    assert decode_jwt(signed({"ad": True, "w": "w", "p": "alice"}), SECRET) == ADMIN


def test_session_claim_wins_over_peer_claim() -> None:
    """A key naming both is treated as the narrower session key."""
    principal = decode_jwt(signed({"w": "w", "p": "alice", "s": "s1"}), SECRET)
    assert principal == SESSION


def test_null_scope_claims_are_absent() -> None:
    principal = decode_jwt(signed({"w": "w", "p": None, "s": None, "exp": None}), SECRET)
    assert principal == WORKSPACE


def test_unknown_claims_are_ignored() -> None:
    assert decode_jwt(signed({"w": "w", "t": "2024", "extra": [1]}), SECRET) == WORKSPACE


# -- bearer_token -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer xyz", "xyz"), ("BEARER   xyz  ", "xyz")],
)
def test_bearer_token_extracts_the_key(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, ""])
def test_missing_header(header: str | None) -> None:
    with pytest.raises(AuthenticationError) as info:
        bearer_token(header)
    assert info.value.detail == "Missing Authorization header (expected 'Bearer <key>')"


@pytest.mark.parametrize(
    "header", ["abc.def.ghi", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer    ", "Token x"]
)
def test_malformed_header(header: str) -> None:
    with pytest.raises(AuthenticationError) as info:
        bearer_token(header)
    assert info.value.detail == "Malformed Authorization header (expected 'Bearer <key>')"


# -- AuthSettings -------------------------------------------------------------------------------
REFUSAL = (
    "RAPPORT_JWT_SECRET must be set to a random value of at least 32 characters when "
    "RAPPORT_AUTH_ENABLED is true"
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("RAPPORT_AUTH_ENABLED", "RAPPORT_JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "secret",
    [None, DEFAULT_DEV_JWT_SECRET, "", "s" * 31],
    ids=["unset", "default", "empty", "31-chars"],
)
@pytest.mark.parametrize("settings_class", [AuthSettings, IngestSettings, AllInOneSettings])
def test_auth_on_refuses_default_or_short_secret(
    clean_env: pytest.MonkeyPatch, settings_class: type[AuthSettings], secret: str | None
) -> None:
    kwargs = {} if secret is None else {"jwt_secret": secret}
    with pytest.raises(pydantic.ValidationError) as info:
        settings_class(auth_enabled=True, **kwargs)
    [error] = info.value.errors()
    assert error["msg"] == f"Value error, {REFUSAL}"


def test_auth_on_refusal_does_not_print_the_inputs(clean_env: pytest.MonkeyPatch) -> None:
    """The startup error names the problem without echoing secrets or passwords."""
    clean_env.setenv("RAPPORT_DATABASE_URL", "postgresql+psycopg://u:pg-password-123@db/rapport")
    with pytest.raises(pydantic.ValidationError) as info:
        AllInOneSettings(auth_enabled=True, jwt_secret="short-secret-value")
    text = str(info.value)
    assert REFUSAL in text
    assert "short-secret-value" not in text
    assert "pg-password-123" not in text


def test_auth_on_from_environment_without_secret_is_refused(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("RAPPORT_AUTH_ENABLED", "true")
    with pytest.raises(pydantic.ValidationError, match=REFUSAL):
        AuthSettings()


def test_auth_on_from_environment_with_a_long_secret(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RAPPORT_AUTH_ENABLED", "true")
    clean_env.setenv("RAPPORT_JWT_SECRET", "e" * 32)
    settings = AuthSettings()
    assert settings.auth_enabled is True
    assert settings.jwt_secret.get_secret_value() == "e" * 32
    assert "e" * 32 not in repr(settings)


@pytest.mark.parametrize("secret", [None, DEFAULT_DEV_JWT_SECRET, "short"])
def test_auth_off_accepts_any_secret(clean_env: pytest.MonkeyPatch, secret: str | None) -> None:
    kwargs = {} if secret is None else {"jwt_secret": secret}
    assert AuthSettings(**kwargs).auth_enabled is False
