"""The recommender's client of the text encoder served by Triton (torch-free; ``tritonclient.grpc.aio``).

::

    async with TritonTextEncoder("127.0.0.1:8001", timeout_s=10) as encoder:
        vectors = await encoder.encode(["slow piano piece in a minor key"])  # [1, 384] float32

The contract (model name, tensors, text limits, vector size) is
:mod:`musicaas.models.text_contract`: ``all-MiniLM-L6-v2`` behind ``musicaas_text_minilm``,
384-d unit vectors, so cosine similarity is the dot product. The recommender uses it for
free-text queries and for track descriptions (:func:`musicaas_recommender.describe.describe_track`).

Batching as in the analyzer's :class:`~musicaas_analyzer.tagger.TritonTagger`: concurrent
:meth:`TritonTextEncoder.encode` calls that arrive within ``linger_s`` of each other have
their texts stacked along the batch dimension and sent together, in requests of at most
:data:`~musicaas.models.text_contract.MAX_BATCH_SIZE` rows (sent concurrently; Triton's
dynamic batcher may merge them further), and each call gets its own rows back.

Errors (the musicaas tree, :mod:`musicaas.runtime.errors`):

* a text the contract refuses (empty, more than 512 characters, bytes that are not UTF-8)
  raises :class:`~musicaas.models.text_contract.TextError` (an
  :class:`~musicaas.runtime.errors.InvalidArgument`, so ``INVALID_ARGUMENT``) before
  anything is sent, and fails only the call that holds it;
* a server that cannot be reached, a model that is not loaded, a failed inference, a call
  that runs past ``timeout_s`` or an answer that does not follow the contract raise
  :class:`~musicaas.runtime.errors.Unavailable` (retry later).
"""

from __future__ import annotations

import asyncio
from typing import Sequence

import numpy as np

from musicaas.models import text_contract as tc
from musicaas.models.triton_client import CoalescingTritonClient

#: Default deadline of one inference request, seconds.
DEFAULT_TIMEOUT_S = 10.0


class TritonTextEncoder(CoalescingTritonClient[list[str], np.ndarray]):
    """Async client of the ``musicaas_text_minilm`` Triton model.

    The lifecycle (``async with``, :meth:`close`, :meth:`is_ready`, :meth:`wait_ready`) and
    the coalescing are :class:`musicaas.models.triton_client.CoalescingTritonClient`'s.

    Parameters
    ----------
    url : str
        ``host:port`` of Triton's gRPC endpoint (the recommender's ``MUSICAAS_TRITON_URL``).
    timeout_s : float > 0, seconds
        Deadline of each inference request.
    linger_s : float >= 0, seconds
        How long an :meth:`encode` call waits for other calls to share its requests.
    max_rows : int in [1, 64]
        Texts per request, at most the model's ``max_batch_size``.
    model_name : str
        Triton model to call.

    Raises
    ------
    InvalidArgument
        For a url that is not ``host:port``, or a parameter out of range.
    """

    def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, linger_s: float = 0.002,
                 max_rows: int = tc.MAX_BATCH_SIZE, model_name: str = tc.MODEL_NAME) -> None:
        super().__init__(url, timeout_s=timeout_s, linger_s=linger_s, max_rows=max_rows, model_name=model_name,
                         max_batch_size=tc.MAX_BATCH_SIZE, cancelled_message="text encoding was cancelled")

    # ------------------------------------------------------------------ inference

    @staticmethod
    def build_inputs(texts: Sequence[str]):
        """The ``tritonclient.grpc.InferInput`` list of ``texts`` (``TEXT`` BYTES ``[n, 1]``).

        Raises
        ------
        TextError
            For the first text the contract refuses.
        """
        from tritonclient.grpc import InferInput

        rows = tc.encode_texts(texts)
        name, _dtype, datatype, _shape = tc.INPUTS[0]
        item = InferInput(name, list(rows.shape), datatype)
        item.set_data_from_numpy(rows)
        return [item]

    async def encode_rows(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts`` (any number; split into requests of at most ``max_rows``
        sent concurrently), without coalescing with other calls.

        Returns
        -------
        np.ndarray [len(texts), 384], float32
            L2-normalised rows, in the order of ``texts``.

        Raises
        ------
        TextError
            For a text the contract refuses (nothing is sent).
        Unavailable
            See the module docstring.
        """
        from tritonclient.grpc import InferRequestedOutput

        texts = tc.check_texts(texts)
        if not texts:
            return np.zeros((0, tc.EMBEDDING_DIM), dtype=np.float32)
        client = self._ensure_client()
        outputs = [InferRequestedOutput(name) for name, *_ in tc.OUTPUTS]

        async def one(start: int, stop: int) -> np.ndarray:
            inputs = self.build_inputs(texts[start:stop])  # a TextError here sends nothing
            result = await self._infer(client, lambda: inputs, outputs, stop - start)
            try:
                return tc.decode_outputs({name: result.as_numpy(name) for name, *_ in tc.OUTPUTS}, stop - start)
            except tc.TextError as exc:  # the server disagrees with this client's checks
                if exc.row is not None:
                    exc.row += start
                raise
            except ValueError as exc:
                raise self._unavailable(str(exc)) from None

        parts = await asyncio.gather(*(one(a, b) for a, b in tc.split_rows(len(texts), self.max_rows)))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts``; concurrent calls share requests (see the module docstring).

        Parameters
        ----------
        texts : sequence of str
            Each non-empty, at most 512 characters (:func:`musicaas.models.text_contract.check_text`).

        Returns
        -------
        np.ndarray [len(texts), 384], float32
            L2-normalised rows (cosine similarity = dot product); ``[0, 384]`` for no text.

        Raises
        ------
        TextError
            (an :class:`~musicaas.runtime.errors.InvalidArgument`) for a text the contract refuses;
            only this call fails, nothing is sent for it.
        Unavailable
            When the model server is down, the model is not loaded, or the call times out.
        """
        texts = tc.check_texts(texts)
        if not texts:
            return np.zeros((0, tc.EMBEDDING_DIM), dtype=np.float32)
        return await self._submit(texts)

    async def _run_batch(self, items: list[list[str]]) -> list[np.ndarray]:
        vectors = await self.encode_rows([t for texts in items for t in texts])
        out, start = [], 0
        for texts in items:
            stop = start + len(texts)
            out.append(vectors[start:stop])
            start = stop
        return out
