"""Generation controls: prompts, primers, melodies, top-k/top-p, metre and harmonisation (in process)."""

from __future__ import annotations

import pytest

from musicaas.keys import ALL_KEYS, Key
from musicaas.runtime.errors import InvalidArgument
from musicaas_generator import contract, tokens

torch = pytest.importorskip("torch")

from musicaas_model import data  # noqa: E402
from musicaas_model.constraints import Grammar  # noqa: E402
from musicaas_model.model import GenerationRequest, SpecialIds, filter_logits, generate, tiny_model  # noqa: E402
from generator_helpers import midi_of  # noqa: E402 - tests/generator is on sys.path


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tok(train_tokenizer):
    """The tokenizer of the current training configuration (all control tokens)."""
    return train_tokenizer


@pytest.fixture(scope="module")
def parts(tok):
    vocab = dict(tok.vocab)
    return tiny_model(len(vocab), block_size=128), SpecialIds.from_vocab(vocab), Grammar.from_vocab(vocab)


MELODY = [(0, 1, 67), (1, 1, 69), (2, 2, 71), (4.5, 0.5, 72), (5, 3, 74), (9, 2, 67), (11, 1, 66), (12, 4, 67)]


# ----------------------------------------------------------------------------- prompts


def test_prompt_holds_every_control(tok):
    prompt = tokens.build_prompt(Key.parse("D minor"), 8, metre="3/4", tempo_bpm=150, style="folk", instrument=40,
                                 tokenizer=tok)
    assert tokens.token_names(prompt, tokenizer=tok) == [
        "Style_folk", "Key_D-minor", "Metre_3-4", "TempoBin_7", "Inst_5", "Bars_8", "BOS_None"]
    # the training windows use the very same prefix
    assert prompt == data.prompt_ids(tok, Key.parse("D minor"), 8, style="folk", metre="3/4", tempo_bpm=150, program=40)


def test_prompt_defaults_and_distinct_controls(tok):
    names = tokens.token_names(tokens.build_prompt(Key.parse("C major"), 4, tokenizer=tok), tokenizer=tok)
    assert names == ["Style_chorale", "Key_C-major", "Metre_4-4", "TempoBin_2", "Inst_6", "Bars_4", "BOS_None"]
    keys = {tokens.build_prompt(k, 4, tokenizer=tok)[1] for k in ALL_KEYS}
    assert len(keys) == 24
    bins = {tokens.tempo_bin(b) for b in (20, 59, 60, 71, 72, 90, 100, 119, 120, 143, 144, 300)}
    assert bins == set(range(8))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"metre": "6/8"}, "metre"),
        ({"style": "jazz"}, "style"),
        ({"tempo_bpm": 5}, "tempo_bpm"),
        ({"instrument": 200}, "instrument"),
        ({"primer_tokens": [10**6]}, "primer_tokens"),
    ],
)
def test_prompt_rejects_bad_controls(tok, kwargs, field):
    with pytest.raises(InvalidArgument, match=field):
        tokens.build_prompt(Key.parse("C major"), 4, tokenizer=tok, **kwargs)


def test_prompt_with_primer_counts_its_bars(tok):
    primer = tokens.midi_to_primer_tokens(midi_of([(q, 1, 60 + q % 7) for q in range(8)]), tokenizer=tok)
    assert tokens.token_names(primer, tokenizer=tok)[:2] == ["Bar_None", "TimeSig_4/4"]
    assert primer.count(tok.vocab["Bar_None"]) == 2
    prompt = tokens.build_prompt(Key.parse("C major"), 4, primer_tokens=primer, tokenizer=tok)
    assert prompt[-len(primer):] == primer
    assert tokens.token_names(prompt, tokenizer=tok)[5] == "Bars_6"
    with pytest.raises(InvalidArgument, match="primer_midi: time signature 4/4 does not match metre 3/4"):
        tokens.build_prompt(Key.parse("C major"), 4, metre="3/4", primer_tokens=primer, tokenizer=tok)


def test_primer_max_bars_and_long_prompt(tok):
    notes = [(q / 2, 0.5, 48 + (q * 5) % 36) for q in range(64 * 2)]
    primer = tokens.midi_to_primer_tokens(midi_of(notes, tracks=3), max_bars=8, tokenizer=tok)
    assert primer.count(tok.vocab["Bar_None"]) == 8
    assert len(tokens.build_prompt(Key.parse("C major"), 8, primer_tokens=primer, tokenizer=tok)) <= \
        contract.MAX_PROMPT_TOKENS


@pytest.mark.parametrize("midi, message", [
    (b"", "primer_midi: empty"),
    (b"not a midi file", "primer_midi: not a Standard MIDI File"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x05", "primer_midi: malformed"),
])
def test_malformed_primer(tok, midi, message):
    with pytest.raises(InvalidArgument, match=message):
        tokens.midi_to_primer_tokens(midi, tokenizer=tok)


def test_primer_without_notes(tok):
    with pytest.raises(InvalidArgument, match="primer_midi: the file holds no notes"):
        tokens.midi_to_primer_tokens(midi_of([]), tokenizer=tok)


# ----------------------------------------------------------------------------- melodies


def test_parse_melody_quantises():
    melody = tokens.parse_melody(midi_of([(0.02, 0.98, 67), (1.0, 1.05, 69), (2.0, 2.0, 71)]))
    assert melody == [tokens.MelodyNote(0.0, 1.0, 67), tokens.MelodyNote(1.0, 1.0, 69), tokens.MelodyNote(2.0, 2.0, 71)]
    assert tokens.melody_bars(melody) == 1 and tokens.melody_bars(melody, "3/4") == 2


@pytest.mark.parametrize("midi, message", [
    (b"", "melody_midi: empty"),
    (b"RIFF0000WAVE", "melody_midi: not a Standard MIDI File"),
])
def test_malformed_melody(midi, message):
    with pytest.raises(InvalidArgument, match=message):
        tokens.parse_melody(midi)


def test_melody_must_be_monophonic():
    with pytest.raises(InvalidArgument, match=r"melody_midi: not monophonic.*beat 1\b.*beat 1\.5"):
        tokens.parse_melody(midi_of([(0, 1, 60), (1, 2, 62), (1.5, 1, 64)]))
    with pytest.raises(InvalidArgument, match="melody_midi: not monophonic"):
        tokens.parse_melody(midi_of([(0, 1, 60)], tracks=2))  # a chord: two tracks in octaves
    with pytest.raises(InvalidArgument, match="melody_midi: the file holds no notes"):
        tokens.parse_melody(midi_of([]))


def test_soprano_kept_measures_the_top_voice(tok):
    melody = [tokens.MelodyNote(0, 1, 67), tokens.MelodyNote(1, 1, 69)]
    both = midi_of([(0, 1, 67), (1, 1, 69), (0, 2, 60)])
    assert tokens.soprano_kept(both, melody) == 1.0
    above = midi_of([(0, 1, 67), (1, 1, 69), (0, 2, 68)])  # 68 sounds above the melody's 67 at beat 0
    assert tokens.soprano_kept(above, melody) == 0.5
    assert tokens.soprano_kept(midi_of([(0, 1, 60)]), melody) == 0.0


# ----------------------------------------------------------------------------- sampling


def _req(prompt, seed, *, bars=4, max_new=200, top_k=0, top_p=1.0, melody=None, temperature=1.0, key_guidance=True):
    return GenerationRequest(prompt, temperature, seed, bars, max_new, top_k, top_p, melody, key_guidance)


def test_filter_logits():
    row = torch.tensor([0.0, 3.0, 1.0, 2.0])
    assert torch.isfinite(filter_logits(row, top_k=2)).tolist() == [False, True, False, True]
    probs = torch.softmax(row, -1)  # 0.032, 0.644, 0.087, 0.237
    assert torch.isfinite(filter_logits(row, top_p=0.5)).tolist() == [False, True, False, False]
    assert torch.isfinite(filter_logits(row, top_p=0.85)).tolist() == [False, True, False, True]
    assert torch.isfinite(filter_logits(row, top_p=1.0)).all() and float(probs.sum()) == pytest.approx(1.0)


def test_top_k_top_p_are_deterministic_and_restrict(tok, parts):
    model, special, grammar = parts
    prompt = tokens.build_prompt(Key.parse("A minor"), 2, tokenizer=tok)
    a = generate(model, [_req(prompt, 3, top_k=5, top_p=0.9)], special, grammar)[0]
    b = generate(model, [_req(prompt, 3, top_k=5, top_p=0.9)], special, grammar)[0]
    c = generate(model, [_req(prompt, 4, top_k=5, top_p=0.9)], special, grammar)[0]
    assert a == b and a != c
    greedy = [generate(model, [_req(prompt, s, top_k=1, max_new=40)], special, grammar)[0] for s in range(3)]
    assert greedy[0] == greedy[1] == greedy[2]  # top-k 1 is greedy: the seed no longer matters
    midi_a = tokens.tokens_to_midi(a, tempo_bpm=90, tokenizer=tok)
    assert midi_a == tokens.tokens_to_midi(b, tempo_bpm=90, tokenizer=tok)


@pytest.mark.parametrize("metre", ["4/4", "3/4"])
def test_requested_metre_and_bars(tok, parts, metre):
    import symusic

    model, special, grammar = parts
    prompt = tokens.build_prompt(Key.parse("F major"), 3, metre=metre, tokenizer=tok)
    out = generate(model, [_req(prompt, 1, bars=3, max_new=600)], special, grammar)[0]
    assert out.count(special.bar) == 3
    sigs = {n for n in tokens.token_names(out, tokenizer=tok) if n.startswith("TimeSig_")}
    assert sigs == {f"TimeSig_{metre}"}
    score = symusic.Score.from_midi(tokens.tokens_to_midi(out, tempo_bpm=100, metre=metre, tokenizer=tok))
    assert (score.time_signatures[0].numerator, score.time_signatures[0].denominator) == tuple(
        int(x) for x in metre.split("/"))


def test_primer_continuation_starts_with_the_primer(tok, parts):
    model, special, grammar = parts
    primer = tokens.midi_to_primer_tokens(midi_of([(q, 1, 60 + q % 7) for q in range(8)]), tokenizer=tok)
    prompt = tokens.build_prompt(Key.parse("C major"), 2, primer_tokens=primer, tokenizer=tok)
    out = generate(model, [_req(prompt, 5, bars=2, max_new=400)], special, grammar)[0]
    assert out[: len(primer)] == primer
    assert out.count(special.bar) == primer.count(special.bar) + 2


def test_long_primer_is_windowed(tok, parts):
    model, special, grammar = parts  # block size 128 < the prompt
    notes = [(q / 2, 0.5, 48 + (q * 5) % 36) for q in range(64)]
    primer = tokens.midi_to_primer_tokens(midi_of(notes, tracks=2), tokenizer=tok)
    prompt = tokens.build_prompt(Key.parse("C major"), 1, primer_tokens=primer, tokenizer=tok)
    assert len(prompt) > model.cfg.block_size
    out = generate(model, [_req(prompt, 0, bars=1, max_new=100)], special, grammar)[0]
    assert out[: len(primer)] == primer and len(out) > len(primer)


def test_harmonisation_keeps_the_whole_soprano(tok, parts):
    model, special, grammar = parts
    melody = [tokens.MelodyNote(*m) for m in MELODY]
    for metre, bars in (("4/4", 4), ("3/4", 6)):
        prompt = tokens.build_prompt(Key.parse("G major"), bars, metre=metre, tokenizer=tok)
        reqs = [_req(prompt, seed, bars=bars, max_new=1500, top_k=20, melody=[tuple(vars(m).values()) for m in melody])
                for seed in range(2)]
        for out in generate(model, reqs, special, grammar):
            midi = tokens.tokens_to_midi(out, tempo_bpm=100, metre=metre, tokenizer=tok)
            assert tokens.soprano_kept(midi, melody) == 1.0
            assert out.count(special.bar) == bars


def test_melody_needs_a_grammar(tok, parts):
    model, special, _grammar = parts
    prompt = tokens.build_prompt(Key.parse("G major"), 4, tokenizer=tok)
    with pytest.raises(ValueError, match="grammar"):
        generate(model, [_req(prompt, 0, melody=MELODY)], special)


def test_server_checks_what_needs_the_model(tok):
    from musicaas_model.serve import SymbolicModel

    server = SymbolicModel.tiny()
    prompt = tokens.build_prompt(Key.parse("G major"), 2, tokenizer=tok)

    def req(**kwargs):
        return contract.SampleRequest(**(dict(prompt_tokens=prompt, temperature=1.0, seed=0, num_bars=2,
                                              max_new_tokens=50) | kwargs))

    with pytest.raises(contract.FieldError, match="longer than num_bars = 2 bars of 4/4") as info:
        server.sample([req(melody=MELODY)])
    assert info.value.field == "melody"
    with pytest.raises(contract.FieldError, match="outside the model's range") as info:
        server.sample([req(melody=[(0, 1, 10)])])
    assert info.value.field == "melody"
    with pytest.raises(contract.FieldError, match="outside") as info:
        server.sample([req(prompt_tokens=[len(tok.vocab)])])
    assert info.value.field == "prompt_tokens"
    primer = tokens.midi_to_primer_tokens(midi_of([(q, 1, 60) for q in range(4)]), tokenizer=tok)
    with pytest.raises(contract.FieldError, match="primer"):
        server.sample([req(prompt_tokens=tokens.build_prompt(Key.parse("G major"), 2, primer_tokens=primer,
                                                             tokenizer=tok), melody=MELODY[:2])])
    assert server.sample([req()])[0]


def test_server_answers_each_row_and_a_bad_row_does_not_fail_the_batch(tok):
    import numpy as np

    from musicaas_model.serve import SymbolicModel

    server = SymbolicModel.tiny()
    prompt = tokens.build_prompt(Key.parse("G major"), 2, tokenizer=tok)
    good = contract.SampleRequest(prompt, temperature=1.0, seed=3, num_bars=2, max_new_tokens=40).to_inputs()
    bad = contract.SampleRequest(prompt, temperature=1.0, seed=3, num_bars=2, max_new_tokens=40,
                                 melody=MELODY).to_inputs()  # 16 beats: longer than 2 bars
    empty_melody = dict(good, **{contract.MELODY: np.zeros((1, 0), dtype=np.float32)})  # empty MELODY: none
    out_of_range = dict(good, **{contract.TOP_P: np.asarray([[0.0]], dtype=np.float32)})
    responses = server.infer([good, bad, empty_melody, out_of_range])
    assert len(responses) == 4 and all(set(r) == {contract.TOKENS, contract.ERROR} for r in responses)
    ids = contract.decode_outputs(responses[0])
    assert ids and contract.decode_outputs(responses[2]) == ids  # same row, same seed, same tokens
    for response, field in ((responses[1], "melody"), (responses[3], "top_p")):
        with pytest.raises(contract.FieldError) as info:
            contract.decode_outputs(response)
        assert info.value.field == field
    assert server.batch_sizes[2] == 1  # the two good rows were sampled together, once


def test_key_guidance_keeps_to_the_scale_and_the_tonic_triad(tok, parts):
    from musicaas_model.constraints import scale_pitch_classes, tonic_triad

    model, special, grammar = parts
    key = Key.parse("E minor")
    prompt = tokens.build_prompt(key, 3, tokenizer=tok)
    guided = generate(model, [_req(prompt, 9, bars=3, max_new=600)], special, grammar)[0]
    free = generate(model, [GenerationRequest(prompt, 1.0, 9, 3, 600, key_guidance=False)], special, grammar)[0]
    inverse = {i: n for n, i in tok.vocab.items()}

    def pcs_by_bar(out):
        bar, pcs = -1, {}
        for t in out:
            name = inverse[t]
            if name == "Bar_None":
                bar += 1
            elif name.startswith("Pitch_"):
                pcs.setdefault(bar, set()).add(int(name[6:]) % 12)
        return pcs

    g = pcs_by_bar(guided)
    assert set().union(*g.values()) <= scale_pitch_classes(key.tonic_pc, key.mode)
    assert g[0] <= tonic_triad(key.tonic_pc, key.mode) and g[2] <= tonic_triad(key.tonic_pc, key.mode)
    assert not set().union(*pcs_by_bar(free).values()) <= scale_pitch_classes(key.tonic_pc, key.mode)
