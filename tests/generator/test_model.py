"""The Transformer, its sampler and checkpoints, in process (needs torch)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from musicaas.keys import Key  # noqa: E402
from musicaas_model import data  # noqa: E402
from musicaas_model.model import (  # noqa: E402
    GenerationRequest,
    KVCache,
    ModelConfig,
    SpecialIds,
    generate,
    load_checkpoint,
    save_checkpoint,
    tiny_model,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vocab(train_tokenizer):
    return dict(train_tokenizer.vocab)


@pytest.fixture(scope="module")
def special(vocab):
    return SpecialIds.from_vocab(vocab)


@pytest.fixture(scope="module")
def tiny(vocab):
    return tiny_model(len(vocab), block_size=64)


def _prompt(vocab, key="D minor", bars=4):
    return data.prompt_ids(_Tok(vocab), Key.parse(key), bars)


class _Tok:
    def __init__(self, vocab):
        self.vocab = vocab


def _req(prompt, seed, *, bars=4, max_new=60, temperature=1.0):
    return GenerationRequest(prompt, temperature, seed, bars, max_new)


def test_same_seed_same_tokens(tiny, vocab, special):
    prompt = _prompt(vocab)
    a = generate(tiny, [_req(prompt, 7)], special)[0]
    b = generate(tiny, [_req(prompt, 7)], special)[0]
    c = generate(tiny, [_req(prompt, 8)], special)[0]
    assert a == b
    assert a != c
    assert 0 < len(a) <= 60


def test_batched_rows_match_single_rows(tiny, vocab, special):
    short = _prompt(vocab)
    long = [vocab["Bars_2"]] + _prompt(vocab, "F# major", 2)  # 4 ids: rows of different lengths
    reqs = [_req(short, 1, max_new=40), _req(long, 2, max_new=25, temperature=0.8), _req(short, 3, max_new=33)]
    batched = generate(tiny, reqs, special)
    singles = [generate(tiny, [r], special)[0] for r in reqs]
    assert batched == singles
    assert [len(r) for r in batched] == [40, 25, 33]  # a random model rarely starts new bars


def test_sampler_never_emits_control_tokens(tiny, vocab, special):
    out = generate(tiny, [_req(_prompt(vocab), s, max_new=200) for s in range(3)], special)
    banned = set(special.never)
    assert all(t not in banned for row in out for t in row)


class _Scripted(torch.nn.Module):
    """A stand-in network whose next token is a fixed cycle, with the real forward contract."""

    def __init__(self, vocab_size: int, cycle: list[int], block_size: int = 16) -> None:
        super().__init__()
        self.cfg = ModelConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=1, d_model=4, d_ff=4)
        self.cycle = cycle
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.max_position = -1

    def forward(self, idx, *, positions=None, mask=None, cache: KVCache | None = None):
        b, t = idx.shape
        assert positions is not None and int(positions.max()) < self.cfg.block_size
        self.max_position = max(self.max_position, int(positions.max()))
        logits = torch.full((b, t, self.cfg.vocab_size), -30.0)
        for i in range(b):
            for j in range(t):
                logits[i, j, self.cycle[int(positions[i, j]) % len(self.cycle)]] = 30.0
        if cache is not None:
            cache.length += t
        return logits


def test_stops_after_requested_bars_and_slides_the_window(vocab, special):
    bar, pitch, dur, eos = vocab["Bar_None"], vocab["Pitch_60"], vocab["Duration_1.0.4"], vocab["EOS_None"]
    model = _Scripted(len(vocab), [bar, pitch, dur, eos, pitch, dur], block_size=16)
    prompt = _prompt(vocab, bars=5)
    out = generate(model, [_req(prompt, 0, bars=5, max_new=500)], special)[0]
    assert out.count(bar) == 5  # the 6th Bar token ends the piece
    assert eos not in out  # EOS is masked until the requested bars have started
    assert model.max_position == 15  # the context was re-encoded instead of overflowing


def test_max_new_tokens_caps_output(vocab, special):
    model = _Scripted(len(vocab), [vocab["Pitch_60"]], block_size=16)
    assert len(generate(model, [_req(_prompt(vocab), 0, max_new=37)], special)[0]) == 37


def test_training_forward_is_causal(tiny, vocab):
    x = torch.randint(0, len(vocab), (2, 20))
    full = tiny(x)
    prefix = tiny(x[:, :10])
    torch.testing.assert_close(full[:, :10], prefix, rtol=1e-4, atol=1e-5)


def test_checkpoint_round_trip(tmp_path, tiny, vocab, special):
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny, special, meta={"note": "x"})
    model, special2, meta = load_checkpoint(path)
    assert special2 == special and meta == {"note": "x"}
    prompt = _prompt(vocab)
    assert generate(model, [_req(prompt, 5)], special2) == generate(tiny, [_req(prompt, 5)], special)


def test_training_windows_start_on_bars(vocab):
    tok = data.build_tokenizer()
    record = data.ChoraleRecord("toy", "toy", Key.parse("G major").index, (4, 4),
                                [(float(q), 1.0, 60 + q % 5) for q in range(16)])
    piece = data.encode_record(tok, record, transpose=2)
    assert piece.num_bars == 4 and piece.key_index == Key.parse("A major").index
    window = data.make_window(tok, piece, 1, 200)
    names = [tok[i] for i in window]
    assert names[:8] == ["Style_chorale", "Key_A-major", "Metre_4-4", "TempoBin_2", "Inst_6", "Bars_3", "BOS_None",
                         "Bar_None"]
    assert names[-1] == "EOS_None"
    short = data.make_window(tok, piece, 0, 20)
    assert len(short) <= 20 and tok[short[-1]] != "EOS_None"


def test_shipped_checkpoint(shipped_checkpoint, vocab):
    assert shipped_checkpoint.stat().st_size < 30 * 2**20
    model, special, meta = load_checkpoint(shipped_checkpoint)
    assert model.cfg.vocab_size == len(vocab)
    assert special == SpecialIds.from_vocab(vocab)
    assert meta["tokenizer_fingerprint"] == data.tokenizer_fingerprint(data.build_tokenizer())
    out = generate(model, [_req(_prompt(vocab, "G major", 2), 11, bars=2, max_new=300)], special)[0]
    assert out.count(vocab["Bar_None"]) == 2


def test_training_command_writes_a_resumable_checkpoint(tmp_path, vocab):
    """``python -m musicaas_model.train`` end to end on a toy corpus (no music21 parsing)."""
    import json

    from musicaas_model import train

    records = []
    for i in range(6):
        key = Key.from_index((5 * i) % 24)
        notes = [[float(q), 1.0, 55 + (q * (i + 2)) % 14] for q in range(24)]
        records.append({"name": f"toy{i}", "group": f"toy{i}", "key_index": key.index, "time_signature": [4, 4],
                        "notes": notes})
    cache = tmp_path / "corpus.json"
    cache.write_text(json.dumps(records))
    out = tmp_path / "ckpt"
    common = ["--out", str(out), "--cache", str(cache), "--batch-size", "2", "--block-size", "64", "--d-model", "32",
              "--layers", "1", "--heads", "2", "--threads", "1", "--max-minutes", "0", "--eval-every", "2", "--no-folk"]
    assert train.main(common + ["--steps", "3"]) == 0
    for name in ("model.pt", "tokenizer.json", "train_log.json", "MODEL_CARD.md", "train_state.pt", "loss.png"):
        assert (out / name).exists(), name
    assert train.main(common + ["--steps", "5", "--resume"]) == 0
    log = json.loads((out / "train_log.json").read_text())
    assert log["steps_done"] == 5 and [e["step"] for e in log["log"]] == [2, 3, 4, 5]
    assert [s["start_step"] for s in log["sessions"]] == [0, 3]
    assert log["splits"]["train"]["sequences"] == 12 * log["splits"]["train"]["pieces"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "valid loss" in card and "Licence" in card
    model, special, meta = load_checkpoint(out / "model.pt")
    assert meta["steps_done"] == 5
    assert generate(model, [_req(_prompt(vocab), 0, max_new=10)], special)[0]
    # no folk in this run: the chorale valid loss is the whole valid loss, the folk one is absent
    assert all(e["valid_loss_chorales"] == pytest.approx(e["valid_loss"]) and e["valid_loss_folk"] is None
               for e in log["log"])

    # warm start from that checkpoint: weights copied, the card names the source's steps and test loss
    warm = tmp_path / "warm"
    args = ["--out", str(warm)] + common[2:] + ["--steps", "0", "--init-from", str(out / "model.pt")]
    assert train.main(args) == 0
    warm_model, _special, _meta = load_checkpoint(warm / "model.pt")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, warm_model.state_dict()[name]), name
    wlog = json.loads((warm / "train_log.json").read_text())
    assert wlog["init_meta"]["steps_done"] == 5
    assert f"5 steps, chorale test loss {log['test_loss']:.3f}" in (warm / "MODEL_CARD.md").read_text()
