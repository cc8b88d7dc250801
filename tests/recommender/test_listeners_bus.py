"""The ``interactions.recorded`` consumer on a real nats-server (JetStream, loopback): a batch
recorded once however often it is delivered, a batch that can never succeed terminated
and dead-lettered, and each tenant's listeners apart."""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest

from musicaas.common.v1 import common_pb2 as c
from musicaas.events.v1 import events_pb2
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus
from musicaas_recommender.listeners import InteractionsConsumer, InteractionStore, ListenerRecommender
from test_listeners import DIM, catalogue, interaction

pytestmark = pytest.mark.integration


async def _until(predicate, what: str, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_interactions_over_nats_are_recorded_once_and_bad_batches_dead_lettered(nats_url, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    a, b = f"acme-{suffix}", f"globex-{suffix}"
    index, _, _ = catalogue()
    index._tracks[a] = index._tracks.pop("acme")
    handled: list[tuple[str, str]] = []
    async with InteractionStore(tmp_path / "i.sqlite3") as store, Bus(nats_url, name="test-listeners") as bus:
        consumer = InteractionsConsumer(ListenerRecommender(store, index))
        durable = f"test-interactions-{suffix}"

        async def handler(event, headers):
            if event.tenant in (a, b):
                await consumer.handle(event, headers)
                handled.append(("ok", event.batch_id))

        async def failed(event, error, headers):
            if event is not None and event.tenant in (a, b):
                await consumer.failed(event, error, headers)
                handled.append(("failed", event.batch_id))

        ready = asyncio.Event()
        task = asyncio.create_task(bus.consume(
            durable=durable, subject=consumer.subject, message_type=consumer.message_type, handler=handler,
            on_permanent_failure=failed, nak_delay_s=0.1, ready=ready))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            good = events_pb2.InteractionsRecorded(tenant=a, batch_id="good", interactions=[
                interaction("i1", "listener/1", "trk_00"), interaction("i2", "listener/1", "trk_01"),
                interaction("i3", "listener/2", "trk_00", c.INTERACTION_TYPE_SKIP, 3.0)])
            # published twice under two event ids (the duplicate window keeps both): a replay
            await bus.publish(busmod.INTERACTIONS_RECORDED, good, event_id=f"ir:{a}:good:1")
            await bus.publish(busmod.INTERACTIONS_RECORDED, good, event_id=f"ir:{a}:good:2")
            other = events_pb2.InteractionsRecorded(tenant=b, batch_id="other", interactions=[
                interaction("i1", "listener/1", "trk_09")])
            await bus.publish(busmod.INTERACTIONS_RECORDED, other, event_id=f"ir:{b}:other")
            bad = events_pb2.InteractionsRecorded(tenant=a, batch_id="bad", interactions=[
                interaction("n", "listener/3", "trk_02", c.INTERACTION_TYPE_PLAY, math.nan),
                interaction("u", "listener/3", "trk_02", 12345)])
            await bus.publish(busmod.INTERACTIONS_RECORDED, bad, event_id=f"ir:{a}:bad")

            async def all_handled() -> bool:
                return handled.count(("ok", "good")) == 2 and ("ok", "other") in handled \
                    and ("failed", "bad") in handled

            await _until(all_handled, "every batch handled")
            assert await store.interaction_count(a, "listener/1") == 2
            assert await store.interaction_count(a, "listener/2") == 1
            assert await store.interaction_count(b, "listener/1") == 1
            assert await store.interaction_count(a, "listener/3") == 0
            assert (await store.profile(a, "listener/1")).shape == (DIM,)
            letters = await bus.dead_letters(durable)
            assert [d.code for d in letters] == ["INVALID_ARGUMENT"] and "no valid row" in letters[0].reason
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
