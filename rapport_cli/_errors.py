"""Exit codes, and the message and exit code of every error the SDK can raise."""

from __future__ import annotations

from rapport import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RapportError,
)

EXIT_OK = 0
#: The server answered with an error (or an answer the CLI could not use).
EXIT_API = 1
#: The command line was wrong (argparse uses 2 as well).
EXIT_USAGE = 2
#: The server could not be reached: connection refused, DNS failure, timeout.
EXIT_CONNECT = 3
#: 404: the workspace, peer, session, message or dead letter does not exist.
EXIT_NOT_FOUND = 4
#: 401 or 403: the API key is missing, invalid, expired, or does not reach the resource.
EXIT_AUTH = 5

EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  the server answered with an error (its detail is printed on stderr)
  2  usage error (bad flags or arguments)
  3  cannot connect to the server (or it timed out)
  4  not found (404)
  5  authentication or permission error (401, 403)"""


class UsageError(Exception):
    """A command line that parsed but makes no sense (exit code 2)."""


def describe(exc: BaseException, base_url: str) -> tuple[int, str]:
    """The exit code and a one-line message for ``exc``."""
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND, f"not found: {exc.detail}"
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return EXIT_AUTH, f"{exc.status_code} {_auth_hint(exc)}: {exc.detail}"
    if isinstance(exc, APIStatusError):
        return EXIT_API, f"server error {exc.status_code}: {exc.detail}"
    if isinstance(exc, APITimeoutError):
        return EXIT_CONNECT, f"timed out talking to {base_url}: {exc}"
    if isinstance(exc, APIConnectionError):
        return EXIT_CONNECT, f"cannot connect to {base_url}: {exc}"
    if isinstance(exc, RapportError):
        return EXIT_API, str(exc)
    if isinstance(exc, UsageError | ValueError):
        return EXIT_USAGE, str(exc)
    return EXIT_API, f"unexpected error: {type(exc).__name__}: {exc}"


def _auth_hint(exc: APIStatusError) -> str:
    if isinstance(exc, AuthenticationError):
        return "unauthorized (check --api-key / RAPPORT_API_KEY)"
    return "forbidden (the API key does not reach this resource)"
