"""Whole-track analysis: tempo, beats, key, loudness and the similarity embedding.

:func:`analyze_bytes` decodes an upload and analyses it as :func:`analyze_signal` analyses
a mono array; both return an :class:`AudioAnalysis`. All features except loudness are computed on a mono signal at
:data:`ANALYSIS_SAMPLE_RATE_HZ` (22050 Hz), so results do not depend on the file's rate.

Pipeline (one pass, one short STFT shared by everything but key finding):

* **STFT**: 2048-point Hann window, hop 512 (93 ms / 23 ms), magnitudes; the spectral
  features use it up to :data:`FMAX_HZ` (10 kHz) only, so that a file's original sample
  rate or codec low-pass does not leak into them.
* **Tempo and beats**: onset strength = mean positive spectral flux of the 128-band mel
  spectrogram in dB (librosa ``onset_strength``); dynamic-programming beat tracking,
  Ellis, D. P. W. (2007), "Beat tracking by dynamic programming", *J. New Music Research*
  36(1), 51-60 (librosa ``beat_track``, tempo prior centred on 120 BPM). The reported tempo
  is then refined from the tracked beats: 60 s over the mean of the inter-beat intervals
  that lie within 10 % of their median (librosa's own estimate is quantised to whole hops,
  about 2 % at 120 BPM). Like any beat tracker it can lock to half or double the notated
  tempo ("octave errors"), most often for slow pieces.
* **Key**: :mod:`musicaas_analyzer.keyfinding` (its own long-window STFT).
* **Loudness**: :mod:`musicaas_analyzer.loudness` (BS.1770-4 integrated, LUFS). For
  :func:`analyze_bytes` it is measured on the file's own channels and sample rate, as a
  loudness meter would; :func:`analyze_signal` measures the signal it is given.
* **Embedding**: :mod:`musicaas_analyzer.embedding`.

**Silence.** Audio is silent when no 400 ms block reaches the BS.1770 absolute gate of
-70 LUFS (digital silence, or near-silence such as dither alone), measured like the
reported loudness (on a file's own channels for :func:`analyze_bytes`), or when its
mono mix is exactly zero (a stereo file whose channels cancel). A silent result has
``is_silent=True``, ``tempo_bpm=0.0``, no beats, ``key=None``, ``key_confidence=0.0``,
the silence embedding (:func:`~musicaas_analyzer.embedding.silence_embedding`) and
``loudness_lufs`` = -70.0 (:data:`~musicaas_analyzer.loudness.LOUDNESS_FLOOR_LUFS`; the
cancelling-stereo case keeps its measured loudness). ``tempo_bpm`` is also 0.0 for a
non-silent signal in which no beat could be tracked.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from musicaas.keys import Key
from musicaas.runtime.errors import InvalidArgument
from musicaas_analyzer import decode as _decode
from musicaas_analyzer import keyfinding
from musicaas_analyzer.embedding import EMBEDDING_DIM, embed, raw_features, silence_embedding
from musicaas_analyzer.loudness import LOUDNESS_FLOOR_LUFS, integrated_loudness

__all__ = [
    "ANALYZER_VERSION",
    "ANALYSIS_SAMPLE_RATE_HZ",
    "EMBEDDING_DIM",
    "AudioAnalysis",
    "analyze_bytes",
    "analyze_signal",
    "warm_up",
]

#: Version of the analysis recipe; bump it when any output for the same audio changes.
ANALYZER_VERSION = "0.1.0"
#: Every feature but loudness is computed at this rate.
ANALYSIS_SAMPLE_RATE_HZ = 22050

N_FFT = 2048
HOP = 512
N_MELS = 128
TOP_DB = 80.0
#: Spectral features ignore everything above this frequency: resamplers (soxr included) and
#: lossy codecs roll the top of the band off differently, and features that looked at the
#: last kHz below the 11025 Hz Nyquist frequency changed with the file's original rate.
FMAX_HZ = 10000.0
#: Magnitudes are floored at this level relative to the frame's peak (-100 dB) before the
#: spectral contrast, so that digitally empty bins do not make it unbounded.
CONTRAST_FLOOR = 1e-5
#: Stride, in onset frames, of the autocorrelation windows behind the global tempo estimate.
TEMPOGRAM_STRIDE = 4
#: Frames more than this far below the loudest frame are left out of the timbre statistics.
ACTIVE_FRAME_DB = 60.0


@dataclass(frozen=True)
class AudioAnalysis:
    """What the analyzer reports about one track.

    Attributes
    ----------
    duration_s : float
        Length of the audio, seconds.
    sample_rate_hz : int
        Sample rate of the audio as given (the file's own rate for :func:`analyze_bytes`);
        features are computed at :data:`ANALYSIS_SAMPLE_RATE_HZ` regardless.
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
    embedding : np.ndarray [shape=(EMBEDDING_DIM,)], float32, read-only
        Unit L2 norm; see :mod:`musicaas_analyzer.embedding`. Equality and hashing of an
        ``AudioAnalysis`` ignore it (numpy arrays have no single truth value).
    analyzer_version : str
    is_silent : bool
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


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=ANALYSIS_SAMPLE_RATE_HZ, n_fft=N_FFT, n_mels=N_MELS, fmax=FMAX_HZ).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _fft_freqs() -> np.ndarray:
    """Frequencies of the STFT bins up to :data:`FMAX_HZ` (the bins the features use)."""
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / ANALYSIS_SAMPLE_RATE_HZ)
    return freqs[freqs <= FMAX_HZ]


def _validate_signal(y: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, (int, np.integer)):
        raise InvalidArgument(f"sample_rate_hz must be an integer number of Hz, got {sample_rate_hz!r}")
    if not _decode.MIN_SAMPLE_RATE_HZ <= sample_rate_hz <= _decode.MAX_SAMPLE_RATE_HZ:
        raise InvalidArgument(
            f"sample rate {sample_rate_hz} Hz is out of range [{_decode.MIN_SAMPLE_RATE_HZ}, "
            f"{_decode.MAX_SAMPLE_RATE_HZ}] Hz"
        )
    if not isinstance(y, np.ndarray):
        raise InvalidArgument(f"audio must be a numpy array, not {type(y).__name__}")
    if y.ndim != 1:
        raise InvalidArgument(f"audio must be mono with shape (n,), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.floating):
        raise InvalidArgument(f"audio must be floating point (full scale 1.0), got dtype {y.dtype}")
    if y.size / sample_rate_hz < _decode.MIN_DURATION_S:
        raise InvalidArgument(
            f"audio too short to analyse: {y.size / sample_rate_hz:.3f} s ({y.size} samples at "
            f"{sample_rate_hz} Hz); at least {_decode.MIN_DURATION_S:g} s is needed"
        )
    finite = np.isfinite(y)
    if not finite.all():
        first = int(np.argmin(finite))
        raise InvalidArgument(
            f"audio holds non-finite samples (NaN or infinity), the first at "
            f"{first / sample_rate_hz:.3f} s"
        )
    return np.ascontiguousarray(y, dtype=np.float32)


def _global_tempo(oenv: np.ndarray) -> float:
    """librosa's global tempo estimate (``librosa.feature.tempo``: mean of the windowed
    onset autocorrelations over 8 s windows, log-normal prior around 120 BPM), with the
    autocorrelation windows taken every :data:`TEMPOGRAM_STRIDE` frames instead of every
    frame. ``beat_track`` computes the per-frame version, which was 40 % of the analysis
    time on long tracks; the mean over a 93 ms stride gave the identical tempo on all 70
    benchmark chorales, at a quarter of the cost."""
    import librosa

    sr = ANALYSIS_SAMPLE_RATE_HZ
    win = int(librosa.time_to_frames(8.0, sr=sr, hop_length=HOP))
    padded = np.pad(oenv, (win // 2, win // 2), mode="linear_ramp", end_values=(0, 0))
    frames = librosa.util.frame(padded, frame_length=win, hop_length=TEMPOGRAM_STRIDE)
    frames = frames[:, : int(np.ceil(oenv.size / TEMPOGRAM_STRIDE))]
    window = np.hanning(win + 1)[:-1][:, None]  # periodic Hann, as librosa's tempogram
    tg = librosa.util.normalize(librosa.autocorrelate(frames * window, axis=0), norm=np.inf, axis=0)
    tg = np.nan_to_num(tg).mean(axis=1, keepdims=True)
    return float(librosa.feature.tempo(sr=sr, hop_length=HOP, tg=tg, aggregate=None)[0])


def _refined_tempo(beat_times: np.ndarray, fallback_bpm: float) -> float:
    if beat_times.size < 4:
        return float(fallback_bpm)
    ibi = np.diff(beat_times)
    median = float(np.median(ibi))
    if median <= 0:
        return float(fallback_bpm)
    steady = ibi[np.abs(ibi - median) <= 0.1 * median]
    return float(60.0 / steady.mean()) if steady.size else float(60.0 / median)


@functools.lru_cache(maxsize=1)
def _low_bins() -> int:
    """Number of STFT bins below 200 Hz."""
    return int(np.searchsorted(_fft_freqs(), 200.0))


@functools.lru_cache(maxsize=1)
def _contrast_bands() -> tuple[tuple[int, int], ...]:
    """STFT bin ranges of the spectral-contrast bands: below 200 Hz, then six octaves from
    200 Hz to 12.8 kHz, the last one cut at :data:`FMAX_HZ`."""
    freqs = _fft_freqs()
    edges = [0.0] + [200.0 * 2**i for i in range(7)]
    bands = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        idx = np.nonzero((freqs >= lo) & (freqs < hi))[0]
        bands.append((int(idx[0]), int(idx[-1]) + 1))
    return tuple(bands)


def _spectral_contrast(S: np.ndarray, quantile: float = 0.02) -> np.ndarray:
    """Octave-band spectral contrast, dB (Jiang et al. 2002): per band and frame, the mean
    of the top ``quantile`` of the magnitudes over the mean of the bottom ``quantile``.
    Uses a partial sort (``np.partition``), which is what makes it cheap."""
    out = np.empty((len(_contrast_bands()), S.shape[1]), dtype=np.float64)
    for i, (lo, hi) in enumerate(_contrast_bands()):
        band = S[lo:hi]
        n = band.shape[0]
        k = max(1, int(round(quantile * n)))
        part = np.partition(band, (k - 1, n - k), axis=0)
        valley = part[:k].mean(axis=0)
        peak = part[n - k :].mean(axis=0)
        out[i] = 20.0 * np.log10(np.maximum(peak, 1e-10) / np.maximum(valley, 1e-10))
    return out


def _rhythm_features(oenv: np.ndarray, beats: np.ndarray, tempo_bpm: float, rms: np.ndarray, duration_s: float) -> np.ndarray:
    import librosa

    frame_rate = ANALYSIS_SAMPLE_RATE_HZ / HOP
    mean = float(oenv.mean())
    centred = oenv - mean
    lo, hi = int(round(0.25 * frame_rate)), int(round(2.0 * frame_rate))
    ac = librosa.autocorrelate(centred, max_size=hi + 1)
    clarity = float(ac[lo : hi + 1].max() / ac[0]) if ac.size > lo and ac[0] > 0 else 0.0
    onsets = librosa.onset.onset_detect(onset_envelope=oenv, sr=ANALYSIS_SAMPLE_RATE_HZ, hop_length=HOP)
    onset_rate = onsets.size / max(duration_s, 1e-9)
    cv = float(oenv.std() / mean) if mean > 0 else 0.0
    salience = float(oenv[beats].mean() / mean) if beats.size and mean > 0 else 1.0
    salience = float(np.log2(max(salience, 1e-3)))
    low_energy = float(np.mean(rms < rms.mean())) if rms.size else 0.0
    log_tempo = float(np.log2(tempo_bpm / 120.0)) if tempo_bpm > 0 else 0.0
    return np.array([log_tempo, clarity, np.log2(onset_rate + 0.5), cv, salience, low_energy])


def _spectral_frames(y: np.ndarray) -> dict[str, np.ndarray | float]:
    """Per-frame spectral summaries of the short STFT, computed block by block
    (:mod:`musicaas_analyzer.spectral`) so that memory stays bounded on long tracks."""
    from musicaas_analyzer.spectral import n_frames, stft_magnitude_blocks

    total = n_frames(y.size, HOP)
    n_band = _fft_freqs().size  # bins up to FMAX_HZ
    n_low = _low_bins()
    mel_basis = _mel_basis()[:, :n_band]  # the mel filters are zero above FMAX_HZ
    freqs = _fft_freqs()
    mel = np.empty((N_MELS, total), dtype=np.float32)
    frame_power = np.empty(total)
    centroid = np.empty(total)
    rolloff = np.empty(total)
    contrast = np.empty((len(_contrast_bands()), total))
    in_band = low = 0.0
    for f0, S in stft_magnitude_blocks(y, n_fft=N_FFT, hop=HOP):
        f1 = f0 + S.shape[1]
        power = np.square(S)
        frame_power[f0:f1] = power.sum(axis=0)
        band = S[:n_band]
        band_power = power[:n_band]
        mel[:, f0:f1] = mel_basis @ band_power
        in_band += float(band_power.sum())
        low += float(band_power[:n_low].sum())
        mag_sum = band.sum(axis=0)
        centroid[f0:f1] = (freqs @ band) / np.maximum(mag_sum, 1e-12)
        cumulative = np.cumsum(band, axis=0)
        rolloff[f0:f1] = freqs[np.argmax(cumulative >= 0.85 * cumulative[-1:], axis=0)]
        floor = CONTRAST_FLOOR * band.max(axis=0, keepdims=True)
        contrast[:, f0:f1] = _spectral_contrast(np.maximum(band, np.maximum(floor, 1e-10)))
    return {
        "mel": mel,
        "frame_power": frame_power,
        "centroid": centroid,
        "rolloff": rolloff,
        "contrast": contrast,
        "low_share_db": 10.0 * np.log10(max(low, 1e-20) / max(in_band, 1e-20)),
    }


def _analyse_mono(y: np.ndarray) -> tuple[float, tuple[float, ...], keyfinding.KeyEstimate, np.ndarray]:
    """Tempo, beats, key estimate and raw (unstandardised) embedding features of non-silent
    mono audio at 22050 Hz."""
    import librosa
    from scipy.fft import dct

    sr = ANALYSIS_SAMPLE_RATE_HZ
    duration_s = y.size / sr
    frames = _spectral_frames(y)
    mel = frames["mel"]
    mel_db = librosa.power_to_db(mel, ref=float(mel.max()) or 1.0, top_db=TOP_DB)

    # Tempo and beats (Ellis 2007).
    oenv = librosa.onset.onset_strength(S=mel_db, sr=sr, hop_length=HOP)
    raw_tempo = _global_tempo(oenv)
    _, beats = librosa.beat.beat_track(onset_envelope=oenv, sr=sr, hop_length=HOP, bpm=raw_tempo, units="frames")
    beats = np.asarray(beats, dtype=np.int64)
    if beats.size < 2:  # one beat or none: no tempo to speak of
        beats = beats[:0]
    beat_times = librosa.frames_to_time(beats, sr=sr, hop_length=HOP)
    keep = (beat_times >= 0) & (beat_times <= duration_s)
    beats, beat_times = beats[keep], beat_times[keep]
    tempo = _refined_tempo(beat_times, raw_tempo) if beat_times.size else 0.0

    # Key.
    chroma_frames, _tuning = keyfinding.chromagram(y, sr)
    key_est = keyfinding.estimate_key(chroma_frames.mean(axis=1))

    # Timbre over the active frames.
    frame_power = frames["frame_power"]
    active = frame_power >= frame_power.max() * 10 ** (-ACTIVE_FRAME_DB / 10)
    if active.sum() < 2:
        active[:] = True
    mfcc = dct(mel_db[:, active], type=2, axis=0, norm="ortho")[1:14]
    mel_active = np.maximum(mel[:, active], 1e-10)
    flatness = np.exp(np.mean(np.log(mel_active), axis=0)) / np.mean(mel_active, axis=0)
    rms = np.sqrt(frame_power / N_FFT)
    rhythm = _rhythm_features(oenv, beats[beats < oenv.size], tempo, rms, duration_s)
    frame_db = 10.0 * np.log10(np.maximum(frame_power[active], 1e-20))

    signed = 0.0
    if key_est.key is not None:
        signed = key_est.confidence * (1.0 if key_est.key.mode == "major" else -1.0)
    raw = raw_features(
        mfcc=mfcc,
        chroma_frames=chroma_frames,
        contrast=frames["contrast"][:, active],
        centroid_hz=frames["centroid"][active],
        rolloff_hz=frames["rolloff"][active],
        mel_flatness=flatness,
        rhythm=rhythm,
        frame_db=frame_db,
        low_share_db=max(float(frames["low_share_db"]), -60.0),
        best_correlation=key_est.best_correlation,
        tonality=key_est.tonality,
        signed_confidence=signed,
    )
    return tempo, tuple(float(t) for t in beat_times), key_est, raw


def _read_only(vec: np.ndarray) -> np.ndarray:
    vec.flags.writeable = False
    return vec


def _analyse(y: np.ndarray, sample_rate_hz: int, loudness_lufs: float) -> AudioAnalysis:
    """Analyse validated mono audio whose loudness has already been measured."""
    duration_s = y.size / sample_rate_hz
    if loudness_lufs <= LOUDNESS_FLOOR_LUFS or not np.any(y):
        return AudioAnalysis(
            duration_s=duration_s,
            sample_rate_hz=sample_rate_hz,
            tempo_bpm=0.0,
            beats_s=(),
            key=None,
            key_confidence=0.0,
            loudness_lufs=max(loudness_lufs, LOUDNESS_FLOOR_LUFS),
            embedding=_read_only(silence_embedding()),
            analyzer_version=ANALYZER_VERSION,
            is_silent=True,
        )
    y22 = _decode.resample(y, sample_rate_hz, ANALYSIS_SAMPLE_RATE_HZ)
    tempo, beats_s, key_est, raw = _analyse_mono(y22)
    return AudioAnalysis(
        duration_s=duration_s,
        sample_rate_hz=sample_rate_hz,
        tempo_bpm=tempo,
        beats_s=beats_s,
        key=key_est.key,
        key_confidence=key_est.confidence if key_est.key is not None else 0.0,
        loudness_lufs=loudness_lufs,
        embedding=_read_only(embed(raw)),
        analyzer_version=ANALYZER_VERSION,
        is_silent=False,
    )


def analyze_signal(y: np.ndarray, *, sample_rate_hz: int) -> AudioAnalysis:
    """Analyse mono audio.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], floating point, full scale 1.0
        Finite samples, at least 0.5 s long.
    sample_rate_hz : int in [4000, 384000], Hz

    Returns
    -------
    AudioAnalysis

    Raises
    ------
    InvalidArgument
        Not a 1-D float array, non-finite samples, shorter than 0.5 s, or a sample rate out
        of range; the message names the value.
    """
    y = _validate_signal(y, sample_rate_hz)
    sample_rate_hz = int(sample_rate_hz)
    return _analyse(y, sample_rate_hz, integrated_loudness(y, sample_rate_hz))


def analyze_bytes(data: bytes, *, filename: str | None = None, max_duration_s: float = 1800.0) -> AudioAnalysis:
    """Decode an uploaded WAV/FLAC/Ogg/MP3 file and analyse it.

    Loudness is measured on the file's own channels and sample rate (a stereo file is
    measured as stereo, per BS.1770); everything else on the mono mix. ``sample_rate_hz``
    in the result is the file's rate.

    Raises
    ------
    InvalidArgument
        See :func:`musicaas_analyzer.decode.decode_native`.
    """
    decoded = _decode.decode_native(data, filename=filename, max_duration_s=max_duration_s)
    rate = decoded.sample_rate_hz
    loudness = integrated_loudness(decoded.samples, rate)
    mono = decoded.mono()
    del decoded  # free the multichannel samples before the features are computed
    return _analyse(_validate_signal(mono, rate), rate, loudness)


def warm_up() -> None:
    """Run one small analysis so that lazy imports and librosa's numba kernels are compiled
    before the first request (the first beat tracking otherwise takes a few seconds)."""
    sr = ANALYSIS_SAMPLE_RATE_HZ
    t = np.arange(2 * sr) / sr
    y = 0.3 * np.sin(2 * np.pi * 440.0 * t) * (np.sin(2 * np.pi * 2.0 * t) > 0)
    analyze_signal(y.astype(np.float32), sample_rate_hz=sr)
