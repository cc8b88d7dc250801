"""One generation: sample on Triton, decode, render, store, announce (torch-free).

:meth:`Generator.generate` plans the generation (:func:`musicaas_generator.params.plan_generation`:
controls, primer or melody, prompt), samples every variation on Triton *concurrently* (seeds
``seed``, ``seed + 1``, ...: Triton's dynamic batcher fuses the requests), decodes each to a
Standard MIDI File in the requested metre, tempo and General MIDI program, renders it with
the SoundFont, then stores the MIDI, adds each piece as a track (:meth:`Bus.add_track`:
state ``uploaded``, source ``generated``, ``music.tracks.uploaded``, so the analyzer checks
it), records the job as COMPLETED and publishes ``music.generations.completed``.

Progress (queued, sampling variation i/N, rendering, storing, completed) goes to an optional
callback. Cancelling the call cancels the in-flight Triton requests, and nothing is stored or
published afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.generator.v1 import generator_pb2
from musicaas.render import encode_wav, render_midi
from musicaas.runtime import bus as busmod
from musicaas.runtime import telemetry
from musicaas.runtime.bus import Bus, new_id
from musicaas.runtime.errors import Unavailable
from musicaas_generator import contract, tokens
from musicaas_generator.params import GenerationPlan, plan_generation
from musicaas_generator.settings import GeneratorSettings
from musicaas_generator.triton_client import TritonGenerator

log = structlog.get_logger()

RENDER_SAMPLE_RATE_HZ = 22050


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


class Generator:
    """Runs generations: plan, sample on Triton, decode, render, store, announce."""

    def __init__(self, bus: Bus, triton: TritonGenerator, settings: GeneratorSettings) -> None:
        self.bus = bus
        self.triton = triton
        self.settings = settings
        self.tokenizer = tokens.load_tokenizer()

    async def _sample(self, request: contract.SampleRequest) -> list[int]:
        try:
            return await self.triton.generate(request, timeout_s=self.settings.triton_timeout_s)
        except Unavailable:
            # Drop the channel so that the next call reconnects at once when Triton is back
            # (instead of waiting out gRPC's reconnect backoff); no restart needed.
            await self.triton.close()
            raise

    def _decode_and_render(self, ids: list[int], plan: GenerationPlan):
        params = plan.params
        midi = tokens.tokens_to_midi(
            ids, tempo_bpm=params.tempo_bpm, program=params.instrument, metre=params.metre, tokenizer=self.tokenizer
        )
        audio = render_midi(midi, sample_rate_hz=RENDER_SAMPLE_RATE_HZ)
        wav = encode_wav(audio, sample_rate_hz=RENDER_SAMPLE_RATE_HZ)
        soprano = tokens.soprano_kept(midi, plan.melody) if plan.melody is not None else None
        return midi, wav, len(audio) / RENDER_SAMPLE_RATE_HZ, soprano

    async def generate(
        self,
        request: generator_pb2.GenerateTrackRequest,
        progress: Callable[[generator_pb2.GenerationProgress], None] | None = None,
        *,
        tenant: str,
    ) -> generator_pb2.GenerationResult:
        """Run one generation (all its variations) for ``tenant``, whose tracks the pieces
        become; ``progress`` receives the stage events.

        Raises
        ------
        InvalidArgument
            Bad controls (naming the field).
        Unavailable
            The model server is down.
        """
        plan = plan_generation(request.params, tokenizer=self.tokenizer)
        t0 = time.perf_counter()
        params = plan.params
        generation_id = request.generation_id or new_id("gen")
        n = params.num_variations
        glog = log.bind(generation_id=generation_id, key=str(plan.key), num_bars=params.num_bars, seed=params.seed,
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
            sample = plan.requests[i]
            emit(generator_pb2.GENERATION_STAGE_SAMPLING, f"sampling variation {i + 1}/{n}", i + 1)
            ids = await self._sample(sample)
            steps_done += 1
            emit(generator_pb2.GENERATION_STAGE_RENDERING, f"rendering variation {i + 1}/{n}", i + 1)
            # the output starts with the primer (whether or not the server echoes it)
            primer = list(plan.primer)
            piece_ids = ids if ids[: len(primer)] == primer else primer + ids
            midi, wav, duration_s, soprano = await asyncio.to_thread(self._decode_and_render, piece_ids, plan)
            steps_done += 1
            piece = generator_pb2.GeneratedPiece(
                index=i, seed=sample.seed,
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
            await self._store(tenant, generation_id, plan, piece)
        refs = [_refs_only(p) for p in pieces]

        def completed(job: generator_pb2.GenerationJob) -> None:
            job.state = generator_pb2.GENERATION_STATE_COMPLETED
            job.params.CopyFrom(params)
            del job.pieces[:]
            job.pieces.extend(refs)
            job.error = ""

        await self.bus.update_job(tenant, generation_id, completed)
        await self.bus.record_usage(  # once per generation id, however often a job is retried
            tenant, "generated", generation_id, generations=1, pieces_generated=len(pieces),
            tokens_generated=sum(p.num_tokens for p in pieces), storage_bytes=sum(len(p.midi) for p in pieces),
        )
        await self.bus.publish(
            busmod.GENERATIONS_COMPLETED,
            events_pb2.GenerationCompleted(generation_id=generation_id, tenant=tenant, params=params, pieces=refs),
            event_id=f"completed:{tenant}:{generation_id}",
        )
        glog.info("generation_completed", track_ids=[p.track_id for p in pieces],
                  num_tokens=[p.num_tokens for p in pieces])
        telemetry.GENERATION_SECONDS.observe(time.perf_counter() - t0)
        return generator_pb2.GenerationResult(generation_id=generation_id, params=params, pieces=pieces)

    async def _store(self, tenant: str, generation_id: str, plan: GenerationPlan,
                     piece: generator_pb2.GeneratedPiece) -> None:
        """Store one piece's MIDI and add its audio as ``tenant``'s track (fills the track id and blob refs)."""
        p = plan.params
        title = (f"generated {plan.key} {p.metre} {p.tempo_bpm:g} bpm {p.num_bars} bars "
                 f"{p.style} seed {piece.seed}")
        piece.midi_blob.CopyFrom(await self.bus.put_blob(
            f"{tenant}/generations/{generation_id}/piece-{piece.index}.mid", piece.midi, content_type="audio/midi"
        ))
        track = await self.bus.add_track(
            piece.audio_wav, tenant=tenant, filename="audio.wav", title=title, content_type="audio/wav",
            source=common_pb2.TRACK_SOURCE_GENERATED, generation_id=generation_id,
        )
        piece.audio_blob.CopyFrom(track.audio_blob)
        piece.track_id = track.track_id
