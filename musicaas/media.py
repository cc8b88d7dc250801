"""Upload containers: which ones the platform analyses, and how each is recognised.

This module is the one owner of container sniffing. The gateway calls :func:`sniff` on an
upload to refuse what is no audio at once (INVALID_ARGUMENT, with :func:`refusal` as the
message), and the analyzer calls it to choose its reader
(:func:`musicaas_analyzer.decode.sniff_container`), so that both take the same decision on
the same bytes. It uses the standard library only: the gateway image has no numpy,
librosa or soundfile.

The container is identified from the bytes themselves (magic numbers, and for MP3 the MPEG
audio frame headers), never from the file name: a FLAC file named ``song.wav`` is FLAC,
and a text file named ``song.wav`` is refused with a message that says what the bytes are.

:data:`CONTAINERS` is the table, tried in order; the first match wins. After it, an MPEG
audio stream behind up to 64 KiB of leading junk (a broken tag, a web server's padding)
is still MP3. ``reader`` says how the analyzer reads an accepted container: ``"audio"``
is decoded by libsndfile (``soundfile``'s bundled libsndfile 1.2 reads WAV in RIFF, RIFX
and RF64, and Sony Wave64, a WAV with 64-bit sizes that is a ``"wav"`` here too; FLAC,
Ogg Vorbis and Opus, MP3 through mpg123, and AIFF/AIFC), ``"midi"`` is read as notes by
the analyzer's MIDI reader. Containers without a reader are known only so that the
refusal can name them.

References: Microsoft/IBM RIFF WAVE; EBU Tech 3306 (RF64); Sony Wave64 (W64, Sony Media
Software 2003); Apple AIFF 1.3 and AIFF-C;
RFC 9639 (FLAC); RFC 3533 (Ogg); ISO/IEC 11172-3 and 13818-3 (MPEG audio frame header);
ID3v2.4 structure; Standard MIDI File 1.0.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "ACCEPTED",
    "CONTAINERS",
    "Container",
    "SUPPORTED_TEXT",
    "Sniffed",
    "W64_RIFF_GUID",
    "W64_WAVE_GUID",
    "by_name",
    "refusal",
    "sniff",
]

#: How far into the data an MPEG audio stream is looked for behind leading junk, bytes.
MPEG_SEARCH_BYTES = 65536


@dataclass(frozen=True)
class Container:
    """One row of :data:`CONTAINERS`.

    Attributes
    ----------
    name : str
        Short lower-case name (``"wav"``); also the ``container`` the analyzer reports.
    mime_type : str
        Media type of the bytes, for the object store.
    description : str
        What the bytes are, as error messages say it (``"a PNG image"``).
    recognised_by : str
        How it is recognised, in words.
    reader : str or None
        ``"audio"`` (the analyzer decodes it), ``"midi"`` (the analyzer reads its notes),
        or None (refused at upload).
    extensions : tuple of str
        File-name extensions that claim it (lower case, no dot); used only to word the
        refusal of data that is not what its name says.
    match : callable
        ``match(data)``: the offset where the container starts in ``data``, or None.
    """

    name: str
    mime_type: str
    description: str
    recognised_by: str
    reader: str | None
    extensions: tuple[str, ...]
    match: Callable[[bytes], int | None] = field(repr=False, compare=False)

    @property
    def accepted(self) -> bool:
        """True when the platform analyses this container."""
        return self.reader is not None


@dataclass(frozen=True)
class Sniffed:
    """A recognised container and the byte offset where it starts: after a leading ID3v2
    tag for FLAC, at the first MPEG audio frame for MP3 behind leading junk (libsndfile
    recognises neither), 0 otherwise."""

    container: Container
    offset: int = 0


def _mpeg_frame_length(header: bytes) -> int | None:
    """Length in bytes of the MPEG audio frame whose 4-byte header is given, or None."""
    if len(header) < 4 or header[0] != 0xFF or (header[1] & 0xE0) != 0xE0:
        return None
    version = (header[1] >> 3) & 3  # 0: MPEG 2.5, 1: reserved, 2: MPEG 2, 3: MPEG 1
    layer = (header[1] >> 1) & 3  # 1: layer III, 2: layer II, 3: layer I, 0: reserved
    bitrate_index = header[2] >> 4
    rate_index = (header[2] >> 2) & 3
    padding = (header[2] >> 1) & 1
    if version == 1 or layer == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    rates = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
    rate = rates[version][rate_index]
    if version == 3:
        table = {
            3: (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
            2: (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
            1: (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
        }[layer]
    else:
        table = (
            (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256)
            if layer == 3
            else (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
        )
    bitrate = table[bitrate_index - 1] * 1000
    if layer == 3:  # layer I: 4-byte slots
        return (12 * bitrate // rate + padding) * 4
    per_frame = 144 if (layer == 2 or version == 3) else 72
    return per_frame * bitrate // rate + padding


def _find_mpeg_stream(data: bytes, limit: int) -> int | None:
    """Offset of the first of two consecutive valid MPEG audio frames in ``data[:limit + 4]``."""
    end = min(len(data) - 4, limit)
    pos = data.find(b"\xff", 0, end + 1)
    while 0 <= pos <= end:
        length = _mpeg_frame_length(data[pos : pos + 4])
        if length and _mpeg_frame_length(data[pos + length : pos + length + 4]):
            return pos
        pos = data.find(b"\xff", pos + 1, end + 1)
    return None


def _id3v2_length(data: bytes) -> int:
    """Length of a leading ID3v2 tag, header and footer included (0 when there is none)."""
    if len(data) < 10 or data[:3] != b"ID3":
        return 0
    size_bytes = data[6:10]
    if any(b & 0x80 for b in size_bytes):  # a synchsafe integer: 7 bits per byte
        return 0
    size = (size_bytes[0] << 21) | (size_bytes[1] << 14) | (size_bytes[2] << 7) | size_bytes[3]
    footer = 10 if data[5] & 0x10 else 0
    return 10 + size + footer


def _magic(offset: int, magic: bytes) -> Callable[[bytes], int | None]:
    """A matcher for data holding ``magic`` at ``offset``; the container starts at 0."""
    return lambda data: 0 if data[offset : offset + len(magic)] == magic else None


#: GUID of a Sony Wave64 file's ``riff`` chunk, its first 16 bytes.
W64_RIFF_GUID = b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00"
#: GUID of the Wave64 ``wave`` form type, at byte 24.
W64_WAVE_GUID = b"wave\xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a"


def _wav(data: bytes) -> int | None:
    if data[:4] in (b"RIFF", b"RIFX", b"RF64") and data[8:12] == b"WAVE":
        return 0
    return 0 if data[:16] == W64_RIFF_GUID and data[24:40] == W64_WAVE_GUID else None


def _flac(data: bytes) -> int | None:
    tag = _id3v2_length(data)
    return tag if data[tag : tag + 4] == b"fLaC" else None


def _mp3(data: bytes) -> int | None:
    # An ID3v2 tag is, in practice, an MP3 file (FLAC behind one is matched before); the
    # decoder finds the first frame after it.
    return 0 if _id3v2_length(data) or _find_mpeg_stream(data, 0) == 0 else None


def _aiff(data: bytes) -> int | None:
    return 0 if data[:4] == b"FORM" and data[8:12] in (b"AIFF", b"AIFC") else None


def _adts(data: bytes) -> int | None:
    return 0 if len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xF6) == 0xF0 else None


#: Every container the platform knows, in the order they are tried.
CONTAINERS: tuple[Container, ...] = (
    Container("wav", "audio/wav", "WAV", "'RIFF', 'RIFX' or 'RF64', then 'WAVE' at byte 8; or "
              "the Sony Wave64 'riff' GUID, then its 'wave' GUID at byte 24",
              "audio", ("wav", "wave", "w64"), _wav),
    Container("riff", "application/octet-stream", "a RIFF file that is not WAVE (AVI, WebP, ...)",
              "'RIFF' without 'WAVE' at byte 8", None, (), _magic(0, b"RIFF")),
    Container("flac", "audio/flac", "FLAC", "'fLaC', at the start or after an ID3v2 tag",
              "audio", ("flac",), _flac),
    Container("ogg", "audio/ogg", "Ogg (Vorbis, Opus)", "'OggS'",
              "audio", ("ogg", "oga", "opus"), _magic(0, b"OggS")),
    Container("mp3", "audio/mpeg", "MP3",
              "an ID3v2 tag, or two consecutive MPEG audio frame headers at the start or after "
              "up to 64 KiB of leading junk", "audio", ("mp3",), _mp3),
    Container("aiff", "audio/aiff", "AIFF", "'FORM', then 'AIFF' or 'AIFC' at byte 8",
              "audio", ("aif", "aiff", "aifc"), _aiff),
    Container("midi", "audio/midi", "a Standard MIDI File", "'MThd'",
              "midi", ("mid", "midi", "smf"), _magic(0, b"MThd")),
    Container("aac", "audio/aac", "raw AAC (ADTS)", "an ADTS frame sync (0xFFF, layer 0)",
              None, (), _adts),
    Container("iff", "application/octet-stream", "an IFF container other than AIFF", "'FORM'",
              None, (), _magic(0, b"FORM")),
    Container("mp4", "audio/mp4", "MP4/M4A (AAC or ALAC)", "'ftyp' at byte 4",
              None, (), _magic(4, b"ftyp")),
    Container("matroska", "audio/webm", "Matroska/WebM", "the EBML magic 1A 45 DF A3",
              None, (), _magic(0, b"\x1aE\xdf\xa3")),
    Container("au", "audio/basic", "Sun AU", "'.snd'", None, (), _magic(0, b".snd")),
    Container("caf", "audio/x-caf", "Core Audio Format (CAF)", "'caff'", None, (), _magic(0, b"caff")),
    Container("asf", "audio/x-ms-wma", "ASF/WMA", "the ASF header GUID", None, (),
              _magic(0, b"0&\xb2u\x8ef\xcf\x11")),
    Container("amr", "audio/amr", "AMR", "'#!AMR'", None, (), _magic(0, b"#!AMR")),
    Container("ape", "audio/x-ape", "Monkey's Audio (APE)", "'MAC '", None, (), _magic(0, b"MAC ")),
    Container("wavpack", "audio/x-wavpack", "WavPack", "'wvpk'", None, (), _magic(0, b"wvpk")),
    Container("pdf", "application/pdf", "a PDF document", "'%PDF'", None, (), _magic(0, b"%PDF")),
    Container("zip", "application/zip", "a ZIP archive", "'PK' 03 04", None, (), _magic(0, b"PK\x03\x04")),
    Container("png", "image/png", "a PNG image", "89 'PNG'", None, (), _magic(0, b"\x89PNG")),
    Container("jpeg", "image/jpeg", "a JPEG image", "FF D8 FF", None, (), _magic(0, b"\xff\xd8\xff")),
)

#: The containers the platform analyses, in table order.
ACCEPTED: tuple[Container, ...] = tuple(c for c in CONTAINERS if c.accepted)
#: Their names, as error messages list them.
SUPPORTED_TEXT = ", ".join(c.name for c in ACCEPTED)

_BY_NAME = {c.name: c for c in CONTAINERS}
_MP3 = _BY_NAME["mp3"]


def by_name(name: str) -> Container:
    """The row of :data:`CONTAINERS` called ``name`` (KeyError when there is none)."""
    return _BY_NAME[name]


def sniff(data: bytes) -> Sniffed | None:
    """Identify the container of ``data`` (the whole upload, or at least its first 64 KiB).

    Returns
    -------
    Sniffed or None
        The first row of :data:`CONTAINERS` that matches (accepted or not; see
        ``Sniffed.container.accepted``), else MP3 when an MPEG audio stream starts within
        the first :data:`MPEG_SEARCH_BYTES` bytes (``offset`` is where), else None.
    """
    data = data if isinstance(data, bytes) else bytes(data)
    for container in CONTAINERS:
        offset = container.match(data)
        if offset is not None:
            return Sniffed(container, offset)
    start = _find_mpeg_stream(data, MPEG_SEARCH_BYTES)
    return Sniffed(_MP3, start) if start is not None else None


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:  # a multi-byte character may be cut at the end of the sample
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return bool(text) and sum(ch.isprintable() or ch in "\r\n\t" for ch in text) >= 0.95 * len(text)


def refusal(data: bytes, *, filename: str | None = None) -> str | None:
    """Why the platform refuses ``data``, or None when it accepts it.

    The reason names the upload (``filename``, used for nothing else), says what the bytes
    are (a known container, text, or the first bytes) and lists :data:`SUPPORTED_TEXT`.
    """
    named = f" (named {filename!r})" if filename else ""
    supported = f"supported formats are {SUPPORTED_TEXT}"
    if not data:
        return f"empty audio data (0 bytes){named}"
    found = sniff(data)
    if found is not None and found.container.accepted:
        return None
    if found is not None:
        what = found.container.description
        if found.container.name == "riff":
            what = f"a RIFF file of type {bytes(data[8:12]).decode('latin-1')!r}, not WAVE"
        return f"unsupported container{named}: the data is {what}; {supported}"
    head = bytes(data[:256])
    what = "text, not audio" if _looks_like_text(head) else f"starting with bytes {head[:8]!r}"
    ext = os.path.splitext(filename)[1].lower().lstrip(".") if filename else ""
    claimed = next((c for c in ACCEPTED if ext in c.extensions), None) if ext else None
    if claimed is not None:
        return f"data{named} is not a {claimed.name.upper()} file: it is {what}; {supported}"
    return f"unrecognised audio data{named}: {what}; {supported}"
