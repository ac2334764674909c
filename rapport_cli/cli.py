"""The ``rapport`` command line: argument parsing, dispatch and exit codes.

Global options (``--base-url``, ``--api-key``, ``--workspace``, ``--json``, ``--timeout``) may
be given before the command or after it. Every error is reported on stderr as one line, never
as a traceback, and mapped to an exit code (see ``rapport --help``).
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from rapport_cli import __version__, _commands
from rapport_cli._errors import EXIT_API, EXIT_CODES_HELP, EXIT_USAGE, describe
from rapport_cli._output import Output
from rapport_cli._settings import DEFAULT_BASE_URL, DEFAULT_TIMEOUT, DEFAULT_WORKSPACE_ID, Settings

__all__ = ["build_parser", "main"]

ENVIRONMENT_HELP = f"""\
environment:
  RAPPORT_BASE_URL      server root, without /v3 (default {DEFAULT_BASE_URL})
  RAPPORT_API_KEY       API key sent as a Bearer token (default: none, for a server with auth off)
  RAPPORT_WORKSPACE_ID  workspace to work in (default "{DEFAULT_WORKSPACE_ID}")
  flags win over the environment."""

LEVELS = ("minimal", "low", "medium", "high", "max")
FORMATS = ("text", "openai", "anthropic", "raw")

_Formatter = argparse.RawDescriptionHelpFormatter


# -- argument types ----------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _search_limit(text: str) -> int:
    value = _positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"must be at most 100, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _iso_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 date-time such as 2030-01-31T12:00:00Z, got {text!r}"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# -- parser ------------------------------------------------------------------------------------
def _add_global_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    # Sub-commands repeat the options with SUPPRESS defaults, so a flag given after the command
    # is honoured and one given before it is not overwritten.
    def default(value: object) -> object:
        return value if top_level else argparse.SUPPRESS

    group = parser.add_argument_group("global options")
    group.add_argument(
        "--base-url",
        metavar="URL",
        default=default(None),
        help=f"server root, without /v3 (env RAPPORT_BASE_URL; default {DEFAULT_BASE_URL})",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        default=default(None),
        help="API key, sent as a Bearer token (env RAPPORT_API_KEY; default: none)",
    )
    group.add_argument(
        "--workspace",
        metavar="ID",
        default=default(None),
        help=f'workspace to work in (env RAPPORT_WORKSPACE_ID; default "{DEFAULT_WORKSPACE_ID}")',
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine output: one JSON document on stdout",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_float,
        default=default(None),
        help=f"seconds per HTTP request (default {DEFAULT_TIMEOUT:g})",
    )


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=79)


class _Builder:
    def __init__(self) -> None:
        self.common = argparse.ArgumentParser(add_help=False)
        _add_global_options(self.common, top_level=False)

    def group(
        self, commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str
    ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        parser = commands.add_parser(
            name, help=text, description=text, parents=[self.common], formatter_class=_Formatter
        )
        return parser.add_subparsers(
            dest=f"{name}_command", metavar="COMMAND", required=True, title="commands"
        )

    def command(
        self,
        commands: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        text: str,
        handler: _commands.Handler | None,
        *,
        description: str | None = None,
    ) -> argparse.ArgumentParser:
        parser = commands.add_parser(
            name,
            help=text,
            description=_wrap(description or text),
            parents=[self.common],
            formatter_class=_Formatter,
        )
        parser.set_defaults(handler=handler)
        return parser


def build_parser() -> argparse.ArgumentParser:
    """The whole ``rapport`` command line."""
    parser = argparse.ArgumentParser(
        prog="rapport",
        description=_wrap(
            "Inspect and use a Rapport memory server: workspaces, peers, sessions and "
            "messages; chat with a peer's memory; print a session's context; watch the queue; "
            "mint API keys; serve the memory to agents over MCP."
        ),
        epilog=f"{ENVIRONMENT_HELP}\n\n{EXIT_CODES_HELP}\n\n"
        "Run 'rapport COMMAND --help' for the options of a command.",
        formatter_class=_Formatter,
    )
    _add_global_options(parser, top_level=True)
    parser.add_argument("--version", action="version", version=f"rapport {__version__}")
    build = _Builder()
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, title="commands"
    )

    # workspaces
    workspaces = build.group(commands, "workspaces", "list workspaces (needs an admin key)")
    p = build.command(
        workspaces, "list", "list every workspace on the server", _commands.workspaces_list
    )
    p.add_argument("--limit", type=_positive_int, metavar="N", help="at most N workspaces")

    # peers
    peers = build.group(commands, "peers", "list and inspect peers")
    p = build.command(peers, "list", "list the peers of the workspace", _commands.peers_list)
    p.add_argument("--limit", type=_positive_int, metavar="N", help="at most N peers")
    p = build.command(
        peers,
        "show",
        "show a peer: metadata, configuration, card and representation",
        _commands.peers_show,
        description="Show a peer's metadata and configuration, its peer card (short stable "
        "facts) and its representation (what it is known to be, from its own messages). "
        "The peer is not created when missing (exit code 4).",
    )
    p.add_argument("peer", metavar="PEER", help="peer id")

    # sessions
    sessions = build.group(commands, "sessions", "list and inspect sessions")
    p = build.command(
        sessions, "list", "list the sessions of the workspace", _commands.sessions_list
    )
    p.add_argument("--limit", type=_positive_int, metavar="N", help="at most N sessions")
    p = build.command(
        sessions,
        "show",
        "show a session: its peers and summaries",
        _commands.sessions_show,
        description="Show a session's metadata, its member peers and its newest short and "
        "long summaries. The session is not created when missing (exit code 4).",
    )
    p.add_argument("session", metavar="SESSION", help="session id")

    # messages
    messages = build.group(commands, "messages", "list and add messages of a session")
    p = build.command(
        messages, "list", "list a session's messages, oldest first", _commands.messages_list
    )
    p.add_argument("session", metavar="SESSION", help="session id")
    p.add_argument("--peer", metavar="P", help="only messages written by peer P")
    p.add_argument("--reverse", action="store_true", help="newest first")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="at most N messages")
    p = build.command(
        messages,
        "add",
        "add a message to a session",
        _commands.messages_add,
        description="Add one message written by --peer to SESSION. TEXT words are joined with "
        "spaces; a single '-' reads the message from stdin. The session is created when "
        "missing and the author joins it.",
    )
    p.add_argument("session", metavar="SESSION", help="session id")
    p.add_argument("--peer", metavar="P", required=True, help="the author's peer id")
    p.add_argument("text", metavar="TEXT", nargs="+", help="the message ('-' for stdin)")

    # chat
    p = build.command(
        commands,
        "chat",
        "ask a peer's memory a question (the dialectic)",
        _commands.chat,
        description="Ask PEER's memory a question in natural language. The answer is streamed "
        "to stdout as it is written (--no-stream waits for the whole answer; --json prints "
        "one JSON document with the whole answer).",
    )
    p.add_argument("peer", metavar="PEER", help="the peer whose memory answers")
    p.add_argument("query", metavar="QUERY", help="the question")
    p.add_argument(
        "--target",
        metavar="T",
        help="ask what PEER knows about peer T (only from what it witnessed)",
    )
    p.add_argument("--session", metavar="S", help="only use what was said in session S")
    p.add_argument("--level", choices=LEVELS, help="reasoning level (server default: low)")
    p.add_argument("--no-stream", action="store_true", help="print the answer once it is complete")

    # context
    p = build.command(
        commands,
        "context",
        "print a session's context window for an LLM",
        _commands.context,
        description="Print the context of SESSION for the next LLM call: recent messages, a "
        "summary of older ones and, with --peer-target, what is known about that peer. "
        "--format text (the default) is readable; openai and anthropic print the message "
        "list as JSON (the --assistant peer's messages get the assistant role); raw prints "
        "the server's answer as JSON (the default with --json; --json --format text prints "
        "the text and its token counts as JSON).",
    )
    p.add_argument("session", metavar="SESSION", help="session id")
    p.add_argument("--tokens", type=_positive_int, metavar="N", help="fit the context in N tokens")
    p.add_argument(
        "--peer-target", metavar="P", help="include the representation and card of peer P"
    )
    p.add_argument(
        "--peer-perspective",
        metavar="P",
        help="what peer P knows of --peer-target (needs --peer-target)",
    )
    p.add_argument("--no-summary", action="store_true", help="leave out the summary")
    p.add_argument("--format", choices=FORMATS, help="output format (default: text)")
    p.add_argument(
        "--assistant",
        metavar="PEER",
        help="for openai/anthropic: the peer that plays the assistant "
        "(default: --peer-perspective)",
    )

    # search
    p = build.command(
        commands,
        "search",
        "search messages",
        _commands.search,
        description="Messages that best match QUERY (hybrid full-text and semantic search), "
        "in the whole workspace, one session (--session) and/or one author (--peer).",
    )
    p.add_argument("query", metavar="QUERY", help="what to look for")
    p.add_argument("--session", metavar="S", help="only messages of session S")
    p.add_argument("--peer", metavar="P", help="only messages written by peer P")
    p.add_argument(
        "--limit", type=_search_limit, metavar="N", default=10, help="1 to 100 (default 10)"
    )

    # queue
    queue = build.group(commands, "queue", "background (deriver) work: status and dead letters")
    p = build.command(
        queue,
        "status",
        "how much background work is done, running and pending",
        _commands.queue_status,
    )
    p.add_argument("--session", metavar="S", help="only work for session S")
    p.add_argument("--observer", metavar="P", help="only work observed by peer P")
    p.add_argument("--sender", metavar="P", help="only work about messages sent by peer P")
    p = build.command(
        queue,
        "dead-letters",
        "list the events the deriver gave up on",
        _commands.queue_dead_letters,
    )
    p.add_argument("--all", action="store_true", help="include the ones already retried")
    p = build.command(queue, "retry", "publish a dead-lettered event again", _commands.queue_retry)
    p.add_argument("id", metavar="ID", help="dead letter id")

    # keys
    keys = build.group(commands, "keys", "mint API keys (needs an admin key)")
    p = build.command(
        keys,
        "create",
        "mint a scoped API key (a JWT)",
        _commands.keys_create,
        description="Mint an API key for the workspace given with --workspace (default: "
        'RAPPORT_WORKSPACE_ID, else "default"), narrowed to one peer or one session. The '
        "key alone is printed on stdout.",
    )
    p.add_argument("--peer", metavar="P", help="a key for peer P only")
    p.add_argument("--session", metavar="S", help="a key for session S only")
    p.add_argument(
        "--expires-at",
        metavar="ISO",
        type=_iso_datetime,
        help="expiry, ISO-8601 (no offset means UTC)",
    )

    # mcp
    build.command(
        commands,
        "mcp",
        "run the MCP server on stdio (for agents)",
        None,
        description="Serve Rapport to agents over the Model Context Protocol on stdin/stdout. "
        "Tools: add_messages, ask_memory, get_context, search, list_sessions, list_peers. "
        "Configure it with the global options or the environment.",
    )
    return parser


# -- running -----------------------------------------------------------------------------------
def _error(message: str) -> None:
    sys.stderr.write(f"rapport: error: {message}\n")
    sys.stderr.flush()


def _run_mcp(settings: Settings) -> int:
    try:
        from rapport_cli.mcp_server import serve
    except ImportError as exc:
        _error(f"the MCP server needs the 'mcp' package ({exc})")
        return EXIT_API
    return serve(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors, 0 after --help
    settings = Settings.resolve(args.base_url, args.api_key, args.workspace, args.timeout)
    try:
        if args.command == "mcp":
            return _run_mcp(settings)
        handler: Callable[..., int] = args.handler
        out = Output(sys.stdout, as_json=bool(args.json))
        with settings.client() as client:
            return handler(client, args, out)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``rapport ... | head``): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_API
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line and an exit code
        code, message = describe(exc, settings.base_url)
        _error(message)
        if code == EXIT_USAGE:
            sys.stderr.write(f"Run '{parser.prog} --help' for usage.\n")
        return code
