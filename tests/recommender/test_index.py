"""The recommender's TrackIndex on both backends: Qdrant Edge in a temporary folder and
qdrant-client's local mode in memory. Most tests use one tenant (``T``); the tenant tests put
two in one index."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import numpy as np
import pytest
from qdrant_client import models

from musicaas.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from musicaas_recommender.index import (
    MAX_EXAMPLES,
    MAX_LIMIT,
    MAX_TRACK_ID_LEN,
    EdgeTrackIndex,
    QdrantClientTrackIndex,
    TrackFilter,
    TrackIndex,
    TrackPayload,
    open_index,
    point_id,
)
from musicaas_recommender.index.shared import PAYLOAD_INDEXES, TENANT_FIELD

DIM = 8
BACKENDS = ["edge", "client"]
#: The tenant of the single-tenant tests, and a second one.
T = "acme"
OTHER = "globex"


def unit(*values: float) -> np.ndarray:
    vec = np.zeros(DIM, dtype=np.float32)
    vec[: len(values)] = values
    return vec


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))


def best_score(track_id: str, liked: list[str], disliked: list[str]) -> float:
    """Qdrant's best_score recommend value, as ScoredTrack documents it."""
    def sigmoid(x: float) -> float:
        return 0.5 * (x / (1 + abs(x)) + 1)

    vec = CATALOGUE[track_id][0]
    best_liked = max(cosine(vec, CATALOGUE[t][0]) for t in liked)
    best_disliked = max((cosine(vec, CATALOGUE[t][0]) for t in disliked), default=-np.inf)
    return sigmoid(best_liked) if best_liked > best_disliked else -sigmoid(best_disliked)


def payload(track_id: str, *, key: str | None = "C", mode: str | None = "major", tempo: float = 120.0,
            source: str = "upload", title: str = "") -> TrackPayload:
    return TrackPayload(track_id=track_id, key=key, mode=mode, tempo_bpm=tempo, source=source,
                        duration_s=30.0, loudness_lufs=-14.0, title=title)


# A small catalogue: vectors in the first two dimensions, at known angles.
CATALOGUE = {
    "a": (unit(1.0, 0.0), payload("a", key="C", mode="major", tempo=100.0)),
    "b": (unit(0.95, 0.2), payload("b", key="F#", mode="minor", tempo=90.0, source="generated")),
    "c": (unit(0.8, 0.5), payload("c", key="C", mode="minor", tempo=130.0)),
    "d": (unit(0.5, 0.85), payload("d", key="Bb", mode="major", tempo=125.0, source="generated")),
    "e": (unit(0.0, 1.0), payload("e", key=None, mode=None, tempo=140.0, source="chorale")),
    "f": (unit(-0.3, 0.95), payload("f", key="C", mode="major", tempo=60.0)),
}


def make_index(kind: str, tmp_path) -> TrackIndex:
    if kind == "edge":
        return EdgeTrackIndex(tmp_path / "shard", dim=DIM)
    return QdrantClientTrackIndex(location=":memory:", dim=DIM)


@pytest.fixture(params=BACKENDS)
async def index(request, tmp_path):
    idx = make_index(request.param, tmp_path)
    yield idx
    await idx.close()


@pytest.fixture(scope="module")
async def catalogues(tmp_path_factory):
    """CATALOGUE in each backend, shared by the tests that only read (opening an Edge
    shard and creating its payload indexes takes most of a second)."""
    built = {}
    for kind in BACKENDS:
        built[kind] = make_index(kind, tmp_path_factory.mktemp(kind))
        for vec, pl in CATALOGUE.values():
            await built[kind].upsert(T, pl, vec)
    yield built
    for idx in built.values():
        await idx.close()


@pytest.fixture(params=BACKENDS)
def catalogue(request, catalogues):
    return catalogues[request.param]


def ids(results) -> list[str]:
    return [r.track_id for r in results]


# -- upsert / get / count ----------------------------------------------------------------


async def test_upsert_is_idempotent_and_the_update_wins(index):
    assert await index.count() == 0
    await index.upsert(T, payload("t1", title="first"), unit(1.0, 0.0))
    await index.upsert(T, payload("t1", title="first"), unit(1.0, 0.0))
    assert await index.count() == 1
    second = payload("t1", key="Eb", mode="minor", tempo=88.5, source="generated", title="second")
    await index.upsert(T, second, [0.0, 3.0, 4.0, 0, 0, 0, 0, 0])
    assert await index.count() == 1
    got, vector = await index.get(T, "t1")
    assert got == second
    assert vector.dtype == np.float32 and vector.shape == (DIM,)
    np.testing.assert_allclose(vector, unit(0.0, 0.6, 0.8), atol=1e-6)  # stored unit-length


async def test_get_round_trips_a_payload_without_key(index):
    pl = payload("no-key", key=None, mode=None)
    await index.upsert(T, pl, unit(0.0, 1.0))
    assert (await index.get(T, "no-key"))[0] == pl
    await index.upsert(T, payload("blank-key", key="", mode=""), unit(0.0, 1.0))
    got, _ = await index.get(T, "blank-key")
    assert got.key is None and got.mode is None


def test_point_ids_are_deterministic_uuids():
    assert point_id(T, "track-1") == point_id(T, "track-1") != point_id(T, "track-2")
    assert len(point_id(T, "track-1")) == 36
    # the same track id in two tenants is two points
    assert point_id(T, "track-1") != point_id(OTHER, "track-1")
    # Pinned: a changed namespace or id scheme would orphan every stored point.
    assert point_id(T, "track-1") == "6e029540-1605-5ffd-bb28-e2df7c467e43"
    assert point_id(OTHER, "track-1") == "cb4e4303-bd11-51af-bdab-6eeac51bc541"


# -- similar ----------------------------------------------------------------------------


async def test_similar_excludes_itself_and_orders_by_cosine(catalogue):
    results = await catalogue.similar(T, "a", limit=10)
    assert ids(results) == ["b", "c", "d", "e", "f"]
    query = CATALOGUE["a"][0]
    for r in results:
        assert r.score == pytest.approx(cosine(query, CATALOGUE[r.track_id][0]), abs=1e-5)
        assert r.payload == CATALOGUE[r.track_id][1]
    assert ids(await catalogue.similar(T, "a", limit=2)) == ["b", "c"]


async def test_similar_obeys_filters(catalogue):
    tempo = TrackFilter(tempo_min_bpm=95.0, tempo_max_bpm=130.0)
    assert ids(await catalogue.similar(T, "a", flt=tempo)) == ["c", "d"]  # a itself excluded
    assert ids(await catalogue.similar(T, "a", flt=TrackFilter(tempo_min_bpm=125.0))) == ["c", "d", "e"]
    assert ids(await catalogue.similar(T, "a", flt=TrackFilter(tempo_max_bpm=90.0))) == ["b", "f"]
    assert ids(await catalogue.similar(T, "a", flt=TrackFilter(key="C"))) == ["c", "f"]
    # the key filter matches the pitch class, whatever the spelling
    assert ids(await catalogue.similar(T, "a", flt=TrackFilter(key="Gb"))) == ["b"]
    assert ids(await catalogue.similar(T, "a", flt=TrackFilter(mode="minor"))) == ["b", "c"]
    assert ids(await catalogue.similar(T, "a", flt=TrackFilter(key="C", mode="major"))) == ["f"]
    assert ids(await catalogue.similar(T, "a", flt=TrackFilter(source="generated"))) == ["b", "d"]
    assert ids(await catalogue.similar(T, "e", flt=TrackFilter(source="chorale"))) == []
    # blank strings (proto3 defaults) do not filter
    assert ids(await catalogue.similar(T, "a", flt=TrackFilter(key="", mode="", source=""))) == ["b", "c", "d", "e", "f"]


async def test_similar_rejects_bad_filters_and_limits(catalogue):
    for flt in (TrackFilter(mode="dorian"), TrackFilter(key="H"), TrackFilter(tempo_min_bpm=130, tempo_max_bpm=120),
                TrackFilter(tempo_min_bpm=float("nan")), TrackFilter(tempo_max_bpm=-1.0)):
        with pytest.raises(InvalidArgument):
            await catalogue.similar(T, "a", flt=flt)
    for limit in (0, -1, MAX_LIMIT + 1, True, 2.0, "3"):
        with pytest.raises(InvalidArgument, match="limit"):
            await catalogue.similar(T, "a", limit=limit)
    assert ids(await catalogue.similar(T, "a", limit=np.int64(1))) == ["b"]
    assert len(await catalogue.similar(T, "a", limit=MAX_LIMIT)) == 5


# -- recommend --------------------------------------------------------------------------


async def test_recommend_prefers_liked_and_avoids_disliked(catalogue):
    results = await catalogue.recommend(T, liked=["a"], disliked=["e"], limit=10)
    assert ids(results) == ["b", "c", "d", "f"]  # a and e excluded
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0 and scores[-1] < 0  # f sits nearer the disliked track than the liked one
    # Liking two far-apart tracks: the best match to either one ranks first.
    both = await catalogue.recommend(T, liked=["a", "e"], limit=2)
    assert set(ids(both)) == {"b", "f"}
    # A dislike pushes its neighbours down: e is nearer c than f is, but also nearer d.
    assert ids(await catalogue.recommend(T, liked=["c"])) == ["b", "d", "a", "e", "f"]
    assert ids(await catalogue.recommend(T, liked=["c"], disliked=["d"])) == ["b", "a", "f", "e"]


@pytest.mark.parametrize(
    "liked, disliked", [(["a"], ["e"]), (["a", "c"], ["e"]), (["c"], []), (["c"], ["d"]), (["e", "f"], ["a", "b"])]
)
async def test_recommend_scores_are_best_score(catalogue, liked, disliked):
    results = await catalogue.recommend(T, liked=liked, disliked=disliked)
    assert sorted(ids(results)) == sorted(set(CATALOGUE) - set(liked) - set(disliked))
    for r in results:
        assert r.score == pytest.approx(best_score(r.track_id, liked, disliked), abs=1e-5), r.track_id
        assert r.payload == CATALOGUE[r.track_id][1]


async def test_recommend_obeys_filters_and_limit(catalogue):
    results = await catalogue.recommend(T, liked=["a"], flt=TrackFilter(source="generated"), limit=1)
    assert ids(results) == ["b"]
    results = await catalogue.recommend(T, liked=["a", "a"], disliked=["f"], flt=TrackFilter(tempo_min_bpm=120.0))
    assert ids(results) == ["c", "d", "e"]


async def test_recommend_errors(catalogue):
    with pytest.raises(InvalidArgument, match="liked"):
        await catalogue.recommend(T, liked=[])
    with pytest.raises(NotFound) as info:
        await catalogue.recommend(T, liked=["a", "nope-1"], disliked=["nope-2"])
    assert "nope-1" in info.value.message and "nope-2" in info.value.message and "'a'" not in info.value.message
    with pytest.raises(InvalidArgument, match="both"):
        await catalogue.recommend(T, liked=["a"], disliked=["a"])
    with pytest.raises(InvalidArgument, match="string"):
        await catalogue.recommend(T, liked="a")
    with pytest.raises(InvalidArgument, match="string"):
        await catalogue.recommend(T, liked=["a"], disliked="e")
    with pytest.raises(InvalidArgument, match="limit"):
        await catalogue.recommend(T, liked=["a"], limit=0)
    with pytest.raises(InvalidArgument, match="track id"):
        await catalogue.recommend(T, liked=["a", ""])
    # MAX_EXAMPLES distinct examples are allowed (here all but "a" unknown), one more is not
    many = [f"n{i}" for i in range(MAX_EXAMPLES - 1)]
    with pytest.raises(NotFound, match=f"n{MAX_EXAMPLES - 2}"):
        await catalogue.recommend(T, liked=["a", "a", *many[:50]], disliked=many[50:])
    with pytest.raises(InvalidArgument, match=str(MAX_EXAMPLES)):
        await catalogue.recommend(T, liked=["a", *many], disliked=["e"])


async def test_backends_agree_on_recommend_scores(catalogues):
    got = {
        kind: [(r.track_id, r.score) for r in await idx.recommend(T, liked=["a", "c"], disliked=["e"])]
        for kind, idx in catalogues.items()
    }
    assert [t for t, _ in got["edge"]] == [t for t, _ in got["client"]] == ["b", "d", "f"]
    np.testing.assert_allclose([s for _, s in got["edge"]], [s for _, s in got["client"]], atol=1e-5)


# -- errors -----------------------------------------------------------------------------


async def test_unknown_track_is_not_found(catalogue):
    with pytest.raises(NotFound, match="missing"):
        await catalogue.get(T, "missing")
    with pytest.raises(NotFound, match="missing"):
        await catalogue.similar(T, "missing")


async def test_bad_vectors_are_invalid(index):
    with pytest.raises(InvalidArgument, match=f"dimension {DIM}"):
        await index.upsert(T, payload("x"), np.ones(DIM + 1, dtype=np.float32))
    with pytest.raises(InvalidArgument, match=f"dimension {DIM}"):
        await index.upsert(T, payload("x"), np.ones((2, DIM), dtype=np.float32))
    bad = unit(1.0)
    bad[3] = np.nan
    with pytest.raises(InvalidArgument, match="NaN"):
        await index.upsert(T, payload("x"), bad)
    with pytest.raises(InvalidArgument, match="zeros"):
        await index.upsert(T, payload("x"), np.zeros(DIM))
    with pytest.raises(InvalidArgument):
        await index.upsert(T, payload("x"), ["a"] * DIM)
    assert await index.count() == 0


async def test_bad_payloads_are_invalid(index):
    vec = unit(1.0)
    base = payload("x")
    for pl, match in (
        (payload(""), "track id"),
        (payload("x" * (MAX_TRACK_ID_LEN + 1)), "longer"),
        (payload("x", key="X#"), "tonic"),
        (payload("x", mode="lydian"), "mode"),
        (payload("x", source=""), "source"),
        (payload("x", tempo=float("inf")), "tempo_bpm"),
        (payload("x", tempo=-1.0), "tempo_bpm"),
        (payload("x", tempo="fast"), "tempo_bpm"),
        (TrackPayload(**{**base.__dict__, "duration_s": -0.5}), "duration_s"),
        (TrackPayload(**{**base.__dict__, "loudness_lufs": float("nan")}), "loudness_lufs"),
    ):
        with pytest.raises(InvalidArgument, match=match):
            await index.upsert(T, pl, vec)
    for track_id in ("", None, "x" * (MAX_TRACK_ID_LEN + 1)):
        with pytest.raises(InvalidArgument, match="track id"):
            await index.get(T, track_id)
    assert await index.count() == 0
    longest = payload("x" * MAX_TRACK_ID_LEN)
    await index.upsert(T, longest, vec)
    assert (await index.get(T, longest.track_id))[0] == longest


async def test_closed_index_is_unavailable(index):
    await index.upsert(T, payload("a"), unit(1.0))
    await index.upsert(T, payload("b"), unit(1.0, 1.0))
    await index.close()
    await index.close()  # idempotent
    calls = (
        index.count(),
        index.get(T, "a"),
        index.similar(T, "a"),
        index.recommend(T, liked=["a"], disliked=["b"]),
        index.upsert(T, payload("c"), unit(0.0, 1.0)),
        index.delete(T, "a"),
        index.count(T),
    )
    for call in calls:
        with pytest.raises(Unavailable, match="closed"):
            await call


# -- tenants ----------------------------------------------------------------------------

# The other tenant's catalogue: some of T's track ids with other vectors and payloads, and
# tracks right next to T's query vectors, which would win every query that forgot the tenant.
OTHERS = {
    "a": (unit(0.0, 1.0), payload("a", key="D", mode="minor", tempo=70.0, source="generated", title="other a")),
    "b": (unit(1.0, 0.01), payload("b", key="E", mode="major", tempo=100.0, title="other b")),
    "z": (unit(1.0, 0.0), payload("z", key="C", mode="major", tempo=100.0, title="other z")),
}


@pytest.fixture(params=BACKENDS)
async def two_tenants(request, tmp_path):
    """CATALOGUE for ``T`` and OTHERS for ``OTHER``, in one index."""
    idx = make_index(request.param, tmp_path)
    for vec, pl in CATALOGUE.values():
        assert await idx.upsert(T, pl, vec) is True
    for vec, pl in OTHERS.values():
        assert await idx.upsert(OTHER, pl, vec) is True
    yield idx
    await idx.close()


async def test_each_tenant_sees_only_its_own_points(two_tenants):
    idx = two_tenants
    assert await idx.count(T) == len(CATALOGUE)
    assert await idx.count(OTHER) == len(OTHERS)
    assert await idx.count() == await idx.count(None) == len(CATALOGUE) + len(OTHERS)
    assert await idx.count("initech") == 0
    # the same track id in two tenants: two points, each with its own payload and vector
    for track_id in ("a", "b"):
        mine, vector = await idx.get(T, track_id)
        theirs, other_vector = await idx.get(OTHER, track_id)
        assert mine == CATALOGUE[track_id][1] and theirs == OTHERS[track_id][1]
        assert cosine(vector, CATALOGUE[track_id][0]) == pytest.approx(1.0, abs=1e-6)
        assert cosine(other_vector, OTHERS[track_id][0]) == pytest.approx(1.0, abs=1e-6)
    # similar and recommend answer from the tenant's own points only
    results = await idx.similar(T, "a", limit=MAX_LIMIT)
    assert ids(results) == ["b", "c", "d", "e", "f"]
    assert [r.payload for r in results] == [CATALOGUE[t][1] for t in ids(results)]
    assert ids(await idx.similar(T, "a", flt=TrackFilter(key="C", mode="major"))) == ["f"]
    assert ids(await idx.similar(OTHER, "z", limit=MAX_LIMIT)) == ["b", "a"]
    assert ids(await idx.recommend(T, liked=["a"], disliked=["e"])) == ["b", "c", "d", "f"]
    assert ids(await idx.recommend(OTHER, liked=["z"], limit=MAX_LIMIT)) == ["b", "a"]
    assert (await idx.similar(OTHER, "a", limit=1))[0].payload == OTHERS["b"][1]


async def test_another_tenants_track_is_not_found(two_tenants):
    idx = two_tenants
    # "z" is OTHER's only: for T it is as missing as a track nobody has
    for track_id in ("z", "nobody"):
        with pytest.raises(NotFound, match=track_id):
            await idx.get(T, track_id)
        with pytest.raises(NotFound, match=track_id):
            await idx.similar(T, track_id)
        with pytest.raises(NotFound) as info:
            await idx.recommend(T, liked=["a", track_id], disliked=["e"])
        assert track_id in info.value.message and "'a'" not in info.value.message
    with pytest.raises(NotFound, match="'c'"):
        await idx.similar(OTHER, "c")
    with pytest.raises(NotFound, match="'c'"):
        await idx.recommend(OTHER, liked=["z"], disliked=["c"])
    assert await idx.count() == len(CATALOGUE) + len(OTHERS)  # nothing changed


async def test_delete_removes_the_point_and_is_idempotent(two_tenants):
    idx = two_tenants
    assert await idx.delete(T, "b") is True
    assert await idx.count(T) == len(CATALOGUE) - 1
    with pytest.raises(NotFound, match="'b'"):
        await idx.get(T, "b")
    with pytest.raises(NotFound, match="'b'"):
        await idx.similar(T, "b")
    assert "b" not in ids(await idx.similar(T, "a", limit=MAX_LIMIT))
    assert "b" not in ids(await idx.recommend(T, liked=["a"], limit=MAX_LIMIT))
    # the other tenant's "b" stays
    assert (await idx.get(OTHER, "b"))[0] == OTHERS["b"][1]
    assert "b" in ids(await idx.similar(OTHER, "z"))
    # again, a track never indexed, and another tenant's track: no error, nothing removed
    assert await idx.delete(T, "b") is False
    assert await idx.delete(T, "nobody") is False
    assert await idx.delete(T, "z") is False
    assert await idx.delete("initech", "a") is False
    assert await idx.count(OTHER) == len(OTHERS)
    assert await idx.count() == len(CATALOGUE) + len(OTHERS) - 1
    # a deleted track indexed again is back
    assert await idx.upsert(T, CATALOGUE["b"][1], CATALOGUE["b"][0]) is True
    assert ids(await idx.similar(T, "a", limit=1)) == ["b"]


async def test_upsert_tells_a_new_point_from_a_replaced_one(index):
    assert await index.upsert(T, payload("t1"), unit(1.0)) is True
    assert await index.upsert(T, payload("t1", title="again"), unit(1.0, 1.0)) is False
    assert await index.upsert(OTHER, payload("t1"), unit(1.0)) is True  # another tenant's point
    assert await index.delete(T, "t1") is True
    assert await index.upsert(T, payload("t1"), unit(1.0)) is True
    # concurrent writes of one point: exactly one of them added it
    created = await asyncio.gather(*(index.upsert(T, payload("t2"), unit(1.0, float(i))) for i in range(8)))
    assert sorted(created) == [False] * 7 + [True]
    assert await index.count() == 3


async def test_bad_tenants_are_invalid(index):
    await index.upsert(T, payload("a"), unit(1.0))
    for tenant in ("", "Acme", "ac.me", "*", ">", "a/b", "x" * 33, "1st", None, 7):
        calls = [
            index.upsert(tenant, payload("a"), unit(1.0)),
            index.get(tenant, "a"),
            index.similar(tenant, "a"),
            index.recommend(tenant, liked=["a"]),
            index.delete(tenant, "a"),
        ]
        if tenant is not None:  # count(None) counts every tenant's points
            calls.append(index.count(tenant))
        for call in calls:
            with pytest.raises(InvalidArgument, match="tenant"):
                await call
    assert await index.count() == 1


# -- persistence and backends -------------------------------------------------------------


async def test_edge_shard_survives_close_and_reopen(tmp_path):
    path = tmp_path / "deep" / "shard"
    idx = EdgeTrackIndex(path, dim=DIM)
    for vec, pl in CATALOGUE.values():
        await idx.upsert(T, pl, vec)
    with pytest.raises(FailedPrecondition):  # one process per shard folder
        EdgeTrackIndex(path, dim=DIM)
    await idx.close()

    idx = EdgeTrackIndex(path, dim=DIM)
    try:
        assert await idx.count() == len(CATALOGUE)
        got, vector = await idx.get(T, "d")
        assert got == CATALOGUE["d"][1]
        assert cosine(vector, CATALOGUE["d"][0]) == pytest.approx(1.0, abs=1e-6)
        assert ids(await idx.similar(T, "a", flt=TrackFilter(key="C"))) == ["c", "f"]  # payload indexes work
        await idx.upsert(T, payload("g"), unit(1.0, 1.0))
    finally:
        await idx.close()

    with pytest.raises(FailedPrecondition, match="size"):
        EdgeTrackIndex(path, dim=DIM * 2)
    idx = EdgeTrackIndex(path, dim=DIM)
    assert await idx.count() == len(CATALOGUE) + 1
    # Concurrent calls run in worker threads; close waits for the ones in flight.
    rng = np.random.default_rng(7)
    await asyncio.gather(
        *(idx.upsert(T, payload(f"r{i}"), rng.standard_normal(DIM)) for i in range(20)),
        *(idx.similar(T, "a", limit=3) for _ in range(5)),
        idx.close(),
    )
    idx = EdgeTrackIndex(path, dim=DIM)
    assert await idx.count() == len(CATALOGUE) + 21
    await idx.close()


async def test_edge_shard_has_the_payload_indexes(tmp_path):
    idx = EdgeTrackIndex(tmp_path / "shard", dim=DIM)
    try:
        # Without them every filtered query scans the whole shard.
        schema = idx._shard.info().payload_schema
        assert set(schema) == set(PAYLOAD_INDEXES)
        # Qdrant's multitenancy: the tenant field's keyword index is flagged is_tenant
        assert schema[TENANT_FIELD].params.is_tenant is True
        assert not any(getattr(schema[f].params, "is_tenant", None) for f in schema if f != TENANT_FIELD)
    finally:
        await idx.close()


async def test_client_creates_the_tenant_index_with_is_tenant(monkeypatch):
    idx = QdrantClientTrackIndex(location=":memory:", dim=DIM)
    created = {}
    create = idx._client.create_payload_index

    async def record(collection, field, *, field_schema, **kwargs):
        created[field] = field_schema
        return await create(collection, field, field_schema=field_schema, **kwargs)

    monkeypatch.setattr(idx._client, "create_payload_index", record)
    try:
        assert await idx.count() == 0
    finally:
        await idx.close()
    assert set(created) == set(PAYLOAD_INDEXES)
    assert created[TENANT_FIELD] == models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)


async def test_client_creates_its_collection_once_under_concurrent_first_calls():
    idx = QdrantClientTrackIndex(location=":memory:", dim=DIM)
    try:
        await asyncio.gather(*(idx.upsert(T, payload(f"t{i}"), unit(1.0, float(i))) for i in range(8)), idx.count())
        assert await idx.count() == 8
    finally:
        await idx.close()


async def test_client_local_folder_survives_close_and_reopen(tmp_path):
    idx = QdrantClientTrackIndex(location=str(tmp_path / "local"), collection="t", dim=DIM)
    await idx.upsert(T, payload("a"), unit(1.0))
    await idx.close()
    idx = QdrantClientTrackIndex(location=str(tmp_path / "local"), collection="t", dim=DIM)
    assert await idx.count() == 1
    await idx.close()
    idx = QdrantClientTrackIndex(location=str(tmp_path / "local"), collection="t", dim=DIM + 1)
    with pytest.raises(FailedPrecondition, match="collection"):
        await idx.count()
    await idx.close()


async def test_unreachable_server_is_unavailable():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    idx = QdrantClientTrackIndex(url=f"http://127.0.0.1:{port}", dim=DIM, timeout_s=2.0)
    try:
        with pytest.raises(Unavailable, match=str(port)):
            await idx.count()
        with pytest.raises(Unavailable):
            await idx.upsert(T, payload("a"), unit(1.0))
    finally:
        await idx.close()


async def test_open_index_picks_the_backend(tmp_path):
    edge = open_index(qdrant_url=None, edge_path=str(tmp_path / "e"), dim=DIM)
    assert isinstance(edge, EdgeTrackIndex) and edge.dim == DIM and edge.path == tmp_path / "e"
    await edge.close()
    edge = open_index(qdrant_url="", edge_path=tmp_path / "e", dim=DIM)
    assert isinstance(edge, EdgeTrackIndex)
    await edge.close()
    client = open_index(qdrant_url="http://127.0.0.1:1", edge_path=str(tmp_path / "x"), dim=DIM, collection="c")
    assert isinstance(client, QdrantClientTrackIndex) and client.collection == "c"
    await client.close()
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError):
        QdrantClientTrackIndex(dim=DIM)
    with pytest.raises(ValueError):
        QdrantClientTrackIndex(url="http://127.0.0.1:1", location=":memory:", dim=DIM)
    with pytest.raises(ValueError, match="collection"):
        QdrantClientTrackIndex(location=":memory:", collection="", dim=DIM)
    for dim in (0, True, 8.0):
        with pytest.raises(ValueError, match="dim"):
            open_index(qdrant_url=None, edge_path=tmp_path / "d", dim=dim)


def test_the_edge_backend_does_not_import_qdrant_client():
    # qdrant-client takes most of a second to import; the default (Edge) service never needs it.
    code = (
        "import sys, musicaas_recommender.__main__, musicaas_recommender.index as index\n"
        "assert 'qdrant_client' not in sys.modules, 'imported early'\n"
        "assert index.QdrantClientTrackIndex.__name__ == 'QdrantClientTrackIndex'\n"
        "assert 'qdrant_client' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
