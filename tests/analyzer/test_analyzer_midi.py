"""MIDI input: what the notes say (key, metre, tempo, density, range, duration), the upload
path that accepts .mid files, and malformed MIDI files."""

from __future__ import annotations

import numpy as np
import pytest

from musicaas.keys import Key
from musicaas.runtime.errors import InvalidArgument
from musicaas_analyzer.analysis import analyze_bytes, analyze_midi
from musicaas_analyzer.convert import analysis_to_proto


def midi_of(notes, *, qpm=None, time_signature=None, key_signature=None, tpq=480, drums=()) -> bytes:
    """A Standard MIDI File with (start_tick, duration_ticks, pitch) notes on one track."""
    import symusic

    score = symusic.Score(tpq)
    if qpm is not None:
        score.tempos.append(symusic.Tempo(0, float(qpm)))
    if time_signature is not None:
        score.time_signatures.append(symusic.TimeSignature(0, *time_signature))
    if key_signature is not None:
        score.key_signatures.append(symusic.KeySignature(0, *key_signature))
    track = symusic.Track(program=0)
    for start, dur, pitch in notes:
        track.notes.append(symusic.Note(start, dur, pitch, 90))
    score.tracks.append(track)
    if drums:
        kit = symusic.Track(program=0, is_drum=True)
        for start, dur, pitch in drums:
            kit.notes.append(symusic.Note(start, dur, pitch, 100))
        score.tracks.append(kit)
    return score.dumps_midi()


@pytest.fixture(scope="module")
def chorale_mid(kit) -> bytes:
    return kit.chorale_midi_bytes("bach/bwv66.6")


def test_chorale_midi_key_metre_tempo_and_range(chorale_mid):
    r = analyze_bytes(chorale_mid, filename="bwv66.6.mid")
    m = r.midi
    assert m is not None and not r.is_silent
    assert r.key == Key.parse("F# minor") and r.key_confidence > 0.5
    assert m.key_signature == Key.parse("F# minor")
    assert r.time_signature == 4 and r.time_signature_confidence == 1.0
    assert (m.time_signature_numerator, m.time_signature_denominator) == (4, 4)
    assert r.tempo_bpm == pytest.approx(96.0) and r.tempo_confidence == 1.0
    assert r.duration_s == pytest.approx(22.5, abs=0.05)  # 36 quarter notes at 96 BPM
    assert m.note_count == 163 and m.track_count == 4 and not m.has_drums
    assert m.note_density_per_s == pytest.approx(163 / r.duration_s)
    assert (m.lowest_pitch_midi, m.highest_pitch_midi) == (42, 76)
    assert np.diff(r.beats_s) == pytest.approx(0.625)  # quarter notes at 96 BPM
    assert [b.start_s for b in r.bars[:3]] == pytest.approx([0.0, 2.5, 5.0])
    # the audio-derived fields describe the General MIDI rendering
    assert r.sample_rate_hz == 22050 and -40 < r.loudness_lufs < 0
    assert float(np.linalg.norm(r.embedding)) == pytest.approx(1.0, abs=1e-5) and r.embedding[63] == 0.0
    assert r.segments and r.sections
    wire = analysis_to_proto(r)
    assert wire.HasField("midi") and wire.midi.key_signature == "F#" and wire.midi.note_count == 163


def test_midi_analysis_needs_no_rendering(chorale_mid):
    r = analyze_midi(chorale_mid, render_audio=False)
    assert r.key == Key.parse("F# minor") and r.tempo_bpm == pytest.approx(96.0)
    assert r.sample_rate_hz == 0 and r.segments == () and r.features.energy == 0.0
    assert r.midi.note_count == 163


def test_metre_tempo_and_key_come_from_the_events():
    """A D major scale in 3/4 at 150 BPM, then a tempo-free file in A minor."""
    scale = [62, 64, 66, 67, 69, 71, 73, 74, 69, 66, 62, 62]
    notes = [(i * 480, 460, p) for i, p in enumerate(scale)] + [(12 * 480, 960, 50), (12 * 480, 960, 57)]
    r = analyze_midi(midi_of(notes, qpm=150, time_signature=(3, 4)), render_audio=False)
    assert r.key == Key.parse("D major")
    assert r.time_signature == 3 and r.tempo_bpm == pytest.approx(150.0)
    assert r.duration_s == pytest.approx(14 * 0.4)
    assert np.diff([b.start_s for b in r.bars]) == pytest.approx(1.2)
    assert (r.midi.lowest_pitch_midi, r.midi.highest_pitch_midi) == (50, 74)

    a_minor = [69, 71, 72, 74, 76, 72, 71, 68, 69, 64, 57, 69]
    r = analyze_midi(midi_of([(i * 480, 470, p) for i, p in enumerate(a_minor)]), render_audio=False)
    assert r.key == Key.parse("A minor")
    assert r.tempo_bpm == pytest.approx(120.0) and r.tempo_confidence == 0.5  # SMF default
    assert r.time_signature == 4 and r.time_signature_confidence == 0.0
    assert r.midi.tempo_changes == 0 and r.midi.key_signature is None


def test_six_eight_counts_eighth_note_beats_and_drums_are_left_out_of_the_key():
    notes = [(i * 240, 230, p) for i, p in enumerate([65, 69, 72, 65, 69, 72] * 4)]
    drums = [(i * 240, 100, 42) for i in range(24)]
    r = analyze_midi(midi_of(notes, qpm=60, time_signature=(6, 8), drums=drums), render_audio=False)
    assert r.time_signature == 6 and r.tempo_bpm == pytest.approx(120.0)  # eighths per minute
    assert np.diff(r.beats_s) == pytest.approx(0.5)
    assert r.midi.has_drums and r.midi.note_count == 48
    assert r.key == Key.parse("F major")
    assert (r.midi.lowest_pitch_midi, r.midi.highest_pitch_midi) == (65, 72)


def test_midi_without_notes_is_a_silent_result():
    r = analyze_bytes(midi_of([], qpm=100, time_signature=(4, 4)), filename="empty.mid")
    assert r.is_silent and r.key is None and r.tempo_bpm == 0.0 and r.midi.note_count == 0
    assert r.midi.lowest_pitch_midi == r.midi.highest_pitch_midi == -1


def test_corrupt_truncated_and_too_long_midi(chorale_mid):
    with pytest.raises(InvalidArgument, match=r"truncated MIDI data \(named 'cut.mid'\)"):
        analyze_bytes(chorale_mid[: len(chorale_mid) // 2], filename="cut.mid")
    with pytest.raises(InvalidArgument, match=r"truncated MIDI data: chunk b'MTrk' at byte \d+ declares \d+ bytes"):
        analyze_bytes(chorale_mid[:-10])
    with pytest.raises(InvalidArgument, match=r"header chunk is truncated"):
        analyze_bytes(b"MThd\x00\x00\x00\x06\x00", filename="stub.mid")
    garbage = chorale_mid[:22] + bytes(np.random.default_rng(1).integers(0, 256, 200, dtype=np.uint8)) + chorale_mid[222:]
    with pytest.raises(InvalidArgument, match=r"MIDI data"):
        analyze_bytes(garbage[:100] + b"MTrk\xff\xff\xff\xff", filename="garbage.mid")
    with pytest.raises(InvalidArgument, match=r"MIDI file too long.*22\.5 s exceeds the limit of 10 s"):
        analyze_bytes(chorale_mid, max_duration_s=10.0)


def test_gateway_accepts_midi_uploads(chorale_mid):
    from musicaas import media

    assert media.sniff(chorale_mid).container.name == "midi" and media.refusal(chorale_mid) is None
    assert media.sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ").container.name == "wav"
    assert media.sniff(b"MTrk\x00\x00") is None
