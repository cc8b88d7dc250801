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
    ],
)
def test_bad_controls_name_the_field(fields, named):
    with pytest.raises(InvalidArgument) as info:
        validate_params(generator_pb2.GenerationParams(**fields))
    assert named in info.value.message
