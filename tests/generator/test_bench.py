"""Helpers of bench/generator_quality.py: the n-gram baseline, melody extraction and the MIDI checks."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gq():
    spec = importlib.util.spec_from_file_location("generator_quality", ROOT / "bench" / "generator_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ngram_is_a_distribution_and_learns(gq):
    seqs = [[0, 1, 2, 3, 1, 2, 3, 1, 2, 3]] * 5 + [[0, 2, 2, 1]]
    for order in (1, 2, 3):
        ng = gq.NGram(order, 6).fit(seqs)
        for ctx in [(), (1,), (2, 3), (5, 5)]:
            assert sum(ng.prob(ctx, t) for t in range(6)) == pytest.approx(1.0)
    tri = gq.NGram(3, 6).fit(seqs)
    assert tri.prob((1, 2), 3) > 0.5 > tri.prob((1, 2), 4)
    uni = gq.NGram(1, 6).fit(seqs)
    window = [0, 1, 2, 3, 1, 2, 3]
    assert tri.nll([window], 1) < uni.nll([window], 1) < math.log(6)



def test_baseline_order_is_chosen_on_valid(gq):
    """Random binary sequences of period 4: the token 4 back decides the next one, the 3 before it do not,
    so only an order >= 5 predicts them, and the search must find that."""
    import random

    rng = random.Random(0)

    def seq(n):
        head = [rng.randrange(2) for _ in range(4)]
        return [head[i % 4] for i in range(n)]

    train = [seq(40) for _ in range(200)]
    valid = [[7] + seq(40) for _ in range(20)]  # one prefix token, not scored
    ngram, order = gq.fit_baseline(train, valid, 1, (2, 3, 4, 5, 6), 8)
    assert order >= 5
    assert ngram.nll(valid, 1, order) < 0.5 * ngram.nll(valid, 1, 4)

def test_top_line_is_monophonic(gq):
    notes = [(0.0, 1.0, 60), (0.0, 1.0, 67), (0.0, 2.0, 48), (1.0, 1.0, 69), (2.0, 4.0, 65), (2.0, 1.0, 71)]
    line = gq.top_line(notes, 4.0)
    assert line == [(0.0, 1.0, 67), (1.0, 1.0, 69), (2.0, 1.0, 71)]


def test_parse_check(gq):
    import symusic

    score = symusic.Score(480)
    score.time_signatures.append(symusic.TimeSignature(0, 3, 4))
    score.tempos.append(symusic.Tempo(0, 90.0))
    track = symusic.Track(program=0, is_drum=False, name="x")
    for q in range(6):
        track.notes.append(symusic.Note(q * 480, 480, 60, 80))
    score.tracks.append(track)
    midi = bytes(score.dumps_midi())
    assert gq.parse_check(midi, "3/4", 2, 90.0) == {"time_signature": True, "tempo": True, "bars": True,
                                                     "bars_found": 2}
    assert gq.parse_check(midi, "4/4", 2, 120.0)["time_signature"] is False
