"""The audio-analysis tree below the beat level: segments, and above it: sections.

**Segments** are onset to onset. Onsets are the peaks of the onset-strength envelope
(librosa ``onset_detect``: a peak higher than its neighbourhood by a threshold, at least
80 ms after the previous one); with the centred 93 ms analysis window they land within
about 30 ms of the attack. The first segment starts at 0 s and the last ends at the end of the
track. A segment's loudness values are frame levels in dBFS: the RMS of the 93 ms Hann-
windowed frame (2048 samples at 22050 Hz) relative to a full-scale square wave, so that a
full-scale sine reads -3 dBFS (an RMS level, not BS.1770 loudness; :data:`LEVEL_FLOOR_DB`
for silence). ``pitches`` is the segment's mean short-window chroma scaled so that its
strongest pitch class is 1; ``timbre`` is MFCC 0-11 (orthonormal DCT-II) of the segment's
mean log-mel spectrum (128 bands to 10 kHz, dB re the track's loudest band), so coefficient
0 follows loudness and coefficient 1 brightness. At most :data:`MAX_SEGMENTS` segments are
kept (the strongest onsets), which bounds the size of a result for long tracks.

**Sections** follow Foote (2000): a self-similarity matrix of beat-synchronous descriptors
(MFCC 1-12 standardised over the track, and chroma; cosine similarity), a Gaussian-tapered
checkerboard kernel slid along its diagonal gives a novelty curve whose peaks are the
section boundaries. The kernel spans :data:`KERNEL_BEATS` beats on each side (about four
bars of 4/4); without beats (fewer than 16), 0.5 s frames take their place. Boundaries are
at least one kernel half-width apart and, when bars are known, moved to the nearest
downbeat within one beat. A section's confidence is the height of its boundary's novelty
peak relative to the highest peak (1.0 for the first section).

**Repetition** (an evaluation score) uses the same matrix: for every unit (beat), the best
similarity with any stretch at least a kernel half-width away, averaged along the diagonal
over 8 units so that isolated chance matches do not count, mapped from cosine similarity
0.5 (unrelated material) to 0.9 (a repeat) onto [0, 1], and averaged over the track.

References
----------
* Foote, J. (2000). Automatic audio segmentation using a measure of audio novelty.
  *IEEE International Conference on Multimedia and Expo*, 452-455.
* Paulus, J., Müller, M. & Klapuri, A. (2010). Audio-based music structure analysis. *ISMIR*.
* Bello, J. P. et al. (2005). A tutorial on onset detection in music signals. *IEEE TSAP*
  13(5), 1035-1047.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicaas_analyzer.rhythm import FRAME_RATE_HZ, HOP, SAMPLE_RATE_HZ, beat_sync_mean

#: Most segments reported for one track.
MAX_SEGMENTS = 2000
#: Shortest gap between two onsets, seconds (one attack can make two envelope peaks).
MIN_ONSET_GAP_S = 0.08
#: Half-width of the novelty kernel, in beats (or 0.5 s frames).
KERNEL_BEATS = 16
#: Level reported for a frame of digital silence, dBFS.
LEVEL_FLOOR_DB = -120.0
#: The self-similarity matrix is built on at most this many units (beats are grouped beyond).
MAX_SSM_UNITS = 2000


@dataclass(frozen=True)
class SegmentArrays:
    """Segments as arrays (n = number of segments); times in seconds, levels in dBFS."""

    start_s: np.ndarray
    duration_s: np.ndarray
    confidence: np.ndarray
    loudness_start_db: np.ndarray
    loudness_max_db: np.ndarray
    loudness_max_time_s: np.ndarray
    loudness_end_db: np.ndarray
    pitches: np.ndarray  # (n, 12)
    timbre: np.ndarray  # (n, 12)


def onset_frames(oenv: np.ndarray, *, max_count: int = MAX_SEGMENTS) -> np.ndarray:
    """Onset frames (peaks of the onset envelope at least :data:`MIN_ONSET_GAP_S` apart),
    sorted, at most ``max_count - 1`` (the strongest kept)."""
    import librosa

    if oenv.size < 3 or not np.any(oenv > 0):
        return np.zeros(0, dtype=np.int64)
    wait = max(1, int(round(MIN_ONSET_GAP_S * FRAME_RATE_HZ)))
    peaks = librosa.onset.onset_detect(onset_envelope=oenv, sr=SAMPLE_RATE_HZ, hop_length=HOP, units="frames", wait=wait)
    peaks = np.asarray(peaks, dtype=np.int64)
    if peaks.size >= max_count:
        strongest = np.argsort(oenv[peaks])[::-1][: max_count - 1]
        peaks = np.sort(peaks[strongest])
    return np.unique(peaks)


def segments(
    *,
    oenv: np.ndarray,
    level_db: np.ndarray,
    chroma: np.ndarray,
    mel_db: np.ndarray,
    duration_s: float,
) -> SegmentArrays:
    """Onset-to-onset segments with loudness envelope, pitch content and timbre.

    Parameters
    ----------
    oenv : np.ndarray [shape=(t,)]
        Onset strength per frame.
    level_db : np.ndarray [shape=(t,)]
        Frame level, dBFS.
    chroma : np.ndarray [shape=(12, t)], >= 0
        Short-window chroma per frame.
    mel_db : np.ndarray [shape=(128, t)]
        Log-mel spectrogram, dB re the track's maximum.
    duration_s : float
        Length of the track, seconds.
    """
    from scipy.fft import dct

    t = oenv.size
    onsets = onset_frames(oenv)
    starts = np.unique(np.concatenate([[0], onsets[(onsets > 0) & (onsets < t)]])).astype(np.int64)
    ends = np.concatenate([starts[1:], [t]])
    ref = float(np.percentile(oenv, 99)) if oenv.size else 0.0
    conf = np.clip(oenv[np.minimum(starts + 1, t - 1)] / ref, 0.0, 1.0) if ref > 0 else np.zeros(starts.size)
    conf = np.maximum(conf, np.clip(oenv[starts] / ref, 0.0, 1.0)) if ref > 0 else conf
    if onsets.size == 0 or onsets[0] > 0:
        conf[0] = 0.0  # the first segment starts at 0 s, not at an onset
    lengths = (ends - starts).astype(np.float64)

    csum_c = np.concatenate([np.zeros((12, 1)), np.cumsum(chroma, axis=1, dtype=np.float64)], axis=1)
    pitches = ((csum_c[:, ends] - csum_c[:, starts]) / lengths).T
    top = pitches.max(axis=1, keepdims=True)
    pitches = np.where(top > 0, pitches / np.maximum(top, 1e-12), 0.0)
    csum_m = np.concatenate([np.zeros((mel_db.shape[0], 1)), np.cumsum(mel_db, axis=1, dtype=np.float64)], axis=1)
    mean_mel = (csum_m[:, ends] - csum_m[:, starts]) / lengths
    timbre = dct(mean_mel, type=2, axis=0, norm="ortho")[:12].T

    seg_max = np.maximum.reduceat(level_db, starts)
    # First frame of each segment that reaches the segment's maximum (segments cover [0, t)).
    seg_id = np.repeat(np.arange(starts.size), ends - starts)
    at_max = np.nonzero(level_db >= seg_max[seg_id])[0]
    _, first = np.unique(seg_id[at_max], return_index=True)
    first_max = at_max[first]

    start_s = starts / FRAME_RATE_HZ
    end_s = np.minimum(ends / FRAME_RATE_HZ, duration_s)
    end_s[-1] = duration_s
    return SegmentArrays(
        start_s=start_s,
        duration_s=np.maximum(end_s - start_s, 0.0),
        confidence=conf,
        loudness_start_db=level_db[starts],
        loudness_max_db=seg_max,
        loudness_max_time_s=(first_max - starts) / FRAME_RATE_HZ,
        loudness_end_db=level_db[ends - 1],
        pitches=pitches,
        timbre=timbre,
    )


def _checkerboard(half: int) -> np.ndarray:
    """Gaussian-tapered checkerboard kernel (2*half x 2*half), Foote (2000)."""
    x = np.arange(-half, half) + 0.5
    g = np.exp(-0.5 * (x / (0.5 * half)) ** 2)
    sign = np.sign(x)
    return np.outer(g * sign, g * sign)


def _novelty(ssm: np.ndarray, half: int) -> np.ndarray:
    n = ssm.shape[0]
    kernel = _checkerboard(half)
    padded = np.pad(ssm, half, mode="constant")
    out = np.empty(n)
    for i in range(n):
        out[i] = float(np.sum(kernel * padded[i : i + 2 * half, i : i + 2 * half]))
    return np.maximum(out, 0.0)


@dataclass(frozen=True)
class Units:
    """The time units of the self-similarity matrix: start frames and feature columns."""

    start_frames: np.ndarray  # (n,)
    features: np.ndarray  # (d, n), unit columns


def structure_units(mfcc: np.ndarray, chroma: np.ndarray, beats: np.ndarray, n_frames: int) -> Units:
    """Beat-synchronous (or 0.5 s) unit-norm descriptors: standardised MFCC 1-12 and chroma."""
    if beats.size >= 16:
        starts = beats.astype(np.int64)
        if starts[0] > 0:
            starts = np.concatenate([[0], starts])
    else:
        step = max(1, int(round(0.5 * FRAME_RATE_HZ)))
        starts = np.arange(0, n_frames, step, dtype=np.int64)
    if starts.size > MAX_SSM_UNITS:
        group = int(np.ceil(starts.size / MAX_SSM_UNITS))
        starts = starts[::group]
    m = mfcc[1:13]
    m = (m - m.mean(axis=1, keepdims=True)) / np.maximum(m.std(axis=1, keepdims=True), 1e-9)
    sync_m = beat_sync_mean(m, starts)
    sync_c = beat_sync_mean(chroma, starts)
    sync_c = sync_c / np.maximum(np.linalg.norm(sync_c, axis=0, keepdims=True), 1e-12)
    sync_c = sync_c - sync_c.mean(axis=1, keepdims=True)
    sync_m = sync_m / np.maximum(np.linalg.norm(sync_m, axis=0, keepdims=True), 1e-12)
    sync_c = sync_c / np.maximum(np.linalg.norm(sync_c, axis=0, keepdims=True), 1e-12)
    feats = np.concatenate([sync_m, sync_c], axis=0)
    feats = feats / np.maximum(np.linalg.norm(feats, axis=0, keepdims=True), 1e-12)
    return Units(starts, feats)


def novelty_curve(units: Units) -> np.ndarray:
    """Foote novelty of every unit (module docstring), scaled so that its maximum is 1.

    Returns
    -------
    np.ndarray [shape=(n_units,)], float in [0, 1]
        All zero when there are fewer than ``2 * KERNEL_BEATS + 2`` units or no novelty.
    """
    n = units.start_frames.size
    if n < 2 * KERNEL_BEATS + 2:
        return np.zeros(n)
    nov = _novelty(units.features.T @ units.features, KERNEL_BEATS)
    top = float(nov.max())
    return nov / top if top > 0 else nov


def section_boundaries(units: Units, downbeats: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Section start frames (the first is 0) and their confidences (Foote novelty peaks).

    Parameters
    ----------
    units : Units
    downbeats : np.ndarray [shape=(k,)], int, optional
        Bar start frames; boundaries move to the nearest one within one unit.
    """
    import librosa

    n = units.start_frames.size
    half = KERNEL_BEATS
    nov = novelty_curve(units)
    if not nov.any():
        return np.array([0], dtype=np.int64), np.array([1.0])
    peaks = librosa.util.peak_pick(
        nov, pre_max=half // 2, post_max=half // 2, pre_avg=half, post_avg=half, delta=0.1, wait=half
    )
    peaks = np.asarray([p for p in peaks if half // 2 <= p <= n - half // 2], dtype=np.int64)
    frames = units.start_frames[peaks] if peaks.size else np.zeros(0, dtype=np.int64)
    if downbeats is not None and downbeats.size and frames.size:
        unit_len = float(np.median(np.diff(units.start_frames))) if n > 1 else 1.0
        nearest = downbeats[np.argmin(np.abs(downbeats[None, :] - frames[:, None]), axis=1)]
        frames = np.where(np.abs(nearest - frames) <= unit_len, nearest, frames)
    keep = frames > 0
    frames, conf = frames[keep], nov[peaks][keep] if peaks.size else np.zeros(0)
    frames, order = np.unique(frames, return_index=True)
    conf = conf[order]
    return np.concatenate([[0], frames]).astype(np.int64), np.concatenate([[1.0], conf])


def repetition(units: Units) -> float:
    """Repetition score in [0, 1] (module docstring)."""
    n = units.start_frames.size
    half = KERNEL_BEATS
    if n < 2 * half + 8:
        return 0.0
    ssm = units.features.T @ units.features
    run = 8
    # Average along diagonals: mean of ssm[i + k, j + k] for k < run.
    m = n - run + 1
    smooth = np.zeros((m, m))
    for k in range(run):
        smooth += ssm[k : k + m, k : k + m]
    smooth /= run
    for i in range(m):  # exclude the diagonal band (a unit is similar to its neighbours)
        smooth[i, max(0, i - half + 1) : i + half] = -1.0
    best = smooth.max(axis=1)
    return float(np.mean(np.clip((best - 0.5) / 0.4, 0.0, 1.0)))
