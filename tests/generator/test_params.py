"""GenerateTrack's controls: validation, defaults and the plan of a generation (no Triton needed)."""

from __future__ import annotations

import pytest

from musicaas.generator.v1 import generator_pb2
from musicaas.runtime.errors import InvalidArgument
from musicaas_generator import contract, tokens
from musicaas_generator.params import MAX_VARIATIONS, plan_generation, validate_params
from generator_helpers import midi_of  # noqa: E402 - tests/generator is on sys.path


def test_defaults_and_seed_are_filled():
    key, params = validate_params(generator_pb2.GenerationParams(key="f# minor"))
    assert str(key) == "F# minor" and params.key == "F# minor"
    assert params.tempo_bpm == 100 and params.num_bars == 8 and params.temperature == 1.0
    assert params.HasField("seed")
    assert params.metre == "4/4" and params.style == "chorale"
    assert params.instrument == 52  # Choir Aahs, the chorale style's usual instrument
    assert params.top_k == 0 and params.top_p == 1.0 and params.num_variations == 1
    assert not params.HasField("primer_midi") and not params.HasField("melody_midi")
    assert not params.HasField("key_guidance")  # unset: on, and reported as the caller left it


def test_each_style_defaults_to_its_own_instrument():
    _, folk = validate_params(generator_pb2.GenerationParams(key="G major", style="folk"))
    assert folk.instrument == 73  # Flute
    _, chosen = validate_params(generator_pb2.GenerationParams(key="G major", style="folk", instrument=0))
    assert chosen.HasField("instrument") and chosen.instrument == 0  # an explicit 0 (piano) is kept


def test_seeds_are_random_when_unset():
    seeds = {validate_params(generator_pb2.GenerationParams(key="C major"))[1].seed for _ in range(8)}
    assert len(seeds) > 1 and all(0 <= s < 2**31 for s in seeds)


def test_research_controls_are_kept():
    _, params = validate_params(generator_pb2.GenerationParams(
        key="G major", metre="3/4", style="folk", instrument=52, top_k=20, top_p=0.9, num_variations=8, seed=5,
    ))
    assert (params.metre, params.style, params.instrument, params.top_k, params.num_variations, params.seed) == (
        "3/4", "folk", 52, 20, 8, 5)
    assert params.top_p == pytest.approx(0.9)
    assert MAX_VARIATIONS == contract.MAX_BATCH_SIZE  # every variation fits one dynamic batch


@pytest.mark.parametrize(
    "fields, named",
    [
        (dict(key=""), "key"),
        (dict(key="H major"), "key"),
        (dict(key="D dorian"), "key"),
        (dict(key="D minor", tempo_bpm=500), "tempo"),
        (dict(key="D minor", num_bars=-2), "num_bars"),
        (dict(key="D minor", num_bars=33), "num_bars"),
        (dict(key="D minor", temperature=-0.5), "temperature"),
        (dict(key="D minor", metre="5/4"), "metre"),
        (dict(key="D minor", style="jazz"), "style"),
        (dict(key="D minor", instrument=128), "instrument"),
        (dict(key="D minor", instrument=-1), "instrument"),
        (dict(key="D minor", top_k=-1), "top_k"),
        (dict(key="D minor", top_p=0.0), "top_p"),
        (dict(key="D minor", top_p=1.5), "top_p"),
        (dict(key="D minor", num_variations=9), "num_variations"),
        (dict(key="D minor", num_variations=-1), "num_variations"),
        (dict(key="D minor", primer_midi=b""), "primer_midi"),
        (dict(key="D minor", melody_midi=b""), "melody_midi"),
        (dict(key="D minor", primer_midi=b"MThd", melody_midi=b"MThd"), "melody_midi"),
        (dict(key="D minor", seed=2**63 - 1, num_variations=2), "seed"),
    ],
)
def test_bad_controls_name_the_field(fields, named):
    with pytest.raises(InvalidArgument) as info:
        validate_params(generator_pb2.GenerationParams(**fields))
    assert named in info.value.message


def test_plan_has_one_request_per_variation_with_consecutive_seeds(tokenizer):
    plan = plan_generation(generator_pb2.GenerationParams(
        key="A minor", num_bars=3, seed=7, num_variations=3, temperature=0.8, top_k=4, top_p=0.5, key_guidance=False,
    ), tokenizer=tokenizer)
    assert [r.seed for r in plan.requests] == [7, 8, 9]
    assert len({r.prompt_tokens for r in plan.requests}) == 1
    r = plan.requests[0]
    assert (r.num_bars, r.top_k, r.key_guidance, r.melody) == (3, 4, False, None)
    assert r.temperature == pytest.approx(0.8) and r.top_p == pytest.approx(0.5)
    assert r.max_new_tokens == contract.default_max_new_tokens(3)
    assert tokens.token_names(r.prompt_tokens, tokenizer=tokenizer)[:2] == ["Style_chorale", "Key_A-minor"]
    assert plan.primer == ()


def test_plan_reads_the_melody_once_and_takes_its_length(tokenizer, monkeypatch):
    calls = []
    real = tokens.parse_melody
    monkeypatch.setattr(tokens, "parse_melody", lambda midi: calls.append(midi) or real(midi))
    melody_midi = midi_of([(float(b), 1.0, 67 + b % 3) for b in range(10)])  # 10 beats: 3 bars of 4/4
    plan = plan_generation(generator_pb2.GenerationParams(key="G major", melody_midi=melody_midi, seed=1,
                                                          num_variations=2), tokenizer=tokenizer)
    assert calls == [melody_midi]
    assert plan.params.num_bars == 3 and all(r.num_bars == 3 for r in plan.requests)
    assert plan.requests[0].melody == tuple((float(b), 1.0, 67 + b % 3) for b in range(10))
    assert plan.melody[0] == tokens.MelodyNote(0.0, 1.0, 67)
    explicit = plan_generation(generator_pb2.GenerationParams(key="G major", melody_midi=melody_midi, num_bars=5),
                               tokenizer=tokenizer)
    assert explicit.params.num_bars == 5  # num_bars given: kept


def test_plan_names_a_bad_primer(tokenizer):
    with pytest.raises(InvalidArgument, match="primer_midi"):
        plan_generation(generator_pb2.GenerationParams(key="C major", primer_midi=b"not midi"), tokenizer=tokenizer)
