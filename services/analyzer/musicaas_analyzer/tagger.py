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
from musicaas.models.triton_client import CoalescingTritonClient

#: Default deadline of one inference request, seconds.
DEFAULT_TIMEOUT_S = 30.0


class TritonTagger(CoalescingTritonClient[np.ndarray, tuple[mc.TrackTags, np.ndarray]]):
    """Async client of the ``musicaas_musicnn_mtt`` Triton model.

    The lifecycle (``async with``, :meth:`close`, :meth:`wait_ready`) and the coalescing
    are :class:`musicaas.models.triton_client.CoalescingTritonClient`'s.

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
        super().__init__(url, timeout_s=timeout_s, linger_s=linger_s, max_rows=max_rows, model_name=model_name,
                         max_batch_size=mc.MAX_BATCH_SIZE, cancelled_message="tagging was cancelled")

    async def is_ready(self, *, timeout_s: float = 2.0) -> bool:
        """True when the server answers and the tagger is loaded (never raises)."""
        # As before the shared base: the client is made outside the guard, so a url that
        # tritonclient refuses raises Unavailable here rather than answering False.
        self._ensure_client()
        return await super().is_ready(timeout_s=timeout_s)

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
            result = await self._infer(client, lambda: self.build_inputs(chunk), outputs, stop - start)
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
        return await self._submit(mc.check_patches(patches))

    async def _run_batch(self, items: list[np.ndarray]) -> list[tuple[mc.TrackTags, np.ndarray]]:
        return await self.tag_many_with_patches(items)
