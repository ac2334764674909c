"""Running an ASGI app as a process: uvicorn with a graceful SIGTERM.

On SIGTERM (or SIGINT) uvicorn stops accepting connections, lets in-flight requests finish for
up to ``shutdown_grace_s``, runs the app's lifespan shutdown (consumers stop and hand back
unfinished work, the outbox relay stops, pools close), then re-raises the signal. A SIGTERM
that ended in such a clean stop exits with status 0 (what process supervisors expect from a
requested stop), instead of dying by the re-raised signal.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

import uvicorn

from libs.common.settings import HttpSettings


class _Stopped(SystemExit):
    """Raised by the SIGTERM handler once uvicorn has shut down cleanly."""


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(0)


def serve(
    app: Any, *, host: str, port: int, shutdown_grace_s: float, keep_alive_s: int = 75
) -> int:
    """Serve ``app`` until SIGTERM/SIGINT; returns the exit status (0 after a clean stop)."""
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=keep_alive_s,
            timeout_graceful_shutdown=max(1, round(shutdown_grace_s)),
        )
    except _Stopped:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def serve_with(app: Any, settings: HttpSettings) -> int:
    """:func:`serve` with a service's HTTP settings (bind address, grace, keep-alive)."""
    return serve(
        app,
        host=settings.host,
        port=settings.port,
        shutdown_grace_s=settings.shutdown_grace_s,
        keep_alive_s=settings.http_keep_alive_s,
    )
