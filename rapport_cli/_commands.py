"""What each command does, with the blocking SDK client.

Every handler takes the client, the parsed arguments and the output, and returns an exit code;
SDK errors propagate to :func:`rapport_cli.cli.main`, which maps them to exit codes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TypeVar

from rapport import (
    DeadLetter,
    Message,
    NotFoundError,
    Paginator,
    Peer,
    PeerInfo,
    QueueStatus,
    Rapport,
    Session,
    SessionInfo,
    SessionSummaries,
    Workspace,
)

from rapport_cli._errors import EXIT_OK, UsageError
from rapport_cli._output import Output, key_values, table, timestamp
from rapport_cli._render import context_counts, context_text

T = TypeVar("T")
Handler = Callable[[Rapport, argparse.Namespace, Output], int]

MAX_PAGE = 100


# -- helpers -----------------------------------------------------------------------------------
def _page_size(limit: int | None) -> int:
    return min(limit, MAX_PAGE) if limit else MAX_PAGE


def _take(items: Iterable[T], limit: int | None) -> list[T]:
    return list(islice(items, limit) if limit else items)


def _infos_of_peers(peers: Iterable[Peer]) -> Iterator[PeerInfo]:
    for peer in peers:
        if peer.info is not None:
            yield peer.info


def _infos_of_sessions(sessions: Iterable[Session]) -> Iterator[SessionInfo]:
    for session in sessions:
        if session.info is not None:
            yield session.info


def _message_rows(messages: Iterable[Message], *, with_session: bool) -> str:
    if with_session:
        return table(
            ["ID", "SESSION", "CREATED", "PEER", "CONTENT"],
            [(m.id, m.session_id, m.created_at, m.peer_id, m.content) for m in messages],
        )
    return table(
        ["ID", "CREATED", "PEER", "TOKENS", "CONTENT"],
        [(m.id, m.created_at, m.peer_id, m.token_count, m.content) for m in messages],
    )


def _find_peer(client: Rapport, peer_id: str) -> Peer:
    # Peers are get-or-create on the server; a filtered list looks one up without creating it.
    found = client.peers({"id": peer_id}, size=1).page(1).items
    if not found:
        raise NotFoundError(404, f"Peer '{peer_id}' not found in workspace '{client.workspace_id}'")
    return found[0]


def _find_session(client: Rapport, session_id: str) -> Session:
    found = client.sessions({"id": session_id}, size=1).page(1).items
    if not found:
        raise NotFoundError(
            404, f"Session '{session_id}' not found in workspace '{client.workspace_id}'"
        )
    return found[0]


# -- workspaces --------------------------------------------------------------------------------
def workspaces_list(client: Rapport, args: argparse.Namespace, out: Output) -> int:
    items: list[Workspace] = _take(client.workspaces(size=_page_size(args.limit)), args.limit)
    if out.as_json:
        out.json(items)
    elif not items:
        out.text("No workspaces.")
    else:
        out.text(
            table(
                ["ID", "CREATED", "METADATA"],
                [(w.id, w.created_at, w.metadata) for w in items],
            )
        )
    return EXIT_OK


# -- peers -------------------------------------------------------------------------------------
def peers_list(client: Rapport, args: argparse.Namespace, out: Output) -> int:
    peers: Paginator[Peer] = client.peers(size=_page_size(args.limit))
    items = _take(_infos_of_peers(peers), args.limit)
    if out.as_json:
        out.json(items)
    elif not items:
        out.text(f"No peers in workspace '{client.workspace_id}'.")
    else:
        out.text(
            table(
                ["ID", "CREATED", "METADATA", "CONFIGURATION"],
                [(p.id, p.created_at, p.metadata, p.configuration) for p in items],
            )
        )
    return EXIT_OK


def peers_show(client: Rapport, args: argparse.Namespace, out: Output) -> int:
    peer = _find_peer(client, args.peer)
    info = peer.info
    card = peer.card()
    representation = peer.representation()
    if out.as_json:
        out.json({"peer": info, "card": card, "representation": representation})
        return EXIT_OK
    lines = [
        key_values(
            [
                ("Peer", peer.id),
                ("Workspace", client.workspace_id),
                ("Created", info.created_at if info else None),
                ("Metadata", info.metadata if info else None),
                ("Configuration", info.configuration if info else None),
            ]
        ),
        "",
        "Card:",
    ]
    lines.extend(f"  - {fact}" for fact in card or [])
    if not card:
        lines.append("  (none)")
    lines += ["", "Representation:"]
    lines.append(_indent(representation) if representation.strip() else "  (nothing known yet)")
    out.text("\n".join(lines))
    return EXIT_OK


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


# -- sessions ----------------------------------------------------------------------------------
def sessions_list(client: Rapport, args: argparse.Namespace, out: Output) -> int:
    sessions: Paginator[Session] = client.sessions(size=_page_size(args.limit))
    items = _take(_infos_of_sessions(sessions), args.limit)
    if out.as_json:
        out.json(items)
    elif not items:
        out.text(f"No sessions in workspace '{client.workspace_id}'.")
    else:
        out.text(
            table(
                ["ID", "ACTIVE", "CREATED", "METADATA"],
                [(s.id, s.is_active, s.created_at, s.metadata) for s in items],
            )
        )
    return EXIT_OK


def sessions_show(client: Rapport, args: argparse.Namespace, out: Output) -> int:
    session = _find_session(client, args.session)
    info = session.info
    peers = [p.info for p in session.peers() if p.info is not None]
    summaries: SessionSummaries = session.summaries()
    if out.as_json:
        out.json({"session": info, "peers": peers, "summaries": summaries})
        return EXIT_OK
    lines = [
        key_values(
            [
                ("Session", session.id),
                ("Workspace", client.workspace_id),
                ("Active", info.is_active if info else None),
                ("Created", info.created_at if info else None),
                ("Metadata", info.metadata if info else None),
                ("Configuration", info.configuration if info else None),
            ]
        ),
        "",
        "Peers:",
    ]
    if peers:
        lines.append(_indent(table(["ID", "CREATED"], [(p.id, p.created_at) for p in peers])))
    else:
        lines.append("  (none)")
    for label, summary in (
        ("Short summary", summaries.short_summary),
        ("Long summary", summaries.long_summary),
    ):
        lines += ["", f"{label}:"]
        if summary is None or not summary.content:
            lines.append("  (none yet)")
            continue
        when = timestamp(summary.created_at) if summary.created_at else "-"
        lines.append(
            f"  (up to message {summary.message_id or '-'}, {summary.token_count} tokens, {when})"
        )
        lines.append(_indent(summary.content))
    out.text("\n".join(lines))
    return EXIT_OK


# -- messages ----------------------------------------------------------------------------------
def messages_list(client: Rapport, args: argparse.Namespace, out: Output) -> int:
    session = Session(client, args.session)
    filters = {"peer_id": args.peer} if args.peer else None
    pages = session.messages(filters, size=_page_size(args.limit), reverse=args.reverse)
    items: list[Message] = _take(pages, args.limit)
    if out.as_json:
        out.json(items)
    elif not items:
        out.text(f"No messages in session '{session.id}'.")
    else:
        out.text(_message_rows(items, with_session=False))
    return EXIT_OK


def messages_add(client: Rapport, args: argparse.Namespace, out: Output) -> int:
    text = _read_stdin() if args.text == ["-"] else " ".join(args.text)
    if not text.strip():
        raise UsageError("the message is empty")
    message = Peer(client, args.peer).message(text)
    session = Session(client, args.session)
    try:
        stored = session.add_messages(message)
    except NotFoundError:
        # The session does not exist yet: create it (get-or-create), then add.
        session = client.session(args.session)
        stored = session.add_messages(message)
    if out.as_json:
        out.json(stored)
    else:
        out.text(_message_rows(stored, with_session=False))
    return EXIT_OK


def _read_stdin() -> str:
    if sys.stdin is None:
        raise UsageError("'-' reads the message from stdin, but there is no stdin")
    return sys.stdin.read().strip()


# -- chat --------------------------------------------------------------------------------------
def chat(client: Rapport, args: argparse.Namespace, out: Output) -> int:
    peer = Peer(client, args.peer)
    if out.as_json or args.no_stream:
        answer = peer.chat(
            args.query, target=args.target, session=args.session, reasoning_level=args.level
        )
        if out.as_json:
            out.json(
                {
                    "peer_id": peer.id,
                    "target": args.target,
                    "session_id": args.session,
                    "query": args.query,
                    "content": answer,
                }
            )
        elif answer:
            out.write(answer if answer.endswith("\n") else answer + "\n")
        return EXIT_OK
    last = ""
    try:
        with peer.chat(
            args.query,
            target=args.target,
            session=args.session,
            reasoning_level=args.level,
            stream=True,
        ) as stream:
            for chunk in stream:
                out.write(chunk)
                last = chunk
    finally:
        # End the line, also when the stream broke off (the error follows on stderr).
        if last and not last.endswith("\n"):
            out.write("\n")
    return EXIT_OK


# -- context -----------------------------------------------------------------------------------
def context(client: Rapport, args: argparse.Namespace, out: Output) -> int:
    fmt = args.format or ("raw" if out.as_json else "text")  # --json alone: the server's answer
    assistant = args.assistant or args.peer_perspective
    if fmt in ("openai", "anthropic") and not assistant:
        raise UsageError(
            f"--format {fmt} needs --assistant PEER (the peer whose messages become the "
            "assistant's turns)"
        )
    if args.peer_perspective and not args.peer_target:
        raise UsageError("--peer-perspective needs --peer-target")
    ctx = Session(client, args.session).get_context(
        summary=not args.no_summary,
        tokens=args.tokens,
        peer_target=args.peer_target,
        peer_perspective=args.peer_perspective,
    )
    if fmt == "openai":
        out.json(ctx.to_openai(assistant=assistant))
    elif fmt == "anthropic":
        out.json(ctx.to_anthropic(assistant=assistant))
    elif fmt == "raw":
        out.json(ctx)
    elif out.as_json:
        out.json({"session_id": args.session, "text": context_text(ctx), **context_counts(ctx)})
    else:
        counts = context_counts(ctx)
        header = (
            f"# Context of session '{args.session}': {counts['messages']} messages, "
            f"{counts['total_tokens']} tokens"
            + (" (with summary)" if counts["has_summary"] else "")
        )
        body = context_text(ctx)
        out.text(header + ("\n" + body if body else "\n(empty)"))
    return EXIT_OK


# -- search ------------------------------------------------------------------------------------
def search(client: Rapport, args: argparse.Namespace, out: Output) -> int:
    results: list[Message]
    if args.session:
        filters = {"peer_id": args.peer} if args.peer else None
        results = Session(client, args.session).search(args.query, filters, args.limit)
    elif args.peer:
        results = Peer(client, args.peer).search(args.query, limit=args.limit)
    else:
        results = client.search(args.query, limit=args.limit)
    if out.as_json:
        out.json(results)
    elif not results:
        out.text("No matching messages.")
    else:
        out.text(_message_rows(results, with_session=True))
    return EXIT_OK


# -- queue -------------------------------------------------------------------------------------
def queue_status(client: Rapport, args: argparse.Namespace, out: Output) -> int:
    status: QueueStatus = client.queue_status(args.observer, args.sender, args.session)
    if out.as_json:
        out.json(status)
        return EXIT_OK
    text = key_values(
        [
            ("Total", status.total_work_units),
            ("Completed", status.completed_work_units),
            ("In progress", status.in_progress_work_units),
            ("Pending", status.pending_work_units),
            ("Dead letters", status.dead_letter_work_units),
            ("Idle", status.is_idle),
        ]
    )
    if status.sessions:
        rows = [
            (
                key,
                s.total_work_units,
                s.completed_work_units,
                s.in_progress_work_units,
                s.pending_work_units,
            )
            for key, s in sorted(status.sessions.items())
        ]
        text += "\n\n" + table(["SESSION", "TOTAL", "COMPLETED", "IN PROGRESS", "PENDING"], rows)
    out.text(text)
    return EXIT_OK


def queue_dead_letters(client: Rapport, args: argparse.Namespace, out: Output) -> int:
    letters: list[DeadLetter] = list(client.dead_letters(include_retried=args.all, size=MAX_PAGE))
    if out.as_json:
        out.json(letters)
    elif not letters:
        out.text("No dead letters." if args.all else "No dead letters waiting for a retry.")
    else:
        out.text(
            table(
                ["ID", "CREATED", "SESSION", "CONSUMER", "EVENT", "ATTEMPTS", "RETRIED", "ERROR"],
                [
                    (
                        d.id,
                        d.created_at,
                        d.session_id,
                        d.consumer,
                        d.event_type,
                        d.attempts,
                        d.retried_at,
                        d.error,
                    )
                    for d in letters
                ],
            )
        )
    return EXIT_OK


def queue_retry(client: Rapport, args: argparse.Namespace, out: Output) -> int:
    letter = client.retry_dead_letter(args.id)
    if out.as_json:
        out.json(letter)
    else:
        out.text(
            f"Published dead letter {letter.id} ({letter.event_type} {letter.event_id}) again."
        )
    return EXIT_OK


# -- keys --------------------------------------------------------------------------------------
def keys_create(client: Rapport, args: argparse.Namespace, out: Output) -> int:
    if args.peer and args.session:
        raise UsageError("a key is scoped to a peer or a session, not both")
    key = client.create_key(
        client.workspace_id, peer_id=args.peer, session_id=args.session, expires_at=args.expires_at
    )
    if out.as_json:
        out.json(
            {
                "key": key,
                "workspace_id": client.workspace_id,
                "peer_id": args.peer,
                "session_id": args.session,
                "expires_at": args.expires_at,
            }
        )
    else:
        out.text(key)
    return EXIT_OK
