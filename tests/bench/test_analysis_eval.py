"""The split, the plan and the scores of ``bench/analysis_eval`` (no rendering, no analysis)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

# bench/analysis_eval as a package, without putting bench/ on sys.path (its scripts' names,
# datasets.py among them, would shadow installed packages for the rest of the session)
_PKG = Path(__file__).resolve().parents[2] / "bench" / "analysis_eval"
if "analysis_eval" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("analysis_eval", _PKG / "__init__.py", submodule_search_locations=[str(_PKG)])
    sys.modules["analysis_eval"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["analysis_eval"])
protocol = importlib.import_module("analysis_eval.protocol")

FAMILIES = {"src-a": {"choir": ((52, 52),), "piano": ((0, 0),)}, "src-b": {"choir": ((52, 52),), "organ": ((19, 19), (16, 16))}}


def test_split_is_deterministic_balanced_and_by_piece():
    ids = [f"chorale:bwv{i}" for i in range(400)]
    first = [protocol.split_of(i) for i in ids]
    assert first == [protocol.split_of(i) for i in ids]
    held = sum(s == protocol.HELD_OUT for s in first)
    assert 160 < held < 240  # about half
    # every render of a piece falls in its piece's part
    plans = protocol.plan_renders(ids[:40], FAMILIES, renders_per_piece=3)
    for p in plans:
        assert p.split == protocol.split_of(p.piece_id)


def test_seen_pieces_are_always_development():
    held = next(i for i in (f"folk:x{i}" for i in range(100)) if protocol.split_of(i) == protocol.HELD_OUT)
    assert protocol.split_of(held, seen=frozenset({held})) == protocol.DEV


def test_plan_covers_sources_families_and_bounds():
    ids = [f"chorale:bwv{i}" for i in range(60)]
    plans = protocol.plan_renders(ids, FAMILIES, renders_per_piece=2)
    assert len(plans) == 120 and len({p.item_id for p in plans}) == 120
    for split in protocol.SPLITS:
        cells = {(p.source, p.family) for p in plans if p.split == split}
        assert cells == {(s, f) for s, fams in FAMILIES.items() for f in fams}
        assert {p.tempo_bpm for p in plans if p.split == split} == set(map(float, protocol.TEMPI_BPM))
    for p in plans:
        assert abs(p.detune_cents) <= protocol.DETUNE_CENTS
        assert protocol.TRANSPOSE_RANGE[0] <= p.transpose <= protocol.TRANSPOSE_RANGE[1]
        assert p.programs in FAMILIES[p.source][p.family]
    assert plans == protocol.plan_renders(ids, FAMILIES, renders_per_piece=2)


@pytest.mark.parametrize(
    "ref, est, rel, mirex, sym",
    [
        ("C major", "C major", "exact", 1.0, 1.0),
        ("C major", "G major", "fifth-above", 0.5, 0.5),
        ("C major", "F major", "fifth-below", 0.0, 0.5),
        ("A minor", "E minor", "fifth-above", 0.5, 0.5),
        ("C major", "A minor", "relative", 0.3, 0.3),
        ("A minor", "C major", "relative", 0.3, 0.3),
        ("C major", "C minor", "parallel", 0.2, 0.2),
        ("Bb major", "A# major", "exact", 1.0, 1.0),
        ("C major", "D major", "other", 0.0, 0.0),
        ("C major", "X", "none", 0.0, 0.0),
    ],
)
def test_key_scores_follow_mirex(ref, est, rel, mirex, sym):
    s = protocol.key_scores(ref, est)
    assert s["key_rel"] == rel
    assert s["key_w"] == pytest.approx(mirex)
    assert s["key_ws"] == pytest.approx(sym)
    assert s["key_exact"] == float(rel == "exact")


@pytest.mark.parametrize(
    "est, rel, acc1, acc2",
    [(100.0, "exact", 1, 1), (103.9, "exact", 1, 1), (105.0, "other", 0, 0), (200.0, "double", 0, 1),
     (50.5, "half", 0, 1), (300.0, "triple", 0, 1), (33.3, "third", 0, 1), (0.0, "other", 0, 0)],
)
def test_tempo_scores(est, rel, acc1, acc2):
    s = protocol.tempo_scores(est, 100.0)
    assert (s["tempo_rel"], s["acc1"], s["acc2"]) == (rel, acc1, acc2)


def test_beat_grid_pickup_downbeats_and_cap():
    # 3/4, pickup of one quarter (first note at q = 2), notes up to q = 14
    notes = [(2.0, 1.0, 60)] + [(float(q), 1.0, 62) for q in range(3, 14)]
    beats, downbeats = protocol.beat_grid(notes, beats_per_bar=3, tempo_bpm=60.0)
    assert beats.tolist() == [float(q) for q in range(2, 14)]
    assert downbeats.tolist() == [3.0, 6.0, 9.0, 12.0]
    beats, _ = protocol.beat_grid(notes, beats_per_bar=3, tempo_bpm=60.0, cap_s=8.0)
    assert beats.max() < 8.0


def test_f_measure_window_and_trim():
    ref = np.arange(0, 30, 0.5)
    assert protocol.f_measure(ref, ref + 0.05) == pytest.approx(1.0)
    assert protocol.f_measure(ref, ref + 0.1) == pytest.approx(0.0)
    assert protocol.f_measure(ref, ref[::2]) == pytest.approx(2 * 0.5 / 1.5)


def test_table_marks_and_counts():
    rows = [
        {"split": "dev", "family": "choir", "ours": {"key_w": 0.5}, "peer": {"key_w": 1.0}},
        {"split": "held-out", "family": "choir", "ours": {"key_w": 1.0}, "peer": {"key_w": 1.0}},
    ]
    cells = protocol.aggregate(rows, "key_w", ("ours", "peer"), lambda r: [r["family"]])
    text = protocol.format_table("t", cells, ["choir", "piano"], ("ours", "peer"), flag=lambda g, v: "!" if v < 0.85 else "")
    line = next(x for x in text.splitlines() if x.startswith("choir"))
    assert "0.500!" in line and "1.000!" not in line and line.endswith("1/1")
    assert "piano" not in text


def test_chorales_must_end_on_the_written_tonic():
    sources = importlib.import_module("analysis_eval.sources")
    g_major, e_minor = 7, 12 + 4  # musicaas.keys.Key.index: tonic pc, + 12 for minor
    cadence = [(0.0, 2.0, 67), (2.0, 2.0, 55), (2.0, 2.0, 71), (2.0, 2.0, 62)]  # ends on a G chord, G in the bass
    assert sources.ends_on_tonic(cadence, g_major)
    assert not sources.ends_on_tonic(cadence, e_minor)  # a half cadence for E minor: left out


def test_compound_beat_grid_and_tempo_folding():
    # 6/8: two dotted-quarter beats per bar; a pickup of one eighth (first note at q = 2.5)
    notes = [(2.5, 0.5, 60)] + [(3.0 + 0.5 * i, 0.5, 62) for i in range(18)]  # up to q = 12
    beats, downbeats = protocol.beat_grid(notes, beats_per_bar=2, tempo_bpm=60.0, beat_q=1.5)
    # beats at multiples of 1.5 q from the first onset: q = 3, 4.5, ..., 10.5 -> 1 s apart
    assert beats.tolist() == [float(b) for b in range(2, 8)]
    assert downbeats.tolist() == [2.0, 4.0, 6.0]
    # a dotted-quarter beat is folded into the compound range by octaves; quarter beats are not
    lo, hi = protocol.COMPOUND_BEAT_RANGE_BPM
    assert protocol.beat_tempo(46.0, 1.5) == 92.0 and protocol.beat_tempo(192.0, 1.5) == 96.0
    assert all(lo <= protocol.beat_tempo(t, 1.5) < hi for t in protocol.TEMPI_BPM)
    assert protocol.beat_tempo(46.0) == 46.0


def test_expected_calibration_error():
    # calibrated: confidence 0.8 on items right 80 % of the time
    ok = [1] * 8 + [0] * 2
    assert protocol.expected_calibration_error([0.8] * 10, ok) == pytest.approx(0.0)
    # over-confident: 0.95 on items right half of the time
    assert protocol.expected_calibration_error([0.95] * 10, [1, 0] * 5) == pytest.approx(0.45)
    # two bins weighted by their share
    conf = [0.05] * 5 + [0.95] * 5
    assert protocol.expected_calibration_error(conf, [0] * 5 + [1] * 5) == pytest.approx(0.05)
    assert np.isnan(protocol.expected_calibration_error([], []))


def test_six_eight_tune_is_parsed_with_its_pickup_padded():
    music21 = pytest.importorskip("music21")
    from musicaas_model import data

    sources = importlib.import_module("analysis_eval.sources")
    abc = "X:1\nT:t\nM:6/8\nL:1/8\nK:G\nD|GAB c2A|B3 G2z|]\n"
    rec = sources._parse_metre_tune(data, music21.converter.parse(abc, format="abc"), "t")
    assert rec is not None and rec["metre"] == "6/8" and rec["key_index"] == 7  # G major
    onsets = sorted({n[0] for n in rec["notes"]})
    assert onsets[0] == 2.5 and onsets[1] == 3.0  # the eighth-note pickup ends on the bar line at 3 q
    abc44 = "X:1\nT:t\nM:4/4\nL:1/4\nK:G\nGABc|d4|]\n"
    assert sources._parse_metre_tune(data, music21.converter.parse(abc44, format="abc"), "t") is None


def test_drum_kit_plays_the_metre():
    import random

    sources = importlib.import_module("analysis_eval.sources")
    four = sources.Piece("folk:x", "folk", "C major", 4, ((0.0, 8.0, 60),))
    hits = sources.drum_notes(four, 0.5, 40.0, random.Random(0))  # 120 BPM: 0.5 s per quarter
    by_key = {k: sorted(round(h[0], 3) for h in hits if h[2] == k) for k in (sources.KICK, sources.SNARE, sources.CLOSED_HAT)}
    assert by_key[sources.KICK] == [0.0, 1.0, 2.0, 3.0]  # beats 1 and 3 of two bars
    assert by_key[sources.SNARE] == [0.5, 1.5, 2.5, 3.5]
    assert by_key[sources.CLOSED_HAT] == [0.25 * i for i in range(16)]
    assert all(h[4] == sources.DRUM_PROGRAM and 1 <= h[3] <= 127 for h in hits)
    six = sources.Piece("folk:y", "folk", "C major", 2, ((0.0, 6.0, 60),), beat_q=1.5, metre="6/8")
    hits = sources.drum_notes(six, 0.5, 40.0, random.Random(0))
    assert sorted(round(h[0], 3) for h in hits if h[2] == sources.KICK) == [0.0, 1.5]  # one per 6/8 bar
    assert sorted(round(h[0], 3) for h in hits if h[2] == sources.SNARE) == [0.75, 2.25]  # the second dotted quarter
