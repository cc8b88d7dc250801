"""Decoding uploads: every supported container, odd sample rates, and real malformed files."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from musicaas.runtime.errors import InvalidArgument
from musicaas_analyzer.decode import SUPPORTED_FORMATS, decode_audio, decode_native, sniff_container

SR = 22050


def audio_bytes(y: np.ndarray, sr: int, *, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    """A real audio file, written by libsndfile into memory."""
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def tone(seconds: float, sr: int = SR, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _stereo(seconds: float = 2.0, sr: int = 44100) -> np.ndarray:
    left = tone(seconds, sr, 440.0)
    return np.stack([left, 0.5 * left], axis=1)


@pytest.mark.parametrize(
    "fmt, subtype, sr, container",
    [
        ("WAV", "PCM_16", 44100, "wav"),
        ("WAV", "FLOAT", 48000, "wav"),
        ("RF64", "PCM_24", 44100, "wav"),
        ("AIFF", "PCM_16", 44100, "aiff"),
        ("AIFF", "FLOAT", 48000, "aiff"),  # written as AIFC ('fl32')
        ("FLAC", "PCM_24", 44100, "flac"),
        ("OGG", "VORBIS", 44100, "ogg"),
        ("OGG", "OPUS", 48000, "ogg"),
        ("MP3", "MPEG_LAYER_III", 44100, "mp3"),
    ],
)
def test_supported_containers_decode_to_mono_at_the_requested_rate(fmt, subtype, sr, container):
    data = audio_bytes(_stereo(2.0, sr), sr, fmt=fmt, subtype=subtype)
    assert sniff_container(data)[0] == container
    y, rate = decode_audio(data, sample_rate_hz=SR)
    assert rate == SR
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(y.size / SR - 2.0) < 0.1  # codecs may pad a few ms
    # the channel mean of 1.0 and 0.5 times a 0.3-amplitude sine: RMS 0.225 / sqrt(2)
    rms = float(np.sqrt(np.mean(y[SR // 4 : -SR // 4] ** 2)))
    assert rms == pytest.approx(0.225 / np.sqrt(2), rel=0.1)


def test_supported_formats_constant():
    assert SUPPORTED_FORMATS == ("wav", "flac", "ogg", "mp3", "aiff")


def test_big_endian_riff_wave_decodes():
    data = audio_bytes(_stereo(1.0, 44100), 44100, fmt="WAV", subtype="PCM_16")
    rifx = io.BytesIO()
    sf.write(rifx, _stereo(1.0, 44100), 44100, format="WAV", subtype="PCM_16", endian="BIG")
    assert rifx.getvalue()[:4] == b"RIFX" and sniff_container(rifx.getvalue()) == ("wav", 0)
    np.testing.assert_array_equal(decode_native(rifx.getvalue()).samples, decode_native(data).samples)


def test_mp3_behind_leading_junk_decodes_from_its_first_frame():
    mp3 = audio_bytes(tone(1.5, 44100)[:, None], 44100, fmt="MP3", subtype="MPEG_LAYER_III")
    junk = b"\x00" * 700 + b"<html>not found</html>" * 20
    assert sniff_container(junk + mp3) == ("mp3", len(junk))
    np.testing.assert_array_equal(decode_native(junk + mp3).samples, decode_native(mp3).samples)


def test_mp3_with_id3_tag_decodes():
    mp3 = audio_bytes(tone(1.5, 44100)[:, None], 44100, fmt="MP3", subtype="MPEG_LAYER_III")
    body = b"TIT2" + (6).to_bytes(4, "big") + b"\x00\x00" + b"\x03Song\x00"
    tag = b"ID3\x03\x00\x00" + bytes([0, 0, 0, len(body) + 64]) + body + bytes(64)
    y, _ = decode_audio(tag + mp3)
    assert abs(y.size / SR - 1.5) < 0.1


@pytest.mark.parametrize("sr", [8000, 96000])
def test_low_and_high_sample_rates(sr):
    data = audio_bytes(tone(1.0, sr, 440.0), sr)
    y, rate = decode_audio(data)
    assert rate == 22050 and abs(y.size - 22050) <= 2
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    assert np.fft.rfftfreq(y.size, 1 / 22050)[np.argmax(spectrum)] == pytest.approx(440.0, abs=2.0)
    native = decode_native(data)
    assert native.sample_rate_hz == sr and native.channels == 1


def test_container_is_sniffed_not_taken_from_the_name():
    flac = audio_bytes(tone(1.0, 44100), 44100, fmt="FLAC")
    y, _ = decode_audio(flac, filename="song.wav")  # mislabelled: still decodes
    assert abs(y.size / SR - 1.0) < 0.01
    assert decode_native(flac, filename="song.mp3").container == "flac"


def _invalid(data: bytes, match: str, **kwargs) -> str:
    with pytest.raises(InvalidArgument, match=match) as info:
        decode_audio(data, **kwargs)
    return info.value.message


def test_empty_bytes():
    _invalid(b"", r"empty audio data \(0 bytes\)")


def test_random_bytes():
    rng = np.random.default_rng(7)
    msg = _invalid(rng.bytes(4096), "unrecognised audio data")
    assert "wav, flac, ogg, mp3" in msg


def test_text_file_named_wav():
    msg = _invalid(b"hello, this is not audio\n" * 20, "is not a WAV file", filename="notes.wav")
    assert "text" in msg and "notes.wav" in msg


def test_truncated_wav_is_decoded_to_where_it_was_cut():
    # issue 12: a header that claims more than the file holds is not refused (streaming
    # writers and cut copies): the samples run to the file's real end
    data = audio_bytes(tone(2.0, 44100), 44100)
    y, sr = decode_audio(data[: len(data) // 2])[:2]
    assert y.size / sr == pytest.approx(1.0, abs=0.01)


def test_truncated_flac():
    data = audio_bytes(tone(2.0, 44100) + 0.01 * np.random.default_rng(0).standard_normal(88200).astype(np.float32), 44100, fmt="FLAC")
    _invalid(data[: len(data) // 2], r"(corrupt or truncated|truncated) FLAC data")


def test_truncated_mp3():
    data = audio_bytes(tone(3.0, 44100), 44100, fmt="MP3", subtype="MPEG_LAYER_III")
    _invalid(data[: len(data) // 3], r"truncated MP3 data: the header declares 3\.\d+ s")


def test_wav_header_only():
    data = audio_bytes(tone(1.0, 44100), 44100)
    _invalid(data[:20], r"corrupt WAV data|truncated WAV")


def test_nan_samples_in_float_wav():
    y = tone(1.0, 44100)
    y[1000] = np.nan
    data = audio_bytes(y, 44100, subtype="FLOAT")
    _invalid(data, r"non-finite samples \(NaN or infinity\), the first at 0\.023 s")


def test_more_than_32_channels_is_refused():
    y = np.stack([tone(1.0, 8000)] * 33, axis=1)
    _invalid(audio_bytes(y, 8000), r"33 audio channels.*at most 32")


def test_one_sample_wav():
    _invalid(audio_bytes(np.array([0.5], dtype=np.float32), 44100), r"too short to analyse: 0\.000 s \(1 sample at 44100 Hz\)")


def test_too_long():
    data = audio_bytes(tone(3.0, 8000), 8000)
    _invalid(data, r"too long.*3\.0 s exceeds the limit of 1 s", max_duration_s=1.0)


def test_unsupported_containers_are_named():
    au = audio_bytes(tone(1.0, 44100), 44100, fmt="AU")
    _invalid(au, r"unsupported container.*Sun AU.*supported formats are wav, flac, ogg, mp3, aiff, midi")
    _invalid(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0", r"MIDI")


def test_bad_parameters():
    data = audio_bytes(tone(1.0, 44100), 44100)
    _invalid(data, r"requested sample rate 100 Hz is out of range", sample_rate_hz=100)
    _invalid(data, r"max_duration_s must be a positive number of seconds", max_duration_s=0)


@pytest.mark.parametrize("fmt, sr", [("WAV", 44100), ("FLAC", 48000), ("WAV", 8000), ("WAV", 22050)])
def test_streaming_decode_gives_the_same_mix_and_loudness(fmt, sr):
    """analyze_bytes decodes block by block, measuring loudness on the way and resampling the
    mono mix as a stream; that must give the samples and the loudness of the one-shot path."""
    from musicaas_analyzer.decode import decode_mono_streaming
    from musicaas_analyzer.loudness import LoudnessAccumulator, integrated_loudness, loudness_profile

    rng = np.random.default_rng(8)
    seconds = 2.0 + 600_000 / sr  # longer than two 2^18-frame decoding blocks
    y = np.stack([tone(seconds, sr, 330.0), 0.3 * rng.standard_normal(int(round(seconds * sr))).astype(np.float32)], axis=1)
    data = audio_bytes(y, sr, fmt=fmt)
    acc = []

    def measure(block, rate):
        if not acc:
            acc.append(LoudnessAccumulator(rate, block.shape[1]))
        acc[0].add(block)

    mix, rate, frames, container = decode_mono_streaming(data, on_block=measure, target_rate_hz=SR)
    one_shot, _ = decode_audio(data, sample_rate_hz=SR)
    assert rate == sr and frames == decode_native(data).samples.shape[0]
    np.testing.assert_array_equal(mix, one_shot)
    assert acc[0].profile().integrated() == pytest.approx(integrated_loudness(decode_native(data).samples, sr), abs=1e-9)
    # The whole profile must match, not just its gated mean: same 100 ms edges, same energies.
    streamed, whole = acc[0].profile(), loudness_profile(decode_native(data).samples, sr)
    np.testing.assert_array_equal(streamed.edges, whole.edges)
    np.testing.assert_allclose(streamed.energy, whole.energy, rtol=1e-9, atol=1e-12)
    assert streamed.loudness_range_lu() == pytest.approx(whole.loudness_range_lu(), abs=1e-9)
