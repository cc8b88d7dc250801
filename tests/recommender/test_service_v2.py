"""The recommender's search, recommendation v2, discovery and listener RPCs over real gRPC on
loopback, a real Qdrant Edge shard and a real SQLite listener store: tracks indexed through
the ``tracks.analyzed`` consumer (tags, attributes, metadata, descriptions), then every RPC
with good and malformed requests (the status code and the field named in the message)."""

from __future__ import annotations

import asyncio
import math

import grpc
import pytest

from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.recommender.v1 import recommender_pb2 as rpb
from musicaas.recommender.v1 import recommender_pb2_grpc
from musicaas.runtime.server import GrpcService, run_service
from musicaas.tenancy import tenant_metadata
from musicaas_recommender.index import EdgeTrackIndex
from musicaas_recommender.listeners import InteractionsConsumer, ListenerRecommender
from musicaas_recommender.listeners.store import InteractionStore
from musicaas_recommender.service import AnalyzedConsumer, RecommenderServicer
from tests.recommender.test_service import T, FakeBus, analyzed

PLAY, LIKE, SKIP = common_pb2.INTERACTION_TYPE_PLAY, common_pb2.INTERACTION_TYPE_LIKE, common_pb2.INTERACTION_TYPE_SKIP

#: id -> (embedding, top tag, tempo, energy, composer)
CATALOGUE = {
    "p1": ([1.0, 0.1, 0.0, 0.0], "piano", 70.0, 0.2, "Bach"),
    "p2": ([0.9, 0.2, 0.0, 0.0], "piano", 75.0, 0.3, "Bach"),
    "p3": ([0.8, 0.0, 0.3, 0.0], "piano", 140.0, 0.8, "Handel"),
    "s1": ([0.0, 1.0, 0.1, 0.0], "strings", 90.0, 0.5, "Handel"),
    "s2": ([0.1, 0.9, 0.0, 0.2], "strings", 95.0, 0.6, "Telemann"),
    "c1": ([0.0, 0.0, 1.0, 0.1], "choir", 60.0, 0.1, "Bach"),
    "c2": ([0.0, 0.1, 0.9, 0.3], "choir", 65.0, 0.2, "Telemann"),
}


def _event(track_id: str) -> events_pb2.TrackAnalyzed:
    vec, tag, tempo, energy, composer = CATALOGUE[track_id]
    event = analyzed(track_id, vec, tempo_bpm=tempo)
    event.analysis.tags.add(name=tag, score=0.9)
    event.analysis.tags.add(name="classical", score=0.5)
    event.analysis.features.energy = energy
    event.analysis.features.valence = 0.5
    event.analysis.features.danceability = 0.4
    event.metadata.composer = composer
    return event


async def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details()


@pytest.fixture
async def stub(tmp_path):
    index = EdgeTrackIndex(tmp_path / "shard", dim=4)
    consumer = AnalyzedConsumer(FakeBus(), index)
    for track_id in CATALOGUE:
        await consumer.handle(_event(track_id), {})
    async with InteractionStore(tmp_path / "listeners.sqlite3") as store:
        listeners = ListenerRecommender(store, index)
        stop, bound = asyncio.Event(), asyncio.get_running_loop().create_future()
        service = GrpcService(RecommenderServicer(index, listeners=listeners),
                              recommender_pb2_grpc.add_RecommenderServiceServicer_to_server,
                              "musicaas.recommender.v1.RecommenderService")
        task = asyncio.create_task(run_service(name="recommender-test", host="127.0.0.1", port=0, services=[service],
                                               stop=stop, grace_s=0.5, on_bound=bound.set_result))
        try:
            port = await asyncio.wait_for(bound, 10)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield recommender_pb2_grpc.RecommenderServiceStub(channel), InteractionsConsumer(listeners)
        finally:
            stop.set()
            await task
            await index.close()


MD = tenant_metadata(T)


async def test_search_ranks_by_bm25_over_descriptions_and_filters(stub):
    stub, _ = stub
    answer = await stub.SearchTracks(rpb.SearchTracksRequest(text="choir", limit=3), metadata=MD, timeout=10)
    assert {t.track_id for t in answer.tracks[:2]} == {"c1", "c2"}
    assert answer.tracks[0].reason == "text match (BM25)"
    assert answer.tracks[0].tags[0].name == "choir" and answer.tracks[0].metadata.composer in {"Bach", "Telemann"}
    flt = rpb.TrackFilter(composer="bach")  # case-insensitive
    answer = await stub.SearchTracks(rpb.SearchTracksRequest(text="piano", filter=flt), metadata=MD, timeout=10)
    assert {t.track_id for t in answer.tracks} <= {"p1", "p2", "c1"} and "p1" in {t.track_id for t in answer.tracks}
    for text in ("", "   ", "x" * 513):
        code, details = await _code(stub.SearchTracks(rpb.SearchTracksRequest(text=text), metadata=MD, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "text" in details


async def test_similar_with_diversity_and_tag_filters(stub):
    stub, _ = stub
    plain = await stub.SimilarTracks(rpb.SimilarTracksRequest(track_id="p1", limit=3), metadata=MD, timeout=10)
    assert [t.track_id for t in plain.tracks][:2] == ["p2", "p3"]
    diverse = await stub.SimilarTracks(rpb.SimilarTracksRequest(track_id="p1", limit=3, diversity=0.9),
                                       metadata=MD, timeout=10)
    assert len(diverse.tracks) == 3 and diverse.tracks[0].track_id == "p2"
    # with high diversity the second result is not the other piano track
    assert diverse.tracks[1].track_id not in {"p3"}
    tagged = await stub.SimilarTracks(rpb.SimilarTracksRequest(track_id="p1", filter=rpb.TrackFilter(tags=["choir"])),
                                      metadata=MD, timeout=10)
    assert {t.track_id for t in tagged.tracks} == {"c1", "c2"}
    code, details = await _code(stub.SimilarTracks(rpb.SimilarTracksRequest(track_id="p1", diversity=1.5),
                                                   metadata=MD, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "diversity" in details


async def test_recommend_with_weights_strategies_seed_tags_and_targets(stub):
    stub, _ = stub
    req = rpb.RecommendRequest(positive=[rpb.WeightedExample(track_id="p1", weight=3.0),
                                         rpb.WeightedExample(track_id="s1", weight=0.5)],
                               strategy=rpb.RECOMMEND_STRATEGY_SUM_SCORES, limit=3)
    answer = await stub.Recommend(req, metadata=MD, timeout=10)
    assert answer.tracks[0].track_id == "p2" and "sum_scores" in answer.tracks[0].reason
    # the weight moves the ranking: strings first when s1 weighs more
    req.positive[0].weight, req.positive[1].weight = 0.5, 3.0
    answer = await stub.Recommend(req, metadata=MD, timeout=10)
    assert answer.tracks[0].track_id == "s2"
    # a seed tag alone
    answer = await stub.Recommend(rpb.RecommendRequest(seed_tags=["choir"], limit=2), metadata=MD, timeout=10)
    assert {t.track_id for t in answer.tracks} == {"c1", "c2"} and "seed tags choir" in answer.tracks[0].reason
    # a tempo target re-ranks the piano tracks: the 140 BPM one first
    answer = await stub.Recommend(rpb.RecommendRequest(
        liked_track_ids=["p1"], limit=2, attributes=[rpb.AttributeTarget(name="tempo_bpm", target=140.0)],
        filter=rpb.TrackFilter(tags=["piano"])), metadata=MD, timeout=10)
    assert answer.tracks[0].track_id == "p3"
    # bounds through the filter's attributes
    answer = await stub.Recommend(rpb.RecommendRequest(
        liked_track_ids=["p1"], filter=rpb.TrackFilter(attributes=[rpb.AttributeTarget(name="energy", max=0.25)])),
        metadata=MD, timeout=10)
    assert {t.track_id for t in answer.tracks} == {"c1", "c2"}


@pytest.mark.parametrize("request_, field", [
    (rpb.RecommendRequest(positive=[rpb.WeightedExample(track_id="p1", weight=math.nan)]), "weight"),
    (rpb.RecommendRequest(positive=[rpb.WeightedExample(track_id="p1", weight=math.inf)]), "weight"),
    (rpb.RecommendRequest(positive=[rpb.WeightedExample(track_id="p1", weight=-2.0)]), "weight"),
    (rpb.RecommendRequest(liked_track_ids=[f"t{i}" for i in range(101)]), "101"),
    (rpb.RecommendRequest(liked_track_ids=["p1"], attributes=[rpb.AttributeTarget(name="loudness", target=1)]), "loudness"),
    (rpb.RecommendRequest(liked_track_ids=["p1"], attributes=[rpb.AttributeTarget(name="energy", target=2.0)]), "energy"),
    (rpb.RecommendRequest(liked_track_ids=["p1"], limit=101), "limit"),
    (rpb.RecommendRequest(), "seed"),
    (rpb.RecommendRequest(seed_tags=["a", "b", "c", "d", "e", "f"]), "seed_tags"),
])
async def test_recommend_refuses_bad_requests_naming_the_field(stub, request_, field):
    stub, _ = stub
    code, details = await _code(stub.Recommend(request_, metadata=MD, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert field in details


async def test_unknown_ids_are_not_found_naming_them(stub):
    stub, _ = stub
    code, details = await _code(stub.Recommend(rpb.RecommendRequest(liked_track_ids=["p1", "nope"]), metadata=MD, timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND and "nope" in details
    code, details = await _code(stub.Recommend(rpb.RecommendRequest(seed_tags=["tuba"]), metadata=MD, timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND and "tuba" in details
    code, details = await _code(stub.RecommendForListener(rpb.RecommendForListenerRequest(listener_id="ghost"),
                                                          metadata=MD, timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND and "ghost" in details


async def test_discover_and_context_search(stub):
    stub, _ = stub
    pair = rpb.ContextPair(positive_track_id="c1", negative_track_id="s1")
    answer = await stub.DiscoverTracks(rpb.DiscoverTracksRequest(target_track_id="p1", context=[pair], limit=3),
                                       metadata=MD, timeout=10)
    assert answer.tracks and all(t.track_id not in {"p1", "c1", "s1"} for t in answer.tracks)
    assert answer.tracks[0].reason.startswith("discovery near p1")
    answer = await stub.DiscoverTracks(rpb.DiscoverTracksRequest(context=[pair], limit=2), metadata=MD, timeout=10)
    assert answer.tracks[0].track_id == "c2"
    code, _ = await _code(stub.DiscoverTracks(rpb.DiscoverTracksRequest(target_track_id="p1"), metadata=MD, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def _batch(rows) -> events_pb2.InteractionsRecorded:
    event = events_pb2.InteractionsRecorded(tenant=T, batch_id="b1")
    for i, (listener, track, kind, played) in enumerate(rows):
        event.interactions.add(interaction_id=f"ix{i}-{listener}-{track}", listener_id=listener, track_id=track,
                               event=kind, played_s=played).at.FromSeconds(1_700_000_000 + i)
    return event


async def test_listeners_get_recommendations_with_reasons_and_a_trained_model(stub):
    stub, consumer = stub
    rows = []
    for listener in ("ann", "ben", "cid"):
        rows += [(listener, "p1", LIKE, 0.0), (listener, "p2", PLAY, 120.0)]
    rows += [("ann", "p3", PLAY, 120.0), ("ben", "p3", PLAY, 120.0), ("ann", "c1", SKIP, 3.0)]
    await consumer.handle(_batch(rows), {})
    await consumer.handle(_batch(rows), {})  # a replayed batch changes nothing
    trained = await stub.TrainListenerModel(rpb.TrainListenerModelRequest(), metadata=MD, timeout=60)
    assert trained.model_version and trained.listeners == 3 and trained.interactions == len(rows)
    answer = await stub.RecommendForListener(rpb.RecommendForListenerRequest(listener_id="cid", limit=3),
                                             metadata=MD, timeout=10)
    assert answer.interactions == 2 and answer.model_version == trained.model_version
    ids = [t.track_id for t in answer.tracks]
    assert "p1" not in ids and "p2" not in ids  # played ones left out
    assert ids[0] == "p3"  # what the similar listeners played
    assert all(t.reason for t in answer.tracks)
    again = await stub.RecommendForListener(rpb.RecommendForListenerRequest(listener_id="cid", include_played=True,
                                                                            limit=7), metadata=MD, timeout=10)
    assert "p1" in [t.track_id for t in again.tracks]
    # the taste profile as one more example of Recommend
    answer = await stub.Recommend(rpb.RecommendRequest(listener_id="ann", limit=2), metadata=MD, timeout=10)
    assert answer.tracks and "listener taste" in answer.tracks[0].reason
    # targets on the listener's recommendations re-rank them
    answer = await stub.RecommendForListener(rpb.RecommendForListenerRequest(
        listener_id="cid", limit=2, attributes=[rpb.AttributeTarget(name="tempo_bpm", target=60.0)]),
        metadata=MD, timeout=10)
    assert answer.tracks[0].tempo_bpm <= 95.0


def test_the_listener_blend_comes_from_the_settings(monkeypatch):
    from musicaas_recommender.service import RecommenderSettings

    monkeypatch.setenv("MUSICAAS_LISTENER_POPULARITY_SHARE", "0.4")
    monkeypatch.setenv("MUSICAAS_LISTENER_HISTORY_K", "12")
    monkeypatch.setenv("MUSICAAS_LISTENER_CF_ALGORITHM", "bpr")
    monkeypatch.setenv("MUSICAAS_LISTENER_CONTENT_HISTORY_K", "7")
    config = RecommenderSettings().listener_config()
    assert (config.popularity_share, config.history_k, config.cf.algorithm) == (0.4, 12.0, "bpr")
    assert config.content_history_k == 7.0
    for name, value in (("MUSICAAS_LISTENER_CF_ALGORITHM", "svd"), ("MUSICAAS_LISTENER_POPULARITY_SHARE", "1.5"),
                        ("MUSICAAS_LISTENER_CONTENT_HISTORY_K", "-1")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError):
            RecommenderSettings().listener_config()
        monkeypatch.setenv("MUSICAAS_LISTENER_CF_ALGORITHM", "als")
        monkeypatch.setenv("MUSICAAS_LISTENER_POPULARITY_SHARE", "0.4")
        monkeypatch.setenv("MUSICAAS_LISTENER_CONTENT_HISTORY_K", "7")
