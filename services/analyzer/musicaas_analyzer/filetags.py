"""A file's own descriptive tags (title, artist, composer, album, year, genre), read safely.

:func:`read_file_metadata` reads the tags of an upload with mutagen (Quod Libet's tag
library) and returns them as a ``common_pb2.TrackMetadata``, bounded and cleaned by the
platform's shared rules (:mod:`musicaas.metadata`, lenient mode: control characters
removed, text cut at 512 characters, a year that is no year left at 0). The upload consumer
merges them under what the uploader gave (:func:`musicaas.metadata.merge`).

================  ==================  =====================  ===============================
tag system        containers          mutagen class          fields read
================  ==================  =====================  ===============================
ID3v2 (and v1)    MP3, WAV (``id3``   ``MP3``, ``WAVE``,     TIT2, TPE1 (else TPE2), TCOM,
                  chunk), AIFF        ``AIFF``               TALB, TDRC (v2.3 TYER), TCON
Vorbis comments   FLAC, Ogg Vorbis,   ``FLAC``,              TITLE, ARTIST (else
                  Ogg Opus, Ogg FLAC  ``OggVorbis``, ...     ALBUMARTIST), COMPOSER, ALBUM,
                                                             DATE (else YEAR), GENRE
MP4 atoms         M4A / MP4           ``MP4``                ©nam, ©ART (else aART), ©wrt,
                                                             ©alb, ©day, ©gen (else gnre)
SMF text events   Standard MIDI File  (read here)            the first track's name (FF 03)
================  ==================  =====================  ===============================

Hostile files are expected: mutagen reads the file through a reader that refuses to hand
out more than :data:`MAX_TAG_READ_BYTES` bytes in all (a 200 MB ID3 frame or Vorbis comment
is never held in memory), each value is looked at for its first few thousand characters
only, and any failure (a broken tag, a truncated file, a format mutagen does not know)
gives empty metadata and one warning log line naming the error class, never the file's text.
Free ``tags`` are not read from files (no tag system has a standard field for them).
"""

from __future__ import annotations

import io
import os
import struct

import structlog

from musicaas import metadata as md
from musicaas.common.v1 import common_pb2

log = structlog.get_logger()

#: Most bytes mutagen may read from one file, in all (tags, cover art, stream headers).
MAX_TAG_READ_BYTES = 64 * 1024 * 1024
#: Most bytes of a Standard MIDI File's first track scanned for its name.
MAX_MIDI_SCAN_BYTES = 64 * 1024


class TagBudgetExceeded(OSError):
    """Reading the tags would read more than :data:`MAX_TAG_READ_BYTES` bytes of the file."""


class _BoundedReader(io.RawIOBase):
    """A read-only view of a binary file that hands out at most ``budget`` bytes in all.

    ``name`` is the upload's file name (mutagen scores formats by its extension); the file
    is never opened by that name.
    """

    def __init__(self, raw, *, budget: int, name: str = "") -> None:
        super().__init__()
        self._raw = raw
        self._left = int(budget)
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._left + 1  # "the rest": allowed only if it fits the budget
        if size > self._left:
            data = self._raw.read(self._left + 1)
            if len(data) > self._left:
                raise TagBudgetExceeded(f"tags need more than {MAX_TAG_READ_BYTES} bytes")
        else:
            data = self._raw.read(size)
        self._left -= len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def _mutagen_formats():
    """The mutagen file types tried, those of the containers the platform accepts and MP4
    (a smaller parser surface than every format mutagen knows)."""
    from mutagen.aiff import AIFF
    from mutagen.flac import FLAC
    from mutagen.mp3 import MP3
    from mutagen.mp4 import MP4
    from mutagen.oggflac import OggFLAC
    from mutagen.oggopus import OggOpus
    from mutagen.oggvorbis import OggVorbis
    from mutagen.wave import WAVE

    return [MP3, WAVE, AIFF, FLAC, OggVorbis, OggOpus, OggFLAC, MP4]


# --- one reader per tag system -----------------------------------------------------------


def _id3(tags) -> dict[str, object]:
    def text(*frame_ids: str) -> str:
        for frame_id in frame_ids:
            values = [v for frame in tags.getall(frame_id) for v in getattr(frame, "text", ())]
            if cleaned := md.clean_values(values):
                return cleaned
        return ""

    genres: list[str] = []
    for frame in tags.getall("TCON"):
        genres.extend(getattr(frame, "genres", ()))  # ID3v1 numbers "(17)" decoded to names
    year = 0
    for frame_id in ("TDRC", "TYER", "TDOR"):
        for frame in tags.getall(frame_id):
            for value in getattr(frame, "text", ())[:1]:
                year = year or md.parse_year(value)
    return {"title": text("TIT2"), "artist": text("TPE1", "TPE2"), "composer": text("TCOM"),
            "album": text("TALB"), "genre": md.clean_values(genres), "year": year}


def _vorbis(tags) -> dict[str, object]:
    def text(*keys: str) -> str:
        for key in keys:
            try:
                values = tags[key]  # case-insensitive keys
            except (KeyError, ValueError):
                continue
            if cleaned := md.clean_values(values):
                return cleaned
        return ""

    year = 0
    for key in ("date", "year", "originaldate"):
        try:
            values = tags[key]
        except (KeyError, ValueError):
            continue
        year = year or (md.parse_year(values[0]) if values else 0)
    return {"title": text("title"), "artist": text("artist", "albumartist"), "composer": text("composer"),
            "album": text("album"), "genre": text("genre"), "year": year}


def _mp4(tags) -> dict[str, object]:
    def text(*keys: str) -> str:
        for key in keys:
            if cleaned := md.clean_values(tags.get(key, ())):
                return cleaned
        return ""

    genre = text("\xa9gen")
    if not genre:
        from mutagen.id3 import TCON

        names = []
        for number in list(tags.get("gnre", ()))[: md.MAX_RAW_VALUES]:  # ID3v1 genre number + 1
            if isinstance(number, int) and 1 <= number <= 256:
                names.extend(TCON(text=[str(number - 1)]).genres)
        genre = md.clean_values(names)
    days = list(tags.get("\xa9day", ()))
    return {"title": text("\xa9nam"), "artist": text("\xa9ART", "aART"), "composer": text("\xa9wrt"),
            "album": text("\xa9alb"), "genre": genre, "year": md.parse_year(days[0]) if days else 0}


def _from_tags(tags) -> dict[str, object]:
    from mutagen._vorbis import VComment
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags

    if isinstance(tags, ID3):
        return _id3(tags)
    if isinstance(tags, VComment):
        return _vorbis(tags)
    if isinstance(tags, MP4Tags):
        return _mp4(tags)
    return {}


def _to_proto(fields: dict[str, object]) -> common_pb2.TrackMetadata:
    out = common_pb2.TrackMetadata()
    for field in md.TEXT_FIELDS:
        setattr(out, field, md.clean_text(fields.get(field) or ""))
    out.year = md.parse_year(fields.get("year") or 0)
    return out


# --- Standard MIDI Files -----------------------------------------------------------------


def _vlq(data: bytes, i: int) -> tuple[int, int]:
    """A MIDI variable-length quantity at ``data[i:]``: (value, index after it)."""
    value = 0
    for _ in range(4):
        if i >= len(data):
            raise ValueError("truncated variable-length quantity")
        byte = data[i]
        i += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, i
    raise ValueError("variable-length quantity longer than 4 bytes")


def _decode_midi_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # the traditional encoding of SMF text events


def midi_track_name(head: bytes) -> str:
    """The name (meta event FF 03) of the first track of a Standard MIDI File, from its
    first bytes (``head``: the file's start, at least the header and the first track's
    start), or "" when it has none before its first note or within the bytes given.

    Only the first track is looked at: in a format 1 file it is the conductor track, whose
    name is the sequence's title (SMF 1.0, "Sequence/Track Name"). The text is returned raw;
    :func:`musicaas.metadata.clean_text` bounds it.

    Raises
    ------
    ValueError
        When ``head`` is no Standard MIDI File or its first track is malformed.
    """
    if head[:4] != b"MThd" or len(head) < 14:
        raise ValueError("not a Standard MIDI File")
    (header_len,) = struct.unpack(">I", head[4:8])
    i = 8 + header_len
    while i + 8 <= len(head):  # skip alien chunks up to the first MTrk
        kind, (length,) = head[i:i + 4], struct.unpack(">I", head[i + 4:i + 8])
        if kind == b"MTrk":
            break
        i += 8 + length
    else:
        return ""
    data = head[i + 8: i + 8 + length]
    j, status = 0, 0
    while j < len(data):
        _delta, j = _vlq(data, j)
        if j >= len(data):
            break
        byte = data[j]
        if byte == 0xFF:  # meta event: type, length, data
            if j + 2 > len(data):
                break
            kind = data[j + 1]
            size, k = _vlq(data, j + 2)
            if kind == 0x03:
                return _decode_midi_text(data[k:k + size])
            if kind == 0x2F:  # end of track
                break
            j = k + size
        elif byte in (0xF0, 0xF7):  # sysex: length, data
            size, k = _vlq(data, j + 1)
            j = k + size
        else:
            if byte & 0x80:
                status, j = byte, j + 1
            elif not status:
                raise ValueError("running status without a status byte")
            if status & 0xF0 == 0x90:  # a note on: the name comes before the music or not at all
                break
            j += 1 if status & 0xF0 in (0xC0, 0xD0) else 2
    return ""


def _midi_metadata(file) -> common_pb2.TrackMetadata:
    head = file.read(MAX_MIDI_SCAN_BYTES)
    return _to_proto({"title": midi_track_name(head)})


# --- the entry point ---------------------------------------------------------------------


def read_file_metadata(path: str | os.PathLike, *, filename: str = "") -> common_pb2.TrackMetadata:
    """The descriptive tags of the audio or MIDI file at ``path``, cleaned; never raises.

    Parameters
    ----------
    path : str or os.PathLike
        The file (the upload consumer's spool file).
    filename : str
        The upload's file name: its extension helps mutagen recognise the container.

    Returns
    -------
    common_pb2.TrackMetadata
        ``title``, ``artist``, ``composer``, ``album``, ``genre`` (each at most 512 printable
        characters; several values of one field joined with "; "), ``year`` (0 or 1-9999);
        ``tags`` and ``from_file`` empty. All empty when the file has no tags, or tags that
        cannot be read (a warning is logged with the error class, never the file's text).
    """
    try:
        with open(path, "rb") as raw:
            if raw.read(4) == b"MThd":
                raw.seek(0)
                return _midi_metadata(raw)
            raw.seek(0)
            import mutagen

            reader = _BoundedReader(raw, budget=MAX_TAG_READ_BYTES, name=os.path.basename(filename or ""))
            found = mutagen.File(reader, options=_mutagen_formats())
            if found is None or found.tags is None:
                return common_pb2.TrackMetadata()
            return _to_proto(_from_tags(found.tags))
    except Exception as exc:  # noqa: BLE001 - a file whose tags cannot be read is still analysed
        cause = exc.__cause__ or exc.__context__
        log.warning("file_tags_unreadable", error=type(exc).__name__,
                    cause=type(cause).__name__ if cause is not None else None)
        return common_pb2.TrackMetadata()
