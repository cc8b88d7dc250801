"""An in-process reference implementation of
:class:`~musicaas_recommender.listeners.recommender.ListenerIndex` over numpy arrays: exact
cosine search, :class:`~musicaas_recommender.index.TrackFilter` on tempo, mode, key tonic
(spelling as given) and source. For the benchmark (``bench/listeners.py``) and unit tests;
the service uses the Qdrant index."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from musicaas_recommender.index import ScoredTrack, TrackFilter, TrackPayload

__all__ = ["MemoryListenerIndex"]


class MemoryListenerIndex:
    """Tracks per tenant, in memory.

    Parameters
    ----------
    dim : int >= 1
        Vector length.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._tracks: dict[str, dict[str, tuple[TrackPayload, np.ndarray]]] = {}
        self._matrix: dict[str, tuple[list[str], np.ndarray]] = {}  # per tenant, rebuilt after a change
        self.calls: list[str] = []

    def add(self, tenant: str, payload: TrackPayload, vector: np.ndarray) -> None:
        """Store a track; ``vector`` [shape=(dim,)] is normalised to unit length."""
        v = np.asarray(vector, dtype=np.float32)
        self._tracks.setdefault(tenant, {})[payload.track_id] = (payload, v / np.linalg.norm(v))
        self._matrix.pop(tenant, None)

    def remove(self, tenant: str, track_id: str) -> None:
        self._tracks.get(tenant, {}).pop(track_id, None)
        self._matrix.pop(tenant, None)

    async def vectors(self, tenant: str, track_ids: Sequence[str]) -> dict[str, np.ndarray]:
        self.calls.append("vectors")
        mine = self._tracks.get(tenant, {})
        return {t: mine[t][1].copy() for t in track_ids if t in mine}

    async def payloads(self, tenant: str, track_ids: Sequence[str]) -> dict[str, TrackPayload]:
        self.calls.append("payloads")
        mine = self._tracks.get(tenant, {})
        return {t: mine[t][0] for t in track_ids if t in mine}

    async def nearest(self, tenant: str, vector: np.ndarray, *, limit: int, flt: TrackFilter | None = None,
                      exclude: Sequence[str] = (), diversity: float = 0.0,
                      among: Sequence[str] | None = None) -> list[ScoredTrack]:
        self.calls.append("nearest")
        skip = set(exclude)
        only = set(among) if among is not None else None
        mine = self._tracks.get(tenant, {})
        if tenant not in self._matrix:
            ids = list(mine)
            self._matrix[tenant] = (ids, np.stack([mine[t][1] for t in ids]) if ids else np.zeros((0, self.dim)))
        ids, matrix = self._matrix[tenant]
        q = np.asarray(vector, dtype=np.float64)
        sims = matrix @ (q / np.linalg.norm(q))
        hits = []
        for i in np.lexsort((np.array(ids, dtype=object), -sims)) if ids else ():
            t = ids[i]
            if t in skip or (only is not None and t not in only) or not _passes(mine[t][0], flt):
                continue
            hits.append(ScoredTrack(track_id=t, score=float(sims[i]), payload=mine[t][0]))
            if len(hits) >= limit:
                break
        return hits


def _passes(p: TrackPayload, flt: TrackFilter | None) -> bool:
    if flt is None:
        return True
    if flt.tempo_min_bpm is not None and p.tempo_bpm < flt.tempo_min_bpm:
        return False
    if flt.tempo_max_bpm is not None and p.tempo_bpm > flt.tempo_max_bpm:
        return False
    if flt.mode and p.mode != flt.mode:
        return False
    if flt.key and p.key != flt.key:
        return False
    return not (flt.source and p.source != flt.source)
