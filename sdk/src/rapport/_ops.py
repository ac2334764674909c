"""Every API operation as a :class:`Call` builder, shared by the sync and async clients.

The builders validate arguments, shape the path, query and body exactly as the Honcho v3 wire
API expects, and say how to parse the answer and whether the call is idempotent (see the retry
rule in :mod:`rapport._http`). They never do I/O.
"""

from __future__ import annotations

import io
import mimetypes
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path, PurePath
from typing import IO, Any, Literal, Protocol, TypeAlias, TypeVar, cast

from pydantic import BaseModel, TypeAdapter

from ._context import SessionContext
from ._http import Call, query, segment
from ._models import (
    Conclusion,
    DeadLetter,
    Message,
    MessageCreate,
    Page,
    PeerContext,
    PeerInfo,
    QueueStatus,
    SessionInfo,
    SessionPeerConfig,
    SessionSummaries,
    Workspace,
    _Card,
    _ChatAnswer,
    _Key,
    _Representation,
    _WirePage,
)

T = TypeVar("T")

MAX_BATCH = 100
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50

ReasoningLevel = Literal["minimal", "low", "medium", "high", "max"]


class HasId(Protocol):
    """Anything with an ``id``: a peer or session handle."""

    @property
    def id(self) -> str: ...


#: A peer id or a peer handle.
PeerLike: TypeAlias = str | HasId
#: A session id or a session handle.
SessionLike: TypeAlias = str | HasId
#: How one member of a session observes: ``None`` (defaults), a config object or a mapping.
PeerConfigLike: TypeAlias = SessionPeerConfig | Mapping[str, Any] | None
#: Session members: a mapping ``{peer: config}``, or an iterable of peers or ``(peer, config)``.
PeersArg: TypeAlias = (
    Mapping[str, PeerConfigLike] | Iterable[PeerLike | tuple[PeerLike, PeerConfigLike]]
)
#: An uploaded file: a path, bytes, a binary (or text) file object, or ``(name, content[, type])``.
FileArg: TypeAlias = (
    str
    | os.PathLike[str]
    | bytes
    | bytearray
    | IO[bytes]
    | IO[str]
    | tuple[str, bytes | str]
    | tuple[str, bytes | str, str]
)
#: A filter in the server's filter DSL (see the API docs).
Filters: TypeAlias = Mapping[str, Any]
#: A JSON Schema, or a pydantic model class whose schema is sent.
ResponseFormat: TypeAlias = Mapping[str, Any] | type[BaseModel]


def check_id(value: str, what: str) -> str:
    """``value`` if it is a non-empty string id, else ``ValueError``."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"A {what} id must be a non-empty string, got {value!r}")
    return value


def ident(obj: str | HasId, what: str = "peer") -> str:
    """The id of a peer or session given as an id or a handle."""
    value = obj if isinstance(obj, str) else getattr(obj, "id", None)
    if not isinstance(value, str) or not value:
        raise TypeError(f"Expected a {what} id or a {what}, got {obj!r}")
    return value


def peer_id(peer: PeerLike) -> str:
    """The id of a peer given as an id or a handle."""
    return ident(peer, "peer")


def session_id(session: SessionLike | None) -> str | None:
    """The id of a session given as an id or a handle, or ``None``."""
    return None if session is None else ident(session, "session")


@cache
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def _parser(tp: Any) -> Callable[[Any], Any]:
    adapter = _adapter(tp)
    return adapter.validate_python


def _ignore(_: Any) -> None:
    return None


def _check_size(size: int) -> int:
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ValueError(f"size must be between 1 and {MAX_PAGE_SIZE}")
    return size


def _check_limit(name: str, value: int | None, high: int = 100) -> None:
    if value is not None and not 1 <= value <= high:
        raise ValueError(f"{name} must be between 1 and {high}")


def _check_distance(name: str, value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1")


def _check_query(text: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("query must be a non-empty string")


PageCall = Callable[[int], Call[Page[T]]]


def _list(
    path: str,
    item: type[T],
    *,
    filters: Filters | None = None,
    size: int = DEFAULT_PAGE_SIZE,
    reverse: bool = False,
    method: str = "POST",
    extra: Mapping[str, Any] | None = None,
    workspace_scoped: bool = True,
) -> PageCall[T]:
    _check_size(size)
    wire_page = _adapter(_WirePage[item])  # type: ignore[valid-type]
    body: Any = {"filters": dict(filters)} if filters is not None else None

    def build(number: int) -> Call[Page[T]]:
        def parse(data: Any) -> Page[T]:
            page: _WirePage[T] = wire_page.validate_python(data if data is not None else {})
            return page.to_page(number, size)

        params = query(page=number, size=size, reverse=True if reverse else None, **(extra or {}))
        if body is None:
            return Call(method, path, parse, params=params, workspace_scoped=workspace_scoped)
        return Call(
            method, path, parse, params=params, json=body, workspace_scoped=workspace_scoped
        )

    return build


def _ws(w: str) -> str:
    return f"/v3/workspaces/{segment(w)}"


def _peer_path(w: str, p: str) -> str:
    return f"{_ws(w)}/peers/{segment(p)}"


def _session_path(w: str, s: str) -> str:
    return f"{_ws(w)}/sessions/{segment(s)}"


def _put_body(metadata: Mapping[str, Any] | None, configuration: Mapping[str, Any] | None) -> Any:
    body: dict[str, Any] = {}
    if metadata is not None:
        body["metadata"] = dict(metadata)
    if configuration is not None:
        body["configuration"] = dict(configuration)
    return body


def _search_body(text: str, filters: Filters | None, limit: int) -> dict[str, Any]:
    _check_query(text)
    _check_limit("limit", limit)
    body: dict[str, Any] = {"query": text, "limit": limit}
    if filters is not None:
        body["filters"] = dict(filters)
    return body


# -- workspaces -----------------------------------------------------------------------------
def get_workspace(
    w: str,
    metadata: Mapping[str, Any] | None = None,
    configuration: Mapping[str, Any] | None = None,
) -> Call[Workspace]:
    body: dict[str, Any] = {"id": check_id(w, "workspace")}
    body.update(_put_body(metadata, configuration))
    return Call("POST", "/v3/workspaces", _parser(Workspace), json=body, workspace_scoped=False)


def update_workspace(
    w: str,
    metadata: Mapping[str, Any] | None = None,
    configuration: Mapping[str, Any] | None = None,
) -> Call[Workspace]:
    return Call(
        "PUT",
        _ws(w),
        _parser(Workspace),
        json=_put_body(metadata, configuration),
        workspace_scoped=False,
    )


def delete_workspace(w: str) -> Call[None]:
    return Call("DELETE", _ws(w), _ignore, workspace_scoped=False)


def list_workspaces(filters: Filters | None, size: int, reverse: bool) -> PageCall[Workspace]:
    return _list(
        "/v3/workspaces/list",
        Workspace,
        filters=filters,
        size=size,
        reverse=reverse,
        workspace_scoped=False,
    )


def search_workspace(w: str, text: str, filters: Filters | None, limit: int) -> Call[list[Message]]:
    return Call(
        "POST", f"{_ws(w)}/search", _parser(list[Message]), json=_search_body(text, filters, limit)
    )


def queue_status(
    w: str, observer: PeerLike | None, sender: PeerLike | None, session: SessionLike | None
) -> Call[QueueStatus]:
    params = query(
        observer_id=peer_id(observer) if observer is not None else None,
        sender_id=peer_id(sender) if sender is not None else None,
        session_id=session_id(session),
    )
    return Call("GET", f"{_ws(w)}/queue/status", _parser(QueueStatus), params=params)


def dead_letters(w: str, include_retried: bool, size: int) -> PageCall[DeadLetter]:
    return _list(
        f"{_ws(w)}/queue/dead_letters",
        DeadLetter,
        size=size,
        method="GET",
        extra={"include_retried": True if include_retried else None},
    )


def retry_dead_letter(w: str, dead_letter_id: str) -> Call[DeadLetter]:
    path = f"{_ws(w)}/queue/dead_letters/{segment(dead_letter_id)}/retry"
    return Call("POST", path, _parser(DeadLetter), idempotent=False)


def schedule_dream(
    w: str, observer: PeerLike, observed: PeerLike | None, session: SessionLike | None
) -> Call[None]:
    observer_id = peer_id(observer)
    body = {
        "observer": observer_id,
        "observed": peer_id(observed) if observed is not None else observer_id,
        "session_id": session_id(session),
        "dream_type": "omni",
    }
    return Call("POST", f"{_ws(w)}/schedule_dream", _ignore, json=body, idempotent=False)


def create_key(
    workspace_id: str | None,
    peer: PeerLike | None,
    session: SessionLike | None,
    expires_at: datetime | None,
) -> Call[str]:
    params = query(
        workspace_id=workspace_id,
        peer_id=peer_id(peer) if peer is not None else None,
        session_id=session_id(session),
        expires_at=expires_at,
    )

    def parse(data: Any) -> str:
        return _Key.model_validate(data).key

    return Call("POST", "/v3/keys", parse, params=params, workspace_scoped=False)


# -- peers ----------------------------------------------------------------------------------
def get_or_create_peer(
    w: str,
    p: str,
    metadata: Mapping[str, Any] | None = None,
    configuration: Mapping[str, Any] | None = None,
) -> Call[PeerInfo]:
    body: dict[str, Any] = {"id": check_id(p, "peer")}
    body.update(_put_body(metadata, configuration))
    return Call("POST", f"{_ws(w)}/peers", _parser(PeerInfo), json=body)


def list_peers(w: str, filters: Filters | None, size: int, reverse: bool) -> PageCall[PeerInfo]:
    return _list(f"{_ws(w)}/peers/list", PeerInfo, filters=filters, size=size, reverse=reverse)


def update_peer(
    w: str,
    p: str,
    metadata: Mapping[str, Any] | None = None,
    configuration: Mapping[str, Any] | None = None,
) -> Call[PeerInfo]:
    body = _put_body(metadata, configuration)
    return Call("PUT", _peer_path(w, p), _parser(PeerInfo), json=body)


def peer_sessions(
    w: str, p: str, filters: Filters | None, size: int, reverse: bool
) -> PageCall[SessionInfo]:
    path = f"{_peer_path(w, p)}/sessions"
    return _list(path, SessionInfo, filters=filters, size=size, reverse=reverse)


def _schema(response_format: ResponseFormat) -> dict[str, Any]:
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        return response_format.model_json_schema()
    if isinstance(response_format, Mapping):
        return dict(response_format)
    raise TypeError("response_format must be a JSON Schema mapping or a pydantic model class")


def peer_chat(
    w: str,
    p: str,
    text: str,
    *,
    target: PeerLike | None,
    session: SessionLike | None,
    reasoning_level: ReasoningLevel | None,
    response_format: ResponseFormat | None,
    stream: bool,
) -> Call[str | None]:
    _check_query(text)
    if len(text) > 10_000:
        raise ValueError("query must be at most 10,000 characters")
    body: dict[str, Any] = {"query": text, "stream": stream}
    if target is not None:
        body["target"] = peer_id(target)
    if session is not None:
        body["session_id"] = session_id(session)
    if reasoning_level is not None:
        body["reasoning_level"] = reasoning_level
    if response_format is not None:
        body["response_format"] = _schema(response_format)

    def parse(data: Any) -> str | None:
        content = _ChatAnswer.model_validate(data if data is not None else {}).content
        return content or None

    return Call("POST", f"{_peer_path(w, p)}/chat", parse, json=body, stream=stream)


def _representation_options(
    *,
    search_query: str | None,
    search_top_k: int | None,
    search_max_distance: float | None,
    include_most_frequent: bool | None,
    max_conclusions: int | None,
) -> dict[str, Any]:
    _check_limit("search_top_k", search_top_k)
    _check_limit("max_conclusions", max_conclusions)
    _check_distance("search_max_distance", search_max_distance)
    options = {
        "search_query": search_query,
        "search_top_k": search_top_k,
        "search_max_distance": search_max_distance,
        "include_most_frequent": include_most_frequent,
        "max_conclusions": max_conclusions,
    }
    return {k: v for k, v in options.items() if v is not None}


def peer_representation(
    w: str,
    p: str,
    *,
    target: PeerLike | None,
    session: SessionLike | None,
    search_query: str | None,
    search_top_k: int | None,
    search_max_distance: float | None,
    include_most_frequent: bool | None,
    max_conclusions: int | None,
) -> Call[str]:
    body = _representation_options(
        search_query=search_query,
        search_top_k=search_top_k,
        search_max_distance=search_max_distance,
        include_most_frequent=include_most_frequent,
        max_conclusions=max_conclusions,
    )
    if session is not None:
        body["session_id"] = session_id(session)
    if target is not None:
        body["target"] = peer_id(target)

    def parse(data: Any) -> str:
        return _Representation.model_validate(data).representation

    return Call("POST", f"{_peer_path(w, p)}/representation", parse, json=body)


def _card_parse(data: Any) -> list[str] | None:
    return _Card.model_validate(data if data is not None else {}).peer_card


def get_card(w: str, p: str, target: PeerLike | None) -> Call[list[str] | None]:
    params = query(target=peer_id(target) if target is not None else None)
    return Call("GET", f"{_peer_path(w, p)}/card", _card_parse, params=params)


def set_card(
    w: str, p: str, facts: Sequence[str], target: PeerLike | None
) -> Call[list[str] | None]:
    if isinstance(facts, str) or not all(isinstance(f, str) for f in facts):
        raise TypeError("facts must be a list of strings")
    params = query(target=peer_id(target) if target is not None else None)
    body = {"peer_card": list(facts)}
    return Call("PUT", f"{_peer_path(w, p)}/card", _card_parse, params=params, json=body)


def peer_context(
    w: str,
    p: str,
    *,
    target: PeerLike | None,
    search_query: str | None,
    search_top_k: int | None,
    search_max_distance: float | None,
    include_most_frequent: bool | None,
    max_conclusions: int | None,
) -> Call[PeerContext]:
    options = _representation_options(
        search_query=search_query,
        search_top_k=search_top_k,
        search_max_distance=search_max_distance,
        include_most_frequent=include_most_frequent,
        max_conclusions=max_conclusions,
    )
    params = query(target=peer_id(target) if target is not None else None, **options)
    return Call("GET", f"{_peer_path(w, p)}/context", _parser(PeerContext), params=params)


def peer_search(
    w: str, p: str, text: str, filters: Filters | None, limit: int
) -> Call[list[Message]]:
    body = _search_body(text, filters, limit)
    return Call("POST", f"{_peer_path(w, p)}/search", _parser(list[Message]), json=body)


# -- sessions -------------------------------------------------------------------------------
def _config_dict(config: PeerConfigLike) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, SessionPeerConfig):
        return config.model_dump(exclude_none=True)
    if isinstance(config, Mapping):
        return {str(k): v for k, v in config.items() if v is not None}
    raise TypeError(f"Expected a SessionPeerConfig or a mapping, got {config!r}")


def peer_map(peers: PeersArg) -> dict[str, dict[str, Any]]:
    """``{peer_id: {observe_me?, observe_others?}}`` from the accepted shapes of ``peers``."""
    if isinstance(peers, str):
        return {peers: {}}
    if isinstance(peers, Mapping):
        return {peer_id(k): _config_dict(v) for k, v in peers.items()}
    out: dict[str, dict[str, Any]] = {}
    for entry in peers:
        if isinstance(entry, tuple):
            if len(entry) != 2:
                raise TypeError("A peer with its configuration is a (peer, config) pair")
            out[peer_id(entry[0])] = _config_dict(entry[1])
        else:
            out[peer_id(entry)] = {}
    return out


def get_or_create_session(
    w: str,
    s: str,
    metadata: Mapping[str, Any] | None = None,
    configuration: Mapping[str, Any] | None = None,
    peers: PeersArg | None = None,
) -> Call[SessionInfo]:
    body: dict[str, Any] = {"id": check_id(s, "session")}
    body.update(_put_body(metadata, configuration))
    if peers is not None:
        body["peers"] = peer_map(peers)
    return Call("POST", f"{_ws(w)}/sessions", _parser(SessionInfo), json=body)


def list_sessions(
    w: str, filters: Filters | None, size: int, reverse: bool
) -> PageCall[SessionInfo]:
    path = f"{_ws(w)}/sessions/list"
    return _list(path, SessionInfo, filters=filters, size=size, reverse=reverse)


def update_session(
    w: str,
    s: str,
    metadata: Mapping[str, Any] | None = None,
    configuration: Mapping[str, Any] | None = None,
) -> Call[SessionInfo]:
    body = _put_body(metadata, configuration)
    return Call("PUT", _session_path(w, s), _parser(SessionInfo), json=body)


def delete_session(w: str, s: str) -> Call[None]:
    return Call("DELETE", _session_path(w, s), _ignore)


def clone_session(w: str, s: str, message_id: str | None) -> Call[SessionInfo]:
    params = query(message_id=message_id)
    path = f"{_session_path(w, s)}/clone"
    return Call("POST", path, _parser(SessionInfo), params=params, idempotent=False)


def add_peers(w: str, s: str, peers: PeersArg) -> Call[None]:
    return Call("POST", f"{_session_path(w, s)}/peers", _ignore, json=peer_map(peers))


def set_peers(w: str, s: str, peers: PeersArg) -> Call[None]:
    return Call("PUT", f"{_session_path(w, s)}/peers", _ignore, json=peer_map(peers))


def remove_peers(w: str, s: str, peers: PeerLike | Iterable[PeerLike]) -> Call[None]:
    if isinstance(peers, str) or hasattr(peers, "id"):
        ids = [peer_id(cast(PeerLike, peers))]
    else:
        ids = [peer_id(p) for p in peers]
    return Call("DELETE", f"{_session_path(w, s)}/peers", _ignore, json=ids)


def session_peers(w: str, s: str, size: int = MAX_PAGE_SIZE) -> PageCall[PeerInfo]:
    return _list(f"{_session_path(w, s)}/peers", PeerInfo, size=size, method="GET")


def get_peer_config(w: str, s: str, peer: PeerLike) -> Call[SessionPeerConfig]:
    path = f"{_session_path(w, s)}/peers/{segment(peer_id(peer))}/config"
    return Call("GET", path, _parser(SessionPeerConfig))


def set_peer_config(w: str, s: str, peer: PeerLike, config: PeerConfigLike) -> Call[None]:
    path = f"{_session_path(w, s)}/peers/{segment(peer_id(peer))}/config"
    return Call("PUT", path, _ignore, json=_config_dict(config))


def session_context(
    w: str,
    s: str,
    *,
    summary: bool,
    tokens: int | None,
    peer_target: PeerLike | None,
    peer_perspective: PeerLike | None,
    search_query: str | None,
    search_top_k: int | None,
    search_max_distance: float | None,
    include_most_frequent: bool | None,
    max_conclusions: int | None,
    limit_to_session: bool,
) -> Call[SessionContext]:
    if tokens is not None and tokens < 1:
        raise ValueError("tokens must be positive")
    if peer_perspective is not None and peer_target is None:
        raise ValueError("peer_perspective needs peer_target")
    if search_query is not None and peer_target is None:
        raise ValueError("search_query needs peer_target")
    options = _representation_options(
        search_query=search_query,
        search_top_k=search_top_k,
        search_max_distance=search_max_distance,
        include_most_frequent=include_most_frequent,
        max_conclusions=max_conclusions,
    )
    params = query(
        tokens=tokens,
        summary=summary,
        peer_target=peer_id(peer_target) if peer_target is not None else None,
        peer_perspective=peer_id(peer_perspective) if peer_perspective is not None else None,
        limit_to_session=limit_to_session,
        **options,
    )
    path = f"{_session_path(w, s)}/context"
    return Call("GET", path, _parser(SessionContext), params=params)


def session_summaries(w: str, s: str) -> Call[SessionSummaries]:
    return Call("GET", f"{_session_path(w, s)}/summaries", _parser(SessionSummaries))


def session_search(
    w: str, s: str, text: str, filters: Filters | None, limit: int
) -> Call[list[Message]]:
    body = _search_body(text, filters, limit)
    return Call("POST", f"{_session_path(w, s)}/search", _parser(list[Message]), json=body)


def session_representation(
    w: str,
    s: str,
    peer: PeerLike,
    *,
    target: PeerLike | None,
    search_query: str | None,
    search_top_k: int | None,
    search_max_distance: float | None,
    include_most_frequent: bool | None,
    max_conclusions: int | None,
) -> Call[str]:
    return peer_representation(
        w,
        peer_id(peer),
        target=target,
        session=s,
        search_query=search_query,
        search_top_k=search_top_k,
        search_max_distance=search_max_distance,
        include_most_frequent=include_most_frequent,
        max_conclusions=max_conclusions,
    )


# -- messages -------------------------------------------------------------------------------
def flatten_messages(
    messages: tuple[MessageCreate | Iterable[MessageCreate], ...],
) -> list[MessageCreate]:
    """The messages given as varargs, a single list, or a mix of both."""
    out: list[MessageCreate] = []
    for item in messages:
        if isinstance(item, MessageCreate):
            out.append(item)
        elif isinstance(item, str | bytes | Mapping):
            raise TypeError("add_messages takes messages built with peer.message(...)")
        else:
            for inner in item:
                if not isinstance(inner, MessageCreate):
                    raise TypeError("add_messages takes messages built with peer.message(...)")
                out.append(inner)
    return out


def create_messages(w: str, s: str, batch: Sequence[MessageCreate]) -> Call[list[Message]]:
    if not 1 <= len(batch) <= MAX_BATCH:
        raise ValueError(f"A batch holds 1 to {MAX_BATCH} messages")
    body = {"messages": [m.to_wire() for m in batch]}
    path = f"{_session_path(w, s)}/messages"
    return Call("POST", path, _parser(list[Message]), json=body, idempotent=False)


def chunks(items: Sequence[T], size: int = MAX_BATCH) -> list[Sequence[T]]:
    """``items`` cut into consecutive slices of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]


_CONTENT_TYPES = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".json": "application/json",
    ".pdf": "application/pdf",
}


def _content_type(filename: str) -> str:
    suffix = PurePath(filename).suffix.lower()
    if suffix in _CONTENT_TYPES:
        return _CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


def file_part(
    file: FileArg, filename: str | None = None, content_type: str | None = None
) -> tuple[str, bytes, str]:
    """``(filename, content, content_type)`` for the multipart ``file`` field.

    The content is read into memory so a retried request can send it again.
    """
    name: str
    data: bytes
    kind: str | None = None
    if isinstance(file, bytes | bytearray):
        name, data = "upload.txt", bytes(file)
    elif isinstance(file, str | os.PathLike):
        path = Path(file)
        name, data = path.name, path.read_bytes()
    elif isinstance(file, tuple):
        name = file[0]
        raw = file[1]
        data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        if len(file) == 3:
            kind = file[2]
    elif isinstance(file, io.IOBase) or hasattr(file, "read"):
        raw_read = file.read()
        data = raw_read.encode("utf-8") if isinstance(raw_read, str) else bytes(raw_read)
        raw_name = getattr(file, "name", None)
        name = PurePath(raw_name).name if isinstance(raw_name, str) and raw_name else "upload"
    else:
        raise TypeError("file must be a path, bytes, a file object or (name, content[, type])")
    name = filename or name
    return name, data, content_type or kind or _content_type(name)


def upload_file(
    w: str,
    s: str,
    part: tuple[str, bytes, str],
    peer: PeerLike,
    metadata: Mapping[str, Any] | None,
    configuration: Mapping[str, Any] | None,
    created_at: datetime | None,
) -> Call[list[Message]]:
    import json

    data = {"peer_id": peer_id(peer)}
    if metadata is not None:
        data["metadata"] = json.dumps(dict(metadata))
    if configuration is not None:
        data["configuration"] = json.dumps(dict(configuration))
    if created_at is not None:
        data["created_at"] = created_at.isoformat()
    path = f"{_session_path(w, s)}/messages/upload"
    return Call(
        "POST", path, _parser(list[Message]), files={"file": part}, data=data, idempotent=False
    )


def list_messages(
    w: str, s: str, filters: Filters | None, size: int, reverse: bool
) -> PageCall[Message]:
    path = f"{_session_path(w, s)}/messages/list"
    return _list(path, Message, filters=filters, size=size, reverse=reverse)


def get_message(w: str, s: str, message_id: str) -> Call[Message]:
    path = f"{_session_path(w, s)}/messages/{segment(message_id)}"
    return Call("GET", path, _parser(Message))


def update_message(
    w: str, s: str, message: str | HasId, metadata: Mapping[str, Any]
) -> Call[Message]:
    message_id = message if isinstance(message, str) else message.id
    path = f"{_session_path(w, s)}/messages/{segment(message_id)}"
    return Call("PUT", path, _parser(Message), json={"metadata": dict(metadata)})


# -- conclusions ----------------------------------------------------------------------------
def _conclusions(w: str) -> str:
    return f"{_ws(w)}/conclusions"


def create_conclusions(w: str, items: Sequence[Mapping[str, Any]]) -> Call[list[Conclusion]]:
    if not 1 <= len(items) <= MAX_BATCH:
        raise ValueError(f"A batch holds 1 to {MAX_BATCH} conclusions")
    body = {"conclusions": [dict(i) for i in items]}
    return Call("POST", _conclusions(w), _parser(list[Conclusion]), json=body, idempotent=False)


def list_conclusions(
    w: str, filters: Filters | None, size: int, reverse: bool
) -> PageCall[Conclusion]:
    path = f"{_conclusions(w)}/list"
    return _list(path, Conclusion, filters=filters, size=size, reverse=reverse)


def get_conclusion(w: str, conclusion_id: str) -> Call[Conclusion]:
    return Call("GET", f"{_conclusions(w)}/{segment(conclusion_id)}", _parser(Conclusion))


def delete_conclusion(w: str, conclusion_id: str) -> Call[None]:
    return Call("DELETE", f"{_conclusions(w)}/{segment(conclusion_id)}", _ignore)


def query_conclusions(
    w: str, text: str, top_k: int, distance: float | None, filters: Filters
) -> Call[list[Conclusion]]:
    _check_query(text)
    _check_limit("top_k", top_k)
    _check_distance("distance", distance)
    body: dict[str, Any] = {"query": text, "top_k": top_k, "filters": dict(filters)}
    if distance is not None:
        body["distance"] = distance
    return Call("POST", f"{_conclusions(w)}/query", _parser(list[Conclusion]), json=body)


def conclusion_scope(
    observer: str | None, observed: str | None, session: SessionLike | None
) -> dict[str, Any]:
    """The filter that restricts conclusions to a view (and optionally to a session)."""
    scope: dict[str, Any] = {}
    if observer is not None:
        scope["observer_id"] = observer
    if observed is not None:
        scope["observed_id"] = observed
    if session is not None:
        scope["session_id"] = session_id(session)
    return scope


def combine_filters(scope: Mapping[str, Any], filters: Filters | None) -> dict[str, Any] | None:
    """``scope`` and the caller's ``filters`` together (merged, or ``AND``-ed when they overlap)."""
    if not filters:
        return dict(scope) if scope else (None if filters is None else {})
    if not scope:
        return dict(filters)
    if scope.keys() & filters.keys():
        return {"AND": [dict(scope), dict(filters)]}
    return {**scope, **filters}


ConclusionInput: TypeAlias = str | Mapping[str, Any]


def conclusion_items(
    conclusions: ConclusionInput | Iterable[ConclusionInput],
    observer: str | None,
    observed: str | None,
    session: SessionLike | None,
) -> list[dict[str, Any]]:
    """Wire objects ``{content, observer_id, observed_id, session_id?}`` for ``create``."""
    entries: list[ConclusionInput]
    entries = [conclusions] if isinstance(conclusions, str | Mapping) else list(conclusions)
    out: list[dict[str, Any]] = []
    for entry in entries:
        item: dict[str, Any] = {"content": entry} if isinstance(entry, str) else dict(entry)
        if observer is not None:
            item.setdefault("observer_id", observer)
        if observed is not None:
            item.setdefault("observed_id", observed)
        if session is not None:
            item.setdefault("session_id", session_id(session))
        if not isinstance(item.get("content"), str) or not item["content"].strip():
            raise ValueError("Every conclusion needs non-empty content")
        if "observer_id" not in item or "observed_id" not in item:
            raise ValueError("Every conclusion needs observer_id and observed_id")
        out.append(item)
    return out
