"""Index layout 2 on both backends (Qdrant Edge in a temporary folder, qdrant-client's local
mode in memory): named vectors and the layout-1 migration error, the richer payload and
filters, diversity (MMR), weighted recommend strategies with extra vectors and attribute
targets, seed-tag centroids, discover, hybrid search, the lookup helpers and optimize."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest
import qdrant_edge as qe
from qdrant_client import AsyncQdrantClient, models

from musicaas.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from musicaas_recommender.index import (
    MAX_CONTEXT_PAIRS,
    MAX_EXAMPLES,
    TAG_THRESHOLD,
    AttributeTarget,
    EdgeTrackIndex,
    QdrantClientTrackIndex,
    TrackFilter,
    TrackMetadata,
    TrackPayload,
    WeightedExample,
    WeightedVector,
)
from musicaas_recommender.index import edge as edge_module
from musicaas_recommender.index.shared import PAYLOAD_INDEXES, RRF_K, TENANT_FIELD

DIM, TDIM = 8, 4
BACKENDS = ["edge", "client"]
T, OTHER = "acme", "globex"


def vec(*values: float, dim: int = DIM) -> np.ndarray:
    out = np.zeros(dim, dtype=np.float32)
    out[: len(values)] = values
    return out


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def sig(x):
    return 0.5 * (x / (1 + np.abs(x)) + 1)


def track(track_id, *, key="C", mode="major", tempo=120.0, description="", tags=(), meta=TrackMetadata(),
          energy=None, danceability=None, valence=None, source="upload") -> TrackPayload:
    return TrackPayload(track_id=track_id, key=key, mode=mode, tempo_bpm=tempo, source=source, duration_s=30.0,
                        loudness_lufs=-14.0, title=track_id.upper(), embedding_model="musicnn-MTT/1",
                        metadata=meta, tags=tuple(tags), energy=energy, danceability=danceability,
                        valence=valence, description=description)


# (audio vector, text vector or None, payload)
CAT = {
    "a": (vec(1.0, 0.0), vec(1, 0, 0, 0, dim=TDIM), track(
        "a", key="C", mode="minor", tempo=70.0, description="calm solo piano piece in a minor key",
        tags=[("piano", 0.8), ("classical", 0.5), ("guitar", 0.05)],
        meta=TrackMetadata(artist="Clara Schumann", composer="Clara Schumann", album="Romances", year=1853,
                           genre="Romantic", tags=("solo",)),
        energy=0.2, danceability=0.1, valence=0.3)),
    "b": (vec(0.95, 0.2), vec(0.9, 0.1, 0, 0, dim=TDIM), track(
        "b", key="A", mode="minor", tempo=80.0, description="gentle piano and strings, slow and sad",
        tags=[("piano", 0.6), ("strings", 0.4)], meta=TrackMetadata(artist="Ensemble X", genre="Classical", year=1990),
        energy=0.3, danceability=0.2, valence=0.2)),
    "c": (vec(0.8, 0.5), vec(0, 1, 0, 0, dim=TDIM), track(
        "c", key="E", mode="major", tempo=140.0, description="energetic rock guitar with drums",
        tags=[("rock", 0.9), ("guitar", 0.7), ("drums", 0.5)],
        meta=TrackMetadata(artist="The Band", album="Loud", year=2001, genre="Rock"),
        energy=0.9, danceability=0.6, valence=0.7)),
    "d": (vec(0.5, 0.85), vec(0, 0.9, 0.1, 0, dim=TDIM), track(
        "d", key="G", mode="major", tempo=124.0, description="upbeat dance pop with synth and drums",
        tags=[("pop", 0.8), ("synth", 0.6), ("drums", 0.3)],
        meta=TrackMetadata(artist="the band", year=2015, genre="Pop"), energy=0.8, danceability=0.9, valence=0.9)),
    "e": (vec(0.0, 1.0), vec(0, 0, 1, 0, dim=TDIM), track(
        "e", key="D", mode="minor", tempo=60.0, description="ambient synth pad, calm and slow",
        tags=[("ambient", 0.7), ("synth", 0.5)], meta=TrackMetadata(genre="Ambient", year=2010),
        energy=0.1, danceability=0.1, valence=0.5)),
    "f": (vec(-0.3, 0.95), None, track(
        "f", key=None, mode=None, tempo=95.0, description="calm acoustic guitar folk song",
        tags=[("guitar", 0.6), ("folk", 0.5)], energy=0.3, valence=0.6)),
}
AUDIO_OF = {t: unit(v[0].astype(np.float64)) for t, v in CAT.items()}


def make_index(kind, tmp_path, **kwargs):
    if kind == "edge":
        return EdgeTrackIndex(tmp_path / "shard", dim=DIM, text_dim=TDIM, **kwargs)
    return QdrantClientTrackIndex(location=":memory:", dim=DIM, text_dim=TDIM)


async def fill(idx, tenant=T, cat=CAT):
    for audio, text, pl in cat.values():
        await idx.upsert(tenant, pl, audio, text_vector=text)


@pytest.fixture(scope="module")
async def catalogues(tmp_path_factory):
    built = {}
    for kind in BACKENDS:
        built[kind] = make_index(kind, tmp_path_factory.mktemp(kind))
        await fill(built[kind])
        # another tenant with the same ids, other payloads, and vectors right on T's queries
        await built[kind].upsert(OTHER, track("a", description="calm piano piano piano", tags=[("piano", 1.0)]),
                                 vec(1.0, 0.0), text_vector=vec(1, 0, 0, 0, dim=TDIM))
        await built[kind].upsert(OTHER, track("z", description="calm piano", tags=[("piano", 1.0)]),
                                 vec(0.0, 1.0), text_vector=vec(0, 0, 1, 0, dim=TDIM))
    yield built
    for idx in built.values():
        await idx.close()


@pytest.fixture(params=BACKENDS)
def cat(request, catalogues):
    return catalogues[request.param]


def ids(results):
    return [r.track_id for r in results]


# -- layout -------------------------------------------------------------------------------


async def test_edge_shard_has_named_vectors_and_every_payload_index(tmp_path):
    idx = EdgeTrackIndex(tmp_path / "s", dim=DIM, text_dim=TDIM)
    try:
        config = json.loads((tmp_path / "s" / "edge_config.json").read_text())
        assert config["vectors"] == {"audio": {"size": DIM, "distance": "Cosine"}, "text": {"size": TDIM, "distance": "Cosine"}}
        assert config["sparse_vectors"]["bm25"]["modifier"] == "idf"
        assert config["hnsw_config"]["m"] == 0 and config["hnsw_config"]["payload_m"] == 16
        schema = idx._shard.info().payload_schema
        assert set(schema) == set(PAYLOAD_INDEXES)
        assert schema[TENANT_FIELD].params.is_tenant is True
        assert all(schema[f].params.enable_hnsw is False for f in schema if f != TENANT_FIELD)
        assert str(schema["description"].data_type).endswith("Text")
        assert str(schema["year"].data_type).endswith("Integer") and str(schema["energy"].data_type).endswith("Float")
    finally:
        await idx.close()
    with pytest.raises(FailedPrecondition, match="size"):
        EdgeTrackIndex(tmp_path / "s", dim=DIM, text_dim=TDIM + 1)


async def test_a_layout_1_shard_names_the_migration(tmp_path):
    old = qe.EdgeShard.create(str(tmp_path / "v1"), qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)))
    old.update(qe.UpdateOperation.upsert_points([qe.Point(1, vec(1.0).tolist(), {"tenant": T})]))
    old.close()
    with pytest.raises(FailedPrecondition, match="layout 1.*re-index"):
        EdgeTrackIndex(tmp_path / "v1", dim=DIM)


async def test_a_layout_1_collection_names_the_migration(tmp_path):
    raw = AsyncQdrantClient(path=str(tmp_path / "local"))
    await raw.create_collection("tracks", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    await raw.close()
    idx = QdrantClientTrackIndex(location=str(tmp_path / "local"), dim=DIM)
    try:
        with pytest.raises(FailedPrecondition, match="layout 1.*re-index"):
            await idx.count()
    finally:
        await idx.close()


async def test_client_collection_has_named_vectors(tmp_path):
    idx = QdrantClientTrackIndex(location=":memory:", dim=DIM, text_dim=TDIM)
    try:
        await idx.count()
        info = await idx._client.get_collection("tracks")
        assert {k: v.size for k, v in info.config.params.vectors.items()} == {"audio": DIM, "text": TDIM}
        assert info.config.params.sparse_vectors["bm25"].modifier == models.Modifier.IDF
    finally:
        await idx.close()


# -- payload ------------------------------------------------------------------------------


async def test_payload_round_trips_and_old_callers_still_work(cat):
    for t, (_, _, pl) in CAT.items():
        got, vector = await cat.get(T, t)
        assert got == pl
        assert vector.dtype == np.float32 and vector.shape == (DIM,)
    old_style = TrackPayload(track_id="x", key="C", mode="major", tempo_bpm=1.0, source="upload", duration_s=1.0,
                             loudness_lufs=-9.0, title="t", embedding_model="m")
    assert old_style.metadata == TrackMetadata() and old_style.tags == () and old_style.energy is None


async def test_stored_payload_has_lower_case_copies_and_tag_names(catalogues):
    idx = catalogues["edge"]
    points, _ = idx._shard.scroll(qe.ScrollRequest(limit=10, filter=qe.Filter(must=[
        qe.FieldCondition("tenant", match=qe.MatchValue(T)), qe.FieldCondition("track_id", match=qe.MatchValue("a"))])))
    data = points[0].payload
    assert data["artist_lc"] == "clara schumann" and data["genre_lc"] == "romantic" and data["artist"] == "Clara Schumann"
    # model tags at or above TAG_THRESHOLD plus free tags; guitar (0.05) is below it
    assert TAG_THRESHOLD == 0.2 and data["tag_names"] == ["piano", "classical", "solo"]
    assert data["mode_num"] == 0 and data["key_pc"] == 0 and data["year"] == 1853


async def test_bad_payloads_are_invalid(tmp_path):
    idx = make_index("edge", tmp_path, optimize_interval_s=0)
    try:
        for bad, match in (
            (track("x", energy=1.5), "energy"),
            (track("x", valence=float("nan")), "valence"),
            (track("x", danceability=-0.1), "danceability"),
            (track("x", tags=[("piano", 1.2)]), r"tags\[0\] score"),
            (track("x", tags=[("", 0.5)]), r"tags\[0\] name"),
            (track("x", meta=TrackMetadata(year=10000)), "year"),
            (track("x", meta=TrackMetadata(artist="x" * 513)), "artist"),
            (track("x", meta=TrackMetadata(tags=("",))), "metadata tag"),
            (track("x", description="d" * 5000), "description"),
        ):
            with pytest.raises(InvalidArgument, match=match):
                await idx.upsert(T, bad, vec(1.0))
        with pytest.raises(InvalidArgument, match="text vector"):
            await idx.upsert(T, track("x"), vec(1.0), text_vector=np.ones(TDIM + 1))
        with pytest.raises(InvalidArgument, match="text vector"):
            await idx.upsert(T, track("x"), vec(1.0), text_vector=np.zeros(TDIM))
        assert await idx.count() == 0
        await idx.upsert(T, track("y", meta=TrackMetadata(year=0)), vec(1.0))  # 0: unknown
        assert (await idx.get(T, "y"))[0].metadata.year is None
    finally:
        await idx.close()


# -- filters ------------------------------------------------------------------------------


@pytest.mark.parametrize("flt, expected", [
    (TrackFilter(tags=("piano",)), {"b"}),  # a itself is the query
    (TrackFilter(tags=("Guitar",)), {"c", "f"}),  # a's guitar scores below the threshold
    (TrackFilter(tags=("drums", "guitar")), {"c"}),
    (TrackFilter(tags=("drums", "piano")), set()),
    (TrackFilter(artist="THE BAND"), {"c", "d"}),
    (TrackFilter(genre="rock"), {"c"}),
    (TrackFilter(album="loud", artist="the band"), {"c"}),
    (TrackFilter(attributes=(AttributeTarget("energy", min=0.5),)), {"c", "d"}),
    (TrackFilter(attributes=(AttributeTarget("year", min=2000, max=2012),)), {"c", "e"}),
    (TrackFilter(attributes=(AttributeTarget("key", min=2, max=2),)), {"e"}),
    (TrackFilter(attributes=(AttributeTarget("mode", min=1),)), {"c", "d"}),
    (TrackFilter(attributes=(AttributeTarget("danceability", max=0.15),)), {"e"}),  # f lacks it
    (TrackFilter(attributes=(AttributeTarget("tempo_bpm", min=90, max=130, target=5),)), {"d", "f"}),
    (TrackFilter(tempo_min_bpm=90.0, attributes=(AttributeTarget("loudness_lufs", max=-10),)), {"c", "d", "f"}),
])
async def test_similar_obeys_v2_filters(cat, flt, expected):
    results = await cat.similar(T, "a", limit=10, flt=flt)
    assert set(ids(results)) == expected
    assert ids(results) == sorted(ids(results), key=lambda t: -float(AUDIO_OF[t] @ AUDIO_OF["a"]))


@pytest.mark.parametrize("flt, match", [
    (TrackFilter(attributes=(AttributeTarget("loudness", min=0.5),)), "unknown attribute 'loudness'"),
    (TrackFilter(attributes=(AttributeTarget("energy", min=float("nan")),)), "energy min"),
    (TrackFilter(attributes=(AttributeTarget("energy", max=1.5),)), "energy max 1.5 outside"),
    (TrackFilter(attributes=(AttributeTarget("tempo_bpm", min=401),)), "tempo_bpm min"),
    (TrackFilter(attributes=(AttributeTarget("loudness_lufs", min=-71),)), "loudness_lufs min"),
    (TrackFilter(attributes=(AttributeTarget("duration_s", max=86401),)), "duration_s max"),
    (TrackFilter(attributes=(AttributeTarget("key", max=12),)), "key max"),
    (TrackFilter(attributes=(AttributeTarget("mode", min=-1),)), "mode min"),
    (TrackFilter(attributes=(AttributeTarget("year", min=0),)), "year min"),
    (TrackFilter(attributes=(AttributeTarget("valence", min=0.8, max=0.2),)), "valence range is empty"),
    (TrackFilter(attributes=(AttributeTarget("energy", target=float("inf")),)), "energy target"),
    (TrackFilter(tempo_min_bpm=500.0), "tempo_bpm min"),
    (TrackFilter(tags=("",)), "filter tag"),
    (TrackFilter(tags="piano"), "tags"),
    (TrackFilter(artist=7), "artist"),
])
async def test_bad_v2_filters_name_the_field(cat, flt, match):
    with pytest.raises(InvalidArgument, match=match):
        await cat.similar(T, "a", flt=flt)


# -- diversity ------------------------------------------------------------------------------

DUPS = {
    "q": (vec(1.0, 0.0), None, track("q")),
    "d1": (vec(1.0, 0.01), None, track("d1")),
    "d2": (vec(1.0, 0.02), None, track("d2")),
    "d3": (vec(1.0, 0.03), None, track("d3")),
    "x": (vec(0.7, 0.7), None, track("x")),
}


@pytest.fixture(params=BACKENDS)
async def dups(request, tmp_path):
    idx = make_index(request.param, tmp_path)
    await fill(idx, cat=DUPS)
    yield idx
    await idx.close()


async def test_diversity_trades_similarity_for_variety(dups):
    assert ids(await dups.similar(T, "q", limit=2)) == ["d1", "d2"]
    # native MMR (both backends): the near-duplicate of d1 loses to the different track
    assert ids(await dups.similar(T, "q", limit=2, diversity=0.9)) == ["d1", "x"]
    diverse = await dups.nearest(T, vec(1.0, 0.0), limit=2, exclude=["q"], diversity=0.9)
    assert ids(diverse) == ["d1", "x"]
    assert diverse[1].score == pytest.approx(float(unit(vec(0.7, 0.7)) @ vec(1.0)), abs=1e-5)  # still the cosine
    # MMR over re-scored candidates (weights force the re-scoring path)
    assert ids(await dups.recommend(T, positive=[("q", 2.0)], limit=2)) == ["d1", "d2"]
    assert ids(await dups.recommend(T, positive=[("q", 2.0)], limit=2, diversity=0.9)) == ["d1", "x"]
    assert ids(await dups.recommend(T, liked=["q"], limit=2, diversity=0.9, strategy="average_vector")) == ["d1", "x"]
    for bad in (-0.1, 1.1, float("nan"), "0.5x"):
        with pytest.raises(InvalidArgument, match="diversity"):
            await dups.similar(T, "q", diversity=bad)


# -- recommend ----------------------------------------------------------------------------


def reference(strategy, cands, pos, neg):
    """Weighted strategy scores by their definitions, over unit vectors."""
    out = {}
    for t in cands:
        x = AUDIO_OF[t]
        sp = [(float(x @ AUDIO_OF[p] if isinstance(p, str) else x @ unit(p)), w) for p, w in pos]
        sn = [(float(x @ AUDIO_OF[n]), w) for n, w in neg]
        if strategy == "sum_scores":
            out[t] = sum(w * s for s, w in sp) - sum(w * s for s, w in sn)
        elif strategy == "best_score":
            p = max(w * sig(s) for s, w in sp)
            n = max((w * sig(s) for s, w in sn), default=-math.inf)
            out[t] = p if p > n else -n
        else:
            P = sum(w * (AUDIO_OF[p] if isinstance(p, str) else unit(p)) for p, w in pos) / sum(w for _, w in pos)
            a = P if not neg else 2 * P - sum(w * AUDIO_OF[n] for n, w in neg) / sum(w for _, w in neg)
            out[t] = float(x @ unit(a))
    return out


@pytest.mark.parametrize("strategy", ["best_score", "sum_scores", "average_vector"])
@pytest.mark.parametrize("pos, neg", [
    ([("a", 1.0)], []),
    ([("a", 1.0), ("c", 1.0)], [("e", 1.0)]),
    ([("a", 3.0), ("e", 1.0)], [("c", 0.5)]),
    ([("d", 100.0), ("b", 0.01)], [("f", 2.0), ("a", 1.0)]),
])
async def test_recommend_scores_follow_the_strategy(cat, strategy, pos, neg):
    results = await cat.recommend(T, positive=pos, negative=neg, strategy=strategy, limit=10)
    used = {t for t, _ in pos + neg}
    assert set(ids(results)) == set(CAT) - used
    expected = reference(strategy, ids(results), pos, neg)
    for r in results:
        assert r.score == pytest.approx(expected[r.track_id], abs=1e-5), r.track_id
        assert r.payload == CAT[r.track_id][2]
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


@pytest.mark.parametrize("strategy", ["best_score", "sum_scores", "average_vector"])
async def test_unit_weights_give_qdrants_native_scores(catalogues, strategy):
    idx = catalogues["client"]
    native = await idx._client.query_points(
        "tracks", using="audio", limit=10, with_payload=True,
        query=models.RecommendQuery(recommend=models.RecommendInput(
            # the stored (unit) vectors: the index sends those, as Qdrant does for ids
            positive=[AUDIO_OF["a"].tolist(), AUDIO_OF["c"].tolist()], negative=[AUDIO_OF["e"].tolist()],
            strategy=models.RecommendStrategy(strategy))),
        query_filter=models.Filter(must=[models.FieldCondition(key="tenant", match=models.MatchValue(value=T))],
                                   must_not=[models.HasIdCondition(has_id=[idx_pid(t) for t in "ace"])]),
    )
    want = [(p.payload["track_id"], p.score) for p in native.points]
    for kind, index in catalogues.items():
        for call in (
            index.recommend(T, liked=["a", "c"], disliked=["e"], strategy=strategy),
            index.recommend(T, positive=[WeightedExample("a"), ("c", 1.0)], negative=[("e", 1)], strategy=strategy),
        ):
            got = [(r.track_id, r.score) for r in await call]
            assert [t for t, _ in got] == [t for t, _ in want], kind
            np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def idx_pid(t):
    from musicaas_recommender.index import point_id
    return point_id(T, t)


async def test_recommend_weights_change_the_ranking(cat):
    even = ids(await cat.recommend(T, positive=[("a", 1.0), ("e", 1.0)], limit=2))
    assert set(even) == {"b", "f"}
    towards_e = ids(await cat.recommend(T, positive=[("a", 1.0), ("e", 50.0)], limit=2))
    assert towards_e == ["f", "d"]


async def test_recommend_with_extra_vectors(cat):
    taste = vec(0.0, 3.0)  # normalised by the index
    results = await cat.recommend(T, positive_vectors=[WeightedVector(taste, 2.0)], liked=["a"], strategy="sum_scores")
    expected = reference("sum_scores", ids(results), [("a", 1.0), (taste, 2.0)], [])
    for r in results:
        assert r.score == pytest.approx(expected[r.track_id], abs=1e-5)
    only_vector = await cat.recommend(T, positive_vectors=[(vec(0.0, 1.0), 1.0)], limit=1)
    assert ids(only_vector) == ["e"]  # nothing to exclude: e is the nearest


async def test_recommend_attribute_targets_decay_the_scores(cat):
    plain = {r.track_id: r.score for r in await cat.recommend(T, liked=["a"], limit=10)}
    aimed = await cat.recommend(T, liked=["a"], limit=10, targets=[AttributeTarget("energy", target=0.9)])
    for r in aimed:
        energy = CAT[r.track_id][2].energy
        f = 0.5 ** (((energy - 0.9) / 0.2) ** 2)
        s = plain[r.track_id]
        assert r.score == pytest.approx(s * f if s >= 0 else s * (2 - f), abs=1e-6), r.track_id
    assert ids(aimed)[0] == "c"  # energy 0.9
    # the key is circular: B (11) is one semitone from C (0); f has no key: MISSING_DECAY
    keyed = {r.track_id: r for r in await cat.recommend(T, liked=["e"], limit=10, targets=[AttributeTarget("key", target=11)])}
    base = {r.track_id: r.score for r in await cat.recommend(T, liked=["e"], limit=10)}
    assert keyed["a"].score == pytest.approx(base["a"] * 0.5 ** ((1 / 2) ** 2), abs=1e-6)
    assert keyed["f"].score == pytest.approx(base["f"] * 0.5, abs=1e-6)
    # bounds in targets filter
    bounded = await cat.recommend(T, liked=["a"], targets=[AttributeTarget("valence", min=0.5, target=0.6)])
    assert set(ids(bounded)) == {"c", "d", "e", "f"}


async def test_backends_agree_on_weighted_recommend(catalogues):
    got = {}
    for kind, idx in catalogues.items():
        got[kind] = [(r.track_id, r.score) for r in await idx.recommend(
            T, positive=[("a", 2.0), ("d", 1.0)], negative=[("f", 3.0)], strategy="best_score",
            targets=[AttributeTarget("tempo_bpm", target=100.0)], diversity=0.3)]
    assert [t for t, _ in got["edge"]] == [t for t, _ in got["client"]]
    np.testing.assert_allclose([s for _, s in got["edge"]], [s for _, s in got["client"]], atol=1e-5)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(positive=[("a", float("nan"))]), InvalidArgument, r"positive\[0\] weight"),
    (dict(positive=[("a", 0.0)]), InvalidArgument, "weight"),
    (dict(positive=[("a", -1.0)]), InvalidArgument, "weight"),
    (dict(negative=[("e", 101.0)], liked=["a"]), InvalidArgument, r"negative\[0\] weight 101"),
    (dict(positive=[("a", float("inf"))]), InvalidArgument, "weight"),
    (dict(positive_vectors=[(vec(1.0), 0.0)]), InvalidArgument, r"positive_vectors\[0\] weight"),
    (dict(positive_vectors=[(np.full(DIM, np.nan), 1.0)]), InvalidArgument, "NaN"),
    (dict(positive_vectors=[(np.ones(DIM + 1), 1.0)]), InvalidArgument, "dimension"),
    (dict(positive=["a"]), InvalidArgument, "pairs"),
    (dict(liked=["a"], negative=[("a", 2.0)]), InvalidArgument, "both"),
    (dict(disliked=["a"]), InvalidArgument, "at least one"),
    (dict(), InvalidArgument, "at least one"),
    (dict(liked=["a"], strategy="median"), InvalidArgument, "strategy"),
    (dict(liked=["a"], targets=[AttributeTarget("energy", target=2.0)]), InvalidArgument, "energy target"),
    (dict(liked=["a"], targets=[AttributeTarget("warmth", target=0.5)]), InvalidArgument, "warmth"),
    (dict(liked=["a"], positive_vectors=[(vec(1.0), 1.0)] * MAX_EXAMPLES), InvalidArgument, str(MAX_EXAMPLES)),
    (dict(positive=[(f"n{i}", 1.0) for i in range(MAX_EXAMPLES + 1)]), InvalidArgument, str(MAX_EXAMPLES)),
])
async def test_recommend_rejects_bad_input(cat, kwargs, error, match):
    with pytest.raises(error, match=match):
        await cat.recommend(T, **kwargs)


async def test_recommend_names_every_unknown_id(cat):
    with pytest.raises(NotFound) as info:
        await cat.recommend(T, positive=[("a", 1.0), ("nope-1", 2.0)], negative=[("nope-2", 1.0)],
                            strategy="sum_scores")
    assert "nope-1" in info.value.message and "nope-2" in info.value.message and "'a'" not in info.value.message
    # 100 examples is the limit, not an error (here they are unknown)
    with pytest.raises(NotFound, match="n98"):
        await cat.recommend(T, liked=["a"], positive=[(f"n{i}", 1.0) for i in range(MAX_EXAMPLES - 1)])
    with pytest.raises(NotFound, match="'z'"):  # another tenant's track
        await cat.recommend(T, positive=[("z", 1.0)])


# -- seed tags ------------------------------------------------------------------------------


async def test_tag_centroid_is_the_normalised_mean(cat):
    centroid = await cat.tag_centroid(T, "Drums")
    assert centroid.dtype == np.float32 and centroid.shape == (DIM,)
    np.testing.assert_allclose(centroid, unit(AUDIO_OF["c"] + AUDIO_OF["d"]), atol=1e-6)
    np.testing.assert_allclose(await cat.tag_centroid(T, "solo"), AUDIO_OF["a"], atol=1e-6)  # a free tag
    np.testing.assert_allclose(await cat.tag_centroid(T, "strings"), AUDIO_OF["b"], atol=1e-6)  # 0.4 >= threshold
    with pytest.raises(NotFound, match="kazoo"):
        await cat.tag_centroid(T, "kazoo")
    # the other tenant's piano tracks do not count
    np.testing.assert_allclose(await cat.tag_centroid(T, "piano"), unit(AUDIO_OF["a"] + AUDIO_OF["b"]), atol=1e-6)
    for bad in ("", "   ", "x" * 65, None):
        with pytest.raises(InvalidArgument, match="seed tag"):
            await cat.tag_centroid(T, bad)


# -- discover -------------------------------------------------------------------------------


async def test_discover_and_context_agree_across_backends(catalogues):
    got = {}
    for kind, idx in catalogues.items():
        disc = await idx.discover(T, target="a", context=[("d", "b")], limit=10)
        ctx = await idx.discover(T, target=None, context=[("d", "b"), ("e", "a")], limit=10)
        got[kind] = ([(r.track_id, r.score) for r in disc], [(r.track_id, r.score) for r in ctx])
    for i in range(2):
        assert [t for t, _ in got["edge"][i]] == [t for t, _ in got["client"][i]]
        np.testing.assert_allclose([s for _, s in got["edge"][i]], [s for _, s in got["client"][i]], atol=1e-5)
    disc, ctx = got["edge"]
    assert {t for t, _ in disc} == {"c", "e", "f"}  # target and pair tracks excluded
    # discovery: tracks on d's side of the (d, b) pair rank first, then by similarity to a
    on_d_side = [t for t in "cef" if AUDIO_OF[t] @ AUDIO_OF["d"] > AUDIO_OF[t] @ AUDIO_OF["b"]]
    assert [t for t, _ in disc][: len(on_d_side)] == sorted(on_d_side, key=lambda t: -AUDIO_OF[t] @ AUDIO_OF["a"])
    # context: 0 for a track inside every pair's positive side
    assert {t for t, _ in ctx} == {"c", "f"} and ctx[0][1] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(target="a", context=[]), InvalidArgument, "1 to"),
    (dict(target="a", context=[("b", "c")] * (MAX_CONTEXT_PAIRS + 1)), InvalidArgument, f"{MAX_CONTEXT_PAIRS + 1} context"),
    (dict(target="a", context=[("b", "b")]), InvalidArgument, "both"),
    (dict(target="a", context=[("b",)]), InvalidArgument, r"context\[0\]"),
    (dict(target="a", context="bc"), InvalidArgument, "context"),
    (dict(target="nope-1", context=[("b", "nope-2")]), NotFound, "nope-1.*nope-2"),
    (dict(target="z", context=[("b", "c")]), NotFound, "'z'"),
])
async def test_discover_rejects_bad_input(cat, kwargs, error, match):
    with pytest.raises(error, match=match):
        await cat.discover(T, **kwargs)


# -- search ---------------------------------------------------------------------------------


async def test_bm25_search_without_a_text_vector(catalogues):
    got = {}
    for kind, idx in catalogues.items():
        results = await idx.search(T, "Calm PIANO pieces", limit=10)
        got[kind] = [(r.track_id, r.score) for r in results]
        assert results[0].payload == CAT["a"][2]
    # the same BM25 values (IDF over the tenant's own descriptions) on both; e and f tie
    edge, client = dict(got["edge"]), dict(got["client"])
    assert set(edge) == set(client) == {"a", "b", "e", "f"}  # stemmed: pieces -> piece
    for t in edge:
        assert edge[t] == pytest.approx(client[t], abs=1e-4)
    assert [t for t, _ in got["edge"]][:2] == ["a", "b"] and edge["e"] == pytest.approx(edge["f"])
    for kind, idx in catalogues.items():
        assert await idx.search(T, "the of and") == []  # only stop words
        assert ids(await idx.search(T, "guitar", flt=TrackFilter(genre="rock"))) == ["c"]


async def test_hybrid_search_fuses_dense_and_bm25_by_reciprocal_rank(catalogues):
    query = vec(0.1, 0.2, 1, 0, dim=TDIM)  # no ties in either ranking
    for kind, idx in catalogues.items():
        bm25 = ids(await idx.search(T, "calm slow", limit=10))
        assert bm25 == ["e", "b", "f", "a"], kind
        results = await idx.search(T, "calm slow", text_vector=query, limit=10)
        dense = sorted((t for t in CAT if CAT[t][1] is not None), key=lambda t: -float(unit(CAT[t][1]) @ query))
        expected = {}
        for ranking in (dense, bm25):
            for rank, t in enumerate(ranking):  # Qdrant counts ranks from 0
                expected[t] = expected.get(t, 0.0) + 1.0 / (RRF_K + rank)
        assert set(ids(results)) == set(expected), kind  # (c and f tie, at rank 2 of one list each)
        assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
        assert ids(results)[0] == "e" and "f" in ids(results)  # f: no text vector, found by BM25
        for r in results:
            assert r.score == pytest.approx(expected[r.track_id], rel=1e-5), (kind, r.track_id)
        diverse = await idx.search(T, "calm slow", text_vector=query, limit=3, diversity=0.5)
        assert len(diverse) == 3 and len(set(ids(diverse))) == 3 and ids(diverse)[0] == "e"
        assert set(ids(await idx.search(T, "calm", text_vector=query, flt=TrackFilter(tags=("guitar",))))) == {"c", "f"}


@pytest.mark.parametrize("text, kwargs, match", [
    ("", {}, "empty"),
    ("   ", {}, "empty"),
    ("x" * 513, {}, "513 characters"),
    (None, {}, "empty"),
    ("piano", {"text_vector": np.ones(TDIM + 1)}, "text vector"),
    ("piano", {"text_vector": np.full(TDIM, np.nan)}, "text vector"),
    ("piano", {"limit": 0}, "limit"),
    ("piano", {"diversity": 2.0}, "diversity"),
])
async def test_search_rejects_bad_input(cat, text, kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        await cat.search(T, text, **kwargs)
    assert len(await cat.search(T, "x" * 512)) == 0  # 512 is allowed


# -- lookups --------------------------------------------------------------------------------


async def test_vectors_payloads_and_scroll_are_per_tenant(cat):
    got = await cat.vectors(T, ["a", "zz", "a", "z"])
    assert set(got) == {"a"}  # missing and other tenants' ids are absent
    np.testing.assert_allclose(got["a"], AUDIO_OF["a"], atol=1e-6)
    assert (await cat.vectors(OTHER, ["z"]))["z"] @ vec(0.0, 1.0) == pytest.approx(1.0)
    assert await cat.payloads(T, ["b", "c", "nope"]) == {"b": CAT["b"][2], "c": CAT["c"][2]}
    assert await cat.payloads(OTHER, ["b"]) == {}
    seen, offset, pages = [], None, 0
    while True:
        page = await cat.scroll(T, offset=offset, limit=4)
        seen += page.tracks
        pages += 1
        if page.next_offset is None:
            break
        offset = page.next_offset
    assert pages == 2 and sorted(p.track_id for p in seen) == sorted(CAT)
    assert {p.track_id: p for p in seen} == {t: v[2] for t, v in CAT.items()}
    assert sorted(await cat.track_ids(T)) == sorted(CAT)
    assert sorted(await cat.track_ids(OTHER)) == ["a", "z"]
    assert await cat.track_ids("initech") == []
    with pytest.raises(InvalidArgument, match="offset"):
        await cat.scroll(T, offset="not-a-uuid")
    with pytest.raises(InvalidArgument, match="limit"):
        await cat.scroll(T, limit=0)
    with pytest.raises(InvalidArgument, match="string"):
        await cat.vectors(T, "abc")
    nearest = await cat.nearest(T, vec(1.0, 0.0), limit=3, exclude=["a", "unknown"])
    assert ids(nearest) == ["b", "c", "d"]
    among = await cat.nearest(T, vec(1.0, 0.0), limit=10, among=["e", "c", "z", "nope"], flt=TrackFilter(tags=("rock",)))
    assert ids(among) == ["c"]  # z is another tenant's
    assert await cat.nearest(T, vec(1.0, 0.0), among=[]) == []
    assert nearest[0].score == pytest.approx(float(AUDIO_OF["b"] @ vec(1.0)), abs=1e-5)


# -- scale ----------------------------------------------------------------------------------


async def test_edge_optimize_builds_hnsw_above_the_threshold(tmp_path, monkeypatch):
    monkeypatch.setattr(edge_module, "INDEXING_THRESHOLD_KB", 4)
    monkeypatch.setattr(edge_module, "FULL_SCAN_THRESHOLD_KB", 1)
    idx = EdgeTrackIndex(tmp_path / "s", dim=DIM, text_dim=TDIM, optimize_interval_s=0)
    rng = np.random.default_rng(3)
    points = {f"r{i}": rng.standard_normal(DIM).astype(np.float32) for i in range(400)}
    try:
        for t, v in points.items():
            await idx.upsert(T, track(t, description=f"track number {t}"), v)
        assert idx._shard.info().segments_count == 1  # one appendable segment, searched exactly
        assert await idx.optimize() is True  # above the threshold: indexed into a new segment
        assert idx._shard.info().segments_count >= 2
        assert await idx.optimize() is False  # nothing left to do
        assert await idx.count(T) == 400
        # answers stay right (a per-tenant HNSW graph on 400 points finds the exact neighbours)
        query = unit(points["r7"])
        exact = sorted((t for t in points if t != "r7"), key=lambda t: -float(unit(points[t]) @ query))[:5]
        assert ids(await idx.similar(T, "r7", limit=5)) == exact
        assert ids(await idx.search(T, "r123"))[0] == "r123"
    finally:
        await idx.close()


async def test_edge_background_optimizer_runs_on_schedule(tmp_path, monkeypatch):
    monkeypatch.setattr(edge_module, "INDEXING_THRESHOLD_KB", 4)
    idx = EdgeTrackIndex(tmp_path / "s", dim=DIM, text_dim=TDIM, optimize_interval_s=0.5)
    rng = np.random.default_rng(4)
    try:
        for i in range(200):
            await idx.upsert(T, track(f"r{i}"), rng.standard_normal(DIM))
        for _ in range(100):
            if idx._shard.info().indexed_vectors_count > 0:
                break
            await asyncio.sleep(0.1)
        assert idx._shard.info().indexed_vectors_count > 0
        assert len(await idx.similar(T, "r1", limit=5)) == 5
    finally:
        await idx.close()  # stops and joins the optimizer thread
    assert not idx._optimizer.is_alive()


async def test_client_optimize_is_a_no_op_and_closed_index_is_unavailable(tmp_path):
    idx = QdrantClientTrackIndex(location=":memory:", dim=DIM, text_dim=TDIM)
    assert await idx.optimize() is False
    await idx.close()
    edge = make_index("edge", tmp_path)
    await edge.close()
    for closed in (idx, edge):
        for call in (
            closed.optimize(), closed.vectors(T, ["a"]), closed.payloads(T, ["a"]), closed.scroll(T),
            closed.tag_centroid(T, "piano"), closed.nearest(T, vec(1.0)), closed.search(T, "piano"),
            closed.discover(T, target="a", context=[("b", "c")]),
        ):
            with pytest.raises(Unavailable, match="closed"):
                await call
