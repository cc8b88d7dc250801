"""Generation controls: validation and defaults, and the plan of one generation (torch-free).

:func:`validate_params` checks every control of a ``GenerationParams`` and fills in the
defaults and a seed; :func:`plan_generation` then reads the primer or melody MIDI (once),
builds the control-token prompt and one :class:`~musicaas_generator.contract.SampleRequest`
per variation (seeds ``seed``, ``seed + 1``, ...).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from musicaas.generator.v1 import generator_pb2
from musicaas.keys import Key
from musicaas.runtime.errors import InvalidArgument
from musicaas_generator import contract, tokens

DEFAULT_TEMPO_BPM = 100.0
DEFAULT_NUM_BARS = 8
DEFAULT_METRE = "4/4"
DEFAULT_STYLE = "chorale"
#: Most pieces one request may ask for: the model server's largest batch.
MAX_VARIATIONS = contract.MAX_BATCH_SIZE


def validate_params(params: generator_pb2.GenerationParams) -> tuple[Key, generator_pb2.GenerationParams]:
    """Check every control; returns the parsed key and the params with defaults and a seed filled in.

    Defaults: tempo_bpm 100, num_bars 8, temperature 1.0 (0 means the default), metre "4/4",
    style "chorale", instrument the style's usual program (:data:`tokens.STYLE_DEFAULTS`),
    top_p 1.0 (unset), num_variations 1 (0 means 1), a random seed. The primer and melody
    MIDI are only checked for presence here (:func:`plan_generation` reads them).

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
        out.instrument = tokens.STYLE_DEFAULTS[out.style]["program"]
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
            raise InvalidArgument(
                f"seed + num_variations - 1 must fit in a signed 64-bit integer, got seed {params.seed}")
    return key, out


@dataclass(frozen=True)
class GenerationPlan:
    """What one generation samples: validated params, the prompt and one request per variation.

    Attributes
    ----------
    key : Key
    params : generator_pb2.GenerationParams
        With defaults and the seed filled in (and ``num_bars`` from the melody when unset).
    primer : tuple of int
        The primer's REMI ids (empty without ``primer_midi``); the output starts with them.
    melody : tuple of tokens.MelodyNote, optional
        The melody to harmonise (``melody_midi``, parsed once).
    requests : tuple of contract.SampleRequest
        Variation ``i`` samples ``requests[i]`` (seed ``params.seed + i``).
    """

    key: Key
    params: generator_pb2.GenerationParams
    primer: tuple[int, ...]
    melody: tuple[tokens.MelodyNote, ...] | None
    requests: tuple[contract.SampleRequest, ...]


def plan_generation(params: generator_pb2.GenerationParams, *, tokenizer) -> GenerationPlan:
    """Validate ``params`` (:func:`validate_params`), read the primer or melody and build the requests.

    A harmonisation is as long as its melody unless ``num_bars`` says otherwise.

    Raises
    ------
    InvalidArgument
        Naming the field, as :func:`validate_params`; ``primer_midi`` / ``melody_midi`` when
        the file is malformed, holds no notes, or (melody) is not monophonic.
    """
    key, out = validate_params(params)
    melody = tuple(tokens.parse_melody(out.melody_midi)) if out.HasField("melody_midi") else None
    if melody is not None and not params.num_bars:
        out.num_bars = contract.validate_num_bars(tokens.melody_bars(melody, out.metre))
    primer: tuple[int, ...] = ()
    if out.HasField("primer_midi"):
        primer = tuple(tokens.midi_to_primer_tokens(out.primer_midi, tokenizer=tokenizer))
    prompt = tokens.build_prompt(
        key, out.num_bars, metre=out.metre, tempo_bpm=out.tempo_bpm, style=out.style, instrument=out.instrument,
        primer_tokens=primer, tokenizer=tokenizer,
    )
    requests = tuple(
        contract.SampleRequest(
            prompt, temperature=out.temperature, seed=out.seed + i, num_bars=out.num_bars, top_k=out.top_k,
            top_p=out.top_p, melody=melody, key_guidance=out.key_guidance if out.HasField("key_guidance") else True,
        )
        for i in range(out.num_variations)
    )
    return GenerationPlan(key=key, params=out, primer=primer, melody=melody, requests=requests)
