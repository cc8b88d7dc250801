"""A real Triton (PyTriton, CPU) serving the tiny model, called through TritonGenerator."""

from __future__ import annotations

import asyncio

import pytest

from musicaas.keys import Key
from musicaas.render import parse_midi
from musicaas.runtime.errors import InvalidArgument, Unavailable
from musicaas.runtime.procs import free_port
from musicaas_generator import contract, tokens
from musicaas_generator.triton_client import TritonGenerator

pytestmark = pytest.mark.integration


async def test_generate_decodes_to_midi(tiny_triton, tokenizer):
    prompt = tokens.build_prompt(Key.parse("E minor"), 4, tokenizer=tokenizer)
    async with TritonGenerator(tiny_triton.grpc_url, timeout_s=30) as g:
        await g.wait_ready(timeout_s=10)
        out = await g.generate(prompt, temperature=1.0, seed=3, num_bars=4, max_new_tokens=300)
        again = await g.generate(prompt, temperature=1.0, seed=3, num_bars=4, max_new_tokens=300)
        other = await g.generate(prompt, temperature=1.0, seed=4, num_bars=4, max_new_tokens=300)
    assert 0 < len(out) <= 300
    assert all(0 <= t < len(tokenizer.vocab) for t in out)
    assert out == again and out != other
    score = parse_midi(tokens.tokens_to_midi(out, tempo_bpm=110, tokenizer=tokenizer))
    assert score.note_num() > 0
    assert score.tempos[0].qpm == pytest.approx(110, rel=1e-4)


async def test_concurrent_requests_are_batched_and_each_gets_its_own_tokens(tiny_triton, tokenizer):
    async with TritonGenerator(tiny_triton.grpc_url, timeout_s=30) as g:
        await g.wait_ready(timeout_s=10)
        calls_before, rows_before = tiny_triton.model.calls, tiny_triton.model.rows
        prompts = [tokens.build_prompt(key, 2, tokenizer=tokenizer) for key in (Key.parse("C major"), Key.parse("Bb minor"))]
        results = await asyncio.gather(*[
            g.generate(prompts[i % 2], temperature=0.9, seed=i, num_bars=2, max_new_tokens=20 + i) for i in range(6)
        ])
    assert [len(r) <= 20 + i for i, r in enumerate(results)] == [True] * 6
    assert tiny_triton.model.rows - rows_before == 6
    assert tiny_triton.model.calls - calls_before <= 6


async def test_bad_arguments_fail_before_the_network(tiny_triton):
    async with TritonGenerator(tiny_triton.grpc_url, timeout_s=5) as g:
        with pytest.raises(InvalidArgument, match="temperature"):
            await g.generate([1, 2, 3], temperature=0.0, seed=1, num_bars=4)
        with pytest.raises(InvalidArgument, match="num_bars"):
            await g.generate([1, 2, 3], temperature=1.0, seed=1, num_bars=40)


async def test_nothing_listening_is_unavailable():
    url = f"127.0.0.1:{free_port()}"
    async with TritonGenerator(url, timeout_s=3) as g:
        assert await g.is_ready(timeout_s=0.5) is False
        with pytest.raises(Unavailable, match=f"model server at {url} is unavailable"):
            await g.wait_ready(timeout_s=0.5)
        with pytest.raises(Unavailable, match=f"model server at {url} is unavailable"):
            await g.generate([1, 2, 3], temperature=1.0, seed=1, num_bars=2, max_new_tokens=5)


async def test_unknown_model_is_unavailable(tiny_triton):
    async with TritonGenerator(tiny_triton.grpc_url, timeout_s=5, model_name="no_such_model") as g:
        assert await g.is_ready() is False
        with pytest.raises(Unavailable):
            await g.generate([1, 2, 3], temperature=1.0, seed=1, num_bars=2, max_new_tokens=5)


def test_contract_matches_the_served_model(tiny_triton):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{tiny_triton.http_port}")
    try:
        meta = client.get_model_metadata(contract.MODEL_NAME)
        config = client.get_model_config(contract.MODEL_NAME)
    finally:
        client.close()
    served = {t["name"]: (t["datatype"], t["shape"][1:]) for t in meta["inputs"] + meta["outputs"]}
    expected = {name: (dt, list(shape)) for name, _, dt, shape in contract.INPUTS + contract.OUTPUTS}
    assert served == expected
    assert config["max_batch_size"] == contract.MAX_BATCH_SIZE
    assert "dynamic_batching" in config
