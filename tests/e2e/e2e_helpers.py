"""Helpers shared by the end-to-end test modules."""

from __future__ import annotations


def stream_events(stack, subject: str) -> list[tuple[dict, bytes]]:
    """Every event on ``subject`` in the MUSIC stream, as (headers, payload), read with an
    ephemeral pull consumer from the stack's real nats-server."""
    import asyncio

    import nats

    async def read():
        nc = await nats.connect(**stack.nats_connect_kwargs())  # as the admin user
        sub = await nc.jetstream().pull_subscribe(subject, stream="MUSIC")
        out = []
        try:
            while True:
                for m in await sub.fetch(batch=50, timeout=1.0):
                    out.append((dict(m.headers or {}), m.data))
                    await m.ack()
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            pass
        await nc.close()
        return out

    return asyncio.run(read())
