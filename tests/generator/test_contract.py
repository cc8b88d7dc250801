"""The tensor contract and argument validation (torch-free)."""

from __future__ import annotations

import math

import pytest

from musicaas.runtime.errors import InvalidArgument
from musicaas_generator import contract


def test_tensor_names_are_unique_and_typed():
    names = [name for name, *_ in contract.INPUTS + contract.OUTPUTS]
    assert len(names) == len(set(names))
    assert {n for n, *_ in contract.INPUTS} == {
        contract.PROMPT_TOKENS, contract.TEMPERATURE, contract.SEED, contract.NUM_BARS, contract.MAX_NEW_TOKENS,
    }
    dtypes = {name: (np_dtype, triton_dtype) for name, np_dtype, triton_dtype, _ in contract.INPUTS + contract.OUTPUTS}
    assert dtypes[contract.PROMPT_TOKENS] == ("int64", "INT64")
    assert dtypes[contract.TEMPERATURE] == ("float32", "FP32")
    assert dtypes[contract.TOKENS] == ("int64", "INT64")
    assert contract.MAX_BATCH_SIZE > 0


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, math.nan, math.inf, 100.0, "hot", None])
def test_temperature_must_be_positive(bad):
    with pytest.raises(InvalidArgument, match="temperature"):
        contract.validate_temperature(bad)


def test_temperature_ok():
    assert contract.validate_temperature(0.7) == pytest.approx(0.7)


@pytest.mark.parametrize("bad", [0, -3, 33, 1000, 2.5, True, "8"])
def test_num_bars_range(bad):
    with pytest.raises(InvalidArgument, match="num_bars"):
        contract.validate_num_bars(bad)


@pytest.mark.parametrize("ok", [1, 16, 32])
def test_num_bars_ok(ok):
    assert contract.validate_num_bars(ok) == ok


@pytest.mark.parametrize("bad", [19.9, 0, -120, 300.5, math.nan, "fast"])
def test_tempo_range(bad):
    with pytest.raises(InvalidArgument, match="tempo_bpm"):
        contract.validate_tempo(bad)


@pytest.mark.parametrize("ok", [20, 96.5, 300])
def test_tempo_ok(ok):
    assert contract.validate_tempo(ok) == float(ok)


def test_other_validators():
    with pytest.raises(InvalidArgument, match="max_new_tokens"):
        contract.validate_max_new_tokens(0)
    with pytest.raises(InvalidArgument, match="max_new_tokens"):
        contract.validate_max_new_tokens(contract.MAX_NEW_TOKENS_LIMIT + 1)
    with pytest.raises(InvalidArgument, match="seed"):
        contract.validate_seed(2**63)
    with pytest.raises(InvalidArgument, match="prompt_tokens"):
        contract.validate_prompt([])
    with pytest.raises(InvalidArgument, match="prompt_tokens"):
        contract.validate_prompt([1, -2])
    assert contract.default_max_new_tokens(32) <= contract.MAX_NEW_TOKENS_LIMIT


def test_strip_padding():
    assert contract.strip_padding([5, 6, contract.TOKENS_PAD, contract.TOKENS_PAD]) == [5, 6]
    assert contract.strip_padding([contract.TOKENS_PAD]) == []
    assert contract.strip_padding([]) == []
