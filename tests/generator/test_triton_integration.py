"""A real Triton (PyTriton, CPU) serving the tiny model, called through TritonGenerator."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from musicaas.keys import Key
from musicaas.render import parse_midi
from musicaas.runtime.errors import InvalidArgument, Unavailable
from musicaas.runtime.procs import free_port
from musicaas_generator import contract, tokens
from musicaas_generator.contract import SampleRequest
from musicaas_generator.triton_client import TritonGenerator
from generator_helpers import midi_of  # noqa: E402 - tests/generator is on sys.path

pytestmark = pytest.mark.integration


async def test_generate_decodes_to_midi(tiny_triton, tokenizer):
    prompt = tokens.build_prompt(Key.parse("E minor"), 4, tokenizer=tokenizer)

    def req(seed):
        return SampleRequest(prompt, temperature=1.0, seed=seed, num_bars=4, max_new_tokens=300)

    async with TritonGenerator(tiny_triton.grpc_url, timeout_s=30) as g:
        await g.wait_ready(timeout_s=10)
        out = await g.generate(req(3))
        again = await g.generate(req(3))
        other = await g.generate(req(4))
    assert 0 < len(out) <= 300
    assert all(0 <= t < len(tokenizer.vocab) for t in out)
    assert out == again and out != other
    score = parse_midi(tokens.tokens_to_midi(out, tempo_bpm=110, tokenizer=tokenizer))
    assert score.note_num() > 0
    assert score.tempos[0].qpm == pytest.approx(110, rel=1e-4)


async def test_concurrent_requests_share_forward_passes_and_each_gets_its_own_tokens(tiny_triton, tokenizer):
    prompts = [tokens.build_prompt(Key.parse(key), 2, tokenizer=tokenizer) for key in ("C major", "Bb minor")]
    requests = [SampleRequest(prompts[i % 2], temperature=0.9, seed=i, num_bars=2, max_new_tokens=20 + i)
                for i in range(6)]
    async with TritonGenerator(tiny_triton.grpc_url, timeout_s=30) as g:
        await g.wait_ready(timeout_s=10)
        before = Counter(tiny_triton.model.batch_sizes)
        results = await asyncio.gather(*[g.generate(r) for r in requests])
        batches = tiny_triton.model.batch_sizes - before
        alone = await g.generate(requests[3])
    assert [0 < len(r) <= 20 + i for i, r in enumerate(results)] == [True] * 6
    # every request was sampled exactly once, in fewer sampling loops than requests: Triton's
    # dynamic batcher put concurrent requests into one forward pass
    assert sum(size * count for size, count in batches.items()) == 6
    assert sum(batches.values()) < 6 and max(batches) >= 2, batches
    assert len({tuple(r) for r in results}) == 6  # each seed its own tokens
    assert alone == results[3]  # a row does not depend on the rows it was batched with


async def test_bad_arguments_fail_before_the_network():
    with pytest.raises(InvalidArgument, match="temperature"):
        SampleRequest([1, 2, 3], temperature=0.0, seed=1, num_bars=4)
    with pytest.raises(InvalidArgument, match="num_bars"):
        SampleRequest([1, 2, 3], temperature=1.0, seed=1, num_bars=40)


async def test_nothing_listening_is_unavailable():
    url = f"127.0.0.1:{free_port()}"
    async with TritonGenerator(url, timeout_s=3) as g:
        assert await g.is_ready(timeout_s=0.5) is False
        with pytest.raises(Unavailable, match=f"model server at {url} is unavailable"):
            await g.wait_ready(timeout_s=0.5)
        with pytest.raises(Unavailable, match=f"model server at {url} is unavailable"):
            await g.generate(SampleRequest([1, 2, 3], temperature=1.0, seed=1, num_bars=2, max_new_tokens=5))


async def test_unknown_model_is_unavailable(tiny_triton):
    async with TritonGenerator(tiny_triton.grpc_url, timeout_s=5, model_name="no_such_model") as g:
        assert await g.is_ready() is False
        with pytest.raises(Unavailable):
            await g.generate(SampleRequest([1, 2, 3], temperature=1.0, seed=1, num_bars=2, max_new_tokens=5))


def test_contract_matches_the_served_model(tiny_triton):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{tiny_triton.http_port}")
    try:
        meta = client.get_model_metadata(contract.MODEL_NAME)
        config = client.get_model_config(contract.MODEL_NAME)
    finally:
        client.close()
    served = {t["name"]: (t["datatype"], [int(x) for x in t["shape"][1:]]) for t in meta["inputs"] + meta["outputs"]}
    expected = {name: (dt, list(shape)) for name, _, dt, shape in contract.INPUTS + contract.OUTPUTS}
    assert served == expected
    assert config["max_batch_size"] == contract.MAX_BATCH_SIZE
    assert "dynamic_batching" in config


# ----------------------------------------------------------------------------- new controls through Triton


@pytest.fixture(scope="module")
def tiny_tok():
    """The vocabulary the tiny server is built with (the current training configuration)."""
    from musicaas_model import data

    return data.build_tokenizer()


async def test_top_k_top_p_metre_and_seed_through_triton(tiny_triton, tiny_tok):
    prompt = tokens.build_prompt(Key.parse("A minor"), 2, metre="3/4", style="folk", tempo_bpm=120, tokenizer=tiny_tok)

    def req(seed):
        return SampleRequest(prompt, temperature=0.9, seed=seed, num_bars=2, max_new_tokens=400, top_k=8, top_p=0.9)

    async with TritonGenerator(tiny_triton.grpc_url, timeout_s=30) as g:
        await g.wait_ready(timeout_s=10)
        a, b = await asyncio.gather(*[g.generate(req(11)) for _ in range(2)])
        c = await g.generate(req(12))
    with pytest.raises(InvalidArgument, match="top_p"):
        SampleRequest(prompt, temperature=1.0, seed=1, num_bars=2, top_p=0.0)
    with pytest.raises(InvalidArgument, match="top_k"):
        SampleRequest(prompt, temperature=1.0, seed=1, num_bars=2, top_k=-1)
    assert a == b and a != c
    names = tokens.token_names(a, tokenizer=tiny_tok)
    assert {n for n in names if n.startswith("TimeSig_")} == {"TimeSig_3/4"}
    assert names.count("Bar_None") == 2


async def test_harmonisation_through_triton_keeps_the_melody(tiny_triton, tiny_tok):
    melody = tokens.parse_melody(midi_of([(0, 1, 67), (1, 1, 69), (2, 2, 71), (4, 1, 72), (5, 3, 74), (8, 4, 67)]))
    bars = tokens.melody_bars(melody)
    prompt = tokens.build_prompt(Key.parse("G major"), bars, tokenizer=tiny_tok)
    async with TritonGenerator(tiny_triton.grpc_url, timeout_s=60) as g:
        await g.wait_ready(timeout_s=10)
        outs = await asyncio.gather(*[
            g.generate(SampleRequest(prompt, temperature=1.0, seed=s, num_bars=bars, max_new_tokens=1200,
                                     melody=melody))
            for s in range(3)
        ])
        with pytest.raises(contract.FieldError) as info:  # the server checks that the melody fits
            await g.generate(SampleRequest(prompt, temperature=1.0, seed=0, num_bars=1, melody=melody))
    assert info.value.field == "melody"
    assert info.value.message.startswith(f"model server at {tiny_triton.grpc_url} rejected the request: melody:")
    assert "longer than num_bars = 1 bars of 4/4" in info.value.message
    for out in outs:
        midi = tokens.tokens_to_midi(out, tempo_bpm=90, tokenizer=tiny_tok)
        assert tokens.soprano_kept(midi, melody) == 1.0


async def test_primer_continuation_through_triton(tiny_triton, tiny_tok):
    primer = tokens.midi_to_primer_tokens(midi_of([(q, 1, 60 + q % 5) for q in range(8)]), tokenizer=tiny_tok)
    prompt = tokens.build_prompt(Key.parse("C major"), 2, primer_tokens=primer, tokenizer=tiny_tok)
    async with TritonGenerator(tiny_triton.grpc_url, timeout_s=30) as g:
        await g.wait_ready(timeout_s=10)
        out = await g.generate(SampleRequest(prompt, temperature=1.0, seed=2, num_bars=2, max_new_tokens=300))
    assert out[: len(primer)] == primer and len(out) > len(primer)


def _infer(url, values, outputs=None):
    """One raw ``tritonclient`` call with the given input arrays (no :class:`SampleRequest`)."""
    import tritonclient.grpc as grpcclient

    datatypes = {name: dt for name, _dtype, dt, _shape in contract.INPUTS}
    inputs = []
    for name, array in values.items():
        item = grpcclient.InferInput(name, list(array.shape), datatypes[name])
        item.set_data_from_numpy(array)
        inputs.append(item)
    client = grpcclient.InferenceServerClient(url=url)
    try:
        return client.infer(contract.MODEL_NAME, inputs, outputs=outputs)
    finally:
        client.close()


def test_a_bad_row_fails_alone_not_its_whole_batch(tiny_triton, tiny_tok):
    import numpy as np

    prompt = tokens.build_prompt(Key.parse("G major"), 2, tokenizer=tiny_tok)
    good = SampleRequest(prompt, temperature=1.0, seed=1, num_bars=2, max_new_tokens=400,
                         melody=[(0, 4, 67), (4, 4, 71)]).to_inputs()
    bad = SampleRequest(prompt, temperature=1.0, seed=1, num_bars=1, max_new_tokens=400,  # 8 beats in 1 bar
                        melody=[(0, 4, 67), (4, 4, 71)]).to_inputs()
    both = {name: np.concatenate([good[name], bad[name]]) for name in good}  # one request of two rows
    result = _infer(tiny_triton.grpc_url, both)
    outputs = {name: result.as_numpy(name) for name, *_ in contract.OUTPUTS}
    assert len(contract.decode_outputs(outputs, 0)) > 0
    with pytest.raises(contract.FieldError) as info:
        contract.decode_outputs(outputs, 1)
    assert info.value.field == "melody" and "longer than num_bars = 1" in info.value.message


def test_old_clients_without_the_optional_inputs_still_work(tiny_triton, tiny_tok):
    import numpy as np
    import tritonclient.grpc as grpcclient

    prompt = tokens.build_prompt(Key.parse("D major"), 1, tokenizer=tiny_tok)
    values = {
        contract.PROMPT_TOKENS: np.asarray([prompt], dtype=np.int64),
        contract.TEMPERATURE: np.asarray([[1.0]], dtype=np.float32),
        contract.SEED: np.asarray([[1]], dtype=np.int64),
        contract.NUM_BARS: np.asarray([[1]], dtype=np.int32),
        contract.MAX_NEW_TOKENS: np.asarray([[30]], dtype=np.int32),
    }
    result = _infer(tiny_triton.grpc_url, values, outputs=[grpcclient.InferRequestedOutput(contract.TOKENS)])
    assert len(contract.strip_padding(result.as_numpy(contract.TOKENS).reshape(-1).tolist())) > 0
