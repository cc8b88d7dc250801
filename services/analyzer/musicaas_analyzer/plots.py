"""One picture per analysed track: ``musicaas analyze FILE... --plot DIR``.

:func:`plot_track` draws four panels that share the time axis, from the track's audio and its
:class:`~musicaas.common.v1.common_pb2.TrackAnalysis`:

1. **Waveform** (min/max envelope) with the analysed beats (thin grey lines) and bars
   (orange lines, numbered).
2. **Chromagram** (librosa ``chroma_stft``, 186 ms frames, each frame scaled to its
   maximum; frames more than 17 dB below the loudest frame are dimmed, so near-silence
   stays dark) with the analysed key: the tonic row is outlined, the pitch classes of the key's
   scale are labelled in black and the others in grey, and the key and its confidence are
   written above the panel.
3. **Sections**: coloured spans with their labels (and the section's key when the analysis
   gives one), also shaded lightly behind the other panels.
4. **Loudness** over time: momentary (400 ms) and short-term (3 s) loudness, K-weighted as in
   ITU-R BS.1770 (LUFS), with the analysed integrated loudness as a dashed line.

What the analysis carries is drawn as is; what it does not carry yet is computed here and
marked "estimated" in the picture:

* **Bars**: the analysis's bar (downbeat) times when it has them; else every n-th beat, n
  from the analysis's time signature (default 4), starting at the beat phase with the
  strongest mean onset strength.
* **Sections**: the analysis's sections when it has them (unlabelled ones get letters by
  similarity, as below); else a novelty segmentation
  (Foote, J. (2000), "Automatic audio segmentation using a measure of audio novelty",
  *Proc. IEEE ICME*): chroma and MFCC features averaged over 0.5 s frames, their cosine
  self-similarity, the novelty curve of a Gaussian-tapered checkerboard kernel, its most
  prominent peaks (at most one per 8 s, snapped to the nearest bar line) as boundaries, and
  labels A, B, ... given to sections by the similarity of their mean features (cosine of at
  least :data:`SAME_LABEL_SIMILARITY`: same letter). The novelty curve is drawn in the
  sections panel.

Field names are looked up on the message's descriptor, so this module works with analyses
that predate bars and sections and with those that have them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicaas.common.v1 import common_pb2

__all__ = [
    "Section", "plot_track", "novelty_sections", "label_sections", "estimate_bars", "loudness_curves",
    "analysis_bars", "analysis_beats_per_bar", "analysis_sections",
]

#: Rate the plots' features are computed at.
PLOT_SR = 22050
_HOP = 512
_CHROMA_HOP = 4096
_FEATURE_FRAME_S = 0.5
#: At most one estimated section boundary per this many seconds.
MIN_SECTION_S = 8.0

_SHARPS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)  # natural minor and the raised leading tone
_SECTION_COLOURS = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#bab0ac",
)


@dataclass(frozen=True)
class Section:
    """A span of the track, seconds, with a label (``"A"``, ``"chorus"``, …) and an optional
    detail line drawn under it (the section's key when the analysis has one)."""

    start_s: float
    end_s: float
    label: str
    detail: str = ""


# --- reading the analysis (old and new fields) --------------------------------------------


def _present(msg) -> dict:
    """Fields set on a message (non-empty repeated fields, non-default scalars), by name."""
    return {field.name: value for field, value in msg.ListFields()}


def _first_field(msg, names: Sequence[str]) -> str | None:
    fields = msg.DESCRIPTOR.fields_by_name
    return next((n for n in names if n in fields), None)


def _time_of(item) -> float | None:
    """A time, seconds, from a repeated field's element: a number or a message with a time."""
    if isinstance(item, (int, float)):
        return float(item)
    name = _first_field(item, ("start_s", "time_s", "t_s", "onset_s", "position_s", "start"))
    return float(getattr(item, name)) if name else None


def analysis_bars(analysis: common_pb2.TrackAnalysis) -> list[float] | None:
    """Bar start (downbeat) times from the analysis, or None when it has none."""
    present = _present(analysis)
    for name in ("bars_s", "downbeats_s", "bars", "downbeats", "bar_starts_s"):
        if name in present:
            times = [t for t in (_time_of(item) for item in present[name]) if t is not None]
            if times:
                return sorted(times)
    return None


def analysis_beats_per_bar(analysis: common_pb2.TrackAnalysis) -> int | None:
    """Beats per bar of the analysis's metre (``time_signature``: beats per bar, or a
    message with a numerator, or text such as ``"3/4"``), or None when it has none."""
    present = _present(analysis)
    for name in ("time_signature", "meter", "beats_per_bar"):
        if name not in present:
            continue
        value = present[name]
        if isinstance(value, str):
            head = value.replace(" ", "").split("/")[0]
            beats = int(head) if head.isdigit() else 0
        elif isinstance(value, (int, float)):
            beats = int(value)
        else:
            num = _first_field(value, ("numerator", "beats_per_bar", "beats", "upper"))
            beats = int(getattr(value, num)) if num else 0
        if beats > 0:
            return beats
    return None


def _label_text(item, name: str) -> str:
    value = getattr(item, name)
    field = item.DESCRIPTOR.fields_by_name[name]
    if field.enum_type is not None:
        text = field.enum_type.values_by_number[value].name if value in field.enum_type.values_by_number else str(value)
        return text.rsplit("_", 1)[-1].lower()
    if isinstance(value, int):
        return _letter(value)
    return str(value)


def analysis_sections(analysis: common_pb2.TrackAnalysis, duration_s: float) -> list[Section] | None:
    """Sections from the analysis, or None when it has none.

    Accepts a repeated message with a start (``start_s``), an end (``end_s``) or a length
    (``duration_s``), optionally a label (``label``/``name``: a string, an enum or a cluster
    number) and a key (``key`` and ``mode``, shown as the detail line), or a repeated number
    holding the boundaries. Sections without a label get ``""`` (:func:`plot_track` labels
    them by similarity).
    """
    items = _present(analysis).get("sections")
    if not items:
        return None
    if isinstance(items[0], (int, float)):
        edges = sorted({0.0, *[float(t) for t in items if 0.0 < float(t) < duration_s], duration_s})
        return [Section(a, b, "") for a, b in zip(edges[:-1], edges[1:])]
    starts = [_time_of(item) for item in items]
    if any(s is None for s in starts):
        return None
    end_name = _first_field(items[0], ("end_s", "end", "stop_s"))
    length_name = _first_field(items[0], ("duration_s", "length_s"))
    label_name = _first_field(items[0], ("label", "name", "kind", "letter", "cluster"))
    key_name = _first_field(items[0], ("key",))
    out = []
    for i, item in enumerate(items):
        start = float(starts[i])
        if end_name:
            end = float(getattr(item, end_name))
        elif length_name:
            end = start + float(getattr(item, length_name))
        else:
            end = float(starts[i + 1]) if i + 1 < len(items) else duration_s
        label = _label_text(item, label_name) if label_name else ""
        detail = ""
        if key_name and isinstance(getattr(item, key_name), str) and getattr(item, key_name):
            detail = getattr(item, key_name)
            if "mode" in item.DESCRIPTOR.fields_by_name:
                detail += {common_pb2.MODE_MAJOR: " major", common_pb2.MODE_MINOR: " minor"}.get(item.mode, "")
        if end > start:
            out.append(Section(start, min(end, duration_s) if duration_s > start else end, label, detail))
    return out or None


# --- what the plots compute themselves ---------------------------------------------------


def _letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"S{i + 1}"


def _onset_envelope(y: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    return librosa.onset.onset_strength(y=y, sr=sr, hop_length=_HOP)


def estimate_bars(
    beats_s: Sequence[float], *, beats_per_bar: int, onset_env: np.ndarray | None = None, sr: int = PLOT_SR
) -> list[float]:
    """Every ``beats_per_bar``-th beat, starting at the phase whose beats have the strongest
    mean onset strength (the first beat when there is no onset envelope)."""
    beats = np.asarray(beats_s, dtype=np.float64)
    if beats.size == 0 or beats_per_bar < 1:
        return []
    phase = 0
    if onset_env is not None and onset_env.size and beats.size >= 2 * beats_per_bar:
        frames = np.clip(np.round(beats * sr / _HOP).astype(int), 0, onset_env.size - 1)
        strength = onset_env[frames]
        phase = int(np.argmax([strength[p::beats_per_bar].mean() for p in range(beats_per_bar)]))
    return [float(t) for t in beats[phase::beats_per_bar]]


def _frame_features(y: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """Chroma + MFCC features averaged over :data:`_FEATURE_FRAME_S` frames, z-scored per
    dimension, unit norm per frame: (features [dims, frames], frame length in s)."""
    import librosa

    S = np.abs(librosa.stft(y, n_fft=2048, hop_length=_HOP))
    chroma = librosa.feature.chroma_stft(S=S**2, sr=sr)
    mel = librosa.feature.melspectrogram(S=S**2, sr=sr, n_mels=64)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, ref=np.max), n_mfcc=14)[1:]
    feats = np.vstack([chroma, mfcc])
    per = max(1, int(round(_FEATURE_FRAME_S * sr / _HOP)))
    n = feats.shape[1] // per
    if n == 0:
        return np.zeros((feats.shape[0], 0)), per * _HOP / sr
    frames = feats[:, : n * per].reshape(feats.shape[0], n, per).mean(axis=2)
    frames = (frames - frames.mean(axis=1, keepdims=True)) / (frames.std(axis=1, keepdims=True) + 1e-9)
    frames /= np.linalg.norm(frames, axis=0, keepdims=True) + 1e-9
    return frames, per * _HOP / sr


def _checkerboard(half: int) -> np.ndarray:
    idx = np.arange(-half, half) + 0.5
    taper = np.exp(-0.5 * (idx / (0.5 * half)) ** 2)
    sign = np.sign(idx)
    return np.outer(sign * taper, sign * taper)


def novelty_sections(
    y: np.ndarray, sr: int, *, duration_s: float, bars_s: Sequence[float] = ()
) -> tuple[list[Section], np.ndarray, np.ndarray]:
    """Sections of mono audio by novelty segmentation (see the module docstring).

    Returns
    -------
    sections : list of Section
        Cover [0, duration_s] without gaps; labels A, B, … (similar sections share one).
    times : np.ndarray
        Centres of the feature frames, seconds.
    novelty : np.ndarray
        The novelty curve at ``times``, scaled to [0, 1].
    """
    from scipy.signal import find_peaks

    feats, frame_s = _frame_features(y, sr)
    n = feats.shape[1]
    times = (np.arange(n) + 0.5) * frame_s
    whole = [Section(0.0, duration_s, "A")]
    if n < 8:
        return whole, times, np.zeros(n)
    ssm = feats.T @ feats
    # kernel half-width: ~8 s, at most a quarter of the track, at least 2 frames
    half = int(max(2, min(round(MIN_SECTION_S / frame_s), n // 4)))
    kernel = _checkerboard(half)
    # mirrored ends (the SSM of the time-reversed features): no false novelty at the edges
    padded = np.pad(ssm, half, mode="reflect")
    novelty = np.array([np.sum(kernel * padded[i : i + 2 * half, i : i + 2 * half]) for i in range(n)])
    novelty = np.maximum(novelty, 0.0)
    if novelty.max() > 0:
        novelty /= novelty.max()
    min_gap = max(2, int(round(MIN_SECTION_S / frame_s)))
    peaks, props = find_peaks(novelty, distance=min_gap, prominence=0.1)
    # keep the most prominent, at most one section per MIN_SECTION_S on average
    limit = max(0, int(duration_s // MIN_SECTION_S) - 1)
    peaks = np.sort(peaks[np.argsort(props["prominences"])[::-1][:limit]])
    bounds = [float(times[p] - 0.5 * frame_s) for p in peaks]
    bars = np.asarray(bars_s, dtype=np.float64)
    if bars.size >= 2:
        bar_len = float(np.median(np.diff(bars)))
        snapped = []
        for b in bounds:
            nearest = float(bars[np.argmin(np.abs(bars - b))])
            snapped.append(nearest if abs(nearest - b) <= bar_len else b)
        bounds = snapped
    bounds = sorted({b for b in bounds if MIN_SECTION_S / 2 <= b <= duration_s - MIN_SECTION_S / 2})
    edges = [0.0, *bounds, duration_s]
    labels = _similarity_labels(feats, times, edges)
    out = [Section(a, b, label) for (a, b), label in zip(zip(edges[:-1], edges[1:]), labels)]
    return out, times, novelty


#: Sections whose mean features have at least this cosine similarity share a label.
SAME_LABEL_SIMILARITY = 0.8


def _similarity_labels(feats: np.ndarray, times: np.ndarray, edges: Sequence[float]) -> list[str]:
    """A letter per span [edges[k], edges[k+1]): the label of the most similar earlier span
    when their mean features are close (cosine >= SAME_LABEL_SIMILARITY), else a new letter."""
    means: list[np.ndarray] = []
    labels: list[str] = []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (times >= a) & (times < b)
        vec = feats[:, sel].mean(axis=1) if sel.any() else np.zeros(feats.shape[0])
        vec = vec / (np.linalg.norm(vec) + 1e-9)
        sims = [float(vec @ m) for m in means]
        if sims and max(sims) >= SAME_LABEL_SIMILARITY:
            label = labels[int(np.argmax(sims))]
        else:
            label = _letter(len(set(labels)))
        means.append(vec)
        labels.append(label)
    return labels


def label_sections(y: np.ndarray, sr: int, sections: Sequence[Section]) -> list[Section]:
    """The sections with every empty label replaced by a letter given by similarity (the
    same method as :func:`novelty_sections`); labels the analysis gave are kept."""
    if all(s.label for s in sections):
        return list(sections)
    feats, frame_s = _frame_features(y, sr)
    times = (np.arange(feats.shape[1]) + 0.5) * frame_s
    letters = _similarity_labels(feats, times, [s.start_s for s in sections] + [sections[-1].end_s])
    return [Section(s.start_s, s.end_s, s.label or letter, s.detail) for s, letter in zip(sections, letters)]


def _k_weighted_power(samples: np.ndarray, sr: int, step: int) -> np.ndarray:
    """Mean square of the K-weighted signal (BS.1770, channels summed) per ``step`` samples."""
    from scipy.signal import lfilter

    try:
        from pyloudnorm.iirfilter import IIRfilter

        stages = [
            IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sr, "high_shelf"),
            IIRfilter(0.0, 0.5, 38.0, sr, "high_pass"),
        ]
        coefficients = [(np.asarray(s.b), np.asarray(s.a), float(s.passband_gain)) for s in stages]
    except Exception:  # noqa: BLE001 - pyloudnorm missing: unweighted power
        coefficients = []
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = (x.shape[0] // step) * step
    total = np.zeros(n // step)
    for c in range(x.shape[1]):
        ch = x[:, c]
        for b, a, gain in coefficients:
            ch = gain * lfilter(b, a, ch)
        total += np.square(ch[:n]).reshape(-1, step).mean(axis=1)
    return total


def loudness_curves(samples: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Momentary (400 ms) and short-term (3 s) loudness, LUFS, every 100 ms.

    Returns (times at the end of each window, momentary, short-term); windows that do not
    fit yet are NaN.
    """
    step = max(1, int(round(0.1 * sr)))
    power = _k_weighted_power(samples, sr, step)
    times = (np.arange(power.size) + 1) * step / sr
    csum = np.concatenate([[0.0], np.cumsum(power)])

    def window(k: int) -> np.ndarray:
        out = np.full(power.size, np.nan)
        if power.size >= k:
            mean = (csum[k:] - csum[:-k]) / k
            with np.errstate(divide="ignore"):
                out[k - 1 :] = -0.691 + 10.0 * np.log10(np.maximum(mean, 1e-12))
        return out

    return times, window(4), window(30)


# --- drawing -----------------------------------------------------------------------------


def _pitch_names(tonic: str, mode: str | None) -> tuple[str, ...]:
    flat_keys = {"major": {"F", "Bb", "Eb", "Ab", "Db", "Gb", "Cb"}, "minor": {"D", "G", "C", "F", "Bb", "Eb", "Ab"}}
    return _FLATS if tonic and ("b" in tonic[1:] or tonic in flat_keys.get(mode or "", ())) else _SHARPS


def _tonic_pc(tonic: str) -> int | None:
    if not tonic or tonic[0].upper() not in _LETTER_PC:
        return None
    pc = _LETTER_PC[tonic[0].upper()]
    for ch in tonic[1:]:
        pc += {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(ch, 0)
    return pc % 12


def _envelope(y: np.ndarray, sr: int, columns: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    per = max(1, y.size // columns)
    n = y.size // per
    blocks = y[: n * per].reshape(n, per)
    return (np.arange(n) + 0.5) * per / sr, blocks.min(axis=1), blocks.max(axis=1)


def _shade(ax, sections: Sequence[Section], colours: dict[str, str], alpha: float) -> None:
    for s in sections:
        ax.axvspan(s.start_s, s.end_s, color=colours[s.label], alpha=alpha, lw=0)


def plot_track(
    audio_bytes: bytes, analysis: common_pb2.TrackAnalysis, *, path: str | Path, title: str = ""
) -> Path:
    """Draw the analysis of one track over its audio and write it as a PNG.

    Parameters
    ----------
    audio_bytes : bytes
        The file that was analysed: WAV, FLAC, Ogg or MP3, or a Standard MIDI File (drawn
        from its General MIDI rendering, which is what the analyzer analyses).
    analysis : musicaas.common.v1.TrackAnalysis
        Its analysis.
    path : str or Path
        The PNG to write; its folder is created.
    title : str
        Shown above the panels (e.g. the file name).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    musicaas.runtime.errors.InvalidArgument
        When the bytes cannot be decoded (or the MIDI file rendered).
    """
    import librosa
    from matplotlib.figure import Figure

    from musicaas.runtime.protoconv import mode_name
    from musicaas_analyzer.decode import decode_native

    if audio_bytes[:4] == b"MThd":  # a Standard MIDI File: draw the rendering that was analysed
        from musicaas.render import render_midi

        native, sr_native = render_midi(audio_bytes, sample_rate_hz=PLOT_SR)[:, None], PLOT_SR
    else:
        decoded = decode_native(
            audio_bytes, filename=title or None, max_duration_s=max(1800.0, analysis.duration_s + 1.0)
        )
        native, sr_native = decoded.samples, decoded.sample_rate_hz
    mono = native.mean(axis=1) if native.ndim == 2 else native
    if sr_native != PLOT_SR:
        mono = librosa.resample(mono.astype(np.float32), orig_sr=sr_native, target_sr=PLOT_SR)
    y = np.ascontiguousarray(mono, dtype=np.float32)
    sr = PLOT_SR
    duration = float(analysis.duration_s) or y.size / sr
    silent = not np.any(y)

    beats = [float(b) for b in analysis.beats_s]
    onset_env = _onset_envelope(y, sr) if not silent else None
    ts = analysis_beats_per_bar(analysis)
    bars = analysis_bars(analysis)
    bars_estimated = bars is None
    if bars is None:
        bars = estimate_bars(beats, beats_per_bar=ts or 4, onset_env=onset_env, sr=sr)
    sections = analysis_sections(analysis, duration)
    sections_given = sections is not None
    labels_computed = sections_given and not all(s.label for s in sections)
    if labels_computed:
        sections = (label_sections(y, sr, sections) if not silent
                    else [Section(s.start_s, s.end_s, s.label or "A", s.detail) for s in sections])
    novelty = None
    if sections is None:
        if silent:
            sections = [Section(0.0, duration, "A")]
        else:
            sections, nov_t, nov = novelty_sections(y, sr, duration_s=duration, bars_s=bars)
            novelty = (nov_t, nov)
    labels = list(dict.fromkeys(s.label for s in sections))
    colours = {label: _SECTION_COLOURS[i % len(_SECTION_COLOURS)] for i, label in enumerate(labels)}

    mode = mode_name(analysis.mode)
    key_text = f"{analysis.key} {mode}" if analysis.key else "no key"
    ts_text = f"{ts} beats per bar" if ts else None
    summary = [
        f"key {key_text}" + (f" (confidence {analysis.key_confidence:.2f})" if analysis.key else ""),
        f"{analysis.tempo_bpm:.1f} BPM" if analysis.tempo_bpm > 0 else "no tempo",
        *([ts_text] if ts_text else []),
        f"{analysis.loudness_lufs:.1f} LUFS",
        f"{duration:.1f} s",
    ]

    fig = Figure(figsize=(13, 9.5), dpi=100, layout="constrained")
    axes = fig.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 2.4, 0.9, 1.6]})
    ax_wave, ax_chroma, ax_sec, ax_loud = axes
    fig.suptitle(f"{title}\n" + "  ·  ".join(summary) if title else "  ·  ".join(summary), fontsize=12)

    # 1. waveform, beats, bars
    t, lo, hi = _envelope(y, sr)
    _shade(ax_wave, sections, colours, 0.10)
    ax_wave.fill_between(t, lo, hi, color="#33618f", lw=0)
    peak = max(float(np.max(np.abs(y))) if y.size else 0.0, 1e-3)
    ax_wave.set_ylim(-1.08 * peak, 1.25 * peak)
    if beats:
        ax_wave.vlines(beats, -1.08 * peak, 1.08 * peak, color="0.45", lw=0.5, alpha=0.6, label=f"beats ({len(beats)})")
    if bars:
        ax_wave.vlines(bars, -1.08 * peak, 1.08 * peak, color="#e8731a", lw=1.3,
                       label=f"bars ({len(bars)}{', estimated' if bars_estimated else ''})")
        every = max(1, math.ceil(len(bars) / 30))
        for i, b in enumerate(bars):
            if i % every == 0:
                ax_wave.text(b, 1.12 * peak, str(i + 1), fontsize=7, color="#b8560c", ha="center", va="center")
    ax_wave.set_ylabel("amplitude")
    estimated_note = " (bars estimated from the beats)" if bars_estimated and bars else ""
    ax_wave.set_title("waveform, beats and bars" + estimated_note, fontsize=10, loc="left")
    if beats or bars:
        ax_wave.legend(loc="lower right", fontsize=8, framealpha=0.85)

    # 2. chromagram and key
    if not silent:
        chroma = librosa.feature.chroma_stft(y=y, sr=sr, n_fft=2 * _CHROMA_HOP, hop_length=_CHROMA_HOP, norm=None)
        # each frame scaled to its maximum, except near-silent frames, which stay dark
        frame_max = chroma.max(axis=0)
        chroma = chroma / np.maximum(frame_max, 0.02 * float(frame_max.max()) + 1e-12)
    else:
        chroma = np.zeros((12, max(1, int(duration * sr / _CHROMA_HOP))))
    ax_chroma.imshow(chroma, aspect="auto", origin="lower", extent=(0, chroma.shape[1] * _CHROMA_HOP / sr, -0.5, 11.5),
                     cmap="magma", interpolation="nearest", vmin=0, vmax=1)
    names = _pitch_names(analysis.key, mode)
    tonic = _tonic_pc(analysis.key)
    ax_chroma.set_yticks(range(12), names, fontsize=8)
    if tonic is not None:
        scale = {(tonic + d) % 12 for d in (_MINOR_SCALE if mode == "minor" else _MAJOR_SCALE)}
        for pc, label in enumerate(ax_chroma.get_yticklabels()):
            if pc == tonic:
                label.set_fontweight("bold")
                label.set_color("#0a7d8c")
            elif pc not in scale:
                label.set_color("0.6")
        ax_chroma.axhspan(tonic - 0.5, tonic + 0.5, fill=False, edgecolor="#2ad4e8", lw=1.2)
        ax_chroma.set_title(f"key: {key_text}, confidence {analysis.key_confidence:.2f}", fontsize=10, loc="right",
                            fontweight="bold", color="#0a7d8c")
    ax_chroma.set_ylabel("pitch class")
    ax_chroma.set_title(f"chromagram, key {key_text} (tonic outlined; grey: outside the scale)",
                        fontsize=10, loc="left")

    # 3. sections
    for s in sections:
        ax_sec.axvspan(s.start_s, s.end_s, ymin=0.0, ymax=1.0, color=colours[s.label], alpha=0.55, lw=0)
        ax_sec.axvline(s.start_s, color="white", lw=1.5)
        text = f"{s.label}\n{s.detail}" if s.detail else s.label
        ax_sec.text(0.5 * (s.start_s + s.end_s), 0.5, text, ha="center", va="center", fontsize=9, fontweight="bold",
                    clip_on=True)
    ax_sec.set_ylim(0, 1)
    ax_sec.set_yticks([])
    if novelty is not None:
        nov_t, nov = novelty
        ax_sec.plot(nov_t, 0.05 + 0.9 * nov, color="black", lw=0.8, alpha=0.6, label="novelty")
        ax_sec.legend(loc="upper right", fontsize=7, framealpha=0.7)
    if sections_given:
        origin = "from the analysis" + ("; letters: similar sections share one" if labels_computed else "")
    else:
        origin = "silence" if silent else "estimated: novelty segmentation; letters: similar sections share one"
    ax_sec.set_title(f"sections ({len(sections)}, {origin})", fontsize=10, loc="left")

    # 4. loudness
    lt, momentary, short = loudness_curves(native, sr_native)
    _shade(ax_loud, sections, colours, 0.10)
    ax_loud.plot(lt, momentary, color="0.6", lw=0.7, label="momentary (400 ms)")
    ax_loud.plot(lt, short, color="#c0392b", lw=1.6, label="short-term (3 s)")
    ax_loud.axhline(analysis.loudness_lufs, color="black", ls="--", lw=1.0,
                    label=f"integrated {analysis.loudness_lufs:.1f} LUFS")
    finite = momentary[np.isfinite(momentary)]
    top = float(finite.max()) if finite.size else analysis.loudness_lufs
    bottom = max(-70.0, min(float(np.percentile(finite, 2)) if finite.size else -70.0, analysis.loudness_lufs) - 6.0)
    ax_loud.set_ylim(bottom, max(top, analysis.loudness_lufs) + 3.0)
    ax_loud.set_ylabel("LUFS")
    ax_loud.set_xlabel("time (s)")
    ax_loud.set_title("loudness (K-weighted, BS.1770)", fontsize=10, loc="left")
    ax_loud.legend(loc="lower right", fontsize=8, ncol=3, framealpha=0.85)
    ax_loud.set_xlim(0, duration)
    for ax in axes:
        ax.tick_params(labelsize=8)

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
