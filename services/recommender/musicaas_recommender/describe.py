"""A short English description of a track, for free-text search.

:func:`describe_track` turns what the platform knows about a track into one paragraph that
the text encoder (:mod:`musicaas.models.text_contract`, all-MiniLM-L6-v2) embeds and that a
keyword index (BM25) can match, so that a query such as "slow piano piece in a minor key"
finds tracks whose title says nothing of the kind. It reads plain Python values (keyword
arguments); :func:`describe_protos` reads them from a ``TrackAnalysis`` and a
``TrackMetadata`` message (``musicaas.common.v1``).

The description has up to three sentences, always in this order, each left out when it
would be empty::

    A slow, soft classical instrumental piece with piano, strings and harpsichord.
    Slow tempo at 62 BPM, in the key of D minor, low energy and calm, sombre mood, 2 min 5 s long.
    Title: Ach Gott, vom Himmel sieh darein. Composer: J. S. Bach. Genre: Baroque. Year: 1736. Tags: chorale, hymn.

1. **What it sounds like**, from the musicnn MagnaTagATune tags (``TrackAnalysis.tags``,
   best first). Tags scoring at least :data:`MIN_TAG_SCORE` are kept (always the best
   :data:`ALWAYS_TAGS`, whatever their score); synonyms of the vocabulary are merged
   (:data:`TAG_PHRASES`: "classic" -> "classical", "woman" / "female vocal" -> "female
   vocals", "no vocal" / "no voice" -> instrumental, ...); when both a voice and a
   no-voice tag pass, the better-scored one wins. At most 2 character words ("slow",
   "soft", ...), 2 genres, 3 instruments and 1 voice phrase.
2. **What the signal analysis measured**: tempo in words with the number (slow below
   :data:`SLOW_BELOW_BPM`, fast from :data:`FAST_FROM_BPM`, moderate between: the
   boundaries sit between Andante and Allegro of the usual metronome ranges of tempo
   markings), key and mode ("in the key of D minor"), energy and valence in words (low
   below 1/3, high above 2/3 of ``AudioFeatures``' [0, 1] heuristics; nothing in between),
   and the duration. A silent track is described as silent, nothing else.
3. **Metadata** given by the uploader or read from the file: title, artist, composer,
   album, genre, year and free tags, each with its label. Each text field is clipped to
   :data:`MAX_FIELD_CHARS` characters (genre and free tags shorter), whitespace and control
   characters collapsed; at most :data:`MAX_FREE_TAGS` distinct free tags (case-insensitive).

The result is deterministic (the same inputs give the same string, no randomness, no
locale) and at most :data:`MAX_DESCRIPTION_CHARS` characters, below the text encoder's
:data:`~musicaas.models.text_contract.MAX_TEXT_CHARS` (512): a description that would be
longer is cut at a word boundary and ends with an ellipsis (U+2026), as does a clipped
field. It is never empty (a track about which nothing is known is "A music track.").
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

from musicaas.models.text_contract import MAX_TEXT_CHARS

#: Longest description, characters (< the text encoder's 512).
MAX_DESCRIPTION_CHARS = 500
assert MAX_DESCRIPTION_CHARS < MAX_TEXT_CHARS
#: Tags with a mean probability below this are left out (except the best :data:`ALWAYS_TAGS`).
MIN_TAG_SCORE = 0.2
#: The best tags kept whatever their score (musicnn's probabilities are often low on
#: synthesised audio, and its best guesses still carry the instrument family).
ALWAYS_TAGS = 2
#: Below this tempo a track is "slow", BPM.
SLOW_BELOW_BPM = 80.0
#: From this tempo a track is "fast", BPM.
FAST_FROM_BPM = 120.0
#: Longest title, artist, composer or album kept, characters.
MAX_FIELD_CHARS = 80
#: Longest genre and free tag kept, characters.
MAX_SHORT_FIELD_CHARS = 40
#: Free tags kept (the first ones, in the order given).
MAX_FREE_TAGS = 8

_CHARACTER, _GENRE, _INSTRUMENT, _VOICE, _NO_VOICE = "character", "genre", "instrument", "voice", "no voice"

#: Every musicnn MagnaTagATune tag (:data:`musicaas.models.musicnn_contract.TAG_NAMES`) ->
#: ``(phrase, kind)``; tags mapping to the same phrase are synonyms.
TAG_PHRASES: dict[str, tuple[str, str]] = {
    # character
    "slow": ("slow", _CHARACTER), "fast": ("fast", _CHARACTER), "loud": ("loud", _CHARACTER),
    "quiet": ("quiet", _CHARACTER), "soft": ("soft", _CHARACTER), "solo": ("solo", _CHARACTER),
    "weird": ("strange", _CHARACTER),
    # genre and style
    "classical": ("classical", _GENRE), "classic": ("classical", _GENRE), "techno": ("techno", _GENRE),
    "electronic": ("electronic", _GENRE), "rock": ("rock", _GENRE), "ambient": ("ambient", _GENRE),
    "indian": ("Indian", _GENRE), "opera": ("opera", _GENRE), "pop": ("pop", _GENRE),
    "new age": ("new age", _GENRE), "dance": ("dance", _GENRE), "country": ("country", _GENRE),
    "metal": ("metal", _GENRE),
    # instruments
    "guitar": ("guitar", _INSTRUMENT), "strings": ("strings", _INSTRUMENT), "drums": ("drums", _INSTRUMENT),
    "piano": ("piano", _INSTRUMENT), "violin": ("violin", _INSTRUMENT), "synth": ("synthesizer", _INSTRUMENT),
    "harpsichord": ("harpsichord", _INSTRUMENT), "flute": ("flute", _INSTRUMENT), "sitar": ("sitar", _INSTRUMENT),
    "harp": ("harp", _INSTRUMENT), "cello": ("cello", _INSTRUMENT), "beat": ("beats", _INSTRUMENT),
    "beats": ("beats", _INSTRUMENT),
    # voices
    "vocal": ("vocals", _VOICE), "vocals": ("vocals", _VOICE), "singing": ("vocals", _VOICE),
    "voice": ("vocals", _VOICE), "female": ("female vocals", _VOICE), "woman": ("female vocals", _VOICE),
    "female vocal": ("female vocals", _VOICE), "female voice": ("female vocals", _VOICE),
    "male": ("male vocals", _VOICE), "man": ("male vocals", _VOICE), "male vocal": ("male vocals", _VOICE),
    "male voice": ("male vocals", _VOICE), "choir": ("choir", _VOICE), "choral": ("choir", _VOICE),
    "no vocals": ("instrumental", _NO_VOICE), "no vocal": ("instrumental", _NO_VOICE),
    "no voice": ("instrumental", _NO_VOICE),
}

_LIMITS = {_CHARACTER: 2, _GENRE: 2, _INSTRUMENT: 3, _VOICE: 1, _NO_VOICE: 1}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _clean(text: object, limit: int) -> str:
    """``text`` with control characters and runs of whitespace as one space, clipped to ``limit`` characters."""
    s = " ".join(_CONTROL.sub(" ", str(text or "")).split())
    if len(s) > limit:
        s = s[: limit - 1].rstrip() + "\u2026"
    return s


def _join(words: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(words) <= 2:
        return " and ".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _tag_pairs(tags: Iterable) -> list[tuple[str, float]]:
    """``(name, score)`` of each tag, best first (names alone count as score 1, in their order)."""
    pairs = []
    for i, t in enumerate(tags or ()):
        if isinstance(t, str):
            pairs.append((t, 1.0, i))
        elif hasattr(t, "name") and hasattr(t, "score"):  # a TagScore message
            pairs.append((str(t.name), float(t.score), i))
        else:
            name, score = t
            pairs.append((str(name), float(score), i))
    pairs.sort(key=lambda p: (-p[1], p[2]))
    return [(n, s) for n, s, _ in pairs]


def _sound_sentence(tags: Iterable) -> str:
    chosen: dict[str, list[str]] = {k: [] for k in _LIMITS}
    voice_score = {_VOICE: -1.0, _NO_VOICE: -1.0}
    for rank, (name, score) in enumerate(_tag_pairs(tags)):
        if rank >= ALWAYS_TAGS and score < MIN_TAG_SCORE:
            break
        phrase, kind = TAG_PHRASES.get(name.strip().lower(), (None, None))
        if phrase is None:
            continue
        if kind in voice_score:
            voice_score[kind] = max(voice_score[kind], score)
        if phrase not in chosen[kind] and len(chosen[kind]) < _LIMITS[kind]:
            chosen[kind].append(phrase)
    # a voice and a no-voice tag contradict each other: the better-scored one wins
    if chosen[_VOICE] and chosen[_NO_VOICE]:
        chosen[_NO_VOICE if voice_score[_VOICE] >= voice_score[_NO_VOICE] else _VOICE] = []
    if not any(chosen.values()):
        return ""
    adjectives = chosen[_CHARACTER]
    noun = " ".join([*chosen[_GENRE], *chosen[_NO_VOICE], "piece"])
    head = (", ".join(adjectives) + " " + noun) if adjectives else noun
    withs = chosen[_INSTRUMENT] + chosen[_VOICE]
    article = "An" if head[0].lower() in "aeiou" else "A"
    return f"{article} {head}" + (f" with {_join(withs)}" if withs else "") + "."


def tempo_word(tempo_bpm: float) -> str:
    """``"slow"``, ``"moderate"`` or ``"fast"`` for a tempo in BPM (see the module docstring)."""
    if tempo_bpm < SLOW_BELOW_BPM:
        return "slow"
    return "fast" if tempo_bpm >= FAST_FROM_BPM else "moderate"


def _duration_words(duration_s: float) -> str:
    total = int(round(duration_s))
    minutes, seconds = divmod(total, 60)
    if minutes == 0:
        return f"{seconds} s long"
    return f"{minutes} min {seconds} s long" if seconds else f"{minutes} min long"


def _finite(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _analysis_sentence(*, tempo_bpm, key, mode, energy, valence, duration_s, is_silent) -> str:
    duration = _finite(duration_s)
    if is_silent:
        return "Silent track" + (f", {_duration_words(duration)}" if duration and duration > 0 else "") + "."
    parts: list[str] = []
    tempo = _finite(tempo_bpm)
    if tempo and tempo > 0:
        bpm = int(round(tempo))  # the word goes with the number printed
        parts.append(f"{tempo_word(bpm).capitalize()} tempo at {bpm} BPM")
    mode_s = _clean(mode, 16).lower()
    key_s = _clean(key, 8)
    if mode_s in ("major", "minor"):
        parts.append(f"in the key of {key_s} {mode_s}" if key_s else f"in a {mode_s} key")
    e = _finite(energy)
    if e is not None:
        if e < 1 / 3:
            parts.append("low energy and calm")
        elif e > 2 / 3:
            parts.append("high energy and intense")
    v = _finite(valence)
    if v is not None:
        if v < 1 / 3:
            parts.append("sombre mood")
        elif v > 2 / 3:
            parts.append("bright, cheerful mood")
    if duration and duration > 0:
        parts.append(_duration_words(duration))
    if not parts:
        return ""
    sentence = ", ".join(parts)
    return sentence[0].upper() + sentence[1:] + "."


def _metadata_sentence(*, title, artist, composer, album, genre, year, free_tags) -> str:
    parts = []
    for label, value, limit in (("Title", title, MAX_FIELD_CHARS), ("Artist", artist, MAX_FIELD_CHARS),
                                ("Composer", composer, MAX_FIELD_CHARS), ("Album", album, MAX_FIELD_CHARS),
                                ("Genre", genre, MAX_SHORT_FIELD_CHARS)):
        v = _clean(value, limit).rstrip(".")
        if v:
            parts.append(f"{label}: {v}.")
    try:
        y = int(year or 0)
    except (TypeError, ValueError):
        y = 0
    if 0 < y < 10000:
        parts.append(f"Year: {y}.")
    tags, seen = [], set()
    for t in free_tags or ():
        v = _clean(t, MAX_SHORT_FIELD_CHARS).rstrip(".")
        if v and v.lower() not in seen:
            seen.add(v.lower())
            tags.append(v)
        if len(tags) >= MAX_FREE_TAGS:
            break
    if tags:
        parts.append("Tags: " + ", ".join(tags) + ".")
    return " ".join(parts)


def describe_track(
    *,
    tempo_bpm: float | None = None,
    key: str | None = None,
    mode: str | None = None,
    energy: float | None = None,
    valence: float | None = None,
    duration_s: float | None = None,
    is_silent: bool = False,
    tags: Iterable = (),
    title: str = "",
    artist: str = "",
    composer: str = "",
    album: str = "",
    genre: str = "",
    year: int = 0,
    free_tags: Iterable[str] = (),
) -> str:
    """A deterministic English description of a track, at most :data:`MAX_DESCRIPTION_CHARS` characters.

    Parameters
    ----------
    tempo_bpm : float >= 0, BPM, optional
        Global tempo; ``None`` or 0 when unknown (left out).
    key : str, optional
        Tonic as spelled in key signatures (``"D"``, ``"F#"``, ``"Bb"``); empty when none.
    mode : str, optional
        ``"major"`` or ``"minor"``; anything else leaves key and mode out.
    energy, valence : float in [0, 1], optional
        ``AudioFeatures.energy`` / ``.valence``; words only below 1/3 or above 2/3.
    duration_s : float > 0, seconds, optional
    is_silent : bool
        The analyzer found digital silence: the analysis sentence says so and nothing else.
    tags : iterable
        The musicnn tags, best first: ``(name, score)`` pairs with score in [0, 1],
        ``TagScore`` messages, or names alone (then all kept up to the per-kind limits).
        Names outside the MagnaTagATune vocabulary (:data:`TAG_PHRASES`) are ignored.
    title, artist, composer, album, genre : str
        Metadata; empty fields are left out.
    year : int in [1, 9999], optional
        0 when unknown.
    free_tags : iterable of str
        The uploader's free tags (the first :data:`MAX_FREE_TAGS` distinct ones).

    Returns
    -------
    str
        One to three sentences (see the module docstring); "A music track." when nothing is
        known.
    """
    sentences = [
        "" if is_silent else _sound_sentence(tags),
        _analysis_sentence(tempo_bpm=tempo_bpm, key=key, mode=mode, energy=energy, valence=valence,
                           duration_s=duration_s, is_silent=is_silent),
        _metadata_sentence(title=title, artist=artist, composer=composer, album=album, genre=genre, year=year,
                           free_tags=free_tags),
    ]
    text = " ".join(s for s in sentences if s) or "A music track."
    if len(text) > MAX_DESCRIPTION_CHARS:
        cut = text[: MAX_DESCRIPTION_CHARS - 1]
        space = cut.rfind(" ")
        text = (cut[:space] if space > MAX_DESCRIPTION_CHARS // 2 else cut).rstrip(" ,.;:") + "\u2026"
    return text


#: ``musicaas.common.v1.Mode`` numbers -> mode names.
_PROTO_MODES = {1: "major", 2: "minor"}


def describe_protos(analysis=None, metadata=None) -> str:
    """:func:`describe_track` of a ``musicaas.common.v1.TrackAnalysis`` and a ``TrackMetadata`` (either may be None).

    Reads ``tempo_bpm``, ``key``, ``mode`` (``MODE_MAJOR`` / ``MODE_MINOR``), ``features.energy``,
    ``features.valence`` (only when ``features`` is set), ``duration_s``, ``is_silent`` and
    ``tags`` (``TagScore``) of the analysis, and every text field, ``year`` and ``tags`` of the
    metadata.
    """
    fields: dict = {}
    if analysis is not None:
        has_features = analysis.HasField("features")
        fields.update(
            tempo_bpm=analysis.tempo_bpm,
            key=analysis.key,
            mode=_PROTO_MODES.get(int(analysis.mode)),
            energy=analysis.features.energy if has_features else None,
            valence=analysis.features.valence if has_features else None,
            duration_s=analysis.duration_s,
            is_silent=analysis.is_silent,
            tags=[(t.name, t.score) for t in analysis.tags],
        )
    if metadata is not None:
        fields.update(title=metadata.title, artist=metadata.artist, composer=metadata.composer,
                      album=metadata.album, genre=metadata.genre, year=metadata.year,
                      free_tags=list(metadata.tags))
    return describe_track(**fields)
