import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    MODE_MAJOR: _ClassVar[Mode]
    MODE_MINOR: _ClassVar[Mode]

class TrackSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACK_SOURCE_UNSPECIFIED: _ClassVar[TrackSource]
    TRACK_SOURCE_UPLOAD: _ClassVar[TrackSource]
    TRACK_SOURCE_GENERATED: _ClassVar[TrackSource]

class TrackState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACK_STATE_UNSPECIFIED: _ClassVar[TrackState]
    TRACK_STATE_UPLOADED: _ClassVar[TrackState]
    TRACK_STATE_ANALYZED: _ClassVar[TrackState]
    TRACK_STATE_INDEXED: _ClassVar[TrackState]
    TRACK_STATE_FAILED: _ClassVar[TrackState]
MODE_UNSPECIFIED: Mode
MODE_MAJOR: Mode
MODE_MINOR: Mode
TRACK_SOURCE_UNSPECIFIED: TrackSource
TRACK_SOURCE_UPLOAD: TrackSource
TRACK_SOURCE_GENERATED: TrackSource
TRACK_STATE_UNSPECIFIED: TrackState
TRACK_STATE_UPLOADED: TrackState
TRACK_STATE_ANALYZED: TrackState
TRACK_STATE_INDEXED: TrackState
TRACK_STATE_FAILED: TrackState

class TrackAnalysis(_message.Message):
    __slots__ = ("duration_s", "sample_rate_hz", "tempo_bpm", "beats_s", "key", "mode", "key_confidence", "loudness_lufs", "embedding", "analyzer_version", "is_silent")
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    TEMPO_BPM_FIELD_NUMBER: _ClassVar[int]
    BEATS_S_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    KEY_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_LUFS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ANALYZER_VERSION_FIELD_NUMBER: _ClassVar[int]
    IS_SILENT_FIELD_NUMBER: _ClassVar[int]
    duration_s: float
    sample_rate_hz: int
    tempo_bpm: float
    beats_s: _containers.RepeatedScalarFieldContainer[float]
    key: str
    mode: Mode
    key_confidence: float
    loudness_lufs: float
    embedding: _containers.RepeatedScalarFieldContainer[float]
    analyzer_version: str
    is_silent: bool
    def __init__(self, duration_s: _Optional[float] = ..., sample_rate_hz: _Optional[int] = ..., tempo_bpm: _Optional[float] = ..., beats_s: _Optional[_Iterable[float]] = ..., key: _Optional[str] = ..., mode: _Optional[_Union[Mode, str]] = ..., key_confidence: _Optional[float] = ..., loudness_lufs: _Optional[float] = ..., embedding: _Optional[_Iterable[float]] = ..., analyzer_version: _Optional[str] = ..., is_silent: _Optional[bool] = ...) -> None: ...

class BlobRef(_message.Message):
    __slots__ = ("bucket", "name", "size_bytes", "content_type")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    name: str
    size_bytes: int
    content_type: str
    def __init__(self, bucket: _Optional[str] = ..., name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., content_type: _Optional[str] = ...) -> None: ...

class Track(_message.Message):
    __slots__ = ("track_id", "state", "title", "filename", "source", "audio", "analysis", "error", "created_at", "updated_at", "generation_id")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    state: TrackState
    title: str
    filename: str
    source: TrackSource
    audio: BlobRef
    analysis: TrackAnalysis
    error: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    generation_id: str
    def __init__(self, track_id: _Optional[str] = ..., state: _Optional[_Union[TrackState, str]] = ..., title: _Optional[str] = ..., filename: _Optional[str] = ..., source: _Optional[_Union[TrackSource, str]] = ..., audio: _Optional[_Union[BlobRef, _Mapping]] = ..., analysis: _Optional[_Union[TrackAnalysis, _Mapping]] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., generation_id: _Optional[str] = ...) -> None: ...
