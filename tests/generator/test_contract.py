"""The tensor contract: argument validation, the request type and its tensors, the per-row outputs (torch-free)."""

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
    assert {n for n, *_ in contract.OUTPUTS} == {contract.TOKENS, contract.ERROR}
    assert contract.OPTIONAL_INPUTS == {contract.TOP_K, contract.TOP_P, contract.MELODY, contract.KEY_GUIDANCE}
    assert contract.MAX_PROMPT_TOKENS >= 1024
    dtypes = {name: (np_dtype, triton_dtype) for name, np_dtype, triton_dtype, _ in contract.INPUTS + contract.OUTPUTS}
    assert dtypes[contract.PROMPT_TOKENS] == ("int64", "INT64")
    assert dtypes[contract.TEMPERATURE] == ("float32", "FP32")
    assert dtypes[contract.TOKENS] == ("int64", "INT64")
    assert dtypes[contract.ERROR] == ("bytes", "BYTES")
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


# ----------------------------------------------------------------------------- the request type


def _request(**overrides):
    kwargs = dict(prompt_tokens=[5, 6, 7], temperature=0.5, seed=-3, num_bars=4, max_new_tokens=100, top_k=7,
                  top_p=0.75, melody=[(1, 1, 62), (0, 1, 60)], key_guidance=False)
    return contract.SampleRequest(**(kwargs | overrides))


def test_every_input_is_a_request_field_in_capitals():
    from dataclasses import fields

    assert [f.name.upper() for f in fields(contract.SampleRequest)] == [name for name, *_ in contract.INPUTS]


def test_request_validates_and_normalises_once():
    r = _request()
    assert r.prompt_tokens == (5, 6, 7) and r.melody == ((0.0, 1.0, 60), (1.0, 1.0, 62))
    assert contract.SampleRequest([1], temperature=1, seed=0, num_bars=3).max_new_tokens == \
        contract.default_max_new_tokens(3)
    with pytest.raises(AttributeError):
        r.seed = 4  # frozen: what was validated stays valid


@pytest.mark.parametrize("field, value", [
    ("prompt_tokens", []), ("prompt_tokens", [1, -1]), ("temperature", 0.0), ("seed", 2**63), ("num_bars", 33),
    ("max_new_tokens", 0), ("top_k", -1), ("top_p", 1.5), ("melody", []), ("melody", [(0, 2, 60), (1, 1, 62)]),
    ("key_guidance", 2),
])
def test_request_names_the_bad_field(field, value):
    with pytest.raises(contract.FieldError) as info:
        _request(**{field: value})
    assert info.value.field == field and field in info.value.message
    assert isinstance(info.value, InvalidArgument)


def test_request_round_trips_through_its_tensors():
    r = _request(temperature=0.5, top_p=0.75)  # exact in float32
    inputs = r.to_inputs()
    expected = {name: (np_dtype, (1, -1) if shape == (-1,) else (1, 1)) for name, np_dtype, _, shape in contract.INPUTS}
    assert set(inputs) == set(expected)
    for name, array in inputs.items():
        assert str(array.dtype) == expected[name][0] and array.shape[0] == 1
    assert inputs[contract.MELODY].tolist() == [[0.0, 1.0, 60.0, 1.0, 1.0, 62.0]]
    assert inputs[contract.KEY_GUIDANCE].tolist() == [[0]]
    assert contract.SampleRequest.from_inputs(inputs) == r
    no_melody = _request(melody=None).to_inputs()
    assert contract.MELODY not in no_melody  # optional: sent only for a harmonisation
    assert contract.SampleRequest.from_inputs(no_melody).melody is None


def test_from_inputs_takes_a_row_and_the_defaults_of_optional_inputs():
    import numpy as np

    inputs = {
        contract.PROMPT_TOKENS: np.asarray([[1, 2], [3, 4]], dtype=np.int64),
        contract.TEMPERATURE: np.asarray([[1.0], [0.5]], dtype=np.float32),
        contract.SEED: np.asarray([[1], [2]], dtype=np.int64),
        contract.NUM_BARS: np.asarray([[1], [2]], dtype=np.int32),
        contract.MAX_NEW_TOKENS: np.asarray([[10], [20]], dtype=np.int32),
        contract.MELODY: np.zeros((2, 0), dtype=np.float32),  # empty: no melody
    }
    assert contract.num_rows(inputs) == 2
    r = contract.SampleRequest.from_inputs(inputs, 1)
    assert (r.prompt_tokens, r.temperature, r.seed, r.num_bars, r.max_new_tokens) == ((3, 4), 0.5, 2, 2, 20)
    assert (r.top_k, r.top_p, r.melody, r.key_guidance) == (0, 1.0, None, True)
    with pytest.raises(contract.FieldError) as info:
        contract.SampleRequest.from_inputs(dict(inputs, **{contract.NUM_BARS: np.asarray([[1], [0]])}), 1)
    assert info.value.field == "num_bars"
    with pytest.raises(contract.FieldError) as info:
        contract.SampleRequest.from_inputs(dict(inputs, **{contract.MELODY: np.ones((2, 4), dtype=np.float32)}), 0)
    assert info.value.field == "melody" and "triples" in info.value.message
    missing = {k: v for k, v in inputs.items() if k != contract.SEED}
    with pytest.raises(contract.FieldError) as info:
        contract.SampleRequest.from_inputs(missing, 0)
    assert info.value.field == "seed"


# ----------------------------------------------------------------------------- the response


def test_outputs_carry_tokens_or_a_field_error_per_row():
    error = contract.FieldError("melody", "melody: the melody lasts 8 beats, longer than num_bars = 1 bars of 4/4")
    outputs = contract.encode_outputs([[5, 6, 7], error, [8]])
    assert outputs[contract.TOKENS].tolist() == [[5, 6, 7], [-1, -1, -1], [8, -1, -1]]
    assert contract.decode_outputs(outputs, 0) == [5, 6, 7] and contract.decode_outputs(outputs, 2) == [8]
    with pytest.raises(contract.FieldError) as info:
        contract.decode_outputs(outputs, 1)
    assert (info.value.field, info.value.message) == (error.field, error.message)
    assert contract.FieldError.from_json(error.to_json()).field == "melody"
    with pytest.raises(ValueError, match="ERROR"):
        contract.FieldError.from_json(b"Traceback (most recent call last): ValueError: boom")
    with pytest.raises(ValueError, match="TOKENS"):
        contract.decode_outputs({contract.ERROR: outputs[contract.ERROR][:1]})
