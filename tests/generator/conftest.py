"""Fixtures of the generator tests: the project tokenizer and a tiny Triton server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from musicaas.runtime.procs import free_port


@pytest.fixture(scope="session")
def train_tokenizer():
    """The tokenizer of the current training configuration (``data.build_tokenizer()``, all control tokens)."""
    from musicaas_model import data

    return data.build_tokenizer()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models sample fastest on one thread (and do not fight other processes for cores)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory, train_tokenizer) -> Path:
    """The shipped ``tokenizer.json`` when it matches the training configuration (what ``--tiny`` serves),
    else one written from that configuration (``test_shipped_tokenizer_matches_training_config`` checks the pair)."""
    from musicaas_generator.tokens import default_tokenizer_path, load_tokenizer

    shipped = default_tokenizer_path()
    if shipped.exists() and dict(load_tokenizer(shipped).vocab) == dict(train_tokenizer.vocab):
        return shipped
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    train_tokenizer.save(path)
    return path


@pytest.fixture(scope="session")
def tokenizer(tokenizer_path):
    from musicaas_generator.tokens import load_tokenizer

    return load_tokenizer(tokenizer_path)


@pytest.fixture(scope="module")
def tiny_triton():
    """A real Triton (PyTriton) serving the random 1-layer model on free loopback ports."""
    pytest.importorskip("pytriton")
    from musicaas_model.serve import start_triton

    handle = start_triton(
        tiny=True, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(), threads=1
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def shipped_checkpoint() -> Path:
    from musicaas_model.serve import DEFAULT_CHECKPOINT

    path = Path(os.environ.get("MUSICAAS_MODEL_CHECKPOINT") or DEFAULT_CHECKPOINT)
    if not path.exists():
        pytest.skip(f"no trained checkpoint at {path}")
    return path
