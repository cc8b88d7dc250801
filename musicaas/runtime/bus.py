"""NATS JetStream adapter: events, blobs (object store), tracks and generation jobs (KV).

Nothing outside this module touches NATS types: the rest of the platform calls
:class:`Bus` and gets protobuf messages and :mod:`musicaas.runtime.errors` back.

Tenants
-------
Everything is scoped to a tenant (:mod:`musicaas.tenancy`): event subjects are
``music.<tenant>.<kind>`` (the payload's ``tenant`` field must match, or the event is
terminated), KV keys are ``<tenant>.<id>``, object names start with ``<tenant>/``, and a
track id mixes in the tenant's secret salt (:func:`musicaas.tenancy.track_id_from_digest`).
Tenant records (``musicaas.common.v1.Tenant``) live in the ``tenants`` bucket.

Events
------
One stream, ``MUSIC``, on ``music.>``. Payloads are protobuf messages from
``musicaas.events.v1``; headers follow the CloudEvents NATS protocol binding in binary
content mode (``ce-specversion``, ``ce-id``, ``ce-type``, ``ce-source``, ``ce-time``,
``content-type``, and the distributed-tracing extension's ``traceparent`` / ``tracestate``
with the publisher's span), and ``Nats-Msg-Id`` carries a deterministic id so that a
re-published event is dropped by the stream's duplicate window.

Consumers (:meth:`Bus.consume`) are durable pull consumers with explicit acks: ack after
the handler returned (its work is durable), nak with a delay on a transient error,
terminate and call ``on_permanent_failure`` on input that can never succeed
(:class:`~musicaas.runtime.errors.InvalidArgument`, :class:`~musicaas.runtime.errors.NotFound`)
or once the delivery count reaches ``max_deliver``, so no message is redelivered forever.
A message whose worker died on each of ``max_deliver`` deliveries (a poison message that
crashes its worker) is terminated on the next one without running the handler again. Every
terminated message leaves a :class:`~musicaas.events.v1.events_pb2.DeadLetter` record in the
``DEADLETTER`` stream (subject ``deadletter.<durable>``; :meth:`Bus.dead_letters` reads them).
Each delivery runs in a CONSUMER span whose parent is the publisher's span (one upload is
one trace across the services), and is counted per durable (deliveries, acks, naks, terms,
pending messages: :mod:`musicaas.runtime.telemetry`).

Tracks
------
A track id is content-derived within its tenant (:meth:`Bus.track_id_for`), so the same bytes
are one track. :meth:`Bus.add_track` stores the bytes, creates the ``Track`` record (state
``uploaded``) and announces it on ``music.<tenant>.tracks.uploaded``, idempotently (the
gateway's uploads and the generator's pieces alike); the consumers move it on with
:meth:`Bus.update_track`. :meth:`Bus.delete_track` removes the bytes and leaves a ``deleted``
tombstone that no later event can move (state changes only go forward, and ``deleted`` is
last), then announces ``music.<tenant>.tracks.deleted``.

Generation jobs
---------------
One ``musicaas.generator.v1.GenerationJob`` per tenant and generation id in the ``generations`` bucket:
:meth:`Bus.create_job` (the gateway's ``SubmitGeneration``; the same id twice answers the
stored job), :meth:`Bus.get_job`, :meth:`Bus.update_job` (the generator, as the job runs).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime as dt
import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
import structlog
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.generator.v1 import generator_pb2
from musicaas.runtime import telemetry
from musicaas.runtime.errors import AlreadyExists, InvalidArgument, MusicaasError, NotFound, Unavailable
from musicaas.runtime.streams import ChunkPipe, PipeAborted
from musicaas.runtime.tls import TlsFiles, nats_ssl_context
from musicaas.tenancy import check_tenant, track_id_from_digest

log = structlog.get_logger()


class WorkerDied(MusicaasError):
    """A message was delivered ``max_deliver`` times and never settled: its worker died on it."""

    permanent = True

STREAM = "MUSIC"
# Event kinds: a tenant's event of kind K is published on ``music.<tenant>.K``.
TRACKS_UPLOADED = "tracks.uploaded"
TRACKS_ANALYZED = "tracks.analyzed"
TRACKS_FAILED = "tracks.failed"
TRACKS_DELETED = "tracks.deleted"
GENERATIONS_REQUESTED = "generations.requested"
GENERATIONS_COMPLETED = "generations.completed"
GENERATIONS_FAILED = "generations.failed"
INTERACTIONS_RECORDED = "interactions.recorded"


def subject_for(kind: str, tenant: str) -> str:
    """The subject of ``tenant``'s events of ``kind``: ``music.<tenant>.<kind>``.

    Raises
    ------
    InvalidArgument
        When ``tenant`` is not a tenant name.
    """
    return f"music.{check_tenant(tenant)}.{kind}"


def all_tenants(kind: str) -> str:
    """The filter subject of ``kind`` for every tenant: ``music.*.<kind>``."""
    return f"music.*.{kind}"


def tenant_of_subject(subject: str) -> str:
    """The tenant token of an event subject (``music.<tenant>.<kind>``); empty when there is none."""
    parts = subject.split(".")
    return parts[1] if len(parts) >= 4 and parts[0] == "music" else ""


#: CloudEvents ``type`` of each event kind (reverse-DNS, versioned like the proto package).
EVENT_TYPES = {
    TRACKS_UPLOADED: "io.musicaas.tracks.uploaded.v1",
    TRACKS_ANALYZED: "io.musicaas.tracks.analyzed.v1",
    TRACKS_FAILED: "io.musicaas.tracks.failed.v1",
    TRACKS_DELETED: "io.musicaas.tracks.deleted.v1",
    GENERATIONS_REQUESTED: "io.musicaas.generations.requested.v1",
    GENERATIONS_COMPLETED: "io.musicaas.generations.completed.v1",
    GENERATIONS_FAILED: "io.musicaas.generations.failed.v1",
    INTERACTIONS_RECORDED: "io.musicaas.interactions.recorded.v1",
}

BLOB_BUCKET = "blobs"
TRACK_BUCKET = "tracks"
#: Generation jobs (``musicaas.generator.v1.GenerationJob``), written by gateway and generator.
GENERATION_BUCKET = "generations"
#: Tenant records (``musicaas.common.v1.Tenant``), key = tenant name.
TENANT_BUCKET = "tenants"
#: Webhooks (``musicaas.common.v1.Webhook``), key = ``<tenant>.<webhook_id>``.
WEBHOOK_BUCKET = "webhooks"
#: Markers of webhook deliveries done (key ``<tenant>.<webhook_id>.<event digest>``), kept 7 days.
WEBHOOK_DELIVERY_BUCKET = "webhook-deliveries"
WEBHOOK_DELIVERY_TTL_S = 7 * 24 * 3600.0
#: Usage records (``musicaas.common.v1.UsageRecord``), key = ``<tenant>.<YYYYMMDD>.<kind>.<item>``.
USAGE_BUCKET = "usage"
#: Usage fields summed per day (``UsageRecord`` and ``gateway.v1.DailyUsage`` share these names).
USAGE_FIELDS = ("audio_seconds", "tracks_stored", "storage_bytes", "generations", "pieces_generated",
                "tokens_generated")
DUPLICATE_WINDOW_S = 120.0
#: How long closing waits for the server to confirm what was written (acks, publishes), seconds.
CLOSE_FLUSH_TIMEOUT_S = 5.0
#: Dead-letter records (:class:`events_pb2.DeadLetter`), one subject per durable consumer.
DEAD_LETTER_STREAM = "DEADLETTER"
DEAD_LETTER_SUBJECTS = "deadletter.>"
#: Records are kept 30 days, at most 100 000 of them (the oldest go first).
DEAD_LETTER_MAX_AGE_S = 30 * 24 * 3600.0
DEAD_LETTER_MAX_MSGS = 100_000
MAX_DEAD_LETTER_REASON_CHARS = 1000

M = TypeVar("M", bound=Message)
_DURABLE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Ids that may follow the tenant in a KV key (track and generation ids).
_KV_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: What a NATS call raises when the server does not answer or refuses.
_NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error, asyncio.TimeoutError)

_STATE_ORDER = {
    common_pb2.TRACK_STATE_UNSPECIFIED: 0,
    common_pb2.TRACK_STATE_UPLOADED: 1,
    common_pb2.TRACK_STATE_ANALYZED: 2,
    common_pb2.TRACK_STATE_INDEXED: 3,
    common_pb2.TRACK_STATE_FAILED: 3,
    common_pb2.TRACK_STATE_DELETED: 9,
}


def advance_state(current: int, new: int) -> int:
    """Track states only move forward (UPLOADED -> ANALYZED -> INDEXED, or FAILED; DELETED is
    last: nothing moves a deleted track)."""
    if current == common_pb2.TRACK_STATE_DELETED:
        return current
    return new if _STATE_ORDER[new] >= _STATE_ORDER[current] else current


def _key(tenant: str, item_id: str) -> str:
    """The KV key of ``tenant``'s item ``item_id``: ``<tenant>.<id>``.

    Raises
    ------
    InvalidArgument
        When either is not a valid name or id (never a wildcard, a dot or a path).
    """
    if not isinstance(item_id, str) or not _KV_ID_RE.fullmatch(item_id):
        raise InvalidArgument("id: 1-128 characters of A-Z, a-z, 0-9, '_' and '-'")
    return f"{check_tenant(tenant)}.{item_id}"


def now_ts() -> Timestamp:
    """The current UTC time as a protobuf ``Timestamp``."""
    ts = Timestamp()
    ts.FromDatetime(dt.datetime.now(dt.timezone.utc))
    return ts


def cloudevent_headers(subject: str, *, event_id: str, source: str) -> dict[str, str]:
    """CloudEvents binary-mode headers for a protobuf event on ``subject``.

    ``Nats-Msg-Id`` equals ``ce-id`` so JetStream drops a re-published duplicate.
    """
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": EVENT_TYPES[subject],
        "ce-source": source,
        "ce-time": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
        "content-type": "application/protobuf",
        "Nats-Msg-Id": event_id,
    }


class Bus:
    """Connection to NATS JetStream with the platform's stream, KV buckets (tracks, generation
    jobs) and object store.

    Use as an async context manager; closing flushes and closes the connection.

    Parameters
    ----------
    url : str
        NATS URL(s), comma-separated.
    name : str
        Client name (the service), also the CloudEvents ``source``.
    replicas : int
        Replicas of the stream, KV bucket and object store when this client creates them.
    connect_timeout_s : float, seconds
        Total time to keep trying to reach NATS at start-up.
    nkey_seed_file : str, optional
        Path of a NATS user nkey seed: the credentials for a server with authentication on.
    tls : TlsFiles, optional
        With a CA file, the connection uses TLS and verifies the server (and presents this
        service's certificate when it has one).
    """

    def __init__(self, url: str, *, name: str, replicas: int = 1, connect_timeout_s: float = 30.0,
                 nkey_seed_file: str | None = None, tls: TlsFiles | None = None) -> None:
        self.url = url
        self.nkey_seed_file = nkey_seed_file or None
        self.tls = tls
        self.name = name
        self.replicas = replicas
        self.connect_timeout_s = connect_timeout_s
        self.nc: nats.NATS | None = None
        self.js = None
        self._tracks = None
        self._jobs = None
        self._tenants = None
        self._usage = None
        self._webhooks = None
        self._deliveries = None
        self._blobs = None
        self._salts: dict[str, bytes] = {}
        self._connected = asyncio.Event()
        self._closing = False
        self._reconnect: asyncio.Task | None = None

    @classmethod
    def from_settings(cls, settings, *, name: str) -> "Bus":
        """A bus configured from a :class:`~musicaas.runtime.settings.ServiceSettings`."""
        return cls(
            settings.nats_url, name=name, replicas=settings.stream_replicas,
            connect_timeout_s=settings.nats_connect_timeout_s, nkey_seed_file=settings.nats_nkey_seed_file,
            tls=TlsFiles.from_settings(settings),
        )

    async def __aenter__(self) -> "Bus":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect, retrying until ``connect_timeout_s``; create the stream, KV and object store.

        Raises
        ------
        Unavailable
            When NATS cannot be reached in time.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout_s
        while True:
            remaining = deadline - loop.time()
            try:
                self.nc = await asyncio.wait_for(self._connect_once(), timeout=max(0.5, min(5.0, remaining)))
                break
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                if loop.time() >= deadline:
                    raise Unavailable(f"NATS at {self.url} is unavailable: {exc or type(exc).__name__}") from exc
                await asyncio.sleep(0.5)
        self.js = self.nc.jetstream(timeout=10)
        await self._ensure_resources()
        self._connected.set()
        log.info("nats_connected", url=self.url)

    @property
    def is_connected(self) -> bool:
        """True while the NATS connection is up (health checks use it)."""
        return self.nc is not None and self.nc.is_connected and self._connected.is_set()

    async def _connect_once(self) -> nats.NATS:
        nc = nats.NATS()
        await nc.connect(
            servers=[u.strip() for u in self.url.split(",")],
            name=self.name,
            connect_timeout=2,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            allow_reconnect=True,
            closed_cb=self._on_closed,
            **({"nkeys_seed": self.nkey_seed_file} if self.nkey_seed_file else {}),
            **({"tls": context} if (context := nats_ssl_context(self.tls) if self.tls else None) else {}),
        )
        return nc

    async def _on_closed(self) -> None:
        """nats-py gave up on a connection (e.g. the server closed it over a protocol error):
        unless we are closing, open a new one, so that one bad request cannot take a service
        off NATS for good."""
        self._connected.clear()
        if self._closing or (self._reconnect is not None and not self._reconnect.done()):
            return
        log.warning("nats_connection_closed", error=str(self.nc.last_error) if self.nc else None)
        self._reconnect = asyncio.get_running_loop().create_task(self._reopen())

    async def _reopen(self) -> None:
        delay = 0.5
        while not self._closing:
            try:
                await self.connect()
                log.info("nats_reconnected", url=self.url)
                return
            except Unavailable as exc:
                log.warning("nats_reconnect_failed", error=exc.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        """Wait until the connection is (re)established.

        Raises
        ------
        Unavailable
            When it is not within ``timeout_s`` seconds.
        """
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        except asyncio.TimeoutError as exc:
            raise Unavailable(f"NATS at {self.url} is unavailable") from exc

    async def _ensure_resources(self) -> None:
        config = StreamConfig(
            name=STREAM,
            subjects=["music.>"],
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=DUPLICATE_WINDOW_S,
        )
        dead_letters = StreamConfig(
            name=DEAD_LETTER_STREAM,
            subjects=[DEAD_LETTER_SUBJECTS],
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=DUPLICATE_WINDOW_S,
            max_age=DEAD_LETTER_MAX_AGE_S,
            max_msgs=DEAD_LETTER_MAX_MSGS,
        )
        for stream in (config, dead_letters):
            try:
                await self.js.add_stream(stream)
            except nats.js.errors.BadRequestError:
                await self.js.update_stream(stream)
        self._tracks = await self._bucket(self.js.key_value, self.js.create_key_value, TRACK_BUCKET, history=5)
        self._jobs = await self._bucket(self.js.key_value, self.js.create_key_value, GENERATION_BUCKET, history=5)
        self._tenants = await self._bucket(self.js.key_value, self.js.create_key_value, TENANT_BUCKET, history=5)
        self._usage = await self._bucket(self.js.key_value, self.js.create_key_value, USAGE_BUCKET, history=1)
        self._webhooks = await self._bucket(self.js.key_value, self.js.create_key_value, WEBHOOK_BUCKET, history=1)
        self._deliveries = await self._bucket(self.js.key_value, self.js.create_key_value, WEBHOOK_DELIVERY_BUCKET,
                                              history=1, ttl=WEBHOOK_DELIVERY_TTL_S)
        self._blobs = await self._bucket(self.js.object_store, self.js.create_object_store, BLOB_BUCKET)

    async def _bucket(self, open_, create, name: str, **config):
        """Open the KV bucket or object store ``name``, creating it when missing (also when
        another service creates it at the same moment)."""
        missing = (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError)
        try:
            return await open_(name)
        except missing:
            try:
                return await create(bucket=name, replicas=self.replicas, **config)
            except nats.js.errors.BadRequestError:
                return await open_(name)

    async def close(self) -> None:
        """Flush and close the NATS connection: pending acks and publishes reach the server
        (a PING/PONG round trip, at most :data:`CLOSE_FLUSH_TIMEOUT_S`), then it closes.

        Not ``drain()``: a drain waits until every subscription's queued messages are
        handled, and the consumers are already stopped when this runs, so the reply that
        answers a pull consumer's last fetch was never taken off its queue and every drain
        ran into its timeout (5 s at each service's shutdown). A message fetched but not
        acknowledged is redelivered after its ack wait, as after a crash."""
        self._closing = True
        if self._reconnect is not None and not self._reconnect.done():
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reconnect
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.flush(timeout=CLOSE_FLUSH_TIMEOUT_S)
            with contextlib.suppress(Exception):
                await self.nc.close()
        self.nc = None

    # -- events ---------------------------------------------------------------------------

    async def publish(self, kind: str, event: Message, *, event_id: str) -> None:
        """Publish a protobuf event of ``kind`` (e.g. :data:`TRACKS_ANALYZED`) on
        ``music.<event.tenant>.<kind>``, with CloudEvents headers; ``event_id`` must be
        deterministic (and include the tenant).

        Raises
        ------
        InvalidArgument
            When ``event.tenant`` is not a tenant name.
        Unavailable
            When JetStream does not acknowledge the event.
        """
        subject = subject_for(kind, event.tenant)
        headers = cloudevent_headers(kind, event_id=event_id, source=f"/musicaas/{self.name}")
        # a PRODUCER span; its context goes out as the event's traceparent / tracestate
        with telemetry.publish_span(subject, headers, event_id=event_id, template=all_tenants(kind)) as span:
            try:
                # no expected-stream header: the event also lands in partners' own streams
                # (their accounts import music.<tenant>.*), which would refuse a message that
                # names the MUSIC stream
                ack = await self.js.publish(subject, event.SerializeToString(), headers=headers)
            except _NATS_ERRORS as exc:
                telemetry.mark_span_error(span, f"not published: {exc}")
                raise Unavailable(f"could not publish {subject}: {exc}") from exc
            span.set_attribute("messaging.nats.duplicate", bool(ack.duplicate))
        log.debug("event_published", subject=subject, event_id=event_id, duplicate=ack.duplicate)

    async def consume(
        self,
        *,
        durable: str,
        subject: str,
        message_type: type[M],
        handler: Callable[[M, dict[str, str]], Awaitable[None]],
        on_permanent_failure: Callable[[M | None, MusicaasError, dict[str, str]], Awaitable[None]] | None = None,
        max_deliver: int = 5,
        nak_delay_s: float = 2.0,
        max_nak_delay_s: float = 60.0,
        ack_wait_s: float = 15.0,
        fetch_timeout_s: float = 1.0,
        ready: asyncio.Event | None = None,
        ack_sync: bool = False,
    ) -> None:
        """Run a durable pull consumer until cancelled.

        Parameters
        ----------
        durable : str
            Durable consumer name (one per service and subject).
        subject : str
            Event kind (e.g. :data:`TRACKS_UPLOADED`); the consumer takes it for every tenant
            (filter ``music.*.<kind>``), and terminates an event whose payload's ``tenant``
            differs from its subject's.
        message_type : protobuf message class
            The event payload type.
        handler : async (event, headers) -> None
            Does the work and makes it durable; raising :class:`InvalidArgument` or
            :class:`NotFound` marks the input as permanently bad.
        on_permanent_failure : async (event or None, error, headers) -> None
            Called once before a message is terminated (publish ``music.tracks.failed``).
        max_deliver : int
            Deliveries after which a still-failing message is terminated. JetStream is told
            ``max_deliver + 1``: the extra delivery is where a message whose worker died on
            every earlier one is terminated (and dead-lettered) instead of silently dropped.
        nak_delay_s : float, seconds
            Redelivery delay after a transient error (multiplied by the delivery count).
        max_nak_delay_s : float, seconds
            The longest redelivery delay (the linear backoff stops growing there).
        ack_wait_s : float > 0, seconds
            JetStream's ack wait. While the handler runs, the message is reported in progress
            every ``ack_wait_s / 3`` seconds (``+WPI``), so long work is never redelivered
            while its worker lives, and a message whose worker died is redelivered within
            ``ack_wait_s``.
        ack_sync : bool
            Double ack: wait for the server to confirm the ack (``ack_sync``), for work that
            is expensive to redo; a lost confirmation naks nothing (the work is done and
            idempotent) but is logged.
        """
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=all_tenants(subject),
            ack_wait=ack_wait_s,
            max_deliver=max_deliver + 1,
        )
        subject = all_tenants(subject)
        sub = await self.js.pull_subscribe(subject, durable=durable, stream=STREAM, config=config)
        if ready is not None:
            ready.set()
        clog = log.bind(consumer=durable, subject=subject)
        while True:
            try:
                msgs = await sub.fetch(batch=1, timeout=fetch_timeout_s)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                telemetry.CONSUMER_PENDING.labels(durable).set(0)  # nothing left to deliver
                continue
            except nats.errors.ConnectionClosedError:
                if self._closing:
                    return
                # the connection was closed under us: wait for the new one and subscribe again
                clog.warning("consumer_resubscribing")
                await self._connected.wait()
                sub = await self.js.pull_subscribe(subject, durable=durable, stream=STREAM, config=config)
                continue
            except Exception as exc:  # noqa: BLE001 - NATS hiccup; keep consuming
                clog.warning("fetch_failed", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            for msg in msgs:
                await self._handle(msg, clog, durable, subject, message_type, handler, on_permanent_failure,
                                   max_deliver, nak_delay_s, ack_wait_s / 3.0, ack_sync, max_nak_delay_s)

    async def _handle(self, msg, clog, durable, subject, message_type, handler, on_permanent_failure, max_deliver,
                      nak_delay_s, heartbeat_s: float = 5.0, ack_sync: bool = False,
                      max_nak_delay_s: float = 60.0) -> None:
        """One delivery, in a CONSUMER span that continues the publisher's trace; counted
        (delivery, then ack, nak or term) in :mod:`musicaas.runtime.telemetry`'s metrics."""
        headers = dict(msg.headers or {})
        deliveries = msg.metadata.num_delivered if msg.metadata else 1
        telemetry.CONSUMER_DELIVERIES.labels(durable).inc()
        if msg.metadata is not None and msg.metadata.num_pending is not None:
            telemetry.CONSUMER_PENDING.labels(durable).set(msg.metadata.num_pending)
        with telemetry.CONSUMER_HANDLING_SECONDS.labels(durable).time(), \
                telemetry.consume_span(msg.subject, headers, durable=durable, deliveries=deliveries,
                                       template=subject) as span:
            try:
                outcome = await self._settle(msg, clog, durable, headers, deliveries, message_type, handler,
                                             on_permanent_failure, max_deliver, nak_delay_s, heartbeat_s, ack_sync,
                                             max_nak_delay_s)
            except asyncio.CancelledError:
                telemetry.CONSUMER_NAKS.labels(durable).inc()  # naked on the way out (shutdown)
                raise
            {"ack": telemetry.CONSUMER_ACKS, "nak": telemetry.CONSUMER_NAKS,
             "term": telemetry.CONSUMER_TERMS}[outcome].labels(durable).inc()
            span.set_attribute("messaging.nats.outcome", outcome)
            if outcome != "ack":
                telemetry.mark_span_error(span, outcome)

    async def _settle(self, msg, clog, durable, headers, deliveries, message_type, handler, on_permanent_failure,
                      max_deliver, nak_delay_s, heartbeat_s: float = 5.0, ack_sync: bool = False,
                      max_nak_delay_s: float = 60.0) -> str:
        """Run the handler and ack, nak or term the message; returns which."""
        event = None
        try:
            try:
                decoded = message_type.FromString(msg.data)
            except DecodeError as exc:
                raise InvalidArgument(f"event payload is not a valid {message_type.DESCRIPTOR.full_name}") from exc
            if getattr(decoded, "tenant", None) != tenant_of_subject(msg.subject):
                # not reported as the payload's tenant's failure either: only dead-lettered
                raise InvalidArgument("the event's tenant is not its subject's")
            event = decoded
            if deliveries > max_deliver:
                # every earlier delivery ended without a settlement: its worker died on it
                raise WorkerDied(f"no worker survived this event: it was delivered {deliveries - 1} times "
                                 f"and never settled")
            await _with_heartbeat(msg, handler(event, headers), heartbeat_s, clog)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except Exception as exc:  # noqa: BLE001 - every outcome is acked, naked or termed
            error = exc if isinstance(exc, MusicaasError) else None
            permanent = error is not None and error.permanent
            if permanent or deliveries >= max_deliver:
                if error is None:
                    clog.error("event_failed_unexpectedly", deliveries=deliveries, exc_info=exc)
                    error = MusicaasError(f"gave up after {deliveries} deliveries: {type(exc).__name__}")
                clog.warning("event_terminated", ce_id=headers.get("ce-id"), error=error.message, deliveries=deliveries)
                try:
                    if on_permanent_failure is not None:
                        await on_permanent_failure(event, error, headers)
                    await self._dead_letter(msg, durable, headers, deliveries, error)
                except Exception as fexc:  # noqa: BLE001 - retry the whole message later
                    clog.error("failure_report_failed", exc_info=fexc)
                    await msg.nak(delay=nak_delay_s)
                    return "nak"
                await msg.term()
                return "term"
            clog.warning("event_retry", ce_id=headers.get("ce-id"), error=str(exc), deliveries=deliveries)
            await msg.nak(delay=min(nak_delay_s * deliveries, max_nak_delay_s))
            return "nak"
        if ack_sync:
            try:
                await msg.ack_sync(timeout=5.0)
            except _NATS_ERRORS as exc:  # the work is durable and idempotent: a redelivery is harmless
                clog.warning("ack_not_confirmed", ce_id=headers.get("ce-id"), error=str(exc))
        else:
            await msg.ack()
        return "ack"

    async def _dead_letter(self, msg, durable: str, headers: dict[str, str], deliveries: int,
                           error: MusicaasError) -> None:
        """Record a message about to be terminated in the ``DEADLETTER`` stream (idempotent:
        one record per durable and stream sequence, whatever the number of attempts)."""
        sequence = msg.metadata.sequence.stream if msg.metadata is not None else 0
        reason = error.message[:MAX_DEAD_LETTER_REASON_CHARS]
        record = events_pb2.DeadLetter(
            durable=durable, subject=msg.subject, stream_sequence=sequence, deliveries=deliveries,
            code=error.code.name, reason=reason, ce_id=headers.get("ce-id", ""),
            ce_type=headers.get("ce-type", ""), data=msg.data, terminated_at=now_ts(),
        )
        # the headers make `nats stream view DEADLETTER` readable without decoding the record;
        # reasons are the platform's own messages (callers' text is quoted short by validation)
        record_headers = {
            "Nats-Msg-Id": f"dl:{durable}:{sequence}",
            "musicaas-dl-durable": durable,
            "musicaas-dl-subject": msg.subject,
            "musicaas-dl-sequence": str(sequence),
            "musicaas-dl-code": error.code.name,
            "musicaas-dl-reason": " ".join(reason.split())[:200],
        }
        try:
            await self.js.publish(f"deadletter.{durable}", record.SerializeToString(), headers=record_headers,
                                  stream=DEAD_LETTER_STREAM)
        except _NATS_ERRORS as exc:
            raise Unavailable(f"could not record the dead letter: {exc}") from exc
        telemetry.CONSUMER_DEAD_LETTERS.labels(durable).inc()

    async def dead_letters(self, durable: str | None = None, *, limit: int = 1000) -> list[events_pb2.DeadLetter]:
        """The dead-letter records kept (oldest first), of one durable consumer or of all.

        Parameters
        ----------
        durable : str, optional
            A durable consumer's name (e.g. ``"analyzer-tracks-uploaded"``); all when omitted.
        limit : int
            At most this many records.

        Raises
        ------
        InvalidArgument
            ``durable`` is not a consumer name (letters, digits, ``-`` and ``_``).
        Unavailable
            When NATS does not answer.
        """
        if durable is not None and not _DURABLE_RE.fullmatch(durable):
            raise InvalidArgument("durable: not a consumer name")
        subject = f"deadletter.{durable}" if durable else DEAD_LETTER_SUBJECTS
        out: list[events_pb2.DeadLetter] = []
        try:
            # an ephemeral pull consumer from the start of the stream, removed afterwards
            sub = await self.js.pull_subscribe(subject, stream=DEAD_LETTER_STREAM,
                                               config=ConsumerConfig(ack_policy=AckPolicy.NONE,
                                                                     deliver_policy=DeliverPolicy.ALL))
            try:
                while len(out) < limit:
                    try:
                        batch = await sub.fetch(batch=min(100, limit - len(out)), timeout=0.5)
                    except (nats.errors.TimeoutError, asyncio.TimeoutError):
                        break  # nothing more stored
                    out += [events_pb2.DeadLetter.FromString(m.data) for m in batch]
            finally:
                await sub.unsubscribe()
        except _NATS_ERRORS as exc:
            raise Unavailable(f"could not read the dead letters: {exc}") from exc
        return out

    async def replay(
        self,
        kind: str,
        message_type: type[M],
        handler: Callable[[M, dict[str, str]], Awaitable[None]],
        *,
        batch: int = 256,
    ) -> int:
        """Hand every stored event of ``kind`` (every tenant's, oldest first) to ``handler``,
        up to the last one stored when the call starts: how a service rebuilds a view (the
        recommender's listener store on a new volume) from the ``MUSIC`` stream, which keeps
        every event. An ephemeral pull consumer without acks reads them; the durable
        consumers are not touched, so ``handler`` must be idempotent (the durable one
        delivers the newest events again).

        Parameters
        ----------
        kind : str
            Event kind (:data:`INTERACTIONS_RECORDED`, ...).
        message_type : protobuf message class
        handler : async callable (event, headers) -> None
            Its errors propagate (the replay stops; call it again to start over).
        batch : int
            Messages per fetch.

        Returns
        -------
        int
            Events handed over. A payload that does not parse, or whose tenant is not its
            subject's, is skipped (the durable consumer dead-letters it).

        Raises
        ------
        Unavailable
            When NATS does not answer.
        """
        subject = all_tenants(kind)
        try:
            info = await self.js.stream_info(STREAM, subjects_filter=subject)
            last = info.state.last_seq
            if not info.state.subjects:
                return 0
            sub = await self.js.pull_subscribe(subject, stream=STREAM, config=ConsumerConfig(
                ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=60.0))
        except _NATS_ERRORS as exc:
            raise Unavailable(f"could not replay {subject}: {exc}") from exc
        handed = 0
        try:
            while True:
                try:
                    msgs = await sub.fetch(batch=batch, timeout=1.0)
                except (nats.errors.TimeoutError, asyncio.TimeoutError):
                    break  # nothing more stored
                except _NATS_ERRORS as exc:
                    raise Unavailable(f"could not replay {subject}: {exc}") from exc
                done = False
                for msg in msgs:
                    if msg.metadata.sequence.stream > last:
                        done = True
                        break
                    try:
                        event = message_type.FromString(msg.data)
                    except DecodeError:
                        continue
                    if getattr(event, "tenant", None) != tenant_of_subject(msg.subject):
                        continue  # as consume(): not the subject's tenant's
                    await handler(event, dict(msg.headers or {}))
                    handed += 1
                if done:
                    break
        finally:
            with contextlib.suppress(*_NATS_ERRORS):
                await sub.unsubscribe()
        return handed

    # -- blobs ----------------------------------------------------------------------------

    async def put_blob(self, name: str, data: bytes, *, content_type: str) -> common_pb2.BlobRef:
        """Store bytes in the object store under ``name``; returns its reference."""
        try:
            await self._blobs.put(name, data)
        except _NATS_ERRORS as exc:
            raise Unavailable(f"could not store blob {name}: {exc}") from exc
        return common_pb2.BlobRef(bucket=BLOB_BUCKET, name=name, size_bytes=len(data), content_type=content_type)

    async def put_blob_stream(
        self, name: str, chunks: AsyncIterator[bytes], *, content_type: str,
        max_buffered_bytes: int = 4 * 1024 * 1024,
    ) -> tuple[common_pb2.BlobRef, str]:
        """Store a stream of chunks under ``name`` as they arrive; at most ``max_buffered_bytes``
        wait in memory (:class:`~musicaas.runtime.streams.ChunkPipe`).

        Returns
        -------
        (common_pb2.BlobRef, str)
            The reference and the SHA-256 of the bytes, as 64 hex characters.

        Raises
        ------
        Unavailable
            When NATS does not take the object. Whatever ``chunks`` raises (the caller's
            own errors, cancellation) propagates; in every failure the chunks already stored
            are purged, so no partial object is left.
        """
        pipe = ChunkPipe(max_buffered_bytes=max_buffered_bytes)
        put = asyncio.create_task(self._blobs.put(name, pipe))
        put.add_done_callback(lambda task: pipe.abort() if task.cancelled() or task.exception() else None)
        digest, size = hashlib.sha256(), 0
        try:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                await pipe.write(chunk)
            pipe.close()
            await put
        except PipeAborted:
            # the store failed while we were writing: report its error
            try:
                await put
            except _NATS_ERRORS as exc:
                raise Unavailable(f"could not store blob {name}: {exc}") from exc
            raise
        except _NATS_ERRORS as exc:
            raise Unavailable(f"could not store blob {name}: {exc}") from exc
        except BaseException:
            pipe.abort()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(put), 10)
            raise
        return common_pb2.BlobRef(bucket=BLOB_BUCKET, name=name, size_bytes=size, content_type=content_type), \
            digest.hexdigest()

    async def delete_blob(self, ref: common_pb2.BlobRef) -> None:
        """Delete a blob; a blob that is already gone is no error.

        Raises
        ------
        Unavailable
            When NATS does not answer.
        """
        try:
            await self._blobs.delete(ref.name)
        except (nats.js.errors.ObjectNotFoundError, nats.js.errors.NotFoundError):
            return
        except _NATS_ERRORS as exc:
            raise Unavailable(f"could not delete blob {ref.name}: {exc}") from exc

    async def get_blob_to_file(self, ref: common_pb2.BlobRef, file) -> int:
        """Write a blob into a binary file object, chunk by chunk (memory stays bounded
        whatever the blob's size); returns the number of bytes written.

        Raises
        ------
        NotFound
            When the blob does not exist.
        Unavailable
            When NATS does not answer.
        """
        try:
            await self._blobs.get(ref.name, writeinto=file)
        except (nats.js.errors.ObjectNotFoundError, nats.js.errors.NotFoundError) as exc:
            raise NotFound(f"blob {ref.name!r} not found") from exc
        except _NATS_ERRORS as exc:
            raise Unavailable(f"could not read blob {ref.name}: {exc}") from exc
        file.flush()
        return file.tell()

    async def get_blob(self, ref: common_pb2.BlobRef) -> bytes:
        """Read a blob. Raises :class:`NotFound` when it does not exist."""
        try:
            result = await self._blobs.get(ref.name)
        except (nats.js.errors.ObjectNotFoundError, nats.js.errors.NotFoundError) as exc:
            raise NotFound(f"blob {ref.name!r} not found") from exc
        except _NATS_ERRORS as exc:
            raise Unavailable(f"could not read blob {ref.name}: {exc}") from exc
        return result.data

    # -- tenants ----------------------------------------------------------------------------

    async def create_tenant(self, tenant: common_pb2.Tenant) -> bool:
        """Store a new tenant record; False (nothing written) when the name exists.

        Raises
        ------
        InvalidArgument
            When ``tenant.name`` is not a tenant name, or ``id_salt`` is empty.
        Unavailable
            When NATS does not answer.
        """
        check_tenant(tenant.name)
        if not tenant.id_salt:
            raise InvalidArgument("tenant id_salt is empty")
        tenant = _copy(tenant)
        now = now_ts()
        tenant.created_at.CopyFrom(now)
        tenant.updated_at.CopyFrom(now)
        return await _create_message(self._tenants, tenant.name, tenant)

    async def get_tenant(self, name: str) -> common_pb2.Tenant | None:
        """The tenant record ``name``, or None."""
        return await _get_message(self._tenants, check_tenant(name), common_pb2.Tenant)

    async def update_tenant(self, name: str, change: Callable[[common_pb2.Tenant], None]) -> common_pb2.Tenant:
        """Apply ``change`` to a stored tenant (optimistic concurrency).

        Raises
        ------
        NotFound
            When there is no such tenant.
        """
        return await _update_message(self._tenants, check_tenant(name), common_pb2.Tenant, change,
                                     create_if_missing=False, what="tenant")

    async def list_tenants(self) -> list[common_pb2.Tenant]:
        """Every tenant record, by name.

        Raises
        ------
        Unavailable
            When NATS does not answer.
        """
        out = []
        for name in await _keys(self.js, TENANT_BUCKET):
            tenant = await _get_message(self._tenants, name, common_pb2.Tenant)
            if tenant is not None:
                out.append(tenant)
        return sorted(out, key=lambda t: t.name)

    async def track_id_for(self, tenant: str, sha256_hex: str) -> str:
        """``tenant``'s track id for content with SHA-256 ``sha256_hex`` (its salt is cached).

        Raises
        ------
        NotFound
            When the tenant does not exist.
        """
        salt = self._salts.get(tenant)
        if salt is None:
            record = await self.get_tenant(tenant)
            if record is None:
                raise NotFound("tenant not found")
            salt = self._salts[tenant] = record.id_salt
        return track_id_from_digest(salt, sha256_hex)

    # -- usage ------------------------------------------------------------------------------

    async def record_usage(self, tenant: str, kind: str, item_id: str, **amounts) -> bool:
        """Record the usage of one piece of work, once: a second record of the same ``kind`` and
        ``item_id`` (a redelivered event, a retried job) writes nothing and returns False.

        Parameters
        ----------
        tenant : str
        kind : str
            ``stored``, ``analysed`` or ``generated`` (letters only).
        item_id : str
            What the work was on (track id and creation time, generation id, ...; the KV id
            alphabet).
        **amounts
            :data:`USAGE_FIELDS` values (audio_seconds in seconds, storage_bytes in bytes, counts).

        Raises
        ------
        InvalidArgument
            A malformed tenant, kind, id or field.
        Unavailable
            When NATS does not answer.
        """
        if not kind.isalpha() or not _KV_ID_RE.fullmatch(item_id):
            raise InvalidArgument("usage kind or item id is malformed")
        now = now_ts()
        day = now.ToDatetime().strftime("%Y-%m-%d")
        record = common_pb2.UsageRecord(tenant=check_tenant(tenant), day=day, recorded_at=now, **amounts)
        return await _create_message(self._usage, f"{tenant}.{day.replace('-', '')}.{kind}.{item_id}", record)

    async def usage(self, tenant: str, day: str) -> dict[str, float]:
        """``tenant``'s usage on UTC ``day`` (``YYYY-MM-DD``): each of :data:`USAGE_FIELDS` summed
        over the day's records.

        Raises
        ------
        InvalidArgument
            When ``day`` is not a date.
        Unavailable
            When NATS does not answer.
        """
        try:
            stamp = dt.date.fromisoformat(day).strftime("%Y%m%d")
        except (TypeError, ValueError):
            raise InvalidArgument("day: expected YYYY-MM-DD") from None
        totals = {name: 0.0 for name in USAGE_FIELDS}
        keys = await _keys(self.js, USAGE_BUCKET, f"{check_tenant(tenant)}.{stamp}.>")
        records = await asyncio.gather(*(_get_message(self._usage, k, common_pb2.UsageRecord) for k in keys))
        for record in records:
            if record is not None:
                for name in USAGE_FIELDS:
                    totals[name] += getattr(record, name)
        return totals

    # -- webhooks ---------------------------------------------------------------------------

    async def create_webhook(self, webhook: common_pb2.Webhook) -> None:
        """Store a new webhook of ``webhook.tenant`` (``created_at`` set now).

        Raises
        ------
        InvalidArgument
            A malformed tenant or id.
        AlreadyExists
            When the id exists.
        """
        webhook = _copy(webhook)
        webhook.created_at.CopyFrom(now_ts())
        if not await _create_message(self._webhooks, _key(webhook.tenant, webhook.webhook_id), webhook):
            raise AlreadyExists("webhook exists")

    async def list_webhooks(self, tenant: str) -> list[common_pb2.Webhook]:
        """``tenant``'s webhooks (with their secrets), by id."""
        out = []
        for key in sorted(await _keys(self.js, WEBHOOK_BUCKET, f"{check_tenant(tenant)}.*")):
            hook = await _get_message(self._webhooks, key, common_pb2.Webhook)
            if hook is not None:
                out.append(hook)
        return out

    async def delete_webhook(self, tenant: str, webhook_id: str) -> None:
        """Remove ``tenant``'s webhook.

        Raises
        ------
        NotFound
            When the tenant has no such webhook.
        """
        key = _key(tenant, webhook_id)
        if await _get_message(self._webhooks, key, common_pb2.Webhook) is None:
            raise NotFound("webhook not found")
        try:
            await self._webhooks.delete(key)
        except _NATS_ERRORS as exc:
            raise Unavailable(f"could not delete the webhook: {exc}") from exc

    async def webhook_delivered(self, tenant: str, webhook_id: str, event_id: str) -> bool:
        """Whether the event with CloudEvents id ``event_id`` was delivered to the webhook."""
        return await _get_message(self._deliveries, _delivery_key(tenant, webhook_id, event_id),
                                  Timestamp) is not None

    async def mark_webhook_delivered(self, tenant: str, webhook_id: str, event_id: str) -> None:
        """Remember that the event was delivered to the webhook (kept 7 days), so that a
        redelivery of the event (another webhook of the tenant failed) does not send it twice."""
        await _create_message(self._deliveries, _delivery_key(tenant, webhook_id, event_id), now_ts())

    # -- tracks -----------------------------------------------------------------------------

    async def get_track(self, tenant: str, track_id: str) -> common_pb2.Track | None:
        """``tenant``'s stored track (a deleted one too: its tombstone), or None when there is none.

        Raises
        ------
        InvalidArgument
            When the tenant or the id is malformed.
        """
        return await _get_message(self._tracks, _key(tenant, track_id), common_pb2.Track)

    async def create_track(self, track: common_pb2.Track) -> bool:
        """Store a new track record (its ``tenant`` and ``track_id`` name it); returns False
        (and writes nothing) when it exists.

        Raises
        ------
        Unavailable
            When NATS does not answer.
        """
        return await _create_message(self._tracks, _key(track.tenant, track.track_id), track)

    async def add_track(
        self,
        data: bytes,
        *,
        tenant: str,
        filename: str,
        title: str,
        content_type: str,
        source: int,
        generation_id: str = "",
    ) -> common_pb2.Track:
        """Store a new track's bytes, record it (state ``uploaded``) and publish
        ``music.<tenant>.tracks.uploaded``.

        Idempotent per tenant and content (:meth:`track_id_for`): a track that is already past
        ``uploaded`` is returned as it is (nothing stored or announced again); one still
        ``uploaded`` (a crash between recording and announcing, or a second upload before the
        analysis) is announced again with its stored record, and the stream's duplicate window
        drops a repeat that comes soon. A deleted track uploaded again starts afresh.

        Parameters
        ----------
        data : bytes
            The audio (or MIDI) file.
        tenant : str
            The owner.
        filename, title : str
            Checked by the caller (:mod:`musicaas.runtime.validation`); stored in the record
            and the event, never used in an object name or a subject.
        content_type : str
        source : common_pb2.TrackSource
        generation_id : str
            The generation that made the track (generated tracks), else empty.

        Returns
        -------
        common_pb2.Track
            The stored record (``track_id``, ``state``, ``audio_blob``, ...).

        Raises
        ------
        NotFound
            When the tenant does not exist.
        Unavailable
            When NATS does not answer.
        """
        track_id = await self.track_id_for(tenant, hashlib.sha256(data).hexdigest())
        existing = await self.get_track(tenant, track_id)
        if existing is not None and existing.state != common_pb2.TRACK_STATE_DELETED:
            return await self._announce(existing)
        ref = await self.put_blob(f"{tenant}/tracks/{track_id}/source", data, content_type=content_type)
        return await self._record(tenant, track_id, ref, filename=filename, title=title, source=source,
                                  generation_id=generation_id)

    async def add_uploaded_track(
        self, chunks: AsyncIterator[bytes], *, tenant: str, filename: str, title: str, content_type: str,
        source: int, max_buffered_bytes: int = 4 * 1024 * 1024, metadata: common_pb2.TrackMetadata | None = None,
    ) -> common_pb2.Track:
        """:meth:`add_track` for bytes that arrive as a stream: each chunk goes to the object
        store as it arrives (:meth:`put_blob_stream`), so memory stays bounded whatever the size.

        ``metadata`` (already checked: :func:`musicaas.metadata.check_metadata`) becomes the new
        track's ``metadata`` and travels in its ``tracks.uploaded`` event; re-uploaded bytes of
        a live track keep the track (and the metadata) it already has.

        The object is named by the platform (``<tenant>/uploads/<random id>``); once the content
        hash is known, a track that already exists keeps its own object and the new one is
        deleted. If ``chunks`` raises (a refused, stalled or cancelled upload), nothing is stored.

        Raises
        ------
        NotFound
            When the tenant does not exist.
        Unavailable
            When NATS does not answer.
        """
        check_tenant(tenant)
        ref, sha256_hex = await self.put_blob_stream(new_id(f"{tenant}/uploads/upl"), chunks,
                                                     content_type=content_type, max_buffered_bytes=max_buffered_bytes)
        track_id = await self.track_id_for(tenant, sha256_hex)
        existing = await self.get_track(tenant, track_id)
        if existing is not None and existing.state != common_pb2.TRACK_STATE_DELETED:
            await self.delete_blob(ref)
            return await self._announce(existing)
        return await self._record(tenant, track_id, ref, filename=filename, title=title, source=source,
                                  metadata=metadata)

    async def _record(self, tenant: str, track_id: str, ref: common_pb2.BlobRef, *, filename: str, title: str,
                      source: int, generation_id: str = "",
                      metadata: common_pb2.TrackMetadata | None = None) -> common_pb2.Track:
        now = now_ts()
        track = common_pb2.Track(
            track_id=track_id, tenant=tenant, state=common_pb2.TRACK_STATE_UPLOADED, title=title,
            filename=filename, source=source, audio_blob=ref, created_at=now, updated_at=now,
            generation_id=generation_id, metadata=metadata,
        )
        if not await self.create_track(track):  # exists: a tombstone, or a concurrent writer's
            stored = await self.get_track(tenant, track_id)
            if stored is not None and stored.state == common_pb2.TRACK_STATE_DELETED:
                fresh = track

                def revive(t: common_pb2.Track) -> None:
                    if t.state == common_pb2.TRACK_STATE_DELETED:
                        t.CopyFrom(fresh)

                stored = await self.update_track(tenant, track_id, revive)
            if stored is not None and stored.audio_blob.name != ref.name:
                await self.delete_blob(ref)
            track = stored or track
        return await self._announce(track)

    async def _announce(self, track: common_pb2.Track) -> common_pb2.Track:
        """Meter and publish ``tracks.uploaded`` for a track still in state uploaded; return it.
        Both are idempotent, so a retried upload (the first attempt died after recording the
        track) completes whichever was missing."""
        if track.state != common_pb2.TRACK_STATE_UPLOADED:
            return track
        await self.record_usage(track.tenant, "stored", f"{track.track_id}-{track.created_at.seconds}",
                                tracks_stored=1, storage_bytes=track.audio_blob.size_bytes)
        await self.publish(
            TRACKS_UPLOADED,
            events_pb2.TrackUploaded(
                track_id=track.track_id, tenant=track.tenant, audio_blob=track.audio_blob, filename=track.filename,
                title=track.title, source=track.source, generation_id=track.generation_id, metadata=track.metadata,
            ),
            event_id=f"uploaded:{track.tenant}:{track.track_id}:{track.created_at.seconds}.{track.created_at.nanos}",
        )
        return track

    async def update_track(
        self, tenant: str, track_id: str, change: Callable[[common_pb2.Track], None], *,
        create_if_missing: bool = False,
    ) -> common_pb2.Track:
        """Apply ``change`` to ``tenant``'s stored track with optimistic concurrency (retried on
        conflict). ``change`` sees a deleted track's tombstone too and should leave it alone
        (:func:`advance_state` does).

        Raises
        ------
        NotFound
            When the track does not exist and ``create_if_missing`` is False.
        Unavailable
            When concurrent writers keep winning.
        """
        return await _update_message(
            self._tracks, _key(tenant, track_id), lambda: common_pb2.Track(track_id=track_id, tenant=tenant), change,
            create_if_missing=create_if_missing, what="track",
        )

    async def fail_track(self, tenant: str, track_id: str, *, stage: str, error: MusicaasError,
                         ce_id: str = "") -> None:
        """Mark the track ``failed`` with the reason and publish ``music.<tenant>.tracks.failed``
        (a deleted track stays deleted and nothing is published).

        Parameters
        ----------
        tenant : str
        track_id : str
            The track; empty when the event had none (only the event is published).
        stage : str
            The service that gave up (``"analyzer"``, ``"recommender"``).
        error : MusicaasError
            Why; ``track.error`` becomes ``"<CODE>: <message>"``.
        ce_id : str
            The failed event's CloudEvents id (names the failure when there is no track id).

        Raises
        ------
        Unavailable
            When NATS does not answer (the consumer redelivers and tries again).
        """
        code = error.code.name
        if track_id:

            def mark(track: common_pb2.Track) -> None:
                if track.state != common_pb2.TRACK_STATE_DELETED:
                    track.state = advance_state(track.state, common_pb2.TRACK_STATE_FAILED)
                    track.error = f"{code}: {error.message}"

            track = await self.update_track(tenant, track_id, mark, create_if_missing=True)
            if track.state == common_pb2.TRACK_STATE_DELETED:
                return
        await self.publish(
            TRACKS_FAILED,
            events_pb2.TrackFailed(track_id=track_id, tenant=tenant, stage=stage, code=code, reason=error.message),
            event_id=f"failed:{tenant}:{track_id or ce_id or 'unknown'}:{stage}",
        )

    async def delete_track(self, tenant: str, track_id: str) -> common_pb2.Track:
        """Delete ``tenant``'s track: its bytes go, its record becomes a ``deleted`` tombstone
        (nothing but the id, tenant and times), and ``music.<tenant>.tracks.deleted`` tells the
        recommender (vector point) and partners. Idempotent: deleting it again announces again
        (the duplicate window drops it) and changes nothing.

        Returns
        -------
        common_pb2.Track
            The tombstone.

        Raises
        ------
        NotFound
            When the tenant has no such track (another tenant's id included).
        Unavailable
            When NATS does not answer (a retry finishes the job).
        """
        track = await self.get_track(tenant, track_id)
        if track is None:
            raise NotFound("track not found")
        if track.state != common_pb2.TRACK_STATE_DELETED:
            blob = _copy(track.audio_blob)

            def tombstone(t: common_pb2.Track) -> None:
                keep = common_pb2.Track(track_id=t.track_id, tenant=t.tenant, created_at=t.created_at,
                                        state=common_pb2.TRACK_STATE_DELETED)
                if t.state != common_pb2.TRACK_STATE_DELETED:
                    t.CopyFrom(keep)

            track = await self.update_track(tenant, track_id, tombstone)
            if blob.name:
                await self.delete_blob(blob)
        # a repeat names the same deletion (the tombstone's time): the duplicate window drops it
        await self.publish(TRACKS_DELETED, events_pb2.TrackDeleted(track_id=track_id, tenant=tenant),
                           event_id=f"deleted:{tenant}:{track_id}:{track.updated_at.seconds}.{track.updated_at.nanos}")
        return track

    async def list_tracks(
        self, tenant: str, *, states: tuple[int, ...] = (), created_from: Timestamp | None = None,
        created_to: Timestamp | None = None, page_size: int = 100, page_token: str = "",
    ) -> tuple[list[common_pb2.Track], str]:
        """A page of ``tenant``'s tracks (not deleted), by track id.

        Parameters
        ----------
        states : tuple of TrackState
            Only these states (all when empty).
        created_from, created_to : Timestamp, optional
            Only tracks created at or after / before these times (UTC).
        page_size : int, 1-1000
        page_token : str
            The previous page's ``next_page_token``; empty for the first page.

        Returns
        -------
        (list of Track, str)
            The page and the token of the next one (empty after the last page).

        Raises
        ------
        InvalidArgument
            When ``page_token`` is not one this method returned.
        Unavailable
            When NATS does not answer.
        """
        prefix = f"{check_tenant(tenant)}."
        if page_token and not _KV_ID_RE.fullmatch(page_token):
            raise InvalidArgument("page_token: not a page token")
        ids = sorted(k[len(prefix):] for k in await _keys(self.js, TRACK_BUCKET, f"{tenant}.*"))
        start = 0
        if page_token:
            start = bisect.bisect_right(ids, page_token)
        out: list[common_pb2.Track] = []
        last = ""
        for k in ids[start:]:
            if len(out) >= page_size:
                return out, last
            last = k
            track = await _get_message(self._tracks, prefix + k, common_pb2.Track)
            if track is None or track.state == common_pb2.TRACK_STATE_DELETED:
                continue
            if states and track.state not in states:
                continue
            created = track.created_at.ToNanoseconds()
            if created_from is not None and created < created_from.ToNanoseconds():
                continue
            if created_to is not None and created >= created_to.ToNanoseconds():
                continue
            out.append(track)
        return out, ""

    # -- generation jobs ----------------------------------------------------------------------

    async def create_job(self, job: generator_pb2.GenerationJob) -> tuple[generator_pb2.GenerationJob, bool]:
        """Store a new job of ``job.tenant`` (``created_at`` / ``updated_at`` set now when unset).

        Returns
        -------
        (GenerationJob, bool)
            The stored job and True, or, when the tenant has ``job.generation_id`` already, the
            job stored under it and False (nothing written).

        Raises
        ------
        InvalidArgument
            When ``job.generation_id`` or ``job.tenant`` is empty or malformed.
        Unavailable
            When NATS does not answer.
        """
        if not job.generation_id:
            raise InvalidArgument("generation_id is empty")
        key = _key(job.tenant, job.generation_id)
        job = _copy(job)
        now = now_ts()
        for stamp in (job.created_at, job.updated_at):
            if not stamp.seconds and not stamp.nanos:
                stamp.CopyFrom(now)
        for _ in range(3):
            if await _create_message(self._jobs, key, job):
                return job, True
            existing = await self.get_job(job.tenant, job.generation_id)
            if existing is not None:
                return existing, False
        raise Unavailable(f"could not record generation {job.generation_id!r}: it keeps appearing and vanishing")

    async def get_job(self, tenant: str, generation_id: str) -> generator_pb2.GenerationJob | None:
        """``tenant``'s stored job, or None when there is none."""
        return await _get_message(self._jobs, _key(tenant, generation_id), generator_pb2.GenerationJob)

    async def update_job(
        self, tenant: str, generation_id: str, change: Callable[[generator_pb2.GenerationJob], None]
    ) -> generator_pb2.GenerationJob:
        """Apply ``change`` to ``tenant``'s stored job (created when missing) with optimistic concurrency.

        Raises
        ------
        Unavailable
            When concurrent writers keep winning.
        """
        return await _update_message(
            self._jobs, _key(tenant, generation_id),
            lambda: generator_pb2.GenerationJob(generation_id=generation_id, tenant=tenant), change,
            what="generation",
        )


async def _with_heartbeat(msg, work: Awaitable[None], every_s: float, clog) -> None:
    """Await ``work`` while telling JetStream every ``every_s`` seconds that it is in progress."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await msg.in_progress()
            except _NATS_ERRORS as exc:  # the next beat or the ack will tell
                clog.debug("in_progress_failed", error=str(exc))

    beater = asyncio.create_task(beat())
    try:
        await work
    finally:
        beater.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beater


def _delivery_key(tenant: str, webhook_id: str, event_id: str) -> str:
    return f"{_key(tenant, webhook_id)}.{hashlib.sha256(event_id.encode()).hexdigest()[:32]}"


def _copy(message: M) -> M:
    out = type(message)()
    out.CopyFrom(message)
    return out


async def _keys(js, bucket: str, key_filter: str = ">") -> list[str]:
    """The keys of KV ``bucket`` that match the subject-style ``key_filter`` (``a.*``, ``>``),
    read from the bucket stream's subject counts (``STREAM.INFO`` with a subject filter): no
    consumer is created, and the listing is complete. A deleted key may still be listed (its
    delete marker is a message): reading it answers None.

    Raises
    ------
    Unavailable
        When NATS does not answer.
    """
    prefix = f"$KV.{bucket}."
    try:
        info = await js.stream_info(f"KV_{bucket}", subjects_filter=prefix + key_filter)
    except _NATS_ERRORS as exc:
        raise Unavailable(f"could not list keys: {exc}") from exc
    return [subject[len(prefix):] for subject in (info.state.subjects or {})]


async def _create_message(kv, key: str, message: Message) -> bool:
    """Store ``message`` under a new ``key``; False when ``key`` exists (nothing written)."""
    try:
        await kv.create(key, message.SerializeToString())
        return True
    except nats.js.errors.KeyWrongLastSequenceError:
        return False
    except _NATS_ERRORS as exc:
        raise Unavailable(f"could not create {key!r}: {exc}") from exc


async def _get_message(kv, key: str, message_type: type[M]) -> M | None:
    """The protobuf message stored under ``key`` in a KV bucket, or None when there is none.

    Raises
    ------
    Unavailable
        When NATS does not answer.
    """
    try:
        entry = await kv.get(key)
    except nats.js.errors.KeyNotFoundError:
        return None
    except _NATS_ERRORS as exc:
        raise Unavailable(f"could not read {key!r}: {exc}") from exc
    if not entry.value:
        return None
    return message_type.FromString(entry.value)


async def _update_message(
    kv, key: str, new: Callable[[], M], change: Callable[[M], None], *, create_if_missing: bool = True,
    what: str = "entry",
) -> M:
    """Read-modify-write of a protobuf message (with ``created_at``/``updated_at``) in a KV bucket.

    Optimistic concurrency: the write names the revision it read and is retried on conflict,
    so concurrent writers never lose each other's changes.

    Parameters
    ----------
    kv : nats KeyValue
    key : str
    new : () -> message
        The initial message when ``key`` is missing (``created_at`` is set here).
    change : (message) -> None
        Mutates the message in place.

    Raises
    ------
    NotFound
        When ``key`` is missing and ``create_if_missing`` is False.
    Unavailable
        When NATS does not answer, or 20 attempts in a row lose to concurrent writers.
    """
    for _ in range(20):
        try:
            entry = await kv.get(key)
            message, revision = type(new()).FromString(entry.value or b""), entry.revision
        except nats.js.errors.KeyNotFoundError:
            if not create_if_missing:
                raise NotFound(f"{what} {key!r} not found") from None
            message, revision = new(), None
            message.created_at.CopyFrom(now_ts())
        except _NATS_ERRORS as exc:
            raise Unavailable(f"could not read {what} {key!r}: {exc}") from exc
        change(message)
        message.updated_at.CopyFrom(now_ts())
        try:
            if revision is None:
                await kv.create(key, message.SerializeToString())
            else:
                await kv.update(key, message.SerializeToString(), last=revision)
            return message
        except nats.js.errors.KeyWrongLastSequenceError:
            await asyncio.sleep(0.01)
        except _NATS_ERRORS as exc:
            raise Unavailable(f"could not write {what} {key!r}: {exc}") from exc
    raise Unavailable(f"could not update {what} {key!r}: too many concurrent writers")


def new_id(prefix: str) -> str:
    """A random id such as ``gen_3f2a…`` (prefix, underscore, 24 hex characters)."""
    return f"{prefix}_{uuid.uuid4().hex[:24]}"
