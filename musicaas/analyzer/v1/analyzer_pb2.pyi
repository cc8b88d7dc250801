from musicaas.common.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnalyzeAudioRequest(_message.Message):
    __slots__ = ("audio", "filename")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    audio: bytes
    filename: str
    def __init__(self, audio: _Optional[bytes] = ..., filename: _Optional[str] = ...) -> None: ...

class AnalyzeAudioResponse(_message.Message):
    __slots__ = ("analysis",)
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    analysis: _common_pb2.TrackAnalysis
    def __init__(self, analysis: _Optional[_Union[_common_pb2.TrackAnalysis, _Mapping]] = ...) -> None: ...
