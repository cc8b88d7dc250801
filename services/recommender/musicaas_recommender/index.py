"""The recommender's vector index: track embeddings plus payload in Qdrant.

Two backends implement :class:`TrackIndex`:

* :class:`EdgeTrackIndex` runs Qdrant Edge (``qdrant-edge-py``), the Qdrant engine
  in-process, on one shard in a local folder. Nothing else has to run.
* :class:`QdrantClientTrackIndex` talks to a Qdrant server through qdrant-client's
  ``AsyncQdrantClient`` (``url=``), or uses qdrant-client's local mode (``location=``:
  ``":memory:"`` or a folder), which the tests use.

:func:`open_index` picks one from the configuration.

Storage layout (both backends)
------------------------------
* One unnamed dense vector per point, cosine distance. Qdrant normalises vectors to
  unit length when it stores them for cosine, so :meth:`TrackIndex.get` returns the
  unit-length vector, not the one given to :meth:`TrackIndex.upsert`.
* Point id: ``uuid5(TRACK_ID_NAMESPACE, track_id)`` (Qdrant ids must be unsigned
  integers or UUIDs). The track id itself is kept in the payload.
* Payload: the :class:`TrackPayload` fields plus ``key_pc``, the tonic's pitch class
  (0-11), so that a key filter matches enharmonic spellings (``"F#"`` and ``"Gb"``).
* Payload indexes: ``key``, ``mode``, ``source`` (keyword), ``key_pc`` (integer),
  ``tempo_bpm`` (float). qdrant-client's local mode ignores them (it scans).

Scores
------
:meth:`TrackIndex.similar` returns cosine similarities. :meth:`TrackIndex.recommend`
uses Qdrant's recommend query with the ``best_score`` strategy, given the example
vectors (both backends): a candidate nearer (by cosine) to some liked track than to
every disliked one scores ``sigmoid(best cosine to a liked track)`` in (0, 1); otherwise
it scores ``-sigmoid(best cosine to a disliked track)`` in (-1, 0), where
``sigmoid(x) = 0.5 * (x / (1 + |x|) + 1)`` (Qdrant's "scaled fast sigmoid"). Higher is
better in both cases and the two backends return the same numbers.

Every method is a coroutine; the blocking Qdrant Edge calls run in worker threads
(``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import uuid
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Sequence

import numpy as np
import qdrant_edge as qe

from musicaas.keys import MODES, tonic_pitch_class
from musicaas.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

if TYPE_CHECKING:  # qdrant_client takes ~2 s to import; only the client backend loads it
    from qdrant_client import AsyncQdrantClient

__all__ = [
    "MAX_EXAMPLES",
    "MAX_LIMIT",
    "TRACK_ID_NAMESPACE",
    "EdgeTrackIndex",
    "QdrantClientTrackIndex",
    "ScoredTrack",
    "TrackFilter",
    "TrackIndex",
    "TrackPayload",
    "open_index",
    "point_id",
]

#: Most results one ``similar``/``recommend`` call may ask for.
MAX_LIMIT = 100
#: Most example tracks (liked + disliked, after removing duplicates) per ``recommend``.
MAX_EXAMPLES = 256
#: Longest accepted track id.
MAX_TRACK_ID_LEN = 256

#: Namespace of the uuid5 point ids. Changing it orphans every point already stored.
TRACK_ID_NAMESPACE = uuid.UUID("6b1f0c8e-3d55-5c1e-9a43-6d7573696361")

#: Payload indexes: field -> kind ("keyword" | "integer" | "float").
PAYLOAD_INDEXES: dict[str, str] = {
    "key": "keyword",
    "mode": "keyword",
    "source": "keyword",
    "key_pc": "integer",
    "tempo_bpm": "float",
}


def point_id(track_id: str) -> str:
    """The Qdrant point id that stores ``track_id``.

    Parameters
    ----------
    track_id : str
        The track id (not validated here).

    Returns
    -------
    str
        ``str(uuid5(TRACK_ID_NAMESPACE, track_id))``, a canonical UUID string.
    """
    return str(uuid.uuid5(TRACK_ID_NAMESPACE, track_id))


# --------------------------------------------------------------------------------------
# Data types
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackPayload:
    """What the index stores next to a track's embedding.

    ``key``/``mode`` may be ``None`` (or ``""``, stored as ``None``) for a track with no
    detected key. ``key`` is a tonic spelling (``"F#"``, ``"Bb"``), ``mode`` is
    ``"major"`` or ``"minor"``.
    """

    track_id: str
    key: str | None
    mode: str | None
    tempo_bpm: float
    source: str
    duration_s: float
    loudness_lufs: float
    title: str = ""


@dataclass(frozen=True)
class TrackFilter:
    """Restricts ``similar``/``recommend`` results. Unset (``None`` or ``""``) fields
    do not filter; set ones must all hold.

    ``tempo_min_bpm``/``tempo_max_bpm`` are inclusive. ``key`` matches the tonic's pitch
    class, so ``"Gb"`` finds tracks stored as ``"F#"``; combine with ``mode`` for a key.
    """

    tempo_min_bpm: float | None = None
    tempo_max_bpm: float | None = None
    key: str | None = None
    mode: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class ScoredTrack:
    """One result: cosine similarity for ``similar``, the best_score value for
    ``recommend`` (see the module docstring)."""

    track_id: str
    score: float
    payload: TrackPayload


# A backend-neutral filter: exact matches and one optional inclusive tempo range.
@dataclass(frozen=True)
class _Conditions:
    matches: tuple[tuple[str, str | int], ...] = ()
    tempo_gte: float | None = None
    tempo_lte: float | None = None


# --------------------------------------------------------------------------------------
# Validation and payload conversion
# --------------------------------------------------------------------------------------


def _blank_to_none(value: str | None) -> str | None:
    return None if value is None or value == "" else value


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


def _payload_to_dict(payload: TrackPayload) -> dict[str, Any]:
    """Validate a payload and turn it into the stored JSON object."""
    if not isinstance(payload, TrackPayload):
        raise InvalidArgument(f"expected a TrackPayload, got {type(payload).__name__}")
    track_id = _check_track_id(payload.track_id)
    key = _blank_to_none(payload.key)
    key_pc = tonic_pitch_class(key) if key is not None else None  # InvalidArgument if bad
    mode = _check_mode(payload.mode, "track")
    if not isinstance(payload.source, str) or not payload.source:
        raise InvalidArgument(f"track source must be a non-empty string, got {payload.source!r}")
    return {
        "track_id": track_id,
        "key": key,
        "key_pc": key_pc,
        "mode": mode,
        "tempo_bpm": _finite(payload.tempo_bpm, "tempo_bpm", minimum=0.0),
        "source": payload.source,
        "duration_s": _finite(payload.duration_s, "duration_s", minimum=0.0),
        "loudness_lufs": _finite(payload.loudness_lufs, "loudness_lufs"),
        "title": str(payload.title or ""),
    }


def _payload_from_dict(data: dict[str, Any]) -> TrackPayload:
    return TrackPayload(
        track_id=str(data["track_id"]),
        key=data.get("key"),
        mode=data.get("mode"),
        tempo_bpm=float(data.get("tempo_bpm", 0.0)),
        source=str(data.get("source", "")),
        duration_s=float(data.get("duration_s", 0.0)),
        loudness_lufs=float(data.get("loudness_lufs", 0.0)),
        title=str(data.get("title") or ""),
    )


def _conditions(flt: TrackFilter | None) -> _Conditions:
    """Validate a filter and turn it into backend-neutral conditions."""
    if flt is None:
        return _Conditions()
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
    return _Conditions(matches=tuple(matches), tempo_gte=lo, tempo_lte=hi)


def _vector_from_stored(vector: Any) -> np.ndarray:
    if isinstance(vector, dict):  # named-vector form: the unnamed one is ""
        vector = vector.get("")
    return np.asarray(vector, dtype=np.float32)


def _records_by_id(records: Any) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
    """Retrieved records (either backend) as ``{point id: (payload, vector)}``."""
    return {str(r.id): (dict(r.payload or {}), _vector_from_stored(r.vector)) for r in records}


def _hits(points: Any) -> list[tuple[float, dict[str, Any]]]:
    """Scored points (either backend) as ``(score, payload)`` pairs."""
    return [(p.score, dict(p.payload or {})) for p in points]


# --------------------------------------------------------------------------------------
# The interface and the shared logic
# --------------------------------------------------------------------------------------


class TrackIndex(ABC):
    """Track embeddings with payload; similarity search and recommendation."""

    @abstractmethod
    async def upsert(self, payload: TrackPayload, vector: np.ndarray) -> None:
        """Store (or replace) the track ``payload.track_id``. Idempotent by track id.

        Parameters
        ----------
        payload : TrackPayload
            The track's metadata; ``tempo_bpm`` (BPM) and ``duration_s`` (seconds) must
            be finite and >= 0, ``loudness_lufs`` (LUFS) finite, ``source`` non-empty.
        vector : numpy.ndarray, shape (dim,)
            The embedding, any float dtype (stored as float32); finite, not all zeros.

        Raises
        ------
        InvalidArgument
            Bad payload (track id, key, mode, numbers) or vector (shape, NaN/inf, zero).
        Unavailable
            The index is closed, or the Qdrant server cannot be reached.
        """

    @abstractmethod
    async def get(self, track_id: str) -> tuple[TrackPayload, np.ndarray]:
        """The payload and the stored vector of ``track_id``.

        Returns
        -------
        payload : TrackPayload
        vector : numpy.ndarray, shape (dim,), float32
            The stored vector, normalised to unit L2 length (cosine storage).

        Raises
        ------
        InvalidArgument
            ``track_id`` is not a non-empty string of at most 256 characters.
        NotFound
            The track is not in the index.
        Unavailable
            The index is closed, or the Qdrant server cannot be reached.
        """

    @abstractmethod
    async def similar(
        self, track_id: str, *, limit: int = 10, flt: TrackFilter | None = None
    ) -> list[ScoredTrack]:
        """Tracks nearest to ``track_id`` by cosine similarity, best first, without it.

        Parameters
        ----------
        track_id : str
            A stored track.
        limit : int, default 10
            Most results, in ``[1, MAX_LIMIT]``.
        flt : TrackFilter, optional
            Restricts the results.

        Returns
        -------
        list of ScoredTrack
            At most ``limit`` tracks; ``score`` is the cosine similarity in [-1, 1].

        Raises
        ------
        InvalidArgument
            Bad track id, ``limit`` or filter.
        NotFound
            ``track_id`` is not in the index.
        Unavailable
            The index is closed, or the Qdrant server cannot be reached.
        """

    @abstractmethod
    async def recommend(
        self,
        *,
        liked: Sequence[str],
        disliked: Sequence[str] = (),
        limit: int = 10,
        flt: TrackFilter | None = None,
    ) -> list[ScoredTrack]:
        """Tracks near the liked and away from the disliked ones, best first, excluding both.

        Parameters
        ----------
        liked : sequence of str
            Stored track ids, at least one; duplicates are dropped.
        disliked : sequence of str, default ()
            Stored track ids, none of them also liked.
        limit : int, default 10
            Most results, in ``[1, MAX_LIMIT]``.
        flt : TrackFilter, optional
            Restricts the results.

        Returns
        -------
        list of ScoredTrack
            At most ``limit`` tracks; ``score`` is the best_score value in (-1, 1)
            described in the module docstring.

        Raises
        ------
        InvalidArgument
            No liked track, a plain string instead of a sequence, a track both liked
            and disliked, more than ``MAX_EXAMPLES`` examples, bad ``limit`` or filter.
        NotFound
            Some example track is not in the index (all missing ids are named).
        Unavailable
            The index is closed, or the Qdrant server cannot be reached.
        """

    @abstractmethod
    async def count(self) -> int:
        """Number of tracks stored (exact count).

        Raises
        ------
        Unavailable
            The index is closed, or the Qdrant server cannot be reached.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release the index; idempotent. Later calls raise Unavailable."""


class _QdrantTrackIndex(TrackIndex):
    """Validation, id mapping and query planning shared by both backends.

    Subclasses implement the ``_do_*`` primitives; point ids there are UUID strings.
    """

    def __init__(self, dim: int) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self._closed = False
        self._inflight = 0
        self._drained: asyncio.Event | None = None

    # -- primitives ------------------------------------------------------------------

    @abstractmethod
    async def _do_upsert(self, pid: str, vector: list[float], payload: dict[str, Any]) -> None: ...

    @abstractmethod
    async def _do_retrieve(self, pids: list[str]) -> dict[str, tuple[dict[str, Any], np.ndarray]]: ...

    @abstractmethod
    async def _do_query(
        self, query: Any, limit: int, cond: _Conditions, exclude: list[str]
    ) -> list[tuple[float, dict[str, Any]]]:
        """Run ``query`` (from ``_nearest_query``/``_recommend_query``) under ``cond``,
        leaving out the points ``exclude``; ``(score, payload)`` pairs, best first."""

    @abstractmethod
    def _nearest_query(self, vector: list[float]) -> Any:
        """The backend's nearest-neighbour query for ``vector``."""

    @abstractmethod
    def _recommend_query(self, positive: list[list[float]], negative: list[list[float]]) -> Any:
        """The backend's best_score recommend query for the example vectors."""

    @abstractmethod
    async def _do_count(self) -> int: ...

    @abstractmethod
    async def _do_close(self) -> None: ...

    # -- lifecycle -------------------------------------------------------------------

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

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._inflight:
            self._drained = asyncio.Event()
            await self._drained.wait()
        await self._do_close()

    # -- helpers ---------------------------------------------------------------------

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

    @staticmethod
    def _scored(hits: list[tuple[float, dict[str, Any]]]) -> list[ScoredTrack]:
        out = []
        for score, data in hits:
            payload = _payload_from_dict(data)
            out.append(ScoredTrack(track_id=payload.track_id, score=float(score), payload=payload))
        return out

    # -- the API ---------------------------------------------------------------------

    async def upsert(self, payload: TrackPayload, vector: np.ndarray) -> None:
        data = _payload_to_dict(payload)
        arr = self._check_vector(vector)
        async with self._op():
            await self._do_upsert(point_id(data["track_id"]), arr.tolist(), data)

    async def get(self, track_id: str) -> tuple[TrackPayload, np.ndarray]:
        pid = point_id(_check_track_id(track_id))
        async with self._op():
            found = await self._do_retrieve([pid])
        if pid not in found:
            raise NotFound(f"track {track_id!r} is not in the index")
        data, vector = found[pid]
        return _payload_from_dict(data), vector

    async def similar(
        self, track_id: str, *, limit: int = 10, flt: TrackFilter | None = None
    ) -> list[ScoredTrack]:
        pid = point_id(_check_track_id(track_id))
        limit = _check_limit(limit)
        cond = _conditions(flt)
        async with self._op():
            found = await self._do_retrieve([pid])
            if pid not in found:
                raise NotFound(f"track {track_id!r} is not in the index")
            vector = found[pid][1].tolist()
            hits = await self._do_query(self._nearest_query(vector), limit, cond, [pid])
        return self._scored(hits)

    async def recommend(
        self,
        *,
        liked: Sequence[str],
        disliked: Sequence[str] = (),
        limit: int = 10,
        flt: TrackFilter | None = None,
    ) -> list[ScoredTrack]:
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
        limit = _check_limit(limit)
        cond = _conditions(flt)
        pids = {t: point_id(t) for t in liked_ids + disliked_ids}
        async with self._op():
            found = await self._do_retrieve(list(pids.values()))
            missing = [t for t, pid in pids.items() if pid not in found]
            if missing:
                raise NotFound(f"unknown track ids: {', '.join(missing)}")
            positive = [found[pids[t]][1].tolist() for t in liked_ids]
            negative = [found[pids[t]][1].tolist() for t in disliked_ids]
            query = self._recommend_query(positive, negative)
            hits = await self._do_query(query, limit, cond, list(pids.values()))
        return self._scored(hits)

    async def count(self) -> int:
        async with self._op():
            return await self._do_count()


# --------------------------------------------------------------------------------------
# Qdrant Edge backend
# --------------------------------------------------------------------------------------

_EDGE_SCHEMA = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
}


def _edge_filter(cond: _Conditions, exclude: list[str]) -> qe.Filter | None:
    must: list[Any] = [qe.FieldCondition(field, match=qe.MatchValue(value)) for field, value in cond.matches]
    if cond.tempo_gte is not None or cond.tempo_lte is not None:
        must.append(qe.FieldCondition("tempo_bpm", range=qe.RangeFloat(gte=cond.tempo_gte, lte=cond.tempo_lte)))
    must_not: list[Any] = [qe.HasIdCondition(set(exclude))] if exclude else []
    if not must and not must_not:
        return None
    return qe.Filter(must=must or None, must_not=must_not or None)


class EdgeTrackIndex(_QdrantTrackIndex):
    """The index in a Qdrant Edge shard in the folder ``path`` (created if missing).

    The shard writes a WAL, so every acknowledged upsert survives a crash; :meth:`close`
    also flushes the segments. Only one process (one ``EdgeTrackIndex``) may hold a shard
    folder at a time: a second open fails with FailedPrecondition (the WAL is locked).
    Points go into appendable segments that are searched exactly; nothing here builds
    an HNSW graph (``EdgeShard.optimize()``), which is fine for catalogues up to some
    100k tracks.
    """

    def __init__(self, path: str | os.PathLike[str], *, dim: int) -> None:
        super().__init__(dim)
        self.path = Path(path)
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine))
        existing = (self.path / "edge_config.json").exists() or (self.path / "segments").exists()
        try:
            if existing:
                # Passing the config makes load() check it against the stored segments.
                shard = qe.EdgeShard.load(str(self.path), config)
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                shard = qe.EdgeShard.create(str(self.path), config)
        except Exception as exc:  # qdrant_edge raises plain Exception
            raise FailedPrecondition(f"cannot open the Qdrant Edge shard at {self.path}: {exc}") from exc
        try:
            have = shard.info().payload_schema
            for field, kind in PAYLOAD_INDEXES.items():
                if field not in have:
                    shard.update(qe.UpdateOperation.create_field_index(field, _EDGE_SCHEMA[kind]))
        except BaseException:
            shard.close()
            raise
        self._shard = shard

    async def _do_upsert(self, pid: str, vector: list[float], payload: dict[str, Any]) -> None:
        op = qe.UpdateOperation.upsert_points([qe.Point(pid, vector, payload)])
        await asyncio.to_thread(self._shard.update, op)

    async def _do_retrieve(self, pids: list[str]) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
        records = await asyncio.to_thread(self._shard.retrieve, pids, True, True)
        return _records_by_id(records)

    async def _do_query(
        self, query: Any, limit: int, cond: _Conditions, exclude: list[str]
    ) -> list[tuple[float, dict[str, Any]]]:
        request = qe.QueryRequest(
            limit=limit,
            query=query,
            filter=_edge_filter(cond, exclude),
            with_payload=True,
            with_vector=False,
        )
        points = await asyncio.to_thread(self._shard.query, request)
        return _hits(points)

    def _nearest_query(self, vector: list[float]) -> Any:
        return qe.Query.Nearest(vector)

    def _recommend_query(self, positive: list[list[float]], negative: list[list[float]]) -> Any:
        return qe.Query.RecommendBestScore(qe.RecommendQuery(positive, negative))

    async def _do_count(self) -> int:
        return await asyncio.to_thread(self._shard.count, qe.CountRequest(exact=True))

    async def _do_close(self) -> None:
        def close() -> None:
            try:
                self._shard.flush()
            finally:
                self._shard.close()

        await asyncio.to_thread(close)


# --------------------------------------------------------------------------------------
# qdrant-client backend
# --------------------------------------------------------------------------------------


class QdrantClientTrackIndex(_QdrantTrackIndex):
    """The index in a Qdrant collection through qdrant-client's ``AsyncQdrantClient``.

    Give ``url`` (``"http://qdrant:6333"``) for a server, or ``location`` for
    qdrant-client's local mode: ``":memory:"`` or a folder path. The collection is
    created on first use (cosine, ``dim``, the payload indexes); an existing collection
    with another vector size or distance raises FailedPrecondition. A server that cannot
    be reached, times out or answers 5xx/429 raises Unavailable.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        location: str | None = None,
        api_key: str | None = None,
        collection: str = "tracks",
        dim: int,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(dim)
        if (url is None) == (location is None):
            raise ValueError("give exactly one of url= (a Qdrant server) or location= (local mode)")
        if not collection:
            raise ValueError("collection name must not be empty")
        from qdrant_client import AsyncQdrantClient, models

        self._models = models
        self.collection = collection
        self._where = url if url is not None else f"local Qdrant {location}"
        client: AsyncQdrantClient
        if url is not None:
            client = AsyncQdrantClient(url=url, api_key=api_key, timeout=timeout_s, check_compatibility=False)  # type: ignore[arg-type]
        elif location == ":memory:":
            client = AsyncQdrantClient(location=":memory:")
        else:
            client = AsyncQdrantClient(path=str(location))
        self._client = client
        self._ready = False
        self._ready_lock = asyncio.Lock()

    async def _call(self, what: str, awaitable: Any) -> Any:
        """Await a client call, turning transport failures into Unavailable."""
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        try:
            return await awaitable
        except ResponseHandlingException as exc:
            raise Unavailable(f"Qdrant at {self._where} unreachable ({what}): {exc.source!r}") from exc
        except UnexpectedResponse as exc:
            if exc.status_code is not None and (exc.status_code >= 500 or exc.status_code == 429):
                raise Unavailable(f"Qdrant at {self._where} failed ({what}): HTTP {exc.status_code}") from exc
            raise
        except (OSError, asyncio.TimeoutError) as exc:
            raise Unavailable(f"Qdrant at {self._where} unreachable ({what}): {exc!r}") from exc

    async def _ensure_collection(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            await self._create_collection()
            self._ready = True

    async def _create_collection(self) -> None:
        from qdrant_client.http.exceptions import UnexpectedResponse

        m = self._models
        name = self.collection
        if not await self._call("collection_exists", self._client.collection_exists(name)):
            try:
                await self._call(
                    "create_collection",
                    self._client.create_collection(
                        name, vectors_config=m.VectorParams(size=self.dim, distance=m.Distance.COSINE)
                    ),
                )
            except UnexpectedResponse as exc:
                if exc.status_code != 409:  # 409: another replica created it meanwhile
                    raise
        info = await self._call("get_collection", self._client.get_collection(name))
        vectors = info.config.params.vectors
        if not isinstance(vectors, m.VectorParams) or vectors.size != self.dim or vectors.distance != m.Distance.COSINE:
            raise FailedPrecondition(
                f"Qdrant collection {name!r} has vectors {vectors!r}; expected one unnamed "
                f"{self.dim}-dimensional cosine vector"
            )
        have = info.payload_schema or {}
        kinds = {
            "keyword": m.PayloadSchemaType.KEYWORD,
            "integer": m.PayloadSchemaType.INTEGER,
            "float": m.PayloadSchemaType.FLOAT,
        }
        with warnings.catch_warnings():  # local mode warns that payload indexes do nothing
            warnings.simplefilter("ignore", UserWarning)
            for field, kind in PAYLOAD_INDEXES.items():
                if field not in have:
                    await self._call(
                        "create_payload_index",
                        self._client.create_payload_index(name, field, field_schema=kinds[kind], wait=True),
                    )

    def _filter(self, cond: _Conditions, exclude: list[str]) -> Any:
        m = self._models
        must: list[Any] = [
            m.FieldCondition(key=field, match=m.MatchValue(value=value)) for field, value in cond.matches
        ]
        if cond.tempo_gte is not None or cond.tempo_lte is not None:
            must.append(m.FieldCondition(key="tempo_bpm", range=m.Range(gte=cond.tempo_gte, lte=cond.tempo_lte)))
        must_not: list[Any] = [m.HasIdCondition(has_id=list(exclude))] if exclude else []
        if not must and not must_not:
            return None
        return m.Filter(must=must or None, must_not=must_not or None)

    async def _do_upsert(self, pid: str, vector: list[float], payload: dict[str, Any]) -> None:
        await self._ensure_collection()
        point = self._models.PointStruct(id=pid, vector=vector, payload=payload)
        await self._call("upsert", self._client.upsert(self.collection, points=[point], wait=True))

    async def _do_retrieve(self, pids: list[str]) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
        await self._ensure_collection()
        records = await self._call(
            "retrieve",
            self._client.retrieve(self.collection, ids=pids, with_payload=True, with_vectors=True),
        )
        return _records_by_id(records)

    async def _do_query(
        self, query: Any, limit: int, cond: _Conditions, exclude: list[str]
    ) -> list[tuple[float, dict[str, Any]]]:
        await self._ensure_collection()
        response = await self._call(
            "query_points",
            self._client.query_points(
                self.collection,
                query=query,
                query_filter=self._filter(cond, exclude),
                limit=limit,
                with_payload=True,
                with_vectors=False,
            ),
        )
        return _hits(response.points)

    def _nearest_query(self, vector: list[float]) -> Any:
        return vector

    def _recommend_query(self, positive: list[list[float]], negative: list[list[float]]) -> Any:
        m = self._models
        return m.RecommendQuery(
            recommend=m.RecommendInput(
                positive=positive, negative=negative or None, strategy=m.RecommendStrategy.BEST_SCORE
            )
        )

    async def _do_count(self) -> int:
        await self._ensure_collection()
        result = await self._call("count", self._client.count(self.collection, exact=True))
        return int(result.count)

    async def _do_close(self) -> None:
        await self._client.close()


# --------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------


def open_index(
    *,
    qdrant_url: str | None,
    edge_path: str | os.PathLike[str],
    dim: int,
    collection: str = "tracks",
    qdrant_api_key: str | None = None,
) -> TrackIndex:
    """A Qdrant server index when ``qdrant_url`` is set (non-empty), else a Qdrant Edge
    shard in ``edge_path`` (``collection`` does not apply to Edge: one shard per folder).

    The Edge shard is opened here (blocking, quick); the server collection is created
    on first use.

    Parameters
    ----------
    qdrant_url : str or None
        Qdrant server URL (``"http://qdrant:6333"``); ``None`` or ``""`` selects Edge.
    edge_path : str or os.PathLike
        Folder of the Qdrant Edge shard (created if missing).
    dim : int
        Embedding dimension, >= 1.
    collection : str, default "tracks"
        Server collection name.
    qdrant_api_key : str, optional
        API key for the server.

    Returns
    -------
    TrackIndex
        A :class:`QdrantClientTrackIndex` or an :class:`EdgeTrackIndex`.

    Raises
    ------
    ValueError
        ``dim`` is not a positive integer.
    FailedPrecondition
        The Edge shard cannot be opened (locked by another process, or stored with
        another dimension or distance).
    """
    if qdrant_url:
        return QdrantClientTrackIndex(url=qdrant_url, api_key=qdrant_api_key, collection=collection, dim=dim)
    return EdgeTrackIndex(edge_path, dim=dim)
