"""The generator service: ``GenerateTrack`` over the model served by Triton.

One generation: validate the controls, build the control-token prompt, sample on Triton
(:class:`~musicaas_generator.triton_client.TritonGenerator`), decode the tokens to a
Standard MIDI File at the requested tempo, render it with the General MIDI SoundFont,
store MIDI and WAV in the object store, record the track (state ``uploaded``, source
``generated``), and publish ``music.tracks.uploaded`` (so the analyzer checks the piece)
and ``music.generations.completed``. This module never imports torch.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets

import structlog

from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.generator.v1 import generator_pb2, generator_pb2_grpc
from musicaas.keys import Key
from musicaas.render import encode_wav, render_midi
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus, new_id, now_ts
from musicaas.runtime.errors import InvalidArgument
from musicaas.runtime.settings import ServiceSettings
from musicaas_generator import contract
from musicaas_generator.tokens import build_prompt, load_tokenizer, tokens_to_midi
from musicaas_generator.triton_client import TritonGenerator

log = structlog.get_logger()

RENDER_SAMPLE_RATE_HZ = 22050


class GeneratorSettings(ServiceSettings):
    grpc_port: int = 50054
    #: Triton gRPC endpoint, host:port.
    triton_url: str = "127.0.0.1:8001"
    #: Deadline of one Triton inference, in seconds.
    triton_timeout_s: float = 120.0
    #: Seconds to wait for Triton at start-up before serving anyway (calls then get UNAVAILABLE).
    triton_wait_s: float = 60.0


def validate_params(params: generator_pb2.GenerationParams) -> tuple[Key, generator_pb2.GenerationParams]:
    """Check every control; returns the parsed key and the params with defaults and a seed filled in.

    Raises
    ------
    InvalidArgument
        Naming the field: unknown key, tempo_bpm outside [20, 300], num_bars outside [1, 32],
        temperature <= 0 or > 5.
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
    out.tempo_bpm = contract.validate_tempo(params.tempo_bpm or 100.0)
    out.num_bars = contract.validate_num_bars(params.num_bars or 8)
    # proto3 cannot tell an unset temperature from 0.0; 0 means "default" (1.0), negatives are rejected.
    out.temperature = contract.validate_temperature(params.temperature) if params.temperature else 1.0
    if not params.HasField("seed"):
        out.seed = secrets.randbits(31)
    else:
        out.seed = contract.validate_seed(params.seed)
    return key, out


class Generator:
    def __init__(self, bus: Bus, triton: TritonGenerator, settings: GeneratorSettings) -> None:
        self.bus = bus
        self.triton = triton
        self.settings = settings
        self.tokenizer = load_tokenizer()

    async def generate(self, request: generator_pb2.GenerateTrackRequest) -> generator_pb2.GenerateTrackResponse:
        key, params = validate_params(request.params)
        generation_id = request.generation_id or new_id("gen")
        glog = log.bind(generation_id=generation_id, key=str(key), num_bars=params.num_bars, seed=params.seed)
        prompt = build_prompt(key, params.num_bars, tokenizer=self.tokenizer)
        tokens = await self.triton.generate(
            prompt,
            temperature=params.temperature,
            seed=params.seed,
            num_bars=params.num_bars,
            timeout_s=self.settings.triton_timeout_s,
        )
        midi = tokens_to_midi(tokens, tempo_bpm=params.tempo_bpm, tokenizer=self.tokenizer)
        audio = await asyncio.to_thread(render_midi, midi, sample_rate_hz=RENDER_SAMPLE_RATE_HZ)
        wav = encode_wav(audio, sample_rate_hz=RENDER_SAMPLE_RATE_HZ)
        duration_s = len(audio) / RENDER_SAMPLE_RATE_HZ
        track_id = "trk_" + hashlib.sha256(wav).hexdigest()[:24]
        title = f"generated {key} {params.tempo_bpm:g} bpm {params.num_bars} bars seed {params.seed}"

        midi_ref = await self.bus.put_blob(f"generations/{generation_id}/piece.mid", midi, content_type="audio/midi")
        audio_ref = await self.bus.put_blob(f"tracks/{track_id}/audio.wav", wav, content_type="audio/wav")
        await self.bus.create_track(
            common_pb2.Track(
                track_id=track_id,
                state=common_pb2.TRACK_STATE_UPLOADED,
                title=title,
                filename="audio.wav",
                source=common_pb2.TRACK_SOURCE_GENERATED,
                audio=audio_ref,
                created_at=now_ts(),
                updated_at=now_ts(),
                generation_id=generation_id,
            )
        )
        await self.bus.publish(
            busmod.TRACKS_UPLOADED,
            events_pb2.TrackUploaded(
                track_id=track_id, audio=audio_ref, filename="audio.wav", title=title,
                source=common_pb2.TRACK_SOURCE_GENERATED, generation_id=generation_id,
            ),
            event_id=f"uploaded:{track_id}",
        )
        await self.bus.publish(
            busmod.GENERATIONS_COMPLETED,
            events_pb2.GenerationCompleted(
                generation_id=generation_id, track_id=track_id, params=params,
                midi=midi_ref, audio=audio_ref, duration_s=duration_s,
            ),
            event_id=f"completed:{generation_id}",
        )
        glog.info("generation_completed", track_id=track_id, num_tokens=len(tokens), duration_s=round(duration_s, 2))
        return generator_pb2.GenerateTrackResponse(
            generation_id=generation_id,
            track_id=track_id,
            params=params,
            midi=midi,
            audio_wav=wav,
            midi_blob=midi_ref,
            audio_blob=audio_ref,
            duration_s=duration_s,
            num_tokens=len(tokens),
        )


class GeneratorServicer(generator_pb2_grpc.GeneratorServiceServicer):
    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    async def GenerateTrack(self, request, context) -> generator_pb2.GenerateTrackResponse:
        return await self.generator.generate(request)
