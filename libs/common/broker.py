"""JetStream stream layout: one stream, subjects ``<prefix>.<event type>.<workspace>[.<session>]``.

Ids are ``[A-Za-z0-9_-]`` so they are always single, safe subject tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import nats
from nats.aio.client import Client as NatsClient
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError as StreamNotFoundError

from libs.common.events import Event
from libs.common.settings import NatsSettings

NATS_MSG_ID = "Nats-Msg-Id"
EVENT_TYPE_HEADER = "Rapport-Event-Type"


@dataclass(frozen=True)
class StreamLayout:
    """Names derived from :class:`NatsSettings`."""

    stream: str
    prefix: str

    @classmethod
    def from_settings(cls, settings: NatsSettings) -> StreamLayout:
        return cls(stream=settings.nats_stream, prefix=settings.nats_subject_prefix)

    @property
    def all_subjects(self) -> str:
        return f"{self.prefix}.>"

    def subject_for(self, event: Event) -> str:
        return f"{self.prefix}.{event.EVENT_TYPE}.{event.subject_suffix()}"

    def subjects_of_type(self, event_type: str) -> str:
        """Wildcard subject of every event of one type (consumer filter)."""
        return f"{self.prefix}.{event_type}.>"


def stream_config(settings: NatsSettings) -> StreamConfig:
    layout = StreamLayout.from_settings(settings)
    return StreamConfig(
        name=layout.stream,
        subjects=[layout.all_subjects],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=settings.nats_stream_replicas,
        duplicate_window=settings.nats_duplicate_window_s,
        max_age=settings.nats_stream_max_age_days * 86400,
        discard=DiscardPolicy.OLD,
    )


async def connect_nats(settings: NatsSettings, *, name: str) -> NatsClient:
    """Connect with unbounded reconnects: callers keep working through NATS outages."""
    return await nats.connect(
        servers=[s.strip() for s in settings.nats_url.split(",") if s.strip()],
        name=name,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
    )


async def ensure_stream(js: JetStreamContext, settings: NatsSettings) -> None:
    """Create the event stream, or bring its configuration up to date. Idempotent."""
    config = stream_config(settings)
    try:
        await js.stream_info(config.name or "")
    except StreamNotFoundError:
        await js.add_stream(config)
        return
    await js.update_stream(config)
