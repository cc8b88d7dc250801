"""The recommender service: ``SimilarTracks`` and ``Recommend`` RPCs for the calling tenant,
the ``tracks.analyzed`` consumer that upserts every analysed track into the index (idempotent
by tenant and track id) and marks it ``indexed``, and the ``tracks.deleted`` consumer that
takes a deleted track's point out of the index.

The index-size gauge (``musicaas_recommender_index_points``, every tenant's points) is kept by
:class:`IndexWriter`: counted at start and every ``index_size_refresh_s`` seconds, and moved
by one for each point that a consumer adds or removes (no count on the event path).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

import numpy as np
import structlog

from musicaas.common.v1 import common_pb2
from musicaas.embedding import EMBEDDING_DIM
from musicaas.events.v1 import events_pb2
from musicaas.recommender.v1 import recommender_pb2, recommender_pb2_grpc
from musicaas.runtime import telemetry
from musicaas.runtime.bus import Bus, advance_state
from musicaas.runtime import validation
from musicaas.runtime.errors import FailedPrecondition, InvalidArgument, MusicaasError, NotFound
from musicaas.runtime.protoconv import MODE_TO_PROTO, SOURCE_TO_PROTO, mode_name, source_name
from musicaas.runtime.settings import ServiceSettings
from musicaas.tenancy import TENANT_RE, tenant_from_context
from musicaas.models.text_contract import check_text
from musicaas_recommender.index import (
    MAX_LIMIT,
    AttributeTarget,
    ScoredTrack,
    TrackFilter,
    TrackIndex,
    TrackMetadata,
    TrackPayload,
)
from musicaas_recommender.describe import describe_protos
from musicaas_recommender.listeners.cf import CFConfig
from musicaas_recommender.listeners.recommender import (
    DEFAULT_CONTENT_HISTORY_K, DEFAULT_HISTORY_K, DEFAULT_POPULARITY_SHARE, ListenerConfig,
)
from musicaas_recommender.index.shared import check_attribute, decay_factors, payload_to_dict

log = structlog.get_logger()

#: Results per call when the request leaves ``limit`` at 0.
DEFAULT_LIMIT = 10


class RecommenderSettings(ServiceSettings):
    """Recommender settings (``MUSICAAS_*``): Qdrant server URL or Edge shard folder, embedding
    dimension, the model server's text encoder, and the listener model."""

    grpc_port: int = 50053
    #: Qdrant server URL (``http://qdrant:6333``); empty: a Qdrant Edge shard in ``qdrant_path``.
    qdrant_url: str = ""
    qdrant_api_key: str = ""
    #: Folder of the embedded Qdrant Edge shard.
    qdrant_path: str = ".musicaas/qdrant"
    qdrant_collection: str = "tracks"
    #: Length of the indexed vectors; the analyzer's embedding contract by default.
    embedding_dim: int = EMBEDDING_DIM
    #: Seconds between two exact counts of the index for the index-size gauge (it also
    #: follows this process's own writes at once); 0 counts only at start.
    index_size_refresh_s: float = 60.0
    #: The model server (Triton gRPC) whose text encoder embeds track descriptions and
    #: free-text queries; with the encoder off, search is BM25 over the descriptions alone.
    text_encoder_enabled: bool = True
    triton_url: str = "127.0.0.1:8001"
    #: Seconds per text-encoder call.
    text_encoder_timeout_s: float = 10.0
    #: The listener store (SQLite, WAL) of interactions and taste profiles.
    listener_db_path: str = ".musicaas/listeners.sqlite3"
    #: Seconds between two background retrainings of the tenants' listener models (only
    #: tenants with new interactions are retrained); 0: on demand only.
    listener_train_interval_s: float = 300.0
    #: The blend of RecommendForListener (musicaas_recommender.listeners.recommender):
    #: interactions at which collaborative filtering has half the weight (``k``), the share
    #: of popularity in the rest (``rho``; 0.75 was chosen on bench/listeners.py's simulation,
    #: whose listeners follow the charts; a tenant whose listeners do not wants less), the
    #: interactions at which content has half its share (``k_c``), and the collaborative
    #: algorithm (``als`` or ``bpr``) with its factors.
    listener_history_k: float = DEFAULT_HISTORY_K
    listener_popularity_share: float = DEFAULT_POPULARITY_SHARE
    listener_content_history_k: float = DEFAULT_CONTENT_HISTORY_K
    listener_cf_algorithm: str = "als"
    listener_cf_factors: int = 32

    def listener_config(self) -> ListenerConfig:
        """The :class:`ListenerConfig` of these settings.

        Raises
        ------
        ValueError
            ``listener_history_k`` not > 0, a popularity share outside [0, 1], or an unknown algorithm.
        """
        if self.listener_cf_algorithm not in ("als", "bpr"):
            raise ValueError(f"listener_cf_algorithm must be 'als' or 'bpr', got {self.listener_cf_algorithm!r}")
        return ListenerConfig(
            cf=CFConfig(algorithm=self.listener_cf_algorithm, factors=self.listener_cf_factors),
            history_k=self.listener_history_k, popularity_share=self.listener_popularity_share,
            content_history_k=self.listener_content_history_k,
        )


def _metadata_from_proto(meta: common_pb2.TrackMetadata) -> TrackMetadata:
    return TrackMetadata(artist=meta.artist, composer=meta.composer, album=meta.album,
                         year=meta.year or None, genre=meta.genre, tags=tuple(meta.tags))


def attributes_from_proto(items) -> tuple[AttributeTarget, ...]:
    """The index's attribute targets of wire ``AttributeTarget`` messages (unset parts are None;
    names and ranges are checked by the index: InvalidArgument naming the field)."""
    return tuple(
        AttributeTarget(
            name=a.name,
            target=a.target if a.HasField("target") else None,
            min=a.min if a.HasField("min") else None,
            max=a.max if a.HasField("max") else None,
        )
        for a in items
    )


def filter_from_proto(flt: recommender_pb2.TrackFilter) -> TrackFilter | None:
    """The index filter of a wire filter.

    Parameters
    ----------
    flt : recommender_pb2.TrackFilter
        Unset fields (proto3 defaults, ``MODE_UNSPECIFIED``, ``TRACK_SOURCE_UNSPECIFIED``)
        do not filter.

    Returns
    -------
    TrackFilter or None
        ``None`` when the wire filter sets nothing. Not validated here: the index raises
        InvalidArgument for a bad key, tempo range, tag or attribute bound.
    """
    if flt.ByteSize() == 0:
        return None
    return TrackFilter(
        tempo_min_bpm=flt.tempo_min_bpm if flt.HasField("tempo_min_bpm") else None,
        tempo_max_bpm=flt.tempo_max_bpm if flt.HasField("tempo_max_bpm") else None,
        key=flt.key or None,
        mode=mode_name(flt.mode),
        source=source_name(flt.source) if flt.source else None,
        tags=tuple(flt.tags),
        artist=flt.artist or None,
        composer=flt.composer or None,
        album=flt.album or None,
        genre=flt.genre or None,
        attributes=attributes_from_proto(flt.attributes),
    )


def scored_to_proto(item: ScoredTrack, reason: str = "") -> recommender_pb2.ScoredTrack:
    """The wire form of one result.

    Parameters
    ----------
    item : ScoredTrack
    reason : str, optional
        Which signal chose it; ``item.reason`` when empty.

    Returns
    -------
    recommender_pb2.ScoredTrack
        A missing key is ``""``, a missing mode ``MODE_UNSPECIFIED``, a source with no wire
        value ``TRACK_SOURCE_UNSPECIFIED``, a missing attribute 0.
    """
    p = item.payload
    m = p.metadata
    return recommender_pb2.ScoredTrack(
        track_id=item.track_id,
        score=item.score,
        key=p.key or "",
        mode=MODE_TO_PROTO.get(p.mode or "", common_pb2.MODE_UNSPECIFIED),
        tempo_bpm=p.tempo_bpm,
        source=SOURCE_TO_PROTO.get(p.source, common_pb2.TRACK_SOURCE_UNSPECIFIED),
        title=p.title,
        duration_s=p.duration_s,
        loudness_lufs=p.loudness_lufs,
        tags=[common_pb2.TagScore(name=n, score=sc) for n, sc in p.tags],
        metadata=common_pb2.TrackMetadata(title=p.title, artist=m.artist, composer=m.composer, album=m.album,
                                          year=m.year or 0, genre=m.genre, tags=list(m.tags)),
        reason=reason or getattr(item, "reason", "") or "",
        energy=p.energy or 0.0,
        danceability=p.danceability or 0.0,
        valence=p.valence or 0.0,
    )


def _limit(value: int) -> int:
    """The request's ``limit``, ``DEFAULT_LIMIT`` for 0; the index checks the upper bound."""
    if value < 0:
        raise InvalidArgument(f"limit must be 1 to {MAX_LIMIT}, got {value}")
    return value or DEFAULT_LIMIT


#: The index's strategy names by wire value.
STRATEGY_NAMES = {
    recommender_pb2.RECOMMEND_STRATEGY_UNSPECIFIED: "best_score",
    recommender_pb2.RECOMMEND_STRATEGY_AVERAGE_VECTOR: "average_vector",
    recommender_pb2.RECOMMEND_STRATEGY_BEST_SCORE: "best_score",
    recommender_pb2.RECOMMEND_STRATEGY_SUM_SCORES: "sum_scores",
}
#: Most seed tags of one Recommend call.
MAX_SEED_TAGS = 5


def _weight(value: float) -> float:
    """A wire weight: 0 means 1 (the index checks the rest: finite, > 0, at most 100)."""
    return 1.0 if value == 0 else float(value)


class RecommenderServicer(recommender_pb2_grpc.RecommenderServiceServicer):
    """``musicaas.recommender.v1.RecommenderService`` over a :class:`TrackIndex`, the text
    encoder and the listener recommender.

    Every call is the calling tenant's (``x-musicaas-tenant`` metadata, set by the gateway:
    :func:`musicaas.tenancy.tenant_from_context`): it sees that tenant's tracks only, and
    another tenant's track id is NOT_FOUND like a missing one.

    Handlers raise domain errors (Unauthenticated without a tenant, InvalidArgument for a
    malformed one, and the index's InvalidArgument, NotFound, Unavailable); the server's
    error interceptor maps them to gRPC status codes.

    Parameters
    ----------
    index : TrackIndex
    text_encoder : TritonTextEncoder, optional
        Embeds free-text queries; without it, SearchTracks ranks by BM25 alone.
    listeners : ListenerRecommender, optional
        RecommendForListener, TrainListenerModel and a listener's taste profile in Recommend;
        without it those answer FAILED_PRECONDITION.
    """

    def __init__(self, index: TrackIndex, *, text_encoder=None, listeners=None) -> None:
        self.index = index
        self.text_encoder = text_encoder
        self.listeners = listeners

    def _listeners(self):
        if self.listeners is None:
            raise FailedPrecondition("this recommender runs without the listener store")
        return self.listeners

    async def SimilarTracks(self, request, context) -> recommender_pb2.SimilarTracksResponse:
        tenant = tenant_from_context(context)
        if not request.track_id:
            raise InvalidArgument("track_id is empty")
        with telemetry.QUERY_SECONDS.labels(query="similar").time():
            items = await self.index.similar(
                tenant, request.track_id, limit=_limit(request.limit), flt=filter_from_proto(request.filter),
                diversity=request.diversity,
            )
        reason = f"similar to {request.track_id}" + (f", diversity {request.diversity:g}" if request.diversity else "")
        return recommender_pb2.SimilarTracksResponse(tracks=[scored_to_proto(i, reason) for i in items])

    async def Recommend(self, request, context) -> recommender_pb2.RecommendResponse:
        tenant = tenant_from_context(context)
        if len(request.seed_tags) > MAX_SEED_TAGS:
            raise InvalidArgument(f"seed_tags has {len(request.seed_tags)} tags, more than {MAX_SEED_TAGS}")
        extra: list[tuple[np.ndarray, float]] = []
        signals: list[str] = []
        for tag in dict.fromkeys(request.seed_tags):
            extra.append((await self.index.tag_centroid(tenant, tag), 1.0))
        if request.seed_tags:
            signals.append("seed tags " + ", ".join(dict.fromkeys(request.seed_tags)))
        if request.listener_id:
            profile = await self._listeners().store.profile(tenant, request.listener_id)
            if profile is None:
                raise NotFound(f"listener {validation.quote(request.listener_id)} has no taste profile (no interactions with indexed tracks)")
            extra.append((profile, 1.0))
            signals.append("listener taste")
        positive = [(e.track_id, _weight(e.weight)) for e in request.positive]
        negative = [(e.track_id, _weight(e.weight)) for e in request.negative]
        examples = len(request.liked_track_ids) + len(positive)
        if examples:
            signals.insert(0, f"{examples} liked")
        if len(request.disliked_track_ids) + len(negative):
            signals.append(f"{len(request.disliked_track_ids) + len(negative)} disliked")
        strategy = STRATEGY_NAMES.get(request.strategy)
        if strategy is None:
            raise InvalidArgument(f"strategy {request.strategy} is not a recommend strategy")
        if not (examples or extra):
            raise InvalidArgument("recommend needs a seed: a liked track, a positive example, a seed tag or a listener")
        with telemetry.QUERY_SECONDS.labels(query="recommend").time():
            items = await self.index.recommend(
                tenant,
                liked=list(request.liked_track_ids),
                disliked=list(request.disliked_track_ids),
                positive=positive,
                negative=negative,
                positive_vectors=extra,
                strategy=strategy,
                targets=attributes_from_proto(request.attributes),
                limit=_limit(request.limit),
                flt=filter_from_proto(request.filter),
                diversity=request.diversity,
            )
        reason = f"{strategy} of " + ", ".join(signals)
        if request.attributes:
            reason += " with targets " + ", ".join(a.name for a in request.attributes if a.HasField("target"))
        return recommender_pb2.RecommendResponse(tracks=[scored_to_proto(i, reason) for i in items])

    async def SearchTracks(self, request, context) -> recommender_pb2.SearchTracksResponse:
        tenant = tenant_from_context(context)
        if not request.text.strip():
            raise InvalidArgument("text is empty")
        vector = None
        if self.text_encoder is not None:
            check_text(request.text)  # INVALID_ARGUMENT before the model server is asked
            vector = (await self.text_encoder.encode([request.text]))[0]
        with telemetry.QUERY_SECONDS.labels(query="search").time():
            items = await self.index.search(
                tenant, request.text, text_vector=vector, limit=_limit(request.limit),
                flt=filter_from_proto(request.filter), diversity=request.diversity,
            )
        reason = "text match (dense + BM25)" if vector is not None else "text match (BM25)"
        return recommender_pb2.SearchTracksResponse(tracks=[scored_to_proto(i, reason) for i in items])

    async def DiscoverTracks(self, request, context) -> recommender_pb2.DiscoverTracksResponse:
        tenant = tenant_from_context(context)
        with telemetry.QUERY_SECONDS.labels(query="discover").time():
            items = await self.index.discover(
                tenant, target=request.target_track_id or None,
                context=[(c.positive_track_id, c.negative_track_id) for c in request.context],
                limit=_limit(request.limit), flt=filter_from_proto(request.filter),
            )
        reason = (f"discovery near {request.target_track_id}" if request.target_track_id else "context search") \
            + f" in {len(request.context)} pairs"
        return recommender_pb2.DiscoverTracksResponse(tracks=[scored_to_proto(i, reason) for i in items])

    async def RecommendForListener(self, request, context) -> recommender_pb2.RecommendForListenerResponse:
        tenant = tenant_from_context(context)
        listeners = self._listeners()
        if not request.listener_id:
            raise InvalidArgument("listener_id is empty")
        targets = attributes_from_proto(request.attributes)
        aims = [t for t in targets if t.target is not None]
        bounds = tuple(AttributeTarget(t.name, None, t.min, t.max) for t in targets if t.min is not None or t.max is not None)
        flt = filter_from_proto(request.filter)
        if bounds:
            flt = dataclasses.replace(flt or TrackFilter(), attributes=(flt.attributes if flt else ()) + bounds)
        limit = _limit(request.limit)
        with telemetry.QUERY_SECONDS.labels(query="listener").time():
            result = await listeners.recommend_for_listener(
                tenant, request.listener_id, limit=min(MAX_LIMIT, limit * 3) if aims else limit, flt=flt,
                diversity=request.diversity, include_played=request.include_played,
            )
        tracks = list(result.tracks)
        if aims:
            tracks = apply_targets(tenant, tracks, aims)[:limit]
        return recommender_pb2.RecommendForListenerResponse(
            tracks=[scored_to_proto(t) for t in tracks], model_version=result.model_version,
            collaborative_weight=result.collaborative_weight, interactions=result.interactions,
        )

    async def TrainListenerModel(self, request, context) -> recommender_pb2.TrainListenerModelResponse:
        tenant = tenant_from_context(context)
        info = await self._listeners().train(tenant)
        return recommender_pb2.TrainListenerModelResponse(
            model_version=info.version, listeners=info.listeners, tracks=info.tracks, interactions=info.interactions,
        )


def apply_targets(tenant: str, tracks: list[ScoredTrack], aims: list[AttributeTarget]) -> list[ScoredTrack]:
    """Re-rank results by attribute targets: each score times the Gaussian decay of its
    distance to every target (the index's :func:`~musicaas_recommender.index.shared.decay_factors`,
    the same factors as Recommend's), best first.

    Raises
    ------
    InvalidArgument
        An unknown attribute or a target outside its range.
    """
    checked = [check_attribute(a) for a in aims]
    factors = decay_factors([(attr, target) for attr, target, _, _ in checked],
                            [payload_to_dict(tenant, t.payload) for t in tracks])
    rescored = [dataclasses.replace(t, score=float(t.score * f)) for t, f in zip(tracks, factors)]
    return sorted(rescored, key=lambda t: -t.score)


class IndexWriter:
    """The consumers' writes to a :class:`TrackIndex`, with the index-size gauge
    (``musicaas_recommender_index_points``: every tenant's points) kept in step.

    :meth:`refresh` sets the gauge to an exact count of the index (a scan: at start and
    every few seconds, :meth:`refresh_every`); between two counts, :meth:`upsert` and
    :meth:`delete` move it by one when a point was added or removed, so it is right as soon
    as the write returns. A lock keeps counts and writes apart, so that a count never
    misses or repeats a write's step. Writes of other processes (replicas on one Qdrant
    server) show at the next count.

    Parameters
    ----------
    index : TrackIndex
    """

    def __init__(self, index: TrackIndex) -> None:
        self.index = index
        self._lock = asyncio.Lock()

    async def upsert(self, tenant: str, payload: TrackPayload, vector: np.ndarray, *,
                     text_vector: np.ndarray | None = None) -> bool:
        """:meth:`TrackIndex.upsert` (with the description's ``text_vector``, shape ``(text_dim,)``,
        when there is one); the gauge goes up by one when the point is new.

        Returns
        -------
        bool
            True when the point is new.

        Raises
        ------
        InvalidArgument, Unavailable
            As :meth:`TrackIndex.upsert` (the gauge is left as it was).
        """
        async with self._lock:
            created = await self.index.upsert(tenant, payload, vector, text_vector=text_vector)
            if created:
                telemetry.INDEX_POINTS.inc()
        return created

    async def delete(self, tenant: str, track_id: str) -> bool:
        """:meth:`TrackIndex.delete` (idempotent); the gauge goes down by one when a point was removed.

        Returns
        -------
        bool
            True when a point was removed.

        Raises
        ------
        InvalidArgument, Unavailable
            As :meth:`TrackIndex.delete` (the gauge is left as it was).
        """
        async with self._lock:
            removed = await self.index.delete(tenant, track_id)
            if removed:
                telemetry.INDEX_POINTS.dec()
        return removed

    async def refresh(self) -> None:
        """Set the gauge to the index's exact total (``count(None)``); an index that does not
        answer leaves it as it was (a metric never fails the work)."""
        async with self._lock:
            with contextlib.suppress(MusicaasError):
                telemetry.INDEX_POINTS.set(await self.index.count())

    async def refresh_every(self, period_s: float) -> None:
        """:meth:`refresh` every ``period_s`` seconds (> 0), until cancelled; a count that
        fails is logged and tried again next time (it never stops the service)."""
        while True:
            await asyncio.sleep(period_s)
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - a metric never fails the service
                log.warning("index_count_failed", error=str(exc) or type(exc).__name__)


class AnalyzedConsumer:
    """Consumes ``music.<tenant>.tracks.analyzed`` (every tenant's): upsert the point, then
    mark the track ``indexed``; a track deleted meanwhile loses the point again.

    Parameters
    ----------
    bus : Bus
        Holds the track state.
    index : TrackIndex
    writer : IndexWriter, optional
        Writes to ``index`` and keeps the index-size gauge; one of its own by default. Share
        one between the consumers of one index.
    """

    durable = "recommender-tracks-analyzed"
    #: Deliveries before an event is given up: about 50 minutes of an index or model server
    #: (text encoder) that is down, as the analyzer's uploads (bus backoff 2 s x n, at most 60 s).
    max_deliver = 60

    def __init__(self, bus: Bus, index: TrackIndex, *, writer: IndexWriter | None = None,
                 text_encoder=None) -> None:
        self.bus = bus
        self.index = index
        self.writer = writer or IndexWriter(index)
        self.text_encoder = text_encoder

    async def handle(self, event: events_pb2.TrackAnalyzed, headers: dict[str, str]) -> None:
        """Upsert ``event.tenant``'s analysed track (idempotent by tenant and id) and mark it
        ``indexed``. If the stored track is a ``deleted`` tombstone (the deletion raced the
        analysis), the point is removed again and the tombstone stays as it is: the point is
        written before the state is read, so either this handler sees the tombstone or the
        ``tracks.deleted`` consumer, which runs after the tombstone is written, sees the point.

        Parameters
        ----------
        event : events_pb2.TrackAnalyzed
            ``analysis.embedding`` has ``embedding_dim`` values (the learned embedding, its
            model in ``analysis.embedding_model``, stored in the payload); an analysis made
            without the learned model (no embedding, no model) is not put in the index.
        headers : dict of str to str
            The message's CloudEvents headers (unused).

        Raises
        ------
        InvalidArgument
            No track id, a tenant that is not a tenant name, or a payload or embedding the
            index rejects (the bus terminates the message).
        Unavailable
            The index or NATS cannot be reached (the bus redelivers later).
        """
        a = event.analysis
        if not event.track_id:
            raise InvalidArgument("tracks.analyzed event without track_id")
        vector = np.asarray(a.embedding, dtype=np.float32)
        metadata = common_pb2.TrackMetadata()
        metadata.CopyFrom(event.metadata)
        if not metadata.title:
            metadata.title = event.title
        description = describe_protos(a, metadata)
        has_features = a.HasField("features")
        payload = TrackPayload(
            track_id=event.track_id,
            key=a.key or None,
            mode=mode_name(a.mode),
            tempo_bpm=float(a.tempo_bpm),
            source=source_name(event.source),
            duration_s=float(a.duration_s),
            loudness_lufs=float(a.loudness_lufs),
            title=event.title or metadata.title,
            embedding_model=a.embedding_model,
            metadata=_metadata_from_proto(metadata),
            tags=tuple((t.name, float(t.score)) for t in a.tags),
            energy=float(a.features.energy) if has_features else None,
            danceability=float(a.features.danceability) if has_features else None,
            valence=float(a.features.valence) if has_features else None,
            description=description,
        )
        if not vector.size and not a.embedding_model:
            # analysed without the learned model (the analyzer's tagger switched off): nothing
            # to index by similarity; the track is still marked indexed (its state and metadata are)
            log.warning("track_without_learned_embedding", track_id=event.track_id, tenant=event.tenant)
        else:
            if vector.shape != (self.index.dim,):
                # refused before the model server is asked: input that can never succeed
                raise InvalidArgument(f"vector has shape {tuple(vector.shape)}; the index expects dimension {self.index.dim}")
            # the model server down: Unavailable, the bus redelivers (the track stays analyzed)
            text_vector = (await self.text_encoder.encode([description]))[0] if self.text_encoder else None
            await self.writer.upsert(event.tenant, payload, vector, text_vector=text_vector)

        def mark(track: common_pb2.Track) -> None:
            track.state = advance_state(track.state, common_pb2.TRACK_STATE_INDEXED)

        track = await self.bus.update_track(event.tenant, event.track_id, mark, create_if_missing=True)
        if track.state == common_pb2.TRACK_STATE_DELETED:
            await self.writer.delete(event.tenant, event.track_id)
            log.info("track_deleted_before_indexing", track_id=event.track_id, tenant=event.tenant)
            return
        log.info("track_indexed", track_id=event.track_id, tenant=event.tenant)

    async def failed(self, event: events_pb2.TrackAnalyzed | None, error: MusicaasError, headers: dict[str, str]) -> None:
        """The event was terminated (bad payload, retries exhausted while the index was down, or
        a worker that died on it): mark the track ``failed`` and publish
        ``music.<tenant>.tracks.failed``, so no track stays ``analyzed`` for ever (a deleted
        track stays deleted). An event without a valid tenant has no track to mark: it is
        only dead-lettered."""
        if event is None or not TENANT_RE.fullmatch(event.tenant):
            return
        await self.bus.fail_track(event.tenant, event.track_id, stage="recommender", error=error,
                                  ce_id=headers.get("ce-id", ""))

    async def report_index_size(self) -> None:
        """Set the index-size gauge to the index's exact total (:meth:`IndexWriter.refresh`)."""
        await self.writer.refresh()


class DeletedConsumer:
    """Consumes ``music.<tenant>.tracks.deleted`` (every tenant's): remove the track's point,
    so that a deleted track is never a result again. Idempotent: a point that is not there
    (never indexed, or removed already) is no error.

    Parameters
    ----------
    index : TrackIndex
    writer : IndexWriter, optional
        As :class:`AnalyzedConsumer`'s.
    """

    durable = "recommender-tracks-deleted"
    #: Deliveries before a deletion is given up (and dead-lettered): with the bus's delay
    #: (2 s times the delivery count), about a quarter of an hour of an unreachable index.
    max_deliver = 30

    def __init__(self, index: TrackIndex, *, writer: IndexWriter | None = None) -> None:
        self.index = index
        self.writer = writer or IndexWriter(index)

    async def handle(self, event: events_pb2.TrackDeleted, headers: dict[str, str]) -> None:
        """Remove ``event.tenant``'s point ``event.track_id``.

        Parameters
        ----------
        event : events_pb2.TrackDeleted
        headers : dict of str to str
            The message's CloudEvents headers (unused).

        Raises
        ------
        InvalidArgument
            No track id, or a tenant or track id the index rejects (the bus terminates the message).
        Unavailable
            The index cannot be reached (the bus redelivers later).
        """
        if not event.track_id:
            raise InvalidArgument("tracks.deleted event without track_id")
        removed = await self.writer.delete(event.tenant, event.track_id)
        log.info("track_unindexed", track_id=event.track_id, tenant=event.tenant, removed=removed)
