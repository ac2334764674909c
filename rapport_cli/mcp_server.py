"""``rapport mcp``: Rapport's memory as Model Context Protocol tools, served on stdio.

Built on the ``mcp`` package's :class:`~mcp.server.mcpserver.MCPServer` (mcp 2.x). Every tool
calls the server through the async ``rapport`` SDK; a failed call comes back to the agent as an
MCP tool error (``isError: true``) whose text is the server's own ``detail``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field
from rapport import AsyncPeer, AsyncRapport, AsyncSession, Message, NotFoundError, RapportError

from rapport_cli import __version__
from rapport_cli._errors import EXIT_OK, describe
from rapport_cli._render import context_counts, context_text
from rapport_cli._settings import Settings

__all__ = ["build_server", "serve"]

INSTRUCTIONS = """\
Rapport is a memory for conversations between peers (users, agents, any participant).
Store what is said with add_messages (a session is one conversation; it is created on first
use). Rapport reads new messages in the background and builds, for each peer, a memory of
who the others are. Ask a peer's memory a question with ask_memory, fetch a ready-to-use
context window for your next reply with get_context, and find past messages with search.
list_sessions and list_peers show what exists."""

PeerId = Annotated[str, Field(min_length=1, max_length=512, description="A peer id.")]
SessionId = Annotated[str, Field(min_length=1, max_length=512, description="A session id.")]


# -- tool input and output shapes --------------------------------------------------------------
class MessageIn(BaseModel):
    """One message to store."""

    peer_id: str = Field(min_length=1, max_length=512, description="Who wrote it (a peer id).")
    content: str = Field(description="What they said.")


class StoredMessage(BaseModel):
    """A message as Rapport stores it."""

    id: str = Field(description="Server-generated message id.")
    session_id: str
    peer_id: str = Field(description="The author.")
    content: str
    created_at: datetime
    token_count: int = Field(description="Tokens in the content (o200k tokenizer).")


class AddedMessages(BaseModel):
    """The messages stored by add_messages, in order."""

    session_id: str
    messages: list[StoredMessage]


class MemoryAnswer(BaseModel):
    """A peer's memory answering a question."""

    peer_id: str
    target: str | None = Field(description="The peer asked about, when not the peer itself.")
    answer: str = Field(description="The answer; empty when the memory has nothing to say.")


class ContextWindow(BaseModel):
    """A session's context, ready to put in front of an LLM."""

    session_id: str
    text: str = Field(
        description="Tagged blocks (<peer_representation>, <peer_card>, <summary>) when "
        "present, then one 'peer_id: content' line per recent message, oldest first."
    )
    messages: int = Field(description="Recent messages included.")
    message_tokens: int = Field(description="Tokens of those messages.")
    summary_tokens: int = Field(description="Tokens of the summary (0 without one).")
    total_tokens: int = Field(description="message_tokens + summary_tokens.")
    has_summary: bool
    has_peer_representation: bool
    has_peer_card: bool


class SearchResults(BaseModel):
    """Messages matching a search, best first."""

    query: str
    results: list[StoredMessage]


class SessionSummary(BaseModel):
    """A session of the workspace."""

    id: str
    is_active: bool
    metadata: dict[str, Any]
    created_at: datetime


class SessionList(BaseModel):
    """Sessions of the workspace."""

    workspace_id: str
    sessions: list[SessionSummary]


class PeerSummary(BaseModel):
    """A peer of the workspace."""

    id: str
    metadata: dict[str, Any]
    configuration: dict[str, Any]
    created_at: datetime


class PeerList(BaseModel):
    """Peers of the workspace."""

    workspace_id: str
    peers: list[PeerSummary]


def _stored(message: Message) -> StoredMessage:
    return StoredMessage(
        id=message.id,
        session_id=message.session_id,
        peer_id=message.peer_id,
        content=message.content,
        created_at=message.created_at,
        token_count=message.token_count,
    )


@contextmanager
def _tool_errors(base_url: str) -> Iterator[None]:
    """Turn SDK failures into MCP tool errors carrying the server's detail."""
    try:
        yield
    except RapportError as exc:
        raise ToolError(describe(exc, base_url)[1]) from exc
    except ValueError as exc:  # arguments the SDK refuses before sending anything
        raise ToolError(f"invalid arguments: {exc}") from exc


# -- the server --------------------------------------------------------------------------------
def build_server(client: AsyncRapport) -> MCPServer[Any]:
    """An MCP server whose tools work in ``client``'s workspace."""
    server: MCPServer[Any] = MCPServer(
        name="rapport",
        title="Rapport memory",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )
    base_url = client.base_url
    reading = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
    writing = ToolAnnotations(
        read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
    )

    def register(fn: Callable[..., Awaitable[Any]], annotations: ToolAnnotations) -> None:
        server.add_tool(
            fn,
            name=fn.__name__,
            description=inspect.cleandoc(fn.__doc__ or ""),
            annotations=annotations,
        )

    async def add_messages(
        session_id: SessionId,
        messages: Annotated[
            list[MessageIn],
            Field(min_length=1, max_length=100, description="1 to 100 messages, in order."),
        ],
    ) -> AddedMessages:
        """Store messages of a conversation in Rapport's memory.

        Each message has the peer_id of its author and its content. The session (one
        conversation) is created when it does not exist yet, and authors join it
        automatically. Rapport then reads the messages in the background to update what
        each peer knows. Returns the stored messages with their ids.
        """
        with _tool_errors(base_url):
            batch = [AsyncPeer(client, m.peer_id).message(m.content) for m in messages]
            session = AsyncSession(client, session_id)
            try:
                stored = await session.add_messages(batch)
            except NotFoundError:
                session = await client.session(session_id)
                stored = await session.add_messages(batch)
        return AddedMessages(session_id=session_id, messages=[_stored(m) for m in stored])

    async def ask_memory(
        peer_id: Annotated[str, Field(min_length=1, description="The peer whose memory answers.")],
        query: Annotated[str, Field(min_length=1, max_length=10_000, description="The question.")],
        target: Annotated[
            str | None,
            Field(
                description="Ask what peer_id knows about this other peer (only from what "
                "peer_id witnessed) instead of about itself."
            ),
        ] = None,
        session_id: Annotated[
            str | None, Field(description="Only use what was said in this session.")
        ] = None,
    ) -> MemoryAnswer:
        """Ask a peer's memory a question in natural language (Rapport's dialectic).

        For example, ask the user's peer "What does this user prefer for breakfast?", or ask
        an agent's peer with target="bob" what it knows about Bob. The answer is grounded in
        what Rapport derived from stored messages; messages added moments ago may not be
        reflected until background processing catches up.
        """
        with _tool_errors(base_url):
            answer = await AsyncPeer(client, peer_id).chat(query, target=target, session=session_id)
        return MemoryAnswer(peer_id=peer_id, target=target, answer=answer or "")

    async def get_context(
        session_id: SessionId,
        tokens: Annotated[
            int | None,
            Field(ge=1, description="Fit the whole context in this many tokens."),
        ] = None,
        peer_target: Annotated[
            str | None,
            Field(description="Include what is known about this peer (representation, card)."),
        ] = None,
        peer_perspective: Annotated[
            str | None,
            Field(
                description="With peer_target: what this peer knows of peer_target, instead "
                "of the global view."
            ),
        ] = None,
    ) -> ContextWindow:
        """Get a session's context window for your next LLM call.

        Returns the recent messages (oldest first) and a summary of older ones as text,
        within the token budget when tokens is given, plus what is known about peer_target
        when given, and the token counts.
        """
        if peer_perspective is not None and peer_target is None:
            raise ToolError("peer_perspective needs peer_target")
        with _tool_errors(base_url):
            context = await AsyncSession(client, session_id).get_context(
                tokens=tokens, peer_target=peer_target, peer_perspective=peer_perspective
            )
        return ContextWindow(
            session_id=session_id, text=context_text(context), **context_counts(context)
        )

    async def search(
        query: Annotated[str, Field(min_length=1, description="What to look for.")],
        session_id: Annotated[
            str | None, Field(description="Only messages of this session.")
        ] = None,
        peer_id: Annotated[
            str | None, Field(description="Only messages written by this peer.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="How many results.")] = 10,
    ) -> SearchResults:
        """Search stored messages (hybrid full-text and semantic search), best match first.

        Searches the whole workspace, or one session and/or one author.
        """
        with _tool_errors(base_url):
            if session_id is not None:
                filters = {"peer_id": peer_id} if peer_id is not None else None
                found = await AsyncSession(client, session_id).search(query, filters, limit)
            elif peer_id is not None:
                found = await AsyncPeer(client, peer_id).search(query, limit=limit)
            else:
                found = await client.search(query, limit=limit)
        return SearchResults(query=query, results=[_stored(m) for m in found])

    async def list_sessions(
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many.")] = 50,
    ) -> SessionList:
        """List the sessions (conversations) of the workspace, oldest first."""
        sessions: list[SessionSummary] = []
        with _tool_errors(base_url):
            async for session in client.sessions(size=min(limit, 100)):
                info = session.info
                if info is not None:
                    sessions.append(
                        SessionSummary(
                            id=info.id,
                            is_active=info.is_active,
                            metadata=info.metadata,
                            created_at=info.created_at,
                        )
                    )
                if len(sessions) >= limit:
                    break
        return SessionList(workspace_id=client.workspace_id, sessions=sessions)

    async def list_peers(
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many.")] = 50,
    ) -> PeerList:
        """List the peers (participants: users, agents...) of the workspace, oldest first."""
        peers: list[PeerSummary] = []
        with _tool_errors(base_url):
            async for peer in client.peers(size=min(limit, 100)):
                info = peer.info
                if info is not None:
                    peers.append(
                        PeerSummary(
                            id=info.id,
                            metadata=info.metadata,
                            configuration=info.configuration,
                            created_at=info.created_at,
                        )
                    )
                if len(peers) >= limit:
                    break
        return PeerList(workspace_id=client.workspace_id, peers=peers)

    register(add_messages, writing)
    register(ask_memory, reading)
    register(get_context, reading)
    register(search, reading)
    register(list_sessions, reading)
    register(list_peers, reading)
    return server


async def _serve(settings: Settings) -> None:
    async with settings.async_client() as client:
        await build_server(client).run_stdio_async()


def serve(settings: Settings) -> int:
    """Run the MCP server on stdin/stdout until the client disconnects."""
    anyio.run(_serve, settings)
    return EXIT_OK
