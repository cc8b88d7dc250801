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
from musicaas.runtime.errors import InvalidArgument, Unavailable

#: Default deadline of one inference request, seconds.
DEFAULT_TIMEOUT_S = 10.0


def _message(exc: Exception) -> str:
    msg = getattr(exc, "message", None)
    msg = msg() if callable(msg) else msg
    return str(msg or exc) or type(exc).__name__


class TritonTextEncoder:
    """Async client of the ``musicaas_text_minilm`` Triton model.

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
        if not url or ":" not in url:
            raise InvalidArgument(f"model server url must be 'host:port', got {url!r}")
        if not timeout_s or timeout_s <= 0:
            raise InvalidArgument(f"timeout_s must be > 0, got {timeout_s!r}")
        if not 0 < int(max_rows) <= tc.MAX_BATCH_SIZE:
            raise InvalidArgument(f"max_rows must be in [1, {tc.MAX_BATCH_SIZE}], got {max_rows!r}")
        self.url = url
        self.timeout_s = float(timeout_s)
        self.linger_s = max(0.0, float(linger_s))
        self.max_rows = int(max_rows)
        self.model_name = model_name
        #: Requests sent, and rows per request (tests, logs).
        self.requests_sent = 0
        self.rows_sent: list[int] = []
        self._client = None
        self._pending: list[tuple[list[str], asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    async def __aenter__(self) -> "TritonTextEncoder":
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.close()

    def _ensure_client(self):
        if self._client is None:
            from tritonclient.grpc.aio import InferenceServerClient

            try:
                self._client = InferenceServerClient(url=self.url)
            except Exception as exc:  # malformed url and the like
                raise self._unavailable(str(exc)) from exc
        return self._client

    async def close(self) -> None:
        """Close the gRPC channel (idempotent; a later call opens a new one)."""
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except Exception:  # a channel that never connected
                pass

    def _unavailable(self, detail: str) -> Unavailable:
        return Unavailable(f"model server at {self.url} is unavailable: {detail}")

    async def is_ready(self, *, timeout_s: float = 2.0) -> bool:
        """True when the server answers and the text encoder is loaded (never raises)."""
        try:
            client = self._ensure_client()
            return bool(await client.is_model_ready(self.model_name, client_timeout=timeout_s))
        except Exception:
            return False

    async def wait_ready(self, *, timeout_s: float = 60.0, poll_s: float = 0.5) -> None:
        """Return once :meth:`is_ready`; raise :class:`Unavailable` after ``timeout_s`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(timeout_s)
        while not await self.is_ready(timeout_s=min(2.0, max(0.1, deadline - loop.time()))):
            if loop.time() >= deadline:
                raise self._unavailable(f"{self.model_name} not ready within {timeout_s:g}s")
            await asyncio.sleep(poll_s)

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
            inputs = self.build_inputs(texts[start:stop])
            self.requests_sent += 1
            self.rows_sent.append(stop - start)
            try:
                result = await asyncio.wait_for(
                    client.infer(self.model_name, inputs, outputs=outputs, client_timeout=self.timeout_s),
                    timeout=self.timeout_s + 1.0,
                )
            except asyncio.TimeoutError:
                raise self._unavailable(f"no answer within {self.timeout_s:g}s") from None
            except Exception as exc:
                raise self._unavailable(_message(exc)) from exc
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
        future = asyncio.get_running_loop().create_future()
        self._pending.append((texts, future))
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_later())
        return await future

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.linger_s)
        batch, self._pending = self._pending, []
        self._flusher = None  # calls from now on start the next round
        try:
            vectors = await self.encode_rows([t for texts, _ in batch for t in texts])
        except BaseException as exc:  # noqa: BLE001 - every waiting call gets the error
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else Unavailable("text encoding was cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for texts, fut in batch:
            stop = start + len(texts)
            if not fut.done():
                fut.set_result(vectors[start:stop])
            start = stop
