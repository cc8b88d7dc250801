"""Helpers of ``bench/index_scale.py``: the catalogue, the numpy filter and exact search (no shard)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

_PATH = Path(__file__).resolve().parents[2] / "bench" / "index_scale.py"
_spec = importlib.util.spec_from_file_location("musicaas_bench_index_scale", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up
_spec.loader.exec_module(bench)


def test_tenant_sizes_sum_and_skew():
    sizes = bench.tenant_sizes(100_000)
    assert sum(sizes) == 100_000 and len(sizes) == bench.TENANTS
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 5 * sizes[-1]


def test_catalogue_is_seeded_unit_and_clustered():
    a, b = bench.make_catalogue(3000), bench.make_catalogue(3000)
    assert np.array_equal(a.vectors, b.vectors) and np.array_equal(a.tag_bits, b.tag_bits)
    assert np.allclose(np.linalg.norm(a.vectors, axis=1), 1.0, atol=1e-5)
    same = a.centre[:-1] == a.centre[1:]
    cos = np.sum(a.vectors[:-1] * a.vectors[1:], axis=1)
    assert cos[same].mean() > 0.3 > abs(cos[~same].mean())  # neighbourhoods, not noise
    assert all(a.tenant[a.rows(t)].tolist() == [t] * (a.rows(t).stop - a.rows(t).start) for t in range(len(a.tenants)))


def test_payload_round_trips_through_the_index_layout():
    from musicaas.models.musicnn_contract import TAG_NAMES
    from musicaas_recommender.index.shared import payload_to_dict

    cat = bench.make_catalogue(2000)
    for i in (0, 1, 1999):
        data = payload_to_dict(cat.tenants[int(cat.tenant[i])], bench.payload_of(cat, i, tuple(TAG_NAMES), "m/1"))
        names = {TAG_NAMES[j] for j in range(50) if int(cat.tag_bits[i]) >> j & 1}
        assert set(data["tag_names"]) == names
        assert data["mode_num"] == cat.mode_num[i] and data["tempo_bpm"] == cat.tempo[i]


def test_exact_top_respects_filter_and_exclusion():
    cat = bench.make_catalogue(3000)
    spec = bench.Spec(mode=1, tempo=(80.0, 160.0))
    q = cat.vectors[5]
    top, passed = bench.exact_top(cat, 0, q, spec, np.array([5]), 10)
    rows = cat.rows(0)
    ok = np.flatnonzero(spec.mask(cat, rows)) + rows.start
    ok = ok[ok != 5]
    assert passed == len(ok) and len(top) == min(10, len(ok))
    assert set(top) <= set(ok)
    best = ok[np.argsort(-(cat.vectors[ok] @ q))[:10]]
    assert list(top) == list(best)


def test_recall_and_percentiles():
    assert bench.recall(["a", "b"], ["a", "c"]) == 0.5 and bench.recall([], []) == 1.0
    p50, p95 = bench.pct(list(range(1, 101)))
    assert 50 <= p50 <= 51 and 95 <= p95 <= 96
