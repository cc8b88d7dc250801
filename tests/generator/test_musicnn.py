"""The PyTorch port of musicnn (musicaas_model.musicnn) against TensorFlow's stored outputs.

``fixtures/musicnn_reference.npz`` was written by ``tools/convert_musicnn.py``: one float32
log-mel patch from each of five clips (loud noise with chords, a quiet sweep, a drum
pattern, two rendered Bach chorales) and the outputs of musicnn's own TensorFlow graph
for them, for both shipped models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("librosa")

from musicaas.models.musicnn_frontend import log_mel_patches  # noqa: E402
from musicaas_model import musicnn  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "musicnn_reference.npz"
MODELS = {"MTT_musicnn": "mtt", "MSD_musicnn": "msd"}
SR = musicnn.SAMPLE_RATE_HZ


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def models(one_torch_thread):
    return {name: musicnn.load_musicnn(name) for name in MODELS}


def _loud_clip(seconds: float, seed: int) -> np.ndarray:
    """Full-scale noise plus a changing chord: mel power far above float16's 6.55 limit."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f = 110.0 * 2 ** (np.floor(t / 1.5) / 12.0 * 5)  # the root moves every 1.5 s
    y = 0.5 * rng.standard_normal(t.size) + 0.8 * np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 1.5 * f * t)
    return np.clip(y, -1, 1).astype(np.float32)


def _tone_clip(seconds: float, freq: float, amp: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


@pytest.mark.parametrize("name", list(MODELS))
def test_shipped_weights_load(models, name):
    model, tags, config = models[name]
    assert not model.training
    assert len(tags) == 50 and len(set(tags)) == 50
    assert sum(p.numel() for p in model.parameters()) == config["parameters"] == 787159
    assert all(v.dtype == torch.float32 for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert config["preprocessing"] == musicnn.PREPROCESSING
    assert config["source"]["package"] == "musicnn" and config["source"]["licence"] == "ISC"
    assert config["conversion"]["max_abs_diff"]["taggram"] < 1e-4
    assert config["conversion"]["max_abs_diff"]["penultimate"] < 1e-4
    assert ("guitar" if name == "MTT_musicnn" else "rock") == tags[0]


@pytest.mark.parametrize("name", list(MODELS))
def test_port_matches_tensorflow(models, reference, name):
    model = models[name][0]
    prefix = MODELS[name]
    x = torch.from_numpy(reference["log_mel"])
    assert x.shape == (5, musicnn.N_FRAMES, musicnn.N_MELS) and x.dtype == torch.float32
    with torch.inference_mode():
        out = model.features(x)
        probs, penultimate = model(x)
    assert torch.equal(probs, out["taggram"]) and torch.equal(penultimate, out["penultimate"])
    for key in ("taggram", "penultimate"):
        diff = np.max(np.abs(out[key].numpy() - reference[f"{prefix}_{key}"]))
        assert diff < 1e-4, (key, diff)
    for key in ("mean_pool", "max_pool"):  # values up to ~130: compare relative to the scale
        ref = reference[f"{prefix}_{key}"]
        assert np.max(np.abs(out[key].numpy() - ref)) < 1e-5 * max(1.0, float(np.max(np.abs(ref)))) * 10
    # the reference patches are different music: their outputs differ
    assert np.ptp(reference[f"{prefix}_penultimate"], axis=0).max() > 0.1


def test_output_shapes_and_dtypes(models, reference):
    model = models["MTT_musicnn"][0]
    x = torch.from_numpy(reference["log_mel"][:2])
    with torch.inference_mode():
        probs, penultimate = model(x)
        feats = model.features(x)
    assert probs.shape == (2, 50) and penultimate.shape == (2, 200)
    assert probs.dtype == penultimate.dtype == torch.float32
    assert float(probs.min()) >= 0 and float(probs.max()) <= 1
    shapes = {k: tuple(v.shape) for k, v in feats.items()}
    assert shapes == {
        "timbral": (2, 187, 408), "temporal": (2, 187, 153), "cnn1": (2, 187, 64), "cnn2": (2, 187, 64),
        "cnn3": (2, 187, 64), "max_pool": (2, 753), "mean_pool": (2, 753), "penultimate": (2, 200),
        "logits": (2, 50), "taggram": (2, 50),
    }
    with pytest.raises(ValueError):
        model(torch.zeros(2, 187, 80))


def test_log_mel_patches_shapes_and_errors():
    seconds = 10.0
    y = _tone_clip(seconds, 440.0)
    p = log_mel_patches(y)
    frames = 1 + y.size // musicnn.HOP
    assert p.dtype == np.float32 and p.shape == (1 + (frames - 187) // 187, 187, 96) == (3, 187, 96)
    assert np.all(np.isfinite(p)) and p.min() >= 0
    # overlapping patches: the given hop in frames
    assert log_mel_patches(y, hop_frames=93).shape[0] == 1 + (frames - 187) // 93
    # another sample rate is resampled to 16 kHz first
    t = np.arange(int(seconds * 22050)) / 22050
    assert log_mel_patches(np.sin(2 * np.pi * 440 * t), sample_rate_hz=22050).shape == (3, 187, 96)
    # shorter than one patch: repeat-padded to one patch
    short = log_mel_patches(y[: SR])
    assert short.shape == (1, 187, 96)
    np.testing.assert_array_equal(short[0, :63], short[0, 63:126])
    for bad in (np.zeros(0, np.float32), np.zeros((2, SR), np.float32), np.full(SR, np.nan, np.float32)):
        with pytest.raises(ValueError):
            log_mel_patches(bad)


def test_loud_audio_patches_are_not_saturated(models):
    """musicnn's extractor casts the mel power to float16 before ``10000 * x``; under NumPy >= 2's
    promotion rules the product stays float16 and overflows on loud bins (inf), so loud patches
    all get the same output. The float32 path keeps them apart."""
    import librosa

    y = _loud_clip(12.0, seed=1)
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=512, hop_length=256, n_mels=96).T
    with np.errstate(over="ignore"):  # float16 product: what musicnn's line computes under NumPy >= 2
        upstream = np.log10(np.float16(10000) * mel.astype(np.float16) + np.float16(1))
    assert not np.all(np.isfinite(upstream))  # the clip does trigger the upstream bug

    p = log_mel_patches(y)
    assert p.shape[0] == 4 and np.all(np.isfinite(p))
    assert p.max() > np.log10(10000 * 6.56 + 1)  # values float16's path could not represent
    for i in range(p.shape[0]):
        for j in range(i + 1, p.shape[0]):
            assert not np.allclose(p[i], p[j])
    taggram, penultimate = musicnn.tag_patches(p, model=models["MTT_musicnn"][0])
    assert np.all(np.isfinite(taggram)) and np.all(np.isfinite(penultimate))
    assert np.ptp(penultimate, axis=0).max() > 1e-2  # every patch its own features
    assert np.ptp(taggram, axis=0).max() > 1e-3


def test_embed_averages_over_patches(models):
    model, tags, _ = models["MTT_musicnn"]
    y = np.concatenate([_tone_clip(6.0, 220.0), _loud_clip(6.0, seed=2)])
    emb, probs = musicnn.embed(log_mel_patches(y), model=model)
    assert emb.shape == (200,) and probs.shape == (50,)
    assert emb.dtype == probs.dtype == np.float32
    taggram, penultimate = musicnn.tag_patches(log_mel_patches(y), model=model)
    assert penultimate.shape[0] == taggram.shape[0] >= 3
    np.testing.assert_allclose(emb, penultimate.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(probs, taggram.mean(axis=0), rtol=1e-6, atol=1e-6)
    # patches differ (quiet tone, then loud noise), so the mean is not any single patch
    assert min(np.abs(penultimate - emb).max(axis=1)) > 1e-3
    # batch size does not change the result
    emb2, _ = musicnn.embed(log_mel_patches(y), model=model, batch_size=16)
    np.testing.assert_allclose(emb, emb2, atol=1e-5)

    quiet_emb, quiet_probs = musicnn.embed(log_mel_patches(_tone_clip(9.0, 660.0, amp=0.02)), model=model)
    loud_emb, loud_probs = musicnn.embed(log_mel_patches(_loud_clip(9.0, seed=3)), model=model)
    cos = float(quiet_emb @ loud_emb / (np.linalg.norm(quiet_emb) * np.linalg.norm(loud_emb)))
    assert np.abs(quiet_emb - loud_emb).max() > 0.1 and cos < 0.99
    assert loud_probs[tags.index("loud")] > quiet_probs[tags.index("loud")]


@pytest.mark.parametrize("kernel,pad", [((7, 38), (3, 3)), ((64, 1), (31, 32))])
def test_folded_block_equals_the_literal_order(kernel, pad):
    """The eval-mode block (ReLU and batch norm after the maximum over frequency, negated
    filters for the channels whose batch-norm scale is negative) gives
    bn(relu(conv(x))).amax over frequency, for scales of both signs."""
    torch.manual_seed(0)
    block = musicnn._ConvReluBnMaxF(kernel, 12, pad)
    with torch.no_grad():
        block.bn.weight.copy_(torch.linspace(-2.0, 2.0, 12))  # half the channels negative
        block.bn.bias.copy_(torch.randn(12))
        block.bn.running_mean.copy_(torch.randn(12))
        block.bn.running_var.copy_(torch.rand(12) + 0.5)
    block.eval()
    x = torch.randn(3, 1, 90, 96)
    with torch.inference_mode():
        literal = block.bn(torch.relu(block.conv(torch.nn.functional.pad(x, block.pad)))).amax(dim=3)
        folded = block(x)
    assert folded.shape == (3, 12, 90)
    assert (block.bn.weight < 0).sum() == 6
    torch.testing.assert_close(folded, literal, rtol=1e-5, atol=1e-5)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError):
        musicnn.load_musicnn("MTT_vgg")
    with pytest.raises(FileNotFoundError):
        musicnn.load_musicnn(path=tmp_path / "absent.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"format": "other"}, bad)
    with pytest.raises(ValueError):
        musicnn.load_musicnn(path=bad)
