from musicaas.common.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerationParams(_message.Message):
    __slots__ = ("key", "tempo_bpm", "num_bars", "temperature", "seed")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TEMPO_BPM_FIELD_NUMBER: _ClassVar[int]
    NUM_BARS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    key: str
    tempo_bpm: float
    num_bars: int
    temperature: float
    seed: int
    def __init__(self, key: _Optional[str] = ..., tempo_bpm: _Optional[float] = ..., num_bars: _Optional[int] = ..., temperature: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class GenerateTrackRequest(_message.Message):
    __slots__ = ("params", "generation_id")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    params: GenerationParams
    generation_id: str
    def __init__(self, params: _Optional[_Union[GenerationParams, _Mapping]] = ..., generation_id: _Optional[str] = ...) -> None: ...

class GenerateTrackResponse(_message.Message):
    __slots__ = ("generation_id", "track_id", "params", "midi", "audio_wav", "midi_blob", "audio_blob", "duration_s", "num_tokens")
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    MIDI_FIELD_NUMBER: _ClassVar[int]
    AUDIO_WAV_FIELD_NUMBER: _ClassVar[int]
    MIDI_BLOB_FIELD_NUMBER: _ClassVar[int]
    AUDIO_BLOB_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    generation_id: str
    track_id: str
    params: GenerationParams
    midi: bytes
    audio_wav: bytes
    midi_blob: _common_pb2.BlobRef
    audio_blob: _common_pb2.BlobRef
    duration_s: float
    num_tokens: int
    def __init__(self, generation_id: _Optional[str] = ..., track_id: _Optional[str] = ..., params: _Optional[_Union[GenerationParams, _Mapping]] = ..., midi: _Optional[bytes] = ..., audio_wav: _Optional[bytes] = ..., midi_blob: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., audio_blob: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., duration_s: _Optional[float] = ..., num_tokens: _Optional[int] = ...) -> None: ...
