"""Generation through the gateway on the whole stack (tiny model on a real Triton): the research
controls, variations, continuation of a primer, harmonisation of a melody, asynchronous jobs,
progress streaming and cancellation, bad input, the CLI, and a model-server outage."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import grpc
import pytest
import symusic

from musicaas.events.v1 import events_pb2
from musicaas.generator.v1 import generator_pb2
from musicaas.runtime.procs import python_env, stop_process, wait_for_port
from musicaas.runtime import bus as busmod
from musicaas.tenancy import DEFAULT_TENANT
from e2e_helpers import stream_events  # noqa: E402 - tests/e2e is on sys.path (pytest rootdir-relative import)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def tenant_events(stack, kind: str) -> list[tuple[dict, bytes]]:
    """Every event of ``kind`` of tenant ``default`` (the stack's API key is a MUSICAAS_API_KEYS
    key, so its tenant is ``default``): subject ``music.default.<kind>``."""
    return stream_events(stack, busmod.subject_for(kind, DEFAULT_TENANT))

TPQ = 480




def _midi(notes: list[tuple[float, float, int]], *, numerator: int = 4) -> bytes:
    """A one-track MIDI file of (start beat, duration in beats, pitch) notes."""
    score = symusic.Score(TPQ)
    score.time_signatures.append(symusic.TimeSignature(0, numerator, 4))
    track = symusic.Track(program=0, is_drum=False, name="t")
    for start, dur, pitch in notes:
        track.notes.append(symusic.Note(int(start * TPQ), int(dur * TPQ), pitch, 80))
    score.tracks.append(track)
    return bytes(score.dumps_midi())


MELODY = [(float(i), 1.0, p) for i, p in enumerate((72, 74, 76, 77, 79, 77, 76, 74))]  # 2 bars of 4/4
PRIMER = [(float(b), 1.0, p) for b in range(8) for p in (48 + (b % 4), 55 + (b % 4), 64 + (b % 4))]  # 2 bars of chords


def _notes(midi: bytes) -> list[tuple[float, float, int]]:
    score = symusic.Score.from_midi(midi)
    tpq = score.ticks_per_quarter
    return sorted((n.time / tpq, n.duration / tpq, n.pitch) for t in score.tracks for n in t.notes)


def test_controls_and_variations_in_one_request(client):
    kwargs = dict(key="G major", tempo_bpm=120, num_bars=2, temperature=0.9, seed=5, metre="3/4", style="folk",
                  instrument=40, top_k=20, top_p=0.95, num_variations=3)
    resp = client.generate(**kwargs)
    assert [p.index for p in resp.pieces] == [0, 1, 2] and [p.seed for p in resp.pieces] == [5, 6, 7]
    p = resp.params
    assert (p.key, p.metre, p.style, p.instrument, p.top_k, p.num_variations) == ("G major", "3/4", "folk", 40, 20, 3)
    assert p.top_p == pytest.approx(0.95)
    for piece in resp.pieces:
        score = symusic.Score.from_midi(piece.midi)
        assert {t.program for t in score.tracks} == {40}  # the MIDI carries the instrument
        assert (score.time_signatures[0].numerator, score.time_signatures[0].denominator) == (3, 4)
        assert piece.audio_wav.startswith(b"RIFF") and piece.duration_s > 0
        assert piece.midi_blob.name and piece.audio_blob.name and piece.track_id.startswith("trk_")
    assert len({p.track_id for p in resp.pieces}) == 3
    # same seeds and controls -> the same pieces, batched or not
    again = client.generate(**kwargs)
    assert [p.midi for p in again.pieces] == [p.midi for p in resp.pieces]
    # GetGeneration also knows synchronous generations
    job = client.get_generation(resp.generation_id)
    assert job.state == generator_pb2.GENERATION_STATE_COMPLETED and len(job.pieces) == 3


def test_continuation_starts_with_the_primer(client):
    primer = _midi(PRIMER)
    resp = client.generate(key="C major", tempo_bpm=90, num_bars=2, seed=2, primer_midi=primer, instrument=0)
    out = {(s, p) for s, _d, p in _notes(resp.pieces[0].midi)}
    # every primer note is there at its time (the model may add notes to the primer's last bar)
    assert {(s, p) for s, _d, p in _notes(primer)} <= out
    assert len(out) > len(PRIMER) or resp.pieces[0].num_tokens > 0
    assert resp.pieces[0].num_tokens > 0


def test_harmonisation_keeps_the_melody_as_soprano(client):
    resp = client.generate(key="C major", tempo_bpm=80, num_bars=0, seed=4, melody_midi=_midi(MELODY))
    piece = resp.pieces[0]
    assert piece.HasField("soprano_kept") and 0.0 <= piece.soprano_kept <= 1.0
    assert resp.params.num_bars == 2  # as long as the melody
    assert piece.soprano_kept == pytest.approx(1.0)
    notes = _notes(piece.midi)
    for start, _dur, pitch in MELODY:  # each melody note is the top voice at its onset
        sounding = [p for s, d, p in notes if s <= start + 1e-3 < s + d]
        assert max(sounding) == pitch, (start, pitch, sounding)


@pytest.mark.parametrize(
    "controls, field",
    [
        (dict(key="H minor"), "key"),
        (dict(num_bars=33), "num_bars"),
        (dict(num_bars=-1), "num_bars"),
        (dict(tempo_bpm=900), "tempo"),
        (dict(tempo_bpm=5), "tempo"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=-3), "top_k"),
        (dict(metre="7/8"), "metre"),
        (dict(style="jazz"), "style"),
        (dict(instrument=200), "instrument"),
        (dict(num_variations=9), "num_variations"),
        (dict(primer_midi=b""), "primer_midi"),
        (dict(primer_midi=b"this is not a MIDI file"), "primer_midi"),
        (dict(primer_midi=_midi([])), "primer_midi"),
        (dict(melody_midi=b"MThd\x00\x00\x00\x06garbage"), "melody_midi"),
        (dict(melody_midi=_midi([(0.0, 2.0, 72), (0.0, 2.0, 76)])), "melody_midi"),  # a chord: not monophonic
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(client, controls, field):
    kwargs = dict(key="D minor", tempo_bpm=90, num_bars=2) | controls
    with pytest.raises(grpc.RpcError) as info:
        client.generate(**kwargs)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert field in info.value.details()


def test_async_job_completes_and_is_announced(stack, client):
    started = time.monotonic()
    submitted = client.submit_generation(key="E minor", tempo_bpm=100, num_bars=2, seed=8, num_variations=2)
    assert time.monotonic() - started < 5  # answers at once
    assert submitted.generation_id.startswith("gen_")
    assert submitted.state == generator_pb2.GENERATION_STATE_QUEUED
    job = client.wait_generation(submitted.generation_id, timeout_s=180, include_data=True)
    assert job.state == generator_pb2.GENERATION_STATE_COMPLETED, job.error
    assert [p.seed for p in job.pieces] == [8, 9] and job.params.num_variations == 2
    assert all(p.midi.startswith(b"MThd") and p.audio_wav.startswith(b"RIFF") for p in job.pieces)
    assert job.created_at.seconds > 0 and job.updated_at.ToDatetime() >= job.created_at.ToDatetime()
    without = client.get_generation(submitted.generation_id)
    assert not without.pieces[0].midi and without.pieces[0].midi_blob.name
    # submitting the same id again is idempotent: the job is not run twice
    again = client.submit_generation(key="E minor", num_bars=2, generation_id=submitted.generation_id)
    assert again.state == generator_pb2.GENERATION_STATE_COMPLETED
    requested = [events_pb2.GenerationRequested.FromString(d) for _, d in tenant_events(stack, busmod.GENERATIONS_REQUESTED)]
    mine = [r for r in requested if r.generation_id == submitted.generation_id]
    assert len(mine) == 1 and mine[0].params.num_variations == 2
    completed = [events_pb2.GenerationCompleted.FromString(d) for _, d in tenant_events(stack, busmod.GENERATIONS_COMPLETED)]
    done = [c for c in completed if c.generation_id == submitted.generation_id]
    assert len(done) == 1 and [p.track_id for p in done[0].pieces] == [p.track_id for p in job.pieces]
    with pytest.raises(grpc.RpcError) as info:
        client.get_generation("gen_doesnotexist")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_async_job_with_bad_controls_fails_with_the_reason(stack, client):
    submitted = client.submit_generation(key="D minor", num_bars=2, top_p=2.0)
    job = client.wait_generation(submitted.generation_id, timeout_s=60)
    assert job.state == generator_pb2.GENERATION_STATE_FAILED
    assert job.error.startswith("INVALID_ARGUMENT") and "top_p" in job.error
    failed = [events_pb2.GenerationFailed.FromString(d) for _, d in tenant_events(stack, busmod.GENERATIONS_FAILED)]
    assert any(f.generation_id == submitted.generation_id and f.code == "INVALID_ARGUMENT" for f in failed)


def test_stream_reports_progress_then_the_result(client):
    events = [e.progress for e in client.generate_stream(key="A minor", num_bars=2, seed=12, num_variations=2)]
    stages = [generator_pb2.GenerationStage.Name(e.stage) for e in events]
    assert stages[0] == "GENERATION_STAGE_QUEUED"
    assert stages.count("GENERATION_STAGE_SAMPLING") == 2 and stages.count("GENERATION_STAGE_RENDERING") == 2
    assert stages[-2:] == ["GENERATION_STAGE_STORING", "GENERATION_STAGE_COMPLETED"]
    assert {e.message for e in events} >= {"sampling variation 1/2", "sampling variation 2/2"}
    assert [e.fraction for e in events] == sorted(e.fraction for e in events)
    result = events[-1].result
    assert len(result.pieces) == 2 and all(p.midi.startswith(b"MThd") for p in result.pieces)
    assert result.generation_id == events[0].generation_id


def test_cancelling_the_stream_stops_the_generation(stack, client):
    generation_id = f"gen_cancel_{uuid.uuid4().hex[:12]}"
    call = client.generate_stream(key="C major", num_bars=32, seed=1, num_variations=8, generation_id=generation_id)
    for event in call:
        if event.progress.stage == generator_pb2.GENERATION_STAGE_SAMPLING:
            break
    call.cancel()
    log = stack.state_dir / "logs" / "generator.log"
    deadline = time.monotonic() + 30
    while f'"generation_id": "{generation_id}"' not in log.read_text() or "generation_cancelled" not in log.read_text():
        assert time.monotonic() < deadline, "the generator did not cancel the generation"
        time.sleep(0.2)
    cancelled = [json.loads(line) for line in log.read_text().splitlines() if generation_id in line]
    assert any(r.get("event") == "generation_cancelled" for r in cancelled), cancelled
    time.sleep(3)
    completed = [events_pb2.GenerationCompleted.FromString(d) for _, d in tenant_events(stack, busmod.GENERATIONS_COMPLETED)]
    assert generation_id not in {c.generation_id for c in completed}
    uploaded = [events_pb2.TrackUploaded.FromString(d) for _, d in tenant_events(stack, busmod.TRACKS_UPLOADED)]
    assert generation_id not in {u.generation_id for u in uploaded}
    with pytest.raises(grpc.RpcError) as info:
        client.get_generation(generation_id)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    # the service goes on serving
    assert client.generate(key="C major", num_bars=1, seed=1).pieces[0].midi.startswith(b"MThd")


def test_cli_generate_async_with_variations(stack, tmp_path):
    env = {**os.environ, "MUSICAAS_GATEWAY": stack.gateway_addr, "MUSICAAS_API_KEY": stack.api_key}
    proc = subprocess.run(
        [sys.executable, "-m", "musicaas_cli", "generate", "--key", "F major", "--tempo", "110", "--bars", "2",
         "--metre", "3/4", "--style", "folk", "--instrument", "73", "--top-k", "10", "--top-p", "0.95",
         "--variations", "2", "--seed", "21", "--async", "--out", str(tmp_path), "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first, rec = (json.loads(line) for line in proc.stdout.splitlines())
    assert first == {"generation_id": rec["generation_id"], "state": "queued"}
    assert set(rec) >= {"generation_id", "track_id", "midi_path", "audio_path", "requested_key", "analyzed_key",
                        "analyzed_mode", "pieces"}
    assert rec["requested_key"] == "F major" and len(rec["pieces"]) == 2
    assert [p["seed"] for p in rec["pieces"]] == [21, 22]
    assert rec["midi_path"] == rec["pieces"][0]["midi_path"]
    for piece in rec["pieces"]:
        assert open(piece["midi_path"], "rb").read(4) == b"MThd"
        assert open(piece["audio_path"], "rb").read(4) == b"RIFF"
    melody = tmp_path / "melody.mid"
    melody.write_bytes(_midi(MELODY))
    proc = subprocess.run(
        [sys.executable, "-m", "musicaas_cli", "generate", "--key", "C major", "--melody", str(melody), "--seed", "3",
         "--async", "--no-wait", "--out", str(tmp_path), "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    submitted = json.loads(proc.stdout)
    assert submitted["state"] == "queued" and submitted["generation_id"].startswith("gen_")


def test_model_server_down_is_unavailable_and_recovers_without_restart(stack, client):
    """Last in the module: stops and restarts this module's Triton."""
    generator_pid = stack.procs["generator"].pid
    triton = stack.procs["triton"]
    args = list(triton.args)
    stop_process(triton, timeout_s=30)
    with pytest.raises(grpc.RpcError) as info:
        client.generate(key="C major", num_bars=1, seed=1)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "model server" in info.value.details() and "unavailable" in info.value.details()
    # the same again through the stream
    with pytest.raises(grpc.RpcError) as info:
        list(client.generate_stream(key="C major", num_bars=1, seed=1))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    restarted = stack._spawn("triton", args, python_env(stack.extra_env))
    wait_for_port(stack.host, stack.ports.triton_grpc, timeout_s=240, proc=restarted)
    deadline = time.monotonic() + 60  # the port opens a moment before the model is loaded
    while True:
        try:
            resp = client.generate(key="C major", num_bars=1, seed=1)
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, exc.details()
            time.sleep(0.5)
    assert resp.pieces[0].midi.startswith(b"MThd")
    assert stack.procs["generator"].pid == generator_pid and stack.alive()["generator"]


def test_key_guidance_can_be_switched_off(client):
    guided = client.generate(key="E major", tempo_bpm=100, num_bars=2, seed=5)
    unguided = client.generate(key="E major", tempo_bpm=100, num_bars=2, seed=5, key_guidance=False)
    assert not guided.params.HasField("key_guidance")  # unset: the default, on
    assert unguided.params.HasField("key_guidance") and unguided.params.key_guidance is False
    assert guided.pieces[0].midi.startswith(b"MThd") and unguided.pieces[0].midi.startswith(b"MThd")
    assert guided.pieces[0].midi != unguided.pieces[0].midi  # the constraint changes what is sampled
