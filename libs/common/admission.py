"""Admission control: a bounded number of requests in flight per process, a bounded wait for a
slot, and an immediate ``503`` with ``Retry-After`` past that.

Without it an overloaded process accepts every request, each one waits on the database pool
and the event loop, latency grows until clients time out (and retry, adding load), and memory
grows with the number of parked requests. With it, the work in flight stays near what the
process can do, the excess is refused at once — before its body is read — and a client that
honours ``Retry-After`` comes back later.

Requests fall into classes, each with its own budget, so a burst of heavy writes never starves
the cheap reads (and the reverse):

* ``exempt`` — ``/health`` and ``/metrics``: never queued, never shed (an orchestrator must see
  a busy process as alive, and the shed counters must stay readable under overload); likewise
  everything outside the ``/v3`` API (API docs, the web console's pages and assets): the console
  is a client of ``/v3`` — its API calls are admitted like any other, and a page holding a slot
  while it waits for its own API calls in the same process could starve them;
* ``write`` — ``POST``/``PUT``/``PATCH``/``DELETE`` that change state (messages, uploads,
  get-or-create, updates, deletes);
* ``read`` — ``GET``/``HEAD`` and the ``POST`` routes that only read (``…/list``, ``…/search``,
  ``…/chat``, ``…/representation``, ``…/conclusions/query``, ``/v3/keys``).

A budget is ``max_in_flight`` requests running, at most ``max_queued`` more waiting (first come,
first served) for at most ``queue_timeout_s``; a request that finds the queue full, or whose wait
runs out, is answered ``503`` with ``Retry-After``. A request keeps its slot until its response
is fully sent (a streamed chat answer holds it until the last chunk).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

import orjson
from prometheus_client import Counter, Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

RequestClass = Literal["exempt", "read", "write"]

#: Paths that are never queued nor shed.
EXEMPT_PATHS = frozenset({"/health", "/metrics"})
#: Last path segment of the ``POST`` routes that only read.
READ_ONLY_POST_SUFFIXES = ("/list", "/search", "/chat", "/representation", "/query")
READ_ONLY_POST_PATHS = frozenset({"/v3/keys"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

REQUESTS_SHED = Counter(
    "rapport_http_requests_shed_total",
    "Requests refused with 503 by admission control, by request class and reason "
    "(queue_full: no room to wait; queue_timeout: no slot freed in time)",
    ["request_class", "reason"],
)
REQUESTS_IN_FLIGHT = Gauge(
    "rapport_http_requests_in_flight",
    "Requests holding an admission slot, by request class",
    ["request_class"],
)
REQUESTS_QUEUED = Gauge(
    "rapport_http_requests_queued",
    "Requests waiting for an admission slot, by request class",
    ["request_class"],
)


def classify(method: str, path: str) -> RequestClass:
    """The budget a request is counted against (see the module docstring)."""
    path = path.rstrip("/") or "/"
    if path in EXEMPT_PATHS or not (path == "/v3" or path.startswith("/v3/")):
        return "exempt"
    method = method.upper()
    if method in READ_METHODS:
        return "read"
    if method == "POST" and (
        path in READ_ONLY_POST_PATHS or path.endswith(READ_ONLY_POST_SUFFIXES)
    ):
        return "read"
    return "write"


class Shed(Exception):  # noqa: N818 - an outcome, not a fault
    """No slot: the request must be refused (``reason`` is ``queue_full`` or ``queue_timeout``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SlotPool:
    """At most ``capacity`` holders; at most ``max_queued`` waiters, served first come first
    served, each for at most ``timeout_s``. Single event loop; no locks needed."""

    def __init__(
        self, capacity: int, *, max_queued: int, timeout_s: float, name: str = "pool"
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.name = name
        self.capacity = capacity
        self.max_queued = max_queued
        self.timeout_s = timeout_s
        self.in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    async def acquire(self) -> None:
        """Take a slot, waiting in line if needed; raise :class:`Shed` when that is not possible."""
        if self.in_use < self.capacity and not self.queued:
            self.in_use += 1
            return
        if self.queued >= self.max_queued or self.timeout_s <= 0:
            raise Shed("queue_full")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        queued_gauge = REQUESTS_QUEUED.labels(self.name)
        queued_gauge.inc()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.timeout_s)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # the slot was handed over just as the wait ran out: keep it
            waiter.cancel()
            self._drop_done_waiters()
            raise Shed("queue_timeout") from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed over, but the request is gone: pass the slot on
            else:
                waiter.cancel()
            self._drop_done_waiters()
            raise
        finally:
            queued_gauge.dec()
        # release() handed its slot over: in_use already counts this holder.

    def release(self) -> None:
        """Free a slot, handing it straight to the first live waiter if there is one."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_use -= 1

    def _drop_done_waiters(self) -> None:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()


@dataclass(frozen=True)
class Budget:
    max_in_flight: int
    max_queued: int


class AdmissionControlMiddleware:
    """ASGI middleware applying a :class:`SlotPool` per request class (outermost, so a refused
    request costs no body read, no routing and no database work)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        read: Budget,
        write: Budget,
        queue_timeout_s: float,
        retry_after_s: float,
    ) -> None:
        self.app = app
        budgets: dict[RequestClass, Budget] = {"read": read, "write": write}
        self.pools = {
            kind: SlotPool(
                budget.max_in_flight,
                max_queued=budget.max_queued,
                timeout_s=queue_timeout_s,
                name=kind,
            )
            for kind, budget in budgets.items()
        }
        self.retry_after = str(max(1, math.ceil(retry_after_s)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = classify(scope["method"], scope["path"])
        if kind == "exempt":
            await self.app(scope, receive, send)
            return
        pool = self.pools[kind]
        try:
            await pool.acquire()
        except Shed as shed:
            REQUESTS_SHED.labels(kind, shed.reason).inc()
            await self._refuse(send, kind, shed.reason)
            return
        REQUESTS_IN_FLIGHT.labels(kind).inc()
        try:
            await self.app(scope, receive, send)
        finally:
            REQUESTS_IN_FLIGHT.labels(kind).dec()
            pool.release()

    async def _refuse(self, send: Send, kind: RequestClass, reason: str) -> None:
        pool = self.pools[kind]
        why = (
            f"every {kind} slot ({pool.capacity}) is busy and {pool.max_queued} requests are "
            "already waiting"
            if reason == "queue_full"
            else f"no {kind} slot freed up within {pool.timeout_s:g} s"
        )
        detail = (
            f"Server overloaded: {why}. Nothing was done; retry after {self.retry_after} s "
            "(Retry-After), with fewer concurrent requests or larger message batches"
        )
        body = orjson.dumps({"detail": detail})
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", self.retry_after.encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
