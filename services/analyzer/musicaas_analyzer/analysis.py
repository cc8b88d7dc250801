"""Whole-track analysis: the audio features, the audio-analysis tree and the embedding.

:func:`analyze_bytes` decodes an upload (or hands a Standard MIDI File to
:func:`analyze_midi`, which reads its notes with :mod:`musicaas_analyzer.midi` and analyses
its rendering) and analyses it as :func:`analyze_signal` analyses a mono array;
:func:`analyze_file` does the same with an upload in a file, decoded from the file block by
block (the same result as :func:`analyze_bytes` on the file's bytes, without holding
them); all return an :class:`~musicaas_analyzer.results.AudioAnalysis`. All features
except loudness are computed on a mono signal at :data:`ANALYSIS_SAMPLE_RATE_HZ`
(22050 Hz), so results do not depend on the file's rate.

Pipeline (one pass over one short STFT shared by everything but key finding):

* **STFT**: 2048-point Hann window, hop 512 (93 ms / 23 ms), magnitudes, walked in blocks
  (:mod:`musicaas_analyzer.spectral`) so that memory stays bounded; the spectral features
  use it up to :data:`FMAX_HZ` (10 kHz) only, so that a file's original sample rate or
  codec low-pass does not leak into them. Per frame: the 128-band mel spectrum, power,
  centroid, 85 % roll-off, octave-band contrast, a 12-bin chroma (librosa's chroma filter
  bank) and the spectral flux.
* **Tempo, beats, metre, bars, tatums**: :mod:`musicaas_analyzer.rhythm` on the onset
  strength (mean positive flux of the mel spectrum in dB, librosa ``onset_strength``).
* **Key and mode**: :mod:`musicaas_analyzer.keyfinding` (its own long-window STFT).
* **Loudness**: :mod:`musicaas_analyzer.loudness` (BS.1770-4 integrated, LUFS; EBU Tech
  3342 loudness range). For :func:`analyze_bytes` it is measured on the file's own
  channels and sample rate, as a loudness meter would; :func:`analyze_signal` measures the
  signal it is given. Section loudness comes from the same measurement.
* **Audio features and evaluation scores**: :mod:`musicaas_analyzer.descriptors`
  (documented heuristics in [0, 1], not trained models).
* **Segments and sections**: :mod:`musicaas_analyzer.structure` (only with
  ``detail=True``, the default).
* **Descriptor embedding**: :mod:`musicaas_analyzer.embedding` (unchanged recipe, 64
  dimensions; ``descriptor_embedding`` on the wire).
* **Learned model input**: ``log_mel`` holds the musicnn log-mel patches
  (:func:`musicaas.models.musicnn_frontend.log_mel_patches` of the 22050 Hz mix,
  resampled to 16 kHz); the service sends them to the tagger served by Triton
  (:mod:`musicaas_analyzer.tagger`) for the learned embedding and the tags.

**Tiers.** ``detail=False`` computes the tier-one fields (tempo, beats, key, loudness,
embedding) plus the cheap ones (confidences, tempo candidates, metre, audio features,
descriptors, the tonal-clarity, rhythmic-stability and dynamic-range scores) and leaves
the tree (bars, beats with confidences, tatums, sections, segments) and the repetition
score empty. ``bench/analyzer_speed.py`` measures both tiers.

**Silence.** Audio is silent when no 400 ms block reaches the BS.1770 absolute gate of
-70 LUFS (digital silence, or near-silence such as dither alone), measured like the
reported loudness (on a file's own channels for :func:`analyze_bytes`), or when its
mono mix is exactly zero (a stereo file whose channels cancel). A silent result has
``is_silent=True``, ``tempo_bpm=0.0``, no beats, ``key=None`` and every confidence 0,
``time_signature=0``, every audio feature and score 0, zero descriptors, an empty tree,
the silence embedding (:func:`~musicaas_analyzer.embedding.silence_embedding`) and
``loudness_lufs`` = -70.0 (:data:`~musicaas_analyzer.loudness.LOUDNESS_FLOOR_LUFS`; the
cancelling-stereo case keeps its measured loudness). ``tempo_bpm`` is also 0.0 for a
non-silent signal in which no beat could be tracked.
"""

from __future__ import annotations

import functools
import os
from dataclasses import replace

import numpy as np

from musicaas.embedding import DESCRIPTOR_EMBEDDING_DIM
from musicaas.models.musicnn_frontend import log_mel_patches, silence_patches
from musicaas.runtime.errors import InvalidArgument
from musicaas_analyzer import decode
from musicaas_analyzer import descriptors as _desc
from musicaas_analyzer import keyfinding
from musicaas_analyzer import midi
from musicaas_analyzer import rhythm as _rhythm
from musicaas_analyzer import structure
from musicaas_analyzer.embedding import embed, raw_features, silence_embedding
from musicaas_analyzer.loudness import LOUDNESS_FLOOR_LUFS, LoudnessAccumulator, LoudnessProfile, loudness_profile
from musicaas_analyzer.results import (
    AudioAnalysis,
    Section,
    Segment,
    SpectralDescriptors,
    TempoCandidate,
    TimeInterval,
)

__all__ = [
    "ANALYZER_VERSION",
    "ANALYSIS_SAMPLE_RATE_HZ",
    "DESCRIPTOR_EMBEDDING_DIM",
    "AudioAnalysis",
    "analyze_bytes",
    "analyze_file",
    "analyze_midi",
    "analyze_signal",
    "section_units",
    "warm_up",
]

#: Version of the analysis recipe; bump it when any output for the same audio changes.
ANALYZER_VERSION = "0.3.2"
#: Every feature but loudness is computed at this rate.
ANALYSIS_SAMPLE_RATE_HZ = 22050
#: Largest Standard MIDI File :func:`analyze_file` reads (whole, as the MIDI reader needs it),
#: bytes. Real files are kilobytes to a few megabytes; this keeps a 1 GiB upload that merely
#: starts with 'MThd' out of memory.
MAX_MIDI_FILE_BYTES = 64 * 1024 * 1024

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
#: Frames more than this far below the loudest frame are left out of the timbre statistics.
ACTIVE_FRAME_DB = 60.0
#: Mean square of a periodic Hann window (the frame-level RMS is corrected by it).
_HANN_MEAN_SQUARE = 0.375


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=ANALYSIS_SAMPLE_RATE_HZ, n_fft=N_FFT, n_mels=N_MELS, fmax=FMAX_HZ).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _fft_freqs() -> np.ndarray:
    """Frequencies of the STFT bins up to :data:`FMAX_HZ` (the bins the features use)."""
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / ANALYSIS_SAMPLE_RATE_HZ)
    return freqs[freqs <= FMAX_HZ]


@functools.lru_cache(maxsize=1)
def _chroma_basis() -> np.ndarray:
    """librosa's chroma filter bank (12 x bins up to FMAX_HZ), bins below 55 Hz zeroed."""
    import librosa

    fb = librosa.filters.chroma(sr=ANALYSIS_SAMPLE_RATE_HZ, n_fft=N_FFT, tuning=0.0)[:, : _fft_freqs().size]
    fb[:, _fft_freqs() < 55.0] = 0.0
    return fb.astype(np.float32)


@functools.lru_cache(maxsize=1)
def _speech_bands() -> np.ndarray:
    """Indices of the mel bands centred between 300 and 3400 Hz (telephone band)."""
    import librosa

    centres = librosa.mel_frequencies(n_mels=N_MELS + 2, fmax=FMAX_HZ)[1:-1]
    return np.nonzero((centres >= 300.0) & (centres <= 3400.0))[0]


def _validate_signal(y: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, (int, np.integer)):
        raise InvalidArgument(f"sample_rate_hz must be an integer number of Hz, got {sample_rate_hz!r}")
    if not decode.MIN_SAMPLE_RATE_HZ <= sample_rate_hz <= decode.MAX_SAMPLE_RATE_HZ:
        raise InvalidArgument(
            f"sample rate {sample_rate_hz} Hz is out of range [{decode.MIN_SAMPLE_RATE_HZ}, "
            f"{decode.MAX_SAMPLE_RATE_HZ}] Hz"
        )
    if not isinstance(y, np.ndarray):
        raise InvalidArgument(f"audio must be a numpy array, not {type(y).__name__}")
    if y.ndim != 1:
        raise InvalidArgument(f"audio must be mono with shape (n,), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.floating):
        raise InvalidArgument(f"audio must be floating point (full scale 1.0), got dtype {y.dtype}")
    if y.size / sample_rate_hz < decode.MIN_DURATION_S:
        raise InvalidArgument(
            f"audio too short to analyse: {y.size / sample_rate_hz:.3f} s ({y.size} samples at "
            f"{sample_rate_hz} Hz); at least {decode.MIN_DURATION_S:g} s is needed"
        )
    finite = np.isfinite(y)
    if not finite.all():
        first = int(np.argmin(finite))
        raise InvalidArgument(
            f"audio holds non-finite samples (NaN or infinity), the first at "
            f"{first / sample_rate_hz:.3f} s"
        )
    return np.ascontiguousarray(y, dtype=np.float32)


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


def _rhythm_features(oenv: np.ndarray, beats: np.ndarray, tempo_bpm: float, rms: np.ndarray, duration_s: float, onset_count: int) -> np.ndarray:
    """The six rhythm dimensions of the embedding (see :mod:`musicaas_analyzer.embedding`)."""
    import librosa

    frame_rate = ANALYSIS_SAMPLE_RATE_HZ / HOP
    mean = float(oenv.mean())
    centred = oenv - mean
    lo, hi = int(round(0.25 * frame_rate)), int(round(2.0 * frame_rate))
    ac = librosa.autocorrelate(centred, max_size=hi + 1)
    clarity = float(ac[lo : hi + 1].max() / ac[0]) if ac.size > lo and ac[0] > 0 else 0.0
    onset_rate = onset_count / max(duration_s, 1e-9)
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
    chroma_basis = _chroma_basis()
    freqs = _fft_freqs()
    mel = np.empty((N_MELS, total), dtype=np.float32)
    chroma = np.empty((12, total), dtype=np.float32)
    frame_power = np.empty(total)
    centroid = np.empty(total)
    rolloff = np.empty(total)
    flux = np.zeros(total)
    contrast = np.empty((len(_contrast_bands()), total))
    in_band = low = 0.0
    previous = None  # the last L1-normalised spectrum of the previous block
    for f0, S in stft_magnitude_blocks(y, n_fft=N_FFT, hop=HOP):
        f1 = f0 + S.shape[1]
        power = np.square(S)
        frame_power[f0:f1] = power.sum(axis=0)
        band = S[:n_band]
        band_power = power[:n_band]
        mel[:, f0:f1] = mel_basis @ band_power
        chroma[:, f0:f1] = chroma_basis @ band
        in_band += float(band_power.sum())
        low += float(band_power[:n_low].sum())
        mag_sum = band.sum(axis=0)
        centroid[f0:f1] = (freqs @ band) / np.maximum(mag_sum, 1e-12)
        cumulative = np.cumsum(band, axis=0)
        rolloff[f0:f1] = freqs[np.argmax(cumulative >= 0.85 * cumulative[-1:], axis=0)]
        floor = CONTRAST_FLOOR * band.max(axis=0, keepdims=True)
        contrast[:, f0:f1] = _spectral_contrast(np.maximum(band, np.maximum(floor, 1e-10)))
        unit = band / np.maximum(mag_sum, 1e-12)
        joined = unit if previous is None else np.concatenate([previous, unit], axis=1)
        diffs = 0.5 * np.abs(np.diff(joined, axis=1)).sum(axis=0)
        flux[f0 + (1 if previous is None else 0) : f1] = diffs
        previous = unit[:, -1:]
    return {
        "mel": mel,
        "chroma": chroma,
        "frame_power": frame_power,
        "centroid": centroid,
        "rolloff": rolloff,
        "contrast": contrast,
        "flux": flux,
        "low_share_db": 10.0 * np.log10(max(low, 1e-20) / max(in_band, 1e-20)),
    }


def _zero_crossing_rate_hz(y: np.ndarray) -> float:
    """Sign changes per second of the 22050 Hz signal, counted in blocks (bounded memory)."""
    block = 1 << 20
    count = 0
    for start in range(0, max(1, y.size - 1), block):
        seg = np.signbit(y[start : start + block + 1])
        count += int(np.count_nonzero(seg[1:] != seg[:-1]))
    return count / (y.size / ANALYSIS_SAMPLE_RATE_HZ)


def _intervals(starts_s: np.ndarray, ends_s: np.ndarray, confidence: np.ndarray) -> tuple[TimeInterval, ...]:
    return tuple(
        TimeInterval(float(a), float(max(b - a, 0.0)), float(c)) for a, b, c in zip(starts_s, ends_s, confidence)
    )


def _mel_db(mel: np.ndarray) -> np.ndarray:
    """The mel power spectrum in dB re its maximum, floored :data:`TOP_DB` below it."""
    import librosa

    return librosa.power_to_db(mel, ref=float(mel.max()) or 1.0, top_db=TOP_DB)


def _mfcc(mel_db: np.ndarray, n: int) -> np.ndarray:
    """MFCC 0 to n-1 of every frame (orthonormal DCT-II of the mel spectrum in dB)."""
    from scipy.fft import dct

    return dct(mel_db, type=2, axis=0, norm="ortho")[:n].copy()


def section_units(y: np.ndarray, *, beats_s) -> structure.Units:
    """The units of the self-similarity matrix that the analysis segments into sections.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], float32, at :data:`ANALYSIS_SAMPLE_RATE_HZ`
        Mono audio, full scale 1.0.
    beats_s : sequence of float, seconds
        Beat times (an analysis's ``beats_s``); with fewer than 16, the units are 0.5 s frames.

    Returns
    -------
    musicaas_analyzer.structure.Units
        As :func:`analyze_signal` builds them: MFCC 1-12 and chroma of the short STFT,
        averaged per beat (start frames at hop :data:`HOP`).
    """
    frames = _spectral_frames(y)
    beats = np.round(np.asarray(beats_s, dtype=np.float64) * ANALYSIS_SAMPLE_RATE_HZ / HOP).astype(np.int64)
    mfcc = _mfcc(_mel_db(frames["mel"]), 13)
    return structure.structure_units(mfcc, frames["chroma"], beats, frames["mel"].shape[1])


def _analyse_mono(y: np.ndarray, profile: LoudnessProfile, loudness_lufs: float, detail: bool) -> dict:
    """Everything but the silence handling, for non-silent mono audio at 22050 Hz."""
    import librosa

    sr = ANALYSIS_SAMPLE_RATE_HZ
    frame_rate = sr / HOP
    duration_s = y.size / sr
    frames = _spectral_frames(y)
    mel = frames["mel"]
    mel_db = _mel_db(mel)
    chroma_short = frames["chroma"]

    # Tempo and beats (rhythm module, steps 1-4). ``beats`` stay the tracked frames (where the
    # onset accents are measured); the reported times lead them by the attack (step 2b).
    oenv = librosa.onset.onset_strength(S=mel_db, sr=sr, hop_length=HOP)
    evidence = _rhythm.tempo_evidence(oenv, chroma_short)
    beats, start_bpm, candidates = _rhythm.beats_and_tempo(oenv, chroma_short, evidence)
    lead_s = _rhythm.beat_lead_frames(oenv, beats) / frame_rate
    beat_times = librosa.frames_to_time(beats, sr=sr, hop_length=HOP) - lead_s
    keep = (beat_times >= 0) & (beat_times <= duration_s)
    beats, beat_times = beats[keep], beat_times[keep]
    tempo = _rhythm.refined_tempo(beat_times, start_bpm) if beat_times.size else 0.0
    clarity = _rhythm.pulse_clarity(oenv, tempo)
    tempo_conf = _rhythm.tempo_confidence(clarity, beat_times, tempo)
    meter, moved = _rhythm.metre_and_phase(oenv, chroma_short, mel_db, beats, tempo_conf)
    if moved is not beats:  # compound metre, re-phased (rhythm step 5)
        beat_times = beat_times + (moved - beats) / frame_rate
        keep = beat_times <= duration_s
        beats, beat_times = moved[keep], beat_times[keep]

    # Key.
    key_frames = keyfinding.key_frames(y, sr)
    chroma_frames = key_frames.chroma
    key_est = keyfinding.estimate_key_frames(key_frames)
    key_rate = sr / (keyfinding.N_FFT // 2)  # the key finder's frame rate at 22050 Hz

    # Timbre over the active frames.
    frame_power = frames["frame_power"]
    active = frame_power >= frame_power.max() * 10 ** (-ACTIVE_FRAME_DB / 10)
    if active.sum() < 2:
        active[:] = True
    mfcc_full = _mfcc(mel_db, 14)  # MFCC 0-13 of every frame
    mfcc_all = mfcc_full[:13]  # 0-12: descriptors and structure
    mfcc = mfcc_full[1:14][:, active]  # 1-13 of the active frames: the embedding
    mel_active = np.maximum(mel[:, active], 1e-10)
    flatness = np.exp(np.mean(np.log(mel_active), axis=0)) / np.mean(mel_active, axis=0)
    rms = np.sqrt(frame_power / N_FFT)
    level_db = np.maximum(
        10.0 * np.log10(np.maximum(2.0 * frame_power / (_HANN_MEAN_SQUARE * N_FFT**2), 1e-30)),
        structure.LEVEL_FLOOR_DB,
    )
    onset_peaks = librosa.onset.onset_detect(onset_envelope=oenv, sr=sr, hop_length=HOP)
    rhythm = _rhythm_features(oenv, beats[beats < oenv.size], tempo, rms, duration_s, int(onset_peaks.size))
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

    # Descriptors and audio features.
    mode_conf = key_est.mode_confidence
    mean_chroma = chroma_frames.mean(axis=1) if chroma_frames.shape[1] else np.zeros(12)
    chroma_norm = mean_chroma / mean_chroma.sum() if mean_chroma.sum() > 0 else np.zeros(12)
    onset_rate = onset_peaks.size / duration_s
    lra = profile.loudness_range_lu()
    descriptors = SpectralDescriptors(
        mfcc_mean=tuple(float(v) for v in mfcc_all[:, active].mean(axis=1)),
        chroma_mean=tuple(float(v) for v in chroma_norm),
        spectral_centroid_hz=float(frames["centroid"][active].mean()),
        spectral_rolloff_hz=float(frames["rolloff"][active].mean()),
        spectral_flux=float(frames["flux"][active].mean()),
        spectral_contrast_db=tuple(float(v) for v in frames["contrast"][:, active].mean(axis=1)),
        zero_crossing_rate_hz=_zero_crossing_rate_hz(y),
        onset_rate_hz=float(onset_rate),
        loudness_range_lu=float(lra),
    )
    level_active = level_db[active]
    floor_flatness, floor_level = _desc.floor_measures(level_active, flatness)
    summary = _desc.SignalSummary(
        loudness_lufs=loudness_lufs,
        tempo_bpm=tempo,
        clarity=clarity,
        regularity=_rhythm.regularity(beat_times),
        onset_rate_hz=float(onset_rate),
        onset_peakiness=float(np.percentile(oenv, 99) / max(float(np.median(oenv)), 1e-9)),
        flux=descriptors.spectral_flux,
        centroid_hz=descriptors.spectral_centroid_hz,
        rolloff_hz=descriptors.spectral_rolloff_hz,
        log10_flatness=float(np.log10(np.maximum(flatness, 1e-10)).mean()),
        level_std_db=float(np.std(level_active)),
        signed_mode=(mode_conf if key_est.key is not None and key_est.key.mode == "major" else -mode_conf) if key_est.key else 0.0,
        tonality=key_est.tonality,
        modulation_4hz=_desc.modulation_4hz(mel[_speech_bands()].sum(axis=0), frame_rate),
        pause_share=_desc.low_energy_share(frame_power, frame_rate),
        floor_flatness=floor_flatness,
        floor_level_db=floor_level,
    )
    features = _desc.audio_features(summary)
    beat_salience = _rhythm.onset_salience(oenv, beats)

    out = {
        "tempo": tempo,
        "beat_times": beat_times,
        "key_est": key_est,
        "raw": raw,
        "tempo_confidence": tempo_conf,
        "candidates": candidates,
        "meter": meter,
        "descriptors": descriptors,
        "features": features,
        "tonal_clarity": _desc.tonal_clarity(chroma_frames, key_rate),
        "rhythmic_stability": _desc.rhythmic_stability(clarity, beat_times, beat_salience),
        "dynamic_range": _desc.dynamic_range(lra),
        "repetition": 0.0,
        "bars": (),
        "beats": (),
        "tatums": (),
        "sections": (),
        "segments": (),
    }
    if not detail:
        return out

    # The tree: beats, bars, tatums.
    n_frames = oenv.size
    period_s = float(np.median(np.diff(beat_times))) if beat_times.size >= 2 else 0.0
    if beat_times.size:
        ends = np.concatenate([beat_times[1:], [min(duration_s, beat_times[-1] + period_s)]])
        out["beats"] = _intervals(beat_times, ends, _rhythm.beat_confidences(oenv, beats))
    downbeat_frames = None
    if meter.beats_per_bar:
        idx = np.arange(meter.first_downbeat, beats.size, meter.beats_per_bar)
        bar_starts = beat_times[idx]
        bar_ends = np.concatenate([bar_starts[1:], [min(duration_s, bar_starts[-1] + meter.beats_per_bar * period_s)]])
        beat_conf = _rhythm.beat_confidences(oenv, beats)[idx]
        out["bars"] = _intervals(bar_starts, bar_ends, meter.confidence * beat_conf)
        downbeat_frames = beats[idx]
    if beats.size >= 2:
        tatum_pos, _sub = _rhythm.tatum_frames(oenv, beats)
        # on the reported beat times (which lead the tracked frames, rhythm step 2b): each
        # beat's first tatum is the beat, the others divide the reported beat interval
        tatum_s = np.interp(tatum_pos, beats.astype(np.float64), beat_times)
        tatum_ends = np.concatenate([tatum_s[1:], [min(duration_s, tatum_s[-1] + period_s / max(_sub, 1))]])
        tatum_conf = _rhythm.onset_salience(oenv, np.clip(np.round(tatum_pos).astype(np.int64), 0, n_frames - 1))
        out["tatums"] = _intervals(tatum_s, tatum_ends, tatum_conf)

    # Segments.
    seg = structure.segments(oenv=oenv, level_db=level_db, chroma=chroma_short, mel_db=mel_db, duration_s=duration_s)
    out["segments"] = tuple(
        Segment(
            start_s=float(seg.start_s[i]),
            duration_s=float(seg.duration_s[i]),
            confidence=float(seg.confidence[i]),
            loudness_start_db=float(seg.loudness_start_db[i]),
            loudness_max_db=float(seg.loudness_max_db[i]),
            loudness_max_time_s=float(seg.loudness_max_time_s[i]),
            loudness_end_db=float(seg.loudness_end_db[i]),
            pitches=tuple(float(v) for v in seg.pitches[i]),
            timbre=tuple(float(v) for v in seg.timbre[i]),
        )
        for i in range(seg.start_s.size)
    )

    # Sections (Foote novelty) and repetition.
    units = structure.structure_units(mfcc_all, chroma_short, beats, n_frames)
    starts, confs = structure.section_boundaries(units, downbeat_frames)
    out["repetition"] = structure.repetition(units)
    start_s = starts / frame_rate
    end_s = np.concatenate([start_s[1:], [duration_s]])
    clarity_factor = min(1.0, clarity / 0.5)
    key_frame_s = np.arange(chroma_frames.shape[1]) / key_rate
    sections = []
    for a, b, c in zip(start_s, end_s, confs):
        inside = beat_times[(beat_times >= a) & (beat_times < b)]
        sec_tempo = _rhythm.refined_tempo(inside, 0.0) if inside.size >= 4 else 0.0
        inside_key = (key_frame_s >= a) & (key_frame_s < b)
        if inside_key.any():
            # The global key as a prior: a section leaves it only on clear evidence.
            est = keyfinding.estimate_key_frames(key_frames, inside_key, prior_key=key_est.key)
        else:
            est = keyfinding.estimate_key(np.zeros(12))
        sections.append(
            Section(
                start_s=float(a),
                duration_s=float(b - a),
                confidence=float(np.clip(c, 0.0, 1.0)),
                loudness_lufs=profile.integrated(float(a), float(b)) if len(start_s) > 1 else loudness_lufs,
                tempo_bpm=float(sec_tempo),
                tempo_confidence=float(_rhythm.regularity(inside) * clarity_factor) if sec_tempo > 0 else 0.0,
                key=est.key,
                key_confidence=est.confidence if est.key is not None else 0.0,
                mode_confidence=est.mode_confidence,
                time_signature=meter.numerator,
                time_signature_confidence=meter.confidence,
            )
        )
    out["sections"] = tuple(sections)
    return out


def _read_only(vec: np.ndarray) -> np.ndarray:
    vec.flags.writeable = False
    return vec


def _silent(duration_s: float, sample_rate_hz: int, loudness_lufs: float) -> AudioAnalysis:
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
        log_mel=silence_patches(duration_s),
    )


def _analyse(y: np.ndarray, sample_rate_hz: int, profile: LoudnessProfile, *, detail: bool = True) -> AudioAnalysis:
    """Analyse validated mono audio whose loudness profile has already been measured."""
    duration_s = y.size / sample_rate_hz
    loudness_lufs = profile.integrated()
    if loudness_lufs <= LOUDNESS_FLOOR_LUFS or not np.any(y):
        return _silent(duration_s, sample_rate_hz, loudness_lufs)
    y22 = decode.resample(y, sample_rate_hz, ANALYSIS_SAMPLE_RATE_HZ)
    return _analyse_resampled(y22, duration_s, sample_rate_hz, profile, loudness_lufs, detail=detail)


def _analyse_resampled(
    y22: np.ndarray,
    duration_s: float,
    sample_rate_hz: int,
    profile: LoudnessProfile,
    loudness_lufs: float,
    *,
    detail: bool,
) -> AudioAnalysis:
    """Analyse non-silent mono audio already resampled to 22050 Hz (``loudness_lufs`` is
    ``profile.integrated()``, passed in so that the gating is not run again)."""
    r = _analyse_mono(y22, profile, loudness_lufs, detail)
    key_est = r["key_est"]
    tempo = r["tempo"]
    candidates = [TempoCandidate(float(bpm), float(w)) for bpm, w in r["candidates"]]
    if tempo > 0:
        # The reported tempo first (with the weight of the candidate it matches, if any).
        match = [c for c in candidates if abs(c.tempo_bpm / tempo - 1.0) <= 0.04]
        weight = match[0].weight if match else 0.0
        others = [c for c in candidates if not match or c is not match[0]]
        candidates = [TempoCandidate(float(tempo), weight)] + others[:2]
        total = sum(c.weight for c in candidates)
        if total > 0:
            candidates = [TempoCandidate(c.tempo_bpm, c.weight / total) for c in candidates]
    meter = r["meter"]
    return AudioAnalysis(
        duration_s=duration_s,
        sample_rate_hz=sample_rate_hz,
        tempo_bpm=tempo,
        beats_s=tuple(float(t) for t in r["beat_times"]),
        key=key_est.key,
        key_confidence=key_est.confidence if key_est.key is not None else 0.0,
        loudness_lufs=loudness_lufs,
        embedding=_read_only(embed(r["raw"])),
        analyzer_version=ANALYZER_VERSION,
        is_silent=False,
        time_signature=meter.numerator,
        time_signature_confidence=meter.confidence,
        tempo_confidence=r["tempo_confidence"],
        mode_confidence=key_est.mode_confidence,
        tempo_candidates=tuple(candidates),
        features=r["features"],
        descriptors=r["descriptors"],
        scores=_desc.EvaluationScores(
            tonal_clarity=r["tonal_clarity"],
            rhythmic_stability=r["rhythmic_stability"],
            dynamic_range=r["dynamic_range"],
            repetition=r["repetition"],
        ),
        bars=r["bars"],
        beats=r["beats"],
        tatums=r["tatums"],
        sections=r["sections"],
        segments=r["segments"],
        log_mel=log_mel_patches(y22, sample_rate_hz=ANALYSIS_SAMPLE_RATE_HZ),
    )


def analyze_signal(y: np.ndarray, *, sample_rate_hz: int, detail: bool = True) -> AudioAnalysis:
    """Analyse mono audio.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], floating point, full scale 1.0
        Finite samples, at least 0.5 s long.
    sample_rate_hz : int in [4000, 384000], Hz
    detail : bool
        Also compute the audio-analysis tree (bars, beats, tatums, sections, segments) and
        the repetition score; False leaves them empty and is faster.

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
    return _analyse(y, sample_rate_hz, loudness_profile(y, sample_rate_hz), detail=detail)


def analyze_bytes(
    data: bytes, *, filename: str | None = None, max_duration_s: float = 1800.0, detail: bool = True
) -> AudioAnalysis:
    """Decode an uploaded WAV/FLAC/Ogg/MP3/AIFF file, or read a Standard MIDI File, and analyse it.

    Loudness is measured on the file's own channels and sample rate (a stereo file is
    measured as stereo, per BS.1770), block by block while the file is decoded, and the mono
    mix is resampled to 22050 Hz as it is decoded, so that only the 22050 Hz mix is ever
    held in full (:func:`musicaas_analyzer.decode.decode_mono_streaming`); everything but
    loudness is computed on it. ``sample_rate_hz``
    in the result is the file's rate. A Standard MIDI File (as
    :func:`musicaas_analyzer.decode.sniff_container` sees it) goes to :func:`analyze_midi`.

    Parameters
    ----------
    data : bytes
        The uploaded file.
    filename : str or None
        Used only to word error messages (the format is sniffed from the bytes).
    max_duration_s : float > 0, seconds
        Longer files are refused.
    detail : bool
        As in :func:`analyze_signal`.

    Returns
    -------
    AudioAnalysis

    Raises
    ------
    InvalidArgument
        See :func:`musicaas_analyzer.decode.decode_native` and :func:`analyze_midi`.
    """
    if isinstance(data, (bytes, bytearray, memoryview)) and decode.sniff_container(data, filename=filename)[0] == "midi":
        return analyze_midi(bytes(data), filename=filename, max_duration_s=max_duration_s, detail=detail)
    return _analyze_streamed(
        functools.partial(decode.decode_mono_streaming, data, filename=filename, max_duration_s=max_duration_s),
        detail=detail,
    )


def analyze_file(
    path: str | os.PathLike, *, filename: str | None = None, max_duration_s: float = 1800.0, detail: bool = True
) -> AudioAnalysis:
    """:func:`analyze_bytes` of the upload in the file at ``path``, decoded from the file.

    The container is sniffed from the file's first MiB
    (:func:`musicaas_analyzer.decode.sniff_file`); audio is decoded block by block from the
    file itself (:func:`musicaas_analyzer.decode.decode_mono_streaming_file`), so that only
    the 22050 Hz mono mix is ever held in full, never the encoded file; a Standard MIDI File
    (at most :data:`MAX_MIDI_FILE_BYTES`) is read whole and goes to :func:`analyze_midi`.
    The result is the one :func:`analyze_bytes` gives for the file's bytes, and so are the
    errors.

    Parameters
    ----------
    path : str or os.PathLike
        The uploaded file (a spool file, say).
    filename : str or None
        The upload's name, used only to word error messages (not the path's).
    max_duration_s, detail
        As in :func:`analyze_bytes` (seconds; bool).

    Returns
    -------
    AudioAnalysis
        The same as :func:`analyze_bytes` of the file's bytes.

    Raises
    ------
    InvalidArgument
        As :func:`analyze_bytes`; also for a MIDI file over :data:`MAX_MIDI_FILE_BYTES`.
    OSError
        When the file cannot be opened or read.
    """
    with open(path, "rb") as file:
        container, _offset = decode.sniff_file(file, filename=filename)
        midi_bytes = None
        if container == "midi":
            size = os.fstat(file.fileno()).st_size
            if size > MAX_MIDI_FILE_BYTES:
                named = f" (named {filename!r})" if filename else ""
                raise InvalidArgument(
                    f"MIDI file too large{named}: {size} bytes; at most {MAX_MIDI_FILE_BYTES} bytes are read"
                )
            file.seek(0)
            midi_bytes = file.read()
    if midi_bytes is not None:
        return analyze_midi(midi_bytes, filename=filename, max_duration_s=max_duration_s, detail=detail)
    return _analyze_streamed(
        functools.partial(decode.decode_mono_streaming_file, path, filename=filename, max_duration_s=max_duration_s),
        detail=detail,
    )


def _analyze_streamed(decode_stream, *, detail: bool) -> AudioAnalysis:
    """Analyse what ``decode_stream(on_block=..., target_rate_hz=...)`` decodes (a partial of
    :func:`~musicaas_analyzer.decode.decode_mono_streaming` or its file twin): loudness on the
    file's own channels as the blocks go by, everything else on the 22050 Hz mix."""
    meter: list[LoudnessAccumulator] = []

    def measure(block: np.ndarray, rate: int) -> None:  # loudness on the file's own channels
        if not meter:
            meter.append(LoudnessAccumulator(rate, block.shape[1]))
        meter[0].add(block)

    y22, rate, frames, _container = decode_stream(on_block=measure, target_rate_hz=ANALYSIS_SAMPLE_RATE_HZ)
    profile = meter[0].profile()
    duration_s = frames / rate
    loudness_lufs = profile.integrated()
    if loudness_lufs <= LOUDNESS_FLOOR_LUFS or not np.any(y22):
        return _silent(duration_s, rate, loudness_lufs)
    return _analyse_resampled(y22, duration_s, rate, profile, loudness_lufs, detail=detail)


def analyze_midi(
    data: bytes,
    *,
    filename: str | None = None,
    max_duration_s: float = 1800.0,
    render_audio: bool = True,
    detail: bool = True,
) -> AudioAnalysis:
    """Analyse a Standard MIDI File: the fields its events give (:func:`musicaas_analyzer.midi.read_midi`),
    and the others from its General MIDI rendering (the :mod:`musicaas_analyzer.midi` docstring
    says which field comes from where).

    Parameters
    ----------
    data, filename, max_duration_s
        As in :func:`~musicaas_analyzer.midi.read_midi`, which raises for bad input.
    render_audio : bool
        Render the file to compute the audio-derived fields (embedding, loudness, audio
        features, descriptors, scores, segments, sections); without it they are empty
        and ``sample_rate_hz`` is 0.
    detail : bool
        As in :func:`analyze_signal`, for the analysis of the rendering.

    Returns
    -------
    AudioAnalysis
        With ``midi`` set; silent when the file has no notes, or notes that make no sound.
    """
    from musicaas.render import render_midi

    reading = midi.read_midi(data, filename=filename, max_duration_s=max_duration_s)
    empty = replace(_silent(reading.duration_s, 0, LOUDNESS_FLOOR_LUFS), midi=reading.features)
    if not reading.fields:
        return empty
    rate = ANALYSIS_SAMPLE_RATE_HZ
    if render_audio and reading.duration_s >= decode.MIN_DURATION_S:
        y = render_midi(bytes(data), sample_rate_hz=rate)[: int(round(reading.duration_s * rate))]
        if y.size >= decode.MIN_DURATION_S * rate:
            audio = analyze_signal(y, sample_rate_hz=rate, detail=detail)
            if not audio.is_silent:  # notes that make no sound (velocity 0) leave it silent
                return replace(audio, **reading.fields)
    return replace(empty, **reading.fields)


def warm_up() -> None:
    """Run one small analysis so that lazy imports and librosa's numba kernels are compiled
    before the first request (the first beat tracking otherwise takes a few seconds)."""
    sr = ANALYSIS_SAMPLE_RATE_HZ
    t = np.arange(4 * sr) / sr
    y = 0.3 * np.sin(2 * np.pi * 440.0 * t) * (np.sin(2 * np.pi * 2.0 * t) > 0)
    analyze_signal(y.astype(np.float32), sample_rate_hz=sr)
