"""The track embedding: a fixed-length, L2-normalised summary for similarity search.

Recipe (:data:`musicaas.embedding.DESCRIPTOR_EMBEDDING_DIM` = 64 float32 values, the length the
recommender's index is sized from), all computed at the 22050 Hz analysis
rate from the one short-window STFT (2048-point Hann, hop 512, bins up to 10 kHz) that beat
tracking uses, plus the key finder's long-window chromagram:

======  ====  =================================================================
dims    n     feature (summarised over the whole track)
======  ====  =================================================================
0-12    13    MFCC 1-13 mean  (128-band mel to 10 kHz, dB re the track's max; c0 dropped)
13-25   13    MFCC 1-13 standard deviation
26-31   6     chroma interval content: magnitudes of DFT coefficients 1-6 of the
              mean chroma (summed to 1); invariant to transposition by construction
32-38   7     spectral contrast mean (below 200 Hz, 6 octave bands to 10 kHz)
39-45   7     spectral contrast standard deviation
46-49   4     log2 spectral centroid mean and std, log2 85 % roll-off mean,
              log10 spectral flatness (of the mel spectrum) mean
50-55   6     rhythm: log2(tempo / 120 BPM), pulse clarity, log2 onset rate,
              onset-strength coefficient of variation, log2 beat salience,
              low-energy frame fraction
56-61   6     texture: harmonic change rate, frame-level dB standard deviation,
              chroma entropy, best key-profile correlation, low-frequency
              (< 200 Hz) energy share in dB, key-finding tonality factor
62      1     signed key confidence: + for major, - for minor
63      1     silence flag: 0 for every non-silent track (see below)
======  ====  =================================================================

Each dimension is standardised with fixed constants (:data:`_CENTRE`, :data:`_SCALE`),
measured once on a mixed reference set (described next to the constants) and rounded, so
that no feature's units dominate, and clipped to +/-:data:`CLIP`; then each group is
weighted (:data:`GROUP_WEIGHTS`) and the vector is L2-normalised. Cosine similarity
(= dot product) is the intended metric.

Invariances, by construction:

* **Gain**: the mel spectrum is in dB relative to the track's own maximum and c0 is
  dropped; spectral contrast, centroid, roll-off and flatness are gain-free.
* **Transposition**: the chroma enters only through transposition-invariant summaries
  (DFT magnitudes, entropy, change rate, profile fit); MFCCs move only slightly under a
  transposition. (Rotating the chroma to the estimated tonic was tried first and
  rejected: relative-key confusions, e.g. E major for C# minor, moved transposed copies
  far apart.)
* **Tempo** enters only through the rhythm block, which carries a small weight, so the same
  piece played faster stays close.

Measured (cosine to a 20 s rendering of chorale BWV 66.6 on strings): the same excerpt
3 semitones up 0.90, 25 % faster 0.98; another chorale on the same instrument 0.81; another
chorale on flute with a drum kit 0.31; white noise 0.23; a click track -0.13. The same audio
given at 44.1, 48 or 96 kHz: 1.00; as a 44.1 kHz MP3 or Ogg Vorbis: 0.95-0.96. Audio whose
bandwidth is below 10 kHz (16 kHz or 8 kHz sample rates, telephone-band codecs) loses part of
the spectral features and lands noticeably elsewhere (0.4-0.55 for the same excerpt).

**Silence** (see :mod:`musicaas_analyzer.analysis`): every feature is undefined, so the
embedding is the unit vector on the silence dimension 63. Silent tracks are therefore
identical to each other and orthogonal (cosine 0) to every non-silent track.

References: MFCC for music, Logan (2000), ISMIR; spectral contrast, Jiang et al. (2002),
ICME; centroid/roll-off/low-energy and rhythm statistics, Tzanetakis & Cook (2002), IEEE
TSAP 10(5); pulse clarity, Lartillot et al. (2008), ISMIR; chroma, Fujishima (1999), ICMC;
DFT of pitch-class distributions, Quinn (2006), "General equal-tempered harmony",
*Perspectives of New Music* 44(2) and 45(1); harmonic change, Harte, Sandler & Gasser
(2006), ACM Audio and Music Computing Multimedia workshop.
"""

from __future__ import annotations

import numpy as np

from musicaas.embedding import DESCRIPTOR_EMBEDDING_DIM

#: Index of the dimension that is 1 for silence and 0 otherwise: the last one.
SILENCE_DIM = DESCRIPTOR_EMBEDDING_DIM - 1

_GROUPS = {
    "mfcc_mean": slice(0, 13),
    "mfcc_std": slice(13, 26),
    "chroma": slice(26, 32),
    "contrast_mean": slice(32, 39),
    "contrast_std": slice(39, 46),
    "spectral": slice(46, 50),
    "rhythm": slice(50, 56),
    "texture": slice(56, 62),
    "tonality": slice(62, 63),
}

#: Weight of each group after standardisation (a group of n unit-variance dims has a
#: typical norm of sqrt(n) before weighting).
GROUP_WEIGHTS = {
    "mfcc_mean": 1.0,
    "mfcc_std": 0.7,
    "chroma": 0.8,
    "contrast_mean": 0.8,
    "contrast_std": 0.5,
    "spectral": 0.8,
    "rhythm": 0.5,
    "texture": 0.6,
    "tonality": 0.5,
}

# Standardisation constants (centre, scale) per dimension 0-62. Measured on a reference set
# of 64 clips: the first 25 s of 56 music21-corpus pieces (Bach chorales, Beethoven, Mozart,
# Haydn, Joplin, Palestrina, Monteverdi, Josquin, trecento, Handel, Schubert, Verdi, Weber,
# C. P. E. Bach, O'Neill's and Aird's fiddle tunes) rendered with musicaas.render with a
# random General MIDI program per track, a third of them with an added drum-kit track, plus
# 20 s of white noise, pink noise, a sine, a triad, three click tracks and noise bursts.
# Centre = median, scale = standard deviation, rounded to two significant figures (the
# tempo and signed-confidence centres set to 0). They only set scales; similarity rankings
# are insensitive to their exact values.
_CENTRE = np.array([
    61.0, -16.0, 8.9, -7.8, -4.2, -2.8, -2.9, -2.0, -4.5, -3.1, -5.2, -3.1, -1.9,  # MFCC mean
    29.0, 14.0, 12.0, 11.0, 9.9, 11.0, 10.0, 12.0, 12.0, 13.0, 12.0, 13.0, 12.0,  # MFCC std
    0.047, 0.046, 0.055, 0.033, 0.11, 0.029,  # chroma DFT
    43.0, 39.0, 48.0, 55.0, 52.0, 56.0, 54.0,  # contrast mean
    13.0, 13.0, 14.0, 13.0, 11.0, 9.0, 8.6,  # contrast std
    11.0, 0.23, 12.0, -1.9,  # spectral
    0.0, 0.73, 2.0, 1.7, 2.5, 0.47,  # rhythm
    0.033, 3.3, 0.99, 0.75, -10.0, 0.6,  # texture
    0.0,  # signed confidence
])
_SCALE = np.array([
    42.0, 25.0, 16.0, 12.0, 9.8, 8.1, 7.7, 11.0, 11.0, 12.0, 12.0, 11.0, 10.0,  # MFCC mean
    15.0, 8.2, 5.9, 5.1, 4.4, 4.8, 4.8, 5.9, 6.4, 6.1, 6.1, 6.9, 6.6,  # MFCC std
    0.12, 0.11, 0.12, 0.1, 0.11, 0.09,  # chroma DFT
    15.0, 16.0, 16.0, 20.0, 20.0, 19.0, 17.0,  # contrast mean
    4.5, 5.5, 6.6, 6.2, 5.0, 3.7, 3.6,  # contrast std
    0.72, 0.17, 0.82, 1.7,  # spectral
    0.24, 0.2, 0.79, 1.1, 0.82, 0.17,  # rhythm
    0.03, 3.8, 0.085, 0.12, 9.7, 0.34,  # texture
    0.32,  # signed confidence
])
#: Standardised values are clipped to +/- this many scale units, so that one extreme
#: feature (a pure tone's spectral contrast, say) cannot dominate the vector.
CLIP = 5.0


def _standardise(raw: np.ndarray) -> np.ndarray:
    return np.clip((raw - _CENTRE) / _SCALE, -CLIP, CLIP)


def raw_features(
    *,
    mfcc: np.ndarray,
    chroma_frames: np.ndarray,
    contrast: np.ndarray,
    centroid_hz: np.ndarray,
    rolloff_hz: np.ndarray,
    mel_flatness: np.ndarray,
    rhythm: np.ndarray,
    frame_db: np.ndarray,
    low_share_db: float,
    best_correlation: float,
    tonality: float,
    signed_confidence: float,
) -> np.ndarray:
    """Assemble the 63 unstandardised feature values (dims 0-62).

    Parameters
    ----------
    mfcc : np.ndarray [shape=(13, t)]
        MFCC 1-13 per frame.
    chroma_frames : np.ndarray [shape=(12, u)], >= 0
        Chromagram (index 0 = C).
    contrast : np.ndarray [shape=(7, t)]
        Spectral contrast per frame, dB.
    centroid_hz, rolloff_hz, mel_flatness : np.ndarray [shape=(t,)]
        Per-frame spectral centroid (Hz), 85 % roll-off (Hz) and mel-spectrum flatness (0..1).
    rhythm : np.ndarray [shape=(6,)]
        See the module docstring, dims 50-55.
    frame_db : np.ndarray [shape=(t,)]
        Per-frame level, dB (any reference).
    low_share_db : float
        Energy below 200 Hz over total energy, dB.
    best_correlation, tonality, signed_confidence : float
        From the key finder: best profile correlation, tonality factor (0..1), and the key
        confidence signed by mode (+ major, - minor).
    """
    eps = 1e-12
    mean_chroma = chroma_frames.mean(axis=1) if chroma_frames.shape[1] else np.zeros(12)
    total = float(mean_chroma.sum())
    c = mean_chroma / total if total > 0 else np.full(12, 1.0 / 12)
    dft = np.abs(np.fft.rfft(c))[1:7]
    entropy = float(-np.sum(c * np.log(np.maximum(c, eps))) / np.log(12))
    if chroma_frames.shape[1] >= 2:
        norms = np.linalg.norm(chroma_frames, axis=0)
        live = norms > 1e-3 * max(float(norms.max()), eps)
        unit = chroma_frames[:, live] / norms[live]
        change = float(np.mean(1.0 - np.sum(unit[:, 1:] * unit[:, :-1], axis=0))) if unit.shape[1] >= 2 else 0.0
    else:
        change = 0.0
    log_centroid = np.log2(np.maximum(centroid_hz, 1.0))
    spectral = [
        log_centroid.mean(),
        log_centroid.std(),
        np.log2(np.maximum(rolloff_hz, 1.0)).mean(),
        np.log10(np.maximum(mel_flatness, 1e-10)).mean(),
    ]
    texture = [change, float(np.std(frame_db)), entropy, best_correlation, low_share_db, tonality]
    return np.concatenate(
        [
            mfcc.mean(axis=1),
            mfcc.std(axis=1),
            dft,
            contrast.mean(axis=1),
            contrast.std(axis=1),
            spectral,
            np.asarray(rhythm, dtype=np.float64),
            texture,
            [signed_confidence],
        ]
    ).astype(np.float64)


def embed(raw: np.ndarray) -> np.ndarray:
    """Standardise, weight and L2-normalise 63 raw feature values into an embedding.

    Returns
    -------
    np.ndarray [shape=(DESCRIPTOR_EMBEDDING_DIM,)], float32, unit L2 norm, dimension 63 = 0.
    """
    z = _standardise(np.asarray(raw, dtype=np.float64))
    z = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
    for name, sl in _GROUPS.items():
        z[sl] *= GROUP_WEIGHTS[name]
    vec = np.zeros(DESCRIPTOR_EMBEDDING_DIM)
    vec[:SILENCE_DIM] = z
    norm = float(np.linalg.norm(vec))
    if norm == 0.0:  # every feature exactly at its centre: practically impossible
        vec[0] = 1.0
        norm = 1.0
    return (vec / norm).astype(np.float32)


def silence_embedding() -> np.ndarray:
    """The embedding of silence: the unit vector on :data:`SILENCE_DIM`."""
    vec = np.zeros(DESCRIPTOR_EMBEDDING_DIM, dtype=np.float32)
    vec[SILENCE_DIM] = 1.0
    return vec
