"""The NATS adapter against a real nats-server with JetStream (loopback, temporary store): events,
consumers, blobs, tracks (content-derived ids, idempotent creation) and generation jobs."""

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

pytestmark = pytest.mark.integration


async def stored_ids(bus: Bus, subject: str) -> list[str]:
    """``Nats-Msg-Id`` of every message the MUSIC stream holds on ``subject`` (the session's
    nats-server is shared by every test module, so tests look for their own ids)."""
    sub = await bus.js.pull_subscribe(subject, stream=busmod.STREAM)
    out: list[str] = []
    with contextlib.suppress(nats.errors.TimeoutError):
        while True:
            out += [(m.headers or {}).get("Nats-Msg-Id") for m in await sub.fetch(batch=100, timeout=0.5)]
    await sub.unsubscribe()
    return out


async def test_publish_sets_cloudevents_headers_and_dedups(nats_url):
    event_id = f"failed:trk_x:{uuid.uuid4().hex}"
    async with Bus(nats_url, name="test-pub") as bus:
        sub = await bus.nc.subscribe("music.tracks.failed")
        event = events_pb2.TrackFailed(track_id="trk_x", stage="test", code="INVALID_ARGUMENT", reason="r")
        await bus.publish(busmod.TRACKS_FAILED, event, event_id=event_id)
        await bus.publish(busmod.TRACKS_FAILED, event, event_id=event_id)
        msg = await sub.next_msg(timeout=2)
        assert msg.headers["ce-specversion"] == "1.0"
        assert msg.headers["ce-type"] == "io.musicaas.tracks.failed.v1"
        assert msg.headers["ce-id"] == event_id
        assert msg.headers["Nats-Msg-Id"] == event_id
        assert msg.headers["content-type"] == "application/protobuf"
        assert events_pb2.TrackFailed.FromString(msg.data).reason == "r"
        # the second publish with the same id was dropped by the duplicate window
        assert (await stored_ids(bus, busmod.TRACKS_FAILED)).count(event_id) == 1


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

    async with Bus(nats_url, name="test-consumer") as bus:
        ready = asyncio.Event()
        task = asyncio.create_task(
            bus.consume(
                durable="test-uploaded",
                subject="music.tracks.uploaded",
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
            await bus.publish(busmod.TRACKS_UPLOADED, events_pb2.TrackUploaded(track_id=tid), event_id=f"up:{tid}")
        # a payload that is not protobuf at all
        await bus.js.publish("music.tracks.uploaded", b"\xff\xff\xff garbage", headers={"Nats-Msg-Id": "junk"})
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
    assert by_id["up:bad"].reason == "corrupt audio" and by_id["up:bad"].subject == busmod.TRACKS_UPLOADED
    assert events_pb2.TrackUploaded.FromString(by_id["up:bad"].data).track_id == "bad"  # replayable
    assert by_id["up:broken"].deliveries == 3 and "gave up after 3 deliveries" in by_id["up:broken"].reason
    assert by_id["ffffff"].code == "INVALID_ARGUMENT" and by_id["ffffff"].stream_sequence > 0
    assert all(d.durable == "test-uploaded" and d.terminated_at.seconds > 0 for d in letters)
    assert "bad:INVALID_ARGUMENT" in failed
    assert any(f.startswith("broken:") for f in failed)  # gave up after max_deliver
    assert attempts["bad"] == 1  # permanent errors are not retried
    assert attempts["broken"] == 3
    assert "<undecodable>:INVALID_ARGUMENT" in failed  # the garbage payload was terminated too


async def test_blobs_and_track_state(nats_url):
    async with Bus(nats_url, name="test-state") as bus:
        ref = await bus.put_blob("tracks/t1/a.wav", b"RIFF" + bytes(3_000_000), content_type="audio/wav")
        assert ref.size_bytes == 3_000_004
        assert (await bus.get_blob(ref))[:4] == b"RIFF"
        with pytest.raises(NotFound):
            await bus.get_blob(common_pb2.BlobRef(name="nope"))

        assert await bus.get_track("t1") is None
        assert await bus.create_track(common_pb2.Track(track_id="t1", state=common_pb2.TRACK_STATE_UPLOADED))
        assert not await bus.create_track(common_pb2.Track(track_id="t1"))

        def to_indexed(t):
            t.state = busmod.advance_state(t.state, common_pb2.TRACK_STATE_INDEXED)

        def to_analyzed(t):
            t.state = busmod.advance_state(t.state, common_pb2.TRACK_STATE_ANALYZED)

        await asyncio.gather(*(bus.update_track("t1", to_indexed if i % 2 else to_analyzed) for i in range(6)))
        assert (await bus.get_track("t1")).state == common_pb2.TRACK_STATE_INDEXED
        with pytest.raises(NotFound):
            await bus.update_track("missing", to_indexed)


def test_track_ids_are_content_derived():
    data = b"RIFF some audio"
    assert busmod.track_id_for(data) == "trk_" + hashlib.sha256(data).hexdigest()[:24]
    assert busmod.track_id_for(data) == busmod.track_id_for(bytes(data)) != busmod.track_id_for(data + b"!")


async def test_add_track_stores_records_and_announces_once_per_content(nats_url):
    data = b"RIFF" + uuid.uuid4().bytes * 100  # bytes no other test stores
    track_id = busmod.track_id_for(data)
    async with Bus(nats_url, name="test-add-track") as bus:
        sub = await bus.nc.subscribe("music.tracks.uploaded")  # every publish, also those the stream drops
        track = await bus.add_track(data, filename="dir/song.wav", title="Song", content_type="audio/wav",
                                    source=common_pb2.TRACK_SOURCE_UPLOAD)
        assert track.track_id == track_id and track.state == common_pb2.TRACK_STATE_UPLOADED
        assert (track.filename, track.title, track.source) == ("dir/song.wav", "Song", common_pb2.TRACK_SOURCE_UPLOAD)
        assert track.audio_blob.name == f"tracks/{track_id}/source" and track.audio_blob.content_type == "audio/wav"
        assert await bus.get_blob(track.audio_blob) == data
        assert await bus.get_track(track_id) == track
        assert track.created_at.seconds > 0 and track.updated_at == track.created_at

        # the same bytes again (another name) while still uploaded: the stored record, announced again
        again = await bus.add_track(data, filename="copy.wav", title="Copy", content_type="audio/wav",
                                    source=common_pb2.TRACK_SOURCE_UPLOAD)
        assert again == track
        with pytest.raises(NotFound):
            await bus.get_blob(common_pb2.BlobRef(name=f"tracks/{track_id}/copy.wav"))  # nothing stored twice

        # once analysed, adding it again changes and announces nothing
        await bus.update_track(track_id, lambda t: setattr(t, "state", common_pb2.TRACK_STATE_ANALYZED))
        later = await bus.add_track(data, filename="song.wav", title="Song", content_type="audio/wav",
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
        assert {h["Nats-Msg-Id"] for h, _ in mine} == {f"uploaded:{track_id}"}
        # the repeat fell in the duplicate window
        assert (await stored_ids(bus, busmod.TRACKS_UPLOADED)).count(f"uploaded:{track_id}") == 1


async def test_generated_tracks_carry_their_generation(nats_url):
    data = b"RIFF" + uuid.uuid4().bytes * 10
    async with Bus(nats_url, name="test-add-generated") as bus:
        track = await bus.add_track(data, filename="audio.wav", title="generated C major", content_type="audio/wav",
                                    source=common_pb2.TRACK_SOURCE_GENERATED, generation_id="gen_abc")
        assert track.source == common_pb2.TRACK_SOURCE_GENERATED and track.generation_id == "gen_abc"
        assert (await bus.get_track(track.track_id)).generation_id == "gen_abc"


async def test_jobs_are_created_once_read_and_updated(nats_url):
    generation_id = f"gen_{uuid.uuid4().hex[:24]}"
    async with Bus(nats_url, name="test-jobs") as bus:
        assert await bus.get_job(generation_id) is None
        queued = generator_pb2.GenerationJob(generation_id=generation_id, state=generator_pb2.GENERATION_STATE_QUEUED,
                                             params=generator_pb2.GenerationParams(key="D minor", seed=4))
        job, created = await bus.create_job(queued)
        assert created and job.state == generator_pb2.GENERATION_STATE_QUEUED and job.params.seed == 4
        assert job.created_at.seconds > 0 and job.updated_at == job.created_at
        assert not queued.HasField("created_at")  # the caller's message is left as it was
        assert await bus.get_job(generation_id) == job

        # the same id twice: nothing written, the stored job answers
        other = generator_pb2.GenerationJob(generation_id=generation_id,
                                            params=generator_pb2.GenerationParams(key="C major"))
        existing, created = await bus.create_job(other)
        assert not created and existing == job

        def running(j):
            j.state = generator_pb2.GENERATION_STATE_RUNNING

        def add_piece(j):
            j.pieces.add(index=len(j.pieces))

        updated = await bus.update_job(generation_id, running)
        assert updated.state == generator_pb2.GENERATION_STATE_RUNNING and updated.created_at == job.created_at
        assert updated.updated_at.ToDatetime() >= job.updated_at.ToDatetime()
        await asyncio.gather(*(bus.update_job(generation_id, add_piece) for _ in range(5)))  # no write is lost
        stored = await bus.get_job(generation_id)
        assert sorted(p.index for p in stored.pieces) == [0, 1, 2, 3, 4] and stored.params.key == "D minor"

        # a job the generator runs without a submission (GenerateTrack) is created by its first update
        sync_id = f"gen_{uuid.uuid4().hex[:24]}"
        made = await bus.update_job(sync_id, running)
        assert made.generation_id == sync_id and made.created_at.seconds > 0
        with pytest.raises(InvalidArgument, match="generation_id"):
            await bus.create_job(generator_pb2.GenerationJob())


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
        await bus.publish(busmod.TRACKS_UPLOADED, events_pb2.TrackUploaded(track_id=f"trk_hb_{subject_id}"),
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
        config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW,
                                filter_subject=busmod.TRACKS_UPLOADED, ack_wait=2.0, max_deliver=5)
        nc = await nats.connect(nats_url)
        sub = await nc.jetstream().pull_subscribe(busmod.TRACKS_UPLOADED, durable=durable, stream=busmod.STREAM,
                                                  config=config)
        await bus.publish(busmod.TRACKS_UPLOADED, events_pb2.TrackUploaded(track_id=track_id), event_id=f"dead:{sid}")
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
        config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW,
                                filter_subject=busmod.TRACKS_UPLOADED, ack_wait=1.0, max_deliver=max_deliver + 1)
        nc = await nats.connect(nats_url)
        sub = await nc.jetstream().pull_subscribe(busmod.TRACKS_UPLOADED, durable=durable, stream=busmod.STREAM,
                                                  config=config)
        await bus.publish(busmod.TRACKS_UPLOADED, events_pb2.TrackUploaded(track_id=track_id),
                          event_id=f"poison:{sid}")
        await nc.close()
        for _ in range(max_deliver):  # two workers take it and die (their connections just go away)
            nc = await nats.connect(nats_url)
            sub = await nc.jetstream().pull_subscribe(busmod.TRACKS_UPLOADED, durable=durable, stream=busmod.STREAM,
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
