"""Guards a library-compatibility fact the deriver's delivery depends on: an empty JetStream
pull ``fetch()`` must raise ``nats.errors.TimeoutError`` — the exception FastStream's pull loop
catches. (nats-py 2.15+ raises a bare ``asyncio.TimeoutError`` there, which kills FastStream's
loop mid-batch and strands fetched messages until ``ack_wait``; pyproject pins below 2.15.)"""

from __future__ import annotations

import uuid

import nats
import nats.errors
import pytest

from tests.conftest import InfraEndpoints


async def test_empty_fetch_raises_the_timeout_faststream_catches(infra: InfraEndpoints) -> None:
    nc = await nats.connect(infra.nats_url)
    name = f"COMPAT_{uuid.uuid4().hex[:8]}"
    try:
        js = nc.jetstream()
        await js.add_stream(name=name, subjects=[f"{name.lower()}.>"])
        sub = await js.pull_subscribe(f"{name.lower()}.>", durable="d", stream=name)
        await js.publish(f"{name.lower()}.x", b"1")
        # A partial batch followed by an empty wait: the case that broke in nats-py 2.15+.
        got = await sub.fetch(5, timeout=0.5)
        assert len(got) == 1
        with pytest.raises(nats.errors.TimeoutError):
            await sub.fetch(5, timeout=0.3)
    finally:
        await nc.jetstream().delete_stream(name)
        await nc.close()
