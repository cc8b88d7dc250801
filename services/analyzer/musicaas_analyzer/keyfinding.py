"""Key and mode estimation from audio: a cheap semitone chroma correlated with key profiles.

Method (the Krumhansl-Schmuckler correlation algorithm, Krumhansl 1990, applied to an
audio chroma as in Gomez 2006):

1. **Semitone spectrogram.** One long-window STFT (8192-point Hann window, hop 4096, at
   the 22050 Hz analysis rate: 2.7 Hz bins, 186 ms hop), separate from the short STFT used
   for beats and timbre because key finding needs frequency resolution, not time
   resolution. Bin frequencies are mapped to MIDI pitch after a global tuning correction,
   and each semitone from C2 (65 Hz) to C7 (2093 Hz) takes the **maximum** magnitude of
   the bins within +/-0.5 semitone (max pooling keeps each semitone's harmonic peak and
   makes every octave count equally, which summing linear bins would not).
2. **Tuning.** The deviation of the spectral peaks (parabolically interpolated) from
   equal temperament, as a magnitude-weighted circular mean, in semitones (A4 = 440 Hz
   plus that offset).
3. **Chroma.** Square-root compression of the magnitudes, mean over time, folded into
   12 pitch classes.
4. **Key.** Pearson correlation of the chroma with the 24 rotations of the
   Albrecht & Shanahan (2013) major and minor profiles, averaged with half the weight with
   the same correlation for the chroma of the bass register alone (C2 to B3): the bass line
   dwells on the tonic and dominant, which separates a key from its dominant key better
   than the full chroma does (bass chroma as a key and chord cue: Mauch & Dixon 2010). The
   best correlation wins. On ``bench/analyzer_accuracy.py`` the bass term raised the MIREX
   weighted score from 0.881 to 0.907 on the default chorales (where its weight was chosen)
   and from 0.921 to 0.949 on others (``--offset 2``); on the unfiltered chorales of
   ``bench/key_accuracy.py`` (modal endings included) it moved 0.883 to 0.870.

Profile choice, by measurement on Bach chorales from the music21 corpus rendered with the
project's General MIDI renderer (every 6th chorale, 70 pieces): on this chroma the
Albrecht & Shanahan profiles score 0.81 exact (MIREX weighted 0.84), Temperley (1999)
0.66 (0.72) and Krumhansl & Kessler (1982) 0.59 (0.72). The same Albrecht & Shanahan
correlation on the chorales' *symbolic* pitch-class durations scores 0.80, so the audio
front end loses essentially nothing; the remaining errors are mostly relative-key and
modal chorales. ``bench/key_accuracy.py`` reproduces the comparison against a plain
baseline. Profile numbers:

* Albrecht, J. & Shanahan, D. (2013). The use of large corpora to train a new type of
  key-finding algorithm: An improved treatment of the minor mode. *Music Perception*
  31(1), 59-67.
* Krumhansl, C. L. & Kessler, E. J. (1982). Tracing the dynamic changes in perceived tonal
  organization in a spatial representation of musical keys. *Psychological Review* 89(4),
  334-368 (probe-tone ratings; used by the benchmark baseline).
* Temperley, D. (1999). What's key for key? The Krumhansl-Schmuckler key-finding
  algorithm reconsidered. *Music Perception* 17(1), 65-100.
* Krumhansl, C. L. (1990). *Cognitive Foundations of Musical Pitch*. Oxford UP.
* Gomez, E. (2006). *Tonal description of music audio signals*. PhD thesis, UPF.
* Mauch, M. & Dixon, S. (2010). Simultaneous estimation of chords and musical context from
  audio. *IEEE TASLP* 18(6), 1280-1289.

**Confidence** (0..1) is the product of two factors, each 0..1:

* *margin*: how far the best key's correlation r1 stands above the runner-up's r2,
  ``max(r1, 0) * min(1, (r1 - r2) / 0.2)``. Relative and parallel keys share most of
  their profile, so r1 - r2 is small for ambiguous music; 0.2 is about the gap a clearly
  tonal piece reaches (rendered chorales: median 0.15).
* *tonality*: how peaked the chroma is, ``clip((cv - 0.1) / (0.3 - 0.1), 0, 1)`` where
  ``cv`` is the coefficient of variation (std / mean) of the 12 mean-chroma values. White
  or pink noise, clicks and noise bursts measure cv 0.05-0.09; rendered chorales 0.18-0.35,
  a single chord or tone above 1.

**Mode confidence** (0..1) is the tonality factor times ``min(1, |rM - rm| / 0.2)``, where
rM and rm are the best major and the best minor correlations: a relative-key ambiguity
(A minor or C major) makes it small even when the key confidence is moderate.

When the tonality factor is 0 (cv <= 0.1: noise, unpitched percussion, silence) no key
is reported (``key=None``, confidence 0).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from musicaas.keys import Key

#: Albrecht & Shanahan (2013) pitch-class distributions, tonic first.
ALBRECHT_SHANAHAN_MAJOR = (0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081)
ALBRECHT_SHANAHAN_MINOR = (0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052)
#: Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
KRUMHANSL_KESSLER_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
KRUMHANSL_KESSLER_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
#: Temperley (1999), "What's key for key?", Music Perception 17(1), 65-100.
TEMPERLEY_MAJOR = (5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0)
TEMPERLEY_MINOR = (5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0)

PROFILES = {
    "albrecht-shanahan": (ALBRECHT_SHANAHAN_MAJOR, ALBRECHT_SHANAHAN_MINOR),
    "krumhansl-kessler": (KRUMHANSL_KESSLER_MAJOR, KRUMHANSL_KESSLER_MINOR),
    "temperley": (TEMPERLEY_MAJOR, TEMPERLEY_MINOR),
}
DEFAULT_PROFILE = "albrecht-shanahan"

#: Chroma coefficient of variation at or below which the audio is treated as having no key.
CV_NOISE = 0.1
#: Chroma coefficient of variation at which the tonality factor saturates.
CV_FULL = 0.3
#: r1 - r2 at which the margin factor of the confidence saturates.
MARGIN_FULL = 0.2
#: Difference between the best major and the best minor correlation at which the mode
#: confidence saturates.
MODE_MARGIN_FULL = 0.2

N_FFT = 8192
HOP = 4096
MIDI_LOW = 36  # C2
MIDI_HIGH = 96  # C7
#: The bass chroma holds the semitones below this MIDI note (C4).
BASS_BELOW_MIDI = 60
#: Weight of the bass chroma's profile correlation next to the full chroma's.
BASS_WEIGHT = 0.5


@dataclass(frozen=True)
class KeyEstimate:
    """Result of :func:`estimate_key`.

    Attributes
    ----------
    key : Key or None
        None when the chroma is flat (no tonal content) or empty.
    confidence : float in [0, 1]
    correlations : np.ndarray [shape=(24,)]
        Pearson correlation with each key, indexed like :attr:`musicaas.keys.Key.index`
        (0-11 major C..B, 12-23 minor C..B); zeros when the chroma is empty.
    tonality : float in [0, 1]
        The tonality factor of the confidence (0 when no key).
    """

    key: Key | None
    confidence: float
    correlations: np.ndarray
    tonality: float = 0.0

    @property
    def best_correlation(self) -> float:
        return float(self.correlations.max())

    @property
    def mode_confidence(self) -> float:
        """Confidence of the mode alone, 0..1: the tonality factor times
        ``min(1, |best major r - best minor r| / MODE_MARGIN_FULL)``. Low when the relative
        (or parallel) key fits almost as well in the other mode; 0 without a key."""
        if self.key is None or self.correlations.size != 24:
            return 0.0
        gap = abs(float(self.correlations[:12].max()) - float(self.correlations[12:].max()))
        return float(np.clip(self.tonality * min(1.0, gap / MODE_MARGIN_FULL), 0.0, 1.0))


@functools.lru_cache(maxsize=8)
def _profile_matrix(name: str) -> np.ndarray:
    """(24, 12) matrix of centred, unit-norm profile rotations, rows in Key.index order."""
    major, minor = PROFILES[name]
    rows = []
    for base in (major, minor):
        p = np.asarray(base, dtype=np.float64)
        p = p - p.mean()
        p /= np.linalg.norm(p)
        rows.extend(np.roll(p, tonic) for tonic in range(12))
    return np.stack(rows)


def estimate_tuning(S: np.ndarray, sample_rate_hz: int, n_fft: int) -> float:
    """Global tuning offset in semitones (-0.5..0.5) from the spectral peaks of ``S``.

    Parameters
    ----------
    S : np.ndarray [shape=(bins, t)]
        STFT magnitudes, bins from 0 Hz (all of them, or the lowest ones).
    """
    if S.shape[1] == 0:
        return 0.0
    mid = S[1:-1]
    floor = 0.05 * S.max(axis=0, keepdims=True)
    peaks = (mid > S[:-2]) & (mid >= S[2:]) & (mid > floor)
    k, t = np.nonzero(peaks)
    if k.size == 0:
        return 0.0
    k = k + 1
    a, b, c = S[k - 1, t], S[k, t], S[k + 1, t]
    denom = a - 2.0 * b + c
    delta = np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    freq = (k + delta) * sample_rate_hz / n_fft
    keep = (freq > 60.0) & (freq < 2100.0)
    if not keep.any():
        return 0.0
    midi = 69.0 + 12.0 * np.log2(freq[keep] / 440.0)
    phase = 2.0 * np.pi * (midi - np.round(midi))
    total = np.sum(b[keep] * np.exp(1j * phase))
    if abs(total) == 0:
        return 0.0
    return float(np.angle(total) / (2.0 * np.pi))


@functools.lru_cache(maxsize=8)
def _semitone_groups(sample_rate_hz: int, n_fft: int, tuning_cents: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin range [start, end) of each semitone MIDI_LOW..MIDI_HIGH, and the MIDI pitches.

    A semitone too narrow to contain a bin centre (none at 22050 Hz with 8192 points, where
    C2's semitone is 3.9 Hz wide and the bins 2.7 Hz apart) gets its nearest bin."""
    freqs = np.arange(1 + n_fft // 2) * sample_rate_hz / n_fft
    midi = np.full(freqs.shape, -np.inf)
    midi[1:] = 69.0 + 12.0 * np.log2(freqs[1:] / 440.0) - tuning_cents / 100.0
    pitches = np.arange(MIDI_LOW, MIDI_HIGH + 1)
    starts = np.searchsorted(midi, pitches - 0.5)
    ends = np.searchsorted(midi, pitches + 0.5)
    nearest = np.clip(np.round(np.interp(pitches, midi[1:], np.arange(1, len(freqs)))).astype(int), 1, len(freqs) - 1)
    empty = ends <= starts
    starts = np.where(empty, nearest, starts)
    ends = np.where(empty, nearest + 1, ends)
    return starts, ends, pitches


def chromagram_with_bass(y: np.ndarray, sample_rate_hz: int) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`chromagram`, plus the chroma of the bass register alone (C2 to B3, MIDI 36-59).

    Returns
    -------
    chroma : np.ndarray [shape=(12, t)], float64, >= 0
    bass : np.ndarray [shape=(12, t)], float64, >= 0
    tuning : float, semitones
    """
    from musicaas_analyzer.spectral import stft_magnitude_blocks

    n_fft = N_FFT if sample_rate_hz <= 24000 else int(2 ** np.ceil(np.log2(N_FFT * sample_rate_hz / 22050)))
    hop = n_fft // 2
    # Only bins below MIDI_HIGH + 1 semitone (plus the tuning margin) are ever used.
    top_hz = 440.0 * 2 ** ((MIDI_HIGH + 1.5 - 69) / 12)
    max_bin = min(1 + n_fft // 2, int(np.ceil(top_hz * n_fft / sample_rate_hz)) + 2)
    blocks = [mag for _, mag in stft_magnitude_blocks(np.asarray(y, dtype=np.float32), n_fft=n_fft, hop=hop, max_bin=max_bin)]
    S = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    tuning = estimate_tuning(S, sample_rate_hz, n_fft)
    starts, ends, pitches = _semitone_groups(sample_rate_hz, n_fft, int(round(tuning * 100)))
    if S.shape[1] == 0:
        return np.zeros((12, 0)), np.zeros((12, 0)), tuning
    # Max over each semitone's bins; the groups are contiguous and ordered, so one
    # reduceat over interleaved (start, end) bounds does it; odd results are discarded.
    bounds = np.empty(2 * len(starts), dtype=np.int64)
    bounds[0::2], bounds[1::2] = starts, ends
    np.clip(bounds, 0, S.shape[0] - 1, out=bounds)
    pooled = np.sqrt(np.maximum.reduceat(S, bounds, axis=0)[0::2].astype(np.float64))
    chroma = np.zeros((12, S.shape[1]))
    np.add.at(chroma, pitches % 12, pooled)
    low = pitches < BASS_BELOW_MIDI
    bass = np.zeros((12, S.shape[1]))
    np.add.at(bass, pitches[low] % 12, pooled[low])
    return chroma, bass, tuning


def chromagram(y: np.ndarray, sample_rate_hz: int) -> tuple[np.ndarray, float]:
    """Semitone chroma per long-window frame (index 0 = C) and the tuning offset used.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], float
    sample_rate_hz : int, Hz (the analyzer uses 22050)

    Returns
    -------
    chroma : np.ndarray [shape=(12, t)], float64, >= 0, square-root magnitudes, not normalised
    tuning : float, semitones
    """
    chroma, _bass, tuning = chromagram_with_bass(y, sample_rate_hz)
    return chroma, tuning


def semitone_chroma(y: np.ndarray, sample_rate_hz: int) -> tuple[np.ndarray, float]:
    """Time-averaged :func:`chromagram`: shape (12,), and the tuning offset."""
    frames, tuning = chromagram(y, sample_rate_hz)
    return (frames.mean(axis=1) if frames.shape[1] else np.zeros(12)), tuning


def estimate_key(chroma: np.ndarray, *, bass: np.ndarray | None = None, profile: str = DEFAULT_PROFILE) -> KeyEstimate:
    """Estimate key, mode and confidence from a 12-bin chroma (index 0 = C).

    Parameters
    ----------
    chroma : np.ndarray [shape=(12,)], >= 0
    bass : np.ndarray [shape=(12,)], >= 0, optional
        Chroma of the bass register; when given (and not flat), the correlations are
        ``(r_full + BASS_WEIGHT * r_bass) / (1 + BASS_WEIGHT)``.
    profile : str
        A key of :data:`PROFILES`.

    See the module docstring for the method and the definition of the confidence.
    """
    c = np.asarray(chroma, dtype=np.float64)
    mean = c.mean()
    if c.shape != (12,) or not np.all(np.isfinite(c)) or mean <= 0:
        return KeyEstimate(None, 0.0, np.zeros(24))
    spread = c - mean
    cv = float(np.sqrt(np.mean(spread**2)) / mean)
    norm = float(np.linalg.norm(spread))
    if norm == 0.0:
        return KeyEstimate(None, 0.0, np.zeros(24))
    corr = _profile_matrix(profile) @ (spread / norm)
    if bass is not None:
        b = np.asarray(bass, dtype=np.float64)
        b_spread = b - b.mean() if b.shape == (12,) and np.all(np.isfinite(b)) else np.zeros(12)
        b_norm = float(np.linalg.norm(b_spread))
        if b_norm > 0:
            corr = (corr + BASS_WEIGHT * (_profile_matrix(profile) @ (b_spread / b_norm))) / (1.0 + BASS_WEIGHT)
    tonality = float(np.clip((cv - CV_NOISE) / (CV_FULL - CV_NOISE), 0.0, 1.0))
    if tonality == 0.0:
        return KeyEstimate(None, 0.0, corr, 0.0)
    order = np.argsort(corr)[::-1]
    r1, r2 = float(corr[order[0]]), float(corr[order[1]])
    margin = max(r1, 0.0) * min(1.0, (r1 - r2) / MARGIN_FULL)
    confidence = float(np.clip(margin * tonality, 0.0, 1.0))
    return KeyEstimate(Key.from_index(int(order[0])), confidence, corr, tonality)
