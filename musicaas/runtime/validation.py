"""Bounds and character sets of every caller-supplied string, checked at the gateway.

Nothing a caller sends reaches NATS (subjects, KV keys, object names), Qdrant or a log line
before it has passed one of these checks; object names and KV keys are derived by the
platform, never from the caller's text. An invalid value raises
:class:`~musicaas.runtime.errors.InvalidArgument` naming the field, and the message quotes
at most :data:`QUOTE_CHARS` characters of what was sent (a 10 kB id is never echoed back).

==================  ==========================  ========================================
field               maximum                     characters
==================  ==========================  ========================================
``filename``        255 bytes of UTF-8          printable Unicode; no control characters,
                    (POSIX ``NAME_MAX``)        no ``/`` or ``\\`` (a name, not a path)
``title``           256 characters              printable Unicode; no control characters
short controls      32 characters               printable Unicode (``params.key``, ...)
``content_type``    127 characters              ``type/subtype`` in the RFC 6838
                                                restricted-name alphabet
track id            ``trk_`` + 24 hex digits    ``[0-9a-f]``
generation id       64 characters               ``[A-Za-z0-9_-]`` (a client may choose it;
                                                it becomes a KV key and an event id)
==================  ==========================  ========================================

Control characters are Unicode general categories Cc, Cf (format, e.g. bidirectional
overrides), Cs, Co and Cn (unassigned), plus the line and paragraph separators Zl, Zp.
"""

from __future__ import annotations

import re
import unicodedata

from musicaas.runtime.errors import InvalidArgument

#: Most characters of a caller's value quoted in an error message.
QUOTE_CHARS = 32
#: Longest file name, in bytes of UTF-8 (POSIX NAME_MAX).
MAX_FILENAME_BYTES = 255
#: Longest title, in characters.
MAX_TITLE_CHARS = 256
#: Longest MIME type, in characters (RFC 6838: 127 for type and subtype together).
MAX_CONTENT_TYPE_CHARS = 127
#: Longest short text control (``GenerationParams.key``, ``metre``, ``style``, a filter's key), in characters.
MAX_CONTROL_CHARS = 32
#: Longest client-chosen generation id, in characters.
MAX_GENERATION_ID_CHARS = 64

TRACK_ID_PATTERN = re.compile(r"trk_[0-9a-f]{24}")
MAX_LISTENER_ID_CHARS = 256
MAX_INTERACTION_ID_CHARS = 128
MAX_SEARCH_TEXT_CHARS = 512
MAX_TAG_CHARS = 64
INTERACTION_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,%d}" % MAX_INTERACTION_ID_CHARS)
GENERATION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,%d}" % MAX_GENERATION_ID_CHARS)
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}"
CONTENT_TYPE_PATTERN = re.compile(f"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}")
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def quote(value: str | bytes) -> str:
    """A short, printable rendering of a caller's value for an error message.

    At most :data:`QUOTE_CHARS` characters of ``value`` (``repr`` escapes anything
    unprintable), followed by the total length when it was cut.
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if len(value) <= QUOTE_CHARS:
        return repr(value)
    return f"{value[:QUOTE_CHARS]!r}... ({len(value)} characters)"


def _first_control(value: str) -> int | None:
    for i, ch in enumerate(value):
        if unicodedata.category(ch) in _CONTROL_CATEGORIES:
            return i
    return None


def _printable(field: str, value: str) -> None:
    i = _first_control(value)
    if i is not None:
        raise InvalidArgument(
            f"{field} contains a control character (U+{ord(value[i]):04X} at position {i}): {quote(value)}"
        )


def check_filename(value: str, *, field: str = "filename") -> str:
    """Check a file name; returns it unchanged. Empty is allowed (the caller gave none).

    Raises
    ------
    InvalidArgument
        Longer than :data:`MAX_FILENAME_BYTES` bytes of UTF-8, a control character, or a
        path separator.
    """
    size = len(value.encode("utf-8", errors="surrogatepass"))
    if size > MAX_FILENAME_BYTES:
        raise InvalidArgument(f"{field} is {size} bytes long, more than {MAX_FILENAME_BYTES}: {quote(value)}")
    _printable(field, value)
    if "/" in value or "\\" in value:
        raise InvalidArgument(f"{field} must be a file name without a path (no '/' or '\\'): {quote(value)}")
    return value


def check_text(value: str, *, field: str, max_chars: int) -> str:
    """Check a short free-text field (a control such as a key name); empty is allowed.

    Raises
    ------
    InvalidArgument
        Longer than ``max_chars`` characters, or a control character.
    """
    if len(value) > max_chars:
        raise InvalidArgument(f"{field} is {len(value)} characters long, more than {max_chars}: {quote(value)}")
    _printable(field, value)
    return value


def check_title(value: str, *, field: str = "title") -> str:
    """Check a title (at most :data:`MAX_TITLE_CHARS` characters, printable); empty is allowed.

    Raises
    ------
    InvalidArgument
        Too long, or a control character.
    """
    return check_text(value, field=field, max_chars=MAX_TITLE_CHARS)


def check_content_type(value: str, *, field: str = "content_type") -> str:
    """Check a MIME type (``type/subtype``, RFC 6838 restricted names); empty is allowed.

    Raises
    ------
    InvalidArgument
        Too long or not of the form ``type/subtype``.
    """
    if not value:
        return value
    if len(value) > MAX_CONTENT_TYPE_CHARS or not CONTENT_TYPE_PATTERN.fullmatch(value):
        raise InvalidArgument(f"{field} must be a MIME type such as 'audio/wav': {quote(value)}")
    return value


def _check_id(value: str, field: str, pattern: re.Pattern, shape: str) -> str:
    if not value:
        raise InvalidArgument(f"{field} is empty")
    if not pattern.fullmatch(value):
        raise InvalidArgument(f"{field} {shape}: {quote(value)}")
    return value


def check_track_id(value: str, *, field: str = "track_id") -> str:
    """Check a track id (``trk_`` and 24 lowercase hex digits).

    Raises
    ------
    InvalidArgument
        Empty or not a track id (e.g. ``*``, ``>``, ``../x``, or 10 kB of text).
    """
    return _check_id(value, field, TRACK_ID_PATTERN, "is not a track id ('trk_' and 24 hex digits)")


def check_generation_id(value: str, *, field: str = "generation_id") -> str:
    """Check a generation id (1 to 64 of ``[A-Za-z0-9_-]``).

    Raises
    ------
    InvalidArgument
        Empty, too long or with other characters.
    """
    return _check_id(value, field, GENERATION_ID_PATTERN,
                     f"must be 1 to {MAX_GENERATION_ID_CHARS} letters, digits, '_' or '-'")


def _check_nonblank(value: str, field: str, max_chars: int) -> str:
    if not value or not value.strip():
        raise InvalidArgument(f"{field} is empty")
    return check_text(value, field=field, max_chars=max_chars)


def check_listener_id(value: str, *, field: str = "listener_id") -> str:
    """Check a listener id: the partner's opaque id, 1 to :data:`MAX_LISTENER_ID_CHARS`
    printable characters, not blank. It is stored as given but never put in a subject, KV key
    or log line (those use a digest).

    Raises
    ------
    InvalidArgument
        Empty, blank, too long, or a control character.
    """
    return _check_nonblank(value, field, MAX_LISTENER_ID_CHARS)


def check_interaction_id(value: str, *, field: str = "interaction_id") -> str:
    """Check an interaction id (1 to 128 of ``[A-Za-z0-9._:-]``).

    Raises
    ------
    InvalidArgument
        Empty, too long or with other characters.
    """
    return _check_id(value, field, INTERACTION_ID_PATTERN,
                     f"must be 1 to {MAX_INTERACTION_ID_CHARS} letters, digits, '.', '_', ':' or '-'")


def check_search_text(value: str, *, field: str = "text") -> str:
    """Check a free-text query: 1 to :data:`MAX_SEARCH_TEXT_CHARS` printable characters, not blank.

    Raises
    ------
    InvalidArgument
        Empty, blank, too long, or a control character.
    """
    return _check_nonblank(value, field, MAX_SEARCH_TEXT_CHARS)


def check_tag(value: str, *, field: str = "tag") -> str:
    """Check one tag: 1 to :data:`MAX_TAG_CHARS` printable characters, not blank.

    Raises
    ------
    InvalidArgument
        Empty, blank, too long, or a control character.
    """
    return _check_nonblank(value, field, MAX_TAG_CHARS)
