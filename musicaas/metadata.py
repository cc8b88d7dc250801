"""Descriptive track metadata (``musicaas.common.v1.TrackMetadata``): the one set of rules.

Two callers apply the same bounds to the same fields, in two modes:

* **strict**, the gateway on what a caller uploads (:func:`check_metadata`): a value out of
  bounds raises :class:`~musicaas.runtime.errors.InvalidArgument` naming the field, with a
  message that quotes at most :data:`musicaas.runtime.validation.QUOTE_CHARS` characters of
  the value (:func:`musicaas.runtime.validation.quote`);
* **lenient**, the analyzer on a file's own tags (:func:`clean_text`, :func:`clean_tags`,
  :func:`parse_year`, :func:`clean_metadata`): nothing raises; control characters are
  removed (line breaks and tabs become spaces), text is cut at the bound, and what cannot be
  read (a year ``"abc"``) is left empty.

=============================================  ===========================================
field                                          bound
=============================================  ===========================================
``title``, ``artist``, ``composer``,           at most :data:`MAX_TEXT_CHARS` (512)
``album``, ``genre``                           characters after trimming white space; no
                                               control characters
``year``                                       0 (unknown) or :data:`MIN_YEAR` to
                                               :data:`MAX_YEAR` (1 to 9999)
``tags``                                       at most :data:`MAX_TAGS` (32), each 1 to
                                               :data:`MAX_TAG_CHARS` (64) characters,
                                               lower-cased, runs of white space collapsed,
                                               de-duplicated (first occurrence kept)
=============================================  ===========================================

Control characters are those of :mod:`musicaas.runtime.validation` (Unicode categories Cc,
Cf, Cs, Co, Cn, Zl, Zp). Upload metadata and file tags are merged by :func:`merge`: a field
the caller left empty is taken from the file and named in ``from_file``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from musicaas.common.v1 import common_pb2
from musicaas.runtime import validation
from musicaas.runtime.errors import InvalidArgument

#: Longest title, artist, composer, album or genre, in characters (after trimming).
MAX_TEXT_CHARS = 512
#: Most free tags of one track.
MAX_TAGS = 32
#: Longest free tag, in characters (the platform's tag bound).
MAX_TAG_CHARS = validation.MAX_TAG_CHARS
#: Release year bounds; 0 means unknown.
MIN_YEAR, MAX_YEAR = 1, 9999
#: The free-text fields of ``TrackMetadata``.
TEXT_FIELDS: tuple[str, ...] = ("title", "artist", "composer", "album", "genre")
#: Every descriptive field of ``TrackMetadata``, in ``from_file`` order.
FIELDS: tuple[str, ...] = ("title", "artist", "composer", "album", "year", "genre", "tags")
#: Most characters of one raw file value looked at by the lenient cleaners (a 10 MB tag costs
#: no more than this).
MAX_RAW_CHARS = 4 * MAX_TEXT_CHARS
#: Most raw values of one field looked at (a tag frame may hold thousands).
MAX_RAW_VALUES = 64
#: Separator of several values of one text field (two artists of an ID3 frame).
VALUE_SEPARATOR = "; "

# The categories are validation's (one owner of "control character").
_CONTROL_CATEGORIES = validation._CONTROL_CATEGORIES  # noqa: SLF001
_YEAR_RE = re.compile(r"\s*(\d{1,4})(?![0-9])")


# --- strict: the gateway ---------------------------------------------------------------


def check_text(value: str, *, field: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """``value`` with white space trimmed, checked; empty is allowed (the caller gave none).

    Parameters
    ----------
    value : str
        The caller's text.
    field : str
        Name of the field in the error message (``"metadata.artist"``).
    max_chars : int > 0, characters
        Longest value after trimming.

    Raises
    ------
    InvalidArgument
        Longer than ``max_chars`` characters after trimming, or a control character inside.
    """
    return validation.check_text(value.strip(), field=field, max_chars=max_chars)


def check_year(value: int, *, field: str = "year") -> int:
    """``value`` when it is 0 (unknown) or a year from :data:`MIN_YEAR` to :data:`MAX_YEAR`.

    Raises
    ------
    InvalidArgument
        Any other integer.
    """
    value = int(value)
    if value != 0 and not MIN_YEAR <= value <= MAX_YEAR:
        raise InvalidArgument(f"{field} is {value}: send 0 (unknown) or a year from {MIN_YEAR} to {MAX_YEAR}")
    return value


def _fold_tag(value: str) -> str:
    return " ".join(value.lower().split())


def check_tags(values: Iterable[str], *, field: str = "tags") -> list[str]:
    """The tags trimmed, lower-cased (white space runs collapsed) and de-duplicated, in order.

    Raises
    ------
    InvalidArgument
        More than :data:`MAX_TAGS` tags sent (counted before de-duplication), or one that is
        empty or blank, longer than :data:`MAX_TAG_CHARS` characters, or holds a control
        character (the message names ``field[i]``).
    """
    values = list(values)
    if len(values) > MAX_TAGS:
        raise InvalidArgument(f"{field} has {len(values)} tags, more than {MAX_TAGS}")
    out: dict[str, None] = {}
    for i, raw in enumerate(values):
        name = f"{field}[{i}]"
        text = validation.check_text(raw.strip(), field=name, max_chars=MAX_TAG_CHARS)
        tag = _fold_tag(text)
        if not tag:
            raise InvalidArgument(f"{name} is empty")
        if len(tag) > MAX_TAG_CHARS:  # lower-casing can lengthen a few characters
            raise InvalidArgument(f"{name} is {len(tag)} characters long lower-cased, more than {MAX_TAG_CHARS}")
        out.setdefault(tag, None)
    return list(out)


def check_metadata(meta, *, prefix: str = "metadata") -> common_pb2.TrackMetadata:
    """The checked ``TrackMetadata`` of ``meta``'s descriptive fields.

    Parameters
    ----------
    meta : gateway_pb2.UploadMetadata or common_pb2.TrackMetadata
        Anything with the attributes of :data:`FIELDS` (text fields ``str``, ``year`` ``int``,
        ``tags`` a sequence of ``str``).
    prefix : str
        Prefix of the field names in error messages (``"metadata"`` gives ``metadata.year``).

    Returns
    -------
    common_pb2.TrackMetadata
        Text trimmed, tags folded and de-duplicated; ``from_file`` empty.

    Raises
    ------
    InvalidArgument
        For the first field out of bounds (see the module docstring), naming it.
    """
    name = (lambda f: f"{prefix}.{f}") if prefix else (lambda f: f)
    out = common_pb2.TrackMetadata()
    for field in TEXT_FIELDS:
        setattr(out, field, check_text(getattr(meta, field), field=name(field)))
    out.year = check_year(meta.year, field=name("year"))
    out.tags.extend(check_tags(meta.tags, field=name("tags")))
    return out


# --- lenient: a file's own tags ----------------------------------------------------------


def clean_text(value: object, *, max_chars: int = MAX_TEXT_CHARS) -> str:
    """A file's text value made safe: never raises.

    Only the first :data:`MAX_RAW_CHARS` characters of ``str(value)`` are looked at. Line
    breaks, tabs and other white space become single spaces; other control characters are
    removed; the result is trimmed and cut to ``max_chars`` characters.

    Parameters
    ----------
    value : str (or anything with ``str()``, such as a mutagen text value)
    max_chars : int > 0, characters

    Returns
    -------
    str
        At most ``max_chars`` printable characters; empty when nothing printable was left.
    """
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # noqa: BLE001 - a value that cannot even be rendered is no value
        return ""
    text = text[:MAX_RAW_CHARS]
    kept = []
    for ch in text:
        if ch.isspace():
            kept.append(" ")
        elif unicodedata.category(ch) not in _CONTROL_CATEGORIES:
            kept.append(ch)
    return " ".join("".join(kept).split())[:max_chars].rstrip()


def clean_values(values: Iterable[object], *, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Several values of one field (two artists of a frame) cleaned and joined with
    :data:`VALUE_SEPARATOR`, empty and repeated ones left out, cut to ``max_chars``
    characters; at most :data:`MAX_RAW_VALUES` values are looked at. Never raises."""
    seen: dict[str, None] = {}
    for i, value in enumerate(values):
        if i >= MAX_RAW_VALUES:
            break
        text = clean_text(value, max_chars=max_chars)
        if text:
            seen.setdefault(text, None)
    return VALUE_SEPARATOR.join(seen)[:max_chars].rstrip()


def parse_year(value: object) -> int:
    """The year a file's date text starts with (``"2004"``, ``"2004-05-06"``,
    ``"1999-01-01T00:00:00"``), or 0 when there is none or it is outside 1 to 9999
    (``"abc"``, ``"12345"``). Never raises."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if MIN_YEAR <= value <= MAX_YEAR else 0
    m = _YEAR_RE.match(clean_text(value, max_chars=64))
    if m is None:
        return 0
    year = int(m.group(1))
    return year if MIN_YEAR <= year <= MAX_YEAR else 0


def clean_tags(values: Iterable[object]) -> list[str]:
    """Free tags from a file: cleaned, lower-cased, 1 to :data:`MAX_TAG_CHARS` characters
    (longer ones cut), de-duplicated, at most :data:`MAX_TAGS`. Never raises."""
    out: dict[str, None] = {}
    for i, value in enumerate(values):
        if i >= MAX_RAW_VALUES or len(out) >= MAX_TAGS:
            break
        tag = _fold_tag(clean_text(value, max_chars=4 * MAX_TAG_CHARS))[:MAX_TAG_CHARS].rstrip()
        if tag:
            out.setdefault(tag, None)
    return list(out)


def clean_metadata(meta) -> common_pb2.TrackMetadata:
    """``meta`` (anything with the attributes of :data:`FIELDS`) within the bounds, leniently:
    a copy whose every field passes :func:`check_metadata`. ``from_file`` is kept (only the
    names of :data:`FIELDS`). Never raises."""
    out = common_pb2.TrackMetadata()
    for field in TEXT_FIELDS:
        setattr(out, field, clean_text(getattr(meta, field, "") or ""))
    out.year = parse_year(getattr(meta, "year", 0) or 0)
    out.tags.extend(clean_tags(getattr(meta, "tags", ()) or ()))
    out.from_file.extend(f for f in FIELDS if f in set(getattr(meta, "from_file", ()) or ()))
    return out


def is_empty(meta: common_pb2.TrackMetadata, field: str) -> bool:
    """Whether ``field`` of ``meta`` is unset (empty text, year 0, no tags)."""
    value = getattr(meta, field)
    return not (len(value) if field == "tags" else value)


def merge(given: common_pb2.TrackMetadata, found: common_pb2.TrackMetadata) -> common_pb2.TrackMetadata:
    """``given`` (the upload's) completed with ``found`` (the file's own tags).

    A field of :data:`FIELDS` that is empty in ``given`` and set in ``found`` is taken from
    ``found`` and its name listed in ``from_file`` (in :data:`FIELDS` order); ``given``'s own
    ``from_file`` is ignored. Neither argument is changed.
    """
    out = common_pb2.TrackMetadata()
    out.CopyFrom(given)
    del out.from_file[:]
    for field in FIELDS:
        if is_empty(given, field) and not is_empty(found, field):
            if field == "tags":
                out.tags.extend(found.tags)
            else:
                setattr(out, field, getattr(found, field))
            out.from_file.append(field)
    return out
