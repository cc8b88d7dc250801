"""The analyzer service: the ``AnalyzeAudio`` RPC and the ``music.tracks.uploaded`` consumer.

For each uploaded track the consumer reads the bytes from the object store, analyses them
(in a worker thread, so the gRPC server stays responsive), stores the analysis in the track
state (state ``analyzed``) and publishes ``music.tracks.analyzed``. Audio that can never be
analysed terminates the message, marks the track ``failed`` and publishes
``music.tracks.failed``.
"""

from __future__ import annotations

import asyncio

import structlog

from musicaas.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus, advance_state
from musicaas.runtime.errors import InvalidArgument, MusicaasError, ResourceExhausted
from musicaas.runtime.settings import ServiceSettings
from musicaas_analyzer.analysis import analyze_bytes
from musicaas_analyzer.convert import analysis_to_proto

log = structlog.get_logger()


class AnalyzerSettings(ServiceSettings):
    grpc_port: int = 50052
    #: Longest audio accepted, in seconds.
    max_duration_s: float = 1800.0
    #: Largest encoded file accepted by AnalyzeAudio, in bytes.
    max_audio_bytes: int = 60 * 1024 * 1024
    #: Analyses that run at once (threads).
    concurrency: int = 2


class Analyzer:
    """Runs analyses on a bounded number of worker threads."""

    def __init__(self, settings: AnalyzerSettings) -> None:
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.concurrency)

    async def analyze(self, data: bytes, filename: str) -> common_pb2.TrackAnalysis:
        if len(data) > self.settings.max_audio_bytes:
            raise ResourceExhausted(
                f"audio is {len(data)} bytes; the limit is {self.settings.max_audio_bytes} bytes"
            )
        async with self._slots:
            result = await asyncio.to_thread(
                analyze_bytes, data, filename=filename or None, max_duration_s=self.settings.max_duration_s
            )
        return analysis_to_proto(result)


class AnalyzerServicer(analyzer_pb2_grpc.AnalyzerServiceServicer):
    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer

    async def AnalyzeAudio(self, request: analyzer_pb2.AnalyzeAudioRequest, context) -> analyzer_pb2.AnalyzeAudioResponse:
        if not request.audio:
            raise InvalidArgument("audio is empty (0 bytes)")
        analysis = await self.analyzer.analyze(request.audio, request.filename)
        return analyzer_pb2.AnalyzeAudioResponse(analysis=analysis)


class UploadConsumer:
    """Consumes ``music.tracks.uploaded``; idempotent (a redelivery rewrites the same analysis)."""

    durable = "analyzer-tracks-uploaded"

    def __init__(self, bus: Bus, analyzer: Analyzer) -> None:
        self.bus = bus
        self.analyzer = analyzer

    async def handle(self, event: events_pb2.TrackUploaded, headers: dict[str, str]) -> None:
        tlog = log.bind(track_id=event.track_id)
        if not event.track_id:
            raise InvalidArgument("tracks.uploaded event without track_id")
        data = await self.bus.get_blob(event.audio)
        analysis = await self.analyzer.analyze(data, event.filename)

        def store(track: common_pb2.Track) -> None:
            track.analysis.CopyFrom(analysis)
            track.state = advance_state(track.state, common_pb2.TRACK_STATE_ANALYZED)

        track = await self.bus.update_track(event.track_id, store, create_if_missing=True)
        await self.bus.publish(
            busmod.TRACKS_ANALYZED,
            events_pb2.TrackAnalyzed(
                track_id=event.track_id,
                analysis=analysis,
                source=event.source,
                title=event.title or track.title,
                generation_id=event.generation_id,
            ),
            event_id=f"analyzed:{event.track_id}:{analysis.analyzer_version}",
        )
        tlog.info(
            "track_analyzed",
            key=analysis.key,
            mode=common_pb2.Mode.Name(analysis.mode),
            tempo_bpm=round(analysis.tempo_bpm, 1),
            loudness_lufs=round(analysis.loudness_lufs, 1),
        )

    async def failed(self, event: events_pb2.TrackUploaded | None, error: MusicaasError, headers: dict[str, str]) -> None:
        track_id = event.track_id if event is not None else ""
        code = error.code.name
        if track_id:

            def mark(track: common_pb2.Track) -> None:
                track.state = advance_state(track.state, common_pb2.TRACK_STATE_FAILED)
                track.error = f"{code}: {error.message}"

            await self.bus.update_track(track_id, mark, create_if_missing=True)
        await self.bus.publish(
            busmod.TRACKS_FAILED,
            events_pb2.TrackFailed(track_id=track_id, stage="analyzer", code=code, reason=error.message),
            event_id=f"failed:{track_id or headers.get('ce-id', 'unknown')}:analyzer",
        )
