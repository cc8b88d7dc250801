"""The track index's contract: :class:`TrackIndex`, the types it takes and returns, its
limits and the point-id scheme. The service depends on this module alone; the backends
(:mod:`~musicaas_recommender.index.edge`, :mod:`~musicaas_recommender.index.remote`)
implement it.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "MAX_EXAMPLES",
    "MAX_LIMIT",
    "MAX_TRACK_ID_LEN",
    "TRACK_ID_NAMESPACE",
    "ScoredTrack",
    "TrackFilter",
    "TrackIndex",
    "TrackPayload",
    "point_id",
]

#: Most results one ``similar``/``recommend`` call may ask for.
MAX_LIMIT = 100
#: Most example tracks (liked + disliked, after removing repeats) per ``recommend``.
MAX_EXAMPLES = 256
#: Longest accepted track id, in characters.
MAX_TRACK_ID_LEN = 256

#: Namespace of the uuid5 point ids. Changing it orphans every point already stored.
TRACK_ID_NAMESPACE = uuid.UUID("6b1f0c8e-3d55-5c1e-9a43-6d7573696361")


def point_id(tenant: str, track_id: str) -> str:
    """The Qdrant point id that stores ``tenant``'s track ``track_id``.

    Qdrant ids must be unsigned integers or UUIDs, so the pair is hashed into a name-based
    UUID (RFC 9562, version 5); tenant and track id are kept in the payload as well. The
    name is ``"<tenant>/<track id>"``, unambiguous because a tenant name has no ``/``: the
    same track id in two tenants gives two points, and no tenant can address another's.

    Parameters
    ----------
    tenant : str
        A tenant name (:func:`musicaas.tenancy.check_tenant`; not validated here).
    track_id : str
        The track id (not validated here).

    Returns
    -------
    str
        ``str(uuid5(TRACK_ID_NAMESPACE, f"{tenant}/{track_id}"))``, a canonical 36-character UUID.
    """
    return str(uuid.uuid5(TRACK_ID_NAMESPACE, f"{tenant}/{track_id}"))


@dataclass(frozen=True)
class TrackPayload:
    """What the index stores next to a track's embedding.

    The tenant is not part of it: every :class:`TrackIndex` call names its tenant, and the
    index stores it next to these fields (payload ``tenant``).

    Attributes
    ----------
    track_id : str
        Non-empty, at most ``MAX_TRACK_ID_LEN`` characters.
    key : str or None
        Tonic spelling (``"F#"``, ``"Bb"``); ``None`` (or ``""``, stored as ``None``)
        for a track with no detected key.
    mode : str or None
        ``"major"``, ``"minor"``, or ``None`` (``""`` is stored as ``None``).
    tempo_bpm : float >= 0, beats per minute
    source : str
        Non-empty: ``"upload"``, ``"generated"``, ...
    duration_s : float >= 0, seconds
    loudness_lufs : float, LUFS
        Integrated loudness (ITU-R BS.1770).
    title : str, default ""
    embedding_model : str, default ""
        Name and version of the model that made the indexed vector (``"musicnn-MTT/1"``):
        re-embedding with another model is a migration that this field lets one find.
    """

    track_id: str
    key: str | None
    mode: str | None
    tempo_bpm: float
    source: str
    duration_s: float
    loudness_lufs: float
    title: str = ""
    embedding_model: str = ""


@dataclass(frozen=True)
class TrackFilter:
    """Restricts ``similar``/``recommend`` results: every field that is set must hold.

    Attributes
    ----------
    tempo_min_bpm, tempo_max_bpm : float >= 0 or None, beats per minute
        Inclusive tempo bounds; ``None`` leaves that side open. Min above max is an error.
    key : str or None
        Matches the tonic's pitch class, so ``"Gb"`` finds tracks stored as ``"F#"``;
        combine with ``mode`` for a key. ``None`` or ``""`` does not filter.
    mode : str or None
        ``"major"`` or ``"minor"``; ``None`` or ``""`` does not filter.
    source : str or None
        Exact source; ``None`` or ``""`` does not filter.
    """

    tempo_min_bpm: float | None = None
    tempo_max_bpm: float | None = None
    key: str | None = None
    mode: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class ScoredTrack:
    """One result; higher ``score`` is better.

    Attributes
    ----------
    track_id : str
    score : float
        ``similar``: cosine similarity, in [-1, 1]. ``recommend``: Qdrant's recommend
        query with the ``best_score`` strategy. A candidate nearer (by cosine) to some
        liked track than to every disliked one scores ``sigmoid(best cosine to a liked
        track)``, in (0, 1); any other scores ``-sigmoid(best cosine to a disliked
        track)``, in (-1, 0), where ``sigmoid(x) = 0.5 * (x / (1 + |x|) + 1)``
        (Qdrant's "scaled fast sigmoid"). Every backend returns the same numbers.
    payload : TrackPayload
    """

    track_id: str
    score: float
    payload: TrackPayload


class TrackIndex(ABC):
    """Track embeddings with payload, per tenant; similarity search and recommendation.

    Every operation but ``close`` (and ``count`` of all tenants) is scoped to one tenant:
    it sees only that tenant's points, and a track id of another tenant behaves exactly
    like one that is not in the index (NotFound for a query track, never a result).

    Every method is a coroutine. Every method but ``close`` raises Unavailable when the
    index is closed or its Qdrant server cannot be reached, and InvalidArgument for a
    tenant that is not a tenant name (:func:`musicaas.tenancy.check_tenant`), a track id
    that is not a non-empty string of at most ``MAX_TRACK_ID_LEN`` characters, a
    ``limit`` outside ``[1, MAX_LIMIT]`` or a bad :class:`TrackFilter`.
    """

    @abstractmethod
    async def upsert(self, tenant: str, payload: TrackPayload, vector: np.ndarray) -> bool:
        """Store (or replace) ``tenant``'s track ``payload.track_id``; idempotent by tenant and track id.

        Parameters
        ----------
        tenant : str
        payload : TrackPayload
        vector : np.ndarray [shape=(dim,)], any float dtype
            The embedding (stored as float32); finite, not all zeros.

        Returns
        -------
        bool
            True when the point is new (the index grew by one), False when it replaced one.
            Exact for the calls of this process; a write by another process to the same
            point at the same moment may go uncounted.

        Raises
        ------
        InvalidArgument
            A payload that breaks :class:`TrackPayload`'s rules, or a vector of another
            shape, with NaN or infinite values, or all zeros.
        """

    @abstractmethod
    async def get(self, tenant: str, track_id: str) -> tuple[TrackPayload, np.ndarray]:
        """The payload and stored vector of ``tenant``'s track ``track_id``.

        Returns
        -------
        payload : TrackPayload
        vector : np.ndarray [shape=(dim,)], float32
            Unit L2 length: cosine storage normalises the vector given to ``upsert``.

        Raises
        ------
        NotFound
            The tenant has no such track in the index.
        """

    @abstractmethod
    async def similar(
        self, tenant: str, track_id: str, *, limit: int = 10, flt: TrackFilter | None = None
    ) -> list[ScoredTrack]:
        """``tenant``'s tracks nearest to its ``track_id`` by cosine similarity, best first, without it.

        Parameters
        ----------
        tenant : str
        track_id : str
        limit : int in [1, MAX_LIMIT], default 10
        flt : TrackFilter, optional

        Returns
        -------
        list of ScoredTrack
            At most ``limit``, all of ``tenant``; ``score`` is the cosine similarity.

        Raises
        ------
        NotFound
            The tenant has no track ``track_id`` in the index.
        """

    @abstractmethod
    async def recommend(
        self,
        tenant: str,
        *,
        liked: Sequence[str],
        disliked: Sequence[str] = (),
        limit: int = 10,
        flt: TrackFilter | None = None,
    ) -> list[ScoredTrack]:
        """``tenant``'s tracks near the liked and away from the disliked ones, best first,
        without either.

        Parameters
        ----------
        tenant : str
        liked : sequence of str
            At least one of the tenant's track ids; repeats are dropped.
        disliked : sequence of str, default ()
            The tenant's track ids, none of them also liked.
        limit : int in [1, MAX_LIMIT], default 10
        flt : TrackFilter, optional

        Returns
        -------
        list of ScoredTrack
            At most ``limit``, all of ``tenant``; ``score`` is the best_score value (see
            :class:`ScoredTrack`).

        Raises
        ------
        InvalidArgument
            No liked track, a string instead of a sequence, a track both liked and
            disliked, or more than ``MAX_EXAMPLES`` examples.
        NotFound
            Some example is not among the tenant's tracks in the index; the message names
            every missing one.
        """

    @abstractmethod
    async def delete(self, tenant: str, track_id: str) -> bool:
        """Remove ``tenant``'s track ``track_id`` from the index; idempotent (a track that is
        not there is no error).

        Returns
        -------
        bool
            True when a point was there (the index shrank by one), False when there was none.
            Exact for the calls of this process, like :meth:`upsert`'s.
        """

    @abstractmethod
    async def count(self, tenant: str | None = None) -> int:
        """Number of ``tenant``'s tracks, or of every point when ``tenant`` is None, counted
        exactly (a scan: not for every request)."""

    @abstractmethod
    async def close(self) -> None:
        """Wait for the calls in flight, then release the index; idempotent."""
