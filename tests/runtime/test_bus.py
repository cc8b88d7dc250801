"""The NATS adapter against a real nats-server with JetStream (loopback, temporary store): events,
consumers, blobs, tracks (content-derived ids within a tenant, idempotent creation) and
generation jobs, each scoped to a tenant (subjects ``music.<tenant>.<kind>``, KV keys
``<tenant>.<id>``)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid

import nats.errors
import pytest

from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.generator.v1 import generator_pb2
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus
from musicaas.runtime.errors import InvalidArgument, NotFound, Unavailable
from musicaas.tenancy import new_id_salt, track_id_from_digest

pytestmark = pytest.mark.integration


def new_tenant_name() -> str:
    """A tenant name no other test uses (the session's nats-server is shared)."""
    return f"t{uuid.uuid4().hex[:12]}"


async def new_tenant(bus: Bus) -> str:
    """A new tenant record (with its id salt) on ``bus``; returns its name."""
    name = new_tenant_name()
    assert await bus.create_tenant(common_pb2.Tenant(name=name, id_salt=new_id_salt()))
    return name


async def stored_ids(bus: Bus, subject: str) -> list[str]:
    """``Nats-Msg-Id`` of every message the MUSIC stream holds on ``subject`` (the session's
    nats-server is shared by every test module, so tests look for their own ids)."""
    sub = await bus.js.pull_subscribe(subject, stream=busmod.STREAM)
    out: list[str] = []
    # nats-py raises a bare asyncio.TimeoutError when the deadline passes between its requests
    with contextlib.suppress(nats.errors.TimeoutError, asyncio.TimeoutError):
        while True:
            out += [(m.headers or {}).get("Nats-Msg-Id") for m in await sub.fetch(batch=100, timeout=0.5)]
    await sub.unsubscribe()
    return out


async def test_publish_sets_cloudevents_headers_and_dedups(nats_url):
    tenant = new_tenant_name()
    event_id = f"failed:{tenant}:trk_x:{uuid.uuid4().hex}"
    subject = busmod.subject_for(busmod.TRACKS_FAILED, tenant)
    assert subject == f"music.{tenant}.tracks.failed"
    async with Bus(nats_url, name="test-pub") as bus:
        sub = await bus.nc.subscribe(subject)
        event = events_pb2.TrackFailed(track_id="trk_x", tenant=tenant, stage="test", code="INVALID_ARGUMENT",
                                       reason="r")
        await bus.publish(busmod.TRACKS_FAILED, event, event_id=event_id)
        await bus.publish(busmod.TRACKS_FAILED, event, event_id=event_id)
        msg = await sub.next_msg(timeout=2)
        assert msg.headers["ce-specversion"] == "1.0"
        assert msg.headers["ce-type"] == "io.musicaas.tracks.failed.v1"
        assert msg.headers["ce-id"] == event_id
        assert msg.headers["Nats-Msg-Id"] == event_id
        assert msg.headers["content-type"] == "application/protobuf"
        assert msg.subject == subject
        assert events_pb2.TrackFailed.FromString(msg.data).reason == "r"
        # the second publish with the same id was dropped by the duplicate window
        assert (await stored_ids(bus, subject)).count(event_id) == 1
        # an event without a valid tenant has no subject: refused before anything is sent
        for bad in ("", "Upper", "a.b", "*", ">"):
            with pytest.raises(InvalidArgument):
                await bus.publish(busmod.TRACKS_FAILED, events_pb2.TrackFailed(track_id="trk_x", tenant=bad),
                                  event_id=f"bad:{uuid.uuid4().hex}")


async def test_consumer_acks_retries_and_terminates(nats_url):
    seen: list[tuple[str, int]] = []
    failed: list[str] = []
    attempts: dict[str, int] = {}

    async def handler(event, headers):
        if event.track_id not in ("ok", "bad", "flaky", "broken"):
            return  # another test's upload on the shared server
        attempts[event.track_id] = attempts.get(event.track_id, 0) + 1
        if event.track_id == "bad":
            raise InvalidArgument("corrupt audio")
        if event.track_id == "flaky" and attempts["flaky"] < 2:
            raise Unavailable("dependency down")
        if event.track_id == "broken":
            raise RuntimeError("bug")
        seen.append((event.track_id, attempts[event.track_id]))

    async def on_failure(event, error, headers):
        failed.append(f"{event.track_id if event is not None else '<undecodable>'}:{error.code.name}")

    tenant = new_tenant_name()
    subject = busmod.subject_for(busmod.TRACKS_UPLOADED, tenant)
    async with Bus(nats_url, name="test-consumer") as bus:
        ready = asyncio.Event()
        task = asyncio.create_task(
            bus.consume(
                durable="test-uploaded",
                subject=busmod.TRACKS_UPLOADED,  # a kind: the consumer takes it for every tenant
                message_type=events_pb2.TrackUploaded,
                handler=handler,
                on_permanent_failure=on_failure,
                max_deliver=3,
                nak_delay_s=0.1,
                ready=ready,
            )
        )
        await asyncio.wait_for(ready.wait(), 5)
        for tid in ("ok", "bad", "flaky", "broken"):
            await bus.publish(busmod.TRACKS_UPLOADED, events_pb2.TrackUploaded(track_id=tid, tenant=tenant),
                              event_id=f"up:{tid}")
        # a payload that is not protobuf at all
        await bus.js.publish(subject, b"\xff\xff\xff garbage", headers={"Nats-Msg-Id": "junk"})
        for _ in range(100):
            if len(seen) == 2 and len(failed) == 3:
                break
            await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        letters = await bus.dead_letters("test-uploaded")
    assert sorted(seen) == [("flaky", 2), ("ok", 1)]
    # every terminated message left one dead-letter record with its payload, and nothing else did
    by_id = {d.ce_id or d.data[:3].hex(): d for d in letters}
    assert len(letters) == 3 and set(by_id) == {"up:bad", "up:broken", "ffffff"}, [d.ce_id for d in letters]
    assert by_id["up:bad"].code == "INVALID_ARGUMENT" and by_id["up:bad"].deliveries == 1
    assert by_id["up:bad"].reason == "corrupt audio" and by_id["up:bad"].subject == subject
    assert events_pb2.TrackUploaded.FromString(by_id["up:bad"].data).track_id == "bad"  # replayable
    assert by_id["up:broken"].deliveries == 3 and "gave up after 3 deliveries" in by_id["up:broken"].reason
    assert by_id["ffffff"].code == "INVALID_ARGUMENT" and by_id["ffffff"].stream_sequence > 0
    assert all(d.durable == "test-uploaded" and d.terminated_at.seconds > 0 for d in letters)
    assert "bad:INVALID_ARGUMENT" in failed
    assert any(f.startswith("broken:") for f in failed)  # gave up after max_deliver
    assert attempts["bad"] == 1  # permanent errors are not retried
    assert attempts["broken"] == 3
    assert "<undecodable>:INVALID_ARGUMENT" in failed  # the garbage payload was terminated too


async def test_an_event_whose_tenant_is_not_its_subjects_is_terminated_unhandled(nats_url):
    """A payload that claims another tenant than its subject's token (or none) never reaches the
    handler: it is terminated, dead-lettered and reported without an event (no tenant's failure)."""
    sid = uuid.uuid4().hex[:12]
    durable = f"mismatch-{sid}"
    tenant, other = new_tenant_name(), new_tenant_name()
    subject = busmod.subject_for(busmod.TRACKS_UPLOADED, tenant)
    cases = {
        f"mm-other:{sid}": events_pb2.TrackUploaded(track_id=f"trk_mm_other_{sid}", tenant=other),
        f"mm-none:{sid}": events_pb2.TrackUploaded(track_id=f"trk_mm_none_{sid}"),
        f"mm-ok:{sid}": events_pb2.TrackUploaded(track_id=f"trk_mm_ok_{sid}", tenant=tenant),
    }
    handled: list[str] = []
    failures: list = []

    async def handler(event, headers):
        if event.track_id.startswith("trk_mm_") and event.track_id.endswith(sid):
            handled.append(event.track_id)

    async def on_failure(event, error, headers):
        if headers.get("ce-id", "").endswith(sid) or (headers.get("Nats-Msg-Id") or "").endswith(sid):
            failures.append((event, error.code.name))

    async with Bus(nats_url, name="test-mismatch") as bus:
        ready = asyncio.Event()
        task = asyncio.create_task(bus.consume(durable=durable, subject=busmod.TRACKS_UPLOADED,
                                               message_type=events_pb2.TrackUploaded, handler=handler,
                                               on_permanent_failure=on_failure, ready=ready, nak_delay_s=0.1))
        await asyncio.wait_for(ready.wait(), 5)
        for msg_id, event in cases.items():  # raw publishes: Bus.publish would pick the payload's tenant
            await bus.js.publish(subject, event.SerializeToString(), headers={"Nats-Msg-Id": msg_id},
                                 stream=busmod.STREAM)
        for _ in range(100):
            if handled and len(failures) == 2:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        letters = [d for d in await bus.dead_letters(durable) if d.subject == subject]
    assert handled == [f"trk_mm_ok_{sid}"]
    assert failures == [(None, "INVALID_ARGUMENT")] * 2  # no decoded event: nobody's track is marked
    assert sorted(events_pb2.TrackUploaded.FromString(d.data).track_id for d in letters) == \
        sorted([f"trk_mm_none_{sid}", f"trk_mm_other_{sid}"])
    assert all("tenant" in d.reason for d in letters)


async def test_blobs_and_track_state(nats_url):
    async with Bus(nats_url, name="test-state") as bus:
        ref = await bus.put_blob("tracks/t1/a.wav", b"RIFF" + bytes(3_000_000), content_type="audio/wav")
        assert ref.size_bytes == 3_000_004
        assert (await bus.get_blob(ref))[:4] == b"RIFF"
        with pytest.raises(NotFound):
            await bus.get_blob(common_pb2.BlobRef(name="nope"))

        tenant, other = new_tenant_name(), new_tenant_name()
        assert await bus.get_track(tenant, "t1") is None
        assert await bus.create_track(common_pb2.Track(track_id="t1", tenant=tenant,
                                                       state=common_pb2.TRACK_STATE_UPLOADED))
        assert not await bus.create_track(common_pb2.Track(track_id="t1", tenant=tenant))
        assert await bus.get_track(other, "t1") is None  # the same id of another tenant is another key

        def to_indexed(t):
            t.state = busmod.advance_state(t.state, common_pb2.TRACK_STATE_INDEXED)

        def to_analyzed(t):
            t.state = busmod.advance_state(t.state, common_pb2.TRACK_STATE_ANALYZED)

        await asyncio.gather(*(bus.update_track(tenant, "t1", to_indexed if i % 2 else to_analyzed)
                               for i in range(6)))
        assert (await bus.get_track(tenant, "t1")).state == common_pb2.TRACK_STATE_INDEXED
        with pytest.raises(NotFound):
            await bus.update_track(tenant, "missing", to_indexed)
        with pytest.raises(NotFound):
            await bus.update_track(other, "t1", to_indexed)  # not another tenant's
        # keys are never wildcards or paths
        for bad_tenant, bad_id in (("*", "t1"), (">", "t1"), ("a.b", "t1"), (tenant, "*"), (tenant, "a.b"),
                                   (tenant, ">"), (tenant, "../x"), (tenant, "")):
            with pytest.raises(InvalidArgument):
                await bus.get_track(bad_tenant, bad_id)


def test_track_ids_are_content_derived():
    # within a tenant, the same bytes are one id; the tenant's secret salt is mixed in
    # (the module-level ``track_id_for(data)`` is gone: ids now need the tenant's salt)
    data = b"RIFF some audio"
    salt, other_salt = new_id_salt(), new_id_salt()
    digest = hashlib.sha256(data).hexdigest()
    tid = track_id_from_digest(salt, digest)
    assert tid == "trk_" + hashlib.sha256(salt + hashlib.sha256(data).digest()).hexdigest()[:24]
    assert tid == track_id_from_digest(salt, hashlib.sha256(bytes(data)).hexdigest())
    assert tid != track_id_from_digest(salt, hashlib.sha256(data + b"!").hexdigest())
    assert tid != track_id_from_digest(other_salt, digest)  # another tenant, another id


async def test_bus_track_ids_use_the_tenants_salt(nats_url):
    data = b"RIFF" + uuid.uuid4().bytes
    digest = hashlib.sha256(data).hexdigest()
    async with Bus(nats_url, name="test-track-ids") as bus:
        a, b = await new_tenant(bus), await new_tenant(bus)
        salt = (await bus.get_tenant(a)).id_salt
        assert await bus.track_id_for(a, digest) == track_id_from_digest(salt, digest)
        assert await bus.track_id_for(a, digest) != await bus.track_id_for(b, digest)
        with pytest.raises(NotFound):
            await bus.track_id_for(new_tenant_name(), digest)  # no such tenant
        with pytest.raises(InvalidArgument):
            await bus.create_tenant(common_pb2.Tenant(name=new_tenant_name()))  # no salt
        assert not await bus.create_tenant(common_pb2.Tenant(name=a, id_salt=new_id_salt()))  # exists
        assert (await bus.get_tenant(a)).id_salt == salt  # unchanged


async def test_add_track_stores_records_and_announces_once_per_content(nats_url):
    data = b"RIFF" + uuid.uuid4().bytes * 100  # bytes no other test stores
    async with Bus(nats_url, name="test-add-track") as bus:
        tenant = await new_tenant(bus)
        track_id = await bus.track_id_for(tenant, hashlib.sha256(data).hexdigest())
        subject = busmod.subject_for(busmod.TRACKS_UPLOADED, tenant)
        sub = await bus.nc.subscribe(subject)  # every publish, also those the stream drops
        track = await bus.add_track(data, tenant=tenant, filename="dir/song.wav", title="Song",
                                    content_type="audio/wav", source=common_pb2.TRACK_SOURCE_UPLOAD)
        assert track.track_id == track_id and track.state == common_pb2.TRACK_STATE_UPLOADED
        assert track.tenant == tenant
        assert (track.filename, track.title, track.source) == ("dir/song.wav", "Song", common_pb2.TRACK_SOURCE_UPLOAD)
        assert track.audio_blob.name == f"{tenant}/tracks/{track_id}/source"
        assert track.audio_blob.content_type == "audio/wav"
        assert await bus.get_blob(track.audio_blob) == data
        assert await bus.get_track(tenant, track_id) == track
        assert track.created_at.seconds > 0 and track.updated_at == track.created_at

        # the same bytes again (another name) while still uploaded: the stored record, announced again
        again = await bus.add_track(data, tenant=tenant, filename="copy.wav", title="Copy", content_type="audio/wav",
                                    source=common_pb2.TRACK_SOURCE_UPLOAD)
        assert again == track
        with pytest.raises(NotFound):
            await bus.get_blob(common_pb2.BlobRef(name=f"{tenant}/tracks/{track_id}/copy.wav"))  # nothing stored twice

        # once analysed, adding it again changes and announces nothing
        await bus.update_track(tenant, track_id, lambda t: setattr(t, "state", common_pb2.TRACK_STATE_ANALYZED))
        later = await bus.add_track(data, tenant=tenant, filename="song.wav", title="Song", content_type="audio/wav",
                                    source=common_pb2.TRACK_SOURCE_UPLOAD)
        assert later.state == common_pb2.TRACK_STATE_ANALYZED
        published = []
        with contextlib.suppress(nats.errors.TimeoutError):
            while True:
                published.append(await sub.next_msg(timeout=0.5))
        await sub.unsubscribe()
        mine = [(m.headers, events_pb2.TrackUploaded.FromString(m.data)) for m in published]
        mine = [(h, e) for h, e in mine if e.track_id == track_id]
        assert len(mine) == 2 and all(e.audio_blob == track.audio_blob and e.title == "Song" for _, e in mine)
        assert all(e.tenant == tenant for _, e in mine)
        # the event id now names the tenant and the record's creation (a track deleted and uploaded
        # again is announced afresh), still one id for every announcement of this record
        event_id = f"uploaded:{tenant}:{track_id}:{track.created_at.seconds}.{track.created_at.nanos}"
        assert {h["Nats-Msg-Id"] for h, _ in mine} == {event_id}
        # the repeat fell in the duplicate window
        assert (await stored_ids(bus, subject)).count(event_id) == 1
        with pytest.raises(NotFound):  # a tenant without a record (and so no salt) cannot add tracks
            await bus.add_track(data, tenant=new_tenant_name(), filename="x.wav", title="x", content_type="audio/wav",
                                source=common_pb2.TRACK_SOURCE_UPLOAD)


async def test_generated_tracks_carry_their_generation(nats_url):
    data = b"RIFF" + uuid.uuid4().bytes * 10
    async with Bus(nats_url, name="test-add-generated") as bus:
        tenant = await new_tenant(bus)
        track = await bus.add_track(data, tenant=tenant, filename="audio.wav", title="generated C major",
                                    content_type="audio/wav", source=common_pb2.TRACK_SOURCE_GENERATED,
                                    generation_id="gen_abc")
        assert track.source == common_pb2.TRACK_SOURCE_GENERATED and track.generation_id == "gen_abc"
        assert (await bus.get_track(tenant, track.track_id)).generation_id == "gen_abc"


async def test_jobs_are_created_once_read_and_updated(nats_url):
    generation_id = f"gen_{uuid.uuid4().hex[:24]}"
    tenant, other_tenant = new_tenant_name(), new_tenant_name()
    async with Bus(nats_url, name="test-jobs") as bus:
        assert await bus.get_job(tenant, generation_id) is None
        queued = generator_pb2.GenerationJob(generation_id=generation_id, tenant=tenant,
                                             state=generator_pb2.GENERATION_STATE_QUEUED,
                                             params=generator_pb2.GenerationParams(key="D minor", seed=4))
        job, created = await bus.create_job(queued)
        assert created and job.state == generator_pb2.GENERATION_STATE_QUEUED and job.params.seed == 4
        assert job.created_at.seconds > 0 and job.updated_at == job.created_at
        assert not queued.HasField("created_at")  # the caller's message is left as it was
        assert await bus.get_job(tenant, generation_id) == job
        assert await bus.get_job(other_tenant, generation_id) is None  # another tenant's id space

        # the same id twice: nothing written, the stored job answers
        other = generator_pb2.GenerationJob(generation_id=generation_id, tenant=tenant,
                                            params=generator_pb2.GenerationParams(key="C major"))
        existing, created = await bus.create_job(other)
        assert not created and existing == job

        def running(j):
            j.state = generator_pb2.GENERATION_STATE_RUNNING

        def add_piece(j):
            j.pieces.add(index=len(j.pieces))

        updated = await bus.update_job(tenant, generation_id, running)
        assert updated.state == generator_pb2.GENERATION_STATE_RUNNING and updated.created_at == job.created_at
        assert updated.updated_at.ToDatetime() >= job.updated_at.ToDatetime()
        await asyncio.gather(*(bus.update_job(tenant, generation_id, add_piece) for _ in range(5)))  # no write is lost
        stored = await bus.get_job(tenant, generation_id)
        assert sorted(p.index for p in stored.pieces) == [0, 1, 2, 3, 4] and stored.params.key == "D minor"

        # a job the generator runs without a submission (GenerateTrack) is created by its first update
        sync_id = f"gen_{uuid.uuid4().hex[:24]}"
        made = await bus.update_job(tenant, sync_id, running)
        assert made.generation_id == sync_id and made.tenant == tenant and made.created_at.seconds > 0
        with pytest.raises(InvalidArgument, match="generation_id"):
            await bus.create_job(generator_pb2.GenerationJob(tenant=tenant))
        with pytest.raises(InvalidArgument):  # a job belongs to a tenant
            await bus.create_job(generator_pb2.GenerationJob(generation_id=f"gen_{uuid.uuid4().hex[:24]}"))


async def test_unreachable_nats_is_unavailable():
    from musicaas.runtime.procs import free_port

    with pytest.raises(Unavailable):
        async with Bus(f"nats://127.0.0.1:{free_port()}", name="x", connect_timeout_s=1.0):
            pass


# --- delivery: in-progress heartbeats and redelivery of a dead worker's message --------------


async def test_long_work_is_not_redelivered_while_its_worker_lives(nats_url):
    import asyncio
    import uuid

    from musicaas.events.v1 import events_pb2
    from musicaas.runtime import bus as busmod
    from musicaas.runtime.bus import Bus

    subject_id = uuid.uuid4().hex[:12]
    seen: list[int] = []
    done = asyncio.Event()

    async with Bus(nats_url, name="t-heartbeat") as bus:
        async def slow(event, headers):
            if event.track_id != f"trk_hb_{subject_id}":
                return
            seen.append(1)
            await asyncio.sleep(4.0)  # well past the 1.5 s ack wait
            done.set()

        # two pull loops on one durable, as the analyzer runs one per worker: without heartbeats
        # the idle one would get the message again once the 1.5 s ack wait has passed
        readies = [asyncio.Event(), asyncio.Event()]
        tasks = [asyncio.create_task(bus.consume(
            durable=f"hb-{subject_id}", subject=busmod.TRACKS_UPLOADED, message_type=events_pb2.TrackUploaded,
            handler=slow, ack_wait_s=1.5, ready=ready, ack_sync=True,
        )) for ready in readies]
        for ready in readies:
            await ready.wait()
        await bus.publish(busmod.TRACKS_UPLOADED,
                          events_pb2.TrackUploaded(track_id=f"trk_hb_{subject_id}", tenant=f"hb-{subject_id}"),
                          event_id=f"hb:{subject_id}")
        await asyncio.wait_for(done.wait(), 20)
        await asyncio.sleep(2.0)  # a redelivery would have come by now
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        info = await bus.js.consumer_info(busmod.STREAM, f"hb-{subject_id}")
    assert seen == [1]  # handled once: the heartbeats kept it from redelivery
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_a_dead_workers_message_is_redelivered_within_the_ack_wait(nats_url):
    import asyncio
    import time
    import uuid

    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    from musicaas.events.v1 import events_pb2
    from musicaas.runtime import bus as busmod
    from musicaas.runtime.bus import Bus

    sid = uuid.uuid4().hex[:12]
    durable, track_id = f"dead-{sid}", f"trk_dead_{sid}"
    async with Bus(nats_url, name="t-dead") as bus:
        # a worker takes the message and dies without acking (its connection just goes away)
        # (the filter Bus.consume gives the durable: this kind for every tenant)
        every_tenant = busmod.all_tenants(busmod.TRACKS_UPLOADED)
        config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW,
                                filter_subject=every_tenant, ack_wait=2.0, max_deliver=5)
        nc = await nats.connect(nats_url)
        sub = await nc.jetstream().pull_subscribe(every_tenant, durable=durable, stream=busmod.STREAM,
                                                  config=config)
        await bus.publish(busmod.TRACKS_UPLOADED, events_pb2.TrackUploaded(track_id=track_id, tenant=f"dead-{sid}"),
                          event_id=f"dead:{sid}")
        msgs = await sub.fetch(batch=1, timeout=5)  # a new consumer: ours is the only message
        assert events_pb2.TrackUploaded.FromString(msgs[0].data).track_id == track_id
        await nc.close()
        died = time.monotonic()
        got = asyncio.Event()

        async def handler(event, headers):
            if event.track_id == track_id:
                got.set()

        task = asyncio.create_task(bus.consume(durable=durable, subject=busmod.TRACKS_UPLOADED,
                                               message_type=events_pb2.TrackUploaded, handler=handler, ack_wait_s=2.0))
        await asyncio.wait_for(got.wait(), 20)
        waited = time.monotonic() - died
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert waited < 6.0, waited  # within the ack wait (2 s) and a fetch, not minutes


async def test_a_message_that_kills_every_worker_is_dead_lettered_not_dropped(nats_url):
    """A poison message: each worker that takes it dies before settling it. After ``max_deliver``
    such deliveries, the next consumer terminates it without running the handler, reports the
    failure and leaves a dead-letter record (JetStream alone would stop delivering it, silently)."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    sid = uuid.uuid4().hex[:12]
    durable, track_id = f"poison-{sid}", f"trk_poison_{sid}"
    max_deliver = 2
    async with Bus(nats_url, name="t-poison") as bus:
        # the consumer as Bus.consume declares it: max_deliver + 1 deliveries
        every_tenant = busmod.all_tenants(busmod.TRACKS_UPLOADED)
        config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW,
                                filter_subject=every_tenant, ack_wait=1.0, max_deliver=max_deliver + 1)
        nc = await nats.connect(nats_url)
        sub = await nc.jetstream().pull_subscribe(every_tenant, durable=durable, stream=busmod.STREAM,
                                                  config=config)
        await bus.publish(busmod.TRACKS_UPLOADED, events_pb2.TrackUploaded(track_id=track_id, tenant=f"poison-{sid}"),
                          event_id=f"poison:{sid}")
        await nc.close()
        for _ in range(max_deliver):  # two workers take it and die (their connections just go away)
            nc = await nats.connect(nats_url)
            sub = await nc.jetstream().pull_subscribe(every_tenant, durable=durable, stream=busmod.STREAM,
                                                      config=config)
            msgs = await sub.fetch(batch=1, timeout=10)
            assert events_pb2.TrackUploaded.FromString(msgs[0].data).track_id == track_id
            await nc.close()
        ran: list[str] = []
        failures: list[tuple[str, str]] = []

        async def handler(event, headers):
            ran.append(event.track_id)

        async def on_failure(event, error, headers):
            failures.append((event.track_id, error.code.name))

        task = asyncio.create_task(bus.consume(durable=durable, subject=busmod.TRACKS_UPLOADED,
                                               message_type=events_pb2.TrackUploaded, handler=handler,
                                               on_permanent_failure=on_failure, max_deliver=max_deliver,
                                               ack_wait_s=1.0))
        for _ in range(100):
            if failures:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # a redelivery would have come by now
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        letters = await bus.dead_letters(durable)
        info = await bus.js.consumer_info(busmod.STREAM, durable)
    assert ran == []  # the handler never ran on the poison message again
    assert failures == [(track_id, "INTERNAL")]
    assert len(letters) == 1 and letters[0].deliveries == max_deliver + 1
    assert "never settled" in letters[0].reason and letters[0].ce_id == f"poison:{sid}"
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_dead_letters_refuses_a_durable_that_is_not_a_name(nats_url):
    async with Bus(nats_url, name="t-dl-name") as bus:
        for bad in ("a.b", ">", "*", "x" * 65, "../x"):
            with pytest.raises(InvalidArgument):
                await bus.dead_letters(bad)


# --- key listings (list_tenants, list_tracks) --------------------------------------------------


@pytest.fixture(scope="module")
def private_nats(tmp_path_factory):
    """A nats-server of this module's own, for tests that leave many consumers behind (the
    session's server is shared by every module)."""
    from musicaas.runtime.procs import free_port, start_nats_server, stop_process

    store = tmp_path_factory.mktemp("nats-listings")
    port = free_port()
    proc = start_nats_server(store_dir=store, port=port, log_file=store / "n.log")
    yield f"nats://127.0.0.1:{port}"
    stop_process(proc)


async def test_listing_keys_leaves_no_consumers_behind(private_nats):
    async with Bus(private_nats, name="test-list-consumers") as bus:
        tenant = await new_tenant(bus)
        await bus.add_track(b"RIFF" + uuid.uuid4().bytes, tenant=tenant, filename="a.wav", title="a",
                            content_type="audio/wav", source=common_pb2.TRACK_SOURCE_UPLOAD)

        async def consumers() -> int:
            return sum([(await bus.js.stream_info(f"KV_{b}")).state.consumer_count
                        for b in (busmod.TRACK_BUCKET, busmod.TENANT_BUCKET)])

        before = await consumers()
        for _ in range(10):
            assert len((await bus.list_tracks(tenant))[0]) == 1
            assert tenant in {t.name for t in await bus.list_tenants()}
        await asyncio.sleep(1.0)
        assert await consumers() <= before + 1


async def test_listings_are_complete_every_time(private_nats):
    async with Bus(private_nats, name="test-list-complete") as bus:
        tenant = await new_tenant(bus)
        for _ in range(2):
            await bus.add_track(b"RIFF" + uuid.uuid4().bytes, tenant=tenant, filename="a.wav", title="a",
                                content_type="audio/wav", source=common_pb2.TRACK_SOURCE_UPLOAD)
        short = []
        for i in range(400):  # fewer than the server's 1000 consumers (see the test above)
            tenants = {t.name for t in await bus.list_tenants()}
            tracks = (await bus.list_tracks(tenant))[0]
            if tenant not in tenants or len(tracks) != 2:
                short.append((i, len(tenants), len(tracks)))
        assert short == []


async def test_replay_hands_over_every_stored_event_once_then_stops(nats_url):
    """Bus.replay reads every stored event of a kind (each tenant's, oldest first) up to the
    last one stored when it starts, skips one whose tenant is not its subject's, and leaves
    the durable consumers alone."""
    t1, t2 = f"rp{uuid.uuid4().hex[:10]}", f"rq{uuid.uuid4().hex[:10]}"
    async with Bus(nats_url, name="test-replay") as bus:
        before = await bus.replay(busmod.INTERACTIONS_RECORDED, events_pb2.InteractionsRecorded, _ignore)
        for i, tenant in enumerate((t1, t2, t1)):
            event = events_pb2.InteractionsRecorded(tenant=tenant, batch_id=f"b{i}-{tenant}")
            await bus.publish(busmod.INTERACTIONS_RECORDED, event, event_id=event.batch_id)
        # a payload naming another tenant than its subject: skipped, as consume() would refuse it
        await bus.js.publish(busmod.subject_for(busmod.INTERACTIONS_RECORDED, t1),
                             events_pb2.InteractionsRecorded(tenant=t2, batch_id="forged").SerializeToString())
        seen: list[str] = []

        async def handler(event, headers):
            seen.append(event.batch_id)
            if event.batch_id == f"b0-{t1}":  # published during the replay: not part of it
                late = events_pb2.InteractionsRecorded(tenant=t2, batch_id=f"late-{t2}")
                await bus.publish(busmod.INTERACTIONS_RECORDED, late, event_id=late.batch_id)

        handed = await bus.replay(busmod.INTERACTIONS_RECORDED, events_pb2.InteractionsRecorded, handler)
        mine = [b for b in seen if b.endswith((t1, t2))]
        assert mine == [f"b0-{t1}", f"b1-{t2}", f"b2-{t1}"]
        assert "forged" not in seen and handed == len(seen) == before + 3


async def _ignore(event, headers) -> None:
    return None
