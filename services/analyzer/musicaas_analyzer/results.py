"""The analyzer's result types (plain, frozen dataclasses; wire form in :mod:`~musicaas_analyzer.convert`).

Times are seconds from the start of the track, tempi beats per minute, loudness in LUFS
(BS.1770-4) unless a field says dBFS, and every confidence, feature and score is unitless
in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from musicaas.keys import Key
from musicaas_analyzer.descriptors import AudioFeatures, EvaluationScores

__all__ = [
    "AudioAnalysis",
    "AudioFeatures",
    "EvaluationScores",
    "MidiFeatures",
    "Section",
    "Segment",
    "SpectralDescriptors",
    "TempoCandidate",
    "TimeInterval",
]


@dataclass(frozen=True)
class TempoCandidate:
    """One tempo hypothesis: ``tempo_bpm`` (BPM) and its relative ``weight`` (0..1)."""

    tempo_bpm: float
    weight: float


@dataclass(frozen=True)
class TimeInterval:
    """A bar, beat or tatum: ``start_s``, ``duration_s`` (seconds) and ``confidence`` (0..1)."""

    start_s: float
    duration_s: float
    confidence: float


@dataclass(frozen=True)
class Segment:
    """An onset-to-onset sound event (see :mod:`musicaas_analyzer.structure`).

    Attributes
    ----------
    start_s, duration_s : float, seconds
    confidence : float in [0, 1]
        Onset strength at the start relative to the track's strong onsets.
    loudness_start_db, loudness_max_db, loudness_end_db : float, dBFS
        Frame RMS level (93 ms frames; a full-scale sine reads -3 dBFS) at the first frame,
        the loudest frame and the last frame.
    loudness_max_time_s : float, seconds
        Time of the loudest frame after ``start_s``.
    pitches : tuple of 12 float in [0, 1]
        Pitch-class content C..B, the strongest at 1.
    timbre : tuple of 12 float, dB
        MFCC 0-11 of the segment's mean log-mel spectrum (dB re the track's loudest band).
    """

    start_s: float
    duration_s: float
    confidence: float
    loudness_start_db: float
    loudness_max_db: float
    loudness_max_time_s: float
    loudness_end_db: float
    pitches: tuple[float, ...]
    timbre: tuple[float, ...]


@dataclass(frozen=True)
class Section:
    """A novelty-delimited section (see :mod:`musicaas_analyzer.structure`).

    Attributes
    ----------
    start_s, duration_s : float, seconds
    confidence : float in [0, 1]
        Height of the novelty peak at the start (1.0 for the first section).
    loudness_lufs : float
        Integrated loudness of the section (BS.1770-4 gating), LUFS.
    tempo_bpm : float
        From the beats inside the section; 0.0 with fewer than 4 of them.
    tempo_confidence : float in [0, 1]
        Beat regularity inside the section times the track's pulse-clarity factor.
    key : Key or None
    key_confidence, mode_confidence : float in [0, 1]
    time_signature : int
        The track's time-signature numerator (metre is estimated per track).
    time_signature_confidence : float in [0, 1]
    """

    start_s: float
    duration_s: float
    confidence: float
    loudness_lufs: float
    tempo_bpm: float
    tempo_confidence: float
    key: Key | None
    key_confidence: float
    mode_confidence: float
    time_signature: int
    time_signature_confidence: float


@dataclass(frozen=True)
class SpectralDescriptors:
    """Low-level descriptors averaged over the active (not near-silent) frames.

    Attributes
    ----------
    mfcc_mean : tuple of 13 float, dB
        MFCC 0-12 (128-band mel to 10 kHz, dB re the track's maximum, orthonormal DCT-II).
    chroma_mean : tuple of 12 float
        Mean chroma C..B of the key finder's chromagram, summing to 1 (all 0 when silent).
    spectral_centroid_hz, spectral_rolloff_hz : float, Hz
        Centroid and 85 % roll-off of the magnitude spectrum up to 10 kHz.
    spectral_flux : float in [0, 1]
        Half the L1 distance between consecutive L1-normalised magnitude spectra.
    spectral_contrast_db : tuple of 7 float, dB
        Octave-band spectral contrast (Jiang et al. 2002).
    zero_crossing_rate_hz : float, 1/s
        Sign changes of the 22050 Hz mono signal per second.
    onset_rate_hz : float, 1/s
        Detected onsets per second.
    loudness_range_lu : float, LU
        EBU Tech 3342 loudness range (0 for audio shorter than 3 s).
    """

    mfcc_mean: tuple[float, ...]
    chroma_mean: tuple[float, ...]
    spectral_centroid_hz: float
    spectral_rolloff_hz: float
    spectral_flux: float
    spectral_contrast_db: tuple[float, ...]
    zero_crossing_rate_hz: float
    onset_rate_hz: float
    loudness_range_lu: float

    @classmethod
    def zeros(cls) -> "SpectralDescriptors":
        return cls((0.0,) * 13, (0.0,) * 12, 0.0, 0.0, 0.0, (0.0,) * 7, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class MidiFeatures:
    """What a Standard MIDI File's events say (no rendering involved).

    Attributes
    ----------
    note_count : int
        All notes, drum tracks included.
    note_density_per_s : float, 1/s
        ``note_count`` over the file's duration.
    lowest_pitch_midi, highest_pitch_midi : int
        Pitch range of the non-drum notes, MIDI note numbers; -1 when there are none.
    time_signature_numerator, time_signature_denominator : int
        The first time-signature event (4/4 when the file has none).
    tempo_changes : int
        Number of tempo events.
    track_count : int
        Tracks holding notes.
    has_drums : bool
    key_signature : Key or None
        From the first key-signature event, when the file has one.
    """

    note_count: int
    note_density_per_s: float
    lowest_pitch_midi: int
    highest_pitch_midi: int
    time_signature_numerator: int
    time_signature_denominator: int
    tempo_changes: int
    track_count: int
    has_drums: bool
    key_signature: Key | None


@dataclass(frozen=True)
class AudioAnalysis:
    """What the analyzer reports about one track.

    Attributes
    ----------
    duration_s : float
        Length of the audio, seconds.
    sample_rate_hz : int
        Sample rate of the audio as given (the file's own rate for
        :func:`~musicaas_analyzer.analysis.analyze_bytes`); features are computed at 22050 Hz
        regardless. For MIDI input, the rate of the rendering (22050).
    tempo_bpm : float
        Beats per minute; 0.0 when silent or when no beat was tracked.
    beats_s : tuple of float
        Beat times, seconds, strictly increasing, within [0, duration_s].
    key : Key or None
        None for silence or audio without tonal content (flat chroma).
    key_confidence : float in [0, 1]
        See :mod:`musicaas_analyzer.keyfinding`; 0.0 when ``key`` is None.
    loudness_lufs : float
        Integrated loudness (ITU-R BS.1770-4), LUFS; never below -70.0, the value reported
        when nothing passes the BS.1770 absolute gate (silence).
    embedding : np.ndarray [shape=(64,)], float32, read-only
        The hand-built descriptor embedding (``TrackAnalysis.descriptor_embedding`` on the
        wire): unit L2 norm; see :mod:`musicaas_analyzer.embedding`. Equality and hashing of
        an ``AudioAnalysis`` ignore it (numpy arrays have no single truth value).
    analyzer_version : str
    is_silent : bool
    time_signature : int
        The time signature's numerator as written: 2, 3, 4, 5 (x/4) or 6 (6/8: two
        dotted-quarter beats of three; ``beats_s`` and ``tempo_bpm`` are then the dotted
        quarter's, bars every 2 beats); 0 when unknown.
    time_signature_confidence, tempo_confidence, mode_confidence : float in [0, 1]
        See :mod:`musicaas_analyzer.rhythm` and :mod:`musicaas_analyzer.keyfinding`.
    tempo_candidates : tuple of TempoCandidate
        Up to three; the first is ``tempo_bpm`` (see :mod:`musicaas_analyzer.rhythm`).
    features : AudioFeatures
        Perceptual descriptors (heuristics; :mod:`musicaas_analyzer.descriptors`).
    descriptors : SpectralDescriptors
    scores : EvaluationScores
    bars, beats, tatums : tuple of TimeInterval
        ``beats`` has the start times of ``beats_s``; empty when not computed
        (``detail=False``) or not found.
    sections, segments : tuple of Section / Segment
        Empty when not computed (``detail=False``) or silent.
    midi : MidiFeatures or None
        Set for Standard MIDI File input (:mod:`musicaas_analyzer.midi`).
    log_mel : np.ndarray [shape=(patches, 187, 96)], float32, or None
        The learned model's input (:func:`musicaas.models.musicnn_frontend.log_mel_patches`
        of the audio; zeros for silence): the service sends it to the tagger served by
        Triton, which gives the learned embedding and the tags. Not part of equality.
    """

    duration_s: float
    sample_rate_hz: int
    tempo_bpm: float
    beats_s: tuple[float, ...]
    key: Key | None
    key_confidence: float
    loudness_lufs: float
    embedding: np.ndarray = field(compare=False)
    analyzer_version: str
    is_silent: bool
    time_signature: int = 0
    time_signature_confidence: float = 0.0
    tempo_confidence: float = 0.0
    mode_confidence: float = 0.0
    tempo_candidates: tuple[TempoCandidate, ...] = ()
    features: AudioFeatures = field(default_factory=AudioFeatures.zeros)
    descriptors: SpectralDescriptors = field(default_factory=SpectralDescriptors.zeros)
    scores: EvaluationScores = field(default_factory=EvaluationScores.zeros)
    bars: tuple[TimeInterval, ...] = ()
    beats: tuple[TimeInterval, ...] = ()
    tatums: tuple[TimeInterval, ...] = ()
    sections: tuple[Section, ...] = ()
    segments: tuple[Segment, ...] = ()
    midi: MidiFeatures | None = None
    log_mel: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def mode(self) -> str | None:
        """``"major"``, ``"minor"``, or None without a key."""
        return self.key.mode if self.key is not None else None
