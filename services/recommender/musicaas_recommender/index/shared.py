"""What both Qdrant backends share: the storage layout, input validation, and
:class:`QdrantTrackIndex`, which implements :class:`TrackIndex` over six primitives.

Storage layout
--------------
* One unnamed dense vector per point, cosine distance. Qdrant normalises vectors to
  unit length when it stores them for cosine, so ``get`` returns the unit-length
  vector, not the one given to ``upsert``.
* Point id: :func:`~musicaas_recommender.index.base.point_id` of the tenant and track id;
  both are kept in the payload as well.
* Payload: ``tenant`` (:data:`TENANT_FIELD`), the :class:`TrackPayload` fields, and
  ``key_pc``, the tonic's pitch class (0-11), so that a key filter matches enharmonic
  spellings (``"F#"`` and ``"Gb"``).
* Payload indexes: :data:`PAYLOAD_INDEXES`; ``tenant`` is a keyword index created with
  ``is_tenant=True``, Qdrant's payload-based multitenancy (one collection or shard for
  every tenant; the index tells Qdrant to keep each tenant's points together). qdrant-client's
  local mode ignores them (it scans).

Tenant isolation
----------------
Every read that a tenant's call makes (``_retrieve``, ``_query``, ``_count`` of a tenant)
and every ``_delete`` carries a ``must`` condition on ``tenant``, so a tenant never reads
or removes another's point, even by its point id. A point stored before tenants existed
has no ``tenant``: no tenant sees it, and only ``count(None)`` counts it.

The query primitive
-------------------
A backend implements ``_upsert``, ``_retrieve``, ``_query``, ``_delete``, ``_count`` and
``_close``. ``_query`` takes a backend-neutral :data:`Query` (:class:`Nearest` or
:class:`RecommendBestScore`) and :class:`Conditions` (the tenant and the filter), and
translates both into its client's types; everything else (validation, point ids, payload
conversion, missing examples, whether a write added or removed a point, closing while calls
are in flight) happens here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import zlib
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, AsyncIterator, Protocol, Sequence

import numpy as np

from musicaas.keys import MODES, tonic_pitch_class
from musicaas.runtime.errors import InvalidArgument, NotFound, Unavailable
from musicaas.tenancy import check_tenant
from musicaas_recommender.index.base import (
    MAX_EXAMPLES,
    MAX_LIMIT,
    MAX_TRACK_ID_LEN,
    ScoredTrack,
    TrackFilter,
    TrackIndex,
    TrackPayload,
    point_id,
)

#: The payload field that names a point's tenant.
TENANT_FIELD = "tenant"

#: Payload indexes both backends create: field -> kind ("tenant": a keyword index with
#: ``is_tenant=True``; "keyword" | "integer" | "float").
PAYLOAD_INDEXES: dict[str, str] = {
    TENANT_FIELD: "tenant",
    "key": "keyword",
    "mode": "keyword",
    "source": "keyword",
    "key_pc": "integer",
    "tempo_bpm": "float",
}


@dataclass(frozen=True)
class Conditions:
    """The tenant and a validated :class:`TrackFilter`, in backend-neutral form.

    Attributes
    ----------
    tenant : str
        Every hit's ``tenant`` must equal it (a ``must`` condition in every backend).
    matches : tuple of (field, value)
        Exact payload matches, all of which must hold.
    tempo_gte, tempo_lte : float or None, beats per minute
        Inclusive bounds on ``tempo_bpm``; ``None`` leaves that side open.
    """

    tenant: str
    matches: tuple[tuple[str, str | int], ...] = ()
    tempo_gte: float | None = None
    tempo_lte: float | None = None

    @classmethod
    def of(cls, tenant: str, flt: TrackFilter | None) -> Conditions:
        """Validate ``tenant`` and ``flt`` (``None``: no conditions but the tenant).

        Raises
        ------
        InvalidArgument
            Not a tenant name; not a TrackFilter, an unknown key or mode, a tempo bound
            that is not a finite number >= 0, or a minimum above the maximum.
        """
        tenant = _check_tenant(tenant)
        if flt is None:
            return cls(tenant)
        if not isinstance(flt, TrackFilter):
            raise InvalidArgument(f"expected a TrackFilter, got {type(flt).__name__}")
        lo = None if flt.tempo_min_bpm is None else _finite(flt.tempo_min_bpm, "tempo_min_bpm", minimum=0.0)
        hi = None if flt.tempo_max_bpm is None else _finite(flt.tempo_max_bpm, "tempo_max_bpm", minimum=0.0)
        if lo is not None and hi is not None and lo > hi:
            raise InvalidArgument(f"tempo range is empty: tempo_min_bpm {lo} > tempo_max_bpm {hi}")
        matches: list[tuple[str, str | int]] = []
        key = _blank_to_none(flt.key)
        if key is not None:
            matches.append(("key_pc", tonic_pitch_class(key)))
        mode = _check_mode(flt.mode, "filter")
        if mode is not None:
            matches.append(("mode", mode))
        source = _blank_to_none(flt.source)
        if source is not None:
            matches.append(("source", source))
        return cls(tenant, matches=tuple(matches), tempo_gte=lo, tempo_lte=hi)


@dataclass(frozen=True)
class Nearest:
    """Nearest neighbours of ``vector`` (length ``dim``) by cosine similarity."""

    vector: list[float]


@dataclass(frozen=True)
class RecommendBestScore:
    """Qdrant's recommend query, ``best_score`` strategy, over example vectors
    (each of length ``dim``; ``negative`` may be empty)."""

    positive: list[list[float]]
    negative: list[list[float]]


Query = Nearest | RecommendBestScore


class StoredPoint(Protocol):
    """A retrieved point, as both clients return it (with payload and vector)."""

    @property
    def id(self) -> Any: ...
    @property
    def payload(self) -> Any: ...
    @property
    def vector(self) -> Any: ...


class ScoredPoint(Protocol):
    """A query hit, as both clients return it (with payload)."""

    @property
    def score(self) -> float: ...
    @property
    def payload(self) -> Any: ...


#: Locks that make a write's "was the point there?" check and the write one step (per point
#: id, striped so that the table stays small).
_WRITE_LOCKS = 64


class QdrantTrackIndex(TrackIndex):
    """:class:`TrackIndex` over the six primitives that a Qdrant backend implements.

    Parameters
    ----------
    dim : int >= 1
        Length of every stored vector.

    Raises
    ------
    ValueError
        ``dim`` is not a positive integer.
    """

    def __init__(self, dim: int) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self._closed = False
        self._inflight = 0
        self._drained: asyncio.Event | None = None
        self._write_locks = [asyncio.Lock() for _ in range(_WRITE_LOCKS)]

    @abstractmethod
    async def _upsert(self, pid: str, vector: list[float], payload: dict[str, Any]) -> None:
        """Store one point under the UUID string ``pid`` (``payload`` holds its tenant)."""

    @abstractmethod
    async def _retrieve(self, tenant: str, pids: list[str], *, with_vector: bool = True) -> Sequence[StoredPoint]:
        """The points among ``pids`` whose payload ``tenant`` is ``tenant``, in any order,
        with payload (and vector when ``with_vector``)."""

    @abstractmethod
    async def _query(
        self, query: Query, *, limit: int, where: Conditions, exclude: list[str]
    ) -> Sequence[ScoredPoint]:
        """At most ``limit`` hits of ``query`` that meet ``where`` (its tenant included),
        best first, never a point of ``exclude`` (the query's own tracks, never empty)."""

    @abstractmethod
    async def _delete(self, tenant: str, pids: list[str]) -> None:
        """Remove the points among ``pids`` whose payload ``tenant`` is ``tenant`` (none there: no error)."""

    @abstractmethod
    async def _count(self, tenant: str | None) -> int:
        """Exact number of ``tenant``'s points, or of all points for None."""

    @abstractmethod
    async def _close(self) -> None:
        """Release the client or shard; called once, with no call in flight."""

    @contextlib.asynccontextmanager
    async def _op(self) -> AsyncIterator[None]:
        """Guard one operation: refuse after close, and let close wait for it."""
        if self._closed:
            raise Unavailable("the track index is closed")
        self._inflight += 1
        try:
            yield
        finally:
            self._inflight -= 1
            if self._inflight == 0 and self._drained is not None:
                self._drained.set()

    def _write_lock(self, pid: str) -> asyncio.Lock:
        return self._write_locks[zlib.crc32(pid.encode()) % _WRITE_LOCKS]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._inflight:
            self._drained = asyncio.Event()
            await self._drained.wait()
        await self._close()

    def _check_vector(self, vector: Any) -> np.ndarray:
        try:
            arr = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"vector must be {self.dim} numbers: {exc}") from None
        if arr.ndim != 1 or arr.shape[0] != self.dim:
            raise InvalidArgument(
                f"vector has shape {tuple(arr.shape)}; the index expects dimension {self.dim}"
            )
        if not np.isfinite(arr).all():
            raise InvalidArgument(f"vector (dimension {self.dim}) holds NaN or infinite values")
        if not arr.any():
            raise InvalidArgument(
                f"vector (dimension {self.dim}) is all zeros: it has no direction for cosine similarity"
            )
        return arr

    async def _stored(self, tenant: str, track_ids: list[str]) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
        """``{track id: (payload, float32 vector)}`` for every one of ``tenant``'s ``track_ids``.

        Raises
        ------
        NotFound
            Some are not among the tenant's points; the message names every missing one.
        """
        pids = {point_id(tenant, t): t for t in track_ids}
        found = {
            str(p.id): (dict(p.payload), np.asarray(p.vector, dtype=np.float32))
            for p in await self._retrieve(tenant, list(pids))
        }
        # the backends filter on the tenant already; a point that is not the tenant's is missing
        missing = [t for pid, t in pids.items() if pid not in found or found[pid][0].get(TENANT_FIELD) != tenant]
        if missing:
            raise NotFound(f"tracks not in the index: {', '.join(map(repr, missing))}")
        return {t: found[pid] for pid, t in pids.items()}

    async def _exists(self, tenant: str, pid: str) -> bool:
        return any(
            str(p.id) == pid and dict(p.payload).get(TENANT_FIELD) == tenant
            for p in await self._retrieve(tenant, [pid], with_vector=False)
        )

    async def upsert(self, tenant: str, payload: TrackPayload, vector: np.ndarray) -> bool:
        tenant = _check_tenant(tenant)
        data = _payload_to_dict(tenant, payload)
        arr = self._check_vector(vector)
        pid = point_id(tenant, data["track_id"])
        async with self._op(), self._write_lock(pid):
            existed = await self._exists(tenant, pid)
            await self._upsert(pid, arr.tolist(), data)
        return not existed

    async def get(self, tenant: str, track_id: str) -> tuple[TrackPayload, np.ndarray]:
        tenant = _check_tenant(tenant)
        track_id = _check_track_id(track_id)
        async with self._op():
            data, vector = (await self._stored(tenant, [track_id]))[track_id]
        return _payload_from_dict(data), vector

    async def similar(
        self, tenant: str, track_id: str, *, limit: int = 10, flt: TrackFilter | None = None
    ) -> list[ScoredTrack]:
        where = Conditions.of(tenant, flt)
        track_id = _check_track_id(track_id)
        limit = _check_limit(limit)
        async with self._op():
            _, vector = (await self._stored(where.tenant, [track_id]))[track_id]
            hits = await self._query(
                Nearest(vector.tolist()), limit=limit, where=where, exclude=[point_id(where.tenant, track_id)]
            )
        return _scored(where.tenant, hits)

    async def recommend(
        self,
        tenant: str,
        *,
        liked: Sequence[str],
        disliked: Sequence[str] = (),
        limit: int = 10,
        flt: TrackFilter | None = None,
    ) -> list[ScoredTrack]:
        where = Conditions.of(tenant, flt)
        liked_ids, disliked_ids = _check_examples(liked, disliked)
        limit = _check_limit(limit)
        examples = liked_ids + disliked_ids
        async with self._op():
            stored = await self._stored(where.tenant, examples)
            query = RecommendBestScore(
                positive=[stored[t][1].tolist() for t in liked_ids],
                negative=[stored[t][1].tolist() for t in disliked_ids],
            )
            hits = await self._query(
                query, limit=limit, where=where, exclude=[point_id(where.tenant, t) for t in examples]
            )
        return _scored(where.tenant, hits)

    async def delete(self, tenant: str, track_id: str) -> bool:
        tenant = _check_tenant(tenant)
        track_id = _check_track_id(track_id)
        pid = point_id(tenant, track_id)
        async with self._op(), self._write_lock(pid):
            existed = await self._exists(tenant, pid)
            # deleted whatever the check said: another process may have written it meanwhile
            await self._delete(tenant, [pid])
        return existed

    async def count(self, tenant: str | None = None) -> int:
        if tenant is not None:
            tenant = _check_tenant(tenant)
        async with self._op():
            return await self._count(tenant)


def _check_tenant(tenant: Any) -> str:
    """``tenant`` when it is a tenant name; InvalidArgument otherwise."""
    return check_tenant(tenant)


def _blank_to_none(value: str | None) -> str | None:
    return None if value == "" else value


def _check_track_id(track_id: Any) -> str:
    if not isinstance(track_id, str) or not track_id:
        raise InvalidArgument(f"track id must be a non-empty string, got {track_id!r}")
    if len(track_id) > MAX_TRACK_ID_LEN:
        raise InvalidArgument(f"track id longer than {MAX_TRACK_ID_LEN} characters")
    return track_id


def _check_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)):
        raise InvalidArgument(f"limit must be an integer in [1, {MAX_LIMIT}], got {limit!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit {limit} out of range [1, {MAX_LIMIT}]")
    return int(limit)


def _check_mode(mode: str | None, what: str) -> str | None:
    mode = _blank_to_none(mode)
    if mode is not None and mode not in MODES:
        raise InvalidArgument(f"{what} mode {mode!r} unknown: expected 'major' or 'minor'")
    return mode


def _check_examples(liked: Sequence[str], disliked: Sequence[str]) -> tuple[list[str], list[str]]:
    """The distinct liked and disliked track ids, in order, checked."""
    if isinstance(liked, str) or isinstance(disliked, str):
        raise InvalidArgument("liked and disliked must be sequences of track ids, not a string")
    liked_ids = list(dict.fromkeys(_check_track_id(t) for t in liked))
    disliked_ids = list(dict.fromkeys(_check_track_id(t) for t in disliked))
    if not liked_ids:
        raise InvalidArgument("recommend needs at least one liked track")
    both = sorted(set(liked_ids) & set(disliked_ids))
    if both:
        raise InvalidArgument(f"tracks both liked and disliked: {', '.join(both)}")
    if len(liked_ids) + len(disliked_ids) > MAX_EXAMPLES:
        raise InvalidArgument(
            f"{len(liked_ids) + len(disliked_ids)} example tracks; at most {MAX_EXAMPLES} allowed"
        )
    return liked_ids, disliked_ids


def _finite(value: Any, name: str, *, minimum: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidArgument(f"{name} must be finite, got {number}")
    if minimum is not None and number < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, got {number}")
    return number


def _payload_to_dict(tenant: str, payload: TrackPayload) -> dict[str, Any]:
    """Validate a payload and turn it into the stored JSON object of ``tenant``'s point."""
    if not isinstance(payload, TrackPayload):
        raise InvalidArgument(f"expected a TrackPayload, got {type(payload).__name__}")
    track_id = _check_track_id(payload.track_id)
    key = _blank_to_none(payload.key)
    key_pc = None if key is None else tonic_pitch_class(key)
    mode = _check_mode(payload.mode, "track")
    if not isinstance(payload.source, str) or not payload.source:
        raise InvalidArgument(f"track source must be a non-empty string, got {payload.source!r}")
    return {
        TENANT_FIELD: tenant,
        "track_id": track_id,
        "key": key,
        "key_pc": key_pc,
        "mode": mode,
        "tempo_bpm": _finite(payload.tempo_bpm, "tempo_bpm", minimum=0.0),
        "source": payload.source,
        "duration_s": _finite(payload.duration_s, "duration_s", minimum=0.0),
        "loudness_lufs": _finite(payload.loudness_lufs, "loudness_lufs"),
        "title": str(payload.title or ""),
        "embedding_model": str(payload.embedding_model or ""),
    }


def _payload_from_dict(data: dict[str, Any]) -> TrackPayload:
    """The payload that :func:`_payload_to_dict` stored (``tenant`` and ``key_pc`` dropped)."""
    return TrackPayload(
        track_id=data["track_id"],
        key=data["key"],
        mode=data["mode"],
        tempo_bpm=float(data["tempo_bpm"]),
        source=data["source"],
        duration_s=float(data["duration_s"]),
        loudness_lufs=float(data["loudness_lufs"]),
        title=data["title"],
        embedding_model=data.get("embedding_model", ""),
    )


def _scored(tenant: str, hits: Sequence[ScoredPoint]) -> list[ScoredTrack]:
    """The results among ``hits`` (the backends filter on the tenant already; a hit of
    another tenant is dropped all the same)."""
    out = []
    for hit in hits:
        data = dict(hit.payload)
        if data.get(TENANT_FIELD) != tenant:
            continue
        payload = _payload_from_dict(data)
        out.append(ScoredTrack(track_id=payload.track_id, score=float(hit.score), payload=payload))
    return out
