"""The public gRPC API: authentication, validation, size limits, deadlines, and the flows.

* ``UploadTrack`` (client streaming): metadata first, then chunks; the size limit is
  enforced while receiving. The container is sniffed from the bytes by :mod:`musicaas.media`
  (the analyzer takes the same decision with it) so that a file that is no audio at all is
  refused at once with INVALID_ARGUMENT, saying what the bytes are; anything subtler
  (a truncated or corrupt file) fails on the asynchronous path with a
  ``music.tracks.failed`` event and the track in state ``failed``. The bytes go to the
  object store, the track to the KV bucket, and ``music.tracks.uploaded`` to the stream.
  Track ids are content-derived, so re-uploading the same bytes is idempotent.
* ``GetTrack`` reads the track state.
* ``GenerateTrack``, ``SimilarTracks``, ``Recommend`` call the generator and the
  recommender with a deadline on every call. ``GenerateTrackStream`` relays the generator's
  progress stream; when the caller cancels, the downstream call is cancelled too, which
  stops the generation.
* ``SubmitGeneration`` records the job (state QUEUED, :meth:`Bus.create_job`) and publishes
  ``music.generations.requested``; the generator consumes it.
  ``GetGeneration`` reads the job (optionally with the MIDI and WAV bytes from the object
  store). Submitting an existing generation id returns the existing job (idempotent).

API keys come in ``authorization: Bearer <key>`` metadata and are compared in constant
time (:func:`hmac.compare_digest`) against every configured key.
"""

from __future__ import annotations

import hmac

import grpc
import structlog

from musicaas import media
from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from musicaas.generator.v1 import generator_pb2, generator_pb2_grpc
from musicaas.recommender.v1 import recommender_pb2, recommender_pb2_grpc
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus, new_id
from musicaas.runtime.errors import (
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    from_rpc_error,
)
from musicaas.runtime.settings import ServiceSettings

log = structlog.get_logger()

#: Methods that need no API key (Kubernetes probes and tooling).
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class GatewaySettings(ServiceSettings):
    """Gateway settings (``MUSICAAS_*``): API keys, upload limit in bytes, downstream addresses and deadlines in seconds."""
    grpc_port: int = 50051
    #: Comma-separated API keys accepted in ``authorization: Bearer``.
    api_keys: str = ""
    #: Largest upload accepted, in bytes.
    max_upload_bytes: int = 50 * 1024 * 1024
    recommender_addr: str = "127.0.0.1:50053"
    generator_addr: str = "127.0.0.1:50054"
    #: Deadline of a recommender call, in seconds.
    recommend_timeout_s: float = 10.0
    #: Deadline of a generator call, in seconds.
    generate_timeout_s: float = 180.0
    #: Deadline of a streamed generation (GenerateTrackStream), in seconds.
    generate_stream_timeout_s: float = 600.0


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without a valid ``authorization: Bearer <key>`` (UNAUTHENTICATED)."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys if k]

    def _valid(self, presented: str) -> bool:
        token = presented.encode()
        ok = False
        for key in self._keys:  # no early exit: time does not depend on which key matched
            ok |= hmac.compare_digest(token, key)
        return ok

    async def intercept_service(self, continuation, details):
        if details.method.startswith(PUBLIC_PREFIXES):
            return await continuation(details)
        metadata = dict(details.invocation_metadata or ())
        auth = metadata.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token and self._valid(token.strip()):
            return await continuation(details)
        reason = "missing authorization metadata" if not auth else "invalid API key"
        handler = await continuation(details)
        return _rejecting(handler, reason)


def _rejecting(handler, reason: str):
    """A handler of the same arity that raises Unauthenticated (mapped by the error interceptor)."""

    async def deny(request_or_iterator, context):
        raise Unauthenticated(f"{reason}: send 'authorization: Bearer <api key>'")

    async def deny_stream(request, context):
        raise Unauthenticated(f"{reason}: send 'authorization: Bearer <api key>'")
        yield  # pragma: no cover - makes this an async generator

    if handler is None:
        return None
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(deny, handler.request_deserializer, handler.response_serializer)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(deny, handler.request_deserializer, handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(deny_stream, handler.request_deserializer, handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(deny_stream, handler.request_deserializer, handler.response_serializer)


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    """The public API (``musicaas.gateway.v1.GatewayService``); errors are domain errors mapped by the error interceptor."""
    def __init__(self, bus: Bus, settings: GatewaySettings, *, generator_channel, recommender_channel) -> None:
        self.bus = bus
        self.settings = settings
        self.generator = generator_pb2_grpc.GeneratorServiceStub(generator_channel)
        self.recommender = recommender_pb2_grpc.RecommenderServiceStub(recommender_channel)

    async def UploadTrack(self, request_iterator, context) -> gateway_pb2.UploadTrackResponse:
        meta = None
        chunks: list[bytes] = []
        size = 0
        limit = self.settings.max_upload_bytes
        async for message in request_iterator:
            kind = message.WhichOneof("payload")
            if kind == "metadata":
                if meta is not None or chunks:
                    raise InvalidArgument("metadata must be the first and only metadata message of the stream")
                meta = message.metadata
            elif kind == "chunk":
                size += len(message.chunk)
                if size > limit:
                    raise ResourceExhausted(f"upload exceeds the limit of {limit} bytes")
                chunks.append(message.chunk)
        if meta is None:
            raise InvalidArgument("the first message of UploadTrack must carry metadata (filename)")
        data = b"".join(chunks)
        if not data:
            raise InvalidArgument(f"upload {meta.filename!r} is empty (0 bytes)")
        found = media.sniff(data)
        if found is None or not found.container.accepted:
            raise InvalidArgument(media.refusal(data, filename=meta.filename or None))
        container = found.container.name
        filename = meta.filename or f"upload.{container}"
        track = await self.bus.add_track(
            data, filename=filename, title=meta.title or filename,
            content_type=meta.content_type or f"audio/{container}", source=common_pb2.TRACK_SOURCE_UPLOAD,
        )
        log.info("track_uploaded", track_id=track.track_id, size_bytes=size, filename=filename,
                 state=common_pb2.TrackState.Name(track.state))
        return gateway_pb2.UploadTrackResponse(track_id=track.track_id, state=track.state, size_bytes=size)

    async def GetTrack(self, request, context) -> gateway_pb2.GetTrackResponse:
        if not request.track_id:
            raise InvalidArgument("track_id is empty")
        track = await self.bus.get_track(request.track_id)
        if track is None:
            raise NotFound(f"track {request.track_id!r} not found")
        return gateway_pb2.GetTrackResponse(track=track)

    async def GenerateTrack(self, request, context) -> gateway_pb2.GenerateTrackResponse:
        try:
            resp = await self.generator.GenerateTrack(
                generator_pb2.GenerateTrackRequest(params=request.params, generation_id=request.generation_id),
                timeout=self.settings.generate_timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, what="generator.GenerateTrack") from exc
        return gateway_pb2.GenerateTrackResponse(result=resp.result)

    async def GenerateTrackStream(self, request, context):
        call = self.generator.GenerateTrackStream(
            generator_pb2.GenerateTrackRequest(params=request.params, generation_id=request.generation_id),
            timeout=self.settings.generate_stream_timeout_s,
        )
        try:
            async for event in call:
                yield gateway_pb2.GenerateTrackStreamResponse(progress=event)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, what="generator.GenerateTrackStream") from exc
        finally:
            # the caller went away (or we failed): cancelling the downstream call stops the generation
            call.cancel()

    async def SubmitGeneration(self, request, context) -> gateway_pb2.SubmitGenerationResponse:
        if not request.HasField("params"):
            raise InvalidArgument("params is missing: expected at least params.key")
        generation_id = request.generation_id or new_id("gen")
        job, created = await self.bus.create_job(generator_pb2.GenerationJob(
            generation_id=generation_id, state=generator_pb2.GENERATION_STATE_QUEUED, params=request.params,
        ))
        if not created:  # idempotent: the same id was submitted before
            return gateway_pb2.SubmitGenerationResponse(generation_id=generation_id, state=job.state)
        await self.bus.publish(
            busmod.GENERATIONS_REQUESTED,
            events_pb2.GenerationRequested(generation_id=generation_id, params=request.params),
            event_id=f"requested:{generation_id}",
        )
        log.info("generation_submitted", generation_id=generation_id)
        return gateway_pb2.SubmitGenerationResponse(generation_id=generation_id, state=generator_pb2.GENERATION_STATE_QUEUED)

    async def GetGeneration(self, request, context) -> gateway_pb2.GetGenerationResponse:
        if not request.generation_id:
            raise InvalidArgument("generation_id is empty")
        job = await self.bus.get_job(request.generation_id)
        if job is None:
            raise NotFound(f"generation {request.generation_id!r} not found")
        if request.include_data and job.state == generator_pb2.GENERATION_STATE_COMPLETED:
            for piece in job.pieces:
                piece.midi = await self.bus.get_blob(piece.midi_blob)
                piece.audio_wav = await self.bus.get_blob(piece.audio_blob)
        return gateway_pb2.GetGenerationResponse(generation=job)

    async def SimilarTracks(self, request, context) -> gateway_pb2.SimilarTracksResponse:
        try:
            resp = await self.recommender.SimilarTracks(
                recommender_pb2.SimilarTracksRequest(track_id=request.track_id, limit=request.limit, filter=request.filter),
                timeout=self.settings.recommend_timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, what="recommender.SimilarTracks") from exc
        return gateway_pb2.SimilarTracksResponse(tracks=resp.tracks)

    async def Recommend(self, request, context) -> gateway_pb2.RecommendResponse:
        try:
            resp = await self.recommender.Recommend(
                recommender_pb2.RecommendRequest(
                    liked_track_ids=request.liked_track_ids,
                    disliked_track_ids=request.disliked_track_ids,
                    limit=request.limit,
                    filter=request.filter,
                ),
                timeout=self.settings.recommend_timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, what="recommender.Recommend") from exc
        return gateway_pb2.RecommendResponse(tracks=resp.tracks)
