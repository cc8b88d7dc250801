"""Perceptual descriptors ("audio features") and music evaluation scores, each in [0, 1].

These are **documented heuristics, not trained models**: each maps a few measured signal
properties through logistic curves whose midpoints and widths were set by hand on test
signals (rendered chorales, synthetic pop, click tracks, noise, synthetic speech), and none
has been validated against listener ratings. They rank clearly different material sensibly
(a loud drum track has more energy than a quiet string chorale; speech-like audio has more
speechiness than music); small differences between similar tracks mean little.

``s(x; m, w)`` below is the logistic ``1 / (1 + exp(-(x - m) / w))``.

Audio features
--------------
danceability
    ``tempo_fit * (0.4 * s(clarity; 0.3, 0.08) + 0.3 * regularity + 0.3 * s(ln
    peakiness; ln 8, 0.5))``: *clarity* is the autocorrelation of the mean-removed onset
    envelope at the beat period (pulse clarity, Lartillot et al. 2008), *regularity* the
    share of inter-beat intervals within 5 % of the median, *peakiness* the onset
    envelope's 99th percentile over its median (sharp percussive attacks), *tempo_fit*
    ``exp(-0.5 (log2(tempo / 120 BPM) / 0.75)^2)`` (tapping and dance tempi cluster near
    120 BPM, Moelants 2002). Cannot see groove, syncopation or genre.
energy
    Mean of ``s(loudness; -20 LUFS, 4 LU)``, ``s(onset rate; 3 /s, 1.2 /s)``,
    ``s(spectral flux; 0.12, 0.04)`` and ``s(log2 centroid; log2 1800 Hz, 0.5)``
    (intensity, activity and brightness, after the cues of Spotify's description and of
    arousal models such as Eerola, Lartillot & Toiviainen 2009). A quiet but busy track
    still gets a middling value.
valence
    ``0.4 * (0.5 + 0.5 * signed mode) + 0.3 * s(tempo; 100 BPM, 20 BPM) + 0.3 * s(log2
    centroid; log2 1500 Hz, 0.5)`` where *signed mode* is the mode confidence, positive
    for major, negative for minor (mode, tempo and brightness are the strongest structural
    cues of happy versus sad expression, Gabrielsson & Lindström 2010). Lyrics, harmony
    beyond the mode and performance expression are not seen.
acousticness
    Mean of ``s(frame-level std; 5 dB, 2 dB)`` (uncompressed dynamics),
    ``1 - s(roll-off; 4500 Hz, 1200 Hz)`` (little high-frequency content) and
    ``1 - s(log10 flatness; -2, 0.4)`` (tonal rather than noise-like spectra). Says
    nothing about the actual instruments: a clean synthesiser pad scores as acoustic.
speechiness
    Product of ``s(m4; 0.3, 0.06)``, ``s(pauses; 0.3, 0.08)`` and ``0.25 + 0.75 *
    (1 - tonality)``: *m4* is the share of the modulation spectrum of the 300-3400 Hz band
    energy between 2.5 and 6 Hz (the syllabic rate) out of 0.5-16 Hz, *pauses* the share
    of frames whose power is below half the mean power of the surrounding second (speech
    about 0.8, even with a noise floor 30 dB down; rendered music below 0.1), and
    *tonality* the key finder's chroma tonality factor (after the 4 Hz modulation and
    low-energy features of Scheirer & Slaney 1997). Rap over a tonal beat scores low.
instrumentalness
    ``1 - s(m4; 0.3, 0.06) * s(pauses; 0.3, 0.08)``: the absence of syllabic modulation
    with pauses. It cannot tell a sung melody from an instrumental one; it detects
    speech-like delivery only.
liveness
    ``s(floor flatness; 0.25, 0.06) * s(floor level; -30 dB, 5 dB)``: the spectral
    flatness (mel) of the quietest 20 % of the active frames, and their median level
    relative to the loudest 10 %: a live recording keeps a noisy floor (audience, room)
    between events, while studio recordings and renderings decay to quiet, tonal tails.
    Steady noise scores as live; sustained music with no gaps hides any floor and scores
    low however it was recorded.

Silence gives 0 for every feature.

Evaluation scores
-----------------
tonal_clarity
    The energy-weighted mean, over 8 s windows (4 s hop) of the key finder's chromagram,
    of ``max(r1, 0) * tonality``: the best key-profile correlation times the chroma
    tonality factor (:mod:`musicaas_analyzer.keyfinding`). Modulating music scores high as
    long as each window is clearly tonal; noise and clusters score 0.
rhythmic_stability
    ``min(1, clarity / 0.5) * steadiness * marked``: *steadiness* is ``1 - min(1, cv /
    0.1)`` with *cv* the coefficient of variation of the local tempo (median inter-beat
    interval of 8-beat windows), *marked* the share of beats with an onset salience of at
    least 0.3 (beats that are heard, not just inferred).
dynamic_range
    ``LRA / (LRA + 8 LU)``, the EBU Tech 3342 loudness range (0 for a constant level, 0.5
    at 8 LU, typical of pop; orchestral music often exceeds 15 LU).
repetition
    See :mod:`musicaas_analyzer.structure`.

References
----------
* Scheirer, E. & Slaney, M. (1997). Construction and evaluation of a robust multifeature
  speech/music discriminator. *ICASSP*, 1331-1334.
* Gabrielsson, A. & Lindström, E. (2010). The role of structure in the musical expression
  of emotions. In *Handbook of Music and Emotion*, Oxford UP, 367-400.
* Eerola, T., Lartillot, O. & Toiviainen, P. (2009). Prediction of multidimensional
  emotional ratings in music from audio using multivariate regression models. *ISMIR*.
* Moelants, D. (2002). Preferred tempo reconsidered. *ICMPC 7*, 580-583.
* Lartillot, O. et al. (2008). Multi-feature modeling of pulse clarity. *ISMIR*.
* EBU Tech 3342 (2016). Loudness Range: a measure to supplement EBU R 128 loudness normalization.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def squash(x: float, mid: float, width: float) -> float:
    """The logistic ``1 / (1 + exp(-(x - mid) / width))``, in (0, 1)."""
    z = float(np.clip((x - mid) / width, -60.0, 60.0))
    return float(1.0 / (1.0 + np.exp(-z)))


@dataclass(frozen=True)
class AudioFeatures:
    """Perceptual descriptors, each in [0, 1]; see the module docstring for the recipes.

    Attributes
    ----------
    danceability, energy, valence, acousticness, instrumentalness, speechiness, liveness : float
    """

    danceability: float
    energy: float
    valence: float
    acousticness: float
    instrumentalness: float
    speechiness: float
    liveness: float

    @classmethod
    def zeros(cls) -> "AudioFeatures":
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class EvaluationScores:
    """Music evaluation scores, each in [0, 1]; see the module docstring.

    Attributes
    ----------
    tonal_clarity, rhythmic_stability, dynamic_range, repetition : float
    """

    tonal_clarity: float
    rhythmic_stability: float
    dynamic_range: float
    repetition: float

    @classmethod
    def zeros(cls) -> "EvaluationScores":
        return cls(0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class SignalSummary:
    """The measurements the features are computed from (all over the active frames).

    Attributes
    ----------
    loudness_lufs : float
        Integrated loudness, LUFS.
    tempo_bpm : float
        0 when no beat was tracked.
    clarity : float in [0, 1]
        Onset autocorrelation at the beat period.
    regularity : float in [0, 1]
        Share of inter-beat intervals within 5 % of the median.
    onset_rate_hz : float
        Onsets per second.
    onset_peakiness : float
        99th percentile over median of the onset-strength envelope (sharp, percussive
        attacks give large values; legato or noise small ones).
    flux : float in [0, 1]
        Mean spectral flux.
    centroid_hz, rolloff_hz : float
        Mean spectral centroid and 85 % roll-off, Hz.
    log10_flatness : float
        Mean log10 spectral flatness of the mel spectrum.
    level_std_db : float
        Standard deviation of the frame levels, dB.
    signed_mode : float in [-1, 1]
        Mode confidence, + major, - minor, 0 without a key.
    tonality : float in [0, 1]
        The key finder's chroma tonality factor.
    modulation_4hz : float in [0, 1]
        Syllabic-rate share of the 300-3400 Hz band-energy modulation spectrum.
    pause_share : float in [0, 1]
        Share of frames below half the mean power of the surrounding second.
    floor_flatness : float in [0, 1]
        Mel spectral flatness of the quietest 20 % of active frames.
    floor_level_db : float
        Median level of the quietest 20 % of active frames relative to the mean of the
        loudest 10 %, dB (<= 0).
    """

    loudness_lufs: float
    tempo_bpm: float
    clarity: float
    regularity: float
    onset_rate_hz: float
    onset_peakiness: float
    flux: float
    centroid_hz: float
    rolloff_hz: float
    log10_flatness: float
    level_std_db: float
    signed_mode: float
    tonality: float
    modulation_4hz: float
    pause_share: float
    floor_flatness: float
    floor_level_db: float


def audio_features(m: SignalSummary) -> AudioFeatures:
    """The perceptual descriptors of the module docstring."""
    log_centroid = float(np.log2(max(m.centroid_hz, 1.0)))
    if m.tempo_bpm > 0:
        tempo_fit = float(np.exp(-0.5 * (np.log2(m.tempo_bpm / 120.0) / 0.75) ** 2))
        attack = squash(float(np.log(max(m.onset_peakiness, 1e-9))), float(np.log(8.0)), 0.5)
        danceability = tempo_fit * (0.4 * squash(m.clarity, 0.3, 0.08) + 0.3 * m.regularity + 0.3 * attack)
        tempo_term = squash(m.tempo_bpm, 100.0, 20.0)
    else:
        danceability = 0.0
        tempo_term = 0.0
    energy = float(
        np.mean(
            [
                squash(m.loudness_lufs, -20.0, 4.0),
                squash(m.onset_rate_hz, 3.0, 1.2),
                squash(m.flux, 0.12, 0.04),
                squash(log_centroid, float(np.log2(1800.0)), 0.5),
            ]
        )
    )
    valence = 0.4 * (0.5 + 0.5 * m.signed_mode) + 0.3 * tempo_term + 0.3 * squash(log_centroid, float(np.log2(1500.0)), 0.5)
    acousticness = float(
        np.mean(
            [
                squash(m.level_std_db, 5.0, 2.0),
                1.0 - squash(m.rolloff_hz, 4500.0, 1200.0),
                1.0 - squash(m.log10_flatness, -2.0, 0.4),
            ]
        )
    )
    syllabic = squash(m.modulation_4hz, 0.3, 0.06) * squash(m.pause_share, 0.3, 0.08)
    speechiness = syllabic * (0.25 + 0.75 * (1.0 - m.tonality))
    liveness = squash(m.floor_flatness, 0.25, 0.06) * squash(m.floor_level_db, -30.0, 5.0)
    clip = lambda v: float(np.clip(v, 0.0, 1.0))  # noqa: E731
    return AudioFeatures(
        danceability=clip(danceability),
        energy=clip(energy),
        valence=clip(valence),
        acousticness=clip(acousticness),
        instrumentalness=clip(1.0 - syllabic),
        speechiness=clip(speechiness),
        liveness=clip(liveness),
    )


def modulation_4hz(band_energy: np.ndarray, frame_rate_hz: float) -> float:
    """Share of the modulation spectrum of a band-energy envelope between 2.5 and 6 Hz,
    out of 0.5-16 Hz (Welch, 6 s segments); 0 for envelopes shorter than 3 s or constant."""
    from scipy.signal import welch

    x = np.asarray(band_energy, dtype=np.float64)
    if x.size < 3 * frame_rate_hz or x.mean() <= 0:
        return 0.0
    x = x / x.mean() - 1.0
    nper = int(min(x.size, round(6.0 * frame_rate_hz)))
    freqs, psd = welch(x, fs=frame_rate_hz, nperseg=nper)
    total = psd[(freqs >= 0.5) & (freqs <= 16.0)].sum()
    if total <= 0:
        return 0.0
    return float(psd[(freqs >= 2.5) & (freqs <= 6.0)].sum() / total)


def low_energy_share(frame_power: np.ndarray, frame_rate_hz: float) -> float:
    """Share of frames whose power is below half the mean power of the surrounding 1 s
    (Scheirer & Slaney 1997's "percentage of low-energy frames")."""
    from scipy.ndimage import uniform_filter1d

    p = np.asarray(frame_power, dtype=np.float64)
    if p.size < 2:
        return 0.0
    local = uniform_filter1d(p, max(1, int(round(frame_rate_hz))), mode="nearest")
    return float(np.mean(p < 0.5 * local))


def floor_measures(level_db: np.ndarray, mel_flatness: np.ndarray) -> tuple[float, float]:
    """(floor flatness, floor level in dB re the loudest 10 %) over active frames."""
    if level_db.size < 10:
        return 0.0, -60.0
    order = np.argsort(level_db)
    n = level_db.size
    quiet = order[: max(1, n // 5)]
    loud = order[-max(1, n // 10) :]
    loud_db = 10.0 * np.log10(np.mean(10.0 ** (level_db[loud] / 10.0)))
    return float(np.mean(mel_flatness[quiet])), float(min(0.0, np.median(level_db[quiet]) - loud_db))


def rhythmic_stability(clarity: float, beats_s: np.ndarray, salience: np.ndarray) -> float:
    """The rhythmic-stability score of the module docstring; 0 with fewer than 9 beats."""
    if beats_s.size < 9:
        return 0.0
    ibi = np.diff(beats_s)
    local = np.array([np.median(ibi[i : i + 8]) for i in range(0, max(1, ibi.size - 7), 4)])
    cv = float(local.std() / local.mean()) if local.size > 1 and local.mean() > 0 else 0.0
    steadiness = 1.0 - min(1.0, cv / 0.1)
    marked = float(np.mean(salience >= 0.3)) if salience.size else 0.0
    return float(np.clip(min(1.0, clarity / 0.5) * steadiness * marked, 0.0, 1.0))


def tonal_clarity(chroma_frames: np.ndarray, frame_rate_hz: float) -> float:
    """The tonal-clarity score of the module docstring (chroma frames: (12, u))."""
    from musicaas_analyzer.keyfinding import estimate_key

    u = chroma_frames.shape[1]
    if u == 0:
        return 0.0
    win = max(1, int(round(8.0 * frame_rate_hz)))
    hop = max(1, win // 2)
    values, weights = [], []
    for start in range(0, max(1, u - win + 1), hop):
        c = chroma_frames[:, start : start + win].mean(axis=1)
        est = estimate_key(c)
        r1 = float(est.correlations.max()) if est.correlations.size else 0.0
        values.append(max(r1, 0.0) * est.tonality)
        weights.append(float(c.sum()))
    w = np.asarray(weights)
    if w.sum() <= 0:
        return 0.0
    return float(np.clip(np.average(values, weights=w), 0.0, 1.0))


def dynamic_range(loudness_range_lu: float) -> float:
    """``LRA / (LRA + 8 LU)``."""
    lra = max(0.0, float(loudness_range_lu))
    return lra / (lra + 8.0)
