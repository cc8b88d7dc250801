"""Fixtures of the CLI tests: rendered chorale excerpts, their analyses, and a fake gateway
(an in-process gRPC server on a free loopback port) that the ``musicaas`` command talks to."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from musicaas.common.v1 import common_pb2
from musicaas.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from musicaas.recommender.v1 import recommender_pb2
from musicaas.render import encode_wav, render_midi
from musicaas_analyzer.analysis import analyze_bytes
from musicaas_analyzer.convert import analysis_to_proto

SR = 22050
#: String Ensemble 1: the General MIDI program that the pinned synthesiser plays in tune
#: (see tests/analyzer/conftest.py and bench/key_accuracy.py).
IN_TUNE_PROGRAM = 48


def chorale_midi(name: str) -> bytes:
    """A corpus chorale as the Standard MIDI File music21 writes."""
    from music21 import corpus

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "chorale.mid")
        corpus.parse(name).write("midi", fp=path)
        with open(path, "rb") as fh:
            return fh.read()


def render_excerpt(midi: bytes, *, seconds: float, transpose: int = 0) -> bytes:
    """The first ``seconds`` of ``midi``, re-voiced in tune and transposed, as a WAV file."""
    import symusic

    score = symusic.Score.from_midi(midi)
    for track in score.tracks:
        track.program = IN_TUNE_PROGRAM
        for note in track.notes:
            note.pitch += transpose
    qpm = score.tempos[0].qpm if len(score.tempos) else 120.0
    score = score.clip(0, int(seconds * qpm / 60.0 * score.ticks_per_quarter))
    return encode_wav(render_midi(score.dumps_midi(), sample_rate_hz=SR), sample_rate_hz=SR)


@pytest.fixture(scope="session")
def chorale_midis() -> dict[str, bytes]:
    return {name: chorale_midi(name) for name in ("bach/bwv66.6", "bach/bwv1.6")}


@pytest.fixture(scope="session")
def wavs(chorale_midis) -> list[bytes]:
    """Four rendered chorale excerpts (8-10 s), as WAV files."""
    return [
        render_excerpt(chorale_midis[name], seconds=seconds, transpose=transpose)
        for name, seconds, transpose in (("bach/bwv66.6", 10, 0), ("bach/bwv66.6", 8, 5), ("bach/bwv1.6", 9, 0),
                                         ("bach/bwv1.6", 8, -3))
    ]


@pytest.fixture(scope="session")
def analyses(wavs) -> list:
    """The analyzer's results (``AnalysisResult``) of the first three excerpts."""
    return [analyze_bytes(w, filename="x.wav") for w in wavs[:3]]


class FakeGateway:
    """UploadTrack/GetTrack/SimilarTracks of the gateway: files whose bytes start with
    ``b"TEXT"`` are rejected at upload, truncated WAVs end in state FAILED, and every track
    takes a different time to be "analysed" (so that completion order differs from input
    order). Every call's ``authorization`` metadata is kept in ``authorizations``."""

    def __init__(self, analyses: dict[bytes, common_pb2.TrackAnalysis]):
        self.analyses = analyses  # WAV bytes -> TrackAnalysis
        self.lock = threading.Lock()
        self.uploading = 0
        self.max_uploading = 0
        self.tracks: dict[str, tuple[float, common_pb2.TrackAnalysis | None]] = {}
        self.authorizations: set[str] = set()

    def servicer(self) -> gateway_pb2_grpc.GatewayServiceServicer:
        fake = self

        def authorize(context) -> None:
            with fake.lock:
                fake.authorizations.add(dict(context.invocation_metadata()).get("authorization", ""))

        class Servicer(gateway_pb2_grpc.GatewayServiceServicer):
            def UploadTrack(self, request_iterator, context):
                authorize(context)
                with fake.lock:
                    fake.uploading += 1
                    fake.max_uploading = max(fake.max_uploading, fake.uploading)
                try:
                    data = b"".join(r.chunk for r in request_iterator if r.WhichOneof("payload") == "chunk")
                    threading.Event().wait(0.3)  # uploads overlap when the client runs them at once
                    if data.startswith(b"TEXT"):
                        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not an audio file")
                    track_id = "trk_" + hashlib.sha256(data).hexdigest()[:24]
                    ready_at = time.monotonic() + 0.2 + 0.6 * (len(fake.tracks) % 3 == 0)
                    fake.tracks[track_id] = (ready_at, fake.analyses.get(data))
                    return gateway_pb2.UploadTrackResponse(track_id=track_id, state=common_pb2.TRACK_STATE_UPLOADED)
                finally:
                    with fake.lock:
                        fake.uploading -= 1

            def GetTrack(self, request, context):
                authorize(context)
                ready_at, analysis = fake.tracks[request.track_id]
                track = common_pb2.Track(track_id=request.track_id, state=common_pb2.TRACK_STATE_UPLOADED)
                if time.monotonic() >= ready_at:
                    if analysis is None:
                        track.state = common_pb2.TRACK_STATE_FAILED
                        track.error = "INVALID_ARGUMENT: truncated WAV data"
                    else:
                        track.state = common_pb2.TRACK_STATE_INDEXED
                        track.analysis.CopyFrom(analysis)
                return gateway_pb2.GetTrackResponse(track=track)

            def SimilarTracks(self, request, context):
                authorize(context)
                if request.track_id not in fake.tracks:
                    context.abort(grpc.StatusCode.NOT_FOUND, f"track {request.track_id} not found")
                others = [(t, a) for t, (_, a) in sorted(fake.tracks.items()) if t != request.track_id and a is not None]
                return gateway_pb2.SimilarTracksResponse(tracks=[
                    recommender_pb2.ScoredTrack(
                        track_id=t, score=0.9 - 0.1 * i, key=a.key, mode=a.mode, tempo_bpm=a.tempo_bpm,
                        source=common_pb2.TRACK_SOURCE_UPLOAD, title=f"track {i}", duration_s=a.duration_s,
                        loudness_lufs=a.loudness_lufs,
                    )
                    for i, (t, a) in enumerate(others[: request.limit or 10])
                ])

        return Servicer()


@pytest.fixture()
def fake_gateway(wavs, analyses, monkeypatch):
    """A :class:`FakeGateway` (and a health service answering SERVING) that knows the analyses
    of ``wavs[:3]``; ``MUSICAAS_GATEWAY`` points at it and ``MUSICAAS_API_KEY`` is ``test-key``."""
    fake = FakeGateway({w: analysis_to_proto(a) for w, a in zip(wavs, analyses)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(fake.servicer(), server)
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)  # SERVING
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("MUSICAAS_GATEWAY", f"127.0.0.1:{port}")
    monkeypatch.setenv("MUSICAAS_API_KEY", "test-key")
    yield fake
    server.stop(0)
