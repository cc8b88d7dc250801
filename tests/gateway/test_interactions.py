"""RecordInteractions through the real gateway on loopback, against the session's real
nats-server: good rows are published as one ``music.<tenant>.interactions.recorded`` event,
each malformed row (real malformed input: NaN, 10 kB ids, control characters, unknown enum
values, unknown and another tenant's tracks, times in the future) is rejected with its index,
field and a bounded reason, a replayed batch carries the same ids, and batches over 1000 rows
are refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import math

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.gateway.v1 import gateway_pb2
from musicaas.runtime import bus as busmod
from musicaas_gateway import interactions
from tests.gateway.conftest import bearer, gateway_server, random_wav, upload

pytestmark = pytest.mark.integration

PLAY = common_pb2.INTERACTION_TYPE_PLAY
LIKE = common_pb2.INTERACTION_TYPE_LIKE



def _row(listener: str, track: str, event: int = PLAY, played_s: float = 30.0, **kw) -> common_pb2.Interaction:
    return common_pb2.Interaction(listener_id=listener, track_id=track, event=event, played_s=played_s, **kw)


async def _events(bus, tenant: str, n: int, timeout_s: float = 10.0) -> list[events_pb2.InteractionsRecorded]:
    """The first ``n`` interactions.recorded events of ``tenant`` on the stream."""
    sub = await bus.js.pull_subscribe(busmod.subject_for(busmod.INTERACTIONS_RECORDED, tenant), durable=None)
    out = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(out) < n and asyncio.get_running_loop().time() < deadline:
            try:
                msgs = await sub.fetch(n - len(out), timeout=1.0)
            except asyncio.TimeoutError:
                continue
            for m in msgs:
                out.append(events_pb2.InteractionsRecorded.FromString(m.data))
                await m.ack()
    finally:
        await sub.unsubscribe()
    return out


@pytest.fixture(scope="module")
async def gw(nats_url):
    async with gateway_server(nats_url, tenants=2) as server:
        (a, key_a), (b, key_b) = server["tenants"]
        tracks = [(await upload(server["stub"], key_a, random_wav())).track_id for _ in range(2)]
        other = (await upload(server["stub"], key_b, random_wav())).track_id
        yield {**server, "a": a, "key_a": key_a, "tracks": tracks, "other_tenants_track": other}


async def test_good_rows_are_published_and_each_bad_row_is_rejected_with_its_index(gw):
    stub, key, (t1, t2) = gw["stub"], gw["key_a"], gw["tracks"]
    future = Timestamp()
    future.FromDatetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2))
    rows = [
        _row("alice", t1),                                                # 0 good
        _row("alice", t2, LIKE, 0.0, interaction_id="my-id:1"),           # 1 good, caller's id
        _row("alice", t1, played_s=math.nan),                             # 2 NaN
        _row("alice", t1, played_s=-1.0),                                 # 3 negative
        _row("alice", t1, event=99),                                      # 4 unknown enum value
        _row("x" * 10_000, t1),                                           # 5 10 kB listener id
        _row("bob\u202e", t1),                                            # 6 bidi override
        _row("", t1),                                                     # 7 empty listener
        _row("bob", "trk_" + "0" * 24),                                   # 8 unknown track
        _row("bob", gw["other_tenants_track"]),                           # 9 another tenant's track
        _row("bob", "../../etc/passwd"),                                  # 10 not a track id
        _row("bob", t1, at=future),                                       # 11 in the future
        _row("bob", t1, interaction_id="has spaces"),                     # 12 bad id
        _row("bob", t2, event=common_pb2.INTERACTION_TYPE_UNSPECIFIED),   # 13 no event
        _row("alice", t1),                                                # 14 = row 0 again: recorded once
    ]
    resp = await stub.RecordInteractions(gateway_pb2.RecordInteractionsRequest(interactions=rows),
                                         metadata=bearer(key), timeout=30)
    rejected = {r.index: r for r in resp.rejected}
    assert sorted(rejected) == list(range(2, 14))
    assert {i: rejected[i].field for i in rejected} == {
        2: "played_s", 3: "played_s", 4: "event", 5: "listener_id", 6: "listener_id", 7: "listener_id",
        8: "track_id", 9: "track_id", 10: "track_id", 11: "at", 12: "interaction_id", 13: "event",
    }
    assert all(len(r.reason) <= interactions.MAX_REASON_CHARS for r in resp.rejected)
    assert "x" * 100 not in rejected[5].reason  # the 10 kB id is not echoed
    assert resp.recorded == 2 and resp.batch_id.startswith("ib_")

    (event,) = await _events(gw["bus"], gw["a"], 1)
    assert event.tenant == gw["a"] and event.batch_id == resp.batch_id
    assert [(r.listener_id, r.track_id, r.event) for r in event.interactions] == [("alice", t1, PLAY), ("alice", t2, LIKE)]
    assert event.interactions[1].interaction_id == "my-id:1"
    assert event.interactions[0].interaction_id.startswith("ix_") and event.interactions[0].HasField("at")

    # the same batch again (rows without `at` included): the same ids and batch id, so nothing
    # is recorded twice downstream (and JetStream drops the event inside its duplicate window)
    await asyncio.sleep(1.1)  # a later receive time must not change the derived ids
    again = await stub.RecordInteractions(gateway_pb2.RecordInteractionsRequest(interactions=rows),
                                          metadata=bearer(key), timeout=30)
    assert again.recorded == 2 and again.batch_id == resp.batch_id
    assert len(await _events(gw["bus"], gw["a"], 2, timeout_s=3.0)) == 1


async def test_an_empty_or_oversized_batch_is_invalid_argument(gw):
    stub, key, (t1, _) = gw["stub"], gw["key_a"], gw["tracks"]
    for rows in ([], [_row("a", t1)] * (interactions.MAX_BATCH_ROWS + 1)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.RecordInteractions(gateway_pb2.RecordInteractionsRequest(interactions=rows),
                                          metadata=bearer(key), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "interactions" in info.value.details()


async def test_a_full_batch_of_1000_rows_is_one_event(gw):
    stub, key, (t1, t2) = gw["stub"], gw["key_a"], gw["tracks"]
    rows = [_row(f"listener-{i % 50}", (t1, t2)[i % 2], played_s=float(i)) for i in range(1000)]
    resp = await stub.RecordInteractions(gateway_pb2.RecordInteractionsRequest(interactions=rows),
                                         metadata=bearer(key), timeout=60)
    assert resp.recorded == 1000 and not resp.rejected


def test_derived_ids_depend_on_every_field():
    at = Timestamp(seconds=1_700_000_000)
    base = _row("l", "trk_" + "1" * 24, at=at)
    variants = [_row("m", "trk_" + "1" * 24, at=at), _row("l", "trk_" + "2" * 24, at=at),
                _row("l", "trk_" + "1" * 24, LIKE, at=at), _row("l", "trk_" + "1" * 24, played_s=31.0, at=at),
                _row("l", "trk_" + "1" * 24, at=Timestamp(seconds=1_700_000_001))]
    ids = {interactions.derived_interaction_id(r) for r in [base, *variants]}
    assert len(ids) == 6 and interactions.derived_interaction_id(_row("l", "trk_" + "1" * 24)) not in ids
    assert interactions.derived_interaction_id(base) == interactions.derived_interaction_id(_row("l", "trk_" + "1" * 24, at=at))
    assert interactions.batch_id("t", ["a", "b"]) == interactions.batch_id("t", ["b", "a"]) != interactions.batch_id("u", ["a", "b"])
