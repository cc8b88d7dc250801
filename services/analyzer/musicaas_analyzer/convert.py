"""Conversion of the analyzer's numeric results to their wire form (``musicaas.common.v1``)."""

from __future__ import annotations

import numpy as np

from musicaas.common.v1 import common_pb2
from musicaas.models.musicnn_contract import TOP_TAGS, TrackTags
from musicaas.keys import Key
from musicaas.runtime.protoconv import MODE_TO_PROTO
from musicaas_analyzer.results import AudioAnalysis, MidiFeatures, TimeInterval
from musicaas_analyzer.sectiontags import section_tags


def _key_fields(key: Key | None) -> tuple[str, int]:
    if key is None:
        return "", common_pb2.MODE_UNSPECIFIED
    return key.tonic, MODE_TO_PROTO[key.mode]


def _intervals(items: tuple[TimeInterval, ...]) -> list[common_pb2.TimeInterval]:
    return [common_pb2.TimeInterval(start_s=i.start_s, duration_s=i.duration_s, confidence=i.confidence) for i in items]


def _midi(m: MidiFeatures) -> common_pb2.MidiFeatures:
    tonic, mode = _key_fields(m.key_signature)
    return common_pb2.MidiFeatures(
        note_count=m.note_count,
        note_density_per_s=m.note_density_per_s,
        lowest_pitch_midi=m.lowest_pitch_midi,
        highest_pitch_midi=m.highest_pitch_midi,
        time_signature_numerator=m.time_signature_numerator,
        time_signature_denominator=m.time_signature_denominator,
        tempo_changes=m.tempo_changes,
        track_count=m.track_count,
        has_drums=m.has_drums,
        key_signature=tonic,
        key_signature_mode=mode,
    )


def analysis_to_proto(result: AudioAnalysis) -> common_pb2.TrackAnalysis:
    """Convert the numeric result to its wire form (every field; the tree in float32).

    Parameters
    ----------
    result : AudioAnalysis
        From :func:`musicaas_analyzer.analysis.analyze_bytes` (or ``analyze_signal``,
        ``analyze_midi``); units are carried over unchanged (seconds, Hz, BPM, LUFS, dB).

    Returns
    -------
    common_pb2.TrackAnalysis
        Keys as tonic name plus ``common_pb2.Mode`` (``MODE_UNSPECIFIED`` with no key);
        ``midi`` is set only when ``result.midi`` is not None. The learned ``embedding``,
        ``tags`` and ``embedding_model`` are left empty: :func:`apply_tags` fills them from
        the tagger's answer for ``result.log_mel``; ``result.embedding`` (the hand-built
        vector) goes to ``descriptor_embedding``.
    """
    tonic, mode = _key_fields(result.key)
    f, d, s = result.features, result.descriptors, result.scores
    msg = common_pb2.TrackAnalysis(
        duration_s=result.duration_s,
        sample_rate_hz=result.sample_rate_hz,
        tempo_bpm=result.tempo_bpm,
        beats_s=list(result.beats_s),
        key=tonic,
        mode=mode,
        key_confidence=result.key_confidence,
        loudness_lufs=result.loudness_lufs,
        descriptor_embedding=[float(v) for v in result.embedding],
        analyzer_version=result.analyzer_version,
        is_silent=result.is_silent,
        time_signature=result.time_signature,
        time_signature_confidence=result.time_signature_confidence,
        tempo_confidence=result.tempo_confidence,
        mode_confidence=result.mode_confidence,
        tempo_candidates=[
            common_pb2.TempoCandidate(tempo_bpm=c.tempo_bpm, weight=c.weight) for c in result.tempo_candidates
        ],
        features=common_pb2.AudioFeatures(
            danceability=f.danceability,
            energy=f.energy,
            valence=f.valence,
            acousticness=f.acousticness,
            instrumentalness=f.instrumentalness,
            speechiness=f.speechiness,
            liveness=f.liveness,
        ),
        descriptors=common_pb2.SpectralDescriptors(
            mfcc_mean=list(d.mfcc_mean),
            chroma_mean=list(d.chroma_mean),
            spectral_centroid_hz=d.spectral_centroid_hz,
            spectral_rolloff_hz=d.spectral_rolloff_hz,
            spectral_flux=d.spectral_flux,
            spectral_contrast_db=list(d.spectral_contrast_db),
            zero_crossing_rate_hz=d.zero_crossing_rate_hz,
            onset_rate_hz=d.onset_rate_hz,
            loudness_range_lu=d.loudness_range_lu,
        ),
        scores=common_pb2.EvaluationScores(
            tonal_clarity=s.tonal_clarity,
            rhythmic_stability=s.rhythmic_stability,
            dynamic_range=s.dynamic_range,
            repetition=s.repetition,
        ),
        bars=_intervals(result.bars),
        beats=_intervals(result.beats),
        tatums=_intervals(result.tatums),
    )
    for sec in result.sections:
        sec_tonic, sec_mode = _key_fields(sec.key)
        msg.sections.add(
            start_s=sec.start_s,
            duration_s=sec.duration_s,
            confidence=sec.confidence,
            loudness_lufs=sec.loudness_lufs,
            tempo_bpm=sec.tempo_bpm,
            tempo_confidence=sec.tempo_confidence,
            key=sec_tonic,
            key_confidence=sec.key_confidence,
            mode=sec_mode,
            mode_confidence=sec.mode_confidence,
            time_signature=sec.time_signature,
            time_signature_confidence=sec.time_signature_confidence,
        )
    for seg in result.segments:
        msg.segments.add(
            start_s=seg.start_s,
            duration_s=seg.duration_s,
            confidence=seg.confidence,
            loudness_start_db=seg.loudness_start_db,
            loudness_max_db=seg.loudness_max_db,
            loudness_max_time_s=seg.loudness_max_time_s,
            loudness_end_db=seg.loudness_end_db,
            pitches=seg.pitches,
            timbre=seg.timbre,
        )
    if result.midi is not None:
        msg.midi.CopyFrom(_midi(result.midi))
    return msg


def apply_tags(msg: common_pb2.TrackAnalysis, result: TrackTags) -> common_pb2.TrackAnalysis:
    """Fill ``msg``'s learned ``embedding``, ``tags`` (best first) and ``embedding_model`` from
    the tagger's track-level result (in place; returns ``msg``)."""
    del msg.embedding[:]
    msg.embedding.extend(float(v) for v in result.embedding)
    del msg.tags[:]
    msg.tags.extend(common_pb2.TagScore(name=name, score=score) for name, score in result.tags)
    msg.embedding_model = result.model
    return msg


def apply_section_tags(msg: common_pb2.TrackAnalysis, patch_probabilities: np.ndarray) -> common_pb2.TrackAnalysis:
    """Fill each of ``msg.sections``' ``tags`` with its top tags from the tagger's per-patch
    probabilities (:func:`musicaas_analyzer.sectiontags.section_tags`; as many as the
    track's ``tags``, best first; none for a section shorter than one patch). In place;
    returns ``msg``.

    Parameters
    ----------
    msg : common_pb2.TrackAnalysis
        With its ``sections`` (seconds) and, from :func:`apply_tags`, its track ``tags``.
    patch_probabilities : np.ndarray [shape=(patches, 50)], float32, in [0, 1]
        The ``TAGS`` output for ``msg``'s log-mel patches, in patch order.

    Raises
    ------
    ValueError
        When ``patch_probabilities`` is not ``[patches, 50]`` or is not finite.
    """
    top = len(msg.tags) or TOP_TAGS
    found = section_tags([(s.start_s, s.duration_s) for s in msg.sections], patch_probabilities, top=top)
    for section, tags in zip(msg.sections, found):
        del section.tags[:]
        section.tags.extend(common_pb2.TagScore(name=name, score=score) for name, score in tags)
    return msg
