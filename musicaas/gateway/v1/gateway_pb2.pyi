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
    __slots__ = ("filename", "title", "content_type")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    filename: str
    title: str
    content_type: str
    def __init__(self, filename: _Optional[str] = ..., title: _Optional[str] = ..., content_type: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("track_id", "limit", "filter")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    limit: int
    filter: _recommender_pb2.TrackFilter
    def __init__(self, track_id: _Optional[str] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[_recommender_pb2.TrackFilter, _Mapping]] = ...) -> None: ...

class SimilarTracksResponse(_message.Message):
    __slots__ = ("tracks",)
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    tracks: _containers.RepeatedCompositeFieldContainer[_recommender_pb2.ScoredTrack]
    def __init__(self, tracks: _Optional[_Iterable[_Union[_recommender_pb2.ScoredTrack, _Mapping]]] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("liked_track_ids", "disliked_track_ids", "limit", "filter")
    LIKED_TRACK_IDS_FIELD_NUMBER: _ClassVar[int]
    DISLIKED_TRACK_IDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    liked_track_ids: _containers.RepeatedScalarFieldContainer[str]
    disliked_track_ids: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    filter: _recommender_pb2.TrackFilter
    def __init__(self, liked_track_ids: _Optional[_Iterable[str]] = ..., disliked_track_ids: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[_recommender_pb2.TrackFilter, _Mapping]] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("tracks",)
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    tracks: _containers.RepeatedCompositeFieldContainer[_recommender_pb2.ScoredTrack]
    def __init__(self, tracks: _Optional[_Iterable[_Union[_recommender_pb2.ScoredTrack, _Mapping]]] = ...) -> None: ...
