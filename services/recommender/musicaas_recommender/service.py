"""The recommender service: ``SimilarTracks`` and ``Recommend`` RPCs, and the
``music.tracks.analyzed`` consumer that upserts every analysed track into the index
(idempotent by track id) and marks it ``indexed``.
"""

from __future__ import annotations

import contextlib

import numpy as np
import structlog

from musicaas.common.v1 import common_pb2
from musicaas.embedding import EMBEDDING_DIM
from musicaas.events.v1 import events_pb2
from musicaas.recommender.v1 import recommender_pb2, recommender_pb2_grpc
from musicaas.runtime import telemetry
from musicaas.runtime.bus import Bus, advance_state
from musicaas.runtime.errors import InvalidArgument, MusicaasError
from musicaas.runtime.protoconv import MODE_TO_PROTO, SOURCE_TO_PROTO, mode_name, source_name
from musicaas.runtime.settings import ServiceSettings
from musicaas_recommender.index import MAX_LIMIT, ScoredTrack, TrackFilter, TrackIndex, TrackPayload

log = structlog.get_logger()

#: Results per call when the request leaves ``limit`` at 0.
DEFAULT_LIMIT = 10


class RecommenderSettings(ServiceSettings):
    """Recommender settings (``MUSICAAS_*``): Qdrant server URL or Edge shard folder, embedding dimension."""

    grpc_port: int = 50053
    #: Qdrant server URL (``http://qdrant:6333``); empty: a Qdrant Edge shard in ``qdrant_path``.
    qdrant_url: str = ""
    qdrant_api_key: str = ""
    #: Folder of the embedded Qdrant Edge shard.
    qdrant_path: str = ".musicaas/qdrant"
    qdrant_collection: str = "tracks"
    #: Length of the indexed vectors; the analyzer's embedding contract by default.
    embedding_dim: int = EMBEDDING_DIM


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
        InvalidArgument for a bad key or tempo range.
    """
    if flt.ByteSize() == 0:
        return None
    return TrackFilter(
        tempo_min_bpm=flt.tempo_min_bpm if flt.HasField("tempo_min_bpm") else None,
        tempo_max_bpm=flt.tempo_max_bpm if flt.HasField("tempo_max_bpm") else None,
        key=flt.key or None,
        mode=mode_name(flt.mode),
        source=source_name(flt.source) if flt.source else None,
    )


def scored_to_proto(item: ScoredTrack) -> recommender_pb2.ScoredTrack:
    """The wire form of one result.

    Parameters
    ----------
    item : ScoredTrack

    Returns
    -------
    recommender_pb2.ScoredTrack
        A missing key is ``""``, a missing mode ``MODE_UNSPECIFIED``, and a source with
        no wire value ``TRACK_SOURCE_UNSPECIFIED``.
    """
    p = item.payload
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
    )


def _limit(value: int) -> int:
    """The request's ``limit``, ``DEFAULT_LIMIT`` for 0; the index checks the upper bound."""
    if value < 0:
        raise InvalidArgument(f"limit must be 1 to {MAX_LIMIT}, got {value}")
    return value or DEFAULT_LIMIT


class RecommenderServicer(recommender_pb2_grpc.RecommenderServiceServicer):
    """``musicaas.recommender.v1.RecommenderService`` over a :class:`TrackIndex`.

    Handlers raise the index's domain errors (InvalidArgument, NotFound, Unavailable);
    the server's error interceptor maps them to gRPC status codes.

    Parameters
    ----------
    index : TrackIndex
    """

    def __init__(self, index: TrackIndex) -> None:
        self.index = index

    async def SimilarTracks(self, request, context) -> recommender_pb2.SimilarTracksResponse:
        if not request.track_id:
            raise InvalidArgument("track_id is empty")
        with telemetry.QUERY_SECONDS.labels(query="similar").time():
            items = await self.index.similar(
                request.track_id, limit=_limit(request.limit), flt=filter_from_proto(request.filter)
            )
        return recommender_pb2.SimilarTracksResponse(tracks=[scored_to_proto(i) for i in items])

    async def Recommend(self, request, context) -> recommender_pb2.RecommendResponse:
        with telemetry.QUERY_SECONDS.labels(query="recommend").time():
            items = await self.index.recommend(
                liked=list(request.liked_track_ids),
                disliked=list(request.disliked_track_ids),
                limit=_limit(request.limit),
                flt=filter_from_proto(request.filter),
            )
        return recommender_pb2.RecommendResponse(tracks=[scored_to_proto(i) for i in items])


class AnalyzedConsumer:
    """Consumes ``music.tracks.analyzed``: upsert the point, then mark the track ``indexed``.

    Parameters
    ----------
    bus : Bus
        Holds the track state.
    index : TrackIndex
    """

    durable = "recommender-tracks-analyzed"

    def __init__(self, bus: Bus, index: TrackIndex) -> None:
        self.bus = bus
        self.index = index

    async def handle(self, event: events_pb2.TrackAnalyzed, headers: dict[str, str]) -> None:
        """Upsert the analysed track (idempotent by id) and mark it ``indexed``.

        Parameters
        ----------
        event : events_pb2.TrackAnalyzed
            ``analysis.embedding`` has ``embedding_dim`` values.
        headers : dict of str to str
            The message's CloudEvents headers (unused).

        Raises
        ------
        InvalidArgument
            No track id, or a payload or embedding the index rejects (the bus
            terminates the message).
        Unavailable
            The index cannot be reached (the bus redelivers later).
        """
        a = event.analysis
        if not event.track_id:
            raise InvalidArgument("tracks.analyzed event without track_id")
        vector = np.asarray(a.embedding, dtype=np.float32)
        payload = TrackPayload(
            track_id=event.track_id,
            key=a.key or None,
            mode=mode_name(a.mode),
            tempo_bpm=float(a.tempo_bpm),
            source=source_name(event.source),
            duration_s=float(a.duration_s),
            loudness_lufs=float(a.loudness_lufs),
            title=event.title,
        )
        await self.index.upsert(payload, vector)

        def mark(track: common_pb2.Track) -> None:
            track.state = advance_state(track.state, common_pb2.TRACK_STATE_INDEXED)

        await self.bus.update_track(event.track_id, mark, create_if_missing=True)
        log.info("track_indexed", track_id=event.track_id)
        await self.report_index_size()

    async def failed(self, event: events_pb2.TrackAnalyzed | None, error: MusicaasError, headers: dict[str, str]) -> None:
        """The event was terminated (bad payload, retries exhausted while the index was down, or
        a worker that died on it): mark the track ``failed`` and publish ``music.tracks.failed``,
        so no track stays ``analyzed`` for ever."""
        await self.bus.fail_track(event.track_id if event is not None else "", stage="recommender", error=error,
                                  ce_id=headers.get("ce-id", ""))

    async def report_index_size(self) -> None:
        """Set the index-size gauge (``musicaas_recommender_index_points``); an index that
        does not answer leaves it as it was (a metric never fails the work)."""
        with contextlib.suppress(MusicaasError):
            telemetry.INDEX_POINTS.set(await self.index.count())
