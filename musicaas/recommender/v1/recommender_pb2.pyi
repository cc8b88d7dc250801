from musicaas.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrackFilter(_message.Message):
    __slots__ = ("tempo_min_bpm", "tempo_max_bpm", "key", "mode", "source")
    TEMPO_MIN_BPM_FIELD_NUMBER: _ClassVar[int]
    TEMPO_MAX_BPM_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    tempo_min_bpm: float
    tempo_max_bpm: float
    key: str
    mode: _common_pb2.Mode
    source: _common_pb2.TrackSource
    def __init__(self, tempo_min_bpm: _Optional[float] = ..., tempo_max_bpm: _Optional[float] = ..., key: _Optional[str] = ..., mode: _Optional[_Union[_common_pb2.Mode, str]] = ..., source: _Optional[_Union[_common_pb2.TrackSource, str]] = ...) -> None: ...

class ScoredTrack(_message.Message):
    __slots__ = ("track_id", "score", "key", "mode", "tempo_bpm", "source", "title", "duration_s", "loudness_lufs")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TEMPO_BPM_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_LUFS_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    score: float
    key: str
    mode: _common_pb2.Mode
    tempo_bpm: float
    source: _common_pb2.TrackSource
    title: str
    duration_s: float
    loudness_lufs: float
    def __init__(self, track_id: _Optional[str] = ..., score: _Optional[float] = ..., key: _Optional[str] = ..., mode: _Optional[_Union[_common_pb2.Mode, str]] = ..., tempo_bpm: _Optional[float] = ..., source: _Optional[_Union[_common_pb2.TrackSource, str]] = ..., title: _Optional[str] = ..., duration_s: _Optional[float] = ..., loudness_lufs: _Optional[float] = ...) -> None: ...

class SimilarTracksRequest(_message.Message):
    __slots__ = ("track_id", "limit", "filter")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    limit: int
    filter: TrackFilter
    def __init__(self, track_id: _Optional[str] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[TrackFilter, _Mapping]] = ...) -> None: ...

class SimilarTracksResponse(_message.Message):
    __slots__ = ("tracks",)
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    tracks: _containers.RepeatedCompositeFieldContainer[ScoredTrack]
    def __init__(self, tracks: _Optional[_Iterable[_Union[ScoredTrack, _Mapping]]] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("liked_track_ids", "disliked_track_ids", "limit", "filter")
    LIKED_TRACK_IDS_FIELD_NUMBER: _ClassVar[int]
    DISLIKED_TRACK_IDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    liked_track_ids: _containers.RepeatedScalarFieldContainer[str]
    disliked_track_ids: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    filter: TrackFilter
    def __init__(self, liked_track_ids: _Optional[_Iterable[str]] = ..., disliked_track_ids: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[TrackFilter, _Mapping]] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("tracks",)
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    tracks: _containers.RepeatedCompositeFieldContainer[ScoredTrack]
    def __init__(self, tracks: _Optional[_Iterable[_Union[ScoredTrack, _Mapping]]] = ...) -> None: ...
