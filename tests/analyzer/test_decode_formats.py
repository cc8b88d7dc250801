"""Uploads that look unusual but are good audio (issue 12, item 4): multichannel files mixed
down per ITU-R BS.775, every rate from 8 to 384 kHz and every PCM and float sample format in
WAV, AIFF/AIFF-C and Sony Wave64, and WAV files whose header lies about their length. Each
file is a real one, written by libsndfile; lying headers are crafted with ``struct``."""

from __future__ import annotations

import io
import struct
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from musicaas import media
from musicaas.runtime.errors import InvalidArgument
from musicaas_analyzer.analysis import analyze_bytes, analyze_file
from musicaas_analyzer.decode import (
    decode_audio,
    decode_mono_streaming,
    decode_mono_streaming_file,
    decode_native,
    sniff_container,
)

SR = 22050
G = 1.0 / np.sqrt(2.0)

#: The mono gain of each channel of a 5.1 file in SMPTE/ITU order (L R C LFE Ls Rs):
#: (Lo + Ro) / 2 of BS.775's Lo = L + 0.7071 C + 0.7071 Ls, Ro = R + 0.7071 C + 0.7071 Rs.
GAINS_5_1 = [0.5, 0.5, G, 0.0, G / 2, G / 2]
#: ... and of a 7.1 file (L R C LFE and two pairs of surrounds).
GAINS_7_1 = GAINS_5_1 + [G / 2, G / 2]

#: One tone per channel, Hz: on whole bins of a 1 s window at 22050 Hz and at every file rate.
TONES = [220.0, 330.0, 440.0, 550.0, 660.0, 770.0, 880.0, 990.0]


def write(y: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None, **kwargs) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype, **kwargs)
    return buf.getvalue()


def tones(seconds: float, sr: int, channels: int, amp: float = 0.1) -> np.ndarray:
    """Channel k carries a sine at TONES[k] (amplitude ``amp``)."""
    t = np.arange(int(round(seconds * sr))) / sr
    return np.stack([amp * np.sin(2 * np.pi * TONES[k] * t) for k in range(channels)], axis=1).astype(np.float32)


def tone_gains(mix: np.ndarray, sr: int, channels: int, amp: float = 0.1) -> np.ndarray:
    """The gain of each channel's tone in ``mix``, read off its spectrum (1 s from the middle,
    Hann window, amplitude corrected)."""
    mid = mix.size // 2
    seg = mix[mid - sr // 2 : mid - sr // 2 + sr].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(seg.size))) * 2.0 / np.hanning(seg.size).sum()
    freqs = np.fft.rfftfreq(seg.size, 1.0 / sr)
    return np.array([spectrum[np.argmin(np.abs(freqs - TONES[k]))] / amp for k in range(channels)])


def wavex(y: np.ndarray, sr: int, mask: int, subtype: str = "PCM_16") -> bytes:
    """A WAVE_FORMAT_EXTENSIBLE WAV (libsndfile's WAVEX) with its channel mask set to ``mask``."""
    data = bytearray(write(y, sr, "WAVEX", subtype))
    fmt = data.find(b"fmt ")
    assert struct.unpack("<H", data[fmt + 8 : fmt + 10])[0] == 0xFFFE
    data[fmt + 8 + 20 : fmt + 8 + 24] = struct.pack("<I", mask)
    return bytes(data)


def w64_extensible(y: np.ndarray, sr: int, mask: int, subtype: str = "PCM_16") -> bytes:
    """A Wave64 file with a WAVE_FORMAT_EXTENSIBLE fmt chunk (libsndfile writes a plain one)."""
    plain = write(y, sr, "W64", subtype)
    data_at = plain.find(b"data\xf3\xac\xd3\x11")
    tag, channels, rate, avg, align, bits = struct.unpack("<HHIIHH", plain[64:80])
    sub_format = struct.pack("<I", tag) + b"\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, avg, align, bits, 22, bits, mask) + sub_format
    fmt_chunk = b"fmt \xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a" + struct.pack("<Q", 24 + len(fmt)) + fmt
    rest = fmt_chunk + plain[data_at:]
    return media.W64_RIFF_GUID + struct.pack("<Q", 40 + len(rest)) + media.W64_WAVE_GUID + rest


def data_size_at(data: bytes) -> int:
    """Offset of a RIFF WAV's data chunk size field."""
    return data.find(b"data") + 4


def with_data_size(data: bytes, size: int, *, riff_size: int | None = None, endian: str = "<") -> bytes:
    out = bytearray(data)
    at = data_size_at(data)
    out[at : at + 4] = struct.pack(endian + "I", size)
    if riff_size is not None:
        out[4:8] = struct.pack(endian + "I", riff_size)
    return bytes(out)


# --- multichannel -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["WAV", "WAVEX", "W64", "AIFF", "FLAC", "RF64"])
def test_5_1_is_mixed_down_with_the_bs775_gains(fmt):
    """Each channel carries its own tone; the mono mix holds each tone at its channel's gain:
    fronts 0.5, centre 0.7071, LFE 0, surrounds 0.3536."""
    data = write(tones(3.0, 48000, 6), 48000, fmt, "PCM_24")
    mix, rate, frames, _ = decode_mono_streaming(data, target_rate_hz=SR)
    assert (rate, frames) == (48000, 144000)
    np.testing.assert_allclose(tone_gains(mix, SR, 6), GAINS_5_1, atol=2e-3)
    # the one-shot decoder mixes the same way
    np.testing.assert_array_equal(decode_native(data).mono(), decode_mono_streaming(data)[0])


def test_ogg_vorbis_5_1_is_read_in_the_vorbis_channel_order():
    """Vorbis puts 5.1 as L C R Ls Rs LFE: the second channel is the centre, the last the LFE."""
    data = write(tones(3.0, 48000, 6), 48000, "OGG", "VORBIS")
    mix, _, _, container = decode_mono_streaming(data, target_rate_hz=SR)
    assert container == "ogg"
    np.testing.assert_allclose(tone_gains(mix, SR, 6), [0.5, G, 0.5, G / 2, G / 2, 0.0], atol=0.02)


def test_the_channel_mask_says_where_each_channel_plays():
    y = tones(2.0, 48000, 6)
    # FL FR FC BC SL SR: the fourth channel is a back centre (0.5), not an LFE (0)
    mix, _, _, _ = decode_mono_streaming(wavex(y, 48000, 0x707), target_rate_hz=SR)
    np.testing.assert_allclose(tone_gains(mix, SR, 6), [0.5, 0.5, G, 0.5, G / 2, G / 2], atol=2e-3)
    # quad (FL FR BL BR) by its mask; without one, four channels are quad too
    quad = tones(2.0, 48000, 4)
    for data in (wavex(quad, 48000, 0x33), write(quad, 48000, "WAV")):
        np.testing.assert_allclose(tone_gains(decode_audio(data)[0], SR, 4), [0.5, 0.5, G / 2, G / 2], atol=2e-3)
    # L R C LFE by its mask (3.1)
    np.testing.assert_allclose(
        tone_gains(decode_audio(wavex(quad, 48000, 0x0F))[0], SR, 4), [0.5, 0.5, G, 0.0], atol=2e-3
    )
    # channels beyond the mask's bits have no known position: 0.5
    np.testing.assert_allclose(
        tone_gains(decode_audio(wavex(quad, 48000, 0x07))[0], SR, 4), [0.5, 0.5, G, 0.5], atol=2e-3
    )


def test_stereo_is_still_the_mean_of_left_and_right():
    rng = np.random.default_rng(1)
    y = rng.uniform(-0.5, 0.5, (48000, 2)).astype(np.float32)
    data = write(y, 48000, "WAV", "FLOAT")
    mix, _, _, _ = decode_mono_streaming(data)
    np.testing.assert_array_equal(mix, (y[:, 0] + y[:, 1]) * np.float32(0.5))
    np.testing.assert_array_equal(decode_native(data).mono(), mix)


@pytest.mark.parametrize("channels", [3, 5, 7, 12, 24, 32])
def test_any_channel_count_up_to_32_is_analysed(channels):
    y = np.repeat(tones(2.0, 48000, 1, amp=0.2), channels, axis=1)
    r = analyze_bytes(write(y, 48000, "WAV", "PCM_16"), filename=f"{channels}ch.wav", detail=False)
    assert r.duration_s == pytest.approx(2.0, abs=1e-9) and r.sample_rate_hz == 48000 and not r.is_silent


def test_more_than_32_channels_are_refused():
    with pytest.raises(InvalidArgument, match=r"33 audio channels \(named 'x.wav'\): at most 32 are supported"):
        analyze_bytes(write(np.zeros((48000, 33), np.float32), 48000, "WAV", "PCM_16"), filename="x.wav")


def test_a_5_1_mix_of_a_chorale_has_the_key_and_tempo_of_its_front_channels(kit):
    """What a user uploads: music in front, ambience behind, and a loud LFE rumble that the
    downmix leaves out."""
    score, _ = kit.chorale_midi("bach/bwv66.6")
    y = kit.render_variant(score, seconds=12.0)
    reference = analyze_bytes(write(y, SR, "WAV", "PCM_24"), detail=False)
    t = np.arange(y.size) / SR
    late = np.concatenate([np.zeros(2205, np.float32), y[:-2205]])
    rumble = 0.9 * np.sin(2 * np.pi * 40.0 * t)
    surround = np.stack([y, y, 0.7 * y, rumble, 0.3 * late, 0.3 * late], axis=1).astype(np.float32)
    r = analyze_bytes(wavex(surround, SR, 0x3F, "PCM_24"), filename="mix51.wav", detail=False)
    assert r.duration_s == pytest.approx(reference.duration_s, abs=1e-9)
    assert r.key == reference.key
    assert r.tempo_bpm == pytest.approx(reference.tempo_bpm, rel=0.02)


# --- rates and sample formats ---------------------------------------------------------------

RATES = [8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000, 352800, 384000]
SUBTYPES = {
    "WAV": ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"],
    "W64": ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"],
    "AIFF": ["PCM_S8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"],  # FLOAT, DOUBLE: AIFF-C
}
CASES = [(fmt, subtype, 44100) for fmt, subtypes in SUBTYPES.items() for subtype in subtypes] + [
    (fmt, SUBTYPES[fmt][i % 6], rate) for fmt in SUBTYPES for i, rate in enumerate(RATES) if rate != 44100
]


def _check_decoded(data: bytes, sr: int, seconds: float, name: str) -> None:
    assert sniff_container(data)[0] == ("aiff" if name.endswith(".aiff") else "wav")
    assert media.refusal(data, filename=name) is None  # the gateway takes it
    n = int(round(seconds * sr))
    mix, rate, frames, _ = decode_mono_streaming(data, target_rate_hz=SR)
    assert rate == sr and frames == n
    assert mix.size == int(np.ceil(n * SR / sr))
    # the stereo pair's tones at half their amplitude: the samples were read right
    np.testing.assert_allclose(tone_gains(mix, SR, 2, amp=0.4), [0.5, 0.5], atol=0.01)
    r = analyze_bytes(data, filename=name, detail=False)
    assert r.sample_rate_hz == sr and r.duration_s == pytest.approx(n / sr, abs=1e-12) and not r.is_silent


@pytest.mark.parametrize("fmt, subtype, sr", CASES, ids=[f"{f}-{s}-{r}" for f, s, r in CASES])
def test_every_rate_and_sample_format_is_read_and_analysed_to_its_duration(fmt, subtype, sr):
    data = write(tones(1.5, sr, 2, amp=0.4), sr, fmt, subtype)
    if fmt == "AIFF" and subtype in ("FLOAT", "DOUBLE"):
        assert data[8:12] == b"AIFC"
    if fmt == "W64":
        assert data[:16] == media.W64_RIFF_GUID
    _check_decoded(data, sr, 1.5, "upload.aiff" if fmt == "AIFF" else "upload.wav")


def test_little_endian_aiff_c_is_read():
    data = write(tones(1.5, 48000, 2, amp=0.4), 48000, "AIFF", "PCM_16", endian="LITTLE")
    assert data[8:12] == b"AIFC" and b"sowt" in data[:64]
    _check_decoded(data, 48000, 1.5, "upload.aiff")


def test_w64_is_sniffed_as_wav_by_the_gateway_and_the_analyzer():
    data = write(tones(1.0, 48000, 2), 48000, "W64", "PCM_24")
    found = media.sniff(data)
    assert found is not None and found.container.name == "wav" and found.offset == 0
    assert media.refusal(data, filename="take.w64") is None
    assert decode_native(data, filename="take.w64").container == "wav"


def test_7_1_w64_at_384_khz(tmp_path):
    """7.1 Wave64 at 384 kHz, 24-bit: analysed from the file to its duration, each channel
    mixed with its BS.775 gain, with or without a channel mask."""
    sr = 384000
    y = tones(3.0, sr, 8)
    path = tmp_path / "film.w64"
    path.write_bytes(write(y, sr, "W64", "PCM_24"))
    mix, rate, frames, container = decode_mono_streaming_file(path, target_rate_hz=SR)
    assert (rate, frames, container) == (sr, 3 * sr, "wav")
    np.testing.assert_allclose(tone_gains(mix, SR, 8), GAINS_7_1, atol=2e-3)
    r = analyze_file(path, filename="film.w64", detail=False)
    assert r.sample_rate_hz == sr and r.duration_s == pytest.approx(3.0, abs=1e-9) and not r.is_silent
    # with the mask 0x63F (L R C LFE Lb Rb Ls Rs) the gains are the same; with 0xFF the last
    # pair is the front left / right of centre, at the fronts' gain
    for mask, gains in ((0x63F, GAINS_7_1), (0xFF, GAINS_5_1 + [0.5, 0.5])):
        data = w64_extensible(y, sr, mask, "PCM_24")
        assert sniff_container(data)[0] == "wav"
        mix, rate, frames, _ = decode_mono_streaming(data, target_rate_hz=SR)
        assert (rate, frames) == (sr, 3 * sr)
        np.testing.assert_allclose(tone_gains(mix, SR, 8), gains, atol=2e-3)


def test_memory_stays_bounded_for_a_long_multichannel_file(tmp_path):
    """20 s of 7.1 at 384 kHz (246 MB as float32, 492 MB as float64) is decoded from its file
    holding one decoding block and the 22050 Hz mix, not the file's samples."""
    sr, seconds = 384000, 20.0
    path = tmp_path / "long.w64"
    block = tones(1.0, sr, 8)
    with sf.SoundFile(path, "w", sr, 8, format="W64", subtype="PCM_16") as f:
        for _ in range(int(seconds)):
            f.write(block)
    tracemalloc.start()
    try:
        mix, rate, frames, _ = decode_mono_streaming_file(path, target_rate_hz=SR)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frames == int(seconds * sr) and mix.size == int(seconds * SR)
    assert peak < 40e6, f"decoding held {peak / 1e6:.0f} MB"


# --- lying headers ----------------------------------------------------------------------------


def _source(seconds: float = 2.0, sr: int = 44100) -> tuple[np.ndarray, bytes]:
    y = tones(seconds, sr, 2, amp=0.4)
    return y, write(y, sr, "WAV", "PCM_16")


@pytest.mark.parametrize(
    "declared",
    [lambda real: 2 * real, lambda real: real + 1000, lambda real: real // 2, lambda real: 4,
     lambda real: 0, lambda real: 0xFFFFFFFF],
    ids=["twice", "a-little-more", "half", "four-bytes", "zero", "ffffffff"],
)
@pytest.mark.parametrize("riff_size", [None, 0, 0xFFFFFFFF], ids=["riff-ok", "riff-0", "riff-ffffffff"])
def test_a_wav_whose_header_lies_about_its_length_is_read_to_its_real_end(tmp_path, declared, riff_size):
    y, data = _source()
    real = struct.unpack("<I", data[data_size_at(data) : data_size_at(data) + 4])[0]
    lying = with_data_size(data, declared(real), riff_size=riff_size)
    np.testing.assert_array_equal(decode_native(lying).samples, decode_native(data).samples)
    r = analyze_bytes(lying, filename="stream.wav", detail=False)
    assert r.duration_s == pytest.approx(2.0, abs=1e-9)
    path = tmp_path / "stream.wav"
    path.write_bytes(lying)
    assert analyze_file(path, filename="stream.wav", detail=False).duration_s == pytest.approx(2.0, abs=1e-9)
    np.testing.assert_array_equal(decode_mono_streaming_file(path)[0], decode_mono_streaming(data)[0])


def test_a_cut_wav_is_analysed_to_where_it_was_cut():
    """An upload cut short: the data chunk says more than is there; what is there is analysed."""
    _, data = _source(4.0)
    cut = data[: 44 + 2 * 2 * 44100 * 3 + 3]  # 3 s and a partial frame
    assert analyze_bytes(cut, filename="cut.wav", detail=False).duration_s == pytest.approx(3.0, abs=1e-9)


def test_a_big_endian_rifx_whose_header_lies_is_read_to_its_real_end():
    y = tones(2.0, 44100, 2, amp=0.4)
    rifx = write(y, 44100, "WAV", "PCM_24", endian="BIG")
    assert rifx[:4] == b"RIFX"
    lying = with_data_size(rifx, 0, endian=">")
    np.testing.assert_array_equal(decode_native(lying).samples, decode_native(rifx).samples)


def test_a_lying_float_wav_with_a_fact_chunk_is_read_to_its_real_end():
    y = tones(2.0, 48000, 6)
    data = write(y, 48000, "WAVEX", "FLOAT")
    lying = with_data_size(data, 0xFFFFFFFF // 2)
    assert decode_native(lying).samples.shape == (96000, 6)
    np.testing.assert_array_equal(decode_native(with_data_size(data, 24)).samples, decode_native(data).samples)


@pytest.mark.parametrize(
    "trailer",
    [
        b"LIST" + struct.pack("<I", 26) + b"INFOISFT" + struct.pack("<I", 14) + b"Lavf60.16.100\x00",
        b"id3 " + struct.pack("<I", 11) + b"ID3\x04\x00\x00\x00\x00\x00\x01\x00" + b"\x00",
        b"TAG" + bytes(125),  # ID3v1
        bytes(1000),  # zero padding
    ],
    ids=["list-chunk", "id3-chunk-with-pad", "id3v1", "zero-padding"],
)
def test_what_follows_an_honest_data_chunk_is_not_read_as_samples(trailer):
    _, data = _source()
    assert decode_native(data + trailer).samples.shape == decode_native(data).samples.shape
    np.testing.assert_array_equal(decode_native(data + trailer).samples, decode_native(data).samples)


def test_a_data_chunk_that_says_zero_and_holds_nothing_is_still_empty():
    _, data = _source()
    empty = with_data_size(data[: data_size_at(data) + 4], 0)
    with pytest.raises(InvalidArgument, match=r"holds no audio frames"):
        analyze_bytes(empty, filename="empty.wav")
