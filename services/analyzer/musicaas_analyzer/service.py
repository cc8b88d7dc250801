"""The analyzer service: the ``AnalyzeAudio`` RPC and the ``music.tracks.uploaded`` consumer.

For each uploaded track the consumer streams the blob from the object store into a spool
file (``spool_dir``; removed afterwards whatever happens), analyses it from that file (in a
worker process, see :class:`Analyzer`, so that the gRPC server stays responsive and every
core is used; the worker gets the path and decodes block by block, so that neither process
holds the encoded upload, whose size the gateway bounds at 1 GiB), stores the analysis in
the track state (state ``analyzed``) and publishes ``music.tracks.analyzed``. Audio that can never be
analysed terminates the message, marks the track ``failed`` and publishes
``music.tracks.failed``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import pickle
import signal
import tempfile
import time
import traceback
from collections.abc import AsyncIterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import structlog
from pydantic import Field

from musicaas.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from musicaas.common.v1 import common_pb2
from musicaas import metadata as md
from musicaas.events.v1 import events_pb2
from musicaas.runtime import bus as busmod
from musicaas.runtime import telemetry
from musicaas.runtime.bus import Bus, advance_state
from musicaas.runtime.errors import InvalidArgument, MusicaasError, NotFound, ResourceExhausted, Unavailable
from musicaas.runtime.settings import ServiceSettings
from musicaas.tenancy import TENANT_RE
from musicaas_analyzer.analysis import analyze_bytes, analyze_file, warm_up
from musicaas_analyzer import filetags
from musicaas_analyzer.convert import analysis_to_proto, apply_section_tags, apply_tags
from musicaas_analyzer.tagger import TritonTagger

log = structlog.get_logger()


def _default_workers() -> int:
    """One worker process per CPU core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


class AnalyzerSettings(ServiceSettings):
    grpc_port: int = 50052
    #: Longest audio accepted, in seconds.
    max_duration_s: float = 1800.0
    #: Largest encoded file accepted by AnalyzeAudio, in bytes.
    max_audio_bytes: int = 60 * 1024 * 1024
    #: Worker processes that run analyses (``MUSICAAS_WORKERS``); default: one per CPU core
    #: available to the service. 0 runs analyses on ``concurrency`` threads in the service
    #: process instead (no process start-up; numpy/librosa release the GIL only in parts).
    workers: int = Field(default_factory=_default_workers, ge=0)
    #: Analyses that run at once when ``workers`` is 0 (threads).
    concurrency: int = Field(default=2, ge=1)
    #: Folder of the spool files the upload consumer streams blobs into (``MUSICAAS_SPOOL_DIR``);
    #: default: the system temporary folder. It needs room for one upload per pull loop
    #: (``workers`` of them, each up to the gateway's upload limit).
    spool_dir: Path | None = None
    #: The learned model (musicnn MTT on Triton: the indexed embedding and the tags). Off
    #: (``MUSICAAS_TAGGER_ENABLED=false``): analyses carry no learned embedding, no tags and
    #: no ``embedding_model`` (the recommender then cannot index them by similarity).
    tagger_enabled: bool = True
    #: Triton's gRPC endpoint, ``host:port`` (``MUSICAAS_TRITON_URL``, shared with the generator).
    triton_url: str = "127.0.0.1:8001"
    #: Deadline of one tagger request, seconds (``MUSICAAS_TAGGER_TIMEOUT_S``).
    tagger_timeout_s: float = Field(default=30.0, gt=0)


# --- worker side -------------------------------------------------------------------------
#
# These functions run in the worker processes. The service process has gRPC and NATS threads
# and must not be forked, so workers are forked from multiprocessing's fork server (a clean
# single-threaded process started once, which imports the analysis stack and compiles
# librosa's numba kernels first: a worker then starts in under a second instead of paying
# ~8 s of imports and compilation each; "spawn" where there is no fork server). Everything
# crossing the process boundary is picklable: the encoded bytes in, the serialized
# TrackAnalysis out, and errors as MusicaasError subclasses (message only) or WorkerError.
# The encoded input is the request's bytes for AnalyzeAudio (bounded by max_audio_bytes) and
# a spool file's path for uploads (the worker decodes from the file).

#: Modules the fork server imports before forking workers (missing ones are skipped). The
#: librosa submodules compile numba ufuncs at import time.
_PRELOAD = (
    "numpy", "scipy.signal", "scipy.fft", "soundfile", "librosa", "librosa.core", "librosa.filters",
    "librosa.onset", "librosa.beat", "librosa.feature", "librosa.sequence", "librosa.segment",
    "librosa.util", "pyloudnorm", "musicaas_analyzer.analysis", "musicaas_analyzer.convert",
)


def _mp_context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(_PRELOAD))  # only used when the fork server starts
        return ctx
    return multiprocessing.get_context("spawn")


class WorkerError(RuntimeError):
    """An unexpected (non-domain) error inside an analysis worker; ``remote_traceback`` holds
    the worker's traceback. Like any unexpected error it becomes INTERNAL at the gRPC
    boundary and is retried by the event consumer."""

    def __init__(self, message: str, remote_traceback: str = "") -> None:
        super().__init__(message, remote_traceback)
        self.message = message
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        return self.message


def _init_worker(blas_threads: int) -> None:
    # Ctrl-C in a terminal signals the whole process group; the service decides when its
    # workers stop (Analyzer.close), so a worker must not die mid-analysis on SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=blas_threads)  # no BLAS/OpenMP oversubscription across workers
    warm_up()


def _worker_pid() -> int:
    return os.getpid()


def _portable_error(exc: MusicaasError) -> MusicaasError:
    """``exc``, or the nearest musicaas error class that survives pickling with its message."""
    for cls in type(exc).__mro__:
        if not (isinstance(cls, type) and issubclass(cls, MusicaasError)):
            continue
        candidate = exc if cls is type(exc) else cls(exc.message)
        try:
            pickle.loads(pickle.dumps(candidate))
            return candidate
        except Exception:  # noqa: BLE001 - try the parent class
            continue
    return MusicaasError(str(exc))


def _analyze_to_wire(data: bytes, filename: str, max_duration_s: float,
                     with_log_mel: bool = True) -> tuple[bytes, np.ndarray | None]:
    """Analyse encoded audio; the serialized ``TrackAnalysis`` and, with ``with_log_mel``, the
    model's log-mel patches (about 1.4 MB per minute of audio; runs in a worker)."""
    return _to_wire(analyze_bytes, data, filename, max_duration_s, with_log_mel)


def _analyze_file_to_wire(path: str, filename: str, max_duration_s: float,
                          with_log_mel: bool = True) -> tuple[bytes, np.ndarray | None]:
    """Analyse the encoded audio in the file at ``path``; as :func:`_analyze_to_wire` (runs in a worker)."""
    return _to_wire(analyze_file, path, filename, max_duration_s, with_log_mel)


def _to_wire(analyze, source, filename: str, max_duration_s: float,
             with_log_mel: bool = True) -> tuple[bytes, np.ndarray | None]:
    try:
        result = analyze(source, filename=filename or None, max_duration_s=max_duration_s)
        return analysis_to_proto(result).SerializeToString(), result.log_mel if with_log_mel else None
    except MusicaasError as exc:
        raise _portable_error(exc) from None
    except Exception as exc:  # noqa: BLE001 - must cross the process boundary intact
        raise WorkerError(f"{type(exc).__name__}: {exc}", traceback.format_exc()) from None


# --- service side ------------------------------------------------------------------------


class Analyzer:
    """Runs analyses on a pool of ``settings.workers`` processes (or ``settings.concurrency``
    threads when ``workers`` is 0), at most one analysis per worker at a time.

    Use ``async with Analyzer(settings) as analyzer`` (starts and warms the workers, and
    stops them at the end), or call :meth:`start` and :meth:`close` yourself; without
    :meth:`start` the workers start on first use. A worker process that dies (killed for
    memory, a crash in native code) is replaced by a fresh pool, and the analyses it took
    down are run once more before an error is reported.

    With a ``tagger`` (:meth:`from_settings` makes one when ``settings.tagger_enabled``),
    each analysis's log-mel patches go to the musicnn model on Triton, from this process
    (concurrent analyses share requests), and the learned embedding, the tags, each
    section's tags (:mod:`musicaas_analyzer.sectiontags`) and the model's name are filled
    in; a model server that is down raises ``Unavailable`` (an
    upload is then redelivered later, not failed).
    """

    @classmethod
    def from_settings(cls, settings: AnalyzerSettings) -> "Analyzer":
        """An analyzer with the Triton tagger when ``settings.tagger_enabled`` (the service's)."""
        tagger = (TritonTagger(settings.triton_url, timeout_s=settings.tagger_timeout_s)
                  if settings.tagger_enabled else None)
        return cls(settings, tagger=tagger)

    def __init__(self, settings: AnalyzerSettings, *, tagger: TritonTagger | None = None) -> None:
        self.settings = settings
        #: The learned model's client; None: analyses without learned embedding and tags.
        self.tagger = tagger
        self.workers = int(settings.workers)
        self._slots = asyncio.Semaphore(self.workers or settings.concurrency)
        self._closed = False
        self._pool: concurrent.futures.Executor = self._new_pool()

    def _new_pool(self) -> concurrent.futures.Executor:
        if not self.workers:
            return concurrent.futures.ThreadPoolExecutor(
                max_workers=self.settings.concurrency, thread_name_prefix="analysis"
            )
        cpus = _default_workers()
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=_mp_context(),
            initializer=_init_worker,
            initargs=(max(1, cpus // self.workers),),
        )

    @staticmethod
    async def _submit(pool: concurrent.futures.Executor, fn, *args):
        if isinstance(pool, concurrent.futures.ProcessPoolExecutor):
            # submit() may start a worker process, which blocks (the first one until the fork
            # server has imported everything): keep that off the event loop
            future = await asyncio.to_thread(pool.submit, fn, *args)
        else:
            future = pool.submit(fn, *args)
        return await asyncio.wrap_future(future)

    async def start(self) -> None:
        """Start every worker and pay the librosa/numba warm-up before the first request."""
        if not self.workers:
            await self._submit(self._pool, warm_up)
            return
        # The pool starts a process per submission while none is idle, so this starts them all.
        await asyncio.gather(*(self._submit(self._pool, _worker_pid) for _ in range(self.workers)))

    async def close(self, *, timeout_s: float | None = None) -> None:
        """Stop the workers: queued analyses are cancelled, running ones get ``timeout_s``
        seconds (default ``settings.shutdown_grace_s``) to finish before their processes are
        terminated. Idempotent; ``analyze`` raises ``Unavailable`` afterwards."""
        if timeout_s is None:
            timeout_s = self.settings.shutdown_grace_s
        if self._closed:
            return
        self._closed = True
        pool = self._pool
        done = asyncio.ensure_future(asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True))
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout_s)
        except asyncio.TimeoutError:
            log.warning("analysis_workers_terminated", after_s=timeout_s)
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    proc.terminate()
            await done
        if self.tagger is not None:
            await self.tagger.close()

    async def __aenter__(self) -> "Analyzer":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _run(self, fn, source, filename: str) -> tuple[bytes, np.ndarray | None]:
        for attempt in (1, 2):
            if self._closed:
                raise Unavailable("the analyzer is shutting down")
            pool = self._pool
            try:
                # the patches cross the process boundary only when there is a tagger to send them to
                return await self._submit(pool, fn, source, filename, self.settings.max_duration_s,
                                          self.tagger is not None)
            except BrokenProcessPool as exc:
                # A worker died; every analysis it shared the pool with fails with this error.
                if pool is self._pool and not self._closed:
                    log.error("analysis_worker_died", attempt=attempt, error=str(exc))
                    self._pool = self._new_pool()
                    pool.shutdown(wait=False, cancel_futures=True)
                if attempt == 2:
                    raise MusicaasError("the analysis worker process died twice while analysing this file") from exc
            except WorkerError as exc:
                log.error("analysis_failed_unexpectedly", filename=filename, error=exc.message,
                          worker_traceback=exc.remote_traceback)
                raise
        raise AssertionError("unreachable")

    async def analyze(self, data: bytes, filename: str) -> common_pb2.TrackAnalysis:
        """Analyse encoded audio held in memory (``AnalyzeAudio``; at most ``max_audio_bytes``)."""
        if len(data) > self.settings.max_audio_bytes:
            raise ResourceExhausted(
                f"audio is {len(data)} bytes; the limit is {self.settings.max_audio_bytes} bytes"
            )
        return await self._analysis(_analyze_to_wire, data, filename)

    async def analyze_file(self, path: str | os.PathLike, filename: str) -> common_pb2.TrackAnalysis:
        """Analyse the encoded audio in the file at ``path``: the worker gets the path and
        decodes from the file (:func:`~musicaas_analyzer.analysis.analyze_file`), so the
        encoded audio crosses no process boundary and is never held whole. The file must
        stay in place until this returns. ``filename`` words error messages."""
        return await self._analysis(_analyze_file_to_wire, os.fspath(path), filename)

    async def _analysis(self, fn, source, filename: str) -> common_pb2.TrackAnalysis:
        """One analysis in a free slot, timed (``musicaas_analyzer_analysis_seconds``) and its
        audio counted (``musicaas_analyzer_audio_seconds_total``)."""
        t0 = time.perf_counter()
        async with self._slots:
            wire, log_mel = await self._run(fn, source, filename)
        analysis = common_pb2.TrackAnalysis.FromString(wire)
        if self.tagger is not None and log_mel is not None:
            # after the worker is free again, so that it starts on the next upload meanwhile
            summary, per_patch = await self.tagger.tag_with_patches(log_mel)
            apply_tags(analysis, summary)
            apply_section_tags(analysis, per_patch)
        telemetry.ANALYSIS_SECONDS.observe(time.perf_counter() - t0)
        telemetry.AUDIO_SECONDS_ANALYZED.inc(max(0.0, analysis.duration_s))
        return analysis


class AnalyzerServicer(analyzer_pb2_grpc.AnalyzerServiceServicer):
    """``musicaas.analyzer.v1.AnalyzerService``: synchronous analysis of audio or MIDI bytes."""
    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer

    async def AnalyzeAudio(self, request: analyzer_pb2.AnalyzeAudioRequest, context) -> analyzer_pb2.AnalyzeAudioResponse:
        if not request.audio:
            raise InvalidArgument("audio is empty (0 bytes)")
        analysis = await self.analyzer.analyze(request.audio, request.filename)
        return analyzer_pb2.AnalyzeAudioResponse(analysis=analysis)


class UploadConsumer:
    """Consumes ``music.tracks.uploaded``; idempotent (a redelivery rewrites the same analysis).

    Each blob is streamed into a spool file in ``spool_dir`` (default: the analyzer's
    ``settings.spool_dir``, else the system temporary folder) and analysed from there; the
    file is removed when the handler ends, whether it succeeded, failed or was cancelled.
    """

    durable = "analyzer-tracks-uploaded"
    #: Deliveries before an upload is given up: with the bus's backoff (2 s times the delivery
    #: count, at most 60 s) about 50 minutes of a model server that is down, so that uploads
    #: stay queued through an outage (input errors are permanent and end at the first one).
    max_deliver = 60

    def __init__(self, bus: Bus, analyzer: Analyzer, *, spool_dir: str | os.PathLike | None = None) -> None:
        self.bus = bus
        self.analyzer = analyzer
        self.spool_dir = Path(spool_dir or analyzer.settings.spool_dir or tempfile.gettempdir())

    @contextlib.asynccontextmanager
    async def spooled(self, ref: common_pb2.BlobRef) -> AsyncIterator[str]:
        """The blob ``ref`` streamed into a new spool file; yields its path and removes it on the way out.

        Raises
        ------
        NotFound
            When the blob does not exist (from :meth:`Bus.get_blob_to_file`).
        Unavailable
            When NATS does not answer, or the spool file cannot be created or written
            (a full disk: retried later).
        """
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix="upload-", suffix=".spool", dir=self.spool_dir)
        except OSError as exc:
            raise Unavailable(f"cannot create a spool file in {self.spool_dir}: {exc.strerror or exc}") from exc
        try:
            try:
                with os.fdopen(fd, "wb") as file:
                    await self.bus.get_blob_to_file(ref, file)
            except OSError as exc:
                raise Unavailable(
                    f"cannot spool blob {ref.name!r} to {self.spool_dir}: {exc.strerror or exc}"
                ) from exc
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def handle(self, event: events_pb2.TrackUploaded, headers: dict[str, str]) -> None:
        """Stream the blob into a spool file, analyse it from there and read its own tags
        (:func:`~musicaas_analyzer.filetags.read_file_metadata`), store the analysis and the
        merged metadata (:meth:`merged_metadata`; state ``analyzed``) and publish
        ``music.<tenant>.tracks.analyzed`` with both. A track deleted before or
        during the analysis stays deleted (nothing is stored or published). Raises
        InvalidArgument for audio that can never be analysed."""
        tlog = log.bind(track_id=event.track_id, tenant=event.tenant)
        if not event.track_id:
            raise InvalidArgument("tracks.uploaded event without track_id")
        if await self._deleted(event):
            tlog.info("track_deleted_before_analysis")
            return
        try:
            async with self.spooled(event.audio_blob) as path:
                analysis = await self.analyzer.analyze_file(path, event.filename)
                # bounded (filetags.MAX_TAG_READ_BYTES) and never raises: broken tags are ignored
                found = await asyncio.to_thread(filetags.read_file_metadata, path, filename=event.filename)
        except NotFound:
            if await self._deleted(event):  # its bytes went with the deletion
                tlog.info("track_deleted_during_analysis")
                return
            raise
        metadata = self.merged_metadata(event, found)

        def store(track: common_pb2.Track) -> None:
            if track.state != common_pb2.TRACK_STATE_DELETED:
                track.analysis.CopyFrom(analysis)
                track.metadata.CopyFrom(metadata)
                if metadata.title:  # the upload's, else the file's; else the name the gateway gave
                    track.title = metadata.title
                track.state = advance_state(track.state, common_pb2.TRACK_STATE_ANALYZED)

        track = await self.bus.update_track(event.tenant, event.track_id, store, create_if_missing=True)
        if track.state == common_pb2.TRACK_STATE_DELETED:
            tlog.info("track_deleted_during_analysis")
            return
        # metered once per track version, however often the event is redelivered
        await self.bus.record_usage(event.tenant, "analysed", f"{event.track_id}-{track.created_at.seconds}",
                                    audio_seconds=analysis.duration_s)
        await self.bus.publish(
            busmod.TRACKS_ANALYZED,
            events_pb2.TrackAnalyzed(
                track_id=event.track_id,
                tenant=event.tenant,
                analysis=analysis,
                source=event.source,
                title=metadata.title or event.title or track.title,
                generation_id=event.generation_id,
                metadata=metadata,
            ),
            event_id=f"analyzed:{event.tenant}:{event.track_id}:{track.created_at.seconds}:{analysis.analyzer_version}",
        )
        tlog.info(
            "track_analyzed",
            key=analysis.key,
            mode=common_pb2.Mode.Name(analysis.mode),
            tempo_bpm=round(analysis.tempo_bpm, 1),
            loudness_lufs=round(analysis.loudness_lufs, 1),
            metadata_from_file=list(metadata.from_file),  # field names only, never the text
        )

    @staticmethod
    def merged_metadata(event: events_pb2.TrackUploaded, found: common_pb2.TrackMetadata) -> common_pb2.TrackMetadata:
        """The track's metadata: the event's (the uploader's, checked by the gateway; bounded
        again here, leniently) completed with ``found``, the file's own tags
        (:func:`musicaas.metadata.merge`: ``from_file`` names the fields taken from them).

        The title is the upload's, else the file's title tag; left empty when neither has
        one (the track keeps the file name the gateway gave it). A track from another
        source (the generator) has its event ``title`` as its given title.
        """
        given = md.clean_metadata(event.metadata)
        if not given.title and event.source not in (common_pb2.TRACK_SOURCE_UPLOAD,
                                                    common_pb2.TRACK_SOURCE_UNSPECIFIED):
            given.title = md.clean_text(event.title)
        return md.merge(given, md.clean_metadata(found))

    async def _deleted(self, event: events_pb2.TrackUploaded) -> bool:
        track = await self.bus.get_track(event.tenant, event.track_id)
        return track is not None and track.state == common_pb2.TRACK_STATE_DELETED

    async def failed(self, event: events_pb2.TrackUploaded | None, error: MusicaasError, headers: dict[str, str]) -> None:
        """Mark the track ``failed`` with the reason and publish ``music.<tenant>.tracks.failed``
        (an event without a valid tenant has no track to mark: it is only dead-lettered)."""
        if event is None or not event.tenant or not TENANT_RE.fullmatch(event.tenant):
            return
        await self.bus.fail_track(event.tenant, event.track_id, stage="analyzer", error=error,
                                  ce_id=headers.get("ce-id", ""))
