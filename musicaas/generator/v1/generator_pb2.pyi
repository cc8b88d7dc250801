import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from musicaas.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerationStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GENERATION_STAGE_UNSPECIFIED: _ClassVar[GenerationStage]
    GENERATION_STAGE_QUEUED: _ClassVar[GenerationStage]
    GENERATION_STAGE_SAMPLING: _ClassVar[GenerationStage]
    GENERATION_STAGE_RENDERING: _ClassVar[GenerationStage]
    GENERATION_STAGE_STORING: _ClassVar[GenerationStage]
    GENERATION_STAGE_COMPLETED: _ClassVar[GenerationStage]

class GenerationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GENERATION_STATE_UNSPECIFIED: _ClassVar[GenerationState]
    GENERATION_STATE_QUEUED: _ClassVar[GenerationState]
    GENERATION_STATE_RUNNING: _ClassVar[GenerationState]
    GENERATION_STATE_COMPLETED: _ClassVar[GenerationState]
    GENERATION_STATE_FAILED: _ClassVar[GenerationState]
GENERATION_STAGE_UNSPECIFIED: GenerationStage
GENERATION_STAGE_QUEUED: GenerationStage
GENERATION_STAGE_SAMPLING: GenerationStage
GENERATION_STAGE_RENDERING: GenerationStage
GENERATION_STAGE_STORING: GenerationStage
GENERATION_STAGE_COMPLETED: GenerationStage
GENERATION_STATE_UNSPECIFIED: GenerationState
GENERATION_STATE_QUEUED: GenerationState
GENERATION_STATE_RUNNING: GenerationState
GENERATION_STATE_COMPLETED: GenerationState
GENERATION_STATE_FAILED: GenerationState

class GenerationParams(_message.Message):
    __slots__ = ("key", "tempo_bpm", "num_bars", "temperature", "seed", "metre", "style", "instrument", "top_k", "top_p", "num_variations", "primer_midi", "melody_midi", "key_guidance")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TEMPO_BPM_FIELD_NUMBER: _ClassVar[int]
    NUM_BARS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    METRE_FIELD_NUMBER: _ClassVar[int]
    STYLE_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    NUM_VARIATIONS_FIELD_NUMBER: _ClassVar[int]
    PRIMER_MIDI_FIELD_NUMBER: _ClassVar[int]
    MELODY_MIDI_FIELD_NUMBER: _ClassVar[int]
    KEY_GUIDANCE_FIELD_NUMBER: _ClassVar[int]
    key: str
    tempo_bpm: float
    num_bars: int
    temperature: float
    seed: int
    metre: str
    style: str
    instrument: int
    top_k: int
    top_p: float
    num_variations: int
    primer_midi: bytes
    melody_midi: bytes
    key_guidance: bool
    def __init__(self, key: _Optional[str] = ..., tempo_bpm: _Optional[float] = ..., num_bars: _Optional[int] = ..., temperature: _Optional[float] = ..., seed: _Optional[int] = ..., metre: _Optional[str] = ..., style: _Optional[str] = ..., instrument: _Optional[int] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ..., num_variations: _Optional[int] = ..., primer_midi: _Optional[bytes] = ..., melody_midi: _Optional[bytes] = ..., key_guidance: _Optional[bool] = ...) -> None: ...

class GeneratedPiece(_message.Message):
    __slots__ = ("index", "seed", "track_id", "midi", "audio_wav", "midi_blob", "audio_blob", "duration_s", "num_tokens", "soprano_kept")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    MIDI_FIELD_NUMBER: _ClassVar[int]
    AUDIO_WAV_FIELD_NUMBER: _ClassVar[int]
    MIDI_BLOB_FIELD_NUMBER: _ClassVar[int]
    AUDIO_BLOB_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SOPRANO_KEPT_FIELD_NUMBER: _ClassVar[int]
    index: int
    seed: int
    track_id: str
    midi: bytes
    audio_wav: bytes
    midi_blob: _common_pb2.BlobRef
    audio_blob: _common_pb2.BlobRef
    duration_s: float
    num_tokens: int
    soprano_kept: float
    def __init__(self, index: _Optional[int] = ..., seed: _Optional[int] = ..., track_id: _Optional[str] = ..., midi: _Optional[bytes] = ..., audio_wav: _Optional[bytes] = ..., midi_blob: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., audio_blob: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., duration_s: _Optional[float] = ..., num_tokens: _Optional[int] = ..., soprano_kept: _Optional[float] = ...) -> None: ...

class GenerationProgress(_message.Message):
    __slots__ = ("generation_id", "stage", "variation", "num_variations", "fraction", "message", "result")
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    VARIATION_FIELD_NUMBER: _ClassVar[int]
    NUM_VARIATIONS_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    generation_id: str
    stage: GenerationStage
    variation: int
    num_variations: int
    fraction: float
    message: str
    result: GenerationResult
    def __init__(self, generation_id: _Optional[str] = ..., stage: _Optional[_Union[GenerationStage, str]] = ..., variation: _Optional[int] = ..., num_variations: _Optional[int] = ..., fraction: _Optional[float] = ..., message: _Optional[str] = ..., result: _Optional[_Union[GenerationResult, _Mapping]] = ...) -> None: ...

class GenerationJob(_message.Message):
    __slots__ = ("generation_id", "state", "params", "pieces", "error", "created_at", "updated_at", "tenant")
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    PIECES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    generation_id: str
    state: GenerationState
    params: GenerationParams
    pieces: _containers.RepeatedCompositeFieldContainer[GeneratedPiece]
    error: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    tenant: str
    def __init__(self, generation_id: _Optional[str] = ..., state: _Optional[_Union[GenerationState, str]] = ..., params: _Optional[_Union[GenerationParams, _Mapping]] = ..., pieces: _Optional[_Iterable[_Union[GeneratedPiece, _Mapping]]] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tenant: _Optional[str] = ...) -> None: ...

class GenerateTrackRequest(_message.Message):
    __slots__ = ("params", "generation_id")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    params: GenerationParams
    generation_id: str
    def __init__(self, params: _Optional[_Union[GenerationParams, _Mapping]] = ..., generation_id: _Optional[str] = ...) -> None: ...

class GenerationResult(_message.Message):
    __slots__ = ("generation_id", "params", "pieces")
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    PIECES_FIELD_NUMBER: _ClassVar[int]
    generation_id: str
    params: GenerationParams
    pieces: _containers.RepeatedCompositeFieldContainer[GeneratedPiece]
    def __init__(self, generation_id: _Optional[str] = ..., params: _Optional[_Union[GenerationParams, _Mapping]] = ..., pieces: _Optional[_Iterable[_Union[GeneratedPiece, _Mapping]]] = ...) -> None: ...

class GenerateTrackResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: GenerationResult
    def __init__(self, result: _Optional[_Union[GenerationResult, _Mapping]] = ...) -> None: ...
