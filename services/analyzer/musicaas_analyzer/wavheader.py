"""What libsndfile does not say about a WAV file: its channel mask, and where its samples end.

Read from the header chunks of RIFF and RIFX WAVE (Microsoft/IBM RIFF WAVE, and Microsoft's
WAVE_FORMAT_EXTENSIBLE), RF64 (EBU Tech 3306) and Sony Wave64 (W64: 16-byte GUID chunk ids,
64-bit little-endian sizes that count the 24-byte chunk header, chunks aligned to 8 bytes):

* The ``dwChannelMask`` of a WAVE_FORMAT_EXTENSIBLE ``fmt`` chunk, which says where each
  channel plays (:mod:`musicaas_analyzer.downmix`); libsndfile reports it for some of these
  containers and not for W64.
* The real length of the samples of a RIFF or RIFX file whose ``data`` chunk size is wrong.
  Streaming writers leave it at 0 or 0xFFFFFFFF, a crashed recorder leaves it at what it had
  written when it last updated it, a cut file has less than it says. The samples are taken
  to run to the file's end (whole frames only) when the size says more than the file holds,
  or is 0 or 0xFFFFFFFF, or says less and what follows is not a sequence of well-formed
  chunks (4 printable ASCII bytes and a size that fits the file, ending at the file's end)
  nor a trailer that is plainly not audio (up to 64 KiB of zero padding, a 128-byte ID3v1
  tag). libsndfile then reads the file through a view whose ``data`` and ``RIFF`` sizes
  say that length (:attr:`WaveHeader.patches`), so that every sample format it knows is
  decoded as usual. A RIFF size field holds at most 4 GiB: samples past that are not read.
  RF64 and W64 carry 64-bit sizes and are read as their headers say.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from musicaas.media import W64_RIFF_GUID, W64_WAVE_GUID

__all__ = ["WaveHeader", "read_wave_header"]

_W64_SUFFIX = b"\xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a"
_W64_FMT = b"fmt " + _W64_SUFFIX
_W64_DATA = b"data" + _W64_SUFFIX

_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_MAX_CHUNKS = 1024
_PADDING_BYTES = 65536
_U32_MAX = 0xFFFFFFFF

ReadAt = Callable[[int, int], bytes]


@dataclass(frozen=True)
class WaveHeader:
    """What :func:`read_wave_header` found.

    Attributes
    ----------
    kind : str
        ``"RIFF"``, ``"RIFX"``, ``"RF64"`` or ``"W64"``.
    channel_mask : int or None
        ``dwChannelMask`` of a WAVE_FORMAT_EXTENSIBLE ``fmt`` chunk; None without one (or 0).
    declared_bytes : int or None
        What the ``data`` chunk's size says (RIFF and RIFX; None otherwise or without one).
    data_bytes : int or None
        Bytes of samples as read: ``declared_bytes``, or the real length when the header lies.
    patches : tuple of (int, bytes)
        Header bytes to show libsndfile in place of the file's, (offset, bytes): the ``data``
        and ``RIFF`` sizes of a lying header; empty when it does not lie.
    """

    kind: str
    channel_mask: int | None = None
    declared_bytes: int | None = None
    data_bytes: int | None = None
    patches: tuple[tuple[int, bytes], ...] = ()


def _printable(tag: bytes) -> bool:
    return len(tag) == 4 and all(0x20 <= b <= 0x7E for b in tag)


def _is_chunks(read_at: ReadAt, pos: int, size: int, endian: str) -> bool:
    """True when ``[pos, size)`` is a sequence of well-formed RIFF chunks (one missing pad
    byte at the very end allowed)."""
    for _ in range(_MAX_CHUNKS):
        if size - pos <= 1:
            return size - pos >= 0
        if size - pos < 8:
            return False
        header = read_at(pos, 8)
        (chunk_size,) = struct.unpack(endian + "I", header[4:8])
        if not _printable(header[:4]) or pos + 8 + chunk_size > size:
            return False
        pos += 8 + chunk_size + (chunk_size & 1)
    return True  # a long run of well-formed chunks: not samples


def _plainly_not_audio(read_at: ReadAt, pos: int, size: int) -> bool:
    """Zero padding (up to 64 KiB) or a lone ID3v1 tag from ``pos`` to the end."""
    n = size - pos
    if n == 128 and read_at(pos, 3) == b"TAG":
        return True
    return 0 < n <= _PADDING_BYTES and not any(read_at(pos, n))


def _fmt_mask(fmt: bytes, endian: str) -> int | None:
    if len(fmt) < 24:
        return None
    (tag,) = struct.unpack(endian + "H", fmt[:2])
    if tag != _WAVE_FORMAT_EXTENSIBLE:
        return None
    (mask,) = struct.unpack(endian + "I", fmt[20:24])
    return mask or None


def _riff(read_at: ReadAt, size: int, kind: str) -> WaveHeader:
    endian = ">" if kind == "RIFX" else "<"
    mask = None
    block_align = 0
    pos = 12
    for _ in range(_MAX_CHUNKS):
        if pos + 8 > size:
            break
        header = read_at(pos, 8)
        chunk, (chunk_size,) = header[:4], struct.unpack(endian + "I", header[4:8])
        if chunk == b"fmt ":
            fmt = read_at(pos + 8, min(chunk_size, 40))
            if len(fmt) >= 14:
                (block_align,) = struct.unpack(endian + "H", fmt[12:14])
            mask = _fmt_mask(fmt, endian)
        elif chunk == b"data":
            if kind == "RF64" or block_align <= 0:
                return WaveHeader(kind, mask)
            return _data(read_at, size, kind, endian, mask, block_align, pos, chunk_size)
        pos += 8 + chunk_size + (chunk_size & 1)
    return WaveHeader(kind, mask)


def _data(
    read_at: ReadAt, size: int, kind: str, endian: str, mask: int | None, block_align: int, pos: int, declared: int
) -> WaveHeader:
    """The real length of the samples of the ``data`` chunk at ``pos`` (module docstring)."""
    start = pos + 8
    present = size - start
    end = start + declared
    if declared not in (0, _U32_MAX) and declared <= present:
        trailer = dict.fromkeys((end + (declared & 1), end))  # the pad byte may be missing
        if any(_is_chunks(read_at, at, size, endian) for at in trailer) or _plainly_not_audio(read_at, end, size):
            return WaveHeader(kind, mask, declared, declared)
    real = min(present - present % block_align, _U32_MAX - _U32_MAX % block_align)
    if real == declared:
        return WaveHeader(kind, mask, declared, declared)
    patches = (
        (pos + 4, struct.pack(endian + "I", real)),
        (4, struct.pack(endian + "I", min(size - 8, _U32_MAX))),
    )
    return WaveHeader(kind, mask, declared, real, patches)


def _w64(read_at: ReadAt, size: int) -> WaveHeader:
    pos = 40
    for _ in range(_MAX_CHUNKS):
        if pos + 24 > size:
            break
        header = read_at(pos, 24)
        (chunk_size,) = struct.unpack("<Q", header[16:24])
        if chunk_size < 24:
            break
        if header[:16] == _W64_FMT:
            return WaveHeader("W64", _fmt_mask(read_at(pos + 24, min(chunk_size - 24, 40)), "<"))
        if header[:16] == _W64_DATA:
            break
        pos += (chunk_size + 7) & ~7
    return WaveHeader("W64")


def read_wave_header(read_at: ReadAt, size: int) -> WaveHeader | None:
    """Read the header chunks of a RIFF/RIFX/RF64 WAVE or Wave64 file (module docstring).

    Parameters
    ----------
    read_at : callable
        ``read_at(pos, n)``: the file's bytes ``[pos, pos + n)`` (fewer at its end).
    size : int >= 0, bytes
        The file's length.

    Returns
    -------
    WaveHeader or None
        None when the file is none of these.
    """
    head = read_at(0, 40)
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return _riff(read_at, size, head[:4].decode("ascii"))
    if head[:16] == W64_RIFF_GUID and head[24:40] == W64_WAVE_GUID:
        return _w64(read_at, size)
    return None
