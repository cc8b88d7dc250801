"""Conversions between protobuf enums and the plain strings used in Python code and payloads."""

from __future__ import annotations

from musicaas.common.v1 import common_pb2

MODE_TO_PROTO = {"major": common_pb2.MODE_MAJOR, "minor": common_pb2.MODE_MINOR}
PROTO_TO_MODE = {v: k for k, v in MODE_TO_PROTO.items()}

SOURCE_TO_PROTO = {"upload": common_pb2.TRACK_SOURCE_UPLOAD, "generated": common_pb2.TRACK_SOURCE_GENERATED}
PROTO_TO_SOURCE = {v: k for k, v in SOURCE_TO_PROTO.items()}


def mode_name(mode: int) -> str | None:
    """``MODE_MAJOR`` -> ``"major"``; ``MODE_UNSPECIFIED`` -> None."""
    return PROTO_TO_MODE.get(mode)


def source_name(source: int) -> str:
    """``TRACK_SOURCE_GENERATED`` -> ``"generated"``; unspecified -> ``"unknown"``."""
    return PROTO_TO_SOURCE.get(source, "unknown")

