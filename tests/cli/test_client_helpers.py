"""What every caller of the gateway shares, in :mod:`musicaas.client`: the gateway address, the
API key, the text of a failed call, waiting for a track, and the JSON record of an analysis."""

from __future__ import annotations

import json
import threading
import time

import grpc
import numpy as np
import pytest

from musicaas.client import (
    DEFAULT_GATEWAY, GatewayClient, NoApiKey, analysis_record, gateway_addr, json_float, resolve_api_key,
    rpc_error_text,
)
from musicaas.common.v1 import common_pb2
from musicaas_analyzer.convert import analysis_to_proto

NAN, INF = float("nan"), float("inf")
ORIGINAL_KEYS = ["track_id", "key", "mode", "key_confidence", "tempo_bpm", "beats_s", "duration_s", "loudness_lufs"]


def test_gateway_addr_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("MUSICAAS_GATEWAY", raising=False)
    assert gateway_addr() == DEFAULT_GATEWAY == "127.0.0.1:50051"
    monkeypatch.setenv("MUSICAAS_GATEWAY", "gateway.example:443")
    assert gateway_addr() == "gateway.example:443"


def test_api_key_from_the_environment_else_the_state_dir(tmp_path, monkeypatch):
    (tmp_path / "api_key").write_text("dev-abc\n")
    monkeypatch.setenv("MUSICAAS_API_KEY", "partner-key")
    assert resolve_api_key(tmp_path) == "partner-key"
    monkeypatch.setenv("MUSICAAS_API_KEY", "")  # empty counts as unset
    assert resolve_api_key(tmp_path) == "dev-abc"
    monkeypatch.delenv("MUSICAAS_API_KEY")
    assert resolve_api_key(str(tmp_path)) == "dev-abc"
    missing = tmp_path / "nowhere"
    with pytest.raises(NoApiKey, match="set MUSICAAS_API_KEY or start the stack") as info:
        resolve_api_key(missing)
    assert str(missing / "api_key") in str(info.value)
    assert isinstance(info.value, LookupError)


def test_rpc_error_text_of_real_failed_calls(fake_gateway):
    with GatewayClient(gateway_addr(), "test-key") as client:
        with pytest.raises(grpc.RpcError) as info:
            client.upload_bytes(b"TEXT, not audio", filename="notes.wav")
        assert rpc_error_text(info.value) == "INVALID_ARGUMENT: not an audio file"
        with pytest.raises(grpc.RpcError) as info:
            client.similar("trk_unknown")
        assert rpc_error_text(info.value) == "NOT_FOUND: track trk_unknown not found"


def test_wait_track_times_out_naming_the_state_and_stops_when_asked(fake_gateway, wavs):
    with GatewayClient(gateway_addr(), "test-key") as client:
        track_id = client.upload_bytes(wavs[0], filename="a.wav").track_id  # the first upload is slow
        with pytest.raises(TimeoutError, match=f"track {track_id} still TRACK_STATE_UPLOADED after 0 s"):
            client.wait_track(track_id, timeout_s=0.0, poll_s=0.01)
        stop = threading.Event()
        stop.set()
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="^interrupted$"):
            client.wait_track(track_id, timeout_s=60.0, stop=stop)
        assert time.monotonic() - t0 < 0.5
        track = client.wait_track(track_id, timeout_s=10.0, stop=threading.Event())
        assert track.state == common_pb2.TRACK_STATE_INDEXED and track.analysis.key


def test_json_float_rounds_and_drops_what_json_cannot_hold():
    assert json_float(1.23456, 2) == 1.23 and json_float(-70, 4) == -70.0
    assert json_float(NAN, 4) is None and json_float(INF, 2) is None and json_float(-INF, 2) is None


def _all_floats(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _all_floats(v)
    elif isinstance(value, list):
        for v in value:
            yield from _all_floats(v)
    elif isinstance(value, float):
        yield value


def test_proto_and_cli_record_carry_every_field(analyses):
    song = analyses[0]
    msg = analysis_to_proto(song)
    wire = common_pb2.TrackAnalysis.FromString(msg.SerializeToString())
    assert wire.time_signature == song.time_signature
    assert wire.tempo_candidates[0].tempo_bpm == pytest.approx(song.tempo_bpm)
    assert wire.features.danceability == pytest.approx(song.features.danceability)
    assert wire.scores.repetition == pytest.approx(song.scores.repetition)
    assert list(wire.descriptors.chroma_mean) == pytest.approx(list(song.descriptors.chroma_mean))
    assert len(wire.segments) == len(song.segments) and len(wire.sections) == len(song.sections)
    assert len(wire.bars) == len(song.bars) and len(wire.tatums) == len(song.tatums)
    assert wire.segments[5].pitches == pytest.approx(list(song.segments[5].pitches), abs=1e-6)
    assert wire.sections[0].key == song.sections[0].key.tonic
    assert not wire.HasField("midi")
    record = analysis_record(common_pb2.Track(track_id="trk_x", analysis=wire))
    assert list(record)[: len(ORIGINAL_KEYS)] == ORIGINAL_KEYS
    assert record["key"] == song.key.tonic and record["mode"] == song.key.mode
    assert record["time_signature"] == song.time_signature and record["midi"] is None
    assert record["features"]["energy"] == pytest.approx(song.features.energy, abs=1e-4)
    assert len(record["segments"]) == len(song.segments)
    json.dumps(record, allow_nan=False)

    # every field of the message but the two vectors, nested as in the message, under its proto name
    assert set(record) == {f.name for f in wire.DESCRIPTOR.fields} - {"embedding", "descriptor_embedding"} | {"track_id"}
    assert record["tags"] == [] and record["embedding_model"] is None  # no tagger here
    from musicaas.models.musicnn_contract import summarise
    from musicaas_analyzer.convert import apply_tags

    probs = np.zeros((2, 50), np.float32)
    probs[:, 1] = 0.81234
    probs[:, 35] = 0.5
    tagged = apply_tags(common_pb2.TrackAnalysis(), summarise(probs, np.ones((2, 200), np.float32), top=2))
    tagged_record = analysis_record(common_pb2.Track(track_id="trk_y", analysis=tagged))
    assert tagged_record["tags"] == [{"name": "classical", "score": 0.8123}, {"name": "choir", "score": 0.5}]
    assert tagged_record["embedding_model"] == "musicnn-MTT/1" and "embedding" not in tagged_record
    for name in ("features", "descriptors", "scores"):
        assert set(record[name]) == {f.name for f in getattr(wire, name).DESCRIPTOR.fields}
    for name in ("tempo_candidates", "bars", "beats", "tatums", "sections", "segments"):
        fields = {f.name for f in wire.DESCRIPTOR.fields_by_name[name].message_type.fields}
        assert len(record[name]) == len(getattr(wire, name)) and all(set(item) == fields for item in record[name])
    # the values are the analysis, in its units, rounded to 4 decimals
    assert record["sections"][0]["key"] == song.sections[0].key.tonic
    assert record["sections"][0]["mode"] == song.sections[0].key.mode
    assert record["segments"][5]["pitches"] == pytest.approx(list(song.segments[5].pitches), abs=1e-4)
    assert [b["start_s"] for b in record["beats"]] == pytest.approx(list(song.beats_s), abs=1e-3)
    assert record["tempo_candidates"][0]["tempo_bpm"] == pytest.approx(song.tempo_bpm, abs=1e-3)
    assert record["descriptors"]["spectral_centroid_hz"] == pytest.approx(song.descriptors.spectral_centroid_hz,
                                                                          abs=1e-4)
    assert record["sample_rate_hz"] == song.sample_rate_hz and record["is_silent"] is False
    assert record["analyzer_version"] == song.analyzer_version
    rest = {k: v for k, v in record.items() if k not in ORIGINAL_KEYS}
    assert all(round(x, 4) == x for x in _all_floats(rest))


def test_record_of_edge_values_is_valid_json_with_nulls():
    wire = common_pb2.TrackAnalysis(
        duration_s=3.0, loudness_lufs=-INF, key="", mode=common_pb2.MODE_UNSPECIFIED, time_signature=0,
        tempo_confidence=NAN, analyzer_version="2.1.0", is_silent=True,
        sections=[common_pb2.Section(start_s=0.0, duration_s=3.0, loudness_lufs=NAN, key="", time_signature=0),
                  common_pb2.Section(key="Bb", mode=common_pb2.MODE_MINOR, time_signature=3, tempo_bpm=INF)],
        segments=[common_pb2.Segment(pitches=[0.5, NAN], timbre=[1 / 3])],
    )
    record = analysis_record(common_pb2.Track(track_id="trk_silent", analysis=wire))
    assert list(record)[: len(ORIGINAL_KEYS)] == ORIGINAL_KEYS
    assert record["key"] is None and record["mode"] is None and record["loudness_lufs"] is None
    assert record["time_signature"] is None and record["tempo_confidence"] is None
    assert record["is_silent"] is True and record["analyzer_version"] == "2.1.0" and record["beats_s"] == []
    assert record["sections"][0]["key"] is None and record["sections"][0]["mode"] is None
    assert record["sections"][0]["loudness_lufs"] is None and record["sections"][0]["time_signature"] is None
    assert record["sections"][1]["key"] == "Bb" and record["sections"][1]["mode"] == "minor"
    assert record["sections"][1]["time_signature"] == 3 and record["sections"][1]["tempo_bpm"] is None
    assert record["segments"][0]["pitches"] == [0.5, None] and record["segments"][0]["timbre"] == [0.3333]
    # messages the analysis does not carry are null, not objects of zeros
    assert record["features"] is None and record["scores"] is None and record["midi"] is None
    text = json.dumps(record, allow_nan=False)
    assert json.loads(text) == record


def test_record_of_a_midi_analysis_carries_what_the_file_says():
    midi = common_pb2.MidiFeatures(
        note_count=412, note_density_per_s=8.123456, lowest_pitch_midi=40, highest_pitch_midi=81,
        time_signature_numerator=3, time_signature_denominator=4, tempo_changes=2, track_count=4, has_drums=False,
        key_signature="F#", key_signature_mode=common_pb2.MODE_MINOR,
    )
    wire = common_pb2.TrackAnalysis(key="A", mode=common_pb2.MODE_MAJOR, key_confidence=0.81234, tempo_bpm=96.004,
                                    beats_s=[0.1234, 0.7491], duration_s=50.71249, loudness_lufs=-18.456, midi=midi)
    record = analysis_record(common_pb2.Track(track_id="trk_mid", analysis=wire))
    assert {k: record[k] for k in ORIGINAL_KEYS} == {
        "track_id": "trk_mid", "key": "A", "mode": "major", "key_confidence": 0.8123, "tempo_bpm": 96.0,
        "beats_s": [0.123, 0.749], "duration_s": 50.712, "loudness_lufs": -18.46,
    }
    assert record["midi"] == {
        "note_count": 412, "note_density_per_s": 8.1235, "lowest_pitch_midi": 40, "highest_pitch_midi": 81,
        "time_signature_numerator": 3, "time_signature_denominator": 4, "tempo_changes": 2, "track_count": 4,
        "has_drums": False, "key_signature": "F#", "key_signature_mode": "minor",
    }
    assert all(isinstance(v, int) and not isinstance(v, bool) for k, v in record["midi"].items()
               if k.endswith(("_count", "_midi", "_numerator", "_denominator", "_changes")))
