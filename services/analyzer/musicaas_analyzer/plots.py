"""One picture per analysed track: ``musicaas analyze FILE... --plot DIR``.

:func:`track_figure` draws four panels that share the time axis, from the track's audio and
its :class:`~musicaas.common.v1.common_pb2.TrackAnalysis`; :func:`plot_track` writes it as
a PNG.

1. **Waveform** (min/max envelope) with the analysed beats (``beats_s``, thin grey lines)
   and bars (the start of each of ``bars``, orange lines, numbered).
2. **Chromagram** (librosa ``chroma_stft``, 186 ms frames, each frame scaled to its
   maximum; frames more than 17 dB below the loudest frame are dimmed, so near-silence
   stays dark) with the analysed key (``key``, ``mode``): the tonic row is outlined, the
   pitch classes of the key's scale are labelled in black and the others in grey, and the
   key and its confidence are written above the panel.
3. **Sections** (``sections``): coloured spans, each with a letter (similar sections share
   one, see below) and the section's key, also shaded lightly behind the other panels; the
   analyzer's novelty curve (:func:`musicaas_analyzer.structure.novelty_curve`), whose
   peaks are the section boundaries, is drawn over them.
4. **Loudness** over time: momentary (400 ms) and short-term (3 s) loudness of the file's
   own channels, as :mod:`musicaas_analyzer.loudness` measures them (BS.1770 K-weighting,
   LUFS), with the analysed integrated loudness (``loudness_lufs``) as a dashed line.

What the analysis does not carry is computed here and marked "estimated" in the picture:

* **Bars**, when ``bars`` is empty (an analysis made with ``detail=False``): every n-th
  beat, n the analysis's ``time_signature`` (4 when it has none), starting at the beat
  phase with the strongest mean onset strength.
* **Sections**, when ``sections`` is empty: the analyzer's own segmentation
  (:func:`musicaas_analyzer.structure.section_boundaries`, Foote 2000) of the audio, on
  the analysis's beats, moved to its bars.
* **Letters**: the analysis does not label its sections. A section gets the letter of the
  most similar earlier one when the mean of its units (the beat-synchronous MFCC and
  chroma the analyzer segments, :func:`musicaas_analyzer.analysis.section_units`) has a
  cosine similarity of at least :data:`SAME_LABEL_SIMILARITY` with that one's, else a new
  letter.

Reference: Foote, J. (2000), "Automatic audio segmentation using a measure of audio
novelty", *Proc. IEEE ICME*, 452-455.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicaas.common.v1 import common_pb2
from musicaas.keys import tonic_pitch_class
from musicaas.runtime.protoconv import mode_name
from musicaas_analyzer.analysis import ANALYSIS_SAMPLE_RATE_HZ, HOP, section_units
from musicaas_analyzer.decode import decode_native, resample, sniff_container
from musicaas_analyzer.loudness import loudness_profile
from musicaas_analyzer.structure import Units, novelty_curve, section_boundaries

__all__ = [
    "Section", "plot_track", "track_figure", "novelty_sections", "label_sections", "estimate_bars",
    "loudness_curves", "analysis_bars", "analysis_beats_per_bar", "analysis_sections",
]

#: Rate the plots' features are computed at: the analyzer's.
PLOT_SR = ANALYSIS_SAMPLE_RATE_HZ
_CHROMAHOP = 4096
#: Sections whose mean units have at least this cosine similarity share a letter.
SAME_LABEL_SIMILARITY = 0.8

_SHARPS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)  # natural minor and the raised leading tone
_SECTION_COLOURS = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#bab0ac",
)


@dataclass(frozen=True)
class Section:
    """A span of the track, seconds, with a label (``"A"``, ``"B"``, …) and an optional
    detail line drawn under it (the section's key when the analysis has one)."""

    start_s: float
    end_s: float
    label: str
    detail: str = ""


# --- reading the analysis ------------------------------------------------------------------


def _key_text(tonic: str, mode: int) -> str:
    """``"F# minor"`` from a tonic and a ``common_pb2.Mode``; ``""`` without a key."""
    name = mode_name(mode)
    return f"{tonic} {name}" if tonic and name else tonic


def analysis_bars(analysis: common_pb2.TrackAnalysis) -> list[float] | None:
    """Bar start (downbeat) times from ``analysis.bars``, seconds, or None when it has none."""
    return [float(bar.start_s) for bar in analysis.bars] or None


def analysis_beats_per_bar(analysis: common_pb2.TrackAnalysis) -> int | None:
    """``analysis.time_signature`` (beats per bar), or None when the metre is unknown (0)."""
    return int(analysis.time_signature) or None


def analysis_sections(analysis: common_pb2.TrackAnalysis, duration_s: float) -> list[Section] | None:
    """``analysis.sections`` as spans ending at most at ``duration_s``, unlabelled (``""``),
    with the section's key as the detail line; None when the analysis has none."""
    out = []
    for sec in analysis.sections:
        start, end = float(sec.start_s), float(sec.start_s + sec.duration_s)
        if end > start:
            out.append(Section(start, min(end, duration_s) if duration_s > start else end, "",
                               _key_text(sec.key, sec.mode)))
    return out or None


# --- what the plots compute themselves ---------------------------------------------------


def _letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"S{i + 1}"


def _onset_envelope(y: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    return librosa.onset.onset_strength(y=y, sr=sr, hop_length=HOP)


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
        frames = np.clip(np.round(beats * sr / HOP).astype(int), 0, onset_env.size - 1)
        strength = onset_env[frames]
        phase = int(np.argmax([strength[p::beats_per_bar].mean() for p in range(beats_per_bar)]))
    return [float(t) for t in beats[phase::beats_per_bar]]


def _unit_times(units: Units) -> np.ndarray:
    return units.start_frames * HOP / PLOT_SR


def _similarity_labels(units: Units, edges_s: Sequence[float]) -> list[str]:
    """A letter per span [edges_s[k], edges_s[k+1]): the label of the most similar earlier
    span when their mean units are close (cosine >= SAME_LABEL_SIMILARITY), else a new one."""
    times = _unit_times(units)
    means: list[np.ndarray] = []
    labels: list[str] = []
    for a, b in zip(edges_s[:-1], edges_s[1:]):
        inside = (times >= a) & (times < b)
        vec = units.features[:, inside].mean(axis=1) if inside.any() else np.zeros(units.features.shape[0])
        vec = vec / (np.linalg.norm(vec) + 1e-9)
        sims = [float(vec @ m) for m in means]
        if sims and max(sims) >= SAME_LABEL_SIMILARITY:
            label = labels[int(np.argmax(sims))]
        else:
            label = _letter(len(set(labels)))
        means.append(vec)
        labels.append(label)
    return labels


def _labelled(units: Units, sections: Sequence[Section]) -> list[Section]:
    letters = _similarity_labels(units, [s.start_s for s in sections] + [sections[-1].end_s])
    return [Section(s.start_s, s.end_s, s.label or letter, s.detail) for s, letter in zip(sections, letters)]


def novelty_sections(
    y: np.ndarray, sr: int, *, duration_s: float, beats_s: Sequence[float] = (), bars_s: Sequence[float] = ()
) -> tuple[list[Section], np.ndarray, np.ndarray]:
    """Sections of mono audio as the analyzer finds them (module docstring), lettered.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], float, full scale 1.0
    sr : int > 0, Hz
        Rate of ``y`` (resampled to :data:`PLOT_SR` for the analysis).
    duration_s : float, seconds
    beats_s, bars_s : sequence of float, seconds
        The analysis's beats (the units of the segmentation; 0.5 s frames with fewer than
        16) and bar starts (boundaries move to the nearest within one unit).

    Returns
    -------
    sections : list of Section
        Cover [0, duration_s] without gaps; labels A, B, … (similar sections share one).
    times : np.ndarray
        Start of every unit, seconds.
    novelty : np.ndarray
        The analyzer's novelty curve at ``times``, in [0, 1].
    """
    units = section_units(resample(y, sr, PLOT_SR), beats_s=beats_s)
    bar_frames = np.round(np.asarray(bars_s, dtype=np.float64) * PLOT_SR / HOP).astype(np.int64)
    starts, _confidence = section_boundaries(units, bar_frames)
    edges = [float(t) for t in starts * HOP / PLOT_SR if t < duration_s] + [duration_s]
    sections = _labelled(units, [Section(a, b, "") for a, b in zip(edges[:-1], edges[1:])])
    return sections, _unit_times(units), novelty_curve(units)


def label_sections(y: np.ndarray, sr: int, sections: Sequence[Section], *, beats_s: Sequence[float] = ()) -> list[Section]:
    """The sections with every empty label replaced by a letter given by similarity (the
    same method as :func:`novelty_sections`); labels already given are kept."""
    if all(s.label for s in sections):
        return list(sections)
    return _labelled(section_units(resample(y, sr, PLOT_SR), beats_s=beats_s), sections)


def loudness_curves(samples: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Momentary (400 ms) and short-term (3 s) loudness, LUFS, every 100 ms, as
    :class:`musicaas_analyzer.loudness.LoudnessProfile` measures them.

    Returns (times at the end of each 100 ms segment, momentary, short-term); windows that
    do not fit yet are NaN, digital silence is -inf.
    """
    profile = loudness_profile(samples, sr)
    n = profile.energy.size
    momentary, short = np.full(n, np.nan), np.full(n, np.nan)
    momentary[3:] = profile.momentary_lufs()
    short[29:] = profile.short_term_lufs()
    return profile.edges[1:] / sr, momentary, short


# --- drawing -----------------------------------------------------------------------------


def _pitch_names(tonic: str, mode: str | None) -> tuple[str, ...]:
    flat_keys = {"major": {"F", "Bb", "Eb", "Ab", "Db", "Gb", "Cb"}, "minor": {"D", "G", "C", "F", "Bb", "Eb", "Ab"}}
    return _FLATS if tonic and ("b" in tonic[1:] or tonic in flat_keys.get(mode or "", ())) else _SHARPS


def _envelope(y: np.ndarray, sr: int, columns: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    per = max(1, y.size // columns)
    n = y.size // per
    blocks = y[: n * per].reshape(n, per)
    return (np.arange(n) + 0.5) * per / sr, blocks.min(axis=1), blocks.max(axis=1)


def _shade(ax, sections: Sequence[Section], colours: dict[str, str], alpha: float) -> None:
    for s in sections:
        ax.axvspan(s.start_s, s.end_s, color=colours[s.label], alpha=alpha, lw=0)


def _audio(audio_bytes: bytes, analysis: common_pb2.TrackAnalysis, title: str) -> tuple[np.ndarray, int]:
    """The samples the analyzer analysed, (n, channels) float32 at their own rate: the file's
    own, or the General MIDI rendering of a Standard MIDI File."""
    container, _offset = sniff_container(audio_bytes, filename=title or None)
    if container == "midi":
        from musicaas.render import render_midi

        return render_midi(audio_bytes, sample_rate_hz=PLOT_SR)[:, None], PLOT_SR
    decoded = decode_native(audio_bytes, filename=title or None, max_duration_s=max(1800.0, analysis.duration_s + 1.0))
    return decoded.samples, decoded.sample_rate_hz


def track_figure(audio_bytes: bytes, analysis: common_pb2.TrackAnalysis, *, title: str = ""):
    """The figure :func:`plot_track` saves (module docstring), a ``matplotlib.figure.Figure``.

    Its four axes are labelled ``"waveform"``, ``"chromagram"``, ``"sections"`` and
    ``"loudness"`` (``Axes.get_label()``); the drawn analysis has artist ids
    (``Artist.get_gid()``): ``"beats"``, ``"bars"`` and ``"section-starts"`` (vertical line
    collections), ``"momentary"``, ``"short-term"``, ``"integrated"`` and ``"novelty"``
    (lines). Parameters and errors as :func:`plot_track`.
    """
    import librosa
    from matplotlib.figure import Figure

    native, sr_native = _audio(audio_bytes, analysis, title)
    y = resample(native.mean(axis=1), sr_native, PLOT_SR)
    sr = PLOT_SR
    duration = float(analysis.duration_s) or y.size / sr
    silent = not np.any(y)

    beats = [float(b) for b in analysis.beats_s]
    ts = analysis_beats_per_bar(analysis)
    bars = analysis_bars(analysis)
    bars_estimated = bars is None
    if bars is None:
        bars = estimate_bars(beats, beats_per_bar=ts or 4, onset_env=None if silent else _onset_envelope(y, sr), sr=sr)
    sections = analysis_sections(analysis, duration)
    sections_given = sections is not None
    novelty = None
    if silent:
        sections = [Section(s.start_s, s.end_s, "A", s.detail) for s in sections or [Section(0.0, duration, "")]]
    elif sections_given:
        units = section_units(y, beats_s=beats)
        sections = _labelled(units, sections)
        novelty = (_unit_times(units), novelty_curve(units))
    else:
        sections, nov_t, nov = novelty_sections(y, sr, duration_s=duration, beats_s=beats, bars_s=bars)
        novelty = (nov_t, nov)
    labels = list(dict.fromkeys(s.label for s in sections))
    colours = {label: _SECTION_COLOURS[i % len(_SECTION_COLOURS)] for i, label in enumerate(labels)}

    mode = mode_name(analysis.mode)
    key_text = _key_text(analysis.key, analysis.mode) or "no key"
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
    for ax, name in zip(axes, ("waveform", "chromagram", "sections", "loudness")):
        ax.set_label(name)
    fig.suptitle(f"{title}\n" + "  ·  ".join(summary) if title else "  ·  ".join(summary), fontsize=12)

    # 1. waveform, beats, bars
    t, lo, hi = _envelope(y, sr)
    _shade(ax_wave, sections, colours, 0.10)
    ax_wave.fill_between(t, lo, hi, color="#33618f", lw=0)
    peak = max(float(np.max(np.abs(y))) if y.size else 0.0, 1e-3)
    ax_wave.set_ylim(-1.08 * peak, 1.25 * peak)
    if beats:
        ax_wave.vlines(beats, -1.08 * peak, 1.08 * peak, color="0.45", lw=0.5, alpha=0.6, label=f"beats ({len(beats)})",
                       gid="beats")
    if bars:
        ax_wave.vlines(bars, -1.08 * peak, 1.08 * peak, color="#e8731a", lw=1.3,
                       label=f"bars ({len(bars)}{', estimated' if bars_estimated else ''})", gid="bars")
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
        chroma = librosa.feature.chroma_stft(y=y, sr=sr, n_fft=2 * _CHROMAHOP, hop_length=_CHROMAHOP, norm=None)
        # each frame scaled to its maximum, except near-silent frames, which stay dark
        frame_max = chroma.max(axis=0)
        chroma = chroma / np.maximum(frame_max, 0.02 * float(frame_max.max()) + 1e-12)
    else:
        chroma = np.zeros((12, max(1, int(duration * sr / _CHROMAHOP))))
    ax_chroma.imshow(chroma, aspect="auto", origin="lower", extent=(0, chroma.shape[1] * _CHROMAHOP / sr, -0.5, 11.5),
                     cmap="magma", interpolation="nearest", vmin=0, vmax=1)
    names = _pitch_names(analysis.key, mode)
    tonic = tonic_pitch_class(analysis.key) if analysis.key else None
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
    ax_sec.vlines([s.start_s for s in sections], 0.0, 1.0, color="white", lw=1.5, gid="section-starts")
    for s in sections:
        ax_sec.axvspan(s.start_s, s.end_s, ymin=0.0, ymax=1.0, color=colours[s.label], alpha=0.55, lw=0)
        text = f"{s.label}\n{s.detail}" if s.detail else s.label
        ax_sec.text(0.5 * (s.start_s + s.end_s), 0.5, text, ha="center", va="center", fontsize=9, fontweight="bold",
                    clip_on=True)
    ax_sec.set_ylim(0, 1)
    ax_sec.set_yticks([])
    if novelty is not None and novelty[1].any():
        nov_t, nov = novelty
        ax_sec.plot(nov_t, 0.05 + 0.9 * nov, color="black", lw=0.8, alpha=0.6, label="novelty", gid="novelty")
        ax_sec.legend(loc="upper right", fontsize=7, framealpha=0.7)
    if silent:
        origin = "silence"
    elif sections_given:
        origin = "from the analysis; letters: similar sections share one"
    else:
        origin = "estimated: the analyzer's novelty segmentation; letters: similar sections share one"
    ax_sec.set_title(f"sections ({len(sections)}, {origin})", fontsize=10, loc="left")

    # 4. loudness
    lt, momentary, short = loudness_curves(native, sr_native)
    _shade(ax_loud, sections, colours, 0.10)
    ax_loud.plot(lt, momentary, color="0.6", lw=0.7, label="momentary (400 ms)", gid="momentary")
    ax_loud.plot(lt, short, color="#c0392b", lw=1.6, label="short-term (3 s)", gid="short-term")
    ax_loud.axhline(analysis.loudness_lufs, color="black", ls="--", lw=1.0,
                    label=f"integrated {analysis.loudness_lufs:.1f} LUFS", gid="integrated")
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
    return fig


def plot_track(
    audio_bytes: bytes, analysis: common_pb2.TrackAnalysis, *, path: str | Path, title: str = ""
) -> Path:
    """Draw the analysis of one track over its audio and write it as a PNG.

    Parameters
    ----------
    audio_bytes : bytes
        The file that was analysed: WAV, FLAC, Ogg, MP3 or AIFF, or a Standard MIDI File
        (drawn from its General MIDI rendering, which is what the analyzer analyses).
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
        When the bytes cannot be decoded (or the MIDI file rendered); nothing is written.
    """
    fig = track_figure(audio_bytes, analysis, title=title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
