"""NATS JetStream adapter: events, blobs (object store), tracks and generation jobs (KV).

Nothing outside this module touches NATS types: the rest of the platform calls
:class:`Bus` and gets protobuf messages and :mod:`musicaas.runtime.errors` back.

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
A track id is content-derived (:func:`track_id_for`), so the same bytes are one track.
:meth:`Bus.add_track` stores the bytes, creates the ``Track`` record (state ``uploaded``)
and announces it on ``music.tracks.uploaded``, idempotently (the gateway's uploads and the
generator's pieces alike); the consumers move it on with :meth:`Bus.update_track`.

Generation jobs
---------------
One ``musicaas.generator.v1.GenerationJob`` per generation id in the ``generations`` bucket:
:meth:`Bus.create_job` (the gateway's ``SubmitGeneration``; the same id twice answers the
stored job), :meth:`Bus.get_job`, :meth:`Bus.update_job` (the generator, as the job runs).
"""

from __future__ import annotations

import asyncio
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
from musicaas.runtime.errors import InvalidArgument, MusicaasError, NotFound, Unavailable
from musicaas.runtime.streams import ChunkPipe, PipeAborted

log = structlog.get_logger()


class WorkerDied(MusicaasError):
    """A message was delivered ``max_deliver`` times and never settled: its worker died on it."""

    permanent = True

STREAM = "MUSIC"
TRACKS_UPLOADED = "music.tracks.uploaded"
TRACKS_ANALYZED = "music.tracks.analyzed"
TRACKS_FAILED = "music.tracks.failed"
GENERATIONS_REQUESTED = "music.generations.requested"
GENERATIONS_COMPLETED = "music.generations.completed"
GENERATIONS_FAILED = "music.generations.failed"

#: CloudEvents ``type`` of each subject (reverse-DNS, versioned like the proto package).
EVENT_TYPES = {
    TRACKS_UPLOADED: "io.musicaas.tracks.uploaded.v1",
    TRACKS_ANALYZED: "io.musicaas.tracks.analyzed.v1",
    TRACKS_FAILED: "io.musicaas.tracks.failed.v1",
    GENERATIONS_REQUESTED: "io.musicaas.generations.requested.v1",
    GENERATIONS_COMPLETED: "io.musicaas.generations.completed.v1",
    GENERATIONS_FAILED: "io.musicaas.generations.failed.v1",
}

BLOB_BUCKET = "blobs"
TRACK_BUCKET = "tracks"
#: Generation jobs (``musicaas.generator.v1.GenerationJob``), written by gateway and generator.
GENERATION_BUCKET = "generations"
DUPLICATE_WINDOW_S = 120.0
#: Dead-letter records (:class:`events_pb2.DeadLetter`), one subject per durable consumer.
DEAD_LETTER_STREAM = "DEADLETTER"
DEAD_LETTER_SUBJECTS = "deadletter.>"
#: Records are kept 30 days, at most 100 000 of them (the oldest go first).
DEAD_LETTER_MAX_AGE_S = 30 * 24 * 3600.0
DEAD_LETTER_MAX_MSGS = 100_000
MAX_DEAD_LETTER_REASON_CHARS = 1000

M = TypeVar("M", bound=Message)
_DURABLE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: What a NATS call raises when the server does not answer or refuses.
_NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error, asyncio.TimeoutError)

_STATE_ORDER = {
    common_pb2.TRACK_STATE_UNSPECIFIED: 0,
    common_pb2.TRACK_STATE_UPLOADED: 1,
    common_pb2.TRACK_STATE_ANALYZED: 2,
    common_pb2.TRACK_STATE_INDEXED: 3,
    common_pb2.TRACK_STATE_FAILED: 3,
}


def advance_state(current: int, new: int) -> int:
    """Track states only move forward (UPLOADED -> ANALYZED -> INDEXED, or FAILED)."""
    return new if _STATE_ORDER[new] >= _STATE_ORDER[current] else current


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

    Use as an async context manager; closing drains the connection.

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
    """

    def __init__(self, url: str, *, name: str, replicas: int = 1, connect_timeout_s: float = 30.0) -> None:
        self.url = url
        self.name = name
        self.replicas = replicas
        self.connect_timeout_s = connect_timeout_s
        self.nc: nats.NATS | None = None
        self.js = None
        self._tracks = None
        self._jobs = None
        self._blobs = None
        self._connected = asyncio.Event()
        self._closing = False
        self._reconnect: asyncio.Task | None = None

    @classmethod
    def from_settings(cls, settings, *, name: str) -> "Bus":
        """A bus configured from a :class:`~musicaas.runtime.settings.ServiceSettings`."""
        return cls(
            settings.nats_url, name=name, replicas=settings.stream_replicas,
            connect_timeout_s=settings.nats_connect_timeout_s,
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
            drain_timeout=5,
            closed_cb=self._on_closed,
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
        """Drain and close the NATS connection (pending acks and publishes are flushed; at most 5 s)."""
        self._closing = True
        if self._reconnect is not None and not self._reconnect.done():
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reconnect
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        self.nc = None

    # -- events ---------------------------------------------------------------------------

    async def publish(self, subject: str, event: Message, *, event_id: str) -> None:
        """Publish a protobuf event with CloudEvents headers; ``event_id`` must be deterministic.

        Raises
        ------
        Unavailable
            When JetStream does not acknowledge the event.
        """
        headers = cloudevent_headers(subject, event_id=event_id, source=f"/musicaas/{self.name}")
        # a PRODUCER span; its context goes out as the event's traceparent / tracestate
        with telemetry.publish_span(subject, headers, event_id=event_id) as span:
            try:
                ack = await self.js.publish(subject, event.SerializeToString(), headers=headers, stream=STREAM)
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
            Filter subject (e.g. ``music.tracks.uploaded``).
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
            filter_subject=subject,
            ack_wait=ack_wait_s,
            max_deliver=max_deliver + 1,
        )
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
                                   max_deliver, nak_delay_s, ack_wait_s / 3.0, ack_sync)

    async def _handle(self, msg, clog, durable, subject, message_type, handler, on_permanent_failure, max_deliver,
                      nak_delay_s, heartbeat_s: float = 5.0, ack_sync: bool = False) -> None:
        """One delivery, in a CONSUMER span that continues the publisher's trace; counted
        (delivery, then ack, nak or term) in :mod:`musicaas.runtime.telemetry`'s metrics."""
        headers = dict(msg.headers or {})
        deliveries = msg.metadata.num_delivered if msg.metadata else 1
        telemetry.CONSUMER_DELIVERIES.labels(durable).inc()
        if msg.metadata is not None and msg.metadata.num_pending is not None:
            telemetry.CONSUMER_PENDING.labels(durable).set(msg.metadata.num_pending)
        with telemetry.CONSUMER_HANDLING_SECONDS.labels(durable).time(), \
                telemetry.consume_span(subject, headers, durable=durable, deliveries=deliveries) as span:
            try:
                outcome = await self._settle(msg, clog, durable, headers, deliveries, message_type, handler,
                                             on_permanent_failure, max_deliver, nak_delay_s, heartbeat_s, ack_sync)
            except asyncio.CancelledError:
                telemetry.CONSUMER_NAKS.labels(durable).inc()  # naked on the way out (shutdown)
                raise
            {"ack": telemetry.CONSUMER_ACKS, "nak": telemetry.CONSUMER_NAKS,
             "term": telemetry.CONSUMER_TERMS}[outcome].labels(durable).inc()
            span.set_attribute("messaging.nats.outcome", outcome)
            if outcome != "ack":
                telemetry.mark_span_error(span, outcome)

    async def _settle(self, msg, clog, durable, headers, deliveries, message_type, handler, on_permanent_failure,
                      max_deliver, nak_delay_s, heartbeat_s: float = 5.0, ack_sync: bool = False) -> str:
        """Run the handler and ack, nak or term the message; returns which."""
        event = None
        try:
            try:
                event = message_type.FromString(msg.data)
            except DecodeError as exc:
                raise InvalidArgument(f"event payload is not a valid {message_type.DESCRIPTOR.full_name}") from exc
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
            await msg.nak(delay=nak_delay_s * deliveries)
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

    # -- tracks -----------------------------------------------------------------------------

    async def get_track(self, track_id: str) -> common_pb2.Track | None:
        """The stored track, or None when there is none."""
        return await _get_message(self._tracks, track_id, common_pb2.Track)

    async def create_track(self, track: common_pb2.Track) -> bool:
        """Store a new track record; returns False (and writes nothing) when the id exists.

        Raises
        ------
        Unavailable
            When NATS does not answer.
        """
        return await _create_message(self._tracks, track.track_id, track)

    async def add_track(
        self,
        data: bytes,
        *,
        filename: str,
        title: str,
        content_type: str,
        source: int,
        generation_id: str = "",
    ) -> common_pb2.Track:
        """Store a new track's bytes, record it (state ``uploaded``) and publish ``music.tracks.uploaded``.

        Idempotent per content (:func:`track_id_for`): a track that is already past ``uploaded``
        is returned as it is (nothing stored or announced again); one still ``uploaded`` (a
        crash between recording and announcing, or a second upload before the analysis) is
        announced again with its stored record, and the stream's duplicate window drops a
        repeat that comes soon.

        Parameters
        ----------
        data : bytes
            The audio (or MIDI) file.
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
        Unavailable
            When NATS does not answer.
        """
        track_id = track_id_for(data)
        existing = await self.get_track(track_id)
        if existing is not None:
            return await self._announce(existing)
        ref = await self.put_blob(f"tracks/{track_id}/source", data, content_type=content_type)
        return await self._record(track_id, ref, filename=filename, title=title, source=source,
                                  generation_id=generation_id)

    async def add_uploaded_track(
        self, chunks: AsyncIterator[bytes], *, filename: str, title: str, content_type: str, source: int,
        max_buffered_bytes: int = 4 * 1024 * 1024,
    ) -> common_pb2.Track:
        """:meth:`add_track` for bytes that arrive as a stream: each chunk goes to the object
        store as it arrives (:meth:`put_blob_stream`), so memory stays bounded whatever the size.

        The object is named by the platform (``uploads/<random id>``); once the content hash
        is known, a track that already exists keeps its own object and the new one is deleted.
        If ``chunks`` raises (a refused, stalled or cancelled upload), nothing is stored.

        Raises
        ------
        Unavailable
            When NATS does not answer.
        """
        ref, sha256_hex = await self.put_blob_stream(new_id("uploads/upl"), chunks, content_type=content_type,
                                                     max_buffered_bytes=max_buffered_bytes)
        track_id = "trk_" + sha256_hex[:24]
        existing = await self.get_track(track_id)
        if existing is not None:
            await self.delete_blob(ref)
            return await self._announce(existing)
        return await self._record(track_id, ref, filename=filename, title=title, source=source)

    async def _record(self, track_id: str, ref: common_pb2.BlobRef, *, filename: str, title: str, source: int,
                      generation_id: str = "") -> common_pb2.Track:
        now = now_ts()
        track = common_pb2.Track(
            track_id=track_id, state=common_pb2.TRACK_STATE_UPLOADED, title=title, filename=filename,
            source=source, audio_blob=ref, created_at=now, updated_at=now, generation_id=generation_id,
        )
        if not await self.create_track(track):  # created by a concurrent writer meanwhile
            stored = await self.get_track(track_id)
            if stored is not None and stored.audio_blob.name != ref.name:
                await self.delete_blob(ref)
            track = stored or track
        return await self._announce(track)

    async def _announce(self, track: common_pb2.Track) -> common_pb2.Track:
        """Publish ``tracks.uploaded`` for a track still in state uploaded; return it."""
        if track.state != common_pb2.TRACK_STATE_UPLOADED:
            return track
        await self.publish(
            TRACKS_UPLOADED,
            events_pb2.TrackUploaded(
                track_id=track.track_id, audio_blob=track.audio_blob, filename=track.filename, title=track.title,
                source=track.source, generation_id=track.generation_id,
            ),
            event_id=f"uploaded:{track.track_id}",
        )
        return track

    async def update_track(
        self, track_id: str, change: Callable[[common_pb2.Track], None], *, create_if_missing: bool = False
    ) -> common_pb2.Track:
        """Apply ``change`` to the stored track with optimistic concurrency (retried on conflict).

        Raises
        ------
        NotFound
            When the track does not exist and ``create_if_missing`` is False.
        Unavailable
            When concurrent writers keep winning.
        """
        return await _update_message(
            self._tracks, track_id, lambda: common_pb2.Track(track_id=track_id), change,
            create_if_missing=create_if_missing, what="track",
        )

    async def fail_track(self, track_id: str, *, stage: str, error: MusicaasError, ce_id: str = "") -> None:
        """Mark the track ``failed`` with the reason and publish ``music.tracks.failed``.

        Parameters
        ----------
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
                track.state = advance_state(track.state, common_pb2.TRACK_STATE_FAILED)
                track.error = f"{code}: {error.message}"

            await self.update_track(track_id, mark, create_if_missing=True)
        await self.publish(
            TRACKS_FAILED,
            events_pb2.TrackFailed(track_id=track_id, stage=stage, code=code, reason=error.message),
            event_id=f"failed:{track_id or ce_id or 'unknown'}:{stage}",
        )

    # -- generation jobs ----------------------------------------------------------------------

    async def create_job(self, job: generator_pb2.GenerationJob) -> tuple[generator_pb2.GenerationJob, bool]:
        """Store a new job (``created_at`` / ``updated_at`` set now when unset).

        Returns
        -------
        (GenerationJob, bool)
            The stored job and True, or, when ``job.generation_id`` exists already, the job
            stored under it and False (nothing written).

        Raises
        ------
        InvalidArgument
            When ``job.generation_id`` is empty.
        Unavailable
            When NATS does not answer.
        """
        if not job.generation_id:
            raise InvalidArgument("generation_id is empty")
        job = _copy(job)
        now = now_ts()
        for stamp in (job.created_at, job.updated_at):
            if not stamp.seconds and not stamp.nanos:
                stamp.CopyFrom(now)
        for _ in range(3):
            if await _create_message(self._jobs, job.generation_id, job):
                return job, True
            existing = await self.get_job(job.generation_id)
            if existing is not None:
                return existing, False
        raise Unavailable(f"could not record generation {job.generation_id!r}: it keeps appearing and vanishing")

    async def get_job(self, generation_id: str) -> generator_pb2.GenerationJob | None:
        """The stored job, or None when there is none."""
        return await _get_message(self._jobs, generation_id, generator_pb2.GenerationJob)

    async def update_job(
        self, generation_id: str, change: Callable[[generator_pb2.GenerationJob], None]
    ) -> generator_pb2.GenerationJob:
        """Apply ``change`` to the stored job (created when missing) with optimistic concurrency.

        Raises
        ------
        Unavailable
            When concurrent writers keep winning.
        """
        return await _update_message(
            self._jobs, generation_id, lambda: generator_pb2.GenerationJob(generation_id=generation_id), change,
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


def track_id_for(data: bytes) -> str:
    """The content-derived id of a track: ``trk_`` + the first 24 hex characters of the bytes' SHA-256."""
    return "trk_" + hashlib.sha256(data).hexdigest()[:24]


def _copy(message: M) -> M:
    out = type(message)()
    out.CopyFrom(message)
    return out


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
