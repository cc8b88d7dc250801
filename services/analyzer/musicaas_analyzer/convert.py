"""Conversion of the analyzer's numeric results to their wire form (``musicaas.common.v1``)."""

from __future__ import annotations

from musicaas.common.v1 import common_pb2
from musicaas.runtime.protoconv import MODE_TO_PROTO
from musicaas_analyzer.analysis import AudioAnalysis


def analysis_to_proto(result: AudioAnalysis) -> common_pb2.TrackAnalysis:
    """Convert the numeric result to its wire form."""
    return common_pb2.TrackAnalysis(
        duration_s=result.duration_s,
        sample_rate_hz=result.sample_rate_hz,
        tempo_bpm=result.tempo_bpm,
        beats_s=list(result.beats_s),
        key=result.key.tonic if result.key else "",
        mode=MODE_TO_PROTO[result.key.mode] if result.key else common_pb2.MODE_UNSPECIFIED,
        key_confidence=result.key_confidence,
        loudness_lufs=result.loudness_lufs,
        embedding=[float(v) for v in result.embedding],
        analyzer_version=result.analyzer_version,
        is_silent=result.is_silent,
    )
