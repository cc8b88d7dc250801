"""Tags per section: the mean of the musicnn tagger's per-patch probabilities over the patches
that overlap each section (musicaas_analyzer.sectiontags), filled in by the analyzer from the
tagger's answer (here a stand-in for Triton that follows the tensor contract)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from musicaas.common.v1 import common_pb2
from musicaas.models import musicnn_contract as mc
from musicaas_analyzer.convert import apply_section_tags, apply_tags
from musicaas_analyzer.sectiontags import section_tags

P = mc.PATCH_S
#: The rate of the analyzer kit's renderings (tests/analyzer/conftest.py).
SR = 22050


def _one_hot_patches(n: int) -> np.ndarray:
    """Patch i: tag i at 0.9, tag i+1 at 0.5, every other tag at 0.01."""
    probs = np.full((n, mc.NUM_TAGS), 0.01, dtype=np.float32)
    for i in range(n):
        probs[i, i % mc.NUM_TAGS] = 0.9
        probs[i, (i + 1) % mc.NUM_TAGS] = 0.5
    return probs


def test_a_section_gets_the_mean_of_the_patches_it_covers_best_first():
    probs = _one_hot_patches(6)
    (two, graze) = section_tags([(0.0, 2 * P), (P, 2 * P + 0.001)], probs)
    assert len(two) == mc.TOP_TAGS
    names = [n for n, _ in two]
    # patches 0 and 1: tag 1 is 0.5 + 0.9, tag 0 0.9 + 0.01, tag 2 0.01 + 0.5
    assert names[:3] == [mc.TAG_NAMES[1], mc.TAG_NAMES[0], mc.TAG_NAMES[2]]
    assert two[0][1] == pytest.approx((0.5 + 0.9) / 2, abs=1e-6)
    assert [s for _, s in two] == sorted((s for _, s in two), reverse=True)
    # patches 1 and 2, and patch 3 for 1 ms: weighted by the seconds shared with the section
    want = (P * probs[1] + P * probs[2] + 0.001 * probs[3]) / (2 * P + 0.001)
    assert dict(graze)[mc.TAG_NAMES[2]] == pytest.approx(float(want[2]), abs=1e-6)
    assert [n for n, _ in graze][:2] == [mc.TAG_NAMES[2], mc.TAG_NAMES[1]]


def test_sections_shorter_than_a_patch_or_beyond_the_patches_get_none():
    probs = _one_hot_patches(4)  # 4 patches: 0 to 4P seconds
    got = section_tags([(0.0, P - 0.1), (3.8 * P, 2 * P), (4.2 * P, 3 * P), (3.4 * P, P), (0.0, P)], probs)
    assert got[0] == () and got[2] == ()  # shorter than a patch; no patch at all
    assert got[1] == ()  # only 0.2 of a patch covered
    assert [n for n, _ in got[3]][:1] == [mc.TAG_NAMES[3]]  # 0.6 of patch 3: enough
    assert got[4][0] == (mc.TAG_NAMES[0], pytest.approx(0.9))  # exactly one patch (float32 bounds allowed)
    assert section_tags([], probs) == []
    assert [len(t) for t in section_tags([(0.0, 4 * P)], probs, top=3)] == [3]


def test_bad_probabilities_are_refused():
    with pytest.raises(ValueError, match=r"\[patches, 50\]"):
        section_tags([(0.0, 5.0)], np.zeros((3, 10)))
    bad = _one_hot_patches(2)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        section_tags([(0.0, 5.0)], bad)
    with pytest.raises(ValueError, match="patch_s"):
        section_tags([(0.0, 5.0)], _one_hot_patches(2), patch_s=0.0)


def test_apply_section_tags_fills_the_wire_sections_with_the_tracks_count():
    probs = _one_hot_patches(10)
    msg = common_pb2.TrackAnalysis()
    msg.sections.add(start_s=0.0, duration_s=3 * P)
    msg.sections.add(start_s=3 * P, duration_s=1.0)  # shorter than a patch
    msg.sections.add(start_s=4 * P, duration_s=6 * P)
    summary = mc.summarise(probs, np.ones((10, mc.EMBEDDING_DIM), np.float32), top=5)
    apply_tags(msg, summary)
    apply_section_tags(msg, probs)
    assert [len(s.tags) for s in msg.sections] == [5, 0, 5]
    assert msg.sections[0].tags[0].name == mc.TAG_NAMES[1] and msg.sections[2].tags[0].score > 0
    apply_section_tags(msg, probs)  # idempotent
    assert [len(s.tags) for s in msg.sections] == [5, 0, 5]


# --- the analyzer with a tagger ---------------------------------------------------------------


def _fake_outputs(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic per-patch outputs of the contract's shapes, from the patches' content:
    tag 0 follows the patch's level (min-max over the patches sent), tag 1 its complement."""
    level = rows.mean(axis=(1, 2))
    span = float(level.max() - level.min()) or 1.0
    loud = (level - level.min()) / span
    tags = np.full((rows.shape[0], mc.NUM_TAGS), 0.05, dtype=np.float32)
    tags[:, 0] = 0.05 + 0.9 * loud
    tags[:, 1] = 0.95 - 0.9 * loud
    tags[:, 2:] += np.linspace(0, 0.1, mc.NUM_TAGS - 2, dtype=np.float32)
    emb = np.ones((rows.shape[0], mc.EMBEDDING_DIM), dtype=np.float32)
    return tags, emb


def _two_part_wav(kit, seconds_each: float = 20.0) -> bytes:
    """A song with drums, then a quieter one on strings without: sections the structure
    analysis tells apart (as in test_analyzer_features)."""
    a = kit.render(kit.song_midi(bpm=120, bars=10, drums=True, program=5))[: int(seconds_each * SR)]
    b = kit.render(kit.song_midi(bpm=120, bars=10, drums=False, program=48,
                                 chords=((62, 66, 69), (67, 71, 74))))[: int(seconds_each * SR)]
    buf = io.BytesIO()
    sf.write(buf, np.concatenate([a, 0.3 * b]).astype(np.float32), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


async def test_the_analyzer_fills_each_sections_tags_from_the_tagger(monkeypatch, kit):
    from musicaas_analyzer.service import Analyzer, AnalyzerSettings
    from musicaas_analyzer.tagger import TritonTagger

    tagger = TritonTagger("127.0.0.1:1", timeout_s=5)
    sent: list[np.ndarray] = []

    async def infer_rows(rows):  # stands in for Triton, following the contract
        rows = mc.check_patches(rows)
        sent.append(rows)
        return _fake_outputs(rows)

    monkeypatch.setattr(tagger, "infer_rows", infer_rows)
    short_wav = io.BytesIO()
    sf.write(short_wav, np.zeros(22050 * 2, np.float32) + 0.01, 22050, format="WAV")
    async with Analyzer(AnalyzerSettings(workers=0, concurrency=1), tagger=tagger) as analyzer:
        got = await analyzer.analyze(_two_part_wav(kit), "two.wav")
        short = await analyzer.analyze(short_wav.getvalue(), "short.wav")
    assert sent[0].shape[0] == int(40.0 // P)  # non-overlapping 2.992 s patches
    per_patch, _ = _fake_outputs(sent[0])
    assert len(got.tags) == mc.TOP_TAGS and len(got.sections) >= 2, got.sections
    want = section_tags([(s.start_s, s.duration_s) for s in got.sections], per_patch)
    for section, expected in zip(got.sections, want):
        assert [(t.name, round(t.score, 5)) for t in section.tags] == [(n, round(s, 5)) for n, s in expected]
        assert len(section.tags) == (mc.TOP_TAGS if section.duration_s >= P else 0)
    # the loud part's first section leans to tag 0, the last (mostly quiet) one to tag 1
    assert got.sections[0].tags[0].name == mc.TAG_NAMES[0]
    assert got.sections[-1].tags[0].name == mc.TAG_NAMES[1]
    # a 2-second track: one (padded) patch, every section shorter than it: no section tags
    assert len(short.tags) == mc.TOP_TAGS and all(len(s.tags) == 0 for s in short.sections)
