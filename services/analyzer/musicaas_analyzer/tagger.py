"""The analyzer's client of the musicnn tagger served by Triton (torch-free; ``tritonclient.grpc.aio``).

::

    async with TritonTagger("127.0.0.1:8001", timeout_s=30) as tagger:
        result = await tagger.tag(log_mel_patches(y16k))   # a musicnn_contract.TrackTags
        result, per_patch = await tagger.tag_with_patches(patches)  # and the [patches, 50] probabilities

The contract (model name, tensors, preprocessing, tag names) is
:mod:`musicaas.models.musicnn_contract`. Concurrent :meth:`TritonTagger.tag` calls (the
tracks that the analyzer's workers finish at about the same time) are coalesced: the calls
that arrive within ``linger_s`` of each other have their patches concatenated along the
batch dimension and sent together, in requests of at most
:data:`~musicaas.models.musicnn_contract.MAX_BATCH_SIZE` rows each (sent concurrently; Triton's
dynamic batcher may merge them further), and each call gets its own rows back. Errors map
onto the musicaas error tree as in the generator's client: a server that cannot be reached,
a model that is not loaded or a call that runs out of time raise
:class:`~musicaas.runtime.errors.Unavailable` (the upload consumer then leaves the message
to be redelivered: nothing is lost while the model server is down).
"""

from __future__ import annotations

import asyncio
from typing import Sequence

import numpy as np

from musicaas.models import musicnn_contract as mc
from musicaas.runtime.errors import InvalidArgument, Unavailable

#: Default deadline of one inference request, seconds.
DEFAULT_TIMEOUT_S = 30.0


def _message(exc: Exception) -> str:
    msg = getattr(exc, "message", None)
    msg = msg() if callable(msg) else msg
    return str(msg or exc) or type(exc).__name__


class TritonTagger:
    """Async client of the ``musicaas_musicnn_mtt`` Triton model.

    Parameters
    ----------
    url : str
        ``host:port`` of Triton's gRPC endpoint.
    timeout_s : float > 0, seconds
        Deadline of each inference request.
    linger_s : float >= 0, seconds
        How long a :meth:`tag` call waits for other calls to share its requests.
    max_rows : int > 0
        Rows (patches) per request, at most the model's ``max_batch_size``.
    """

    def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, linger_s: float = 0.005,
                 max_rows: int = mc.MAX_BATCH_SIZE, model_name: str = mc.MODEL_NAME) -> None:
        if not url or ":" not in url:
            raise InvalidArgument(f"model server url must be 'host:port', got {url!r}")
        if not timeout_s or timeout_s <= 0:
            raise InvalidArgument(f"timeout_s must be > 0, got {timeout_s!r}")
        if not 0 < int(max_rows) <= mc.MAX_BATCH_SIZE:
            raise InvalidArgument(f"max_rows must be in [1, {mc.MAX_BATCH_SIZE}], got {max_rows!r}")
        self.url = url
        self.timeout_s = float(timeout_s)
        self.linger_s = max(0.0, float(linger_s))
        self.max_rows = int(max_rows)
        self.model_name = model_name
        #: Requests sent, and rows per request (tests, logs).
        self.requests_sent = 0
        self.rows_sent: list[int] = []
        self._client = None
        self._pending: list[tuple[np.ndarray, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    async def __aenter__(self) -> "TritonTagger":
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
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except Exception:  # a channel that never connected
                pass

    def _unavailable(self, detail: str) -> Unavailable:
        return Unavailable(f"model server at {self.url} is unavailable: {detail}")

    async def is_ready(self, *, timeout_s: float = 2.0) -> bool:
        """True when the server answers and the tagger is loaded (never raises)."""
        client = self._ensure_client()
        try:
            return bool(await client.is_model_ready(self.model_name, client_timeout=timeout_s))
        except Exception:
            return False

    # ------------------------------------------------------------------ inference

    @staticmethod
    def build_inputs(rows: np.ndarray):
        """The ``tritonclient.grpc.InferInput`` of ``rows`` log-mel patches ``[n, 187, 96]``."""
        from tritonclient.grpc import InferInput

        name, _dtype, datatype, _shape = mc.INPUTS[0]
        item = InferInput(name, list(rows.shape), datatype)
        item.set_data_from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        return [item]

    async def infer_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-patch ``(tags [n, 50], embedding [n, 200])`` of ``rows`` (any ``n``; split into
        requests of at most ``max_rows`` sent concurrently).

        Raises
        ------
        Unavailable
            When the server cannot be reached, the model is not loaded, it fails, the call
            runs past ``timeout_s`` or the answer does not follow the contract.
        """
        from tritonclient.grpc import InferRequestedOutput

        rows = mc.check_patches(rows)
        client = self._ensure_client()
        outputs = [InferRequestedOutput(name) for name, *_ in mc.OUTPUTS]

        async def one(start: int, stop: int):
            chunk = rows[start:stop]
            self.requests_sent += 1
            self.rows_sent.append(stop - start)
            try:
                result = await asyncio.wait_for(
                    client.infer(self.model_name, self.build_inputs(chunk), outputs=outputs,
                                 client_timeout=self.timeout_s),
                    timeout=self.timeout_s + 1.0,
                )
            except asyncio.TimeoutError:
                raise self._unavailable(f"no answer within {self.timeout_s:g}s") from None
            except Exception as exc:
                raise self._unavailable(_message(exc)) from exc
            try:
                return mc.decode_outputs({name: result.as_numpy(name) for name, *_ in mc.OUTPUTS}, stop - start)
            except ValueError as exc:
                raise self._unavailable(str(exc)) from None

        parts = await asyncio.gather(*(one(a, b) for a, b in mc.split_rows([rows.shape[0]], self.max_rows)))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    async def tag_many_with_patches(self, tracks: Sequence[np.ndarray]) -> list[tuple[mc.TrackTags, np.ndarray]]:
        """For each track, :func:`~musicaas.models.musicnn_contract.summarise` of its patches
        and its per-patch tag probabilities (``[patches, 50]`` float32 in [0, 1], in patch
        order; :mod:`musicaas_analyzer.sectiontags` averages them per section); all tracks'
        patches are sent together (concatenated along the batch dimension)."""
        tracks = [mc.check_patches(t) for t in tracks]
        if not tracks:
            return []
        tags, emb = await self.infer_rows(np.concatenate(tracks) if len(tracks) > 1 else tracks[0])
        out, start = [], 0
        for t in tracks:
            stop = start + t.shape[0]
            out.append((mc.summarise(tags[start:stop], emb[start:stop]), tags[start:stop]))
            start = stop
        return out

    async def tag_many(self, tracks: Sequence[np.ndarray]) -> list[mc.TrackTags]:
        """:func:`~musicaas.models.musicnn_contract.summarise` of each track's patches, all
        tracks' patches sent together (concatenated along the batch dimension)."""
        return [summary for summary, _ in await self.tag_many_with_patches(tracks)]

    async def tag(self, patches: np.ndarray) -> mc.TrackTags:
        """One track's :class:`~musicaas.models.musicnn_contract.TrackTags`; concurrent calls
        share requests (see the module docstring)."""
        return (await self.tag_with_patches(patches))[0]

    async def tag_with_patches(self, patches: np.ndarray) -> tuple[mc.TrackTags, np.ndarray]:
        """One track's :class:`~musicaas.models.musicnn_contract.TrackTags` and per-patch tag
        probabilities ``[patches, 50]`` (float32 in [0, 1]); concurrent calls share requests
        (see the module docstring).

        Raises
        ------
        ValueError
            When ``patches`` is not ``[patches >= 1, 187, 96]`` or is not finite.
        Unavailable
            As :meth:`infer_rows`.
        """
        patches = mc.check_patches(patches)
        future = asyncio.get_running_loop().create_future()
        self._pending.append((patches, future))
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_later())
        return await future

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.linger_s)
        batch, self._pending = self._pending, []
        self._flusher = None  # calls from now on start the next round
        try:
            results = await self.tag_many_with_patches([p for p, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - every waiting call gets the error
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else Unavailable("tagging was cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), res in zip(batch, results):
            if not fut.done():
                fut.set_result(res)
