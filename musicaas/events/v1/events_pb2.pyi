import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from musicaas.common.v1 import common_pb2 as _common_pb2
from musicaas.generator.v1 import generator_pb2 as _generator_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrackUploaded(_message.Message):
    __slots__ = ("track_id", "audio_blob", "filename", "title", "source", "generation_id", "tenant", "metadata")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_BLOB_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    audio_blob: _common_pb2.BlobRef
    filename: str
    title: str
    source: _common_pb2.TrackSource
    generation_id: str
    tenant: str
    metadata: _common_pb2.TrackMetadata
    def __init__(self, track_id: _Optional[str] = ..., audio_blob: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., filename: _Optional[str] = ..., title: _Optional[str] = ..., source: _Optional[_Union[_common_pb2.TrackSource, str]] = ..., generation_id: _Optional[str] = ..., tenant: _Optional[str] = ..., metadata: _Optional[_Union[_common_pb2.TrackMetadata, _Mapping]] = ...) -> None: ...

class TrackAnalyzed(_message.Message):
    __slots__ = ("track_id", "analysis", "source", "title", "generation_id", "tenant", "metadata")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    analysis: _common_pb2.TrackAnalysis
    source: _common_pb2.TrackSource
    title: str
    generation_id: str
    tenant: str
    metadata: _common_pb2.TrackMetadata
    def __init__(self, track_id: _Optional[str] = ..., analysis: _Optional[_Union[_common_pb2.TrackAnalysis, _Mapping]] = ..., source: _Optional[_Union[_common_pb2.TrackSource, str]] = ..., title: _Optional[str] = ..., generation_id: _Optional[str] = ..., tenant: _Optional[str] = ..., metadata: _Optional[_Union[_common_pb2.TrackMetadata, _Mapping]] = ...) -> None: ...

class TrackFailed(_message.Message):
    __slots__ = ("track_id", "stage", "code", "reason", "tenant")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    stage: str
    code: str
    reason: str
    tenant: str
    def __init__(self, track_id: _Optional[str] = ..., stage: _Optional[str] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class GenerationRequested(_message.Message):
    __slots__ = ("generation_id", "params", "tenant")
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    generation_id: str
    params: _generator_pb2.GenerationParams
    tenant: str
    def __init__(self, generation_id: _Optional[str] = ..., params: _Optional[_Union[_generator_pb2.GenerationParams, _Mapping]] = ..., tenant: _Optional[str] = ...) -> None: ...

class GenerationCompleted(_message.Message):
    __slots__ = ("generation_id", "params", "pieces", "tenant")
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    PIECES_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    generation_id: str
    params: _generator_pb2.GenerationParams
    pieces: _containers.RepeatedCompositeFieldContainer[_generator_pb2.GeneratedPiece]
    tenant: str
    def __init__(self, generation_id: _Optional[str] = ..., params: _Optional[_Union[_generator_pb2.GenerationParams, _Mapping]] = ..., pieces: _Optional[_Iterable[_Union[_generator_pb2.GeneratedPiece, _Mapping]]] = ..., tenant: _Optional[str] = ...) -> None: ...

class GenerationFailed(_message.Message):
    __slots__ = ("generation_id", "code", "reason", "tenant")
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    generation_id: str
    code: str
    reason: str
    tenant: str
    def __init__(self, generation_id: _Optional[str] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class TrackDeleted(_message.Message):
    __slots__ = ("track_id", "tenant")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    tenant: str
    def __init__(self, track_id: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class InteractionsRecorded(_message.Message):
    __slots__ = ("tenant", "interactions", "batch_id")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    interactions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Interaction]
    batch_id: str
    def __init__(self, tenant: _Optional[str] = ..., interactions: _Optional[_Iterable[_Union[_common_pb2.Interaction, _Mapping]]] = ..., batch_id: _Optional[str] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("durable", "subject", "stream_sequence", "deliveries", "code", "reason", "ce_id", "ce_type", "data", "terminated_at")
    DURABLE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    STREAM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CE_ID_FIELD_NUMBER: _ClassVar[int]
    CE_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_AT_FIELD_NUMBER: _ClassVar[int]
    durable: str
    subject: str
    stream_sequence: int
    deliveries: int
    code: str
    reason: str
    ce_id: str
    ce_type: str
    data: bytes
    terminated_at: _timestamp_pb2.Timestamp
    def __init__(self, durable: _Optional[str] = ..., subject: _Optional[str] = ..., stream_sequence: _Optional[int] = ..., deliveries: _Optional[int] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ..., ce_id: _Optional[str] = ..., ce_type: _Optional[str] = ..., data: _Optional[bytes] = ..., terminated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
