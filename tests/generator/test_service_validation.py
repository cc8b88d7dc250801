"""GenerateTrack's control validation (no Triton needed)."""

from __future__ import annotations

import pytest

from musicaas.generator.v1 import generator_pb2
from musicaas.runtime.errors import InvalidArgument
from musicaas_generator.service import validate_params


def test_defaults_and_seed_are_filled():
    key, params = validate_params(generator_pb2.GenerationParams(key="f# minor"))
    assert str(key) == "F# minor" and params.key == "F# minor"
    assert params.tempo_bpm == 100 and params.num_bars == 8 and params.temperature == 1.0
    assert params.HasField("seed")
    assert params.metre == "4/4" and params.style == "chorale"
    assert params.HasField("instrument") and 0 <= params.instrument <= 127  # the style's usual instrument
    assert params.top_k == 0 and params.top_p == 1.0 and params.num_variations == 1
    assert not params.HasField("primer_midi") and not params.HasField("melody_midi")


def test_research_controls_are_kept():
    _, params = validate_params(generator_pb2.GenerationParams(
        key="G major", metre="3/4", style="folk", instrument=52, top_k=20, top_p=0.9, num_variations=8, seed=5,
    ))
    assert (params.metre, params.style, params.instrument, params.top_k, params.num_variations, params.seed) == (
        "3/4", "folk", 52, 20, 8, 5)
    assert params.top_p == pytest.approx(0.9)


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
