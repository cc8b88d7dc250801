"""describe_track: the English description that free-text search embeds and matches."""

from __future__ import annotations

import pytest

from musicaas.common.v1 import common_pb2
from musicaas.models.musicnn_contract import TAG_NAMES
from musicaas.models.text_contract import MAX_TEXT_CHARS, check_text
from musicaas_recommender.describe import (
    MAX_DESCRIPTION_CHARS,
    TAG_PHRASES,
    describe_protos,
    describe_track,
    tempo_word,
)

CHORALE_TAGS = [("classical", 0.61), ("piano", 0.48), ("strings", 0.41), ("slow", 0.35), ("classic", 0.30),
                ("no vocals", 0.25), ("soft", 0.22), ("harpsichord", 0.21), ("vocal", 0.12), ("choir", 0.05)]


def chorale(**over) -> str:
    fields = dict(tempo_bpm=62.4, key="D", mode="minor", energy=0.2, valence=0.1, duration_s=125.0,
                  tags=CHORALE_TAGS, title="Ach Gott, vom Himmel sieh darein", composer="J. S. Bach",
                  genre="Baroque", year=1736, free_tags=["chorale", "hymn", "Chorale"])
    fields.update(over)
    return describe_track(**fields)


def test_a_described_track_reads_as_english_with_every_fact():
    text = chorale()
    assert text == (
        "A slow, soft classical instrumental piece with piano, strings and harpsichord. "
        "Slow tempo at 62 BPM, in the key of D minor, low energy and calm, sombre mood, 2 min 5 s long. "
        "Title: Ach Gott, vom Himmel sieh darein. Composer: J. S. Bach. Genre: Baroque. Year: 1736. "
        "Tags: chorale, hymn."
    )
    assert chorale() == text  # deterministic
    # synonyms merged ("classic"), weak tags dropped ("vocal" at 0.12 < 0.2, "choir")
    assert text.count("classical") == 1 and "vocals" not in text and "choir" not in text


def test_every_musicnn_tag_has_a_phrase():
    assert set(TAG_PHRASES) == set(TAG_NAMES)


@pytest.mark.parametrize(("bpm", "word"), [(40, "slow"), (79.4, "slow"), (80, "moderate"), (119, "moderate"),
                                           (120, "fast"), (200, "fast")])
def test_tempo_in_words(bpm, word):
    assert tempo_word(bpm) == word
    assert describe_track(tempo_bpm=bpm).startswith(f"{word.capitalize()} tempo at {round(bpm)} BPM")
    assert describe_track(tempo_bpm=119.6) == "Fast tempo at 120 BPM."  # the word goes with the printed number


def test_energy_valence_and_mode_words():
    assert describe_track(energy=0.9) == "High energy and intense."
    assert describe_track(valence=0.8) == "Bright, cheerful mood."
    assert describe_track(energy=0.5, valence=0.5) == "A music track."  # middle values say nothing
    assert describe_track(key="F#", mode="major") == "In the key of F# major."
    assert describe_track(mode="minor") == "In a minor key."
    assert "key" not in describe_track(key="C", mode="")  # no mode: no key
    assert describe_track(duration_s=45) == "45 s long."
    assert describe_track(duration_s=180) == "3 min long."


def test_the_best_tags_are_kept_even_when_weak_and_voices_do_not_contradict():
    assert describe_track(tags=[("flute", 0.08), ("harp", 0.06), ("piano", 0.05)]) == "A piece with flute and harp."
    # a vocal tag and a no-vocal tag: the better-scored one wins
    assert describe_track(tags=[("female", 0.5), ("no vocals", 0.3), ("guitar", 0.3)]) == \
        "A piece with guitar and female vocals."
    assert describe_track(tags=[("no vocals", 0.5), ("male", 0.3)]) == "An instrumental piece."
    assert describe_track(tags=["choir", "choral", "opera"]) == "An opera piece with choir."  # names alone
    assert describe_track(tags=[("not a tag", 0.9)]) == "A music track."


def test_silence_is_described_as_silence_only():
    text = describe_track(is_silent=True, duration_s=30, tempo_bpm=0, tags=[("ambient", 0.4)])
    assert text == "Silent track, 30 s long."


def test_the_description_is_bounded_and_fits_the_text_encoder():
    text = chorale(title="x" * 600, artist="y " * 300, composer="\x00bad\ncontrol\tchars " * 20, album="z" * 100,
                   genre="g" * 100, free_tags=[f"tag{i}" for i in range(40)])
    assert len(text) <= MAX_DESCRIPTION_CHARS < MAX_TEXT_CHARS
    assert check_text(text) == text and "\x00" not in text and "\n" not in text
    assert text.endswith("\u2026")
    assert "Title: " + "x" * 79 + "\u2026" in text  # a clipped field says so
    short = chorale(free_tags=[f"tag{i}" for i in range(40)])
    assert "tag7." in short and "tag8" not in short


def test_from_protos():
    analysis = common_pb2.TrackAnalysis(
        tempo_bpm=150.0, key="A", mode=common_pb2.MODE_MINOR, duration_s=40.0,
        features=common_pb2.AudioFeatures(energy=0.8, valence=0.2),
        tags=[common_pb2.TagScore(name="flute", score=0.4), common_pb2.TagScore(name="fast", score=0.3)],
    )
    metadata = common_pb2.TrackMetadata(title="Reel", artist="The Band", year=1999, tags=["folk"])
    assert describe_protos(analysis, metadata) == (
        "A fast piece with flute. Fast tempo at 150 BPM, in the key of A minor, high energy and intense, "
        "sombre mood, 40 s long. Title: Reel. Artist: The Band. Year: 1999. Tags: folk."
    )
    # no features message: no energy or valence words (0.0 would read as "low energy")
    bare = common_pb2.TrackAnalysis(tempo_bpm=100.0, key="C", mode=common_pb2.MODE_MAJOR)
    assert describe_protos(bare) == "Moderate tempo at 100 BPM, in the key of C major."
    assert describe_protos(None, metadata).startswith("Title: Reel.")
    assert describe_protos() == "A music track."
