"""The recommender's torch-free client of the text encoder (musicaas_recommender.text_encoder)
against a real PyTriton model server on loopback, and against one that is down."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import pytest

from musicaas.models import text_contract as tc
from musicaas.runtime.errors import InvalidArgument, Unavailable
from musicaas.runtime.procs import free_port
from musicaas_recommender.text_encoder import TritonTextEncoder


@pytest.fixture(scope="module")
def model_server():
    """The model server (all three models; the random 1-layer generator) on free loopback ports."""
    pytest.importorskip("torch")
    pytest.importorskip("pytriton")
    pytest.importorskip("sentence_transformers")
    from musicaas_model.serve import start_triton

    handle = start_triton(tiny=True, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(), threads=1)
    try:
        yield handle
    finally:
        handle.stop()


def test_the_recommender_does_not_import_torch():
    code = ("import sys, musicaas_recommender.text_encoder, musicaas_recommender.describe; "
            "bad = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.integration
async def test_encode_returns_unit_vectors_equal_to_the_model(model_server):
    texts = ["slow piano piece in a minor key", "fast brass", "Étude en ré mineur"]
    async with TritonTextEncoder(model_server.grpc_url, timeout_s=30) as encoder:
        await encoder.wait_ready(timeout_s=10)
        vectors = await encoder.encode(texts)
        assert (await encoder.encode([])).shape == (0, tc.EMBEDDING_DIM) and encoder.requests_sent == 1
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, model_server.text_encoder.encode(texts), atol=1e-5)


@pytest.mark.integration
async def test_concurrent_calls_share_requests_and_long_lists_are_split(model_server):
    async with TritonTextEncoder(model_server.grpc_url, timeout_s=30) as encoder:
        calls = [[f"query {i}"] * (1 + i % 3) for i in range(8)]
        results = await asyncio.gather(*(encoder.encode(c) for c in calls))
        assert encoder.requests_sent == 1 and encoder.rows_sent == [sum(map(len, calls))]
        for c, r in zip(calls, results):
            assert r.shape == (len(c), 384)
            np.testing.assert_allclose(r[0], model_server.text_encoder.encode(c[:1])[0], atol=1e-5)
        many = [f"track description number {i}" for i in range(150)]
        vectors = await encoder.encode(many)
        assert encoder.rows_sent[1:] == [64, 64, 22] and vectors.shape == (150, 384)
    np.testing.assert_allclose(vectors[[0, 149]], model_server.text_encoder.encode([many[0], many[149]]), atol=1e-5)


@pytest.mark.integration
async def test_bad_text_is_an_invalid_argument_and_fails_only_its_call(model_server):
    async with TritonTextEncoder(model_server.grpc_url, timeout_s=30) as encoder:
        for bad, message in (([""], "text 0 is empty"), (["ok", "x" * 513], "text 1 has 513 characters"),
                             ([b"\xff"], "not valid UTF-8"), ("one string", "not one string")):
            with pytest.raises(tc.TextError, match=message) as info:
                await encoder.encode(bad)
            assert isinstance(info.value, InvalidArgument)
        assert encoder.requests_sent == 0  # refused before anything was sent
        good, bad = await asyncio.gather(encoder.encode(["fine"]), encoder.encode([" "]), return_exceptions=True)
        assert isinstance(good, np.ndarray) and good.shape == (1, 384) and isinstance(bad, tc.TextError)


async def test_a_model_server_that_is_down_is_unavailable():
    async with TritonTextEncoder(f"127.0.0.1:{free_port()}", timeout_s=2) as encoder:
        assert not await encoder.is_ready(timeout_s=0.5)
        with pytest.raises(Unavailable, match="model server at 127.0.0.1:.* is unavailable"):
            await encoder.encode(["slow piano"])
        with pytest.raises(Unavailable):
            await asyncio.gather(*(encoder.encode([f"q{i}"]) for i in range(3)))
        with pytest.raises(Unavailable, match="not ready within"):
            await encoder.wait_ready(timeout_s=0.3, poll_s=0.1)
    with pytest.raises(InvalidArgument, match="host:port"):
        TritonTextEncoder("nowhere")
    with pytest.raises(InvalidArgument, match="max_rows"):
        TritonTextEncoder("127.0.0.1:1", max_rows=65)
