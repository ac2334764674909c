"""One typed error hierarchy, rendered by one handler as ``{"detail": ...}``.

Service code raises these; HTTP boundaries map them with :func:`install_error_handlers`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RapportError(Exception):
    """Base of every error a client may see. ``status_code`` decides the HTTP status."""

    status_code: ClassVar[int] = 500
    default_detail: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None):
        self.detail = detail or self.default_detail
        self.headers = headers
        super().__init__(self.detail)


class BadRequestError(RapportError):
    status_code = 400
    default_detail = "Bad request"


class AuthenticationError(RapportError):
    status_code = 401
    default_detail = "Missing or invalid credentials"


class ForbiddenError(RapportError):
    status_code = 403
    default_detail = "This key is not allowed to access this resource"


class NotFoundError(RapportError):
    status_code = 404
    default_detail = "Not found"


class ConflictError(RapportError):
    status_code = 409
    default_detail = "Conflict"


class PayloadTooLargeError(RapportError):
    status_code = 413
    default_detail = "Request body too large"


class UnsupportedMediaTypeError(RapportError):
    status_code = 415
    default_detail = "Unsupported media type"


class ValidationError(RapportError):
    status_code = 422
    default_detail = "Invalid input"


#: Seconds sent in ``Retry-After`` with a 503 for an unavailable or saturated dependency.
RETRY_AFTER_S = 1


class DependencyUnavailableError(RapportError):
    """A backing service (Postgres, NATS) is unreachable; retrying later may succeed. Answered
    503 with ``Retry-After``."""

    status_code = 503
    default_detail = "A backing service is unavailable, retry later"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None):
        super().__init__(detail, headers={"Retry-After": str(RETRY_AFTER_S), **(headers or {})})


class OverloadedError(DependencyUnavailableError):
    """Capacity is exhausted (no free database connection in time, the database's connection
    limit); nothing was done and retrying later may succeed."""

    default_detail = "Service temporarily overloaded, retry later"


def error_body(detail: Any) -> dict[str, Any]:
    """The wire shape of every error response."""
    return {"detail": detail}
