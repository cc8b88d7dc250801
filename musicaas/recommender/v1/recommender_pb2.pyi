from musicaas.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecommendStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECOMMEND_STRATEGY_UNSPECIFIED: _ClassVar[RecommendStrategy]
    RECOMMEND_STRATEGY_AVERAGE_VECTOR: _ClassVar[RecommendStrategy]
    RECOMMEND_STRATEGY_BEST_SCORE: _ClassVar[RecommendStrategy]
    RECOMMEND_STRATEGY_SUM_SCORES: _ClassVar[RecommendStrategy]
RECOMMEND_STRATEGY_UNSPECIFIED: RecommendStrategy
RECOMMEND_STRATEGY_AVERAGE_VECTOR: RecommendStrategy
RECOMMEND_STRATEGY_BEST_SCORE: RecommendStrategy
RECOMMEND_STRATEGY_SUM_SCORES: RecommendStrategy

class AttributeTarget(_message.Message):
    __slots__ = ("name", "target", "min", "max")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    name: str
    target: float
    min: float
    max: float
    def __init__(self, name: _Optional[str] = ..., target: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class TrackFilter(_message.Message):
    __slots__ = ("tempo_min_bpm", "tempo_max_bpm", "key", "mode", "source", "tags", "artist", "composer", "album", "genre", "attributes")
    TEMPO_MIN_BPM_FIELD_NUMBER: _ClassVar[int]
    TEMPO_MAX_BPM_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ARTIST_FIELD_NUMBER: _ClassVar[int]
    COMPOSER_FIELD_NUMBER: _ClassVar[int]
    ALBUM_FIELD_NUMBER: _ClassVar[int]
    GENRE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    tempo_min_bpm: float
    tempo_max_bpm: float
    key: str
    mode: _common_pb2.Mode
    source: _common_pb2.TrackSource
    tags: _containers.RepeatedScalarFieldContainer[str]
    artist: str
    composer: str
    album: str
    genre: str
    attributes: _containers.RepeatedCompositeFieldContainer[AttributeTarget]
    def __init__(self, tempo_min_bpm: _Optional[float] = ..., tempo_max_bpm: _Optional[float] = ..., key: _Optional[str] = ..., mode: _Optional[_Union[_common_pb2.Mode, str]] = ..., source: _Optional[_Union[_common_pb2.TrackSource, str]] = ..., tags: _Optional[_Iterable[str]] = ..., artist: _Optional[str] = ..., composer: _Optional[str] = ..., album: _Optional[str] = ..., genre: _Optional[str] = ..., attributes: _Optional[_Iterable[_Union[AttributeTarget, _Mapping]]] = ...) -> None: ...

class ScoredTrack(_message.Message):
    __slots__ = ("track_id", "score", "key", "mode", "tempo_bpm", "source", "title", "duration_s", "loudness_lufs", "tags", "metadata", "reason", "energy", "danceability", "valence")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TEMPO_BPM_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_LUFS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    DANCEABILITY_FIELD_NUMBER: _ClassVar[int]
    VALENCE_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    score: float
    key: str
    mode: _common_pb2.Mode
    tempo_bpm: float
    source: _common_pb2.TrackSource
    title: str
    duration_s: float
    loudness_lufs: float
    tags: _containers.RepeatedCompositeFieldContainer[_common_pb2.TagScore]
    metadata: _common_pb2.TrackMetadata
    reason: str
    energy: float
    danceability: float
    valence: float
    def __init__(self, track_id: _Optional[str] = ..., score: _Optional[float] = ..., key: _Optional[str] = ..., mode: _Optional[_Union[_common_pb2.Mode, str]] = ..., tempo_bpm: _Optional[float] = ..., source: _Optional[_Union[_common_pb2.TrackSource, str]] = ..., title: _Optional[str] = ..., duration_s: _Optional[float] = ..., loudness_lufs: _Optional[float] = ..., tags: _Optional[_Iterable[_Union[_common_pb2.TagScore, _Mapping]]] = ..., metadata: _Optional[_Union[_common_pb2.TrackMetadata, _Mapping]] = ..., reason: _Optional[str] = ..., energy: _Optional[float] = ..., danceability: _Optional[float] = ..., valence: _Optional[float] = ...) -> None: ...

class SimilarTracksRequest(_message.Message):
    __slots__ = ("track_id", "limit", "filter", "diversity")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    limit: int
    filter: TrackFilter
    diversity: float
    def __init__(self, track_id: _Optional[str] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[TrackFilter, _Mapping]] = ..., diversity: _Optional[float] = ...) -> None: ...

class SimilarTracksResponse(_message.Message):
    __slots__ = ("tracks",)
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    tracks: _containers.RepeatedCompositeFieldContainer[ScoredTrack]
    def __init__(self, tracks: _Optional[_Iterable[_Union[ScoredTrack, _Mapping]]] = ...) -> None: ...

class WeightedExample(_message.Message):
    __slots__ = ("track_id", "weight")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    weight: float
    def __init__(self, track_id: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

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
    filter: TrackFilter
    positive: _containers.RepeatedCompositeFieldContainer[WeightedExample]
    negative: _containers.RepeatedCompositeFieldContainer[WeightedExample]
    strategy: RecommendStrategy
    attributes: _containers.RepeatedCompositeFieldContainer[AttributeTarget]
    seed_tags: _containers.RepeatedScalarFieldContainer[str]
    diversity: float
    listener_id: str
    def __init__(self, liked_track_ids: _Optional[_Iterable[str]] = ..., disliked_track_ids: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[TrackFilter, _Mapping]] = ..., positive: _Optional[_Iterable[_Union[WeightedExample, _Mapping]]] = ..., negative: _Optional[_Iterable[_Union[WeightedExample, _Mapping]]] = ..., strategy: _Optional[_Union[RecommendStrategy, str]] = ..., attributes: _Optional[_Iterable[_Union[AttributeTarget, _Mapping]]] = ..., seed_tags: _Optional[_Iterable[str]] = ..., diversity: _Optional[float] = ..., listener_id: _Optional[str] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("tracks",)
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    tracks: _containers.RepeatedCompositeFieldContainer[ScoredTrack]
    def __init__(self, tracks: _Optional[_Iterable[_Union[ScoredTrack, _Mapping]]] = ...) -> None: ...

class SearchTracksRequest(_message.Message):
    __slots__ = ("text", "limit", "filter", "diversity")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_FIELD_NUMBER: _ClassVar[int]
    text: str
    limit: int
    filter: TrackFilter
    diversity: float
    def __init__(self, text: _Optional[str] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[TrackFilter, _Mapping]] = ..., diversity: _Optional[float] = ...) -> None: ...

class SearchTracksResponse(_message.Message):
    __slots__ = ("tracks",)
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    tracks: _containers.RepeatedCompositeFieldContainer[ScoredTrack]
    def __init__(self, tracks: _Optional[_Iterable[_Union[ScoredTrack, _Mapping]]] = ...) -> None: ...

class ContextPair(_message.Message):
    __slots__ = ("positive_track_id", "negative_track_id")
    POSITIVE_TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    positive_track_id: str
    negative_track_id: str
    def __init__(self, positive_track_id: _Optional[str] = ..., negative_track_id: _Optional[str] = ...) -> None: ...

class DiscoverTracksRequest(_message.Message):
    __slots__ = ("target_track_id", "context", "limit", "filter")
    TARGET_TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    target_track_id: str
    context: _containers.RepeatedCompositeFieldContainer[ContextPair]
    limit: int
    filter: TrackFilter
    def __init__(self, target_track_id: _Optional[str] = ..., context: _Optional[_Iterable[_Union[ContextPair, _Mapping]]] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[TrackFilter, _Mapping]] = ...) -> None: ...

class DiscoverTracksResponse(_message.Message):
    __slots__ = ("tracks",)
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    tracks: _containers.RepeatedCompositeFieldContainer[ScoredTrack]
    def __init__(self, tracks: _Optional[_Iterable[_Union[ScoredTrack, _Mapping]]] = ...) -> None: ...

class RecommendForListenerRequest(_message.Message):
    __slots__ = ("listener_id", "limit", "filter", "attributes", "diversity", "include_played")
    LISTENER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PLAYED_FIELD_NUMBER: _ClassVar[int]
    listener_id: str
    limit: int
    filter: TrackFilter
    attributes: _containers.RepeatedCompositeFieldContainer[AttributeTarget]
    diversity: float
    include_played: bool
    def __init__(self, listener_id: _Optional[str] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[TrackFilter, _Mapping]] = ..., attributes: _Optional[_Iterable[_Union[AttributeTarget, _Mapping]]] = ..., diversity: _Optional[float] = ..., include_played: _Optional[bool] = ...) -> None: ...

class RecommendForListenerResponse(_message.Message):
    __slots__ = ("tracks", "model_version", "collaborative_weight", "interactions")
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    COLLABORATIVE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    tracks: _containers.RepeatedCompositeFieldContainer[ScoredTrack]
    model_version: str
    collaborative_weight: float
    interactions: int
    def __init__(self, tracks: _Optional[_Iterable[_Union[ScoredTrack, _Mapping]]] = ..., model_version: _Optional[str] = ..., collaborative_weight: _Optional[float] = ..., interactions: _Optional[int] = ...) -> None: ...

class TrainListenerModelRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TrainListenerModelResponse(_message.Message):
    __slots__ = ("model_version", "listeners", "tracks", "interactions")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    listeners: int
    tracks: int
    interactions: int
    def __init__(self, model_version: _Optional[str] = ..., listeners: _Optional[int] = ..., tracks: _Optional[int] = ..., interactions: _Optional[int] = ...) -> None: ...
