"""The exception hierarchy of the Rapport SDK.

::

    RapportError
    ├── APIStatusError                 the server answered with a non-2xx status
    │   ├── BadRequestError            400
    │   ├── AuthenticationError        401
    │   ├── PermissionDeniedError      403
    │   ├── NotFoundError              404
    │   ├── ConflictError              409
    │   ├── PayloadTooLargeError       413
    │   ├── UnsupportedMediaTypeError  415
    │   ├── UnprocessableEntityError   422
    │   ├── RateLimitError             429 (``retry_after``)
    │   └── InternalServerError        500 and above
    ├── APIConnectionError             the server could not be reached, or the connection broke
    │   └── APITimeoutError            a connect, read, write or pool timeout expired
    ├── APIResponseValidationError     a 2xx body that is not JSON or not the documented shape
    ├── StreamError                    the server reported an error inside an SSE stream
    └── WaitTimeoutError               ``wait_for_queue`` gave up (also a ``TimeoutError``)

Every error the SDK raises because of the network or the server is a :class:`RapportError`.
Bad arguments are refused before any request with :class:`ValueError` or :class:`TypeError`.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RapportError",
    "RateLimitError",
    "StreamError",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "WaitTimeoutError",
]


class RapportError(Exception):
    """Base class of every error raised by the SDK for network or server trouble."""


class APIStatusError(RapportError):
    """The server answered with a status outside 2xx.

    Attributes:
        status_code: The HTTP status.
        detail: A readable message: the ``detail`` of the ``{"detail": ...}`` body (a FastAPI
            validation list is flattened to ``"loc: msg; loc: msg"``), else ``message`` or
            ``error``, else the body text, else ``"HTTP <status>"``.
        body: The decoded JSON body, or the text when it is not JSON, or ``None``.
        response: The :class:`httpx.Response`, when there was one.
    """

    def __init__(
        self,
        status_code: int,
        detail: str,
        body: object = None,
        *,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.body = body
        self.response = response


class BadRequestError(APIStatusError):
    """400: the request could not be processed (for example an unreadable upload)."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, malformed, forged or expired."""


class PermissionDeniedError(APIStatusError):
    """403: the API key is valid but its scope does not reach this resource."""


class NotFoundError(APIStatusError):
    """404: the workspace, peer, session, message or conclusion does not exist."""


class ConflictError(APIStatusError):
    """409: the resource is in a state that forbids the change."""


class PayloadTooLargeError(APIStatusError):
    """413: the body or uploaded file is larger than the server accepts."""


class UnsupportedMediaTypeError(APIStatusError):
    """415: the uploaded file type is not supported."""


class UnprocessableEntityError(APIStatusError):
    """422: the request is well formed but invalid (bad ids, filters, sizes...)."""


class RateLimitError(APIStatusError):
    """429: too many requests.

    Attributes:
        retry_after: Seconds the server asked to wait (from ``Retry-After``), if it said.
    """

    def __init__(
        self,
        status_code: int,
        detail: str,
        body: object = None,
        *,
        response: httpx.Response | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status_code, detail, body, response=response)
        self.retry_after = retry_after


class InternalServerError(APIStatusError):
    """500 or above: the server, or a dependency behind it, failed."""


class APIConnectionError(RapportError):
    """The request did not get an HTTP response (connection refused, reset, DNS...)."""

    def __init__(self, message: str = "Connection error", *, request: httpx.Request | None = None):
        super().__init__(message)
        self.request = request


class APITimeoutError(APIConnectionError):
    """A connect, read, write or pool timeout expired."""

    def __init__(self, message: str = "Request timed out", *, request: httpx.Request | None = None):
        super().__init__(message, request=request)


class APIResponseValidationError(RapportError):
    """A successful response whose body is not JSON or does not have the documented shape.

    Attributes:
        status_code: The HTTP status of the response.
        body: The decoded JSON body, or the raw text when it is not JSON.
    """

    def __init__(self, message: str, *, status_code: int, body: object = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class StreamError(RapportError):
    """The server sent an ``{"error": ...}`` event inside a streamed answer."""


class WaitTimeoutError(RapportError, TimeoutError):
    """``wait_for_queue`` ran out of time before the queue drained."""


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: UnprocessableEntityError,
}


def _flatten_detail(detail: object) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts: list[str] = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = item.get("loc")
                where = ".".join(str(p) for p in loc) if isinstance(loc, list | tuple) else ""
                parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


def _detail_of(body: object, status_code: int) -> str:
    if isinstance(body, dict):
        for key in ("detail", "message", "error"):
            value = body.get(key)
            if value:
                return _flatten_detail(value)
        return f"HTTP {status_code}"
    if isinstance(body, str):
        return body.strip() or f"HTTP {status_code}"
    if body is None:
        return f"HTTP {status_code}"
    return _flatten_detail(body)


def error_for_status(
    status_code: int,
    body: object,
    *,
    response: httpx.Response | None = None,
    retry_after: float | None = None,
) -> APIStatusError:
    """Build the :class:`APIStatusError` subclass that matches ``status_code``."""
    detail = _detail_of(body, status_code)
    if status_code == 429:
        return RateLimitError(status_code, detail, body, response=response, retry_after=retry_after)
    if status_code >= 500:
        return InternalServerError(status_code, detail, body, response=response)
    cls = _STATUS_ERRORS.get(status_code, APIStatusError)
    return cls(status_code, detail, body, response=response)


def decode_error_body(response: httpx.Response) -> Any:
    """The JSON of an error response, its text when it is not JSON, ``None`` when empty."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def from_transport_error(exc: httpx.TransportError) -> APIConnectionError:
    """The SDK error for an httpx transport failure (the cause stays on ``__cause__``)."""
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"Request timed out ({type(exc).__name__}: {exc})")
    return APIConnectionError(f"Connection error ({type(exc).__name__}: {exc})")
