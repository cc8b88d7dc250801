"""The generator service: ``GenerateTrack`` / ``GenerateTrackStream`` over the model served by
Triton, and the consumer of asynchronous generation jobs.

One generation: validate the controls (key, metre, tempo, bars, style, instrument,
temperature, top-k, top-p, seed, number of variations, primer or melody MIDI), build the
control-token prompt (with the primer's tokens for a continuation), sample every variation
on Triton *concurrently* (seeds ``seed``, ``seed + 1``, ...: Triton's dynamic batcher fuses
the requests), decode each to a Standard MIDI File in the requested metre, tempo and General
MIDI program, render it with the SoundFont, then store MIDI and WAV in the object store,
record each track (state ``uploaded``, source ``generated``), publish
``music.tracks.uploaded`` per piece (so the analyzer checks it), record the job in the
``generations`` key-value bucket and publish ``music.generations.completed``.

Progress (queued, sampling variation i/N, rendering, storing, completed) goes to an optional
callback; ``GenerateTrackStream`` streams it. Cancelling the call cancels the in-flight
Triton requests and nothing is stored or published afterwards.

Asynchronous jobs arrive on ``music.generations.requested`` (published by the gateway's
``SubmitGeneration``, with the job in state QUEUED in the ``generations`` bucket). The
durable consumer skips jobs that already completed or failed (idempotent by generation id),
marks the job RUNNING, generates, and the job ends COMPLETED, or FAILED (with
``music.generations.failed``) for controls that can never succeed or after the last retry of
a transient error (e.g. Triton down). This module never imports torch.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from typing import Any

import structlog

from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.generator.v1 import generator_pb2, generator_pb2_grpc
from musicaas.keys import Key
from musicaas.render import encode_wav, render_midi
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus, new_id, now_ts
from musicaas.runtime.errors import InvalidArgument, MusicaasError, Unavailable
from musicaas.runtime.settings import ServiceSettings
from musicaas_generator import contract, tokens
from musicaas_generator.triton_client import TritonGenerator

log = structlog.get_logger()

RENDER_SAMPLE_RATE_HZ = 22050
#: Most pieces one request may ask for (the model server's largest batch).
MAX_VARIATIONS = 8
#: Key-value bucket holding one :class:`generator_pb2.GenerationJob` per generation id.
#: Subject of :class:`events_pb2.GenerationFailed` (registered with the bus's CloudEvents types).
GENERATIONS_FAILED = busmod.GENERATIONS_FAILED
#: Durable consumer of ``music.generations.requested``.
REQUESTED_DURABLE = "generator-generations-requested"

DEFAULT_TEMPO_BPM = 100.0
DEFAULT_NUM_BARS = 8
DEFAULT_METRE = "4/4"
DEFAULT_STYLE = "chorale"

Stage = generator_pb2.GenerationStage
State = generator_pb2.GenerationState
DONE_STATES = (generator_pb2.GENERATION_STATE_COMPLETED, generator_pb2.GENERATION_STATE_FAILED)


class GeneratorSettings(ServiceSettings):
    """Generator settings (``MUSICAAS_*``): Triton endpoint, deadlines in seconds, job retries."""
    grpc_port: int = 50054
    #: Triton gRPC endpoint, host:port.
    triton_url: str = "127.0.0.1:8001"
    #: Deadline of one Triton inference, in seconds.
    triton_timeout_s: float = 120.0
    #: Seconds to wait for Triton at start-up before serving anyway (calls then get UNAVAILABLE).
    triton_wait_s: float = 60.0
    #: Deliveries of an asynchronous job before a transient failure (Triton down) fails it.
    job_max_deliver: int = 10
    #: Redelivery delay of a job after a transient failure, in seconds (times the delivery count).
    job_retry_delay_s: float = 2.0


def validate_params(params: generator_pb2.GenerationParams) -> tuple[Key, generator_pb2.GenerationParams]:
    """Check every control; returns the parsed key and the params with defaults and a seed filled in.

    Defaults: tempo_bpm 100, num_bars 8, temperature 1.0 (0 means the default), metre "4/4",
    style "chorale", instrument the style's usual program (unset), top_p 1.0 (unset),
    num_variations 1 (0 means 1), a random seed.
    The primer and melody MIDI are only checked for presence here (their content is parsed
    by :meth:`Generator.prepare`).

    Raises
    ------
    InvalidArgument
        Naming the field: unknown key, tempo_bpm outside [20, 300], num_bars outside [1, 32],
        temperature < 0 or > 5, unknown metre or style, instrument outside [0, 127], top_k < 0,
        top_p outside (0, 1], num_variations outside [1, 8], an empty primer_midi or
        melody_midi, or both of them.
    """
    if not params.key:
        raise InvalidArgument("params.key is empty: expected e.g. 'D minor'")
    try:
        key = Key.parse(params.key)
    except InvalidArgument as exc:
        raise InvalidArgument(f"params.key: {exc.message}") from exc
    out = generator_pb2.GenerationParams()
    out.CopyFrom(params)
    out.key = str(key)
    out.tempo_bpm = contract.validate_tempo(params.tempo_bpm or DEFAULT_TEMPO_BPM)
    out.num_bars = contract.validate_num_bars(params.num_bars or DEFAULT_NUM_BARS)
    # proto3 cannot tell an unset temperature from 0.0; 0 means "default" (1.0), negatives are rejected.
    out.temperature = contract.validate_temperature(params.temperature) if params.temperature else 1.0
    out.metre = contract.validate_metre(params.metre or DEFAULT_METRE)
    out.style = contract.validate_style(params.style or DEFAULT_STYLE)
    if params.HasField("instrument"):
        out.instrument = contract.validate_instrument(params.instrument)
    else:
        out.instrument = int(getattr(tokens, "STYLE_DEFAULTS", {}).get(out.style, {}).get("program", tokens.DEFAULT_PROGRAM))
    out.top_k = contract.validate_top_k(params.top_k)
    out.top_p = contract.validate_top_p(params.top_p) if params.HasField("top_p") else 1.0
    n = params.num_variations or 1
    if not 1 <= n <= MAX_VARIATIONS:
        raise InvalidArgument(f"num_variations must be in [1, {MAX_VARIATIONS}], got {params.num_variations}")
    out.num_variations = n
    if params.HasField("primer_midi") and not params.primer_midi:
        raise InvalidArgument("primer_midi is empty (0 bytes): expected a Standard MIDI File")
    if params.HasField("melody_midi") and not params.melody_midi:
        raise InvalidArgument("melody_midi is empty (0 bytes): expected a monophonic Standard MIDI File")
    if params.HasField("primer_midi") and params.HasField("melody_midi"):
        raise InvalidArgument("primer_midi and melody_midi cannot be combined: continue a primer or harmonise a melody")
    if not params.HasField("seed"):
        out.seed = secrets.randbits(31)
    else:
        out.seed = contract.validate_seed(params.seed)
        if out.seed + n - 1 >= 2**63:
            raise InvalidArgument(f"seed + num_variations - 1 must fit in a signed 64-bit integer, got seed {params.seed}")
    return key, out


# ---------------------------------------------------------------------------- job state (KV)


class JobStore:
    """Generation jobs (:class:`generator_pb2.GenerationJob`) in the ``generations`` bucket."""

    def __init__(self, kv) -> None:
        self.kv = kv

    @classmethod
    def open(cls, bus: Bus) -> "JobStore":
        """The job store of a connected bus (its ``generations`` bucket)."""
        return cls(bus.jobs_kv)

    async def get(self, generation_id: str) -> generator_pb2.GenerationJob | None:
        """The stored job, or None when there is none."""
        return await busmod.get_message(self.kv, generation_id, generator_pb2.GenerationJob)

    async def update(
        self, generation_id: str, change: Callable[[generator_pb2.GenerationJob], None]
    ) -> generator_pb2.GenerationJob:
        """Apply ``change`` to the stored job (created when missing) with optimistic concurrency."""
        return await busmod.update_message(
            self.kv, generation_id, lambda: generator_pb2.GenerationJob(generation_id=generation_id), change,
            what="generation",
        )


def _refs_only(piece: generator_pb2.GeneratedPiece) -> generator_pb2.GeneratedPiece:
    out = generator_pb2.GeneratedPiece()
    out.CopyFrom(piece)
    out.ClearField("midi")
    out.ClearField("audio_wav")
    return out


async def _cancel_all(tasks: list[asyncio.Task]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------------------- generation


class Generator:
    """Runs generations: validate, sample on Triton, decode, render, store, announce."""
    def __init__(self, bus: Bus, triton: TritonGenerator, settings: GeneratorSettings, jobs: JobStore | None = None) -> None:
        self.bus = bus
        self.triton = triton
        self.settings = settings
        self.jobs = jobs
        self.tokenizer = tokens.load_tokenizer()

    def prepare(self, key: Key, params: generator_pb2.GenerationParams) -> tuple[list[int], list[int], Any]:
        """(prompt ids, primer ids, parsed melody or None) of validated params.

        Raises
        ------
        InvalidArgument
            Naming ``primer_midi`` / ``melody_midi`` when the file is malformed, holds no notes,
            or (melody) is not monophonic.
        """
        primer: list[int] = []
        melody = None
        if params.HasField("primer_midi"):
            primer = list(tokens.midi_to_primer_tokens(params.primer_midi, tokenizer=self.tokenizer))
        if params.HasField("melody_midi"):
            melody = tokens.parse_melody(params.melody_midi)
        prompt = tokens.build_prompt(
            key, params.num_bars, metre=params.metre, tempo_bpm=params.tempo_bpm, style=params.style,
            instrument=params.instrument, primer_tokens=primer, tokenizer=self.tokenizer,
        )
        return prompt, primer, melody

    async def _sample(self, prompt: list[int], params: generator_pb2.GenerationParams, seed: int, melody) -> list[int]:
        try:
            return await self.triton.generate(
                prompt,
                temperature=params.temperature,
                seed=seed,
                num_bars=params.num_bars,
                timeout_s=self.settings.triton_timeout_s,
                top_k=params.top_k,
                top_p=params.top_p,
                melody=melody,
                key_guidance=params.key_guidance if params.HasField("key_guidance") else True,
            )
        except Unavailable:
            # Drop the channel so that the next call reconnects at once when Triton is back
            # (instead of waiting out gRPC's reconnect backoff); no restart needed.
            await self.triton.close()
            raise

    def _decode_and_render(self, ids: list[int], params: generator_pb2.GenerationParams, melody):
        midi = tokens.tokens_to_midi(
            ids, tempo_bpm=params.tempo_bpm, program=params.instrument, metre=params.metre, tokenizer=self.tokenizer
        )
        audio = render_midi(midi, sample_rate_hz=RENDER_SAMPLE_RATE_HZ)
        wav = encode_wav(audio, sample_rate_hz=RENDER_SAMPLE_RATE_HZ)
        soprano = tokens.soprano_kept(midi, melody) if melody is not None else None
        return midi, wav, len(audio) / RENDER_SAMPLE_RATE_HZ, soprano

    async def generate(
        self,
        request: generator_pb2.GenerateTrackRequest,
        progress: Callable[[generator_pb2.GenerationProgress], None] | None = None,
    ) -> generator_pb2.GenerationResult:
        """Run one generation (all its variations); ``progress`` receives the stage events.

        Raises
        ------
        InvalidArgument
            Bad controls (naming the field).
        Unavailable
            The model server is down.
        """
        key, params = validate_params(request.params)
        if params.HasField("melody_midi") and not request.params.num_bars and hasattr(tokens, "melody_bars"):
            # a harmonisation is as long as its melody unless num_bars says otherwise
            params.num_bars = contract.validate_num_bars(
                tokens.melody_bars(tokens.parse_melody(params.melody_midi), params.metre)
            )
        prompt, primer, melody = self.prepare(key, params)
        generation_id = request.generation_id or new_id("gen")
        n = params.num_variations
        glog = log.bind(generation_id=generation_id, key=str(key), num_bars=params.num_bars, seed=params.seed,
                        num_variations=n)
        # stages of each variation: sampling, rendering; the fraction counts finished steps
        steps_done = 0

        def emit(stage: int, message: str, variation: int = 0) -> None:
            if progress is not None:
                progress(generator_pb2.GenerationProgress(
                    generation_id=generation_id, stage=stage, variation=variation, num_variations=n,
                    fraction=min(1.0, 0.9 * steps_done / (2 * n)), message=message,
                ))

        emit(generator_pb2.GENERATION_STAGE_QUEUED, "queued")

        async def one(i: int) -> generator_pb2.GeneratedPiece:
            nonlocal steps_done
            seed = params.seed + i
            emit(generator_pb2.GENERATION_STAGE_SAMPLING, f"sampling variation {i + 1}/{n}", i + 1)
            ids = await self._sample(prompt, params, seed, melody)
            steps_done += 1
            emit(generator_pb2.GENERATION_STAGE_RENDERING, f"rendering variation {i + 1}/{n}", i + 1)
            # the output starts with the primer (whether or not the server echoes it)
            piece_ids = ids if ids[: len(primer)] == primer else primer + ids
            midi, wav, duration_s, soprano = await asyncio.to_thread(self._decode_and_render, piece_ids, params, melody)
            steps_done += 1
            piece = generator_pb2.GeneratedPiece(
                index=i, seed=seed, track_id="trk_" + hashlib.sha256(wav).hexdigest()[:24],
                midi=midi, audio_wav=wav, duration_s=duration_s, num_tokens=len(ids),
            )
            if soprano is not None:
                piece.soprano_kept = float(soprano)
            return piece

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        try:
            pieces = await asyncio.gather(*tasks)
        except BaseException:
            # a failed variation (or the caller's cancellation) stops the others: nothing is stored
            await _cancel_all(tasks)
            raise

        emit(generator_pb2.GENERATION_STAGE_STORING, "storing")
        for piece in pieces:
            await self._store(generation_id, key, params, piece)
        refs = [_refs_only(p) for p in pieces]
        if self.jobs is not None:
            def completed(job: generator_pb2.GenerationJob) -> None:
                job.state = generator_pb2.GENERATION_STATE_COMPLETED
                job.params.CopyFrom(params)
                del job.pieces[:]
                job.pieces.extend(refs)
                job.error = ""

            await self.jobs.update(generation_id, completed)
        await self.bus.publish(
            busmod.GENERATIONS_COMPLETED,
            events_pb2.GenerationCompleted(generation_id=generation_id, params=params, pieces=refs),
            event_id=f"completed:{generation_id}",
        )
        glog.info("generation_completed", track_ids=[p.track_id for p in pieces],
                  num_tokens=[p.num_tokens for p in pieces])
        return generator_pb2.GenerationResult(generation_id=generation_id, params=params, pieces=pieces)

    async def _store(self, generation_id: str, key: Key, params: generator_pb2.GenerationParams,
                     piece: generator_pb2.GeneratedPiece) -> None:
        """Store one piece's MIDI and audio, record its track and announce it (fills the blob refs)."""
        track_id = piece.track_id
        title = (f"generated {key} {params.metre} {params.tempo_bpm:g} bpm {params.num_bars} bars "
                 f"{params.style} seed {piece.seed}")
        piece.midi_blob.CopyFrom(await self.bus.put_blob(
            f"generations/{generation_id}/piece-{piece.index}.mid", piece.midi, content_type="audio/midi"
        ))
        piece.audio_blob.CopyFrom(await self.bus.put_blob(
            f"tracks/{track_id}/audio.wav", piece.audio_wav, content_type="audio/wav"
        ))
        await self.bus.create_track(
            common_pb2.Track(
                track_id=track_id,
                state=common_pb2.TRACK_STATE_UPLOADED,
                title=title,
                filename="audio.wav",
                source=common_pb2.TRACK_SOURCE_GENERATED,
                audio_blob=piece.audio_blob,
                created_at=now_ts(),
                updated_at=now_ts(),
                generation_id=generation_id,
            )
        )
        await self.bus.publish(
            busmod.TRACKS_UPLOADED,
            events_pb2.TrackUploaded(
                track_id=track_id, audio_blob=piece.audio_blob, filename="audio.wav", title=title,
                source=common_pb2.TRACK_SOURCE_GENERATED, generation_id=generation_id,
            ),
            event_id=f"uploaded:{track_id}",
        )

    # ------------------------------------------------------------------------ async jobs

    async def handle_requested(self, event: events_pb2.GenerationRequested, headers: dict[str, str]) -> None:
        """Consumer of ``music.generations.requested``: run the job unless it already finished.

        Bad controls end the job FAILED (and the message is acked); transient errors are
        raised so that the bus redelivers the job later.
        """
        generation_id = event.generation_id
        if not generation_id:
            raise InvalidArgument("GenerationRequested without a generation_id")
        job = await self.jobs.get(generation_id)
        if job is not None and job.state in DONE_STATES:
            log.info("generation_job_skipped", generation_id=generation_id, state=State.Name(job.state))
            return

        def running(j: generator_pb2.GenerationJob) -> None:
            j.state = generator_pb2.GENERATION_STATE_RUNNING
            if not j.HasField("params"):
                j.params.CopyFrom(event.params)

        await self.jobs.update(generation_id, running)
        try:
            await self.generate(generator_pb2.GenerateTrackRequest(params=event.params, generation_id=generation_id))
        except MusicaasError as exc:
            if not exc.permanent:
                raise
            await self.fail_job(event, exc, headers)

    async def fail_job(self, event: events_pb2.GenerationRequested | None, error: MusicaasError, headers) -> None:
        """Mark the job FAILED with the reason and publish ``music.generations.failed``."""
        if event is None or not event.generation_id:
            return
        generation_id = event.generation_id
        reason = f"{error.code.name}: {error.message}"

        def failed(j: generator_pb2.GenerationJob) -> None:
            j.state = generator_pb2.GENERATION_STATE_FAILED
            j.error = reason
            if not j.HasField("params"):
                j.params.CopyFrom(event.params)

        await self.jobs.update(generation_id, failed)
        await self.bus.publish(
            GENERATIONS_FAILED,
            events_pb2.GenerationFailed(generation_id=generation_id, code=error.code.name, reason=error.message),
            event_id=f"failed:{generation_id}",
        )
        log.warning("generation_failed", generation_id=generation_id, error=reason)

    async def consume_requests(self) -> None:
        """Run the durable consumer of asynchronous jobs until cancelled."""
        await self.bus.consume(
            durable=REQUESTED_DURABLE,
            subject=busmod.GENERATIONS_REQUESTED,
            message_type=events_pb2.GenerationRequested,
            handler=self.handle_requested,
            on_permanent_failure=self.fail_job,
            max_deliver=self.settings.job_max_deliver,
            nak_delay_s=self.settings.job_retry_delay_s,
            ack_wait_s=max(300.0, 2 * self.settings.triton_timeout_s + 60.0),
        )


class GeneratorServicer(generator_pb2_grpc.GeneratorServiceServicer):
    """``musicaas.generator.v1.GeneratorService`` over :class:`Generator`."""
    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    async def GenerateTrack(self, request, context) -> generator_pb2.GenerateTrackResponse:
        return generator_pb2.GenerateTrackResponse(result=await self.generator.generate(request))

    async def GenerateTrackStream(self, request, context):
        """Progress events, then COMPLETED with the result; the caller's cancellation stops the work."""
        if not request.generation_id:
            request = generator_pb2.GenerateTrackRequest(params=request.params, generation_id=new_id("gen"))
        generation_id = request.generation_id
        queue: asyncio.Queue[generator_pb2.GenerationProgress] = asyncio.Queue()
        task = asyncio.create_task(self.generator.generate(request, progress=queue.put_nowait))
        getter: asyncio.Future | None = None
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                    continue
                getter.cancel()
                while not queue.empty():
                    yield queue.get_nowait()
                result = task.result()  # raises the generation's error
                yield generator_pb2.GenerationProgress(
                    generation_id=generation_id, stage=generator_pb2.GENERATION_STAGE_COMPLETED,
                    num_variations=len(result.pieces), fraction=1.0, message="completed", result=result,
                )
                return
        finally:
            if getter is not None and not getter.done():
                getter.cancel()
            if not task.done():
                # the caller went away (or the server is stopping): stop sampling, store nothing
                task.cancel()
                try:
                    await task
                except BaseException:  # noqa: BLE001 - cancelled on purpose
                    pass
                log.info("generation_cancelled", generation_id=generation_id)
