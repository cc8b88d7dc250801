import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from musicaas.common.v1 import common_pb2 as _common_pb2
from musicaas.generator.v1 import generator_pb2 as _generator_pb2
from musicaas.recommender.v1 import recommender_pb2 as _recommender_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UploadMetadata(_message.Message):
    __slots__ = ("filename", "title", "content_type", "artist", "composer", "album", "year", "genre", "tags")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ARTIST_FIELD_NUMBER: _ClassVar[int]
    COMPOSER_FIELD_NUMBER: _ClassVar[int]
    ALBUM_FIELD_NUMBER: _ClassVar[int]
    YEAR_FIELD_NUMBER: _ClassVar[int]
    GENRE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    filename: str
    title: str
    content_type: str
    artist: str
    composer: str
    album: str
    year: int
    genre: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, filename: _Optional[str] = ..., title: _Optional[str] = ..., content_type: _Optional[str] = ..., artist: _Optional[str] = ..., composer: _Optional[str] = ..., album: _Optional[str] = ..., year: _Optional[int] = ..., genre: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class UploadTrackRequest(_message.Message):
    __slots__ = ("metadata", "chunk")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    metadata: UploadMetadata
    chunk: bytes
    def __init__(self, metadata: _Optional[_Union[UploadMetadata, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadTrackResponse(_message.Message):
    __slots__ = ("track_id", "state", "size_bytes")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    state: _common_pb2.TrackState
    size_bytes: int
    def __init__(self, track_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.TrackState, str]] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class GetTrackRequest(_message.Message):
    __slots__ = ("track_id",)
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    def __init__(self, track_id: _Optional[str] = ...) -> None: ...

class GetTrackResponse(_message.Message):
    __slots__ = ("track",)
    TRACK_FIELD_NUMBER: _ClassVar[int]
    track: _common_pb2.Track
    def __init__(self, track: _Optional[_Union[_common_pb2.Track, _Mapping]] = ...) -> None: ...

class GenerateTrackRequest(_message.Message):
    __slots__ = ("params", "generation_id")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    params: _generator_pb2.GenerationParams
    generation_id: str
    def __init__(self, params: _Optional[_Union[_generator_pb2.GenerationParams, _Mapping]] = ..., generation_id: _Optional[str] = ...) -> None: ...

class GenerateTrackResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _generator_pb2.GenerationResult
    def __init__(self, result: _Optional[_Union[_generator_pb2.GenerationResult, _Mapping]] = ...) -> None: ...

class GenerateTrackStreamResponse(_message.Message):
    __slots__ = ("progress",)
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    progress: _generator_pb2.GenerationProgress
    def __init__(self, progress: _Optional[_Union[_generator_pb2.GenerationProgress, _Mapping]] = ...) -> None: ...

class SubmitGenerationRequest(_message.Message):
    __slots__ = ("params", "generation_id")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    params: _generator_pb2.GenerationParams
    generation_id: str
    def __init__(self, params: _Optional[_Union[_generator_pb2.GenerationParams, _Mapping]] = ..., generation_id: _Optional[str] = ...) -> None: ...

class SubmitGenerationResponse(_message.Message):
    __slots__ = ("generation_id", "state")
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    generation_id: str
    state: _generator_pb2.GenerationState
    def __init__(self, generation_id: _Optional[str] = ..., state: _Optional[_Union[_generator_pb2.GenerationState, str]] = ...) -> None: ...

class GetGenerationRequest(_message.Message):
    __slots__ = ("generation_id", "include_data")
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DATA_FIELD_NUMBER: _ClassVar[int]
    generation_id: str
    include_data: bool
    def __init__(self, generation_id: _Optional[str] = ..., include_data: _Optional[bool] = ...) -> None: ...

class GetGenerationResponse(_message.Message):
    __slots__ = ("generation",)
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    generation: _generator_pb2.GenerationJob
    def __init__(self, generation: _Optional[_Union[_generator_pb2.GenerationJob, _Mapping]] = ...) -> None: ...

class SimilarTracksRequest(_message.Message):
    __slots__ = ("track_id", "limit", "filter", "diversity")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    limit: int
    filter: _recommender_pb2.TrackFilter
    diversity: float
    def __init__(self, track_id: _Optional[str] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[_recommender_pb2.TrackFilter, _Mapping]] = ..., diversity: _Optional[float] = ...) -> None: ...

class SimilarTracksResponse(_message.Message):
    __slots__ = ("tracks",)
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    tracks: _containers.RepeatedCompositeFieldContainer[_recommender_pb2.ScoredTrack]
    def __init__(self, tracks: _Optional[_Iterable[_Union[_recommender_pb2.ScoredTrack, _Mapping]]] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("liked_track_ids", "disliked_track_ids", "limit", "filter", "positive", "negative", "strategy", "attributes", "seed_tags", "diversity", "listener_id")
    LIKED_TRACK_IDS_FIELD_NUMBER: _ClassVar[int]
    DISLIKED_TRACK_IDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    SEED_TAGS_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_FIELD_NUMBER: _ClassVar[int]
    LISTENER_ID_FIELD_NUMBER: _ClassVar[int]
    liked_track_ids: _containers.RepeatedScalarFieldContainer[str]
    disliked_track_ids: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    filter: _recommender_pb2.TrackFilter
    positive: _containers.RepeatedCompositeFieldContainer[_recommender_pb2.WeightedExample]
    negative: _containers.RepeatedCompositeFieldContainer[_recommender_pb2.WeightedExample]
    strategy: _recommender_pb2.RecommendStrategy
    attributes: _containers.RepeatedCompositeFieldContainer[_recommender_pb2.AttributeTarget]
    seed_tags: _containers.RepeatedScalarFieldContainer[str]
    diversity: float
    listener_id: str
    def __init__(self, liked_track_ids: _Optional[_Iterable[str]] = ..., disliked_track_ids: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[_recommender_pb2.TrackFilter, _Mapping]] = ..., positive: _Optional[_Iterable[_Union[_recommender_pb2.WeightedExample, _Mapping]]] = ..., negative: _Optional[_Iterable[_Union[_recommender_pb2.WeightedExample, _Mapping]]] = ..., strategy: _Optional[_Union[_recommender_pb2.RecommendStrategy, str]] = ..., attributes: _Optional[_Iterable[_Union[_recommender_pb2.AttributeTarget, _Mapping]]] = ..., seed_tags: _Optional[_Iterable[str]] = ..., diversity: _Optional[float] = ..., listener_id: _Optional[str] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("tracks",)
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    tracks: _containers.RepeatedCompositeFieldContainer[_recommender_pb2.ScoredTrack]
    def __init__(self, tracks: _Optional[_Iterable[_Union[_recommender_pb2.ScoredTrack, _Mapping]]] = ...) -> None: ...

class RecordInteractionsRequest(_message.Message):
    __slots__ = ("interactions",)
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    interactions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Interaction]
    def __init__(self, interactions: _Optional[_Iterable[_Union[_common_pb2.Interaction, _Mapping]]] = ...) -> None: ...

class RejectedInteraction(_message.Message):
    __slots__ = ("index", "field", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    field: str
    reason: str
    def __init__(self, index: _Optional[int] = ..., field: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RecordInteractionsResponse(_message.Message):
    __slots__ = ("recorded", "rejected", "batch_id")
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedInteraction]
    batch_id: str
    def __init__(self, recorded: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[RejectedInteraction, _Mapping]]] = ..., batch_id: _Optional[str] = ...) -> None: ...

class DeleteTrackRequest(_message.Message):
    __slots__ = ("track_id",)
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    def __init__(self, track_id: _Optional[str] = ...) -> None: ...

class DeleteTrackResponse(_message.Message):
    __slots__ = ("track_id",)
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    def __init__(self, track_id: _Optional[str] = ...) -> None: ...

class ListTracksRequest(_message.Message):
    __slots__ = ("states", "created_from", "created_to", "page_size", "page_token", "include_analysis")
    STATES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FROM_FIELD_NUMBER: _ClassVar[int]
    CREATED_TO_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[_common_pb2.TrackState]
    created_from: _timestamp_pb2.Timestamp
    created_to: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    include_analysis: bool
    def __init__(self, states: _Optional[_Iterable[_Union[_common_pb2.TrackState, str]]] = ..., created_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., include_analysis: _Optional[bool] = ...) -> None: ...

class ListTracksResponse(_message.Message):
    __slots__ = ("tracks", "next_page_token")
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tracks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Track]
    next_page_token: str
    def __init__(self, tracks: _Optional[_Iterable[_Union[_common_pb2.Track, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetTracksRequest(_message.Message):
    __slots__ = ("track_ids",)
    TRACK_IDS_FIELD_NUMBER: _ClassVar[int]
    track_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, track_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetTracksResponse(_message.Message):
    __slots__ = ("tracks", "missing_track_ids")
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    MISSING_TRACK_IDS_FIELD_NUMBER: _ClassVar[int]
    tracks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Track]
    missing_track_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tracks: _Optional[_Iterable[_Union[_common_pb2.Track, _Mapping]]] = ..., missing_track_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("day_from", "day_to")
    DAY_FROM_FIELD_NUMBER: _ClassVar[int]
    DAY_TO_FIELD_NUMBER: _ClassVar[int]
    day_from: str
    day_to: str
    def __init__(self, day_from: _Optional[str] = ..., day_to: _Optional[str] = ...) -> None: ...

class DailyUsage(_message.Message):
    __slots__ = ("day", "audio_seconds", "tracks_stored", "storage_bytes", "generations", "pieces_generated", "tokens_generated")
    DAY_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRACKS_STORED_FIELD_NUMBER: _ClassVar[int]
    STORAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    GENERATIONS_FIELD_NUMBER: _ClassVar[int]
    PIECES_GENERATED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_GENERATED_FIELD_NUMBER: _ClassVar[int]
    day: str
    audio_seconds: float
    tracks_stored: int
    storage_bytes: int
    generations: int
    pieces_generated: int
    tokens_generated: int
    def __init__(self, day: _Optional[str] = ..., audio_seconds: _Optional[float] = ..., tracks_stored: _Optional[int] = ..., storage_bytes: _Optional[int] = ..., generations: _Optional[int] = ..., pieces_generated: _Optional[int] = ..., tokens_generated: _Optional[int] = ...) -> None: ...

class GetUsageResponse(_message.Message):
    __slots__ = ("days", "limits")
    DAYS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    days: _containers.RepeatedCompositeFieldContainer[DailyUsage]
    limits: _common_pb2.TenantLimits
    def __init__(self, days: _Optional[_Iterable[_Union[DailyUsage, _Mapping]]] = ..., limits: _Optional[_Union[_common_pb2.TenantLimits, _Mapping]] = ...) -> None: ...

class RegisterWebhookRequest(_message.Message):
    __slots__ = ("url", "events")
    URL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    url: str
    events: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, url: _Optional[str] = ..., events: _Optional[_Iterable[str]] = ...) -> None: ...

class RegisterWebhookResponse(_message.Message):
    __slots__ = ("webhook",)
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    webhook: _common_pb2.Webhook
    def __init__(self, webhook: _Optional[_Union[_common_pb2.Webhook, _Mapping]] = ...) -> None: ...

class ListWebhooksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWebhooksResponse(_message.Message):
    __slots__ = ("webhooks",)
    WEBHOOKS_FIELD_NUMBER: _ClassVar[int]
    webhooks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Webhook]
    def __init__(self, webhooks: _Optional[_Iterable[_Union[_common_pb2.Webhook, _Mapping]]] = ...) -> None: ...

class DeleteWebhookRequest(_message.Message):
    __slots__ = ("webhook_id",)
    WEBHOOK_ID_FIELD_NUMBER: _ClassVar[int]
    webhook_id: str
    def __init__(self, webhook_id: _Optional[str] = ...) -> None: ...

class DeleteWebhookResponse(_message.Message):
    __slots__ = ("webhook_id",)
    WEBHOOK_ID_FIELD_NUMBER: _ClassVar[int]
    webhook_id: str
    def __init__(self, webhook_id: _Optional[str] = ...) -> None: ...
