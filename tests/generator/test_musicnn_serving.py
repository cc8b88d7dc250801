"""The musicnn tagger behind Triton: its contract (musicaas.models.musicnn_contract) against the
shipped weights, and a real PyTriton server (the same process as the symbolic model) called
through the analyzer's torch-free client (musicaas_analyzer.tagger)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("librosa")

from musicaas.models import musicnn_contract as mc  # noqa: E402
from musicaas.models.musicnn_frontend import log_mel_patches, silence_patches  # noqa: E402
from musicaas.runtime.errors import Unavailable  # noqa: E402
from musicaas.runtime.procs import free_port  # noqa: E402
from musicaas_analyzer.tagger import TritonTagger  # noqa: E402
from musicaas_model import musicnn  # noqa: E402

SR = mc.SAMPLE_RATE_HZ


def _clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110.0 * 2 ** (seed % 12 / 12)
    tone = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 5))
    return (0.3 * tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def tracks():
    """Three tracks' patches: 10 s (3 patches), 20 s (6), 2 s (1, repeat-padded)."""
    return [log_mel_patches(_clip(s, i)) for i, s in enumerate((10.0, 20.0, 2.0))]


def test_the_contract_matches_the_shipped_weights():
    _model, tags, config = musicnn.load_musicnn("MTT_musicnn")
    assert tuple(tags) == mc.TAG_NAMES and mc.NUM_TAGS == 50
    assert config["preprocessing"] == mc.PREPROCESSING == musicnn.PREPROCESSING
    assert config["architecture"]["num_units_backend"] == mc.EMBEDDING_DIM
    assert not hasattr(musicnn, "log_mel_patches") and not hasattr(mc, "log_mel_patches")  # one front end


def test_summarise_averages_and_ranks():
    tags = np.zeros((2, mc.NUM_TAGS), np.float32)
    tags[:, 3] = (0.9, 0.7)
    tags[:, 7] = (0.1, 0.3)
    emb = np.ones((2, mc.EMBEDDING_DIM), np.float32)
    out = mc.summarise(tags, emb, top=2)
    assert out.tags == ((mc.TAG_NAMES[3], pytest.approx(0.8)), (mc.TAG_NAMES[7], pytest.approx(0.2)))
    assert float(np.linalg.norm(out.embedding)) == pytest.approx(1.0) and out.patches == 2
    assert out.model == mc.EMBEDDING_MODEL == "musicnn-MTT/1"
    assert silence_patches(10.0).shape == log_mel_patches(np.zeros(10 * SR, np.float32)).shape
    assert not silence_patches(10.0).any() and not log_mel_patches(np.zeros(10 * SR, np.float32)).any()
    with pytest.raises(ValueError):
        mc.check_patches(np.zeros((0, mc.N_FRAMES, mc.N_MELS)))


@pytest.mark.integration
async def test_served_outputs_equal_the_torch_model(tiny_triton, tracks):
    rows = np.concatenate(tracks)
    want_tags, want_emb = musicnn.tag_patches(rows)
    async with TritonTagger(tiny_triton.grpc_url, timeout_s=30) as tagger:
        assert await tagger.is_ready()
        tags, emb = await tagger.infer_rows(rows)
    np.testing.assert_allclose(tags, want_tags, atol=1e-5)
    np.testing.assert_allclose(emb, want_emb, atol=1e-5)


@pytest.mark.integration
async def test_several_tracks_share_one_request(tiny_triton, tracks):
    async with TritonTagger(tiny_triton.grpc_url, timeout_s=30) as tagger:
        before = sum(tiny_triton.musicnn.batch_sizes.values())
        many = await tagger.tag_many(tracks)
        assert tagger.requests_sent == 1 and tagger.rows_sent == [10]
        assert sum(tiny_triton.musicnn.batch_sizes.values()) == before + 1 and tiny_triton.musicnn.batch_sizes[10] >= 1
        # concurrent single-track calls are coalesced into one request too
        coalesced = await asyncio.gather(*(tagger.tag(t) for t in tracks))
        assert tagger.requests_sent == 2
        alone = await tagger.tag(tracks[1])
    for i, t in enumerate(tracks):
        probs, pen = musicnn.tag_patches(t)
        want = mc.summarise(probs, pen)
        for got in (many[i], coalesced[i]):
            assert got.patches == t.shape[0] and [n for n, _ in got.tags] == [n for n, _ in want.tags]
            np.testing.assert_allclose(got.embedding, want.embedding, atol=1e-5)
            np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-5)
    np.testing.assert_allclose(alone.embedding, many[1].embedding, atol=1e-5)  # rows do not depend on their batch


@pytest.mark.integration
async def test_long_tracks_are_split_into_requests_of_max_batch_size(tiny_triton):
    rows = log_mel_patches(_clip(3.0 * 150, 5))  # 150 patches
    assert rows.shape[0] == 150
    async with TritonTagger(tiny_triton.grpc_url, timeout_s=60) as tagger:
        tags, emb = await tagger.infer_rows(rows)
        assert tagger.rows_sent == [64, 64, 22]
    want_tags, want_emb = musicnn.tag_patches(rows[:5])
    np.testing.assert_allclose(tags[:5], want_tags, atol=1e-5)
    assert emb.shape == (150, mc.EMBEDDING_DIM)


async def test_a_model_server_that_is_down_is_unavailable(tracks):
    async with TritonTagger(f"127.0.0.1:{free_port()}", timeout_s=2) as tagger:
        assert not await tagger.is_ready(timeout_s=0.5)
        with pytest.raises(Unavailable, match="model server at 127.0.0.1:.* is unavailable"):
            await tagger.tag(tracks[0])
        with pytest.raises(Unavailable):
            await asyncio.gather(*(tagger.tag(t) for t in tracks))


def _wav_bytes(seconds: float, seed: int, rate: int = 22050) -> bytes:
    import io

    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    beat = (np.sin(2 * np.pi * 2.0 * t) > 0.9).astype(np.float32)
    tone = sum(np.sin(2 * np.pi * h * 220.0 * t) / h for h in range(1, 5))
    buf = io.BytesIO()
    sf.write(buf, (0.2 * tone + 0.3 * beat + 0.01 * rng.standard_normal(t.size)).astype(np.float32), rate,
             format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.mark.integration
async def test_the_analyzer_fills_the_learned_embedding_and_tags(tiny_triton):
    from musicaas_analyzer.analysis import analyze_bytes
    from musicaas_analyzer.service import Analyzer, AnalyzerSettings

    data = _wav_bytes(12.0, 1)
    settings = AnalyzerSettings(workers=0, concurrency=2, triton_url=tiny_triton.grpc_url)
    async with Analyzer.from_settings(settings) as analyzer:
        assert analyzer.tagger is not None
        a, b = await asyncio.gather(analyzer.analyze(data, "a.wav"), analyzer.analyze(_wav_bytes(7.0, 2), "b.wav"))
    assert len(a.embedding) == mc.EMBEDDING_DIM and float(np.linalg.norm(a.embedding)) == pytest.approx(1.0, abs=1e-5)
    assert a.embedding_model == "musicnn-MTT/1" and len(a.tags) == mc.TOP_TAGS and len(b.tags) == mc.TOP_TAGS
    assert [t.score for t in a.tags] == sorted((t.score for t in a.tags), reverse=True)
    assert len(a.descriptor_embedding) == 64
    # the same as the torch model on the analyzer's own patches
    patches = analyze_bytes(data, filename="a.wav").log_mel
    probs, pen = musicnn.tag_patches(patches)
    want = mc.summarise(probs, pen)
    np.testing.assert_allclose(np.asarray(a.embedding), want.embedding, atol=1e-5)
    assert [t.name for t in a.tags] == [n for n, _ in want.tags]


async def test_the_analyzer_is_unavailable_while_the_model_server_is_down():
    from musicaas_analyzer.service import Analyzer, AnalyzerSettings

    settings = AnalyzerSettings(workers=0, triton_url=f"127.0.0.1:{free_port()}", tagger_timeout_s=2)
    async with Analyzer.from_settings(settings) as analyzer:
        # Unavailable: the upload consumer leaves the message for redelivery (the track is not failed)
        with pytest.raises(Unavailable, match="model server"):
            await analyzer.analyze(_wav_bytes(4.0, 3), "a.wav")
    off = Analyzer.from_settings(AnalyzerSettings(workers=0, tagger_enabled=False))
    assert off.tagger is None
    await off.close()
