"""The public gRPC API: authentication, validation, size limits, deadlines, and the flows.

* ``UploadTrack`` (client streaming): metadata first (file name, title and MIME type
  checked by :mod:`musicaas.runtime.validation`), then chunks. The chunks stream into the
  object store as they arrive (:meth:`Bus.add_uploaded_track`), so the gateway holds at most
  a few MiB per upload whatever the file size, and at most ``max_concurrent_uploads`` uploads
  at once; the size limit is enforced while receiving, and a client that sends nothing for
  ``upload_idle_timeout_s`` is cut off (DEADLINE_EXCEEDED). A refused, stalled or cancelled
  upload leaves no object and no track. The container is sniffed from the first MiB by
  :mod:`musicaas.media` (the analyzer takes the same decision with it) so that a file that
  is no audio at all is refused at once with INVALID_ARGUMENT, saying what the bytes are;
  anything subtler (a truncated or corrupt file) fails on the asynchronous path with a
  ``music.tracks.failed`` event and the track in state ``failed``. The track goes to the KV
  bucket and ``music.tracks.uploaded`` to the stream; object names are the platform's,
  never the caller's file name. Track ids are content-derived, so re-uploading the same
  bytes is idempotent.
* Every id and string a caller sends is checked before it reaches NATS, the recommender or
  a log line (:mod:`musicaas.runtime.validation`): INVALID_ARGUMENT naming the field.
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

import asyncio
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
from musicaas.runtime import validation
from musicaas.runtime.errors import (
    DeadlineExceeded,
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
    #: Largest upload accepted, in bytes (1 GiB: 30 minutes of 48 kHz 24-bit stereo WAV is 518 MB).
    max_upload_bytes: int = 1024 * 1024 * 1024
    #: Uploads in progress at once; one more is refused with RESOURCE_EXHAUSTED.
    max_concurrent_uploads: int = 32
    #: Seconds an upload may go without a message before it is cut off.
    upload_idle_timeout_s: float = 30.0
    #: Bytes of one upload buffered between the client and the object store.
    upload_buffer_bytes: int = 4 * 1024 * 1024
    recommender_addr: str = "127.0.0.1:50053"
    generator_addr: str = "127.0.0.1:50054"
    #: Deadline of a recommender call, in seconds.
    recommend_timeout_s: float = 10.0
    #: Deadline of a generator call, in seconds.
    generate_timeout_s: float = 180.0
    #: Deadline of a streamed generation (GenerateTrackStream), in seconds.
    generate_stream_timeout_s: float = 600.0


#: Bytes of an upload read before its container is sniffed (an ID3 tag may precede the audio).
SNIFF_BYTES = 1024 * 1024
#: Most liked or disliked track ids in one Recommend request.
MAX_EXAMPLE_IDS = 100


def _check_generation(request) -> None:
    """Bounds of a generation request's ids and text controls (their meaning is the generator's to check)."""
    if request.generation_id:
        validation.check_generation_id(request.generation_id)
    for name in ("key", "metre", "style"):
        validation.check_text(getattr(request.params, name), field=f"params.{name}", max_chars=validation.MAX_CONTROL_CHARS)


def _check_filter(flt) -> None:
    """Bounds of a recommender filter's text field (``filter.key``); raises InvalidArgument."""
    validation.check_text(flt.key, field="filter.key", max_chars=validation.MAX_CONTROL_CHARS)


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
        self._uploads = asyncio.Semaphore(settings.max_concurrent_uploads)

    async def UploadTrack(self, request_iterator, context) -> gateway_pb2.UploadTrackResponse:
        messages = request_iterator.__aiter__()
        first = await self._next_message(messages)
        if first is None or first.WhichOneof("payload") != "metadata":
            raise InvalidArgument("the first message of UploadTrack must carry metadata (filename)")
        meta = first.metadata
        filename = validation.check_filename(meta.filename, field="metadata.filename")
        title = validation.check_title(meta.title, field="metadata.title")
        content_type = validation.check_content_type(meta.content_type, field="metadata.content_type")
        if self._uploads.locked():
            raise ResourceExhausted(
                f"too many uploads in progress (at most {self.settings.max_concurrent_uploads}); retry later"
            )
        async with self._uploads:
            head, size = bytearray(), 0
            chunks = self._chunks(messages, context)
            async for chunk in chunks:  # the first MiB, to sniff the container before storing anything
                head += chunk
                if len(head) >= SNIFF_BYTES:
                    break
            if not head:
                raise InvalidArgument(f"upload {validation.quote(filename)} is empty (0 bytes)")
            found = media.sniff(bytes(head))
            if found is None or not found.container.accepted:
                raise InvalidArgument(media.refusal(bytes(head), filename=filename or None))
            container = found.container

            async def stream():
                nonlocal size
                size = len(head)
                yield bytes(head)
                async for chunk in chunks:
                    size += len(chunk)
                    yield chunk

            track = await self.bus.add_uploaded_track(
                stream(), filename=filename or f"upload.{container.name}", title=title or filename or "",
                content_type=content_type or container.mime_type, source=common_pb2.TRACK_SOURCE_UPLOAD,
                max_buffered_bytes=self.settings.upload_buffer_bytes,
            )
        log.info("track_uploaded", track_id=track.track_id, size_bytes=size, container=container.name,
                 state=common_pb2.TrackState.Name(track.state))
        return gateway_pb2.UploadTrackResponse(track_id=track.track_id, state=track.state, size_bytes=size)

    async def _next_message(self, messages):
        """The next message of a client stream, or None at its end; a client that sends
        nothing for ``upload_idle_timeout_s`` seconds is cut off."""
        try:
            return await asyncio.wait_for(messages.__anext__(), self.settings.upload_idle_timeout_s)
        except StopAsyncIteration:
            return None
        except asyncio.TimeoutError as exc:
            raise DeadlineExceeded(
                f"upload idle for {self.settings.upload_idle_timeout_s:g} s: send chunks without pausing"
            ) from exc

    async def _chunks(self, messages, context):
        """The chunks of an upload after its metadata, enforcing the size limit as they arrive.

        The end of the stream counts only when the call is still alive: a client that
        cancels may look to the handler like one that finished, and its bytes would make a
        truncated track.
        """
        limit, size = self.settings.max_upload_bytes, 0
        while (message := await self._next_message(messages)) is not None:
            if message.WhichOneof("payload") != "chunk":
                raise InvalidArgument("metadata must be the first and only metadata message of the stream")
            size += len(message.chunk)
            if size > limit:
                raise ResourceExhausted(f"upload exceeds the limit of {limit} bytes")
            if message.chunk:
                yield message.chunk
        if context is not None and (context.cancelled() or context.done()):
            raise asyncio.CancelledError("the client cancelled the upload")

    async def GetTrack(self, request, context) -> gateway_pb2.GetTrackResponse:
        validation.check_track_id(request.track_id)
        track = await self.bus.get_track(request.track_id)
        if track is None:
            raise NotFound(f"track {request.track_id!r} not found")
        return gateway_pb2.GetTrackResponse(track=track)

    async def GenerateTrack(self, request, context) -> gateway_pb2.GenerateTrackResponse:
        _check_generation(request)
        try:
            resp = await self.generator.GenerateTrack(
                generator_pb2.GenerateTrackRequest(params=request.params, generation_id=request.generation_id),
                timeout=self.settings.generate_timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, what="generator.GenerateTrack") from exc
        return gateway_pb2.GenerateTrackResponse(result=resp.result)

    async def GenerateTrackStream(self, request, context):
        _check_generation(request)
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
        _check_generation(request)
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
        validation.check_generation_id(request.generation_id)
        job = await self.bus.get_job(request.generation_id)
        if job is None:
            raise NotFound(f"generation {request.generation_id!r} not found")
        if request.include_data and job.state == generator_pb2.GENERATION_STATE_COMPLETED:
            for piece in job.pieces:
                piece.midi = await self.bus.get_blob(piece.midi_blob)
                piece.audio_wav = await self.bus.get_blob(piece.audio_blob)
        return gateway_pb2.GetGenerationResponse(generation=job)

    async def SimilarTracks(self, request, context) -> gateway_pb2.SimilarTracksResponse:
        validation.check_track_id(request.track_id)
        _check_filter(request.filter)
        try:
            resp = await self.recommender.SimilarTracks(
                recommender_pb2.SimilarTracksRequest(track_id=request.track_id, limit=request.limit, filter=request.filter),
                timeout=self.settings.recommend_timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, what="recommender.SimilarTracks") from exc
        return gateway_pb2.SimilarTracksResponse(tracks=resp.tracks)

    async def Recommend(self, request, context) -> gateway_pb2.RecommendResponse:
        for field in ("liked_track_ids", "disliked_track_ids"):
            ids = getattr(request, field)
            if len(ids) > MAX_EXAMPLE_IDS:
                raise InvalidArgument(f"{field} has {len(ids)} ids, more than {MAX_EXAMPLE_IDS}")
            for i, track_id in enumerate(ids):
                validation.check_track_id(track_id, field=f"{field}[{i}]")
        _check_filter(request.filter)
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
