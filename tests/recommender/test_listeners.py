"""Listener interactions, taste profiles, the collaborative model and the hybrid
recommendation: the store on a real SQLite file in a temporary folder, ``implicit`` for
real, the consumer fed real (malformed included) protobuf events, and the recommender over
the in-process reference index (:class:`MemoryListenerIndex`)."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading

import numpy as np
import pytest
import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from musicaas.common.v1 import common_pb2 as c
from musicaas.events.v1 import events_pb2
from musicaas.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from musicaas_recommender.index import TrackFilter, TrackPayload
from musicaas_recommender.listeners import (
    CONTENT_REASON,
    POPULAR_REASON,
    CFConfig,
    InteractionsConsumer,
    InteractionStore,
    ListenerConfig,
    ListenerRecommender,
    MemoryListenerIndex,
    interaction_weight,
    listener_ref,
)
from musicaas_recommender.listeners.cf import confidence_matrix
from musicaas_recommender.listeners.recommender import taste_profile
from musicaas_recommender.listeners.signals import WEIGHT_SQL, row_from_proto, weights_of
from musicaas_recommender.listeners.store import TrainingSnapshot

T = "acme"
OTHER = "globex"
DIM = 8
N_TRACKS = 40


def catalogue(seed: int = 0) -> tuple[MemoryListenerIndex, list[str], np.ndarray]:
    """40 tracks in 4 audio clusters of 10 (cluster = track number // 10); even tracks are
    in C major at 100 BPM, odd ones in A minor at 140 BPM."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, DIM))
    index = MemoryListenerIndex(DIM)
    ids = [f"trk_{i:02d}" for i in range(N_TRACKS)]
    vectors = np.stack([centres[i // 10] + 0.3 * rng.normal(size=DIM) for i in range(N_TRACKS)])
    for i, t in enumerate(ids):
        even = i % 2 == 0
        index.add(T, TrackPayload(track_id=t, key="C" if even else "A", mode="major" if even else "minor",
                                  tempo_bpm=100.0 if even else 140.0, source="upload", duration_s=60.0,
                                  loudness_lufs=-14.0), vectors[i])
    return index, ids, vectors


def interaction(iid: str, listener: str, track: str, event: int = c.INTERACTION_TYPE_LIKE, played_s: float = 0.0,
                at_s: int = 1_700_000_000) -> c.Interaction:
    return c.Interaction(interaction_id=iid, listener_id=listener, track_id=track, event=event, played_s=played_s,
                         at=Timestamp(seconds=at_s))


def batch(tenant: str, *items: c.Interaction) -> events_pb2.InteractionsRecorded:
    return events_pb2.InteractionsRecorded(tenant=tenant, interactions=list(items), batch_id="b")


@pytest.fixture
async def store(tmp_path):
    s = InteractionStore(tmp_path / "interactions.sqlite3")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def index():
    return catalogue()[0]


@pytest.fixture
def recommender(store, index):
    return ListenerRecommender(store, index, ListenerConfig(cf=CFConfig(factors=8, iterations=10, threads=2)))


async def audience(consumer: InteractionsConsumer, *, listeners: int = 24, per: int = 8) -> None:
    """Listener j likes ``per`` tracks of cluster j % 4 (ids rotate so the clusters overlap
    in who likes what), plus one skip of another cluster."""
    items = []
    for j in range(listeners):
        cluster = j % 4
        for k in range(per):
            items.append(interaction(f"l{j}-{k}", f"listener-{j}", f"trk_{cluster * 10 + (j + k) % 10:02d}",
                                     at_s=1_700_000_000 + k))
        items.append(interaction(f"l{j}-skip", f"listener-{j}", f"trk_{((cluster + 1) % 4) * 10:02d}",
                                 event=c.INTERACTION_TYPE_SKIP, played_s=4.0, at_s=1_700_000_100))
    await consumer.handle(batch(T, *items), {})


# -- signals ----------------------------------------------------------------------------------

def test_weights_follow_the_documented_table_in_python_numpy_and_sql():
    cases = [
        (c.INTERACTION_TYPE_LIKE, 0.0, 4.0), (c.INTERACTION_TYPE_ADD_TO_PLAYLIST, 0.0, 3.0),
        (c.INTERACTION_TYPE_COMPLETE, 180.0, 2.0), (c.INTERACTION_TYPE_PLAY, 30.0, 1.0),
        (c.INTERACTION_TYPE_PLAY, 29.9, -0.5), (c.INTERACTION_TYPE_SKIP, 3.0, -1.0),
        (c.INTERACTION_TYPE_SKIP, 45.0, 0.0), (c.INTERACTION_TYPE_DISLIKE, 0.0, -4.0),
    ]
    assert [interaction_weight(e, p) for e, p, _ in cases] == [w for _, _, w in cases]
    np.testing.assert_array_equal(weights_of(np.array([e for e, _, _ in cases]), np.array([p for _, p, _ in cases])),
                                  np.array([w for _, _, w in cases], dtype=np.float32))
    db = sqlite3.connect(":memory:")
    sql = [db.execute(f"SELECT {WEIGHT_SQL} FROM (SELECT ? AS event, ? AS played_s)", (e, p)).fetchone()[0]
           for e, p, _ in cases]
    assert sql == [w for _, _, w in cases]
    with pytest.raises(ValueError):
        interaction_weight(99, 0.0)


def test_rows_are_revalidated_naming_the_field_never_the_value():
    ok, field = row_from_proto(interaction("i-1", "partner:user/42", "trk_01", c.INTERACTION_TYPE_PLAY, 31.5))
    assert field == "" and ok.played_s == 31.5 and ok.at_us == 1_700_000_000 * 1_000_000 and ok.weight == 1.0
    bad = {
        "played_s": [interaction("i", "l", "t", c.INTERACTION_TYPE_PLAY, v) for v in (math.nan, math.inf, -1.0, 1e9)],
        "listener_id": [interaction("i", "x" * 257, "t"), interaction("i", "", "t"), interaction("i", "a\nb", "t")],
        "track_id": [interaction("i", "l", "t" * 257), interaction("i", "l", "")],
        "interaction_id": [interaction("i" * 129, "l", "t"), interaction("", "l", "t"), interaction("a b", "l", "t")],
        "event": [interaction("i", "l", "t", 99), interaction("i", "l", "t", c.INTERACTION_TYPE_UNSPECIFIED)],
    }
    for name, items in bad.items():
        for item in items:
            assert row_from_proto(item) == (None, name)
    # the longest accepted ids pass
    assert row_from_proto(interaction("i" * 128, "x" * 256, "t" * 256))[1] == ""


def test_listener_ref_is_short_stable_per_tenant_and_hides_the_id():
    ref = listener_ref(T, "alice@example.com")
    assert len(ref) == 12 and int(ref, 16) >= 0 and "alice" not in ref
    assert ref == listener_ref(T, "alice@example.com") != listener_ref(OTHER, "alice@example.com")


# -- store and consumer -----------------------------------------------------------------------

async def test_store_is_a_durable_wal_database(tmp_path):
    path = tmp_path / "sub" / "interactions.sqlite3"
    async with InteractionStore(path) as s:
        row, _ = row_from_proto(interaction("i-1", "l", "trk_00"))
        assert await s.record(T, [row]) == 1
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    async with InteractionStore(path) as s:
        assert await s.interaction_count(T, "l") == 1


async def test_consumer_records_valid_rows_and_drops_malformed_ones(store, recommender, index):
    consumer = InteractionsConsumer(recommender)
    secret = "listener-with-a-secret-email@example.com"
    event = batch(
        T,
        interaction("ok-1", secret, "trk_00"),
        interaction("ok-2", secret, "trk_01", c.INTERACTION_TYPE_PLAY, 40.0),
        interaction("nan", secret, "trk_02", c.INTERACTION_TYPE_PLAY, math.nan),
        interaction("big", "x" * 10_000, "trk_03"),
        interaction("bigtrack", secret, "t" * 300),
        interaction("unknown", secret, "trk_04", 42),
    )
    with structlog.testing.capture_logs() as logs:
        await consumer.handle(event, {"ce-id": "ce-1"})
    assert await store.interaction_count(T, secret) == 2
    rejected = next(e for e in logs if e["event"] == "interactions_rejected")
    assert rejected["fields"] == {"event": 1, "listener_id": 1, "played_s": 1, "track_id": 1}
    assert secret not in repr(logs) and "x" * 100 not in repr(logs)
    assert await store.profile(T, secret) is not None
    assert (await store.tenants()) == {T: True}


async def test_consumer_terminates_batches_that_can_never_succeed(recommender):
    consumer = InteractionsConsumer(recommender)
    with pytest.raises(InvalidArgument, match="no valid row"):
        await consumer.handle(batch(T, interaction("nan", "l", "t", c.INTERACTION_TYPE_PLAY, math.nan),
                                    interaction("unk", "l", "t", 77)), {})
    with pytest.raises(InvalidArgument):
        await consumer.handle(batch("Not A Tenant", interaction("i", "l", "t")), {})
    with pytest.raises(InvalidArgument, match="at most"):
        await consumer.handle(batch(T, *[interaction(f"i{j}", "l", "t") for j in range(10_001)]), {})
    await consumer.handle(batch(T), {})  # an empty batch is nothing to do
    assert await recommender.store.tenants() == {}


async def test_a_replayed_batch_changes_nothing(store, recommender):
    consumer = InteractionsConsumer(recommender)
    event = batch(T, interaction("a", "l1", "trk_00"), interaction("b", "l1", "trk_11", c.INTERACTION_TYPE_SKIP, 2.0),
                  interaction("c", "l2", "trk_00", c.INTERACTION_TYPE_COMPLETE, 60.0))
    await consumer.handle(event, {})
    counts = (await store.interaction_count(T, "l1"), await store.interaction_count(T, "l2"))
    profile = await store.profile(T, "l1")
    info = await recommender.train(T)
    assert (await store.tenants())[T] is False
    await consumer.handle(event, {})  # redelivered
    await consumer.handle(event, {})  # and replayed by an operator
    assert (await store.interaction_count(T, "l1"), await store.interaction_count(T, "l2")) == counts == (2, 1)
    np.testing.assert_array_equal(await store.profile(T, "l1"), profile)
    assert (await store.tenants())[T] is False  # nothing new: the model is not stale
    assert (await recommender.train(T)).interactions == info.interactions == 3


async def test_tenants_are_apart(store, index):
    index.add(OTHER, TrackPayload(track_id="trk_00", key=None, mode=None, tempo_bpm=90.0, source="upload",
                                  duration_s=1.0, loudness_lufs=-20.0), np.ones(DIM))
    rec = ListenerRecommender(store, index)
    consumer = InteractionsConsumer(rec)
    await consumer.handle(batch(T, interaction("a", "same-id", "trk_00")), {})
    await consumer.handle(batch(OTHER, interaction("a", "same-id", "trk_00"),
                                interaction("b", "same-id", "trk_01")), {})
    assert (await store.interaction_count(T, "same-id"), await store.interaction_count(OTHER, "same-id")) == (1, 2)
    np.testing.assert_allclose(await store.profile(OTHER, "same-id"), np.ones(DIM) / np.sqrt(DIM), rtol=1e-6)
    with pytest.raises(NotFound):
        await rec.recommend_for_listener("initech", "same-id")


# -- profiles and the model -------------------------------------------------------------------

def test_taste_profile_is_the_weighted_mean_and_pulls_away_from_rejections():
    v = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0]), "c": np.array([-1.0, 0.0])}
    np.testing.assert_allclose(taste_profile({"a": 4.0, "b": -1.0}, v), [0.8, -0.2])
    np.testing.assert_allclose(taste_profile({"a": 3.0, "gone": 5.0}, v), [1.0, 0.0])  # unindexed: left out
    assert taste_profile({"a": 2.0, "c": 2.0}, v) is None  # cancels out
    assert taste_profile({"gone": 1.0}, v) is None and taste_profile({}, v) is None


def test_confidence_matrix_follows_hu_koren_volinsky():
    snap = TrainingSnapshot(
        version=1, listener_ids=["u", "u", "u", "v", "v"], track_ids=["x", "x", "y", "y", "z"],
        events=np.array([c.INTERACTION_TYPE_LIKE, c.INTERACTION_TYPE_COMPLETE, c.INTERACTION_TYPE_DISLIKE,
                         c.INTERACTION_TYPE_PLAY, c.INTERACTION_TYPE_SKIP], dtype=np.int32),
        played_s=np.array([0.0, 60.0, 0.0, 10.0, 50.0]),
    )
    m, listeners, tracks, net = confidence_matrix(snap, alpha=10.0)
    assert (listeners, tracks) == (["u", "v"], ["x", "y", "z"])
    dense = m.toarray()
    # u: like + complete on x (r = 6), dislike y (r = -4); v: short play of y (r = -0.5),
    # a late skip of z (r = 0: no entry)
    np.testing.assert_allclose(dense, [[61.0, -41.0, 0.0], [0.0, -6.0, 0.0]])
    assert m.nnz == 3 and sorted(net.tolist()) == [-4.0, -0.5, 6.0]


async def test_versions_are_monotonic_across_restarts(tmp_path, index):
    path = tmp_path / "i.sqlite3"
    async with InteractionStore(path) as s:
        rec = ListenerRecommender(s, index)
        with pytest.raises(FailedPrecondition):
            await rec.train(T)
        await InteractionsConsumer(rec).handle(batch(T, interaction("a", "l", "trk_00")), {})
        first = (await rec.train(T)).version
        second = await rec.train(T)
        assert (second.listeners, second.tracks, second.interactions) == (1, 1, 1)
    async with InteractionStore(path) as s:
        third = await ListenerRecommender(s, index).train(T)
    numbers = [int(v[1:]) for v in (first, second.version, third.version)]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3 and first.startswith("v")


async def test_a_reader_during_retraining_sees_the_old_or_the_new_model(store, index):
    rec = ListenerRecommender(store, index, ListenerConfig(cf=CFConfig(factors=64, iterations=30, threads=2)))
    consumer = InteractionsConsumer(rec)
    await audience(consumer, listeners=400, per=10)
    old = rec.model(T)
    assert old is None
    first = await rec.train(T)
    old = rec.model(T)
    assert not old.user_factors.flags.writeable  # readers cannot be corrupted either
    await consumer.handle(batch(T, interaction("late", "newcomer", "trk_05")), {})
    seen, stop = [], threading.Event()

    def reader() -> None:  # another thread, as an executor-run request handler would be
        while not stop.is_set():
            m = rec.model(T)
            seen.append((m.info.version, m.user_factors.shape[0] == m.info.listeners == len(m.listener_index),
                         m.item_factors.shape[0] == m.info.tracks == len(m.track_ids)))

    ticks = 0

    async def ticker() -> None:  # the event loop stays free while the model is fitted
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    thread = threading.Thread(target=reader)
    thread.start()
    tick = asyncio.create_task(ticker())
    during = asyncio.create_task(rec.recommend_for_listener(T, "listener-1", limit=5))
    second = await rec.train(T)
    answered = await during
    stop.set()
    thread.join()
    await tick
    assert {v for v, _, _ in seen} <= {first.version, second.version}
    assert all(ok_u and ok_i for _, ok_u, ok_i in seen)
    assert answered.model_version in (first.version, second.version)
    assert rec.model(T).knows("newcomer") and not old.knows("newcomer")
    assert second.listeners == first.listeners + 1 and ticks > 3


async def test_the_schedule_trains_stale_tenants_only(store, recommender):
    consumer = InteractionsConsumer(recommender)
    await audience(consumer, listeners=8, per=4)
    task = asyncio.create_task(recommender.run_schedule(0.05))
    try:
        for _ in range(200):
            if recommender.model(T) is not None:
                break
            await asyncio.sleep(0.01)
        v1 = recommender.model(T).info.version
        await asyncio.sleep(0.2)
        assert recommender.model(T).info.version == v1  # nothing new: not retrained
        await consumer.handle(batch(T, interaction("new", "listener-0", "trk_33")), {})
        for _ in range(200):
            if recommender.model(T).info.version != v1:
                break
            await asyncio.sleep(0.01)
        assert int(recommender.model(T).info.version[1:]) > int(v1[1:])
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# -- recommendations --------------------------------------------------------------------------

def test_blend_weights_sum_to_one_and_content_grows_with_history():
    plain = ListenerConfig(history_k=30.0, popularity_share=0.9, content_history_k=0.0)
    for n in (1, 5, 20, 100):
        w = n / (n + 30.0)
        assert plain.weights(n) == pytest.approx((w, (1 - w) * 0.1, (1 - w) * 0.9))
    assert plain.weights(5, collaborative=False) == pytest.approx((0.0, 0.1, 0.9))
    w5 = 5 / 35.0
    assert plain.weights(5, content=False) == pytest.approx((w5, 0.0, 1 - w5))  # no profile: popularity
    assert plain.weights(5, collaborative=False, popular=False) == pytest.approx((0.0, 1.0, 0.0))  # no model
    scaled = ListenerConfig(history_k=30.0, popularity_share=0.9, content_history_k=10.0)
    shares = [scaled.weights(n) for n in (1, 10, 1000)]
    assert all(sum(s) == pytest.approx(1.0) for s in shares)
    assert shares[1][1] == pytest.approx((1 - 10 / 40) * 0.1 * 0.5)  # half the content share at n = k_c
    assert shares[0][1] < shares[1][1] and shares[0][2] > plain.weights(1)[2]  # the rest backs off to popularity
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            ListenerConfig(content_history_k=bad)


async def test_hybrid_blends_by_history_and_names_its_signals(store, index):
    # k = 2: a listener with 9 interactions leans on the collaborative model (w = 9 / 11)
    recommender = ListenerRecommender(store, index, ListenerConfig(history_k=2.0))
    consumer = InteractionsConsumer(recommender)
    await audience(consumer)
    info = await recommender.train(T)
    got = await recommender.recommend_for_listener(T, "listener-1", limit=10)
    n = await store.interaction_count(T, "listener-1")
    assert got.interactions == n == 9 and got.model_version == info.version
    assert got.collaborative_weight == pytest.approx(n / (n + 2.0))
    assert len(got.tracks) == 10
    assert {t.reason for t in got.tracks} <= {f"collaborative (ALS {info.version})", CONTENT_REASON, POPULAR_REASON}
    assert any(t.reason.startswith("collaborative") for t in got.tracks)
    assert all(0.0 <= t.score <= 1.0 for t in got.tracks)
    assert [t.score for t in got.tracks] == sorted((t.score for t in got.tracks), reverse=True)
    _, played, _ = await store.engaged(T, "listener-1")
    assert not played & {t.track_id for t in got.tracks}
    # its own cluster (1: trk_10..19) first: the listeners like it
    assert got.tracks[0].track_id.startswith("trk_1")


async def test_include_played_brings_back_played_tracks_but_never_disliked_ones(store, recommender):
    consumer = InteractionsConsumer(recommender)
    await audience(consumer)
    await consumer.handle(batch(T, interaction("d", "listener-1", "trk_12", c.INTERACTION_TYPE_DISLIKE)), {})
    await recommender.train(T)
    got = await recommender.recommend_for_listener(T, "listener-1", limit=20, include_played=True)
    ids = {t.track_id for t in got.tracks}
    _, played, disliked = await store.engaged(T, "listener-1")
    assert ids & (played - disliked) and not ids & disliked


async def test_filters_hold_for_collaborative_candidates(store, index):
    minor = TrackFilter(mode="minor", tempo_min_bpm=120.0)
    rec = ListenerRecommender(store, index, ListenerConfig(history_k=2.0))  # leaning on the model
    await audience(InteractionsConsumer(rec))
    await rec.train(T)
    got = await rec.recommend_for_listener(T, "listener-2", limit=10, flt=minor)
    assert got.tracks and all(t.payload.mode == "minor" and t.payload.tempo_bpm >= 120 for t in got.tracks)
    assert any(t.reason.startswith("collaborative") for t in got.tracks)


async def test_a_track_deleted_after_training_is_never_recommended(store, index, recommender):
    await audience(InteractionsConsumer(recommender))
    await recommender.train(T)
    before = await recommender.recommend_for_listener(T, "listener-1", limit=5)
    gone = before.tracks[0].track_id
    index.remove(T, gone)
    after = await recommender.recommend_for_listener(T, "listener-1", limit=20)
    assert gone not in {t.track_id for t in after.tracks}


async def test_listener_unknown_to_the_model_gets_content_taste_and_popularity(store, recommender):
    consumer = InteractionsConsumer(recommender)
    await audience(consumer)
    info = await recommender.train(T)
    await consumer.handle(batch(T, interaction("n1", "newcomer", "trk_30"),
                                interaction("n2", "newcomer", "trk_31")), {})
    got = await recommender.recommend_for_listener(T, "newcomer", limit=5)
    assert got.collaborative_weight == 0.0 and got.model_version == info.version and got.interactions == 2
    assert {t.reason for t in got.tracks} <= {CONTENT_REASON, POPULAR_REASON}
    # without the popularity back-off: the profile's own cluster (3: trk_30..39) alone
    content_only = ListenerRecommender(store, recommender.index,
                                       ListenerConfig(popularity_share=0.0, content_history_k=0.0))
    content_only.set_model(T, recommender.model(T))
    got = await content_only.recommend_for_listener(T, "newcomer", limit=5)
    assert {t.reason for t in got.tracks} == {CONTENT_REASON}
    assert all(t.track_id.startswith("trk_3") for t in got.tracks[:3])


async def test_cold_listener_without_profile_or_model_gets_popular_tracks(store, recommender):
    consumer = InteractionsConsumer(recommender)
    await consumer.handle(batch(T, *[interaction(f"p{j}", f"fan-{j}", "trk_07") for j in range(3)],
                                interaction("q", "fan-0", "trk_08"),
                                interaction("cold", "cold", "not-indexed-yet")), {})
    got = await recommender.recommend_for_listener(T, "cold", limit=3)
    assert got.model_version == "" and got.collaborative_weight == 0.0
    assert [t.track_id for t in got.tracks] == ["trk_07", "trk_08"]
    assert {t.reason for t in got.tracks} == {POPULAR_REASON}


async def test_unknown_listener_and_bad_arguments(recommender):
    await InteractionsConsumer(recommender).handle(batch(T, interaction("a", "l", "trk_00")), {})
    with pytest.raises(NotFound, match="nobody-here") as err:
        await recommender.recommend_for_listener(T, "nobody-here")
    long_id = "z" * 256
    with pytest.raises(NotFound) as err:
        await recommender.recommend_for_listener(T, long_id)
    assert len(err.value.message) < 120
    for kwargs in ({"limit": 0}, {"limit": 101}, {"diversity": 1.5}, {"diversity": math.nan}):
        with pytest.raises(InvalidArgument):
            await recommender.recommend_for_listener(T, "l", **kwargs)
    for bad in ("", "x" * 257, "tab\there"):
        with pytest.raises(InvalidArgument):
            await recommender.recommend_for_listener(T, bad)
    with pytest.raises(InvalidArgument):
        await recommender.recommend_for_listener("Bad Tenant", "l")


async def test_diversity_spreads_the_results_over_clusters(store, recommender):
    await audience(InteractionsConsumer(recommender))
    await recommender.train(T)
    plain = await recommender.recommend_for_listener(T, "listener-1", limit=6)
    diverse = await recommender.recommend_for_listener(T, "listener-1", limit=6, diversity=0.9)

    def clusters(r):
        return len({t.track_id[4] for t in r.tracks})

    assert clusters(diverse) > clusters(plain)


async def test_bpr_is_the_optional_algorithm(store, index):
    rec = ListenerRecommender(store, index, ListenerConfig(cf=CFConfig(algorithm="bpr", iterations=50, threads=2),
                                                                 history_k=0.1))
    await audience(InteractionsConsumer(rec))
    info = await rec.train(T)
    assert info.algorithm == "bpr"
    got = await rec.recommend_for_listener(T, "listener-1", limit=5)
    assert any(t.reason == f"collaborative (BPR {info.version})" for t in got.tracks)
    with pytest.raises(ValueError):
        CFConfig(algorithm="svd")


# -- with the real index ----------------------------------------------------------------------

@pytest.mark.integration
async def test_hybrid_over_a_qdrant_edge_shard(tmp_path, store):
    from musicaas_recommender.index import EdgeTrackIndex

    memory, ids, vectors = catalogue()
    edge = EdgeTrackIndex(tmp_path / "qdrant", dim=DIM)
    try:
        for t in ids:
            payload, _ = memory._tracks[T][t]
            await edge.upsert(T, payload, vectors[ids.index(t)])
        rec = ListenerRecommender(store, edge, ListenerConfig(history_k=2.0))
        await audience(InteractionsConsumer(rec))
        profile = await store.profile(T, "listener-1")
        assert profile is not None and profile.shape == (DIM,)
        info = await rec.train(T)
        got = await rec.recommend_for_listener(T, "listener-1", limit=8, flt=TrackFilter(mode="minor"))
        assert len(got.tracks) == 8 and all(t.payload.mode == "minor" for t in got.tracks)
        assert any(t.reason == f"collaborative (ALS {info.version})" for t in got.tracks)
        _, played, _ = await store.engaged(T, "listener-1")
        assert not played & {t.track_id for t in got.tracks}
        # the same answer as the reference index gives with the same model
        reference = ListenerRecommender(store, memory, ListenerConfig(history_k=2.0))
        reference.set_model(T, rec.model(T))
        ref = await reference.recommend_for_listener(T, "listener-1", limit=8, flt=TrackFilter(mode="minor"))
        assert [(t.track_id, t.reason) for t in got.tracks] == [(t.track_id, t.reason) for t in ref.tracks]
        await edge.delete(T, got.tracks[0].track_id)
        again = await rec.recommend_for_listener(T, "listener-1", limit=8)
        assert got.tracks[0].track_id not in {t.track_id for t in again.tracks}
    finally:
        await edge.close()
