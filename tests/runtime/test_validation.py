"""Bounds and character sets of caller-supplied strings (musicaas.runtime.validation)."""

from __future__ import annotations

import pytest

from musicaas.runtime import validation as v
from musicaas.runtime.errors import InvalidArgument


@pytest.mark.parametrize("value", ["*", ">", "../x", "trk_", "trk_" + "0" * 23, "TRK_" + "0" * 24, "trk_" + "g" * 24,
                                   "music.tracks.>", "trk_" + "0" * 24 + " ", "x" * 10_000])
def test_track_ids_that_are_not_ids_are_invalid_argument(value):
    with pytest.raises(InvalidArgument) as info:
        v.check_track_id(value)
    assert info.value.message.startswith("track_id ")
    assert len(info.value.message) < 200  # a 10 kB id is not echoed back


def test_a_real_track_id_passes():
    assert v.check_track_id("trk_" + "0123456789abcdef01234567") == "trk_0123456789abcdef01234567"
    with pytest.raises(InvalidArgument, match="track_id is empty"):
        v.check_track_id("")


@pytest.mark.parametrize("value", ["a.b", "*", ">", "a/b", "x" * 65, "é"])
def test_generation_ids_outside_the_alphabet_are_refused(value):
    with pytest.raises(InvalidArgument, match="generation_id"):
        v.check_generation_id(value)


def test_generation_ids_in_the_alphabet_pass():
    for value in ("gen_0123", "my-job-1", "A" * 64):
        assert v.check_generation_id(value) == value


def test_filename_bounds_and_characters():
    assert v.check_filename("Bach – BWV 269.wav") == "Bach – BWV 269.wav"
    assert v.check_filename("") == ""
    assert v.check_filename("é" * 127)  # 254 bytes of UTF-8
    with pytest.raises(InvalidArgument, match=r"filename is 256 bytes long, more than 255"):
        v.check_filename("é" * 128)
    with pytest.raises(InvalidArgument, match=r"filename is 5000 bytes"):
        v.check_filename("a" * 5000)
    for bad in ("a\x00b.wav", "line\nbreak.wav", "rtl\u202eevil.wav", "a\u2028b"):
        with pytest.raises(InvalidArgument, match="control character"):
            v.check_filename(bad)
    for bad in ("../etc/passwd", "dir/x.wav", "c:\\x.wav"):
        with pytest.raises(InvalidArgument, match="without a path"):
            v.check_filename(bad)


def test_title_and_content_type():
    assert v.check_title("t" * 256)
    with pytest.raises(InvalidArgument, match="title is 1048576 characters long, more than 256"):
        v.check_title("t" * (1 << 20))
    with pytest.raises(InvalidArgument, match="control character"):
        v.check_title("tab\there")
    assert v.check_content_type("audio/wav") == "audio/wav"
    assert v.check_content_type("audio/x-flac") == "audio/x-flac"
    assert v.check_content_type("") == ""
    for bad in ("audio", "audio/wav; rate=1", "a" * 200 + "/b", "audio/wav\n"):
        with pytest.raises(InvalidArgument, match="content_type must be a MIME type"):
            v.check_content_type(bad)


def test_quote_is_bounded_and_printable():
    assert v.quote("short") == "'short'"
    long = v.quote("x" * 10_000)
    assert long.endswith("... (10000 characters)") and len(long) < v.QUOTE_CHARS + 40
    assert "\n" not in v.quote("a\nb") and "\\n" in v.quote("a\nb")
    assert v.quote(b"\xff\xfe") == repr("\ufffd\ufffd")
