"""Prompt building and MIDI decoding on the client side (torch-free)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from musicaas.keys import ALL_KEYS, Key
from musicaas.render import parse_midi
from musicaas.runtime.errors import InvalidArgument
from musicaas_generator import tokens


def _ids(tokenizer, *names):
    return [tokenizer.vocab[n] for n in names]


def test_prompt_is_controls_bars_bos(tokenizer):
    prompt = tokens.build_prompt(Key.parse("D minor"), 8, tokenizer=tokenizer)
    assert tokens.token_names(prompt, tokenizer=tokenizer) == [
        "Style_chorale", "Key_D-minor", "Metre_4-4", "TempoBin_2", "Inst_6", "Bars_8", "BOS_None"]


def test_every_key_has_its_own_control_token(tokenizer):
    firsts = {tokens.build_prompt(key, 4, tokenizer=tokenizer)[1] for key in ALL_KEYS}
    assert len(firsts) == 24
    for n in (1, 32):
        assert tokens.token_names(tokens.build_prompt(ALL_KEYS[0], n, tokenizer=tokenizer), tokenizer=tokenizer)[5] == f"Bars_{n}"


@pytest.mark.parametrize("bars", [0, 33, -1])
def test_prompt_rejects_bars_out_of_range(tokenizer, bars):
    with pytest.raises(InvalidArgument, match="num_bars"):
        tokens.build_prompt(Key.parse("C major"), bars, tokenizer=tokenizer)


def test_shipped_tokenizer_matches_training_config():
    from musicaas_model import data

    if not tokens.default_tokenizer_path().exists():
        pytest.skip("no shipped tokenizer")
    tokenizer = tokens.load_tokenizer(tokens.default_tokenizer_path())
    assert dict(tokenizer.vocab) == dict(data.build_tokenizer().vocab)
    assert set(data.control_tokens()) <= set(tokenizer.vocab)


def test_tokens_to_midi_has_tempo_notes_and_grid(tokenizer):
    ids = tokens.build_prompt(Key.parse("C major"), 2, tokenizer=tokenizer) + _ids(
        tokenizer,
        "Bar_None", "TimeSig_4/4", "Position_0", "Pitch_60", "Duration_1.0.4", "Pitch_64", "Duration_2.0.4",
        "Bar_None", "TimeSig_4/4", "Position_4", "Pitch_67", "Duration_1.0.4",
        "EOS_None", "PAD_None",
    )
    midi = tokens.tokens_to_midi(ids, tempo_bpm=90.0, tokenizer=tokenizer)
    assert midi.startswith(b"MThd")
    score = parse_midi(midi)
    assert len(score.tempos) == 1 and score.tempos[0].qpm == pytest.approx(90.0, rel=1e-4)
    notes = sorted((n.time / score.tpq, n.duration / score.tpq, n.pitch) for t in score.tracks for n in t.notes)
    assert notes == [(0.0, 1.0, 60), (0.0, 2.0, 64), (5.0, 1.0, 67)]  # bar 2, beat 2
    assert [(ts.numerator, ts.denominator) for ts in score.time_signatures][:1] == [(4, 4)]


def test_tokens_to_midi_three_four_and_program(tokenizer):
    ids = _ids(tokenizer, "Bar_None", "TimeSig_3/4", "Position_0", "Pitch_62", "Duration_3.0.4",
               "Bar_None", "TimeSig_3/4", "Position_0", "Pitch_65", "Duration_1.0.4")
    score = parse_midi(tokens.tokens_to_midi(ids, tempo_bpm=60, program=52, tokenizer=tokenizer))
    assert (score.time_signatures[0].numerator, score.time_signatures[0].denominator) == (3, 4)
    onsets = sorted(n.time / score.tpq for t in score.tracks for n in t.notes)
    assert onsets == [0.0, 3.0]
    assert all(t.program == 52 for t in score.tracks)


def test_tokens_to_midi_renders(tokenizer):
    from musicaas.render import render_midi

    ids = _ids(tokenizer, "Bar_None", "TimeSig_4/4", "Position_0", "Pitch_60", "Duration_1.0.4")
    audio = render_midi(tokens.tokens_to_midi(ids, tempo_bpm=120, tokenizer=tokenizer), sample_rate_hz=8000)
    assert audio.size > 0 and float(abs(audio).max()) > 0


@pytest.mark.parametrize("tempo", [10, 301, 0])
def test_tokens_to_midi_rejects_tempo(tokenizer, tempo):
    with pytest.raises(InvalidArgument, match="tempo_bpm"):
        tokens.tokens_to_midi([], tempo_bpm=tempo, tokenizer=tokenizer)


def test_empty_or_garbage_tokens_give_a_valid_empty_midi(tokenizer):
    score = parse_midi(tokens.tokens_to_midi([999_999, -1], tempo_bpm=100, tokenizer=tokenizer))
    assert score.note_num() == 0


def test_client_side_never_imports_torch(tokenizer_path):
    code = textwrap.dedent(
        f"""
        import json, sys
        from musicaas.keys import Key
        from musicaas_generator import contract, tokens, triton_client
        tok = tokens.load_tokenizer({str(tokenizer_path)!r})
        prompt = tokens.build_prompt(Key.parse("A minor"), 4, tokenizer=tok)
        midi = tokens.tokens_to_midi(prompt, tempo_bpm=100, tokenizer=tok)
        print(json.dumps({{"torch": "torch" in sys.modules, "midi": len(midi)}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["torch"] is False
    assert result["midi"] > 0
