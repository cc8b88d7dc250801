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
        contract.TOP_K, contract.TOP_P, contract.MELODY, contract.KEY_GUIDANCE,
    }
    assert contract.OPTIONAL_INPUTS == {contract.TOP_K, contract.TOP_P, contract.MELODY, contract.KEY_GUIDANCE}
    assert contract.MAX_PROMPT_TOKENS >= 1024
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


@pytest.mark.parametrize("bad", [-1, 1001, 2.0, True, "5", None])
def test_top_k_range(bad):
    with pytest.raises(InvalidArgument, match="top_k"):
        contract.validate_top_k(bad)


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.01, math.nan, "x", None, True])
def test_top_p_range(bad):
    with pytest.raises(InvalidArgument, match="top_p"):
        contract.validate_top_p(bad)


def test_top_k_top_p_ok():
    assert contract.validate_top_k(0) == 0 and contract.validate_top_k(1000) == 1000
    assert contract.validate_top_p(1) == 1.0 and contract.validate_top_p(0.9) == pytest.approx(0.9)


@pytest.mark.parametrize("bad", ["6/8", "2/4", "", None, "four"])
def test_metre_must_be_supported(bad):
    with pytest.raises(InvalidArgument, match="metre"):
        contract.validate_metre(bad)


@pytest.mark.parametrize("bad", ["jazz", "", None])
def test_style_must_be_known(bad):
    with pytest.raises(InvalidArgument, match="style"):
        contract.validate_style(bad)


def test_metre_style_ok():
    assert [contract.validate_metre(m) for m in contract.SUPPORTED_METRES] == ["4/4", "3/4"]
    assert contract.validate_metre(" 3/4 ") == "3/4"
    assert contract.validate_style("Folk") == "folk"
    assert contract.validate_instrument(None) is None and contract.validate_instrument(73) == 73
    with pytest.raises(InvalidArgument, match="instrument"):
        contract.validate_instrument(128)


def test_validate_melody():
    assert contract.validate_melody([(1, 1, 62), (0, 1, 60)]) == [(0.0, 1.0, 60), (1.0, 1.0, 62)]
    with pytest.raises(InvalidArgument, match="melody: no notes"):
        contract.validate_melody([])
    with pytest.raises(InvalidArgument, match="overlap"):
        contract.validate_melody([(0, 2, 60), (1, 1, 62)])
    with pytest.raises(InvalidArgument, match="melody"):
        contract.validate_melody([(0, 0, 60)])
