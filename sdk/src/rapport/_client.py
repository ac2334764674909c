"""The blocking client: :class:`Rapport` and its :class:`Peer`, :class:`Session` and
:class:`Conclusions` handles."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

import httpx

from . import _http, _ops
from ._context import SessionContext
from ._errors import NotFoundError, WaitTimeoutError
from ._http import NOT_GIVEN, Call, NotGiven, SyncCore, TimeoutTypes
from ._models import (
    Conclusion,
    DeadLetter,
    Message,
    MessageCreate,
    PeerContext,
    PeerInfo,
    QueueStatus,
    SessionInfo,
    SessionPeerConfig,
    SessionSummaries,
    Workspace,
)
from ._ops import (
    ConclusionInput,
    FileArg,
    Filters,
    PeerConfigLike,
    PeerLike,
    PeersArg,
    ReasoningLevel,
    ResponseFormat,
    SessionLike,
)
from ._pagination import Paginator
from ._streaming import ChatStream

__all__ = ["Conclusions", "Peer", "Rapport", "Session"]

Timeout = TimeoutTypes | NotGiven
T = TypeVar("T")
U = TypeVar("U")


class Rapport:
    """A client for one workspace of a Rapport (or any Honcho v3) server.

    Args:
        base_url: Server root, without ``/v3``. Default: ``RAPPORT_BASE_URL``, else
            ``http://localhost:8000``.
        api_key: Sent as ``Authorization: Bearer <key>``. Default: ``RAPPORT_API_KEY``, else
            no header (a server with auth off).
        workspace_id: The workspace every call works in. Default: ``RAPPORT_WORKSPACE_ID``,
            else ``"default"``. It is created (get-or-create) once, lazily, before the first
            call that needs it.
        timeout: Seconds (or an :class:`httpx.Timeout`, or ``None`` for none) for every request;
            each method also takes ``timeout=`` for itself.
        max_retries: Retries after the first attempt (see the retry rule in the README).
        default_headers: Extra headers sent with every request.
        http_client: An :class:`httpx.Client` to send with (the caller keeps ownership).

    Creating the client makes no request. Close it with :meth:`close` or a ``with`` block.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        workspace_id: str | None = None,
        *,
        timeout: TimeoutTypes = _http.DEFAULT_TIMEOUT,
        max_retries: int = _http.DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        url, key, workspace = _http.resolve_settings(base_url, api_key, workspace_id)
        self._core = SyncCore(
            http_client=http_client,
            base_url=url,
            api_key=key,
            workspace_id=_ops.check_id(workspace, "workspace"),
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
        )

    # -- plumbing -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The server root this client talks to."""
        return self._core.base_url

    @property
    def workspace_id(self) -> str:
        """The workspace this client works in."""
        return self._core.workspace_id

    def _run(self, call: Call[T], timeout: Timeout = NOT_GIVEN) -> T:
        return self._core.execute(call.with_timeout(timeout))

    def _paginate(self, build: _ops.PageCall[T], timeout: Timeout = NOT_GIVEN) -> Paginator[T]:
        return Paginator(lambda number: self._run(build(number), timeout))

    def _paginate_map(
        self, build: _ops.PageCall[T], convert: Callable[[T], U], timeout: Timeout
    ) -> Paginator[U]:
        return Paginator(lambda number: self._run(build(number), timeout).map(convert))

    def _peer(self, info: PeerInfo) -> Peer:
        return Peer(self, info.id, info)

    def _session(self, info: SessionInfo) -> Session:
        return Session(self, info.id, info)

    def close(self) -> None:
        """Close the connection pool (not an ``http_client`` passed in by the caller)."""
        self._core.close()

    def __enter__(self) -> Rapport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Rapport(base_url={self.base_url!r}, workspace_id={self.workspace_id!r})"

    # -- workspace ------------------------------------------------------------------------------
    def get_workspace(self, *, timeout: Timeout = NOT_GIVEN) -> Workspace:
        """Get (or create) this client's workspace."""
        workspace = self._run(_ops.get_workspace(self.workspace_id), timeout)
        self._core.workspace_ready = True
        return workspace

    def get_metadata(self, *, timeout: Timeout = NOT_GIVEN) -> dict[str, Any]:
        """The workspace's metadata."""
        return self.get_workspace(timeout=timeout).metadata

    def set_metadata(
        self, metadata: Mapping[str, Any], *, timeout: Timeout = NOT_GIVEN
    ) -> Workspace:
        """Replace the workspace's metadata (the workspace is created if missing)."""
        return self._run(_ops.update_workspace(self.workspace_id, metadata=metadata), timeout)

    def get_configuration(self, *, timeout: Timeout = NOT_GIVEN) -> dict[str, Any]:
        """The workspace's configuration."""
        return self.get_workspace(timeout=timeout).configuration

    def set_configuration(
        self, configuration: Mapping[str, Any], *, timeout: Timeout = NOT_GIVEN
    ) -> Workspace:
        """Replace the workspace's configuration (``reasoning``, ``summary``, ``dream``...)."""
        call = _ops.update_workspace(self.workspace_id, configuration=configuration)
        return self._run(call, timeout)

    def workspaces(
        self,
        filters: Filters | None = None,
        *,
        size: int = _ops.DEFAULT_PAGE_SIZE,
        reverse: bool = False,
        timeout: Timeout = NOT_GIVEN,
    ) -> Paginator[Workspace]:
        """Every workspace on the server (needs an admin key)."""
        return self._paginate(_ops.list_workspaces(filters, size, reverse), timeout)

    def delete_workspace(
        self, workspace_id: str | None = None, *, timeout: Timeout = NOT_GIVEN
    ) -> None:
        """Delete a workspace (this client's by default). The server answers 409 while it has
        active sessions."""
        target = workspace_id or self.workspace_id
        self._run(_ops.delete_workspace(target), timeout)
        if target == self.workspace_id:
            self._core.workspace_ready = False

    # -- peers and sessions ---------------------------------------------------------------------
    def peer(
        self,
        id: str,
        metadata: Mapping[str, Any] | None = None,
        configuration: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> Peer:
        """Get or create the peer ``id`` and return its handle.

        ``metadata`` and ``configuration`` (``{"observe_me": bool}``, and Rapport's
        ``observe_others``) are applied when the peer is created; an existing peer is returned
        as it is (change it with :meth:`Peer.set_metadata` / :meth:`Peer.set_configuration`).
        """
        return self._peer(
            self._run(
                _ops.get_or_create_peer(self.workspace_id, id, metadata, configuration), timeout
            )
        )

    def peers(
        self,
        filters: Filters | None = None,
        *,
        size: int = _ops.DEFAULT_PAGE_SIZE,
        reverse: bool = False,
        timeout: Timeout = NOT_GIVEN,
    ) -> Paginator[Peer]:
        """Every peer of the workspace matching ``filters``, fetched page by page."""
        build = _ops.list_peers(self.workspace_id, filters, size, reverse)
        return self._paginate_map(build, self._peer, timeout)

    def session(
        self,
        id: str,
        metadata: Mapping[str, Any] | None = None,
        configuration: Mapping[str, Any] | None = None,
        peers: PeersArg | None = None,
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> Session:
        """Get or create the session ``id`` and return its handle.

        ``peers`` adds members: ``["alice", bob]``, ``[("alice", {"observe_others": True})]`` or
        ``{"alice": SessionPeerConfig(observe_me=False)}``.
        """
        call = _ops.get_or_create_session(self.workspace_id, id, metadata, configuration, peers)
        return self._session(self._run(call, timeout))

    def sessions(
        self,
        filters: Filters | None = None,
        *,
        size: int = _ops.DEFAULT_PAGE_SIZE,
        reverse: bool = False,
        timeout: Timeout = NOT_GIVEN,
    ) -> Paginator[Session]:
        """Every session of the workspace matching ``filters``, fetched page by page."""
        build = _ops.list_sessions(self.workspace_id, filters, size, reverse)
        return self._paginate_map(build, self._session, timeout)

    # -- workspace-wide operations --------------------------------------------------------------
    def search(
        self,
        query: str,
        filters: Filters | None = None,
        limit: int = 10,
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> list[Message]:
        """Messages of the whole workspace that best match ``query`` (1 to 100 of them)."""
        return self._run(_ops.search_workspace(self.workspace_id, query, filters, limit), timeout)

    def queue_status(
        self,
        observer: PeerLike | None = None,
        sender: PeerLike | None = None,
        session: SessionLike | None = None,
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> QueueStatus:
        """How much background work is done, running and pending (optionally narrowed)."""
        call = _ops.queue_status(self.workspace_id, observer, sender, session)
        return self._run(call, timeout)

    def wait_for_queue(
        self,
        observer: PeerLike | None = None,
        sender: PeerLike | None = None,
        session: SessionLike | None = None,
        *,
        max_wait: float = 60.0,
        poll_interval: float = 0.5,
    ) -> QueueStatus:
        """Poll :meth:`queue_status` until nothing is pending or in progress.

        Raises:
            WaitTimeoutError: the queue was still busy after ``max_wait`` seconds.
        """
        deadline = time.monotonic() + max_wait
        while True:
            status = self.queue_status(observer, sender, session)
            if status.is_idle:
                return status
            if time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"Queue still busy after {max_wait}s "
                    f"({status.pending_work_units} pending, "
                    f"{status.in_progress_work_units} in progress)"
                )
            _http._sleep(poll_interval)

    def dead_letters(
        self,
        *,
        include_retried: bool = False,
        size: int = _ops.DEFAULT_PAGE_SIZE,
        timeout: Timeout = NOT_GIVEN,
    ) -> Paginator[DeadLetter]:
        """Events the deriver gave up on, with their errors (a Rapport addition)."""
        return self._paginate(_ops.dead_letters(self.workspace_id, include_retried, size), timeout)

    def retry_dead_letter(
        self, dead_letter: str | DeadLetter, *, timeout: Timeout = NOT_GIVEN
    ) -> DeadLetter:
        """Publish a dead-lettered event again; returns it with ``retried_at`` set."""
        dead_letter_id = dead_letter if isinstance(dead_letter, str) else dead_letter.id
        return self._run(_ops.retry_dead_letter(self.workspace_id, dead_letter_id), timeout)

    def schedule_dream(
        self,
        observer: PeerLike,
        observed: PeerLike | None = None,
        session: SessionLike | None = None,
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> None:
        """Ask the deriver to consolidate what ``observer`` knows of ``observed`` (itself by
        default)."""
        self._run(_ops.schedule_dream(self.workspace_id, observer, observed, session), timeout)

    def create_key(
        self,
        workspace_id: str | None = None,
        peer_id: PeerLike | None = None,
        session_id: SessionLike | None = None,
        expires_at: datetime | None = None,
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> str:
        """Mint a scoped API key (needs an admin key).

        The key reaches ``workspace_id`` (this client's workspace when left out), or only the
        peer ``peer_id`` or the session ``session_id`` inside it.
        """
        call = _ops.create_key(workspace_id or self.workspace_id, peer_id, session_id, expires_at)
        return self._run(call, timeout)

    @property
    def conclusions(self) -> Conclusions:
        """Every conclusion of the workspace (``create`` and ``query`` need observer and
        observed ids)."""
        return Conclusions(self, None, None)


class Peer:
    """A handle on one peer. Get it with :meth:`Rapport.peer` (which creates the peer)."""

    def __init__(self, client: Rapport, id: str, info: PeerInfo | None = None) -> None:
        self._client = client
        self._id = _ops.check_id(id, "peer")
        self._info = info

    @property
    def id(self) -> str:
        """The peer's id."""
        return self._id

    @property
    def workspace_id(self) -> str:
        """The workspace the peer lives in."""
        return self._client.workspace_id

    @property
    def info(self) -> PeerInfo | None:
        """What the server returned for this peer when the handle was made, if anything."""
        return self._info

    def __repr__(self) -> str:
        return f"Peer(id={self._id!r}, workspace_id={self.workspace_id!r})"

    def message(
        self,
        content: str,
        metadata: Mapping[str, Any] | None = None,
        configuration: Mapping[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> MessageCreate:
        """A message by this peer, to pass to :meth:`Session.add_messages` (no request)."""
        return MessageCreate(
            content=content,
            peer_id=self._id,
            metadata=dict(metadata) if metadata is not None else None,
            configuration=dict(configuration) if configuration is not None else None,
            created_at=created_at,
        )

    @overload
    def chat(
        self,
        query: str,
        *,
        target: PeerLike | None = None,
        session: SessionLike | None = None,
        reasoning_level: ReasoningLevel | None = None,
        response_format: ResponseFormat | None = None,
        stream: Literal[False] = False,
        timeout: Timeout = NOT_GIVEN,
    ) -> str | None: ...

    @overload
    def chat(
        self,
        query: str,
        *,
        target: PeerLike | None = None,
        session: SessionLike | None = None,
        reasoning_level: ReasoningLevel | None = None,
        response_format: ResponseFormat | None = None,
        stream: Literal[True],
        timeout: Timeout = NOT_GIVEN,
    ) -> ChatStream: ...

    def chat(
        self,
        query: str,
        *,
        target: PeerLike | None = None,
        session: SessionLike | None = None,
        reasoning_level: ReasoningLevel | None = None,
        response_format: ResponseFormat | None = None,
        stream: bool = False,
        timeout: Timeout = NOT_GIVEN,
    ) -> str | ChatStream | None:
        """Ask this peer's memory a question in natural language (the dialectic).

        Args:
            query: The question (1 to 10,000 characters).
            target: Ask what this peer knows about ``target`` (only from what it witnessed)
                instead of about itself.
            session: Narrow the answer to one session.
            reasoning_level: ``"minimal"``, ``"low"`` (server default), ``"medium"``,
                ``"high"`` or ``"max"``.
            response_format: A JSON Schema (or a pydantic model class); the answer is then a
                JSON string that validates against it.
            stream: Return a :class:`ChatStream` of text chunks instead of the whole answer.

        Returns:
            The answer, or ``None`` when the server had nothing to say; a :class:`ChatStream`
            when ``stream=True`` (HTTP errors are raised here, before the first chunk).
        """
        call = _ops.peer_chat(
            self.workspace_id,
            self._id,
            query,
            target=target,
            session=session,
            reasoning_level=reasoning_level,
            response_format=response_format,
            stream=stream,
        ).with_timeout(timeout)
        if stream:
            return ChatStream(self._client._core.open_stream(call))
        return self._client._core.execute(call)

    def representation(
        self,
        target: PeerLike | None = None,
        session: SessionLike | None = None,
        search_query: str | None = None,
        *,
        search_top_k: int | None = None,
        search_max_distance: float | None = None,
        include_most_frequent: bool | None = None,
        max_conclusions: int | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> str:
        """What this peer knows about itself, or about ``target``, as text.

        ``search_query`` favours conclusions semantically close to it (``search_top_k`` of
        them, within ``search_max_distance``); ``max_conclusions`` caps the total.
        """
        call = _ops.peer_representation(
            self.workspace_id,
            self._id,
            target=target,
            session=session,
            search_query=search_query,
            search_top_k=search_top_k,
            search_max_distance=search_max_distance,
            include_most_frequent=include_most_frequent,
            max_conclusions=max_conclusions,
        )
        return self._client._run(call, timeout)

    def card(
        self, target: PeerLike | None = None, *, timeout: Timeout = NOT_GIVEN
    ) -> list[str] | None:
        """This peer's card (short stable facts) of itself or of ``target``; ``None`` if none."""
        return self._client._run(_ops.get_card(self.workspace_id, self._id, target), timeout)

    def set_card(
        self,
        facts: Sequence[str],
        target: PeerLike | None = None,
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> list[str] | None:
        """Replace the card of this peer (or its card of ``target``); returns the stored card."""
        call = _ops.set_card(self.workspace_id, self._id, facts, target)
        return self._client._run(call, timeout)

    def context(
        self,
        target: PeerLike | None = None,
        search_query: str | None = None,
        *,
        search_top_k: int | None = None,
        search_max_distance: float | None = None,
        include_most_frequent: bool | None = None,
        max_conclusions: int | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> PeerContext:
        """Representation and card together, of this peer or of ``target``."""
        call = _ops.peer_context(
            self.workspace_id,
            self._id,
            target=target,
            search_query=search_query,
            search_top_k=search_top_k,
            search_max_distance=search_max_distance,
            include_most_frequent=include_most_frequent,
            max_conclusions=max_conclusions,
        )
        return self._client._run(call, timeout)

    def sessions(
        self,
        filters: Filters | None = None,
        *,
        size: int = _ops.DEFAULT_PAGE_SIZE,
        reverse: bool = False,
        timeout: Timeout = NOT_GIVEN,
    ) -> Paginator[Session]:
        """The sessions this peer is (or was) a member of."""
        build = _ops.peer_sessions(self.workspace_id, self._id, filters, size, reverse)
        return self._client._paginate_map(build, self._client._session, timeout)

    def search(
        self,
        query: str,
        filters: Filters | None = None,
        limit: int = 10,
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> list[Message]:
        """This peer's messages that best match ``query``."""
        call = _ops.peer_search(self.workspace_id, self._id, query, filters, limit)
        return self._client._run(call, timeout)

    def refresh(self, *, timeout: Timeout = NOT_GIVEN) -> PeerInfo:
        """Fetch the peer again (get-or-create) and keep the answer in :attr:`info`."""
        self._info = self._client._run(
            _ops.get_or_create_peer(self.workspace_id, self._id), timeout
        )
        return self._info

    def get_metadata(self, *, timeout: Timeout = NOT_GIVEN) -> dict[str, Any]:
        """The peer's metadata, fetched now."""
        return self.refresh(timeout=timeout).metadata

    def set_metadata(self, metadata: Mapping[str, Any], *, timeout: Timeout = NOT_GIVEN) -> None:
        """Replace the peer's metadata."""
        call = _ops.update_peer(self.workspace_id, self._id, metadata=metadata)
        self._info = self._client._run(call, timeout)

    def get_configuration(self, *, timeout: Timeout = NOT_GIVEN) -> dict[str, Any]:
        """The peer's configuration, fetched now."""
        return self.refresh(timeout=timeout).configuration

    def set_configuration(
        self, configuration: Mapping[str, Any], *, timeout: Timeout = NOT_GIVEN
    ) -> None:
        """Replace the peer's configuration (``observe_me``, and Rapport's ``observe_others``)."""
        call = _ops.update_peer(self.workspace_id, self._id, configuration=configuration)
        self._info = self._client._run(call, timeout)

    @property
    def conclusions(self) -> Conclusions:
        """What this peer concluded about itself."""
        return Conclusions(self._client, self._id, self._id)

    def conclusions_of(self, target: PeerLike) -> Conclusions:
        """What this peer concluded about ``target``."""
        return Conclusions(self._client, self._id, _ops.peer_id(target))


class Session:
    """A handle on one session. Get it with :meth:`Rapport.session` (which creates it)."""

    def __init__(self, client: Rapport, id: str, info: SessionInfo | None = None) -> None:
        self._client = client
        self._id = _ops.check_id(id, "session")
        self._info = info

    @property
    def id(self) -> str:
        """The session's id."""
        return self._id

    @property
    def workspace_id(self) -> str:
        """The workspace the session lives in."""
        return self._client.workspace_id

    @property
    def info(self) -> SessionInfo | None:
        """What the server returned for this session when the handle was made, if anything."""
        return self._info

    def __repr__(self) -> str:
        return f"Session(id={self._id!r}, workspace_id={self.workspace_id!r})"

    # -- messages -------------------------------------------------------------------------------
    def add_messages(
        self,
        *messages: MessageCreate | Iterable[MessageCreate],
        timeout: Timeout = NOT_GIVEN,
    ) -> list[Message]:
        """Add messages (built with :meth:`Peer.message`), given as arguments or as one list.

        More than 100 are sent in consecutive batches of 100; if a later batch fails, the
        earlier ones stay stored. Authors join the session automatically. Returns the stored
        messages in order.
        """
        batch = _ops.flatten_messages(messages)
        stored: list[Message] = []
        for chunk in _ops.chunks(batch):
            call = _ops.create_messages(self.workspace_id, self._id, chunk)
            added: list[Message] = self._client._run(call, timeout)
            stored.extend(added)
        return stored

    def messages(
        self,
        filters: Filters | None = None,
        *,
        size: int = _ops.DEFAULT_PAGE_SIZE,
        reverse: bool = False,
        timeout: Timeout = NOT_GIVEN,
    ) -> Paginator[Message]:
        """The session's messages in order (newest first with ``reverse=True``)."""
        build = _ops.list_messages(self.workspace_id, self._id, filters, size, reverse)
        return self._client._paginate(build, timeout)

    def get_message(self, message_id: str, *, timeout: Timeout = NOT_GIVEN) -> Message:
        """One message by id."""
        return self._client._run(_ops.get_message(self.workspace_id, self._id, message_id), timeout)

    def update_message(
        self,
        message: str | Message,
        metadata: Mapping[str, Any],
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> Message:
        """Replace a message's metadata (its content never changes)."""
        call = _ops.update_message(self.workspace_id, self._id, message, metadata)
        return self._client._run(call, timeout)

    def upload_file(
        self,
        file: FileArg,
        peer: PeerLike,
        metadata: Mapping[str, Any] | None = None,
        configuration: Mapping[str, Any] | None = None,
        created_at: datetime | None = None,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> list[Message]:
        """Upload a text, markdown, JSON or PDF file; the server splits it into messages by
        ``peer``.

        ``file`` is a path, bytes, a file object, or ``(filename, content[, content_type])``.
        The type is taken from ``content_type``, else guessed from the file name.
        """
        part = _ops.file_part(file, filename, content_type)
        call = _ops.upload_file(
            self.workspace_id, self._id, part, peer, metadata, configuration, created_at
        )
        return self._client._run(call, timeout)

    # -- members --------------------------------------------------------------------------------
    def add_peers(self, peers: PeersArg, *, timeout: Timeout = NOT_GIVEN) -> None:
        """Add members (``["alice", bob]``, ``[(alice, {"observe_others": True})]`` or a
        mapping ``{peer_id: config}``)."""
        self._client._run(_ops.add_peers(self.workspace_id, self._id, peers), timeout)

    def set_peers(self, peers: PeersArg, *, timeout: Timeout = NOT_GIVEN) -> None:
        """Make exactly these peers the members."""
        self._client._run(_ops.set_peers(self.workspace_id, self._id, peers), timeout)

    def remove_peers(
        self, peers: PeerLike | Iterable[PeerLike], *, timeout: Timeout = NOT_GIVEN
    ) -> None:
        """Remove members."""
        self._client._run(_ops.remove_peers(self.workspace_id, self._id, peers), timeout)

    def peers(self, *, timeout: Timeout = NOT_GIVEN) -> list[Peer]:
        """The current members."""
        build = _ops.session_peers(self.workspace_id, self._id)
        return list(self._client._paginate_map(build, self._client._peer, timeout))

    def get_peer_configuration(
        self, peer: PeerLike, *, timeout: Timeout = NOT_GIVEN
    ) -> SessionPeerConfig:
        """How ``peer`` observes in this session."""
        call = _ops.get_peer_config(self.workspace_id, self._id, peer)
        return self._client._run(call, timeout)

    def set_peer_configuration(
        self, peer: PeerLike, config: PeerConfigLike, *, timeout: Timeout = NOT_GIVEN
    ) -> None:
        """Set how ``peer`` observes in this session (``observe_me`` / ``observe_others``)."""
        call = _ops.set_peer_config(self.workspace_id, self._id, peer, config)
        self._client._run(call, timeout)

    # -- reading --------------------------------------------------------------------------------
    def get_context(
        self,
        summary: bool = True,
        tokens: int | None = None,
        peer_target: PeerLike | None = None,
        peer_perspective: PeerLike | None = None,
        search_query: str | None = None,
        *,
        search_top_k: int | None = None,
        search_max_distance: float | None = None,
        include_most_frequent: bool | None = None,
        max_conclusions: int | None = None,
        limit_to_session: bool = False,
        timeout: Timeout = NOT_GIVEN,
    ) -> SessionContext:
        """A context window for the next LLM call: recent messages, a summary of older ones,
        and (with ``peer_target``) what is known about that peer, from ``peer_perspective``'s
        point of view when given. With ``tokens`` the whole answer fits in that budget.

        Convert it with :meth:`SessionContext.to_openai` or :meth:`SessionContext.to_anthropic`.
        """
        call = _ops.session_context(
            self.workspace_id,
            self._id,
            summary=summary,
            tokens=tokens,
            peer_target=peer_target,
            peer_perspective=peer_perspective,
            search_query=search_query,
            search_top_k=search_top_k,
            search_max_distance=search_max_distance,
            include_most_frequent=include_most_frequent,
            max_conclusions=max_conclusions,
            limit_to_session=limit_to_session,
        )
        return self._client._run(call, timeout)

    def summaries(self, *, timeout: Timeout = NOT_GIVEN) -> SessionSummaries:
        """The newest short and long summaries."""
        return self._client._run(_ops.session_summaries(self.workspace_id, self._id), timeout)

    def search(
        self,
        query: str,
        filters: Filters | None = None,
        limit: int = 10,
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> list[Message]:
        """This session's messages that best match ``query``."""
        call = _ops.session_search(self.workspace_id, self._id, query, filters, limit)
        return self._client._run(call, timeout)

    def representation(
        self,
        peer: PeerLike,
        target: PeerLike | None = None,
        search_query: str | None = None,
        *,
        search_top_k: int | None = None,
        search_max_distance: float | None = None,
        include_most_frequent: bool | None = None,
        max_conclusions: int | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> str:
        """What ``peer`` knows (about itself, or about ``target``) from this session."""
        call = _ops.session_representation(
            self.workspace_id,
            self._id,
            peer,
            target=target,
            search_query=search_query,
            search_top_k=search_top_k,
            search_max_distance=search_max_distance,
            include_most_frequent=include_most_frequent,
            max_conclusions=max_conclusions,
        )
        return self._client._run(call, timeout)

    def queue_status(
        self,
        observer: PeerLike | None = None,
        sender: PeerLike | None = None,
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> QueueStatus:
        """Background work for this session."""
        return self._client.queue_status(observer, sender, self._id, timeout=timeout)

    # -- lifecycle ------------------------------------------------------------------------------
    def clone(self, message_id: str | None = None, *, timeout: Timeout = NOT_GIVEN) -> Session:
        """Copy the session (up to and including ``message_id`` when given) into a new one."""
        call = _ops.clone_session(self.workspace_id, self._id, message_id)
        return self._client._session(self._client._run(call, timeout))

    def delete(self, *, timeout: Timeout = NOT_GIVEN) -> None:
        """Delete the session and its messages."""
        self._client._run(_ops.delete_session(self.workspace_id, self._id), timeout)

    def refresh(self, *, timeout: Timeout = NOT_GIVEN) -> SessionInfo:
        """Fetch the session again (get-or-create) and keep the answer in :attr:`info`."""
        call = _ops.get_or_create_session(self.workspace_id, self._id)
        self._info = self._client._run(call, timeout)
        return self._info

    def get_metadata(self, *, timeout: Timeout = NOT_GIVEN) -> dict[str, Any]:
        """The session's metadata, fetched now."""
        return self.refresh(timeout=timeout).metadata

    def set_metadata(self, metadata: Mapping[str, Any], *, timeout: Timeout = NOT_GIVEN) -> None:
        """Replace the session's metadata."""
        call = _ops.update_session(self.workspace_id, self._id, metadata=metadata)
        self._info = self._client._run(call, timeout)

    def get_configuration(self, *, timeout: Timeout = NOT_GIVEN) -> dict[str, Any]:
        """The session's configuration, fetched now."""
        return self.refresh(timeout=timeout).configuration

    def set_configuration(
        self, configuration: Mapping[str, Any], *, timeout: Timeout = NOT_GIVEN
    ) -> None:
        """Replace the session's configuration."""
        call = _ops.update_session(self.workspace_id, self._id, configuration=configuration)
        self._info = self._client._run(call, timeout)


class Conclusions:
    """Conclusions seen through a view: an observer's about an observed peer
    (``peer.conclusions``, ``peer.conclusions_of(other)``) or the whole workspace's
    (``client.conclusions``)."""

    def __init__(self, client: Rapport, observer: str | None, observed: str | None) -> None:
        self._client = client
        self._observer = observer
        self._observed = observed

    @property
    def observer(self) -> str | None:
        """The observing peer of this view, or ``None`` for the whole workspace."""
        return self._observer

    @property
    def observed(self) -> str | None:
        """The observed peer of this view, or ``None`` for the whole workspace."""
        return self._observed

    def __repr__(self) -> str:
        return f"Conclusions(observer={self._observer!r}, observed={self._observed!r})"

    def list(
        self,
        filters: Filters | None = None,
        *,
        session: SessionLike | None = None,
        size: int = _ops.DEFAULT_PAGE_SIZE,
        reverse: bool = False,
        timeout: Timeout = NOT_GIVEN,
    ) -> Paginator[Conclusion]:
        """The conclusions of this view (newest first), optionally of one session."""
        scope = _ops.conclusion_scope(self._observer, self._observed, session)
        combined = _ops.combine_filters(scope, filters)
        build = _ops.list_conclusions(self._client.workspace_id, combined, size, reverse)
        return self._client._paginate(build, timeout)

    def get(self, conclusion_id: str, *, timeout: Timeout = NOT_GIVEN) -> Conclusion:
        """One conclusion by id (``NotFoundError`` when it is outside this view)."""
        found = self._client._run(
            _ops.get_conclusion(self._client.workspace_id, conclusion_id), timeout
        )
        if (self._observer is not None and found.observer_id != self._observer) or (
            self._observed is not None and found.observed_id != self._observed
        ):
            raise NotFoundError(404, f"Conclusion {conclusion_id} is not in this view")
        return found

    def create(
        self,
        conclusions: ConclusionInput | Iterable[ConclusionInput],
        *,
        session: SessionLike | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> builtins.list[Conclusion]:
        """Store conclusions written by hand (``explicit``): strings in a peer view, or
        mappings ``{content, observer_id, observed_id, session_id?}``. Sent 100 at a time."""
        items = _ops.conclusion_items(conclusions, self._observer, self._observed, session)
        created: builtins.list[Conclusion] = []
        for chunk in _ops.chunks(items):
            call = _ops.create_conclusions(self._client.workspace_id, chunk)
            made: builtins.list[Conclusion] = self._client._run(call, timeout)
            created.extend(made)
        return created

    def delete(self, conclusion: str | Conclusion, *, timeout: Timeout = NOT_GIVEN) -> None:
        """Delete a conclusion."""
        conclusion_id = conclusion if isinstance(conclusion, str) else conclusion.id
        self._client._run(_ops.delete_conclusion(self._client.workspace_id, conclusion_id), timeout)

    def query(
        self,
        query: str,
        *,
        top_k: int = 10,
        distance: float | None = None,
        filters: Filters | None = None,
        observer: PeerLike | None = None,
        observed: PeerLike | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> builtins.list[Conclusion]:
        """The ``top_k`` conclusions semantically closest to ``query`` (within ``distance``).

        A workspace-wide view needs ``observer`` and ``observed``.
        """
        observer_id = _ops.peer_id(observer) if observer is not None else self._observer
        observed_id = _ops.peer_id(observed) if observed is not None else self._observed
        if observer_id is None or observed_id is None:
            raise ValueError("query needs an observer and an observed peer")
        scope = _ops.conclusion_scope(observer_id, observed_id, None)
        combined = _ops.combine_filters(scope, filters) or scope
        call = _ops.query_conclusions(self._client.workspace_id, query, top_k, distance, combined)
        return self._client._run(call, timeout)
