"""Recommendations for one listener: the collaborative model and the content taste profile,
blended by how much the listener has done.

Signals
-------
* **collaborative**: the tenant's live :class:`~musicaas_recommender.listeners.cf.CFModel`
  scores every track it knows for the listener (in [0, 1]); the best ones are candidates.
* **content taste**: the listener's taste profile, the weighted mean of the unit audio
  vectors of the tracks it interacted with (weights of
  :mod:`~musicaas_recommender.listeners.signals`, summed per track over its latest
  :data:`PROFILE_HISTORY` interactions; negative weights pull away from what it skipped or
  disliked); the index's nearest tracks to it are candidates, scored by cosine similarity.
* **popular**: tracks with the most distinct listeners engaging positively; the whole
  answer for a listener with neither signal, and the filler when the others run short.

Blend
-----
Candidates come from each signal (the collaborative model's best, the profile's nearest,
the most popular); each candidate gets all three scores (a track the model does not know
has collaborative and popularity score 0; the content score of any candidate is its cosine
to the profile; popularity is ``log(1 + listeners)``), each min-max normalised over the
candidate pool, and

    score = w * collaborative + (1 - w) * ((1 - rho) c * content + (1 - (1 - rho) c) * popular)
    w = n / (n + k),   c = n / (n + k_c)

where ``n`` is the listener's interaction count, ``k`` (:data:`DEFAULT_HISTORY_K`) the count
at which the collaborative signal has half the weight, ``rho``
(:data:`DEFAULT_POPULARITY_SHARE`) the share of the rest that backs off to popularity (a
short history says little, and what most listeners like is the best guess then), and
``k_c`` (:data:`DEFAULT_CONTENT_HISTORY_K`) the count at which the content signal has half
of its share (a taste profile of one track is a poor guess of a taste; ``k_c = 0``: ``c =
1``). ``k``, ``rho`` and ``k_c`` were chosen on the development listeners of ``bench/listeners.py`` (never its test
listeners). ``w`` is 0 for a listener the model has not seen yet (it is trained on a
schedule); for one without a profile (none of its tracks is indexed) the content share goes
to popularity. Each result's ``reason`` names the largest of its weighted terms:
``"collaborative (ALS v3)"``, ``"content taste"`` or ``"popular"`` (also the fillers when
the pool runs short, and the whole answer for a listener with neither a model row nor a
profile). With ``diversity > 0`` the final order is maximal marginal relevance over the
audio vectors (Carbonell & Goldstein, SIGIR 1998), ``lambda = 1 - diversity``, as the index
does.

Filters
-------
The content candidates come from a filtered ``nearest`` query. A collaborative (or popular)
candidate passes the same :class:`~musicaas_recommender.index.TrackFilter` only if the index
says so: one filtered ``nearest`` query restricted to the candidates (``among``, a Qdrant
``has_id`` condition) returns those that pass, with their payloads; without a filter,
``payloads(tenant, ids)`` gives them in one read. Either
way the index evaluates the filter (its rules live in one place), a track no longer in the
index (deleted since the model was trained) is dropped, and every result has its payload.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import structlog

from musicaas.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from musicaas.tenancy import check_tenant
from musicaas_recommender.index import MAX_LIMIT, ScoredTrack, TrackFilter, TrackPayload
from musicaas_recommender.listeners.cf import CFConfig, CFModel, ModelInfo, fit
from musicaas_recommender.listeners.signals import MAX_LISTENER_ID_LEN, listener_ref, weights_of
from musicaas_recommender.listeners.store import InteractionStore

__all__ = [
    "CONTENT_REASON",
    "DEFAULT_CONTENT_HISTORY_K",
    "DEFAULT_HISTORY_K",
    "DEFAULT_POPULARITY_SHARE",
    "POPULAR_REASON",
    "PROFILE_HISTORY",
    "ListenerConfig",
    "ListenerIndex",
    "ListenerRecommendations",
    "ListenerRecommender",
    "taste_profile",
]

log = structlog.get_logger()

#: Interactions at which the collaborative signal has half the weight (module docstring).
#: Chosen on the development split of ``bench/listeners.py`` (grid 3, 10, 30, 100; with
#: the content weight's k_c two runs chose 30 and 100, 0.001 apart in development NDCG@10).
DEFAULT_HISTORY_K = 30.0
#: Share of the non-collaborative weight that backs off to popularity (module docstring).
#: Chosen on the development split of ``bench/listeners.py`` (grid 0.5, 0.75, 0.9, 1, with
#: DEFAULT_CONTENT_HISTORY_K): its audience has a strong popularity bias; a tenant whose
#: listeners follow the charts less wants less. 0.9 before k_c existed.
DEFAULT_POPULARITY_SHARE = 0.75
#: Interactions at which the content signal has half its share ``(1 - w) (1 - rho)``
#: (module docstring; 0: the full share at any history). Chosen with the other two on the
#: development split of ``bench/listeners.py`` (grid 0, 3, 10, 30): a listener with one
#: interaction gets a tenth of the content share, and the rest backs off to popularity.
DEFAULT_CONTENT_HISTORY_K = 10.0
#: Latest interactions of a listener that make its taste profile.
PROFILE_HISTORY = 1000
#: Reason of a content-taste result.
CONTENT_REASON = "content taste"
#: Reason of a most-popular result.
POPULAR_REASON = "popular"
#: Most ids passed to the index as ``exclude`` (the rest are left out after the query).
MAX_EXCLUDE = 256


class ListenerIndex(Protocol):
    """What the listener recommender needs from the track index (``TrackIndex`` provides it).

    Both methods are per tenant and raise as ``TrackIndex`` does (InvalidArgument for a bad
    tenant, id, limit or filter; Unavailable when the index is down).
    """

    async def vectors(self, tenant: str, track_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those of ``track_ids`` that ``tenant`` has in the index.

        Returns
        -------
        dict of str to np.ndarray [shape=(dim,)], float32, unit L2 norm
            Missing ids are absent.
        """

    async def nearest(
        self, tenant: str, vector: np.ndarray, *, limit: int, flt: TrackFilter | None = None,
        exclude: Sequence[str] = (), diversity: float = 0.0, among: Sequence[str] | None = None,
    ) -> list[ScoredTrack]:
        """``tenant``'s tracks nearest ``vector`` (cosine), best first, passing ``flt``, none
        of ``exclude`` and, when ``among`` is given, only those ids; MMR with
        ``lambda = 1 - diversity`` when ``diversity > 0``."""

    async def payloads(self, tenant: str, track_ids: Sequence[str]) -> dict[str, TrackPayload]:
        """The payloads of those of ``track_ids`` that ``tenant`` has in the index (missing ids absent)."""


@dataclass(frozen=True)
class ListenerConfig:
    """Settings of the listener recommender.

    Attributes
    ----------
    cf : CFConfig
        How the collaborative models are fitted.
    history_k : float > 0, interactions
        ``k`` of the collaborative weight ``n / (n + k)``.
    popularity_share : float in [0, 1]
        ``rho`` of the blend.
    content_history_k : float >= 0, interactions
        ``k_c`` of the content weight ``c = n / (n + k_c)`` (0: ``c = 1`` at any history).
    profile_history : int >= 1, interactions
        Latest interactions in a taste profile.
    """

    cf: CFConfig = CFConfig()
    history_k: float = DEFAULT_HISTORY_K
    popularity_share: float = DEFAULT_POPULARITY_SHARE
    profile_history: int = PROFILE_HISTORY
    content_history_k: float = DEFAULT_CONTENT_HISTORY_K

    def __post_init__(self) -> None:
        if not self.history_k > 0 or self.profile_history < 1 or not 0.0 <= self.popularity_share <= 1.0:
            raise ValueError("history_k must be > 0, popularity_share in [0, 1] and profile_history >= 1")
        if not (math.isfinite(self.content_history_k) and self.content_history_k >= 0):
            raise ValueError("content_history_k must be finite and >= 0")

    def weights(self, n: int, collaborative: bool = True, content: bool = True,
                popular: bool = True) -> tuple[float, float, float]:
        """The blend's weights for a listener with ``n`` >= 0 interactions (module docstring,
        Blend), given which signals exist for it: ``collaborative`` (the model has a row for
        the listener; else ``w = 0``), ``content`` (it has a taste profile; else the content
        share goes to popularity) and ``popular`` (the tenant has a model, whose popularity
        counts; else the rest is content alone).

        Returns
        -------
        (float, float, float)
            Weights of the collaborative, content and popularity terms, each in [0, 1],
            summing to 1 (all on popularity when no signal exists)."""
        w = n / (n + self.history_k) if collaborative else 0.0
        if not content:
            return w, 0.0, 1 - w
        if not popular:
            return w, 1 - w, 0.0
        c = n / (n + self.content_history_k) if self.content_history_k > 0 else 1.0
        share = (1 - w) * (1 - self.popularity_share) * c
        return w, share, 1 - w - share


@dataclass(frozen=True)
class ListenerRecommendations:
    """The answer of :meth:`ListenerRecommender.recommend_for_listener`.

    Attributes
    ----------
    tracks : list of ScoredTrack
        Best first; ``score`` in [0, 1]; each with its ``reason``.
    model_version : str
        The collaborative model used (``"v3"``); ``""`` when the tenant has none yet.
    collaborative_weight : float in [0, 1]
        ``w`` of the blend for this listener.
    interactions : int
        Interactions the listener has recorded.
    """

    tracks: list[ScoredTrack]
    model_version: str
    collaborative_weight: float
    interactions: int


def _result(hit: ScoredTrack, score: float, reason: str) -> ScoredTrack:
    return dataclasses.replace(hit, score=float(score), reason=reason)


def taste_profile(weights: dict[str, float], vectors: dict[str, np.ndarray]) -> np.ndarray | None:
    """The weighted mean of the vectors of the tracks a listener interacted with.

    Parameters
    ----------
    weights : dict of str to float
        Net weight of each track (the sum of its interactions' weights).
    vectors : dict of str to np.ndarray [shape=(dim,)], unit L2 norm
        Indexed tracks' vectors; tracks without one are left out.

    Returns
    -------
    np.ndarray [shape=(dim,)], float32, or None
        ``sum(w_t v_t) / sum(|w_t|)`` over the tracks with a vector and a non-zero weight;
        None when there is none or the mean is (numerically) zero.
    """
    used = [(w, vectors[t]) for t, w in weights.items() if w != 0 and t in vectors]
    if not used:
        return None
    total = sum(abs(w) for w, _ in used)
    mean = sum(w * np.asarray(v, dtype=np.float64) for w, v in used) / total
    if not np.all(np.isfinite(mean)) or float(np.linalg.norm(mean)) < 1e-6:
        return None
    return mean.astype(np.float32)


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < 1e-12:
        return np.full_like(x, 0.5 if hi > 0 else 0.0)
    return (x - lo) / (hi - lo)


def _check_listener(listener_id: str) -> str:
    if not isinstance(listener_id, str) or not 0 < len(listener_id) <= MAX_LISTENER_ID_LEN \
            or not listener_id.isprintable():
        raise InvalidArgument(f"listener_id: 1 to {MAX_LISTENER_ID_LEN} printable characters")
    return listener_id


class ListenerRecommender:
    """Taste profiles, collaborative models (trained in the background, swapped atomically)
    and the hybrid recommendation of the module docstring.

    Parameters
    ----------
    store : InteractionStore
        Opened by the caller.
    index : ListenerIndex
    config : ListenerConfig, optional

    Notes
    -----
    Training (:meth:`train`) runs one fit at a time in a worker thread, with ``implicit``
    held to ``config.cf.threads`` threads and BLAS to one; the live model of a tenant is a
    reference replaced in one step once the new model is complete, so a reader sees either
    the old model or the new one, never a mix.
    """

    def __init__(self, store: InteractionStore, index: ListenerIndex, config: ListenerConfig | None = None) -> None:
        self.store = store
        self.index = index
        self.config = config or ListenerConfig()
        self._live: dict[str, CFModel] = {}
        self._train_lock = asyncio.Lock()
        self._empty: set[str] = set()

    # -- models ------------------------------------------------------------------------------

    def model(self, tenant: str) -> CFModel | None:
        """``tenant``'s live model, or None before its first training."""
        return self._live.get(tenant)

    def set_model(self, tenant: str, model: CFModel) -> None:
        """Make ``model`` ``tenant``'s live model (one trained elsewhere: a benchmark, a
        replica); the same atomic swap as :meth:`train`."""
        self._live[check_tenant(tenant)] = model

    async def train(self, tenant: str) -> ModelInfo:
        """Retrain ``tenant``'s model now on every interaction recorded so far, and make it live.

        Returns
        -------
        ModelInfo
            The new live model's (its version is above every earlier one of the tenant).

        Raises
        ------
        InvalidArgument
            ``tenant`` is not a tenant name.
        FailedPrecondition
            The tenant has no interactions.
        Unavailable
            The store cannot be read.
        """
        check_tenant(tenant)
        async with self._train_lock:
            snapshot = await self.store.snapshot(tenant)
            if not snapshot.listener_ids:
                self._empty.add(tenant)
                raise FailedPrecondition("no interactions recorded: nothing to train on")
            try:
                model = await asyncio.to_thread(fit, snapshot, self.config.cf)
            except BaseException:
                await self.store.mark_stale(tenant)  # its interactions wait for the next run
                raise
            self._live[tenant] = model  # the swap: one reference assignment
            self._empty.discard(tenant)
        info = model.info
        log.info("listener_model_trained", tenant=tenant, version=info.version, listeners=info.listeners,
                 tracks=info.tracks, interactions=info.interactions, seconds=round(info.train_seconds, 3))
        return info

    async def train_due(self) -> list[ModelInfo]:
        """Train every tenant whose model is stale, or that has interactions and no live model
        (after a restart); one after the other. A tenant that fails is logged and left for
        the next run.

        Returns
        -------
        list of ModelInfo
            The models trained.
        """
        done = []
        for tenant, stale in sorted((await self.store.tenants()).items()):
            if not stale and (tenant in self._live or tenant in self._empty):
                continue
            try:
                done.append(await self.train(tenant))
            except FailedPrecondition:
                continue
            except Exception as exc:  # noqa: BLE001 - one tenant never stops the others
                log.warning("listener_model_training_failed", tenant=tenant, error=str(exc) or type(exc).__name__)
        return done

    async def run_schedule(self, interval_s: float) -> None:
        """:meth:`train_due` now and every ``interval_s`` seconds (> 0), until cancelled."""
        if not interval_s > 0:
            raise ValueError("interval_s must be > 0")
        while True:
            try:
                await self.train_due()
            except Exception as exc:  # noqa: BLE001 - the schedule outlives a bad run
                log.warning("listener_training_run_failed", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(interval_s)

    # -- profiles ----------------------------------------------------------------------------

    async def update_profiles(self, tenant: str, listener_ids: Sequence[str]) -> int:
        """Rebuild the taste profiles of ``tenant``'s listeners from their stored interactions
        (idempotent: the same interactions give the same profile).

        Returns
        -------
        int
            Listeners that have a profile now.

        Raises
        ------
        Unavailable
            The store or the index cannot be reached.
        """
        weights: dict[str, dict[str, float]] = {}
        for listener in dict.fromkeys(listener_ids):
            history = await self.store.history(tenant, listener, limit=self.config.profile_history)
            per_track: dict[str, float] = {}
            if history:
                w = weights_of(np.array([h[1] for h in history]), np.array([h[2] for h in history]))
                for (track, _, _), wt in zip(history, w):
                    per_track[track] = per_track.get(track, 0.0) + float(wt)
            weights[listener] = per_track
        wanted = sorted({t for per in weights.values() for t, w in per.items() if w != 0})
        vectors = await self.index.vectors(tenant, wanted) if wanted else {}
        with_profile = 0
        for listener, per_track in weights.items():
            profile = taste_profile(per_track, vectors)
            await self.store.save_profile(tenant, listener, profile)
            with_profile += profile is not None
        return with_profile

    # -- recommendations ---------------------------------------------------------------------

    async def recommend_for_listener(
        self, tenant: str, listener_id: str, *, limit: int = 10, flt: TrackFilter | None = None,
        diversity: float = 0.0, include_played: bool = False,
    ) -> ListenerRecommendations:
        """The hybrid recommendation of the module docstring.

        Parameters
        ----------
        tenant : str
        listener_id : str
            1-256 printable characters; it must have recorded interactions.
        limit : int in [1, MAX_LIMIT]
        flt : TrackFilter, optional
            Holds for every result, whichever signal chose it.
        diversity : float in [0, 1]
        include_played : bool
            Also recommend tracks the listener has interacted with (never one it disliked).

        Returns
        -------
        ListenerRecommendations
            At most ``limit`` tracks (fewer when the filter leaves fewer).

        Raises
        ------
        InvalidArgument
            A bad tenant, listener id, limit or diversity, or a filter the index rejects.
        NotFound
            The listener has no recorded interactions (the message names it, cut to 64 characters).
        Unavailable
            The store or the index cannot be reached.
        """
        check_tenant(tenant)
        _check_listener(listener_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidArgument(f"limit must be 1 to {MAX_LIMIT}, got {limit!r}")
        if not isinstance(diversity, (int, float)) or not math.isfinite(diversity) or not 0.0 <= diversity <= 1.0:
            raise InvalidArgument(f"diversity must be in [0, 1], got {diversity!r}")
        n, played, disliked = await self.store.engaged(tenant, listener_id)
        if n == 0:
            raise NotFound(f"listener {listener_id[:64]!r} has no recorded interactions")
        excluded = disliked if include_played else played | disliked
        model = self._live.get(tenant)
        version = model.info.version if model is not None else ""
        profile = await self.store.profile(tenant, listener_id)
        cf_scores = model.scores(listener_id) if model is not None else None
        weights = self.config.weights(n, collaborative=cf_scores is not None, content=profile is not None,
                                      popular=model is not None)
        w = weights[0]
        pool = max(3 * limit, 50)
        picked: list[ScoredTrack] = []
        if cf_scores is not None or profile is not None:
            picked = await self._blend(tenant, model, cf_scores, profile, weights, excluded, pool, limit, flt,
                                       diversity)
        if len(picked) < limit:
            picked += await self._popular(tenant, model, excluded | {p.track_id for p in picked},
                                          limit - len(picked), flt, picked[-1].score if picked else 1.0)
        log.debug("listener_recommended", tenant=tenant, listener=listener_ref(tenant, listener_id),
                  results=len(picked), collaborative_weight=round(w, 3), model_version=version)
        return ListenerRecommendations(tracks=picked, model_version=version, collaborative_weight=float(w),
                                       interactions=int(n))

    async def _blend(self, tenant, model, cf_scores, profile, weights, excluded, pool, limit, flt, diversity):
        w_cf, w_ct, w_pop = weights
        candidates: dict[str, ScoredTrack | None] = {}
        if profile is not None and w_ct > 0:
            unit = profile / np.linalg.norm(profile)
            hits = await self.index.nearest(tenant, unit, limit=min(MAX_LIMIT, pool), flt=flt,
                                            exclude=sorted(excluded)[:MAX_EXCLUDE])
            for h in hits:
                if h.track_id not in excluded:
                    candidates[h.track_id] = h
        for scores, share in ((cf_scores, w_cf), (model.popularity if model is not None else None, w_pop)):
            if scores is None or share <= 0:
                continue
            taken = 0
            for col in np.argsort(-scores, kind="stable"):
                track = model.track_ids[col]
                if track in excluded:
                    continue
                candidates.setdefault(track, None)
                taken += 1
                if taken >= pool:
                    break
        if not candidates:
            return []
        vectors = await self.index.vectors(tenant, list(candidates))
        unresolved = [t for t, h in candidates.items() if h is None and t in vectors]
        resolved = await self._resolve(tenant, unresolved, vectors, flt)
        hits = {t: (h if h is not None else resolved.get(t)) for t, h in candidates.items()}
        ids = [t for t, h in hits.items() if h is not None and t in vectors]
        if not ids:
            return []
        cols = [model.track_index.get(t) for t in ids] if model is not None else [None] * len(ids)
        cf = np.array([cf_scores[c] if cf_scores is not None and c is not None else 0.0 for c in cols])
        pop = np.array([math.log1p(model.popularity[c]) if c is not None else 0.0 for c in cols])
        mat = np.stack([vectors[t] for t in ids]).astype(np.float64)
        content = mat @ (profile / np.linalg.norm(profile)) if profile is not None else np.zeros(len(ids))
        terms = np.stack([w_cf * _minmax(cf), w_ct * _minmax(content), w_pop * _minmax(pop)])
        score = terms.sum(axis=0)
        order = _mmr(score, mat, limit, diversity)
        reasons = (model.reason if model is not None else "", CONTENT_REASON, POPULAR_REASON)
        return [_result(hits[ids[i]], score[i], reasons[int(np.argmax(terms[:, i]))]) for i in order]

    async def _resolve(self, tenant: str, ids: list[str], vectors: dict[str, np.ndarray],
                       flt: TrackFilter | None) -> dict[str, ScoredTrack]:
        """Payloads of those of ``ids`` that pass ``flt`` (module docstring, Filters)."""
        if not ids:
            return {}
        out: dict[str, ScoredTrack] = {}
        if flt is None:  # nothing to check: one read
            found = await self.index.payloads(tenant, ids)
            return {t: ScoredTrack(track_id=t, score=0.0, payload=p) for t, p in found.items()}
        for start in range(0, len(ids), MAX_LIMIT):
            chunk = ids[start:start + MAX_LIMIT]
            for h in await self.index.nearest(tenant, vectors[chunk[0]], limit=len(chunk), flt=flt, among=chunk):
                out[h.track_id] = h
        return out

    async def _popular(self, tenant, model, excluded, count, flt, ceiling):
        if count <= 0:
            return []
        want = count + len(excluded) + 3 * count
        if model is not None:
            order = np.argsort(-model.popularity, kind="stable")[:want]
            ranked = [(model.track_ids[i], float(model.popularity[i])) for i in order if model.popularity[i] > 0]
        else:
            ranked = [(t, float(c)) for t, c in await self.store.popular(tenant, limit=want)]
        ranked = [(t, c) for t, c in ranked if t not in excluded]
        if not ranked:
            return []
        top = ranked[0][1]
        out: list[ScoredTrack] = []
        step = max(2 * count, 20)
        for start in range(0, len(ranked), step):  # resolve a slice at a time: few probes
            chunk = ranked[start:start + step]
            vectors = await self.index.vectors(tenant, [t for t, _ in chunk])
            resolved = await self._resolve(tenant, [t for t, _ in chunk if t in vectors], vectors, flt)
            for t, c in chunk:
                if t in resolved:
                    out.append(_result(resolved[t], ceiling * c / top, POPULAR_REASON))
                    if len(out) >= count:
                        return out
        return out


def _mmr(score: np.ndarray, vectors: np.ndarray, limit: int, diversity: float) -> list[int]:
    """Indices of the ``limit`` best by ``score`` (ties by position), or by maximal marginal
    relevance ``lambda * score - (1 - lambda) * max cosine to those already picked``,
    ``lambda = 1 - diversity``, when ``diversity > 0``."""
    if diversity <= 0:
        return list(np.argsort(-score, kind="stable")[:limit])
    lam = 1.0 - diversity
    sims = vectors @ vectors.T
    picked: list[int] = []
    left = list(range(len(score)))
    while left and len(picked) < limit:
        if picked:
            penalty = sims[np.ix_(left, picked)].max(axis=1)
        else:
            penalty = np.zeros(len(left))
        best = int(np.argmax(lam * score[left] - (1 - lam) * penalty))
        picked.append(left.pop(best))
    return picked
