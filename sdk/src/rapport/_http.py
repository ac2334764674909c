"""The HTTP core shared by the sync and async clients: requests, retries, errors, parsing.

Retry rule
----------
A request is retried at most ``max_retries`` times (so ``max_retries + 1`` attempts):

* **Idempotent requests** — every GET, PUT and DELETE, the get-or-create POSTs (workspace, peer,
  session), and the POSTs that only read (lists, search, chat, representation, conclusion
  query, key minting) — are retried on 429, 502, 503 and 504, on timeouts, and on network or
  protocol errors.
* **Non-idempotent POSTs** — adding messages, uploading files, creating conclusions, cloning a
  session, scheduling a dream, retrying a dead letter — are retried only when the server cannot
  have acted on them: a connection that failed before the request was sent (connect error,
  connect timeout, pool timeout), or a 429 or 503 answer (the server refused the work). A read
  timeout or a 502/504 after the request went out is raised, never replayed.

Before each retry the client waits for ``Retry-After`` when the response has one (seconds or an
HTTP date; values over 60 seconds are not waited for: the error is raised), else an exponential
back-off of 0.5 s * 2**attempt (capped at 8 s) with up to 25 % random jitter taken off.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from ._errors import (
    APIResponseValidationError,
    APIStatusError,
    decode_error_body,
    error_for_status,
    from_transport_error,
)
from ._version import __version__

T = TypeVar("T")

_log = logging.getLogger("rapport")

DEFAULT_BASE_URL = "http://localhost:8000"
DEFAULT_WORKSPACE_ID = "default"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2

INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 8.0
JITTER = 0.25
MAX_RETRY_AFTER = 60.0

RETRY_STATUSES_IDEMPOTENT = frozenset({429, 502, 503, 504})
RETRY_STATUSES_NON_IDEMPOTENT = frozenset({429, 503})


class NotGiven:
    """The type of :data:`NOT_GIVEN`: an argument left out (``None`` means something else)."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN = NotGiven()

#: A timeout: seconds, an :class:`httpx.Timeout`, or ``None`` for no timeout.
TimeoutTypes = float | httpx.Timeout | None


class _NoBody:
    pass


NO_BODY: Any = _NoBody()


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API operation: how to send it and how to read its answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: Mapping[str, str] | None = None
    json: Any = NO_BODY
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    data: Mapping[str, str] | None = None
    idempotent: bool = True
    workspace_scoped: bool = True
    stream: bool = False
    timeout: TimeoutTypes | NotGiven = NOT_GIVEN

    def with_timeout(self, timeout: TimeoutTypes | NotGiven) -> Call[T]:
        """This call with a per-call timeout (``NOT_GIVEN`` keeps the client's)."""
        if isinstance(timeout, NotGiven):
            return self
        return replace(self, timeout=timeout)


def segment(value: str) -> str:
    """A path segment, percent-encoded (valid ids need no encoding, so the URL is unchanged)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"An id must be a non-empty string, got {value!r}")
    return quote(value, safe="")


def query(**values: Any) -> dict[str, str]:
    """Query parameters: ``None`` dropped, booleans as ``true``/``false``, datetimes ISO 8601."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
        else:
            out[key] = str(value)
    return out


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        current = now or datetime.now(timezone.utc)
        seconds = (when - current).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)


def backoff_delay(attempt: int) -> float:
    """Exponential back-off for retry number ``attempt`` (0-based), with jitter taken off."""
    base = min(INITIAL_BACKOFF * (2.0**attempt), MAX_BACKOFF)
    return base * (1.0 - JITTER * _random())


def _random() -> float:
    return random.random()  # noqa: S311 - jitter, not cryptography


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


async def _async_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def should_retry_error(exc: httpx.TransportError, *, idempotent: bool) -> bool:
    """Whether a transport failure may be retried (see the module docstring)."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True  # the request never left this machine
    if not idempotent:
        return False
    return isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


def retry_delay_for_status(
    response: httpx.Response, attempt: int, *, idempotent: bool
) -> float | None:
    """Seconds to wait before retrying after ``response``, or ``None`` to not retry."""
    statuses = RETRY_STATUSES_IDEMPOTENT if idempotent else RETRY_STATUSES_NON_IDEMPOTENT
    if response.status_code not in statuses:
        return None
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if retry_after is None:
        return backoff_delay(attempt)
    if retry_after > MAX_RETRY_AFTER:
        return None
    return retry_after


def _ignore(_: Any) -> None:
    return None


class _CoreBase:
    """Configuration and request building shared by :class:`SyncCore` and :class:`AsyncCore`."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        workspace_id: str,
        timeout: TimeoutTypes,
        max_retries: int,
        default_headers: Mapping[str, str] | None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.workspace_id = workspace_id
        self.timeout = timeout
        self.max_retries = max_retries
        self._headers: dict[str, str] = {
            "User-Agent": f"rapport-python/{__version__}",
            "Accept": "application/json",
        }
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        if default_headers:
            self._headers.update(default_headers)
        self.workspace_ready = False

    def ensure_call(self) -> Call[None]:
        """The get-or-create of this client's workspace, run once before scoped calls."""
        return Call(
            "POST",
            "/v3/workspaces",
            _ignore,
            json={"id": self.workspace_id},
            workspace_scoped=False,
        )

    def build(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
        headers = dict(self._headers)
        if call.stream:
            headers["Accept"] = "text/event-stream"
        timeout = self.timeout if isinstance(call.timeout, NotGiven) else call.timeout
        kwargs: dict[str, Any] = {}
        if call.files is not None:
            kwargs["files"] = dict(call.files)
            if call.data is not None:
                kwargs["data"] = dict(call.data)
        elif not isinstance(call.json, _NoBody):
            kwargs["json"] = call.json
        return http.build_request(
            call.method,
            self.base_url + call.path,
            params=dict(call.params) if call.params else None,
            headers=headers,
            timeout=timeout,
            **kwargs,
        )

    def parse(self, call: Call[T], response: httpx.Response) -> T:
        data: Any = None
        if response.content:
            try:
                data = response.json()
            except ValueError as exc:
                raise APIResponseValidationError(
                    f"{call.method} {call.path} answered {response.status_code} with a body "
                    "that is not JSON",
                    status_code=response.status_code,
                    body=response.text,
                ) from exc
        try:
            return call.parse(data)
        except pydantic.ValidationError as exc:
            raise APIResponseValidationError(
                f"{call.method} {call.path} answered with an unexpected shape: {exc}",
                status_code=response.status_code,
                body=data,
            ) from exc

    @staticmethod
    def status_error(response: httpx.Response) -> APIStatusError:
        return error_for_status(
            response.status_code,
            decode_error_body(response),
            response=response,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )


class SyncCore(_CoreBase):
    """Sends :class:`Call` objects with a blocking :class:`httpx.Client`."""

    def __init__(self, *, http_client: httpx.Client | None = None, **config: Any) -> None:
        super().__init__(**config)
        self._owns_http = http_client is None
        self.http = http_client if http_client is not None else httpx.Client()
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def ensure_workspace(self) -> None:
        if self.workspace_ready:
            return
        with self._lock:
            if not self.workspace_ready:
                self.parse(self.ensure_call(), self.send(self.ensure_call()))
                self.workspace_ready = True

    def execute(self, call: Call[T]) -> T:
        if call.workspace_scoped:
            self.ensure_workspace()
        return self.parse(call, self.send(call))

    def open_stream(self, call: Call[Any]) -> httpx.Response:
        if call.workspace_scoped:
            self.ensure_workspace()
        return self.send(call, stream=True)

    def send(self, call: Call[Any], *, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            request = self.build(self.http, call)
            try:
                response = self.http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if attempt < self.max_retries and should_retry_error(
                    exc, idempotent=call.idempotent
                ):
                    wait = backoff_delay(attempt)
                    _log.info("Retrying %s %s in %.2fs after %r", call.method, call.path, wait, exc)
                    _sleep(wait)
                    attempt += 1
                    continue
                raise from_transport_error(exc) from exc
            if response.is_success:
                return response
            delay: float | None = None
            if attempt < self.max_retries:
                delay = retry_delay_for_status(response, attempt, idempotent=call.idempotent)
            if delay is not None:
                response.close()
                _log.info(
                    "Retrying %s %s in %.2fs after HTTP %s",
                    call.method,
                    call.path,
                    delay,
                    response.status_code,
                )
                _sleep(delay)
                attempt += 1
                continue
            try:
                response.read()
            finally:
                response.close()
            raise self.status_error(response)


class AsyncCore(_CoreBase):
    """Sends :class:`Call` objects with an :class:`httpx.AsyncClient`."""

    def __init__(self, *, http_client: httpx.AsyncClient | None = None, **config: Any) -> None:
        super().__init__(**config)
        self._owns_http = http_client is None
        self.http = http_client if http_client is not None else httpx.AsyncClient()
        self._lock: asyncio.Lock | None = None

    async def close(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def ensure_workspace(self) -> None:
        if self.workspace_ready:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self.workspace_ready:
                self.parse(self.ensure_call(), await self.send(self.ensure_call()))
                self.workspace_ready = True

    async def execute(self, call: Call[T]) -> T:
        if call.workspace_scoped:
            await self.ensure_workspace()
        return self.parse(call, await self.send(call))

    async def open_stream(self, call: Call[Any]) -> httpx.Response:
        if call.workspace_scoped:
            await self.ensure_workspace()
        return await self.send(call, stream=True)

    async def send(self, call: Call[Any], *, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            request = self.build(self.http, call)
            try:
                response = await self.http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if attempt < self.max_retries and should_retry_error(
                    exc, idempotent=call.idempotent
                ):
                    wait = backoff_delay(attempt)
                    _log.info("Retrying %s %s in %.2fs after %r", call.method, call.path, wait, exc)
                    await _async_sleep(wait)
                    attempt += 1
                    continue
                raise from_transport_error(exc) from exc
            if response.is_success:
                return response
            delay: float | None = None
            if attempt < self.max_retries:
                delay = retry_delay_for_status(response, attempt, idempotent=call.idempotent)
            if delay is not None:
                await response.aclose()
                _log.info(
                    "Retrying %s %s in %.2fs after HTTP %s",
                    call.method,
                    call.path,
                    delay,
                    response.status_code,
                )
                await _async_sleep(delay)
                attempt += 1
                continue
            try:
                await response.aread()
            finally:
                await response.aclose()
            raise self.status_error(response)


def resolve_settings(
    base_url: str | None, api_key: str | None, workspace_id: str | None
) -> tuple[str, str | None, str]:
    """Arguments first, then ``RAPPORT_BASE_URL``, ``RAPPORT_API_KEY``, ``RAPPORT_WORKSPACE_ID``,
    then the defaults (``http://localhost:8000``, no key, ``"default"``)."""
    url = base_url or os.environ.get("RAPPORT_BASE_URL") or DEFAULT_BASE_URL
    key = api_key if api_key is not None else (os.environ.get("RAPPORT_API_KEY") or None)
    workspace = workspace_id or os.environ.get("RAPPORT_WORKSPACE_ID") or DEFAULT_WORKSPACE_ID
    return url.rstrip("/"), key, workspace
