"""Rapport: a Python client for the Rapport memory platform (and any Honcho v3 server).

Quick start::

    from rapport import Rapport

    with Rapport() as client:  # RAPPORT_BASE_URL, RAPPORT_API_KEY, RAPPORT_WORKSPACE_ID
        alice, bob = client.peer("alice"), client.peer("bob")
        session = client.session("breakfast")
        session.add_messages(bob.message("I had eggs this morning"))
        print(bob.chat("What did I have for breakfast?"))

:class:`AsyncRapport` offers the same surface with ``async`` methods.
"""

from ._async_client import AsyncConclusions, AsyncPeer, AsyncRapport, AsyncSession
from ._client import Conclusions, Peer, Rapport, Session
from ._context import SessionContext
from ._errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RapportError,
    RateLimitError,
    StreamError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
    WaitTimeoutError,
)
from ._http import NOT_GIVEN, NotGiven
from ._models import (
    Conclusion,
    DeadLetter,
    Message,
    MessageCreate,
    Page,
    PeerContext,
    PeerInfo,
    QueueStatus,
    SessionInfo,
    SessionPeerConfig,
    SessionQueueStatus,
    SessionSummaries,
    Summary,
    Workspace,
)
from ._pagination import AsyncPaginator, Paginator
from ._streaming import AsyncChatStream, ChatStream
from ._version import __version__

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncChatStream",
    "AsyncConclusions",
    "AsyncPaginator",
    "AsyncPeer",
    "AsyncRapport",
    "AsyncSession",
    "AuthenticationError",
    "BadRequestError",
    "ChatStream",
    "Conclusion",
    "Conclusions",
    "ConflictError",
    "DeadLetter",
    "InternalServerError",
    "Message",
    "MessageCreate",
    "NotFoundError",
    "NotGiven",
    "Page",
    "Paginator",
    "PayloadTooLargeError",
    "Peer",
    "PeerContext",
    "PeerInfo",
    "PermissionDeniedError",
    "QueueStatus",
    "Rapport",
    "RapportError",
    "RateLimitError",
    "Session",
    "SessionContext",
    "SessionInfo",
    "SessionPeerConfig",
    "SessionQueueStatus",
    "SessionSummaries",
    "StreamError",
    "Summary",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "WaitTimeoutError",
    "Workspace",
    "__version__",
]
