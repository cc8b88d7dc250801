"""The recommender's gRPC handlers and its ``tracks.analyzed`` and ``tracks.deleted``
consumers over a real Qdrant Edge shard: unit tests of one class each with a fake bus, the
servicer behind a real grpc.aio server on loopback, and the consumers on a real nats-server."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import numpy as np
import pytest

from musicaas.common.v1 import common_pb2
from musicaas.embedding import EMBEDDING_DIM
from musicaas.events.v1 import events_pb2
from musicaas.recommender.v1 import recommender_pb2, recommender_pb2_grpc
from musicaas.runtime import bus as busmod
from musicaas.runtime import telemetry
from musicaas.runtime.bus import Bus
from musicaas.runtime.errors import InvalidArgument, NotFound, Unauthenticated, Unavailable
from musicaas.runtime.server import GrpcService, run_service
from musicaas.tenancy import tenant_metadata
from musicaas_recommender.index import EdgeTrackIndex, ScoredTrack, TrackFilter, TrackPayload
from musicaas_recommender.service import (
    DEFAULT_LIMIT,
    AnalyzedConsumer,
    DeletedConsumer,
    IndexWriter,
    RecommenderServicer,
    RecommenderSettings,
    filter_from_proto,
    scored_to_proto,
)

T = "acme"
OTHER = "globex"


def test_the_embedding_size_comes_from_the_shared_contract(monkeypatch):
    assert RecommenderSettings().embedding_dim == EMBEDDING_DIM
    monkeypatch.setenv("MUSICAAS_EMBEDDING_DIM", "12")
    assert RecommenderSettings().embedding_dim == 12


def test_filter_from_proto():
    assert filter_from_proto(recommender_pb2.TrackFilter()) is None
    full = recommender_pb2.TrackFilter(
        tempo_min_bpm=0.0, tempo_max_bpm=128.5, key="F#", mode=common_pb2.MODE_MINOR,
        source=common_pb2.TRACK_SOURCE_GENERATED,
    )
    assert filter_from_proto(full) == TrackFilter(
        tempo_min_bpm=0.0, tempo_max_bpm=128.5, key="F#", mode="minor", source="generated"
    )
    # an explicit 0 BPM bound is a bound; unset fields stay None
    assert filter_from_proto(recommender_pb2.TrackFilter(tempo_min_bpm=0.0)) == TrackFilter(tempo_min_bpm=0.0)
    assert filter_from_proto(recommender_pb2.TrackFilter(key="C")) == TrackFilter(key="C")


def test_scored_to_proto():
    pl = TrackPayload(track_id="t", key="Bb", mode="major", tempo_bpm=92.0, source="generated",
                      duration_s=31.5, loudness_lufs=-12.25, title="Song")
    wire = scored_to_proto(ScoredTrack(track_id="t", score=0.75, payload=pl))
    assert wire == recommender_pb2.ScoredTrack(
        track_id="t", score=0.75, key="Bb", mode=common_pb2.MODE_MAJOR, tempo_bpm=92.0,
        source=common_pb2.TRACK_SOURCE_GENERATED, title="Song", duration_s=31.5, loudness_lufs=-12.25,
        metadata=common_pb2.TrackMetadata(title="Song"),
    )
    bare = TrackPayload(track_id="u", key=None, mode=None, tempo_bpm=60.0, source="chorale",
                        duration_s=1.0, loudness_lufs=-30.0)
    wire = scored_to_proto(ScoredTrack(track_id="u", score=-0.5, payload=bare))
    assert (wire.key, wire.mode, wire.source) == ("", common_pb2.MODE_UNSPECIFIED, common_pb2.TRACK_SOURCE_UNSPECIFIED)


class FakeBus:
    """The Bus methods the consumer uses, over a dict keyed by (tenant, track id)."""

    def __init__(self) -> None:
        self.tracks: dict[tuple[str, str], common_pb2.Track] = {}
        self.failures: list[tuple[str, str, str, str]] = []

    async def update_track(self, tenant, track_id, change, *, create_if_missing=False):
        if (tenant, track_id) not in self.tracks:
            assert create_if_missing
            self.tracks[tenant, track_id] = common_pb2.Track(track_id=track_id, tenant=tenant)
        change(self.tracks[tenant, track_id])
        return self.tracks[tenant, track_id]

    async def fail_track(self, tenant, track_id, *, stage, error, ce_id=""):
        self.failures.append((tenant, track_id, stage, error.code.name))


class FakeContext:
    """The servicer context's invocation metadata, as the gateway sends it."""

    def __init__(self, tenant: str | None = T) -> None:
        self.metadata = tenant_metadata(tenant) if tenant is not None else ()

    def invocation_metadata(self):
        return self.metadata


def analyzed(track_id: str, embedding: list[float], *, key: str = "C", mode=common_pb2.MODE_MAJOR,
             tempo_bpm: float = 120.0, source=common_pb2.TRACK_SOURCE_UPLOAD,
             tenant: str = T) -> events_pb2.TrackAnalyzed:
    analysis = common_pb2.TrackAnalysis(duration_s=20.0, tempo_bpm=tempo_bpm, key=key, mode=mode,
                                        loudness_lufs=-14.0, embedding=embedding)
    return events_pb2.TrackAnalyzed(track_id=track_id, tenant=tenant, analysis=analysis, source=source,
                                    title=f"title {track_id}")


def gauge() -> float:
    return telemetry.INDEX_POINTS._value.get()


DIM = 4
EVENTS = [
    analyzed("a", [1.0, 0.0, 0.0, 0.0]),
    analyzed("b", [0.9, 0.1, 0.0, 0.0], key="Gb", mode=common_pb2.MODE_MINOR, tempo_bpm=90.0),
    analyzed("c", [0.5, 0.5, 0.0, 0.0], key="", mode=common_pb2.MODE_UNSPECIFIED,
             source=common_pb2.TRACK_SOURCE_GENERATED),
    analyzed("d", [0.0, 1.0, 0.0, 0.0], tempo_bpm=150.0),
]


@pytest.fixture
async def index(tmp_path):
    idx = EdgeTrackIndex(tmp_path / "shard", dim=DIM)
    yield idx
    await idx.close()


async def test_consumer_indexes_the_track_and_marks_it_indexed(index):
    bus = FakeBus()
    consumer = AnalyzedConsumer(bus, index)
    for event in EVENTS:
        await consumer.handle(event, {})
    await consumer.handle(EVENTS[0], {})  # redelivery: idempotent
    assert await index.count() == len(EVENTS)
    assert {t: bus.tracks[t].state for t in bus.tracks} == {(T, e.track_id): common_pb2.TRACK_STATE_INDEXED
                                                            for e in EVENTS}
    got, vector = await index.get(T, "b")
    assert got == TrackPayload(track_id="b", key="Gb", mode="minor", tempo_bpm=90.0, source="upload",
                               duration_s=20.0, loudness_lufs=-14.0, title="title b",
                               description="Moderate tempo at 90 BPM, in the key of Gb minor, 20 s long. Title: title b.")
    np.testing.assert_allclose(vector, np.array([0.9, 0.1, 0, 0]) / np.hypot(0.9, 0.1), atol=1e-6)
    got, _ = await index.get(T, "c")
    assert (got.key, got.mode, got.source) == (None, None, "generated")


async def test_consumer_changes_only_the_state_of_a_stored_track(index):
    bus = FakeBus()
    stored = common_pb2.Track(track_id="a", tenant=T, state=common_pb2.TRACK_STATE_ANALYZED, title="kept",
                              filename="a.wav", source=common_pb2.TRACK_SOURCE_UPLOAD)
    bus.tracks[T, "a"] = common_pb2.Track()
    bus.tracks[T, "a"].CopyFrom(stored)
    await AnalyzedConsumer(bus, index).handle(EVENTS[0], {})
    stored.state = common_pb2.TRACK_STATE_INDEXED
    assert bus.tracks[T, "a"] == stored
    assert await index.count() == 1


async def test_consumer_rejects_bad_events_without_marking_them(index):
    bus = FakeBus()
    consumer = AnalyzedConsumer(bus, index)
    for event, match in (
        (analyzed("", [1.0, 0.0, 0.0, 0.0]), "track_id"),
        (analyzed("x", [1.0, 0.0]), "dimension"),
        (analyzed("x", [0.0] * DIM), "zeros"),
        (analyzed("x", [1.0, 0.0, 0.0, 0.0], key="H"), "tonic"),
        (analyzed("x", [1.0, 0.0, 0.0, 0.0], tenant=""), "tenant"),
        (analyzed("x", [1.0, 0.0, 0.0, 0.0], tenant="Not.A.Tenant"), "tenant"),
    ):
        with pytest.raises(InvalidArgument, match=match):
            await consumer.handle(event, {})
    assert bus.tracks == {} and await index.count() == 0


async def test_servicer_answers_from_the_index(index):
    consumer = AnalyzedConsumer(FakeBus(), index)
    for event in EVENTS:
        await consumer.handle(event, {})
    servicer = RecommenderServicer(index)
    ctx = FakeContext(T)

    similar = await servicer.SimilarTracks(recommender_pb2.SimilarTracksRequest(track_id="a"), ctx)
    assert [t.track_id for t in similar.tracks] == ["b", "c", "d"]  # limit 0: DEFAULT_LIMIT
    assert DEFAULT_LIMIT >= len(EVENTS)
    assert similar.tracks[0].key == "Gb" and similar.tracks[0].mode == common_pb2.MODE_MINOR
    assert similar.tracks[0].score == pytest.approx(0.9 / np.hypot(0.9, 0.1), abs=1e-5)
    request = recommender_pb2.SimilarTracksRequest(
        track_id="a", limit=1, filter=recommender_pb2.TrackFilter(tempo_min_bpm=100.0)
    )
    assert [t.track_id for t in (await servicer.SimilarTracks(request, ctx)).tracks] == ["c"]

    request = recommender_pb2.RecommendRequest(liked_track_ids=["a"], disliked_track_ids=["d"])
    recommended = await servicer.Recommend(request, ctx)
    assert [t.track_id for t in recommended.tracks] == ["b", "c"]
    request = recommender_pb2.RecommendRequest(
        liked_track_ids=["a"], filter=recommender_pb2.TrackFilter(source=common_pb2.TRACK_SOURCE_GENERATED)
    )
    assert [t.track_id for t in (await servicer.Recommend(request, ctx)).tracks] == ["c"]

    with pytest.raises(InvalidArgument, match="track_id"):
        await servicer.SimilarTracks(recommender_pb2.SimilarTracksRequest(), ctx)
    with pytest.raises(InvalidArgument, match="limit"):
        await servicer.SimilarTracks(recommender_pb2.SimilarTracksRequest(track_id="a", limit=-1), ctx)
    with pytest.raises(InvalidArgument, match="limit"):
        await servicer.Recommend(recommender_pb2.RecommendRequest(liked_track_ids=["a"], limit=101), ctx)
    with pytest.raises(NotFound, match="nope"):
        await servicer.SimilarTracks(recommender_pb2.SimilarTracksRequest(track_id="nope"), ctx)


# -- tenants --------------------------------------------------------------------------------


async def test_consumer_keeps_each_tenants_tracks_apart(index):
    bus = FakeBus()
    consumer = AnalyzedConsumer(bus, index)
    for event in EVENTS:
        await consumer.handle(event, {})
    # the same track id in another tenant, with another vector: a second point
    await consumer.handle(analyzed("a", [0.0, 0.0, 1.0, 0.0], key="E", tenant=OTHER), {})
    await consumer.handle(analyzed("z", [1.0, 0.0, 0.0, 0.0], tenant=OTHER), {})
    assert (await index.count(T), await index.count(OTHER), await index.count()) == (len(EVENTS), 2, len(EVENTS) + 2)
    assert (await index.get(T, "a"))[0].key == "C" and (await index.get(OTHER, "a"))[0].key == "E"
    assert bus.tracks[OTHER, "a"].state == bus.tracks[T, "a"].state == common_pb2.TRACK_STATE_INDEXED
    assert bus.tracks[OTHER, "a"].tenant == OTHER
    servicer = RecommenderServicer(index)
    mine = await servicer.SimilarTracks(recommender_pb2.SimilarTracksRequest(track_id="a", limit=100), FakeContext(T))
    assert [t.track_id for t in mine.tracks] == ["b", "c", "d"]  # OTHER's "z" (same vector as "a") is not T's
    theirs = await servicer.SimilarTracks(recommender_pb2.SimilarTracksRequest(track_id="z"), FakeContext(OTHER))
    assert [t.track_id for t in theirs.tracks] == ["a"]
    with pytest.raises(NotFound, match="'z'"):
        await servicer.SimilarTracks(recommender_pb2.SimilarTracksRequest(track_id="z"), FakeContext(T))
    with pytest.raises(NotFound, match="'b'"):
        await servicer.Recommend(recommender_pb2.RecommendRequest(liked_track_ids=["z"], disliked_track_ids=["b"]),
                                 FakeContext(OTHER))


async def test_servicer_needs_the_calling_tenant(index):
    await AnalyzedConsumer(FakeBus(), index).handle(EVENTS[0], {})
    servicer = RecommenderServicer(index)
    with pytest.raises(Unauthenticated, match="tenant"):
        await servicer.SimilarTracks(recommender_pb2.SimilarTracksRequest(track_id="a"), FakeContext(None))
    with pytest.raises(Unauthenticated, match="tenant"):
        await servicer.Recommend(recommender_pb2.RecommendRequest(liked_track_ids=["a"]), FakeContext(None))
    # checked before the request: no tenant is UNAUTHENTICATED even for a request that is also invalid
    with pytest.raises(Unauthenticated):
        await servicer.SimilarTracks(recommender_pb2.SimilarTracksRequest(), FakeContext(None))
    malformed = FakeContext(None)
    malformed.metadata = (("x-musicaas-tenant", "Not A Tenant"),)
    with pytest.raises(InvalidArgument, match="tenant"):
        await servicer.SimilarTracks(recommender_pb2.SimilarTracksRequest(track_id="a"), malformed)


async def test_consumer_unindexes_a_track_deleted_while_it_was_analysed(index):
    bus = FakeBus()
    consumer = AnalyzedConsumer(bus, index)
    await consumer.handle(analyzed("a", [1.0, 0.0, 0.0, 0.0], tenant=OTHER), {})
    tombstone = common_pb2.Track(track_id="a", tenant=T, state=common_pb2.TRACK_STATE_DELETED)
    bus.tracks[T, "a"] = common_pb2.Track()
    bus.tracks[T, "a"].CopyFrom(tombstone)
    await consumer.report_index_size()
    assert gauge() == 1
    await consumer.handle(EVENTS[0], {})
    assert await index.count(T) == 0  # the point went again
    assert bus.tracks[T, "a"] == tombstone  # and the track stays deleted
    assert gauge() == 1
    assert (await index.get(OTHER, "a"))[0].track_id == "a"  # the other tenant's track is not touched


async def test_deleted_consumer_removes_the_point_idempotently(index):
    writer = IndexWriter(index)
    analyzed_consumer = AnalyzedConsumer(FakeBus(), index, writer=writer)
    deleted_consumer = DeletedConsumer(index, writer=writer)
    for event in (*EVENTS, analyzed("a", [1.0, 0.0, 0.0, 0.0], tenant=OTHER)):
        await analyzed_consumer.handle(event, {})
    await writer.refresh()
    assert gauge() == len(EVENTS) + 1
    deletion = events_pb2.TrackDeleted(track_id="a", tenant=T)
    await deleted_consumer.handle(deletion, {})
    assert await index.count(T) == len(EVENTS) - 1 and gauge() == len(EVENTS)
    with pytest.raises(NotFound):
        await index.get(T, "a")
    await deleted_consumer.handle(deletion, {})  # redelivered: nothing to do, no error
    await deleted_consumer.handle(events_pb2.TrackDeleted(track_id="never-indexed", tenant=T), {})
    assert gauge() == len(EVENTS) == await index.count()
    assert (await index.get(OTHER, "a"))[0].track_id == "a"  # the same id of another tenant stays
    for bad, match in ((events_pb2.TrackDeleted(tenant=T), "track_id"),
                       (events_pb2.TrackDeleted(track_id="b", tenant="Bad Tenant"), "tenant")):
        with pytest.raises(InvalidArgument, match=match):
            await deleted_consumer.handle(bad, {})
    assert await index.count(T) == len(EVENTS) - 1


async def test_the_index_size_gauge_follows_the_writes_without_counting(index, monkeypatch):
    writer = IndexWriter(index)
    await writer.refresh()
    assert gauge() == 0
    counts = []
    count = index.count

    async def counted(tenant=None):
        counts.append(tenant)
        return await count(tenant)

    monkeypatch.setattr(index, "count", counted)
    bus = FakeBus()
    consumer = AnalyzedConsumer(bus, index, writer=writer)
    deleted = DeletedConsumer(index, writer=writer)
    for event in EVENTS:
        await consumer.handle(event, {})
    await consumer.handle(EVENTS[1], {})  # redelivered: the same point
    assert gauge() == len(EVENTS)
    await consumer.handle(analyzed("b", [0.0, 0.0, 0.0, 1.0], tenant=OTHER), {})
    assert gauge() == len(EVENTS) + 1
    await deleted.handle(events_pb2.TrackDeleted(track_id="b", tenant=T), {})
    await deleted.handle(events_pb2.TrackDeleted(track_id="b", tenant=T), {})
    assert gauge() == len(EVENTS)
    assert counts == []  # not one count on the event path
    await writer.refresh()
    assert counts == [None] and gauge() == len(EVENTS)

    async def down(tenant=None):
        raise Unavailable("index down")

    monkeypatch.setattr(index, "count", down)
    await writer.refresh()  # a metric never fails the work: the gauge stays
    assert gauge() == len(EVENTS)
    refresher = asyncio.create_task(writer.refresh_every(0.01))
    await asyncio.sleep(0.05)
    assert not refresher.done()  # a failing count does not end the loop
    refresher.cancel()
    await asyncio.gather(refresher, return_exceptions=True)


async def test_failed_marks_the_tenants_track_failed(index):
    bus = FakeBus()
    consumer = AnalyzedConsumer(bus, index)
    await consumer.failed(analyzed("a", [1.0], tenant=OTHER), InvalidArgument("bad embedding"), {"ce-id": "x"})
    assert bus.failures == [(OTHER, "a", "recommender", "INVALID_ARGUMENT")]
    # no event (undecodable) or no valid tenant: nothing to mark (the bus dead-letters it)
    await consumer.failed(None, InvalidArgument("garbage"), {})
    await consumer.failed(analyzed("a", [1.0], tenant=""), InvalidArgument("x"), {})
    await consumer.failed(analyzed("a", [1.0], tenant="Not.Valid"), InvalidArgument("x"), {})
    assert len(bus.failures) == 1


async def test_servicer_over_grpc_answers_unauthenticated_without_a_tenant(index):
    consumer = AnalyzedConsumer(FakeBus(), index)
    for event in (*EVENTS, analyzed("z", [1.0, 0.0, 0.0, 0.0], tenant=OTHER)):
        await consumer.handle(event, {})
    stop, bound = asyncio.Event(), asyncio.get_running_loop().create_future()
    service = GrpcService(RecommenderServicer(index), recommender_pb2_grpc.add_RecommenderServiceServicer_to_server,
                          "musicaas.recommender.v1.RecommenderService")
    task = asyncio.create_task(run_service(name="recommender-test", host="127.0.0.1", port=0, services=[service],
                                           stop=stop, grace_s=0.5, on_bound=bound.set_result))
    try:
        port = await asyncio.wait_for(bound, 10)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = recommender_pb2_grpc.RecommenderServiceStub(channel)
            similar = recommender_pb2.SimilarTracksRequest(track_id="a")
            recommend = recommender_pb2.RecommendRequest(liked_track_ids=["a"])
            for call, request in ((stub.SimilarTracks, similar), (stub.Recommend, recommend)):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call(request, timeout=5)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.SimilarTracks(similar, metadata=(("x-musicaas-tenant", "NOT/A/TENANT"),), timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            answer = await stub.SimilarTracks(similar, metadata=tenant_metadata(T), timeout=5)
            assert [t.track_id for t in answer.tracks] == ["b", "c", "d"]
            answer = await stub.Recommend(recommend, metadata=tenant_metadata(T), timeout=5)
            assert "z" not in [t.track_id for t in answer.tracks]
            # another tenant's track is NOT_FOUND, exactly like a missing one
            for track_id in ("z", "nope"):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.SimilarTracks(recommender_pb2.SimilarTracksRequest(track_id=track_id),
                                             metadata=tenant_metadata(T), timeout=5)
                assert info.value.code() == grpc.StatusCode.NOT_FOUND
                assert info.value.details() == f"tracks not in the index: {track_id!r}"
    finally:
        stop.set()
        await task


# -- over a real nats-server ------------------------------------------------------------------


async def _until(predicate, what: str, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.integration
async def test_consumers_over_nats_index_and_unindex_each_tenants_tracks(nats_url, index):
    suffix = uuid.uuid4().hex[:8]
    a, b = f"acme-{suffix}", f"globex-{suffix}"
    handled: list[tuple[str, str, str]] = []

    def ours(kind, fn):
        """Only this test's tenants' events (the server is shared with other tests)."""
        async def handler(event, *rest):
            if event is not None and event.tenant in (a, b):
                await fn(event, *rest)
                handled.append((kind, event.tenant, event.track_id))
        return handler

    async with Bus(nats_url, name="test-recommender") as bus:
        writer = IndexWriter(index)
        await writer.refresh()
        analyzed_consumer = AnalyzedConsumer(bus, index, writer=writer)
        deleted_consumer = DeletedConsumer(index, writer=writer)
        ready = [asyncio.Event(), asyncio.Event()]
        tasks = [
            asyncio.create_task(bus.consume(
                durable=f"test-rec-analyzed-{suffix}", subject=busmod.TRACKS_ANALYZED,
                message_type=events_pb2.TrackAnalyzed, handler=ours("analyzed", analyzed_consumer.handle),
                on_permanent_failure=ours("failed", analyzed_consumer.failed), nak_delay_s=0.1, ready=ready[0])),
            asyncio.create_task(bus.consume(
                durable=f"test-rec-deleted-{suffix}", subject=busmod.TRACKS_DELETED,
                message_type=events_pb2.TrackDeleted, handler=ours("deleted", deleted_consumer.handle),
                nak_delay_s=0.1, ready=ready[1])),
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 10)

            async def publish(tenant: str, track_id: str, embedding: list[float]) -> None:
                await bus.create_track(common_pb2.Track(track_id=track_id, tenant=tenant,
                                                        state=common_pb2.TRACK_STATE_ANALYZED))
                await bus.publish(busmod.TRACKS_ANALYZED, analyzed(track_id, embedding, tenant=tenant),
                                  event_id=f"analyzed:{tenant}:{track_id}")

            async def state(tenant: str, track_id: str) -> int:
                return (await bus.get_track(tenant, track_id)).state

            # the same track id in two tenants, and a second track in one of them
            await publish(a, "trk_1", [1.0, 0.0, 0.0, 0.0])
            await publish(b, "trk_1", [0.0, 1.0, 0.0, 0.0])
            await publish(a, "trk_2", [0.9, 0.1, 0.0, 0.0])

            async def all_indexed() -> bool:
                return all([await state(t, i) == common_pb2.TRACK_STATE_INDEXED
                            for t, i in ((a, "trk_1"), (b, "trk_1"), (a, "trk_2"))])

            await _until(all_indexed, "every track indexed")
            assert (await index.count(a), await index.count(b)) == (2, 1)
            assert gauge() == 3  # right once the track is indexed
            assert [r.track_id for r in await index.similar(a, "trk_1")] == ["trk_2"]
            assert await index.similar(b, "trk_1") == []

            # a deletion takes the point out (the other tenant's track of that id stays)
            await bus.delete_track(a, "trk_1")

            async def unindexed() -> bool:
                return await index.count(a) == 1

            await _until(unindexed, "the deleted track's point removed")
            with pytest.raises(NotFound):
                await index.get(a, "trk_1")
            assert (await index.get(b, "trk_1"))[0].track_id == "trk_1"
            assert await index.similar(a, "trk_2") == []

            # a deletion that overtakes the analysis: the analysis comes in afterwards
            await bus.create_track(common_pb2.Track(track_id="trk_3", tenant=a, state=common_pb2.TRACK_STATE_ANALYZED))
            await bus.delete_track(a, "trk_3")
            await bus.publish(busmod.TRACKS_ANALYZED, analyzed("trk_3", [0.0, 0.0, 1.0, 0.0], tenant=a),
                              event_id=f"analyzed:{a}:trk_3")

            async def late_analysis_handled() -> bool:
                return ("analyzed", a, "trk_3") in handled and ("deleted", a, "trk_3") in handled

            await _until(late_analysis_handled, "the late analysis handled")
            assert await index.count(a) == 1  # never stays in the index
            assert await state(a, "trk_3") == common_pb2.TRACK_STATE_DELETED
            assert gauge() == await index.count() == 2
            assert not [h for h in handled if h[0] == "failed"]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
