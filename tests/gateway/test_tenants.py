"""Tenants through the real gateway gRPC server on loopback, against the session's real
nats-server: each tenant (made with :func:`musicaas_gateway.tenants.add_tenant`) sees only its
own tracks and generations (another's ids answer NOT_FOUND exactly like unknown ones), keys are
added, rotated and revoked without restarting the gateway, DeleteTrack / ListTracks /
GetTracks, and, at the bus level, a deletion during an analysis does not bring the track back."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid

import grpc
import nats.errors
import pytest

from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.gateway.v1 import gateway_pb2
from musicaas.generator.v1 import generator_pb2
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus
from musicaas.runtime.errors import InvalidArgument, NotFound
from musicaas_gateway.tenants import add_tenant, revoke_keys, rotate_key
from tests.gateway.conftest import bearer, gateway_server, random_wav, unique_name, upload

pytestmark = pytest.mark.integration

UNKNOWN_TRACK = "trk_" + "0" * 24  # well formed, never uploaded
UNKNOWN_GENERATION = "gen_" + "0" * 24
#: How long a key change may take to reach the gateway (it rereads the tenants every 2 s).
KEY_CHANGE_S = 8.0





@pytest.fixture(scope="module")
async def gw(nats_url):
    """A gateway gRPC server on loopback (the key directory refreshing in the background, as
    ``python -m musicaas_gateway`` runs it), its bus, a stub, and two tenants with a key each."""
    async with gateway_server(nats_url, tenants=0) as server:
        bus, stub = server["bus"], server["stub"]
        a, key_a = await add_tenant(bus, unique_name("ta"))
        b, key_b = await add_tenant(bus, unique_name("tb"))
        # a key added within a second of the directory's last load waits for its next refresh
        assert await _works_within(stub, key_a, KEY_CHANGE_S) and await _works_within(stub, key_b, KEY_CHANGE_S)
        yield {"bus": bus, "stub": stub,
               "a": a.name, "key_a": key_a, "b": b.name, "key_b": key_b}



async def _code(call) -> tuple[grpc.StatusCode, str]:
    """The status code and details of a call that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details()


async def _get_track(stub, key: str, track_id: str):
    return await stub.GetTrack(gateway_pb2.GetTrackRequest(track_id=track_id), metadata=bearer(key), timeout=10)


async def _all_listed(stub, key: str, **request) -> list[common_pb2.Track]:
    out, token = [], ""
    for _ in range(1000):
        page = await stub.ListTracks(gateway_pb2.ListTracksRequest(page_token=token, **request), metadata=bearer(key),
                                     timeout=10)
        out += page.tracks
        token = page.next_page_token
        if not token:
            return out
    raise AssertionError("ListTracks never ended")


async def _works_within(stub, key: str, seconds: float) -> bool:
    """True once a call with ``key`` is accepted (polling for ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            await stub.ListTracks(gateway_pb2.ListTracksRequest(page_size=1), metadata=bearer(key), timeout=5)
            return True
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, exc.details()
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


async def _refused_within(stub, key: str, seconds: float) -> bool:
    """True once a call with ``key`` answers UNAUTHENTICATED (polling for ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            await stub.ListTracks(gateway_pb2.ListTracksRequest(page_size=1), metadata=bearer(key), timeout=5)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                return True
            raise
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


async def _stored_events(bus: Bus, subject: str, message_type) -> list:
    """Every event the MUSIC stream holds on ``subject`` (an ephemeral pull consumer)."""
    sub = await bus.js.pull_subscribe(subject, stream=busmod.STREAM)
    out = []
    with contextlib.suppress(nats.errors.TimeoutError, asyncio.TimeoutError):
        while True:
            out += [message_type.FromString(m.data) for m in await sub.fetch(batch=100, timeout=0.5)]
    await sub.unsubscribe()
    return out


# --- isolation -----------------------------------------------------------------------------


async def test_the_same_file_is_two_tracks_of_two_tenants_each_seeing_only_its_own(gw):
    stub, bus, a, b = gw["stub"], gw["bus"], gw["a"], gw["b"]
    wav = random_wav()
    up_a = await upload(stub, gw["key_a"], wav)
    up_b = await upload(stub, gw["key_b"], wav)
    assert up_a.track_id != up_b.track_id  # the tenant's secret salt is in the id
    assert up_a.track_id.startswith("trk_") and up_b.track_id.startswith("trk_")
    digest = hashlib.sha256(wav).hexdigest()
    assert up_a.track_id == await bus.track_id_for(a, digest) and up_b.track_id == await bus.track_id_for(b, digest)
    assert (await upload(stub, gw["key_a"], wav)).track_id == up_a.track_id  # still idempotent within a tenant

    track_a = (await _get_track(stub, gw["key_a"], up_a.track_id)).track
    track_b = (await _get_track(stub, gw["key_b"], up_b.track_id)).track
    assert (track_a.tenant, track_b.tenant) == (a, b)
    assert track_a.audio_blob.name.startswith(f"{a}/") and track_b.audio_blob.name.startswith(f"{b}/")
    assert await bus.get_blob(track_a.audio_blob) == await bus.get_blob(track_b.audio_blob) == wav

    # GetTrack: the other tenant's id answers exactly like an id nobody uploaded
    _, unknown = await _code(_get_track(stub, gw["key_a"], UNKNOWN_TRACK))
    for key, foreign in ((gw["key_a"], up_b.track_id), (gw["key_b"], up_a.track_id)):
        code, details = await _code(_get_track(stub, key, foreign))
        assert code == grpc.StatusCode.NOT_FOUND
        assert details.replace(foreign, "<id>") == unknown.replace(UNKNOWN_TRACK, "<id>")

    # GetTracks: the other's id is missing, like an unknown one
    got = await stub.GetTracks(gateway_pb2.GetTracksRequest(track_ids=[up_b.track_id, up_a.track_id, UNKNOWN_TRACK]),
                               metadata=bearer(gw["key_a"]), timeout=10)
    assert [t.track_id for t in got.tracks] == [up_a.track_id]
    assert list(got.missing_track_ids) == [up_b.track_id, UNKNOWN_TRACK]

    # ListTracks: only one's own
    listed_a = {t.track_id for t in await _all_listed(stub, gw["key_a"])}
    listed_b = {t.track_id for t in await _all_listed(stub, gw["key_b"])}
    assert up_a.track_id in listed_a and up_b.track_id not in listed_a
    assert up_b.track_id in listed_b and up_a.track_id not in listed_b
    assert all(t.tenant == a for t in await _all_listed(stub, gw["key_a"]))

    # the events are on each tenant's own subject
    uploaded_a = await _stored_events(bus, busmod.subject_for(busmod.TRACKS_UPLOADED, a), events_pb2.TrackUploaded)
    assert [e.track_id for e in uploaded_a if e.track_id in (up_a.track_id, up_b.track_id)] == [up_a.track_id]


async def test_generations_are_the_submitting_tenants(gw):
    stub, bus, a = gw["stub"], gw["bus"], gw["a"]
    params = generator_pb2.GenerationParams(key="E minor", num_bars=2, seed=3)
    submitted = await stub.SubmitGeneration(gateway_pb2.SubmitGenerationRequest(params=params),
                                            metadata=bearer(gw["key_a"]), timeout=10)
    gid = submitted.generation_id
    mine = await stub.GetGeneration(gateway_pb2.GetGenerationRequest(generation_id=gid), metadata=bearer(gw["key_a"]),
                                    timeout=10)
    assert mine.generation.generation_id == gid and mine.generation.tenant == a
    assert (await bus.get_job(a, gid)).params == params
    _, unknown = await _code(stub.GetGeneration(gateway_pb2.GetGenerationRequest(generation_id=UNKNOWN_GENERATION),
                                                metadata=bearer(gw["key_b"]), timeout=10))
    code, details = await _code(stub.GetGeneration(gateway_pb2.GetGenerationRequest(generation_id=gid),
                                                   metadata=bearer(gw["key_b"]), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND
    assert details.replace(gid, "<id>") == unknown.replace(UNKNOWN_GENERATION, "<id>")
    # the same generation id submitted by the other tenant is another job of its own
    theirs = await stub.SubmitGeneration(gateway_pb2.SubmitGenerationRequest(params=params, generation_id=gid),
                                         metadata=bearer(gw["key_b"]), timeout=10)
    assert theirs.state == generator_pb2.GENERATION_STATE_QUEUED
    assert (await bus.get_job(gw["b"], gid)).tenant == gw["b"] and (await bus.get_job(a, gid)).tenant == a
    requested = await _stored_events(bus, busmod.subject_for(busmod.GENERATIONS_REQUESTED, a),
                                     events_pb2.GenerationRequested)
    assert [r.tenant for r in requested if r.generation_id == gid] == [a]


# --- keys ----------------------------------------------------------------------------------


async def test_a_new_tenants_key_works_without_a_restart(gw):
    stub, bus = gw["stub"], gw["bus"]
    tenant, key = await add_tenant(bus, unique_name("tn"))
    assert await _works_within(stub, key, KEY_CHANGE_S)
    up = await upload(stub, key, random_wav())
    assert (await _get_track(stub, key, up.track_id)).track.tenant == tenant.name
    assert (await _code(_get_track(stub, "msk_" + "x" * 43, up.track_id)))[0] == grpc.StatusCode.UNAUTHENTICATED


async def test_a_rotated_away_key_is_refused_within_seconds_and_the_new_one_works(gw):
    stub, bus = gw["stub"], gw["bus"]
    tenant, old = await add_tenant(bus, unique_name("tr"))
    assert await _works_within(stub, old, KEY_CHANGE_S)
    up = await upload(stub, old, random_wav())
    new = await rotate_key(bus, tenant.name)
    assert new != old
    assert await _works_within(stub, new, KEY_CHANGE_S)
    assert await _refused_within(stub, old, KEY_CHANGE_S)
    # the same tenant behind the new key: its track is still there
    assert (await _get_track(stub, new, up.track_id)).track.track_id == up.track_id
    code, _ = await _code(_get_track(stub, old, up.track_id))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    # the other tenants' keys are untouched (polled: see test_listings_are_complete_every_time in
    # tests/runtime/test_bus.py, a directory reload may briefly read no tenants)
    assert await _works_within(stub, gw["key_a"], KEY_CHANGE_S)


async def test_a_revoked_tenants_key_is_refused_within_seconds(gw):
    stub, bus = gw["stub"], gw["bus"]
    tenant, key = await add_tenant(bus, unique_name("tv"))
    assert await _works_within(stub, key, KEY_CHANGE_S)
    assert await revoke_keys(bus, tenant.name) == 1
    assert await _refused_within(stub, key, KEY_CHANGE_S)
    assert (await _code(upload(stub, key, random_wav())))[0] == grpc.StatusCode.UNAUTHENTICATED
    assert await _works_within(stub, gw["key_b"], KEY_CHANGE_S)


# --- DeleteTrack ---------------------------------------------------------------------------


async def test_delete_track(gw):
    stub, bus, a = gw["stub"], gw["bus"], gw["a"]
    wav = random_wav()
    up = await upload(stub, gw["key_a"], wav)
    track = (await _get_track(stub, gw["key_a"], up.track_id)).track

    # another tenant cannot delete it: NOT_FOUND, like an unknown id, and the track is intact
    _, unknown = await _code(stub.DeleteTrack(gateway_pb2.DeleteTrackRequest(track_id=UNKNOWN_TRACK),
                                              metadata=bearer(gw["key_b"]), timeout=10))
    code, details = await _code(stub.DeleteTrack(gateway_pb2.DeleteTrackRequest(track_id=up.track_id),
                                                 metadata=bearer(gw["key_b"]), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND
    assert details.replace(up.track_id, "<id>") == unknown.replace(UNKNOWN_TRACK, "<id>")
    assert (await _get_track(stub, gw["key_a"], up.track_id)).track == track
    assert await bus.get_blob(track.audio_blob) == wav

    resp = await stub.DeleteTrack(gateway_pb2.DeleteTrackRequest(track_id=up.track_id), metadata=bearer(gw["key_a"]),
                                  timeout=10)
    assert resp.track_id == up.track_id
    code, details = await _code(_get_track(stub, gw["key_a"], up.track_id))
    assert code == grpc.StatusCode.NOT_FOUND
    assert details.replace(up.track_id, "<id>") == unknown.replace(UNKNOWN_TRACK, "<id>")  # as if never there
    with pytest.raises(NotFound):
        await bus.get_blob(track.audio_blob)  # the bytes are gone
    tombstone = await bus.get_track(a, up.track_id)
    assert tombstone.state == common_pb2.TRACK_STATE_DELETED and not tombstone.audio_blob.name
    assert not tombstone.filename and not tombstone.title  # nothing of the track is kept but its id
    got = await stub.GetTracks(gateway_pb2.GetTracksRequest(track_ids=[up.track_id]), metadata=bearer(gw["key_a"]),
                               timeout=10)
    assert not got.tracks and list(got.missing_track_ids) == [up.track_id]
    assert up.track_id not in {t.track_id for t in await _all_listed(stub, gw["key_a"])}

    # deleting again succeeds and changes nothing
    again = await stub.DeleteTrack(gateway_pb2.DeleteTrackRequest(track_id=up.track_id), metadata=bearer(gw["key_a"]),
                                   timeout=10)
    assert again.track_id == up.track_id
    assert (await bus.get_track(a, up.track_id)).state == common_pb2.TRACK_STATE_DELETED
    deleted = await _stored_events(bus, busmod.subject_for(busmod.TRACKS_DELETED, a), events_pb2.TrackDeleted)
    assert [e.tenant for e in deleted if e.track_id == up.track_id][:1] == [a]

    # the same bytes uploaded again make a live track again (same content-derived id)
    back = await upload(stub, gw["key_a"], wav)
    assert back.track_id == up.track_id and back.state == common_pb2.TRACK_STATE_UPLOADED
    live = (await _get_track(stub, gw["key_a"], back.track_id)).track
    assert live.state == common_pb2.TRACK_STATE_UPLOADED and live.filename == "take.wav"
    assert await bus.get_blob(live.audio_blob) == wav
    assert back.track_id in {t.track_id for t in await _all_listed(stub, gw["key_a"])}


async def test_a_reupload_right_after_a_deletion_is_announced_again(gw):
    stub, bus, a = gw["stub"], gw["bus"], gw["a"]
    wav = random_wav()
    while time.time() % 1.0 > 0.5:  # start early in a second: the three calls take well under 0.5 s
        await asyncio.sleep(0.02)
    up = await upload(stub, gw["key_a"], wav)
    await stub.DeleteTrack(gateway_pb2.DeleteTrackRequest(track_id=up.track_id), metadata=bearer(gw["key_a"]),
                           timeout=10)
    back = await upload(stub, gw["key_a"], wav)
    assert back.track_id == up.track_id and back.state == common_pb2.TRACK_STATE_UPLOADED
    uploaded = await _stored_events(bus, busmod.subject_for(busmod.TRACKS_UPLOADED, a), events_pb2.TrackUploaded)
    assert len([e for e in uploaded if e.track_id == up.track_id]) == 2  # announced again, for the analyzer


async def test_deleting_twice_announces_the_deletion_once(gw):
    """``Bus.delete_track``'s promise: a second deletion "announces again (the duplicate window
    drops it) and changes nothing"."""
    stub, bus, a = gw["stub"], gw["bus"], gw["a"]
    up = await upload(stub, gw["key_a"], random_wav())
    for _ in range(2):
        await stub.DeleteTrack(gateway_pb2.DeleteTrackRequest(track_id=up.track_id), metadata=bearer(gw["key_a"]),
                               timeout=10)
    deleted = await _stored_events(bus, busmod.subject_for(busmod.TRACKS_DELETED, a), events_pb2.TrackDeleted)
    assert len([e for e in deleted if e.track_id == up.track_id]) == 1


# --- ListTracks and GetTracks --------------------------------------------------------------


async def test_list_tracks_pages_and_filters(gw):
    stub, bus = gw["stub"], gw["bus"]
    tenant, key = await add_tenant(bus, unique_name("tl"))  # a tenant of its own: exactly these tracks
    assert await _works_within(stub, key, KEY_CHANGE_S)
    ids = [(await upload(stub, key, random_wav(), filename=f"t{i}.wav")).track_id for i in range(5)]

    seen, token, pages = [], "", 0
    while True:
        page = await stub.ListTracks(gateway_pb2.ListTracksRequest(page_size=2, page_token=token), metadata=bearer(key),
                                     timeout=10)
        pages += 1
        assert len(page.tracks) <= 2
        seen += [t.track_id for t in page.tracks]
        token = page.next_page_token
        if not token:
            break
        assert pages < 10
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen)) == 5
    assert seen == sorted(seen)  # by track id
    assert pages == 3

    # state filter: two of them analysed
    analysed = sorted(ids)[:2]
    for track_id in analysed:
        def to_analyzed(t):
            t.state = busmod.advance_state(t.state, common_pb2.TRACK_STATE_ANALYZED)
            t.analysis.key = "C"

        await bus.update_track(tenant.name, track_id, to_analyzed)
    only = await _all_listed(stub, key, states=[common_pb2.TRACK_STATE_ANALYZED])
    assert sorted(t.track_id for t in only) == analysed
    assert all(not t.HasField("analysis") for t in only)  # without the analysis unless asked
    with_analysis = await _all_listed(stub, key, states=[common_pb2.TRACK_STATE_ANALYZED], include_analysis=True)
    assert all(t.analysis.key == "C" for t in with_analysis) and len(with_analysis) == 2
    rest = await _all_listed(stub, key, states=[common_pb2.TRACK_STATE_UPLOADED], page_size=2)
    assert sorted(t.track_id for t in rest) == sorted(set(ids) - set(analysed))
    both = await _all_listed(stub, key, states=[common_pb2.TRACK_STATE_UPLOADED, common_pb2.TRACK_STATE_ANALYZED])
    assert sorted(t.track_id for t in both) == sorted(ids)

    # a deleted track is not listed
    await stub.DeleteTrack(gateway_pb2.DeleteTrackRequest(track_id=ids[0]), metadata=bearer(key), timeout=10)
    assert sorted(t.track_id for t in await _all_listed(stub, key, page_size=2)) == sorted(ids[1:])

    for bad in (dict(page_size=1001), dict(page_size=-1), dict(page_token="not a token!"),
                dict(states=[common_pb2.TRACK_STATE_DELETED])):
        code, _ = await _code(stub.ListTracks(gateway_pb2.ListTracksRequest(**bad), metadata=bearer(key), timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, bad


async def test_get_tracks_limits_and_missing_ids(gw):
    stub, key = gw["stub"], gw["key_b"]
    mine = [(await upload(stub, key, random_wav())).track_id for _ in range(2)]
    unknown = [f"trk_{uuid.uuid4().hex[:24]}" for _ in range(2)]
    request = [unknown[0], mine[1], unknown[1], mine[0]]
    got = await stub.GetTracks(gateway_pb2.GetTracksRequest(track_ids=request), metadata=bearer(key), timeout=10)
    assert [t.track_id for t in got.tracks] == [mine[1], mine[0]]  # in the order of the request
    assert list(got.missing_track_ids) == unknown

    hundred = mine + [f"trk_{uuid.uuid4().hex[:24]}" for _ in range(98)]
    got = await stub.GetTracks(gateway_pb2.GetTracksRequest(track_ids=hundred), metadata=bearer(key), timeout=10)
    assert len(got.tracks) == 2 and len(got.missing_track_ids) == 98
    code, details = await _code(stub.GetTracks(gateway_pb2.GetTracksRequest(track_ids=hundred + [unknown[0]]),
                                               metadata=bearer(key), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "100" in details
    code, _ = await _code(stub.GetTracks(gateway_pb2.GetTracksRequest(), metadata=bearer(key), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


# --- a deletion during an analysis (bus level and the analyzer's consumer) ------------------


class _FakeAnalyzer:
    """Stands in for the analyzer's worker pool; ``during`` runs while "analysing"."""

    def __init__(self, during=None) -> None:
        self.during = during
        self.calls = 0

    async def analyze_file(self, path, filename):
        self.calls += 1
        if self.during is not None:
            await self.during()
        return common_pb2.TrackAnalysis(key="C", analyzer_version="test", duration_s=1.0)


async def _published(sub) -> list:
    out = []
    with contextlib.suppress(nats.errors.TimeoutError):
        while True:
            out.append(await sub.next_msg(timeout=0.5))
    await sub.unsubscribe()
    return out


async def test_a_deletion_during_analysis_does_not_bring_the_track_back(gw, tmp_path):
    from musicaas_analyzer.service import UploadConsumer

    bus = gw["bus"]
    tenant = (await add_tenant(bus, unique_name("td")))[0].name

    async def uploaded(data: bytes) -> events_pb2.TrackUploaded:
        track = await bus.add_track(data, tenant=tenant, filename="x.wav", title="x", content_type="audio/wav",
                                    source=common_pb2.TRACK_SOURCE_UPLOAD)
        return events_pb2.TrackUploaded(track_id=track.track_id, tenant=tenant, audio_blob=track.audio_blob,
                                        filename=track.filename, title=track.title, source=track.source)

    # the bus: nothing moves a tombstone
    event = await uploaded(random_wav())
    await bus.delete_track(tenant, event.track_id)
    for state in (common_pb2.TRACK_STATE_UPLOADED, common_pb2.TRACK_STATE_ANALYZED, common_pb2.TRACK_STATE_INDEXED,
                  common_pb2.TRACK_STATE_FAILED):
        assert busmod.advance_state(common_pb2.TRACK_STATE_DELETED, state) == common_pb2.TRACK_STATE_DELETED

        def advance(t, state=state):
            t.state = busmod.advance_state(t.state, state)

        after = await bus.update_track(tenant, event.track_id, advance)
        assert after.state == common_pb2.TRACK_STATE_DELETED
    assert busmod.advance_state(common_pb2.TRACK_STATE_INDEXED, common_pb2.TRACK_STATE_DELETED) == \
        common_pb2.TRACK_STATE_DELETED
    failed_sub = await bus.nc.subscribe(busmod.subject_for(busmod.TRACKS_FAILED, tenant))
    await bus.fail_track(tenant, event.track_id, stage="analyzer", error=InvalidArgument("late"))
    assert (await bus.get_track(tenant, event.track_id)).state == common_pb2.TRACK_STATE_DELETED
    assert not (await bus.get_track(tenant, event.track_id)).error
    assert await _published(failed_sub) == []  # a deleted track's failure is nobody's news

    analyzed_sub = await bus.nc.subscribe(busmod.subject_for(busmod.TRACKS_ANALYZED, tenant))

    # the consumer: deleted before the analysis starts (the event was already in the stream)
    analyzer = _FakeAnalyzer()
    consumer = UploadConsumer(bus, analyzer, spool_dir=tmp_path / "spool")
    await consumer.handle(event, {})
    assert analyzer.calls == 0
    assert (await bus.get_track(tenant, event.track_id)).state == common_pb2.TRACK_STATE_DELETED

    # deleted while the analysis runs: the analysis is dropped
    during = await uploaded(random_wav())
    analyzer = _FakeAnalyzer(during=lambda: bus.delete_track(tenant, during.track_id))
    consumer = UploadConsumer(bus, analyzer, spool_dir=tmp_path / "spool")
    await consumer.handle(during, {})
    assert analyzer.calls == 1
    stored = await bus.get_track(tenant, during.track_id)
    assert stored.state == common_pb2.TRACK_STATE_DELETED and not stored.HasField("analysis")

    # deleted between the check and the spooling: the blob is gone (NotFound), quietly dropped
    late = await uploaded(random_wav())
    consumer = UploadConsumer(bus, _FakeAnalyzer(), spool_dir=tmp_path / "spool")
    real = bus.get_blob_to_file

    async def delete_first(ref, file):
        await bus.delete_track(tenant, late.track_id)
        return await real(ref, file)

    bus.get_blob_to_file = delete_first
    try:
        await consumer.handle(late, {})
    finally:
        del bus.get_blob_to_file
    assert (await bus.get_track(tenant, late.track_id)).state == common_pb2.TRACK_STATE_DELETED

    assert await _published(analyzed_sub) == []  # nothing was announced as analysed

    # and a live track is analysed and announced as before
    live = await uploaded(random_wav())
    analyzed_sub = await bus.nc.subscribe(busmod.subject_for(busmod.TRACKS_ANALYZED, tenant))
    await UploadConsumer(bus, _FakeAnalyzer(), spool_dir=tmp_path / "spool").handle(live, {})
    assert (await bus.get_track(tenant, live.track_id)).state == common_pb2.TRACK_STATE_ANALYZED
    announced = [events_pb2.TrackAnalyzed.FromString(m.data) for m in await _published(analyzed_sub)]
    assert [(e.track_id, e.tenant) for e in announced] == [(live.track_id, tenant)]
