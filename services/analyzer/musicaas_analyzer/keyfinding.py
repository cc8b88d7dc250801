"""Key and mode estimation from audio: a cheap semitone chroma, a key model fitted on the
benchmark's development renders, and a calibrated confidence.

Two estimators share the front end:

* :func:`estimate_key_frames` (the analyzer's audio key, global and per section): the
  **key model** below, on :class:`KeyFrames`.
* :func:`estimate_key` (symbolic pitch-class durations in ``midi.py``, the tonal-clarity
  score, and the ``correlations`` / ``tonality`` fields of every estimate): the
  Krumhansl-Schmuckler correlation with key profiles (Krumhansl 1990, applied to an audio
  chroma as in Gomez 2006), unchanged.

Front end (:func:`key_frames`):

1. **Semitone spectrogram.** One long-window STFT (8192-point Hann window, hop 4096, at
   the 22050 Hz analysis rate: 2.7 Hz bins, 186 ms hop), separate from the short STFT used
   for beats and timbre because key finding needs frequency resolution, not time
   resolution. Bin frequencies are mapped to MIDI pitch after a global tuning correction,
   and each semitone from C2 (65 Hz) to C7 (2093 Hz) takes the **maximum** magnitude of
   the bins within +/-0.5 semitone (max pooling keeps each semitone's harmonic peak and
   makes every octave count equally, which summing linear bins would not).
2. **Tuning.** The deviation of the spectral peaks (parabolically interpolated) from
   equal temperament, as a magnitude-weighted circular mean, in semitones (A4 = 440 Hz
   plus that offset). On the 776 keyed development renders (detuned by up to +/-20 cents)
   it recovers the detune with a median error of 2.4 cents (90th percentile 8.3, max 26).
3. **Chroma.** Square-root compression of the magnitudes, folded into 12 pitch classes:
   all semitones (``chroma``), the bass register C2-B3 (``bass``), the middle C4-B4 and the
   high register C5-C7.
4. **Model inputs per frame** (``KeyFrames.features``): those four chromas divided by the
   frame's full-chroma norm (so loud passages do not outvote soft ones), and the frame's
   best triad as a one-hot over 12 major and 12 minor roots (the triad template with the
   highest correlation with the frame's centred chroma; chord context as a key cue: Mauch &
   Dixon 2010). Frames quieter than ``ACTIVE_FRAME_SHARE`` (-40 dB) of the loudest do not vote.

**Key model.** The frame inputs are averaged over the piece (or a section) (and, when
``KEY_OPENING_FRAMES`` > 0, separately over its first that many active frames: see *Opening
channels* below; :func:`key_model_inputs`), each of the six channels is centred and scaled to
unit norm, and each of the 24 keys gets the score
``sum_c sum_d W[mode, c, d] * f[c, (tonic + d) % 12]`` (+ a minor bias): a linear model
that is transposition-equivariant by construction, so 2 x 6 x 12 weights serve all keys.
With ``W`` = the Albrecht & Shanahan (2013) profiles on the full and (half) the bass chroma it
is exactly the previous estimator (Pearson correlation with the profiles plus the bass
correlation at half weight); the weights are instead fitted by multinomial logistic
regression over the 24 rotations on the development renders (``bench/tune_key.py``), with the
L2 penalty pulling toward those profiles rather than toward zero, on excerpts (first and
last two thirds, first and middle halves) rather than whole items, so the model does not lean
on the final tonic chord the benchmark's pieces share by selection. The fit learns what the
correlation got wrong: the third harmonic of every note (a fifth above it) and the dominant
chords inflate the dominant's pitch class, which made the profile correlation name the key a
fifth above in about half of its misses; the fitted weights discount it. Measured by 5-fold
cross-validation split by piece on the 776 keyed development items (``python
bench/tune_key.py``): exact 0.710 -> 0.910, MIREX weighted 0.802 -> 0.929, fifth-above
errors 109 -> 15, relative 43 -> 19, every ensemble family at 0.87 exact or more (reeds
0.581 -> 0.892, brass 0.579 -> 0.874). The constants now in this file are the same
command's fit on the development cache v2, where a third of the renders have a drum kit
(``bench/analysis_eval/devcache.py``): the grid then chose L2 0.001, prior scale 8 and minor
shift 0.6, and the cross-validated figures are exact 0.683 -> 0.890, MIREX weighted 0.776 ->
0.912, ECE 0.018 (drums cost both the baseline and the model about two points). Removing
a broadband spectral floor before the chroma (per frame, the running mean of the running
minimum over 40 Hz of bins, subtracted) was measured against the drums and not adopted: at
fixed L2 0.001 and prior scale 8 it gave 0.923 weighted / 0.903 exact (floors of 30 / 56 Hz:
0.917 / 0.901), but with the grid's own choice of L2 and scale 0.913 / 0.889, so the gain is
within the procedure's noise.

**Opening channels (measured, not enabled: KEY_OPENING_FRAMES = 0).** The same six channels
averaged over the first N active frames of the selection (the opening chord, which in tonal
music usually states the key), as six more model channels, fitted the same way (each training
excerpt with its own opening; two of the four CROPS start where the item does, two mid-piece).
``python bench/tune_key.py --opening 0 3 8 --repeats 3`` chooses N = 3 (0.56 s), L2 0.001,
prior scale 8, minor shift 1.2: exact 0.939, MIREX weighted 0.950 (symmetric fifths 0.959),
ECE 0.013, every family at 0.90 exact or more (choir 0.904, chromatic percussion 0.905, synth
pad 0.922, guitar 0.925, reeds 0.935, brass 0.937, pipes 0.947, strings 0.957, piano 0.969,
organ 0.981), section thirds with the 0.9 prior 95 % exact (91 % without), no extra time.
Exploratory runs (mean of 5 fold assignments, L2 3e-3 toward 4 x the profiles, minor shift
0.7) put 3, 5, 8, 11, 16, 22 opening frames (0.56 to 4.1 s) at 0.950, 0.947, 0.946, 0.940,
0.928, 0.925 exact, against 0.911 without. Why it is off: it is a cue of where the music
starts. On items cut to start at 1/3 (1/2) of their length it gives 0.829 against 0.825
exact at the same settings without the opening (0.777 against 0.803), so an excerpt starting mid-phrase loses up to ~2.5 points; and a
minor-key piece that opens on its relative major is pulled there: Bach's BWV 66.6 (F# minor,
first chord A major) then reads A major (0.74) in the first 20 s, which fails
``test_analyzer_features.py::test_sections_find_a_change_of_material_and_measure_it``.
Enabling it is a product decision: ``python bench/tune_key.py --opening 0 3 8 --repeats 3
--write``.

A harmonic-aware salience (note activations by non-negative least squares with
geometrically decaying harmonic templates, ``0.8**(h - 1)`` for 8 partials, Mauch & Dixon
2010 "NNLS chroma", solved for all frames by multiplicative updates) was measured too
(``bench/tune_key.py --nnls``): with the profile correlation it raises the exact share from
0.710 to 0.825, but with the fitted model it adds nothing (whole-item fits: 0.909 pooled,
0.892 NNLS alone, 0.910 both) and costs about 8 ms per 40 s item, so the cheaper pooled
chroma stays.

**Confidence** of :func:`estimate_key_frames` is a calibrated probability that the key is
exactly right: the softmax of the 24 scores divided by ``KEY_TEMPERATURE`` (fitted by
minimum negative log-likelihood; temperature scaling, Guo et al. 2017), times a ramp from 0 at
chroma cv ``CV_NOISE`` to 1 at ``CV_CONFIDENT`` that only damps near-noise signals.
Cross-validated expected calibration error (10 equal-width bins) 0.016, against 0.379 for the
previous heuristic (margin x tonality, which was not a probability). **Mode confidence** is
the summed probability of the chosen mode's 12 keys. **Sections** (``prior_key``): the
section's probabilities times a prior of ``SECTION_PRIOR`` on the piece's global key, so a
one-key piece keeps its key in every section and a section leaves it only on clear evidence.

When the tonality factor is 0 (cv <= 0.1: noise, unpitched percussion, silence) no key
is reported (``key=None``, confidence 0).

Profile correlation (:func:`estimate_key`). Pearson correlation of the chroma with the 24
rotations of the Albrecht & Shanahan (2013) major and minor profiles, averaged with half the
weight with the same correlation for the bass chroma (the bass line dwells on the tonic and
dominant: Mauch & Dixon 2010). On ``bench/analyzer_accuracy.py`` the bass term raised the MIREX
weighted score from 0.881 to 0.907 on the default chorales (where its weight was chosen) and
from 0.921 to 0.949 on others (``--offset 2``). Profile choice, by measurement on Bach chorales
from the music21 corpus rendered with the project's General MIDI renderer (every 6th chorale,
70 pieces): Albrecht & Shanahan 0.81 exact (MIREX weighted 0.84), Temperley (1999) 0.66 (0.72),
Krumhansl & Kessler (1982) 0.59 (0.72); the same correlation on the chorales' *symbolic*
pitch-class durations scores 0.80. ``bench/key_accuracy.py`` reproduces the comparison.
Its **confidence** (0..1) is the product of *margin*, ``max(r1, 0) * min(1, (r1 - r2) / 0.2)``
(best and runner-up correlations), and *tonality*, ``clip((cv - 0.1) / (0.3 - 0.1), 0, 1)``
where ``cv`` is the coefficient of variation (std / mean) of the 12 mean-chroma values (white
or pink noise, clicks and noise bursts 0.05-0.09; rendered chorales 0.18-0.35). Its **mode
confidence** is the tonality factor times ``min(1, |rM - rm| / 0.2)`` (best major and best
minor correlations).

References:

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
* Mauch, M. & Dixon, S. (2010). Approximate note transcription for the improved
  identification of difficult chords. *ISMIR 2010* (NNLS chroma); and Simultaneous
  estimation of chords and musical context from audio. *IEEE TASLP* 18(6), 1280-1289.
* Guo, C., Pleiss, G., Sun, Y. & Weinberger, K. Q. (2017). On calibration of modern neural
  networks. *ICML 2017* (temperature scaling).
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
MIDI_LOW = 36  # C2 (a C: the register folds in key_frames_from_stft rely on it)
MIDI_HIGH = 96  # C7
#: The bass chroma holds the semitones below this MIDI note (C4).
BASS_BELOW_MIDI = 60
#: Weight of the bass chroma's profile correlation next to the full chroma's.
BASS_WEIGHT = 0.5
#: The high register of the key model's inputs starts at this MIDI note (C5); the middle
#: register is BASS_BELOW_MIDI..HIGH_FROM_MIDI - 1 (C4-B4).
HIGH_FROM_MIDI = 72
#: Frames whose chroma norm is below this share of the loudest frame's (-40 dB) do not vote.
#: Chosen on the development cache by 5-fold cross-validation by piece in exploratory runs
#: before bench/tune_key.py took its final form (whole-item fits, L2 toward 0): 0.01 gave
#: 0.905 exact against 0.901 for no gate and 0.899 / 0.894 for 0.03 / 0.1.
ACTIVE_FRAME_SHARE = 0.01
#: Per-frame input channels of the key model, in the order of KeyFrames.features. The model
#: sees them twice (:func:`key_model_inputs`): averaged over the whole selection, and averaged
#: over its opening (the first KEY_OPENING_FRAMES active frames), so KEY_MODEL_WEIGHTS has
#: 2 x len(MODEL_CHANNELS) channels when KEY_OPENING_FRAMES > 0.
MODEL_CHANNELS = ("full", "bass", "middle", "high", "major triads", "minor triads")

# <key-model>  (written by ``python bench/tune_key.py --write``; do not edit by hand)
# KEY_MODEL_WEIGHTS[mode][channel][degree]: weight of pitch class tonic + degree in each input
# channel (key_model_inputs order: MODEL_CHANNELS over the selection, then the same over its
# first KEY_OPENING_FRAMES active frames) for a major (0) or minor (1) key; KEY_MODEL_MINOR_BIAS
# is added to the minor keys' scores and KEY_TEMPERATURE divides the scores before the softmax.
# Fitted by multinomial logistic regression over the 24 rotations (L2 penalty KEY_MODEL_L2
# toward KEY_MODEL_PRIOR_SCALE times the Albrecht-Shanahan profiles on the full chroma and half
# that on the bass chroma, i.e. toward the previous estimator; KEY_OPENING_FRAMES, the penalty
# and the scale chosen jointly by the mean exact share of 1 repetition(s) of 5-fold
# cross-validation by piece over the grid --opening 0 x --l2 x --prior-scale) on excerpts
# (tune_key.CROPS, each with its own opening) of all 776
# keyed items of the development cache; KEY_MODEL_MINOR_SHIFT (added into the minor bias)
# maximises the cross-validated mean of major-key and minor-key exactness (same folds; the dev part is
# 81 % major); the temperature minimises the negative log-likelihood of the whole items'
# scores (the procedure whose cross-validated calibration the tuning script reports).
KEY_OPENING_FRAMES = 0
KEY_MODEL_L2 = 0.001
KEY_MODEL_PRIOR_SCALE = 8.0
KEY_MODEL_MINOR_SHIFT = 0.6
KEY_MODEL_WEIGHTS = np.array((
    (
        (+4.5402, -2.5374, +1.8083, -2.1840, +2.1689, +0.2260, -2.7780, +4.6435, -2.5199, -0.6431, -3.0554, +0.3310),
        (+0.0891, -0.6030, +0.3652, -0.3508, +0.4594, +0.1428, -0.6548, +0.6290, -1.0047, +1.3254, -0.4664, +0.0688),
        (+0.6178, -0.3549, +0.4554, -0.3362, +0.3634, -0.4576, -0.4519, +0.9921, +0.4835, +0.0119, -1.4315, +0.1080),
        (-1.0549, -0.2737, +0.7786, -0.1269, +0.1051, -0.1625, +0.3354, +0.2233, +0.1134, +0.0347, -0.1891, +0.2166),
        (+0.7587, -0.6063, +0.5800, +0.7876, +1.0173, -0.2876, -0.8531, +0.6009, -0.5030, -0.3316, -1.3234, +0.1604),
        (+0.0937, -0.7763, +0.2882, +0.5453, +0.5682, -0.2902, -0.4608, +0.0913, +0.1057, +0.0219, +0.1075, -0.2945),
    ),
    (
        (+4.2589, -3.7437, +1.1805, +1.2907, -2.3216, +0.8870, -2.9440, +4.3472, -1.1369, -1.6983, +0.2111, -0.3309),
        (+1.9062, -1.4699, +0.2029, +0.5009, -0.6159, +0.7038, -1.4751, +2.1031, -0.3721, -0.8113, +0.0664, -0.7389),
        (+0.6426, -1.3718, +0.9204, +0.2180, -0.2274, -0.0794, -1.0165, +1.0203, +0.3835, -1.0005, +0.3972, +0.1138),
        (-0.5422, -0.6743, +0.1562, -0.1185, -0.4742, +0.5616, -0.2437, +0.1402, -0.8901, +0.6598, +0.8442, +0.5808),
        (+0.1509, -0.0833, -0.1722, +0.8804, -0.3699, -0.8570, +0.1689, +1.0316, -0.7822, -0.5495, +0.8596, -0.2773),
        (+1.5492, -0.0351, -0.6185, -0.5518, -0.5095, +1.5075, +0.4694, -0.4663, -0.2912, -0.3026, -0.7621, +0.0108),
    ),
))
KEY_MODEL_MINOR_BIAS = -2.5686
KEY_TEMPERATURE = 0.6755
# </key-model>

#: Cv (see tonality) at which the audio key confidence reaches the model probability; from
#: CV_NOISE (no key) to here it ramps linearly. About the 1st percentile of the development
#: renders' cv (0.143), so it only damps near-noise signals.
CV_CONFIDENT = 0.15
#: Prior probability that a section is in the piece's global key (:func:`estimate_key_frames`
#: with ``prior_key``); the other 23 keys share the rest. A design choice (the development
#: part has no section key references), checked by ``bench/tune_key.py`` on thirds of the
#: held-back fold's items: without the prior 79 % of thirds agree with the global estimate
#: (78 % exactly right against the piece's key), with 0.5 94 % (89 %), with 0.9 97 % (91 %),
#: with 0.97 99 % (92 %). 0.9 still lets a section with clear evidence (odds above 207:1)
#: take another key.
SECTION_PRIOR = 0.9


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
    probabilities : np.ndarray [shape=(24,)] or None
        Audio key model only (:func:`estimate_key_frames`): the calibrated probability of
        each key, Key.index order. ``confidence`` is then the chosen key's probability (times
        the near-noise ramp), an estimate of the chance that the key is exactly right.
    mode_probability : float or None
        Audio key model only: the summed probability of the chosen key's mode.
    """

    key: Key | None
    confidence: float
    correlations: np.ndarray
    tonality: float = 0.0
    probabilities: np.ndarray | None = None
    mode_probability: float | None = None

    @property
    def best_correlation(self) -> float:
        return float(self.correlations.max())

    @property
    def mode_confidence(self) -> float:
        """Confidence of the mode alone, 0..1. From the audio key model: the probability that
        the mode is right (``mode_probability``). Otherwise the tonality factor times
        ``min(1, |best major r - best minor r| / MODE_MARGIN_FULL)``. Low when the relative
        (or parallel) key fits almost as well in the other mode; 0 without a key."""
        if self.key is None or self.correlations.size != 24:
            return 0.0
        if self.mode_probability is not None:
            return float(np.clip(self.mode_probability, 0.0, 1.0))
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


@dataclass(frozen=True)
class KeyFrames:
    """Per-frame key evidence of one signal (:func:`key_frames`); frames are the long-window
    STFT's (hop ``N_FFT // 2``: 186 ms at 22050 Hz).

    Attributes
    ----------
    chroma, bass : np.ndarray [shape=(12, t)], float64, >= 0
        The square-root max-pooled semitone chroma of all semitones / of the bass register
        (C2 to B3), not normalised (the pooling of :func:`chromagram`).
    features : np.ndarray [shape=(len(MODEL_CHANNELS), 12, t)]
        The key model's per-frame inputs: the full, bass, middle (C4-B4) and high (C5-C7)
        register chromas divided by the frame's full-chroma norm, and the one-hot best triad
        of the frame (major roots, minor roots).
    weight : np.ndarray [shape=(t,)]
        1 for frames whose chroma norm reaches ``ACTIVE_FRAME_SHARE`` of the loudest frame's,
        else 0 (silence and fades do not vote).
    tuning : float, semitones
    """

    chroma: np.ndarray
    bass: np.ndarray
    features: np.ndarray
    weight: np.ndarray
    tuning: float


@functools.lru_cache(maxsize=1)
def _triad_matrix() -> np.ndarray:
    """(24, 12) centred unit-norm major (rows 0-11) and minor (12-23) triad templates."""
    t = np.zeros((24, 12))
    for root in range(12):
        t[root, [root, (root + 4) % 12, (root + 7) % 12]] = 1.0
        t[12 + root, [root, (root + 3) % 12, (root + 7) % 12]] = 1.0
    t -= t.mean(axis=1, keepdims=True)
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def key_frames_from_stft(S: np.ndarray, sample_rate_hz: int, n_fft: int) -> KeyFrames:
    """:class:`KeyFrames` from long-window STFT magnitudes ``S`` (bins from 0 Hz, at least
    up to C7 plus a semitone; shape (bins, t))."""
    S = np.asarray(S, dtype=np.float32)
    tuning = estimate_tuning(S, sample_rate_hz, n_fft)
    starts, ends, _pitches = _semitone_groups(sample_rate_hz, n_fft, int(round(tuning * 100)))
    t = S.shape[1]
    if t == 0:
        z = np.zeros((12, 0))
        return KeyFrames(z, z, np.zeros((len(MODEL_CHANNELS), 12, 0)), np.zeros(0), tuning)
    # Max over each semitone's bins; the groups are contiguous and ordered, so one
    # reduceat over interleaved (start, end) bounds does it; odd results are discarded.
    bounds = np.empty(2 * len(starts), dtype=np.int64)
    bounds[0::2], bounds[1::2] = starts, ends
    np.clip(bounds, 0, S.shape[0] - 1, out=bounds)
    pooled = np.sqrt(np.maximum.reduceat(S, bounds, axis=0)[0::2].astype(np.float64))
    # The semitones MIDI_LOW..MIDI_HIGH are consecutive from a C, so each register folds into
    # pitch classes by a reshape (whole octaves) plus the remainder.
    regs = np.zeros((4, 12, t))
    for r, (lo, hi) in enumerate(((MIDI_LOW, MIDI_HIGH + 1), (MIDI_LOW, BASS_BELOW_MIDI),
                                  (BASS_BELOW_MIDI, HIGH_FROM_MIDI), (HIGH_FROM_MIDI, MIDI_HIGH + 1))):
        block = pooled[lo - MIDI_LOW:hi - MIDI_LOW]
        whole = 12 * (len(block) // 12)
        regs[r] = block[:whole].reshape(-1, 12, t).sum(axis=0)
        regs[r, : len(block) - whole] += block[whole:]
    chroma, bass = regs[0].copy(), regs[1].copy()
    norm = np.linalg.norm(chroma, axis=0)
    weight = (norm > ACTIVE_FRAME_SHARE * norm.max()).astype(np.float64) if norm.max() > 0 else np.zeros(t)
    regs /= np.maximum(norm, 1e-12)
    centred = chroma - chroma.mean(axis=0, keepdims=True)
    best = np.argmax(_triad_matrix() @ centred, axis=0)
    chords = np.zeros((24, t))
    chords[best, np.arange(t)] = 1.0
    features = np.concatenate([regs, chords.reshape(2, 12, t)])
    return KeyFrames(chroma, bass, features, weight, tuning)


def key_frames(y: np.ndarray, sample_rate_hz: int) -> KeyFrames:
    """The long-window STFT of ``y`` and its :class:`KeyFrames` (see the module docstring)."""
    from musicaas_analyzer.spectral import stft_magnitude_blocks

    n_fft = N_FFT if sample_rate_hz <= 24000 else int(2 ** np.ceil(np.log2(N_FFT * sample_rate_hz / 22050)))
    hop = n_fft // 2
    # Only bins below MIDI_HIGH + 1 semitone (plus the tuning margin) are ever used.
    top_hz = 440.0 * 2 ** ((MIDI_HIGH + 1.5 - 69) / 12)
    max_bin = min(1 + n_fft // 2, int(np.ceil(top_hz * n_fft / sample_rate_hz)) + 2)
    blocks = [mag for _, mag in stft_magnitude_blocks(np.asarray(y, dtype=np.float32), n_fft=n_fft, hop=hop, max_bin=max_bin)]
    S = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    return key_frames_from_stft(S, sample_rate_hz, n_fft)


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
    kf = key_frames(y, sample_rate_hz)
    return kf.chroma, kf.tuning


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


def key_model_inputs(features: np.ndarray, weight: np.ndarray, opening: int | None = None) -> np.ndarray:
    """The key model's inputs, shape (channels, 12): per-frame ``features`` (shape
    (len(MODEL_CHANNELS), 12, t), :attr:`KeyFrames.features` of the selected frames) averaged
    with the frame weights ``weight`` (t,) (0/1: the active selected frames), followed, when
    ``opening`` (default KEY_OPENING_FRAMES) is positive, by the same channels averaged over
    the first ``opening`` active frames only (the opening of the selection)."""
    opening = KEY_OPENING_FRAMES if opening is None else int(opening)
    w = np.asarray(weight, dtype=np.float64)
    mean = (features * w).sum(axis=2) / max(float(w.sum()), 1e-12)
    if opening <= 0:
        return mean
    wo = w * (np.cumsum(w) <= opening)
    head = (features * wo).sum(axis=2) / max(float(wo.sum()), 1e-12)
    return np.concatenate([mean, head])


def key_model_scores(mean_features: np.ndarray) -> np.ndarray:
    """The key model's 24 scores (logits before the temperature) for its inputs
    (:func:`key_model_inputs`, shape (channels, 12)): each channel centred and scaled to
    unit norm (a flat channel stays 0), then ``score(tonic t, mode m) = sum over channels c
    and degrees d of KEY_MODEL_WEIGHTS[m, c, d] * f[c, (t + d) % 12]``, plus
    KEY_MODEL_MINOR_BIAS for minor keys. Transposition-equivariant by construction."""
    f = np.asarray(mean_features, dtype=np.float64)
    f = f - f.mean(axis=1, keepdims=True)
    n = np.linalg.norm(f, axis=1, keepdims=True)
    f = f / np.where(n > 0, n, 1.0)
    # rolled[t, c, d] = f[c, (t + d) % 12]
    idx = (np.arange(12)[:, None] + np.arange(12)[None, :]) % 12
    rolled = f[:, idx].transpose(1, 0, 2)
    scores = np.einsum("tcd,mcd->mt", rolled, KEY_MODEL_WEIGHTS)
    scores[1] += KEY_MODEL_MINOR_BIAS
    return scores.reshape(24)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def estimate_key_frames(
    frames: KeyFrames, select: np.ndarray | None = None, *, prior_key: Key | None = None
) -> KeyEstimate:
    """Key, calibrated confidence and mode probability of audio (the whole of ``frames`` or
    the frames where the boolean mask ``select`` is true), by the key model of the module
    docstring.

    ``prior_key``: for a section of a piece whose global key is known, the section's key
    posterior is the model's probabilities times a prior giving ``SECTION_PRIOR`` to
    ``prior_key`` and the rest evenly to the other 23 keys, so a section leaves the global
    key only when its own evidence favours another key by more than the prior odds
    (0.9 / (0.1 / 23) = 207 to 1).

    ``correlations`` and ``tonality`` are :func:`estimate_key`'s (Albrecht-Shanahan + bass
    correlations of the mean chroma, chroma cv), kept for the descriptors that use them; no
    key (None, confidence 0) when the tonality factor is 0.
    """
    sel = np.ones(frames.weight.shape, dtype=bool) if select is None else np.asarray(select, dtype=bool)
    if not sel.any():
        return estimate_key(np.zeros(12))
    chroma = frames.chroma[:, sel].mean(axis=1)
    base = estimate_key(chroma, bass=frames.bass[:, sel].mean(axis=1))
    w = frames.weight[sel]
    if base.key is None or w.sum() <= 0:
        return KeyEstimate(None, 0.0, base.correlations, 0.0)
    scores = key_model_scores(key_model_inputs(frames.features[:, :, sel], w))
    probs = _softmax(scores / KEY_TEMPERATURE)
    if prior_key is not None:
        prior = np.full(24, (1.0 - SECTION_PRIOR) / 23.0)
        prior[prior_key.index] = SECTION_PRIOR
        probs = probs * prior
        probs /= probs.sum()
    best = int(np.argmax(probs))
    mean = chroma.mean()
    cv = float(np.sqrt(np.mean((chroma - mean) ** 2)) / mean)
    ramp = float(np.clip((cv - CV_NOISE) / (CV_CONFIDENT - CV_NOISE), 0.0, 1.0))
    mode_p = float(probs[:12].sum() if best < 12 else probs[12:].sum())
    return KeyEstimate(
        Key.from_index(best),
        float(np.clip(probs[best] * ramp, 0.0, 1.0)),
        base.correlations,
        base.tonality,
        probabilities=probs,
        mode_probability=float(np.clip(mode_p * ramp, 0.0, 1.0)),
    )
