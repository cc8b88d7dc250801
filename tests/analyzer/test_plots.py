"""``musicaas analyze --plot``: one readable PNG per track that draws the analysis where it says
things are (beats, bars, sections, loudness), from the real ``TrackAnalysis`` the analyzer
produces, with and without bars and sections (the plots compute what the analysis does
not carry, with the analyzer's own modules)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from musicaas.common.v1 import common_pb2
from musicaas.render import encode_wav
from musicaas_analyzer.analysis import analyze_bytes
from musicaas_analyzer.convert import analysis_to_proto
from musicaas_analyzer.decode import decode_native
from musicaas_analyzer.loudness import loudness_profile
from musicaas_analyzer.plots import (
    Section,
    analysis_bars,
    analysis_beats_per_bar,
    analysis_sections,
    estimate_bars,
    label_sections,
    loudness_curves,
    novelty_sections,
    plot_track,
    track_figure,
)

SR = 22050
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BAR_ORANGE = (0xE8, 0x73, 0x1A)


def png_info(path) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature and IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "not a PNG file"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND", "PNG is truncated"
    return width, height


def image_pixels(path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(str(path))


def axes(fig) -> dict:
    return {ax.get_label(): ax for ax in fig.axes}


def artist(fig, gid: str):
    found = fig.findobj(lambda a: a.get_gid() == gid)
    assert len(found) == 1, (gid, found)
    return found[0]


def line_xs(fig, gid: str) -> list[float]:
    """x positions of a collection of vertical lines."""
    return [float(seg[0][0]) for seg in artist(fig, gid).get_segments()]


@pytest.fixture(scope="module")
def clip(chorale):
    """The first 12 s of the rendered chorale: WAV bytes and their analysis."""
    wav = encode_wav(chorale["y"][: 12 * SR], sample_rate_hz=SR)
    return wav, analysis_to_proto(analyze_bytes(wav, filename="clip.wav"))


@pytest.fixture(scope="module")
def whole(chorale):
    """The whole 24 s rendering and its analysis, as the analyzer service returns it."""
    wav = encode_wav(chorale["y"], sample_rate_hz=SR)
    return wav, analysis_to_proto(analyze_bytes(wav, filename="chorale.wav"))


def without_structure(analysis):
    """The analysis without bars, sections and metre (as an analysis made with detail=False
    and no metre found)."""
    out = common_pb2.TrackAnalysis()
    out.CopyFrom(analysis)
    for name in ("bars", "sections", "time_signature"):
        out.ClearField(name)
    return out


def with_structure(analysis, *, bars, sections, time_signature=3):
    """The analysis with the given bar starts, sections (start, end, tonic, mode) and metre."""
    out = without_structure(analysis)
    out.time_signature = time_signature
    ends = list(bars[1:]) + [analysis.duration_s]
    for start, end in zip(bars, ends):
        out.bars.add(start_s=start, duration_s=end - start, confidence=1.0)
    for start, end, tonic, mode in sections:
        out.sections.add(start_s=start, duration_s=end - start, confidence=1.0, key=tonic, mode=mode)
    return out


def test_plot_without_bars_or_sections_is_a_readable_png(tmp_path, clip):
    wav, analysis = clip
    analysis = without_structure(analysis)
    assert analysis_sections(analysis, analysis.duration_s) is None
    assert analysis_bars(analysis) is None and analysis_beats_per_bar(analysis) is None
    path = plot_track(wav, analysis, path=tmp_path / "out" / "clip.png", title="clip.wav")
    assert path == tmp_path / "out" / "clip.png" and path.exists()
    width, height = png_info(path)
    assert 1000 <= width <= 2500 and 700 <= height <= 2000
    assert 30_000 < path.stat().st_size < 3_000_000
    pixels = image_pixels(path)
    # not a blank canvas: many distinct colours (waveform, chromagram colour map, spans)
    colours = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200

    fig = track_figure(wav, analysis, title="clip.wav")
    beats = list(analysis.beats_s)
    # bars estimated: every 4th beat (4/4 when the analysis has no metre), on beats
    bars = line_xs(fig, "bars")
    assert len(bars) >= 3 and all(b in beats for b in bars)
    assert np.diff([beats.index(b) for b in bars]).tolist() == [4] * (len(bars) - 1)
    assert "estimated" in axes(fig)["waveform"].get_title(loc="left")
    # sections estimated with the analyzer's segmentation: they tile the track
    starts = line_xs(fig, "section-starts")
    y = decode_native(wav).samples[:, 0]
    expected, _, _ = novelty_sections(y, SR, duration_s=analysis.duration_s, beats_s=beats, bars_s=bars)
    assert starts == pytest.approx([s.start_s for s in expected]) and starts[0] == 0.0
    assert "estimated" in axes(fig)["sections"].get_title(loc="left")


def test_plot_uses_bars_and_sections_from_the_analysis(tmp_path, clip):
    wav, analysis = clip
    given = [(0.0, 4.0, "D", common_pb2.MODE_MAJOR), (4.0, 9.0, "F#", common_pb2.MODE_MINOR),
             (9.0, analysis.duration_s, "F#", common_pb2.MODE_MINOR)]
    bars = [0.5 + 1.5 * i for i in range(8)]
    rich = with_structure(analysis, bars=bars, sections=given)

    sections = analysis_sections(rich, rich.duration_s)
    assert [(s.start_s, s.label, s.detail) for s in sections] == [
        (0.0, "", "D major"), (4.0, "", "F# minor"), (9.0, "", "F# minor")]
    assert [s.end_s for s in sections] == pytest.approx([4.0, 9.0, analysis.duration_s])
    assert analysis_bars(rich) == bars
    assert analysis_beats_per_bar(rich) == 3

    plain_png = plot_track(wav, analysis, path=tmp_path / "plain.png", title="clip.wav")
    rich_png = plot_track(wav, rich, path=tmp_path / "rich.png", title="clip.wav")
    assert png_info(rich_png) == png_info(plain_png)
    a, b = image_pixels(plain_png), image_pixels(rich_png)
    assert np.mean(np.any(a != b, axis=-1)) > 0.01  # different bars and sections drawn

    fig = track_figure(wav, rich, title="clip.wav")
    assert line_xs(fig, "bars") == bars
    assert line_xs(fig, "beats") == list(rich.beats_s)
    assert line_xs(fig, "section-starts") == [0.0, 4.0, 9.0]
    texts = [t.get_text() for t in axes(fig)["sections"].texts]
    assert len(texts) == 3 and [t.split("\n")[1] for t in texts] == ["D major", "F# minor", "F# minor"]
    assert all(t.split("\n")[0] in "ABC" for t in texts)
    assert "3 beats per bar" in fig.get_suptitle()
    assert "estimated" not in axes(fig)["waveform"].get_title(loc="left")


def test_the_analyzers_own_bars_sections_and_loudness_are_drawn_where_they_are(tmp_path, whole):
    wav, analysis = whole
    sections = analysis_sections(analysis, analysis.duration_s)
    bars = analysis_bars(analysis)
    assert sections and bars  # the analyzer always gives both for a 24 s chorale
    assert all(s.end_s > s.start_s for s in sections)
    assert sections[0].start_s == pytest.approx(0.0, abs=0.1)
    assert sections[-1].end_s == pytest.approx(analysis.duration_s, abs=0.1)
    labelled = label_sections(decode_native(wav).samples[:, 0], SR, sections, beats_s=analysis.beats_s)
    assert [s.start_s for s in labelled] == [s.start_s for s in sections]
    assert all(s.label for s in labelled)
    assert bars == sorted(bars) and 0.0 <= bars[0] < analysis.duration_s
    png_info(plot_track(wav, analysis, path=tmp_path / "real.png", title="chorale.wav"))

    fig = track_figure(wav, analysis, title="chorale.wav")
    assert line_xs(fig, "beats") == list(analysis.beats_s)
    assert line_xs(fig, "bars") == [b.start_s for b in analysis.bars]
    assert line_xs(fig, "section-starts") == [s.start_s for s in analysis.sections]
    assert [t.get_text().split("\n")[0] for t in axes(fig)["sections"].texts] == [s.label for s in labelled]
    # the loudness curves are the loudness module's, on the file's own samples
    profile = loudness_profile(decode_native(wav).samples, SR)
    short, momentary = artist(fig, "short-term"), artist(fig, "momentary")
    np.testing.assert_array_equal(short.get_ydata()[29:], profile.short_term_lufs())
    np.testing.assert_array_equal(momentary.get_ydata()[3:], profile.momentary_lufs())
    assert np.isnan(short.get_ydata()[:29]).all()
    np.testing.assert_allclose(short.get_xdata(), profile.edges[1:] / SR)
    assert list(artist(fig, "integrated").get_ydata()) == [analysis.loudness_lufs] * 2
    # the novelty curve is the one the analyzer segmented: every boundary sits at a peak of
    # the height the analysis gives as the section's confidence
    novelty = artist(fig, "novelty")
    t, height = np.asarray(novelty.get_xdata()), (np.asarray(novelty.get_ydata()) - 0.05) / 0.9
    for sec in analysis.sections[1:]:
        near = np.abs(t - sec.start_s) <= 1.5 * 60.0 / analysis.tempo_bpm
        assert np.max(height[near]) == pytest.approx(sec.confidence, abs=1e-5)


def test_the_png_shows_the_bars_at_their_times(whole):
    """Pixel columns of the rendered figure at the analysis's bar times are bar-orange above
    the waveform; halfway between two bars they are not."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    wav, analysis = whole
    fig = track_figure(wav, analysis, title="chorale.wav")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    ax = axes(fig)["waveform"]
    top = ax.get_ylim()[1] / 1.25  # the waveform's peak: bar lines reach 1.08 times it

    def orange_near(x: float) -> bool:
        px, py = ax.transData.transform((x, 1.04 * top))
        row = rgba.shape[0] - int(round(py))
        cols = rgba[row, int(round(px)) - 1 : int(round(px)) + 2, :3].astype(int)
        return bool(np.any(np.abs(cols - BAR_ORANGE).max(axis=1) < 40))

    bars = [b.start_s for b in analysis.bars]
    assert all(orange_near(b) for b in bars)
    assert not any(orange_near(0.5 * (a + b)) for a, b in zip(bars[:-1], bars[1:]))


def test_plot_of_silence_and_of_a_stereo_file(tmp_path):
    silent = encode_wav(np.zeros(3 * SR, dtype=np.float32), sample_rate_hz=SR)
    analysis = analysis_to_proto(analyze_bytes(silent, filename="silence.wav"))
    assert analysis.is_silent
    png_info(plot_track(silent, analysis, path=tmp_path / "silence.png", title="silence"))
    fig = track_figure(silent, analysis, title="silence")
    assert not fig.findobj(lambda a: a.get_gid() in ("beats", "bars", "novelty"))
    assert line_xs(fig, "section-starts") == [0.0]
    assert [t.get_text() for t in axes(fig)["sections"].texts] == ["A"]
    assert "silence" in axes(fig)["sections"].get_title(loc="left")

    import io

    import soundfile as sf

    t = np.arange(6 * 44100) / 44100
    left = 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    stereo_samples = np.stack([left, 0.5 * left], axis=1)
    buf = io.BytesIO()
    sf.write(buf, stereo_samples, 44100, format="FLAC")
    stereo = buf.getvalue()
    analysis = analysis_to_proto(analyze_bytes(stereo, filename="stereo.flac"))
    png_info(plot_track(stereo, analysis, path=tmp_path / "stereo.png", title="stereo.flac"))
    # loudness of both channels at the file's rate, as the analysis measured it
    fig = track_figure(stereo, analysis, title="stereo.flac")
    profile = loudness_profile(decode_native(stereo).samples, 44100)
    np.testing.assert_array_equal(artist(fig, "momentary").get_ydata()[3:], profile.momentary_lufs())
    assert profile.integrated() == pytest.approx(analysis.loudness_lufs, abs=1e-9)


def test_plot_rejects_bytes_that_are_not_audio(tmp_path, clip):
    from musicaas.runtime.errors import InvalidArgument

    _, analysis = clip
    with pytest.raises(InvalidArgument):
        plot_track(b"not audio at all", analysis, path=tmp_path / "x.png", title="x")
    assert not (tmp_path / "x.png").exists()


def _tone(freqs, seconds, *, timbre):
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for f in freqs:
        if timbre == "sine":
            y += np.sin(2 * np.pi * f * t)
        else:  # bright: odd harmonics
            y += sum(np.sin(2 * np.pi * k * f * t) / k for k in (1, 3, 5, 7))
    pulse = 0.6 + 0.4 * (np.sin(2 * np.pi * 2.0 * t) > 0)
    return (0.2 * y * pulse).astype(np.float32)


def test_novelty_segmentation_finds_an_aba_form():
    a = _tone([261.6, 329.6, 392.0], 12, timbre="sine")  # C major, soft
    b = _tone([370.0, 466.2, 277.2], 12, timbre="bright")  # F# major, bright
    y = np.concatenate([a, b, a])
    sections, times, novelty = novelty_sections(y, SR, duration_s=36.0)
    assert novelty.shape == times.shape and novelty.max() == pytest.approx(1.0)
    bounds = [s.start_s for s in sections[1:]]
    assert len(bounds) == 2 and bounds[0] == pytest.approx(12.0, abs=1.0) and bounds[1] == pytest.approx(24.0, abs=1.0)
    labels = [s.label for s in sections]
    assert labels[0] == labels[2] != labels[1]
    assert sections[0].start_s == 0.0 and sections[-1].end_s == 36.0


def test_estimated_bars_start_at_the_strongest_beat_phase():
    beats = [0.5 * i for i in range(12)]
    onset_env = np.zeros(int(6.5 * SR / 512))
    onset_env[np.round(np.array(beats[1::3]) * SR / 512).astype(int)] = 1.0  # accents on beats 1, 4, 7, 10
    assert estimate_bars(beats, beats_per_bar=3, onset_env=onset_env) == beats[1::3]
    assert estimate_bars(beats, beats_per_bar=4) == beats[::4]


def test_short_term_loudness_of_a_steady_tone():
    # a 997 Hz sine at -20 dBFS reads -23.0 LUFS (BS.1770: full-scale sine = -3.01 LUFS)
    t = np.arange(8 * 48000) / 48000
    y = 0.1 * np.sin(2 * np.pi * 997 * t)
    times, momentary, short = loudness_curves(y, 48000)
    assert times[-1] == pytest.approx(8.0, abs=0.1)
    assert np.isnan(short[0]) and np.all(np.isfinite(short[30:]))
    assert np.nanmedian(short) == pytest.approx(-23.0, abs=0.2)
    assert np.nanmedian(momentary) == pytest.approx(-23.0, abs=0.2)
    np.testing.assert_array_equal(short[29:], loudness_profile(y, 48000).short_term_lufs())
