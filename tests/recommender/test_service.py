"""The recommender's gRPC handlers and its ``tracks.analyzed`` consumer over a real Qdrant
Edge shard (the bus is a fake: these are unit tests of one class each)."""

from __future__ import annotations

import numpy as np
import pytest

from musicaas.common.v1 import common_pb2
from musicaas.embedding import EMBEDDING_DIM
from musicaas.events.v1 import events_pb2
from musicaas.recommender.v1 import recommender_pb2
from musicaas.runtime.errors import InvalidArgument, NotFound
from musicaas_recommender.index import EdgeTrackIndex, ScoredTrack, TrackFilter, TrackPayload
from musicaas_recommender.service import (
    DEFAULT_LIMIT,
    AnalyzedConsumer,
    RecommenderServicer,
    RecommenderSettings,
    filter_from_proto,
    scored_to_proto,
)


def test_the_embedding_size_comes_from_the_shared_contract(monkeypatch):
    assert RecommenderSettings().embedding_dim == EMBEDDING_DIM
    monkeypatch.setenv("MUSICAAS_EMBEDDING_DIM", "12")
    assert RecommenderSettings().embedding_dim == 12


def test_filter_from_proto():
    assert filter_from_proto(recommender_pb2.TrackFilter()) is None
    full = recommender_pb2.TrackFilter(
        tempo_min_bpm=0.0, tempo_max_bpm=128.5, key="F#", mode=common_pb2.MODE_MINOR,
        source=common_pb2.TRACK_SOURCE_GENERATED,
    )
    assert filter_from_proto(full) == TrackFilter(
        tempo_min_bpm=0.0, tempo_max_bpm=128.5, key="F#", mode="minor", source="generated"
    )
    # an explicit 0 BPM bound is a bound; unset fields stay None
    assert filter_from_proto(recommender_pb2.TrackFilter(tempo_min_bpm=0.0)) == TrackFilter(tempo_min_bpm=0.0)
    assert filter_from_proto(recommender_pb2.TrackFilter(key="C")) == TrackFilter(key="C")


def test_scored_to_proto():
    pl = TrackPayload(track_id="t", key="Bb", mode="major", tempo_bpm=92.0, source="generated",
                      duration_s=31.5, loudness_lufs=-12.25, title="Song")
    wire = scored_to_proto(ScoredTrack(track_id="t", score=0.75, payload=pl))
    assert wire == recommender_pb2.ScoredTrack(
        track_id="t", score=0.75, key="Bb", mode=common_pb2.MODE_MAJOR, tempo_bpm=92.0,
        source=common_pb2.TRACK_SOURCE_GENERATED, title="Song", duration_s=31.5, loudness_lufs=-12.25,
    )
    bare = TrackPayload(track_id="u", key=None, mode=None, tempo_bpm=60.0, source="chorale",
                        duration_s=1.0, loudness_lufs=-30.0)
    wire = scored_to_proto(ScoredTrack(track_id="u", score=-0.5, payload=bare))
    assert (wire.key, wire.mode, wire.source) == ("", common_pb2.MODE_UNSPECIFIED, common_pb2.TRACK_SOURCE_UNSPECIFIED)


class FakeBus:
    """The one Bus method the consumer uses, over a dict."""

    def __init__(self) -> None:
        self.tracks: dict[str, common_pb2.Track] = {}

    async def update_track(self, track_id, change, *, create_if_missing=False):
        if track_id not in self.tracks:
            assert create_if_missing
            self.tracks[track_id] = common_pb2.Track(track_id=track_id)
        change(self.tracks[track_id])
        return self.tracks[track_id]


def analyzed(track_id: str, embedding: list[float], *, key: str = "C", mode=common_pb2.MODE_MAJOR,
             tempo_bpm: float = 120.0, source=common_pb2.TRACK_SOURCE_UPLOAD) -> events_pb2.TrackAnalyzed:
    analysis = common_pb2.TrackAnalysis(duration_s=20.0, tempo_bpm=tempo_bpm, key=key, mode=mode,
                                        loudness_lufs=-14.0, embedding=embedding)
    return events_pb2.TrackAnalyzed(track_id=track_id, analysis=analysis, source=source, title=f"title {track_id}")


DIM = 4
EVENTS = [
    analyzed("a", [1.0, 0.0, 0.0, 0.0]),
    analyzed("b", [0.9, 0.1, 0.0, 0.0], key="Gb", mode=common_pb2.MODE_MINOR, tempo_bpm=90.0),
    analyzed("c", [0.5, 0.5, 0.0, 0.0], key="", mode=common_pb2.MODE_UNSPECIFIED,
             source=common_pb2.TRACK_SOURCE_GENERATED),
    analyzed("d", [0.0, 1.0, 0.0, 0.0], tempo_bpm=150.0),
]


@pytest.fixture
async def index(tmp_path):
    idx = EdgeTrackIndex(tmp_path / "shard", dim=DIM)
    yield idx
    await idx.close()


async def test_consumer_indexes_the_track_and_marks_it_indexed(index):
    bus = FakeBus()
    consumer = AnalyzedConsumer(bus, index)
    for event in EVENTS:
        await consumer.handle(event, {})
    await consumer.handle(EVENTS[0], {})  # redelivery: idempotent
    assert await index.count() == len(EVENTS)
    assert {t: bus.tracks[t].state for t in bus.tracks} == {e.track_id: common_pb2.TRACK_STATE_INDEXED for e in EVENTS}
    got, vector = await index.get("b")
    assert got == TrackPayload(track_id="b", key="Gb", mode="minor", tempo_bpm=90.0, source="upload",
                               duration_s=20.0, loudness_lufs=-14.0, title="title b")
    np.testing.assert_allclose(vector, np.array([0.9, 0.1, 0, 0]) / np.hypot(0.9, 0.1), atol=1e-6)
    got, _ = await index.get("c")
    assert (got.key, got.mode, got.source) == (None, None, "generated")


async def test_consumer_changes_only_the_state_of_a_stored_track(index):
    bus = FakeBus()
    stored = common_pb2.Track(track_id="a", state=common_pb2.TRACK_STATE_ANALYZED, title="kept",
                              filename="a.wav", source=common_pb2.TRACK_SOURCE_UPLOAD)
    bus.tracks["a"] = common_pb2.Track()
    bus.tracks["a"].CopyFrom(stored)
    await AnalyzedConsumer(bus, index).handle(EVENTS[0], {})
    stored.state = common_pb2.TRACK_STATE_INDEXED
    assert bus.tracks["a"] == stored
    assert await index.count() == 1


async def test_consumer_rejects_bad_events_without_marking_them(index):
    bus = FakeBus()
    consumer = AnalyzedConsumer(bus, index)
    for event, match in (
        (analyzed("", [1.0, 0.0, 0.0, 0.0]), "track_id"),
        (analyzed("x", [1.0, 0.0]), "dimension"),
        (analyzed("x", [0.0] * DIM), "zeros"),
        (analyzed("x", [1.0, 0.0, 0.0, 0.0], key="H"), "tonic"),
    ):
        with pytest.raises(InvalidArgument, match=match):
            await consumer.handle(event, {})
    assert bus.tracks == {} and await index.count() == 0


async def test_servicer_answers_from_the_index(index):
    consumer = AnalyzedConsumer(FakeBus(), index)
    for event in EVENTS:
        await consumer.handle(event, {})
    servicer = RecommenderServicer(index)

    similar = await servicer.SimilarTracks(recommender_pb2.SimilarTracksRequest(track_id="a"), None)
    assert [t.track_id for t in similar.tracks] == ["b", "c", "d"]  # limit 0: DEFAULT_LIMIT
    assert DEFAULT_LIMIT >= len(EVENTS)
    assert similar.tracks[0].key == "Gb" and similar.tracks[0].mode == common_pb2.MODE_MINOR
    assert similar.tracks[0].score == pytest.approx(0.9 / np.hypot(0.9, 0.1), abs=1e-5)
    request = recommender_pb2.SimilarTracksRequest(
        track_id="a", limit=1, filter=recommender_pb2.TrackFilter(tempo_min_bpm=100.0)
    )
    assert [t.track_id for t in (await servicer.SimilarTracks(request, None)).tracks] == ["c"]

    request = recommender_pb2.RecommendRequest(liked_track_ids=["a"], disliked_track_ids=["d"])
    recommended = await servicer.Recommend(request, None)
    assert [t.track_id for t in recommended.tracks] == ["b", "c"]
    request = recommender_pb2.RecommendRequest(
        liked_track_ids=["a"], filter=recommender_pb2.TrackFilter(source=common_pb2.TRACK_SOURCE_GENERATED)
    )
    assert [t.track_id for t in (await servicer.Recommend(request, None)).tracks] == ["c"]

    with pytest.raises(InvalidArgument, match="track_id"):
        await servicer.SimilarTracks(recommender_pb2.SimilarTracksRequest(), None)
    with pytest.raises(InvalidArgument, match="limit"):
        await servicer.SimilarTracks(recommender_pb2.SimilarTracksRequest(track_id="a", limit=-1), None)
    with pytest.raises(InvalidArgument, match="limit"):
        await servicer.Recommend(recommender_pb2.RecommendRequest(liked_track_ids=["a"], limit=101), None)
    with pytest.raises(NotFound, match="nope"):
        await servicer.SimilarTracks(recommender_pb2.SimilarTracksRequest(track_id="nope"), None)
