"""``musicaas analyze --plot``: one readable PNG per track, with or without bars and sections
in the analysis (the plots compute what the analysis does not carry)."""

from __future__ import annotations

import functools
import struct

import numpy as np
import pytest

from musicaas.common.v1 import common_pb2
from musicaas.render import encode_wav
from musicaas_analyzer.analysis import analyze_bytes
from musicaas_analyzer.convert import analysis_to_proto
from musicaas_analyzer.plots import (
    Section,
    analysis_bars,
    analysis_beats_per_bar,
    analysis_sections,
    label_sections,
    loudness_curves,
    novelty_sections,
    plot_track,
)

SR = 22050
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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


@pytest.fixture(scope="module")
def clip(chorale):
    """The first 12 s of the rendered chorale: WAV bytes and their analysis."""
    wav = encode_wav(chorale["y"][: 12 * SR], sample_rate_hz=SR)
    return wav, analysis_to_proto(analyze_bytes(wav, filename="clip.wav"))


@functools.lru_cache(maxsize=1)
def _with_structure_type():
    """A message type with every TrackAnalysis field plus bars, sections and a time signature,
    the way the analysis may carry them (the plots read fields by name)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="test_plots_structure.proto", package="test.plots", syntax="proto3")
    fdp.dependency.append(common_pb2.DESCRIPTOR.name)
    section = fdp.message_type.add(name="Section")
    F = descriptor_pb2.FieldDescriptorProto
    section.field.add(name="start_s", number=1, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    section.field.add(name="end_s", number=2, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    section.field.add(name="label", number=3, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    ts = fdp.message_type.add(name="TimeSignature")
    ts.field.add(name="numerator", number=1, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    ts.field.add(name="denominator", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    real = descriptor_pb2.DescriptorProto()
    common_pb2.TrackAnalysis.DESCRIPTOR.CopyToProto(real)
    msg = fdp.message_type.add(name="Analysis")
    ours = {"bars_s", "sections", "time_signature"}
    for field in real.field:
        if field.name not in ours:  # the analysis's own versions of these are replaced by ours
            msg.field.add().CopyFrom(field)
    msg.field.add(name="bars_s", number=1001, type=F.TYPE_DOUBLE, label=F.LABEL_REPEATED)
    msg.field.add(name="sections", number=1002, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                  type_name=".test.plots.Section")
    msg.field.add(name="time_signature", number=1003, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                  type_name=".test.plots.TimeSignature")
    pool = descriptor_pool.Default()  # holds musicaas/common/v1 and its imports already
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("test.plots.Analysis"))


def with_structure(analysis, *, bars, sections, numerator=3):
    cls = _with_structure_type()
    out = cls.FromString(analysis.SerializeToString())
    out.bars_s.extend(bars)
    for s in sections:
        out.sections.add(start_s=s.start_s, end_s=s.end_s, label=s.label)
    out.time_signature.numerator = numerator
    out.time_signature.denominator = 4
    return out


def without_structure(analysis):
    """The analysis without bars, sections and metre (as analyses before they existed)."""
    out = type(analysis)()
    out.CopyFrom(analysis)
    for name in ("bars", "bars_s", "sections", "time_signature"):
        if name in out.DESCRIPTOR.fields_by_name:
            out.ClearField(name)
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


def test_plot_uses_bars_and_sections_from_the_analysis(tmp_path, clip):
    wav, analysis = clip
    given = [Section(0.0, 4.0, "intro"), Section(4.0, 9.0, "verse"), Section(9.0, analysis.duration_s, "verse")]
    bars = [0.5 + 1.5 * i for i in range(8)]
    rich = with_structure(analysis, bars=bars, sections=given)

    assert analysis_sections(rich, rich.duration_s) == given
    assert analysis_bars(rich) == bars
    assert analysis_beats_per_bar(rich) == 3

    plain_png = plot_track(wav, analysis, path=tmp_path / "plain.png", title="clip.wav")
    rich_png = plot_track(wav, rich, path=tmp_path / "rich.png", title="clip.wav")
    assert png_info(rich_png) == png_info(plain_png)
    a, b = image_pixels(plain_png), image_pixels(rich_png)
    assert np.mean(np.any(a != b, axis=-1)) > 0.01  # different bars and sections drawn


def test_the_analyzers_own_bars_and_sections(tmp_path, chorale):
    if "sections" not in common_pb2.TrackAnalysis.DESCRIPTOR.fields_by_name:
        pytest.skip("TrackAnalysis has no sections field yet")
    wav = encode_wav(chorale["y"], sample_rate_hz=SR)  # 24 s
    analysis = analysis_to_proto(analyze_bytes(wav, filename="chorale.wav"))
    sections = analysis_sections(analysis, analysis.duration_s)
    bars = analysis_bars(analysis)
    if sections:
        assert all(s.end_s > s.start_s for s in sections)
        assert sections[0].start_s == pytest.approx(0.0, abs=0.1)
        assert sections[-1].end_s == pytest.approx(analysis.duration_s, abs=0.1)
        labelled = label_sections(chorale["y"], SR, sections)
        assert [s.start_s for s in labelled] == [s.start_s for s in sections]
        assert all(s.label for s in labelled)
    if bars:
        assert bars == sorted(bars) and 0.0 <= bars[0] < analysis.duration_s
    png_info(plot_track(wav, analysis, path=tmp_path / "real.png", title="chorale.wav"))


def test_plot_of_silence_and_of_a_stereo_file(tmp_path):
    silent = encode_wav(np.zeros(3 * SR, dtype=np.float32), sample_rate_hz=SR)
    analysis = analysis_to_proto(analyze_bytes(silent, filename="silence.wav"))
    assert analysis.is_silent
    png_info(plot_track(silent, analysis, path=tmp_path / "silence.png", title="silence"))

    import io

    import soundfile as sf

    t = np.arange(6 * 44100) / 44100
    left = 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    buf = io.BytesIO()
    sf.write(buf, np.stack([left, 0.5 * left], axis=1), 44100, format="FLAC")
    stereo = buf.getvalue()
    analysis = analysis_to_proto(analyze_bytes(stereo, filename="stereo.flac"))
    png_info(plot_track(stereo, analysis, path=tmp_path / "stereo.png", title="stereo.flac"))


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


def test_short_term_loudness_of_a_steady_tone():
    # a 997 Hz sine at -20 dBFS reads -23.0 LUFS (BS.1770: full-scale sine = -3.01 LUFS)
    t = np.arange(8 * 48000) / 48000
    y = 0.1 * np.sin(2 * np.pi * 997 * t)
    times, momentary, short = loudness_curves(y, 48000)
    assert times[-1] == pytest.approx(8.0, abs=0.1)
    assert np.isnan(short[0]) and np.all(np.isfinite(short[30:]))
    assert np.nanmedian(short) == pytest.approx(-23.0, abs=0.2)
    assert np.nanmedian(momentary) == pytest.approx(-23.0, abs=0.2)
