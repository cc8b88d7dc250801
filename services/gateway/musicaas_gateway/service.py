"""The public gRPC API: authentication, validation, size limits, deadlines, and the flows.

* ``UploadTrack`` (client streaming): metadata first (file name and MIME type checked by
  :mod:`musicaas.runtime.validation`; title, artist, composer, album, year, genre and tags
  by :mod:`musicaas_gateway.metadata`, and stored as the track's ``metadata``), then chunks.
  The chunks stream into the object store as they arrive (:meth:`Bus.add_uploaded_track`),
  so the gateway holds at most a few MiB per upload whatever the file size, and at most
  ``max_concurrent_uploads`` uploads at once; the size limit is enforced while receiving,
  and a client that sends nothing for ``upload_idle_timeout_s`` is cut off
  (DEADLINE_EXCEEDED). A refused, stalled or cancelled
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
* ``SimilarTracks``, ``Recommend``, ``SearchTracks``, ``DiscoverTracks``,
  ``RecommendForListener`` and ``TrainListenerModel`` check their ids and text bounds here and
  go to the recommender (which checks meaning: attribute names, ranges, unknown ids).
  ``RecordInteractions`` checks each row (:mod:`musicaas_gateway.interactions`) and publishes
  the good ones as one ``music.<tenant>.interactions.recorded`` event.
* ``GenerateTrack``, ``SimilarTracks``, ``Recommend`` call the generator and the
  recommender with a deadline on every call. ``GenerateTrackStream`` relays the generator's
  progress stream; when the caller cancels, the downstream call is cancelled too, which
  stops the generation.
* ``SubmitGeneration`` records the job (state QUEUED, :meth:`Bus.create_job`) and publishes
  ``music.generations.requested``; the generator consumes it.
  ``GetGeneration`` reads the job (optionally with the MIDI and WAV bytes from the object
  store). Submitting an existing generation id returns the existing job (idempotent).

Tenants: API keys come in ``authorization: Bearer <key>`` metadata and name the calling
tenant (:mod:`musicaas_gateway.auth`). Everything a call reads or makes is that tenant's: the
tenant goes to the recommender and the generator in ``x-musicaas-tenant`` metadata and into
every event and KV key (:mod:`musicaas.runtime.bus`); another tenant's ids answer NOT_FOUND,
exactly like ids that do not exist.

* ``DeleteTrack`` deletes the bytes and leaves a tombstone (:meth:`Bus.delete_track`); the
  recommender drops the vector point on ``music.<tenant>.tracks.deleted``. ``ListTracks``
  pages through the tenant's tracks; ``GetTracks`` reads up to 100 at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math

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
from musicaas.tenancy import tenant_metadata
from musicaas_gateway.auth import KeyDirectory
from musicaas_gateway import interactions, webhooks
from musicaas_gateway.metadata import upload_metadata
from musicaas_gateway.limits import GENERATION_QUOTAS, UPLOAD_QUOTAS, QuotaGuard

log = structlog.get_logger()


class GatewaySettings(ServiceSettings):
    """Gateway settings (``MUSICAAS_*``): API keys, upload limit in bytes, downstream addresses and deadlines in seconds."""
    grpc_port: int = 50051
    #: Comma-separated API keys of tenant ``default``, accepted in ``authorization: Bearer``
    #: besides the tenants' own keys (``musicaas tenants add``); kept in memory only.
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
    #: Webhooks (:mod:`musicaas_gateway.webhooks`): seconds per delivery attempt, the retry
    #: delay unit (seconds, times the delivery count), deliveries before the dead letter, and
    #: whether plain-http and private or loopback endpoints are allowed (tests, closed networks).
    webhook_timeout_s: float = 10.0
    webhook_retry_delay_s: float = 5.0
    webhook_max_deliver: int = 8
    webhook_allow_private: bool = False


#: Bytes of an upload read before its container is sniffed (an ID3 tag may precede the audio).
SNIFF_BYTES = 1024 * 1024
#: Most liked or disliked track ids in one Recommend request.
MAX_EXAMPLE_IDS = 100
#: Most seed tags in one Recommend request.
MAX_SEED_TAGS = 5
#: Most tags in a filter.
MAX_FILTER_TAGS = 16
#: Most attribute targets or bounds in one request.
MAX_ATTRIBUTES = 16
#: Longest metadata text in a filter (artist, composer, album, genre), in characters.
MAX_METADATA_CHARS = 512
#: Largest example weight.
MAX_WEIGHT = 100.0
#: Most positive-negative pairs in one DiscoverTracks request.
MAX_CONTEXT_PAIRS = 50
#: Most track ids in one GetTracks request.
MAX_BATCH_IDS = 100
#: Largest ListTracks page.
MAX_PAGE_SIZE = 1000
#: Longest GetUsage range after its first day.
MAX_USAGE_DAYS = 92


def _check_generation(request) -> None:
    """Bounds of a generation request's ids and text controls (their meaning is the generator's to check)."""
    if request.generation_id:
        validation.check_generation_id(request.generation_id)
    for name in ("key", "metre", "style"):
        validation.check_text(getattr(request.params, name), field=f"params.{name}", max_chars=validation.MAX_CONTROL_CHARS)


def _check_filter(flt) -> None:
    """Bounds of a recommender filter's text fields (key, tags, artist, composer, album,
    genre) and attribute bounds; raises InvalidArgument naming the field. Their meaning
    (known attribute names, ranges) is the recommender's to check."""
    validation.check_text(flt.key, field="filter.key", max_chars=validation.MAX_CONTROL_CHARS)
    if len(flt.tags) > MAX_FILTER_TAGS:
        raise InvalidArgument(f"filter.tags has {len(flt.tags)} tags, more than {MAX_FILTER_TAGS}")
    for i, tag in enumerate(flt.tags):
        validation.check_tag(tag, field=f"filter.tags[{i}]")
    for name in ("artist", "composer", "album", "genre"):
        validation.check_text(getattr(flt, name), field=f"filter.{name}", max_chars=MAX_METADATA_CHARS)
    _check_attributes(flt.attributes, "filter.attributes")


def _check_attributes(attributes, field: str) -> None:
    """Bounds of attribute targets: at most :data:`MAX_ATTRIBUTES`, short names, finite numbers."""
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidArgument(f"{field} has {len(attributes)} entries, more than {MAX_ATTRIBUTES}")
    for i, attr in enumerate(attributes):
        validation.check_text(attr.name, field=f"{field}[{i}].name", max_chars=validation.MAX_CONTROL_CHARS)
        if not attr.name:
            raise InvalidArgument(f"{field}[{i}].name is empty")
        for part in ("target", "min", "max"):
            if attr.HasField(part) and not math.isfinite(getattr(attr, part)):
                raise InvalidArgument(f"{field}[{i}].{part} must be finite, got {getattr(attr, part)}")


def _check_weight(weight: float, field: str) -> None:
    """A weight is finite, 0 (meaning 1) or in (0, :data:`MAX_WEIGHT`]."""
    if not math.isfinite(weight) or weight < 0 or weight > MAX_WEIGHT:
        raise InvalidArgument(f"{field} must be a finite number in (0, {MAX_WEIGHT:g}] (0 means 1), got {weight}")


def _check_diversity(diversity: float) -> None:
    if not math.isfinite(diversity) or not 0.0 <= diversity <= 1.0:
        raise InvalidArgument(f"diversity must be in [0, 1], got {diversity}")


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    """The public API (``musicaas.gateway.v1.GatewayService``); errors are domain errors mapped by the error interceptor."""
    def __init__(self, bus: Bus, settings: GatewaySettings, *, keys: KeyDirectory, generator_channel,
                 recommender_channel) -> None:
        self.bus = bus
        self.settings = settings
        self.keys = keys
        self.quotas = QuotaGuard(bus)
        self.generator = generator_pb2_grpc.GeneratorServiceStub(generator_channel)
        self.recommender = recommender_pb2_grpc.RecommenderServiceStub(recommender_channel)
        self._uploads = asyncio.Semaphore(settings.max_concurrent_uploads)

    async def UploadTrack(self, request_iterator, context) -> gateway_pb2.UploadTrackResponse:
        tenant = await self.keys.tenant_of(context)
        await self.quotas.check(tenant, self.keys.limits(tenant), UPLOAD_QUOTAS)
        messages = request_iterator.__aiter__()
        first = await self._next_message(messages)
        if first is None or first.WhichOneof("payload") != "metadata":
            raise InvalidArgument("the first message of UploadTrack must carry metadata (filename)")
        meta = first.metadata
        filename = validation.check_filename(meta.filename, field="metadata.filename")
        track_metadata = upload_metadata(meta)  # title, artist, ..., tags (musicaas.metadata's bounds)
        title = track_metadata.title
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
                stream(), tenant=tenant, filename=filename or f"upload.{container.name}", title=title or filename or "",
                content_type=content_type or container.mime_type, source=common_pb2.TRACK_SOURCE_UPLOAD,
                max_buffered_bytes=self.settings.upload_buffer_bytes, metadata=track_metadata,
            )
        log.info("track_uploaded", tenant=tenant, track_id=track.track_id, size_bytes=size, container=container.name,
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

    async def _track(self, tenant: str, track_id: str) -> common_pb2.Track | None:
        """``tenant``'s live track, or None (unknown, deleted, or another tenant's: all alike)."""
        track = await self.bus.get_track(tenant, track_id)
        if track is None or track.state == common_pb2.TRACK_STATE_DELETED:
            return None
        return track

    async def GetTrack(self, request, context) -> gateway_pb2.GetTrackResponse:
        tenant = await self.keys.tenant_of(context)
        validation.check_track_id(request.track_id)
        track = await self._track(tenant, request.track_id)
        if track is None:
            raise NotFound(f"track {request.track_id!r} not found")
        return gateway_pb2.GetTrackResponse(track=track)

    async def GetTracks(self, request, context) -> gateway_pb2.GetTracksResponse:
        tenant = await self.keys.tenant_of(context)
        ids = list(request.track_ids)
        if not 1 <= len(ids) <= MAX_BATCH_IDS:
            raise InvalidArgument(f"track_ids has {len(ids)} ids: send 1 to {MAX_BATCH_IDS}")
        for i, track_id in enumerate(ids):
            validation.check_track_id(track_id, field=f"track_ids[{i}]")
        found = await asyncio.gather(*(self._track(tenant, t) for t in dict.fromkeys(ids)))
        by_id = {t.track_id: t for t in found if t is not None}
        return gateway_pb2.GetTracksResponse(
            tracks=[by_id[t] for t in ids if t in by_id], missing_track_ids=[t for t in ids if t not in by_id],
        )

    async def ListTracks(self, request, context) -> gateway_pb2.ListTracksResponse:
        tenant = await self.keys.tenant_of(context)
        size = request.page_size or 100
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size: {request.page_size} is outside 1-{MAX_PAGE_SIZE}")
        states = tuple(request.states)
        if common_pb2.TRACK_STATE_DELETED in states:
            raise InvalidArgument("states: deleted tracks are not listed")
        tracks, token = await self.bus.list_tracks(
            tenant, states=states, page_size=size, page_token=request.page_token,
            created_from=request.created_from if request.HasField("created_from") else None,
            created_to=request.created_to if request.HasField("created_to") else None,
        )
        if not request.include_analysis:
            for track in tracks:
                track.ClearField("analysis")
        return gateway_pb2.ListTracksResponse(tracks=tracks, next_page_token=token)

    async def DeleteTrack(self, request, context) -> gateway_pb2.DeleteTrackResponse:
        tenant = await self.keys.tenant_of(context)
        validation.check_track_id(request.track_id)
        try:
            await self.bus.delete_track(tenant, request.track_id)
        except NotFound:
            raise NotFound(f"track {request.track_id!r} not found") from None
        log.info("track_deleted", tenant=tenant, track_id=request.track_id)
        return gateway_pb2.DeleteTrackResponse(track_id=request.track_id)

    async def GetUsage(self, request, context) -> gateway_pb2.GetUsageResponse:
        tenant = await self.keys.tenant_of(context)
        try:
            first = dt.date.fromisoformat(request.day_from) if request.day_from else dt.datetime.now(dt.timezone.utc).date()
            last = dt.date.fromisoformat(request.day_to) if request.day_to else first
        except ValueError:
            raise InvalidArgument("day_from / day_to: expected YYYY-MM-DD") from None
        if not 0 <= (last - first).days <= MAX_USAGE_DAYS:
            raise InvalidArgument(f"day_to must be 0 to {MAX_USAGE_DAYS} days after day_from")
        days = []
        for i in range((last - first).days + 1):
            day = (first + dt.timedelta(days=i)).isoformat()
            totals = await self.bus.usage(tenant, day)
            days.append(gateway_pb2.DailyUsage(day=day, **{k: (v if k == "audio_seconds" else int(v))
                                                           for k, v in totals.items()}))
        return gateway_pb2.GetUsageResponse(days=days, limits=self.keys.limits(tenant))

    async def RegisterWebhook(self, request, context) -> gateway_pb2.RegisterWebhookResponse:
        tenant = await self.keys.tenant_of(context)
        hook = webhooks.new_webhook(tenant, request.url, list(request.events),
                                    allow_private=self.settings.webhook_allow_private)
        if len(await self.bus.list_webhooks(tenant)) >= webhooks.MAX_WEBHOOKS_PER_TENANT:
            raise ResourceExhausted(f"at most {webhooks.MAX_WEBHOOKS_PER_TENANT} webhooks per tenant")
        await self.bus.create_webhook(hook)
        log.info("webhook_registered", tenant=tenant, webhook_id=hook.webhook_id, events=list(hook.events))
        return gateway_pb2.RegisterWebhookResponse(webhook=hook)

    async def ListWebhooks(self, request, context) -> gateway_pb2.ListWebhooksResponse:
        tenant = await self.keys.tenant_of(context)
        hooks = await self.bus.list_webhooks(tenant)
        for hook in hooks:
            hook.ClearField("secret")
        return gateway_pb2.ListWebhooksResponse(webhooks=hooks)

    async def DeleteWebhook(self, request, context) -> gateway_pb2.DeleteWebhookResponse:
        tenant = await self.keys.tenant_of(context)
        if not webhooks.WEBHOOK_ID_RE.fullmatch(request.webhook_id):
            raise InvalidArgument("webhook_id: expected whk_ and 24 hex characters")
        try:
            await self.bus.delete_webhook(tenant, request.webhook_id)
        except NotFound:
            raise NotFound(f"webhook {request.webhook_id} not found") from None
        return gateway_pb2.DeleteWebhookResponse(webhook_id=request.webhook_id)

    async def GenerateTrack(self, request, context) -> gateway_pb2.GenerateTrackResponse:
        tenant = await self.keys.tenant_of(context)
        await self.quotas.check(tenant, self.keys.limits(tenant), GENERATION_QUOTAS)
        _check_generation(request)
        try:
            resp = await self.generator.GenerateTrack(
                generator_pb2.GenerateTrackRequest(params=request.params, generation_id=request.generation_id),
                timeout=self.settings.generate_timeout_s, metadata=tenant_metadata(tenant),
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, what="generator.GenerateTrack") from exc
        return gateway_pb2.GenerateTrackResponse(result=resp.result)

    async def GenerateTrackStream(self, request, context):
        tenant = await self.keys.tenant_of(context)
        await self.quotas.check(tenant, self.keys.limits(tenant), GENERATION_QUOTAS)
        _check_generation(request)
        call = self.generator.GenerateTrackStream(
            generator_pb2.GenerateTrackRequest(params=request.params, generation_id=request.generation_id),
            timeout=self.settings.generate_stream_timeout_s, metadata=tenant_metadata(tenant),
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
        tenant = await self.keys.tenant_of(context)
        _check_generation(request)
        await self.quotas.check(tenant, self.keys.limits(tenant), GENERATION_QUOTAS)
        generation_id = request.generation_id or new_id("gen")
        job, created = await self.bus.create_job(generator_pb2.GenerationJob(
            generation_id=generation_id, tenant=tenant, state=generator_pb2.GENERATION_STATE_QUEUED,
            params=request.params,
        ))
        if not created:  # idempotent: the same id was submitted before
            return gateway_pb2.SubmitGenerationResponse(generation_id=generation_id, state=job.state)
        await self.bus.publish(
            busmod.GENERATIONS_REQUESTED,
            events_pb2.GenerationRequested(generation_id=generation_id, tenant=tenant, params=request.params),
            event_id=f"requested:{tenant}:{generation_id}",
        )
        log.info("generation_submitted", tenant=tenant, generation_id=generation_id)
        return gateway_pb2.SubmitGenerationResponse(generation_id=generation_id, state=generator_pb2.GENERATION_STATE_QUEUED)

    async def GetGeneration(self, request, context) -> gateway_pb2.GetGenerationResponse:
        tenant = await self.keys.tenant_of(context)
        validation.check_generation_id(request.generation_id)
        job = await self.bus.get_job(tenant, request.generation_id)
        if job is None:
            raise NotFound(f"generation {request.generation_id!r} not found")
        if request.include_data and job.state == generator_pb2.GENERATION_STATE_COMPLETED:
            for piece in job.pieces:
                piece.midi = await self.bus.get_blob(piece.midi_blob)
                piece.audio_wav = await self.bus.get_blob(piece.audio_blob)
        return gateway_pb2.GetGenerationResponse(generation=job)

    async def _recommender(self, method: str, request, tenant: str):
        """Call ``RecommenderService.<method>`` for ``tenant`` with the recommend deadline;
        downstream failures become domain errors (NOT_FOUND, INVALID_ARGUMENT, UNAVAILABLE, ...)."""
        try:
            return await getattr(self.recommender, method)(
                request, timeout=self.settings.recommend_timeout_s, metadata=tenant_metadata(tenant)
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, what=f"recommender.{method}") from exc

    async def SimilarTracks(self, request, context) -> gateway_pb2.SimilarTracksResponse:
        tenant = await self.keys.tenant_of(context)
        validation.check_track_id(request.track_id)
        _check_filter(request.filter)
        _check_diversity(request.diversity)
        # the gateway's request is the recommender's, field for field (same numbers)
        resp = await self._recommender(
            "SimilarTracks", recommender_pb2.SimilarTracksRequest.FromString(request.SerializeToString()), tenant
        )
        return gateway_pb2.SimilarTracksResponse(tracks=resp.tracks)

    async def Recommend(self, request, context) -> gateway_pb2.RecommendResponse:
        tenant = await self.keys.tenant_of(context)
        count = 0
        for field in ("liked_track_ids", "disliked_track_ids"):
            ids = getattr(request, field)
            count += len(ids)
            for i, track_id in enumerate(ids[:MAX_EXAMPLE_IDS + 1]):
                validation.check_track_id(track_id, field=f"{field}[{i}]")
        for field in ("positive", "negative"):
            examples = getattr(request, field)
            count += len(examples)
            for i, example in enumerate(examples[:MAX_EXAMPLE_IDS + 1]):
                validation.check_track_id(example.track_id, field=f"{field}[{i}].track_id")
                _check_weight(example.weight, f"{field}[{i}].weight")
        if count > MAX_EXAMPLE_IDS:
            raise InvalidArgument(f"{count} example tracks, more than {MAX_EXAMPLE_IDS}")
        if len(request.seed_tags) > MAX_SEED_TAGS:
            raise InvalidArgument(f"seed_tags has {len(request.seed_tags)} tags, more than {MAX_SEED_TAGS}")
        for i, tag in enumerate(request.seed_tags):
            validation.check_tag(tag, field=f"seed_tags[{i}]")
        if request.listener_id:
            validation.check_listener_id(request.listener_id)
        _check_filter(request.filter)
        _check_attributes(request.attributes, "attributes")
        _check_diversity(request.diversity)
        resp = await self._recommender(
            "Recommend", recommender_pb2.RecommendRequest.FromString(request.SerializeToString()), tenant
        )
        return gateway_pb2.RecommendResponse(tracks=resp.tracks)

    async def SearchTracks(self, request, context) -> recommender_pb2.SearchTracksResponse:
        tenant = await self.keys.tenant_of(context)
        validation.check_search_text(request.text)
        _check_filter(request.filter)
        _check_diversity(request.diversity)
        return await self._recommender("SearchTracks", request, tenant)

    async def DiscoverTracks(self, request, context) -> recommender_pb2.DiscoverTracksResponse:
        tenant = await self.keys.tenant_of(context)
        if request.target_track_id:
            validation.check_track_id(request.target_track_id, field="target_track_id")
        if not 1 <= len(request.context) <= MAX_CONTEXT_PAIRS:
            raise InvalidArgument(f"context has {len(request.context)} pairs; give 1 to {MAX_CONTEXT_PAIRS}")
        for i, pair in enumerate(request.context):
            validation.check_track_id(pair.positive_track_id, field=f"context[{i}].positive_track_id")
            validation.check_track_id(pair.negative_track_id, field=f"context[{i}].negative_track_id")
        _check_filter(request.filter)
        return await self._recommender("DiscoverTracks", request, tenant)

    async def RecommendForListener(self, request, context) -> recommender_pb2.RecommendForListenerResponse:
        tenant = await self.keys.tenant_of(context)
        validation.check_listener_id(request.listener_id)
        _check_filter(request.filter)
        _check_attributes(request.attributes, "attributes")
        _check_diversity(request.diversity)
        return await self._recommender("RecommendForListener", request, tenant)

    async def TrainListenerModel(self, request, context) -> recommender_pb2.TrainListenerModelResponse:
        tenant = await self.keys.tenant_of(context)
        try:
            # training takes longer than a query: the generation deadline
            return await self.recommender.TrainListenerModel(
                request, timeout=self.settings.generate_timeout_s, metadata=tenant_metadata(tenant)
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, what="recommender.TrainListenerModel") from exc

    async def RecordInteractions(self, request, context) -> gateway_pb2.RecordInteractionsResponse:
        tenant = await self.keys.tenant_of(context)

        async def track_exists(track_id: str) -> bool:
            track = await self.bus.get_track(tenant, track_id)
            return track is not None and track.state != common_pb2.TRACK_STATE_DELETED

        accepted, rejected = await interactions.check_batch(request.interactions, track_exists=track_exists)
        if not accepted:
            return gateway_pb2.RecordInteractionsResponse(recorded=0, rejected=rejected)
        event = interactions.recorded_event(tenant, accepted)
        await self.bus.publish(busmod.INTERACTIONS_RECORDED, event, event_id=event.batch_id)
        log.info("interactions_recorded", tenant=tenant, recorded=len(accepted), rejected=len(rejected))
        return gateway_pb2.RecordInteractionsResponse(recorded=len(accepted), rejected=rejected, batch_id=event.batch_id)
