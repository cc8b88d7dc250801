"""The whole platform through the gateway: real nats-server, real Triton (PyTriton, tiny
model), Qdrant Edge in a temporary folder, the four services as processes on loopback."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import soundfile as sf

from musicaas.chorales import iter_chorales
from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from musicaas.render import encode_wav, render_midi
from musicaas_cli.stack import health_status
from musicaas.runtime import bus as busmod
from musicaas.tenancy import DEFAULT_TENANT
from e2e_helpers import stream_events  # noqa: E402 - tests/e2e is on sys.path (pytest rootdir-relative import)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def tenant_events(stack, kind: str) -> list[tuple[dict, bytes]]:
    """Every event of ``kind`` of tenant ``default`` (the stack's API key is a MUSICAAS_API_KEYS
    key, so its tenant is ``default``): subject ``music.default.<kind>``."""
    return stream_events(stack, busmod.subject_for(kind, DEFAULT_TENANT))


@pytest.fixture(scope="module")
def chorales():
    return list(iter_chorales(3))


@pytest.fixture(scope="module")
def uploaded(client, chorales):
    """Track ids of the rendered chorales, analysed and indexed."""
    ids = []
    for c in chorales:
        wav = encode_wav(render_midi(c.midi), sample_rate_hz=22050)
        resp = client.upload_bytes(wav, filename=f"{c.name}.wav", title=c.name)
        ids.append(resp.track_id)
    tracks = [client.wait_track(t, timeout_s=120) for t in ids]
    assert [t.state for t in tracks] == [common_pb2.TRACK_STATE_INDEXED] * len(ids), [t.error for t in tracks]
    return ids


def test_chorale_is_analysed_indexed_and_found(client, uploaded, chorales):
    track = client.get_track(uploaded[0])
    a = track.analysis
    assert track.source == common_pb2.TRACK_SOURCE_UPLOAD
    assert a.duration_s > 10
    assert 30 < a.tempo_bpm < 250
    assert len(a.beats_s) > 4 and list(a.beats_s) == sorted(a.beats_s)
    assert a.key and a.mode in (common_pb2.MODE_MAJOR, common_pb2.MODE_MINOR)
    assert 0 <= a.key_confidence <= 1
    assert -60 < a.loudness_lufs < 0
    # the learned embedding (musicnn on Triton) is the indexed one; the hand-built one stays a descriptor
    assert len(a.embedding) == 200 and abs(np.linalg.norm(a.embedding) - 1) < 1e-3
    assert a.embedding_model == "musicnn-MTT/1"
    assert len(a.descriptor_embedding) == 64 and abs(np.linalg.norm(a.descriptor_embedding) - 1) < 1e-3
    assert 1 <= len(a.tags) <= 10 and all(0 <= t.score <= 1 for t in a.tags)
    assert [t.score for t in a.tags] == sorted((t.score for t in a.tags), reverse=True)
    results = client.similar(uploaded[0], limit=5)
    found = {r.track_id for r in results}
    assert uploaded[0] not in found
    assert set(uploaded[1:]) <= found
    assert results[0].score >= results[-1].score


def test_upload_is_idempotent(client, uploaded, chorales):
    wav = encode_wav(render_midi(chorales[0].midi), sample_rate_hz=22050)
    resp = client.upload_bytes(wav, filename="again.wav")
    assert resp.track_id == uploaded[0]
    assert resp.state == common_pb2.TRACK_STATE_INDEXED


def test_analyzed_events_carry_cloudevents_headers(stack, uploaded):
    events = tenant_events(stack, busmod.TRACKS_ANALYZED)
    ids = {events_pb2.TrackAnalyzed.FromString(data).track_id for _, data in events}
    assert set(uploaded) <= ids
    assert all(events_pb2.TrackAnalyzed.FromString(data).tenant == DEFAULT_TENANT for _, data in events)
    headers = events[0][0]
    assert headers["ce-type"] == "io.musicaas.tracks.analyzed.v1"
    assert headers["ce-source"] == "/musicaas/analyzer"
    assert headers["Nats-Msg-Id"] == headers["ce-id"]


def test_generation_makes_midi_and_audio_that_get_analysed(client, uploaded):
    resp = client.generate(key="D minor", tempo_bpm=90, num_bars=4, seed=11)
    piece = resp.pieces[0]
    assert piece.midi.startswith(b"MThd")
    audio, sr = sf.read(io.BytesIO(piece.audio_wav))
    assert sr == 22050 and len(audio) / sr == pytest.approx(piece.duration_s, abs=0.01)
    assert resp.params.key == "D minor" and resp.params.seed == 11
    track = client.wait_track(piece.track_id, timeout_s=120)
    assert track.state == common_pb2.TRACK_STATE_INDEXED, track.error
    assert track.source == common_pb2.TRACK_SOURCE_GENERATED
    assert track.generation_id == resp.generation_id
    assert track.analysis.duration_s > 0
    # same seed and parameters -> same MIDI
    again = client.generate(key="D minor", tempo_bpm=90, num_bars=4, seed=11)
    assert again.pieces[0].midi == piece.midi


def test_generation_bad_controls_are_invalid_argument(client):
    for kwargs, field in (
        (dict(key="H minor", tempo_bpm=90, num_bars=4), "key"),
        (dict(key="D minor", tempo_bpm=90, num_bars=0 - 1), "num_bars"),
        (dict(key="D minor", tempo_bpm=900, num_bars=4), "tempo"),
        (dict(key="D minor", tempo_bpm=90, num_bars=4, temperature=-1.0), "temperature"),
    ):
        with pytest.raises(grpc.RpcError) as info:
            client.generate(**kwargs)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, kwargs
        assert field in info.value.details()


def test_corrupt_file_fails_async_with_event_and_stack_still_serves(stack, client, uploaded, tmp_path):
    # a real FLAC, cut inside its frames: the header sniff passes (a cut WAV, by contrast, is
    # analysed to where it was cut)
    import io

    import soundfile as sf

    y = np.sin(2 * np.pi * 440 * np.arange(22050 * 3) / 22050).astype(np.float32)
    y += 0.01 * np.random.default_rng(0).standard_normal(y.size).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, y, 22050, format="FLAC")
    corrupt = buf.getvalue()[:4000]
    resp = client.upload_bytes(corrupt, filename="broken.flac")
    track = client.wait_track(resp.track_id, timeout_s=60)
    assert track.state == common_pb2.TRACK_STATE_FAILED
    assert track.error.startswith("INVALID_ARGUMENT")
    assert "FLAC" in track.error  # the reason names the problem
    failed = [events_pb2.TrackFailed.FromString(d) for _, d in tenant_events(stack, busmod.TRACKS_FAILED)]
    assert any(f.track_id == resp.track_id and f.code == "INVALID_ARGUMENT" for f in failed)
    # everything else keeps running and serving
    assert all(stack.alive().values())
    assert client.get_track(uploaded[0]).state == common_pb2.TRACK_STATE_INDEXED
    assert client.similar(uploaded[0], limit=2)


def test_not_audio_is_rejected_synchronously(client):
    with pytest.raises(grpc.RpcError) as info:
        client.upload_bytes(b"this is a text file, not audio\n" * 10, filename="notes.wav")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "notes.wav" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        client.upload_bytes(b"", filename="empty.wav")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_missing_or_wrong_api_key_is_unauthenticated(stack, client, uploaded):
    with grpc.insecure_channel(stack.gateway_addr) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetTrack(gateway_pb2.GetTrackRequest(track_id=uploaded[0]), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            stub.GetTrack(
                gateway_pb2.GetTrackRequest(track_id=uploaded[0]), timeout=5,
                metadata=(("authorization", "Bearer not-the-key"),),
            )
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # health needs no key, and the stack still serves authenticated calls
    assert health_status(stack.gateway_addr) == 1
    assert client.get_track(uploaded[0]).track_id == uploaded[0]


def test_unknown_track_is_not_found(client):
    unknown = "trk_" + "0" * 24  # well formed, never uploaded
    with pytest.raises(grpc.RpcError) as info:
        client.get_track(unknown)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        client.similar(unknown)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    # a malformed id is the caller's error, not a missing track
    with pytest.raises(grpc.RpcError) as info:
        client.get_track("trk_doesnotexist")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cli_analyze_json_reports_good_and_bad_files(stack, chorales, tmp_path):
    good = tmp_path / "good.wav"
    good.write_bytes(encode_wav(render_midi(chorales[1].midi), sample_rate_hz=22050))
    bad = tmp_path / "bad.mp3"
    bad.write_text("definitely not an mp3")
    env = {"MUSICAAS_GATEWAY": stack.gateway_addr, "MUSICAAS_API_KEY": stack.api_key}
    import os

    proc = subprocess.run(
        [sys.executable, "-m", "musicaas_cli", "analyze", str(bad), str(good), "--json"],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=180,
    )
    assert proc.returncode != 0  # one file was rejected
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["path"] == str(bad) and lines[0]["error"].startswith("INVALID_ARGUMENT")
    rec = lines[1]
    assert rec["path"] == str(good)
    assert set(rec) >= {"track_id", "key", "mode", "key_confidence", "tempo_bpm", "beats_s", "duration_s", "loudness_lufs"}
    assert rec["mode"] in ("major", "minor")


def test_cli_generate_and_similar(stack, uploaded, tmp_path):
    import os

    env = {**os.environ, "MUSICAAS_GATEWAY": stack.gateway_addr, "MUSICAAS_API_KEY": stack.api_key}
    proc = subprocess.run(
        [sys.executable, "-m", "musicaas_cli", "generate", "--key", "A minor", "--tempo", "100", "--bars", "2",
         "--seed", "3", "--out", str(tmp_path), "--json"],
        capture_output=True, text=True, env=env, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["requested_key"] == "A minor"
    assert open(rec["midi_path"], "rb").read(4) == b"MThd"
    assert open(rec["audio_path"], "rb").read(4) == b"RIFF"
    assert set(rec) >= {"generation_id", "track_id", "analyzed_key", "analyzed_mode"}
    proc = subprocess.run(
        [sys.executable, "-m", "musicaas_cli", "similar", uploaded[0], "--limit", "2", "--json"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 2 and all({"track_id", "score", "key", "mode", "tempo_bpm"} <= set(r) for r in rows)


def test_analyze_audio_rpc_rejects_corrupt_file_synchronously(stack, chorales):
    from musicaas.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc

    with grpc.insecure_channel(stack.addr("analyzer")) as channel:
        stub = analyzer_pb2_grpc.AnalyzerServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.AnalyzeAudio(analyzer_pb2.AnalyzeAudioRequest(audio=b"RIFF\x00\x00\x00\x00WAVEjunk" * 20, filename="x.wav"), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        wav = encode_wav(render_midi(chorales[2].midi), sample_rate_hz=22050)
        resp = stub.AnalyzeAudio(analyzer_pb2.AnalyzeAudioRequest(audio=wav, filename="c.wav"), timeout=60)
        assert resp.analysis.key and resp.analysis.tempo_bpm > 0


def test_musicaas_up_serves_and_stops_cleanly_on_ctrl_c(tmp_path):
    import os
    import signal

    from musicaas.runtime.procs import free_port_range

    from musicaas_cli.stack import StackPorts

    base = free_port_range(StackPorts.count())
    proc = subprocess.Popen(
        [sys.executable, "-m", "musicaas_cli", "up", "--state-dir", str(tmp_path / "state"), "--port-base", str(base)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    try:
        line = proc.stdout.readline()
        assert "SERVING" in line and f"127.0.0.1:{base}" in line, line
        assert health_status(f"127.0.0.1:{base}") == 1
        assert (tmp_path / "state" / "api_key").exists()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    # nothing is left listening
    assert health_status(f"127.0.0.1:{base}", timeout_s=0.5) is None


def test_midi_upload_is_analysed_from_its_events_and_indexed(client, chorales, uploaded):
    chorale = chorales[1]
    resp = client.upload_bytes(chorale.midi, filename=f"{chorale.name}.mid", title=f"{chorale.name} (MIDI)")
    track = client.wait_track(resp.track_id, timeout_s=120)
    assert track.state == common_pb2.TRACK_STATE_INDEXED, track.error
    a = track.analysis
    midi = a.midi
    assert midi.note_count > 50
    assert 0 < midi.lowest_pitch_midi < midi.highest_pitch_midi < 128
    assert midi.time_signature_numerator in (3, 4)
    assert f"{a.key} {'major' if a.mode == common_pb2.MODE_MAJOR else 'minor'}" == str(chorale.key)
    assert a.tempo_bpm == pytest.approx(chorale.tempo_bpm, rel=0.01)
    assert len(a.embedding) == 200 and a.embedding_model == "musicnn-MTT/1" and a.tags
    assert client.similar(resp.track_id, limit=3)


def test_full_analysis_tree_is_served(client, uploaded):
    a = client.get_track(uploaded[0]).analysis
    assert a.analyzer_version
    assert a.time_signature in (3, 4)
    assert len(a.tempo_candidates) == 3 and a.tempo_candidates[0].tempo_bpm == pytest.approx(a.tempo_bpm, rel=0.01)
    for name in ("danceability", "energy", "valence", "acousticness", "instrumentalness", "speechiness", "liveness"):
        assert 0.0 <= getattr(a.features, name) <= 1.0, name
    assert a.bars and a.beats and a.tatums and a.sections and a.segments
    assert all(s.duration_s > 0 for s in a.sections)
    assert len(a.segments[0].pitches) == 12 and len(a.segments[0].timbre) == 12
    assert 0.0 <= a.scores.tonal_clarity <= 1.0


def _cli(stack, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "MUSICAAS_GATEWAY": stack.gateway_addr, "MUSICAAS_API_KEY": stack.api_key}
    return subprocess.run([sys.executable, "-m", "musicaas_cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_cli_search_recommend_and_listeners_end_to_end(stack, client, uploaded, chorales, tmp_path):
    """Metadata, free-text search (text encoder + BM25), weighted recommendation with targets,
    interactions recorded through the gateway (a malformed row rejected alone), the listener
    model trained on demand and recommendations for a listener, all through the CLI."""
    import time

    wav = encode_wav(render_midi(chorales[0].midi, sample_rate_hz=16000), sample_rate_hz=16000)  # new bytes
    tagged = client.upload_bytes(wav, filename="chorale16k.wav", title="Chorale at 16 kHz", composer="Johann Sebastian Bach",
                                 genre="Baroque", tags=["demo-set"]).track_id
    track = client.wait_track(tagged, timeout_s=120)
    assert track.state == common_pb2.TRACK_STATE_INDEXED and track.metadata.composer == "Johann Sebastian Bach"

    proc = _cli(stack, "search", "Baroque piece by Johann Sebastian Bach", "--limit", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert rows[0]["track_id"] == tagged and rows[0]["composer"] == "Johann Sebastian Bach"
    assert rows[0]["reason"] == "text match (dense + BM25)" and isinstance(rows[0]["tags"], list)
    proc = _cli(stack, "search", "", "--json")
    assert proc.returncode == 1 and "INVALID_ARGUMENT" in json.loads(proc.stdout)["error"]

    proc = _cli(stack, "recommend", "--like", f"{uploaded[0]}:2", "--like", f"{uploaded[1]}:0.5", "--strategy",
                "sum_scores", "--target", "tempo_bpm=90", "--diversity", "0.2", "--limit", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert rows and not {r["track_id"] for r in rows} & set(uploaded[:2])
    assert all(r["reason"].startswith("sum_scores of 2 liked") for r in rows)
    proc = _cli(stack, "recommend", "--like", uploaded[0], "--target", "energy=7", "--json")
    assert proc.returncode == 1 and "energy" in json.loads(proc.stdout)["error"]

    proc = _cli(stack, "interactions", "add", "--listener", "e2e-ann", "--event", "like", uploaded[0], uploaded[1],
                "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["recorded"] == 2, proc.stdout + proc.stderr
    jsonl = tmp_path / "plays.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [
        {"listener_id": "e2e-ben", "event": "complete", "track_id": uploaded[0], "played_s": 40, "at": "2026-11-30T10:00:00Z"},
        {"listener_id": "e2e-ben", "event": "play", "track_id": uploaded[2], "played_s": 35, "at": "2026-11-30T10:05:00Z"},
        {"listener_id": "e2e-ben", "event": "play", "track_id": uploaded[1], "played_s": float("nan")},
    ]).replace("NaN", "1e999"))  # a non-finite played_s (JSON has no NaN)
    proc = _cli(stack, "interactions", "import", str(jsonl), "--json")
    out = json.loads(proc.stdout)
    assert proc.returncode == 2 and out["recorded"] == 2
    assert [(r["row"], r["field"]) for r in out["rejected"]] == [(3, "played_s")]

    deadline = time.monotonic() + 30
    while True:  # the recommender consumes the events asynchronously
        proc = _cli(stack, "interactions", "train", "--json")
        if proc.returncode == 0 and json.loads(proc.stdout)["interactions"] >= 4:
            break
        assert time.monotonic() < deadline, proc.stdout + proc.stderr
        time.sleep(1)
    trained = json.loads(proc.stdout)
    assert trained["listeners"] == 2 and trained["model_version"]
    proc = _cli(stack, "recommend", "--listener", "e2e-ann", "--limit", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model_version"] == trained["model_version"] and out["interactions"] == 2
    ids = [r["track_id"] for r in out["tracks"]]
    assert ids and not set(ids) & set(uploaded[:2]) and all(r["reason"] for r in out["tracks"])
    assert uploaded[2] in ids  # what the other listener played after the same track
    proc = _cli(stack, "recommend", "--listener", "nobody-here", "--json")
    assert proc.returncode == 1 and "NOT_FOUND" in json.loads(proc.stdout)["error"]
