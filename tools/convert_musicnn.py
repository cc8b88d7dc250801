"""Convert musicnn's TensorFlow checkpoints to the PyTorch port, and check the port.

Run with a *throw-away* virtual environment that has TensorFlow (never the project's)::

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu==2.21.0 tf_keras==2.21.0 librosa==0.11.0 \\
        torch==2.13.0 symusic==0.5.9 pretty_midi==0.2.11.post0 music21==10.5.1 grpcio soundfile
    /tmp/tfvenv/bin/pip install --no-deps musicnn==0.1.0     # its numpy<1.17 pin is stale
    /tmp/tfvenv/bin/python tools/convert_musicnn.py

What it does, for each model (``MTT_musicnn``, ``MSD_musicnn``):

1. reads the checkpoint inside the ``musicnn`` wheel with
   ``tf.compat.v1.train.NewCheckpointReader`` (its ``checkpoint`` file names the author's
   disk, so ``tf.train.latest_checkpoint`` cannot be used), maps every model variable to
   :class:`musicaas_model.musicnn.MusicnnTagger`'s state dict (optimizer slots are left out;
   every other variable must be used, and every state-dict entry filled);
2. builds musicnn's own graph (``musicnn.models.define_model``), assigns it the same
   checkpoint values, and runs it and the port on the patches of a few clips: synthetic
   audio (loud noise with chords, a quiet sweep, a drum pattern) and two Bach chorales of
   music21's corpus rendered by ``musicaas.render``. Both get the *same* float32 log-mel
   patches (:func:`musicaas.models.musicnn_frontend.log_mel_patches`), which avoids upstream's
   float16 overflow. It asserts that the max absolute difference of the taggram and of
   the penultimate features is below ``--tolerance`` (1e-4) and prints every layer's;
3. writes ``services/generator/musicaas_model/checkpoint/musicnn_{mtt,msd}.pt`` (state
   dict, tags, preprocessing constants, source, measured differences) and the test
   fixture ``tests/generator/fixtures/musicnn_reference.npz`` (a few input patches and
   TensorFlow's outputs for them).

The summary is printed as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.compat.v1.layers needs tf_keras on TF >= 2.16
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow's own (Eigen) CPU kernels: oneDNN's are about 4x further from a float64 reference
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services" / "generator")]

import numpy as np  # noqa: E402

#: The upstream package this converts.
MUSICNN_VERSION = "0.1.0"
MODELS = ("MTT_musicnn", "MSD_musicnn")
SR = 16000


def synthetic_clips(seconds: float = 9.6, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic synthetic clips at 16 kHz, float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n, dtype=np.float64) / SR
    clips = {}
    # loud: noise plus a chord sequence, clipped at full scale (overflows upstream's float16 path)
    chords = [(220.0, 277.2, 329.6), (196.0, 246.9, 293.7), (174.6, 220.0, 261.6), (164.8, 207.7, 246.9)]
    y = 0.4 * rng.standard_normal(n)
    seg = n // len(chords)
    for i, chord in enumerate(chords):
        s = slice(i * seg, (i + 1) * seg)
        for f in chord:
            y[s] += 0.5 * np.sin(2 * np.pi * f * t[s]) + 0.15 * np.sin(2 * np.pi * 2 * f * t[s])
    clips["loud_noise_chords"] = np.clip(y, -1.0, 1.0)
    # quiet exponential sine sweep 50 Hz -> 7 kHz
    f0, f1 = 50.0, 7000.0
    k = np.log(f1 / f0) / seconds
    clips["quiet_sweep"] = 0.03 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    # drum pattern at 120 bpm: kick on beats, snare on 2 and 4, hi-hat on eighths
    y = np.zeros(n)
    beat = SR // 2

    def hit(start: int, wave: np.ndarray) -> None:
        end = min(n, start + wave.size)
        y[start:end] += wave[: end - start]

    tt = np.arange(int(0.3 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-tt * 30)) * tt) * np.exp(-tt * 12)
    snare = rng.standard_normal(tt.size) * np.exp(-tt * 25) * 0.6
    hat = rng.standard_normal(int(0.05 * SR)) * np.exp(-np.arange(int(0.05 * SR)) / SR * 90) * 0.3
    for b in range(int(seconds * 2)):
        hit(b * beat, kick)
        if b % 2 == 1:
            hit(b * beat, snare)
        hit(b * beat, hat)
        hit(b * beat + beat // 2, hat)
    clips["drums"] = 0.9 * y / np.max(np.abs(y))
    return {name: c.astype(np.float32) for name, c in clips.items()}


def chorale_clips(count: int = 2, seconds: float = 12.0) -> dict[str, np.ndarray]:
    """The first ``seconds`` of ``count`` Bach chorales (music21 corpus), rendered at 16 kHz."""
    from musicaas.chorales import iter_chorales
    from musicaas.render import render_midi

    clips = {}
    for chorale in iter_chorales(count):
        y = render_midi(chorale.midi, sample_rate_hz=SR)
        clips[f"bach_{chorale.name}"] = y[: int(seconds * SR)]
    return clips


def upstream_float16_log_mel(audio: np.ndarray) -> np.ndarray:
    """musicnn 0.1.0's ``batch_data`` spectrogram, bug included (float16 before the log), as
    NumPy >= 2 computes it: ``10000 * float16_array`` stays float16 (NEP 50) and overflows
    above 65504. (NumPy 1.x's value-based casting promoted that product to float32.)"""
    import librosa

    rep = librosa.feature.melspectrogram(y=audio, sr=SR, hop_length=256, n_fft=512, n_mels=96).T
    rep = rep.astype(np.float16)
    with np.errstate(over="ignore"):
        return np.log10(np.float16(10000) * rep + np.float16(1))


def read_checkpoint(ckpt_prefix: str) -> dict[str, np.ndarray]:
    """Every non-optimizer variable of a TF checkpoint, by name."""
    import tensorflow as tf

    reader = tf.compat.v1.train.NewCheckpointReader(ckpt_prefix)
    skip = ("Adam", "beta1_power", "beta2_power")
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if not any(s in k for s in skip)}


def to_state_dict(variables: dict[str, np.ndarray]):
    from musicaas_model import musicnn

    mapping = musicnn.tf_variable_map()
    unused = sorted(set(variables) - set(mapping.values()))
    if unused:
        raise SystemExit(f"checkpoint variables not mapped: {unused}")
    state = {key: musicnn.tf_to_torch(key, variables[tf_name]) for key, tf_name in mapping.items()}
    return state


def run_tf(name: str, variables: dict[str, np.ndarray], patches: np.ndarray) -> dict[str, np.ndarray]:
    """musicnn's own graph (``models.define_model``) with the checkpoint values, on float32 patches."""
    import tensorflow as tf
    from musicnn import models

    tf.compat.v1.disable_eager_execution()
    graph = tf.Graph()
    with graph.as_default():
        with tf.name_scope("model"):
            x = tf.compat.v1.placeholder(tf.float32, [None, patches.shape[1], patches.shape[2]])
            is_training = tf.compat.v1.placeholder(tf.bool)
            y, timbral, temporal, cnn1, cnn2, cnn3, mean_pool, max_pool, penultimate = models.define_model(
                x, is_training, name, 50
            )
            taggram = tf.nn.sigmoid(y)
        graph_vars = tf.compat.v1.global_variables()
        missing = [v.op.name for v in graph_vars if v.op.name not in variables]
        if missing:
            raise SystemExit(f"graph variables absent from the checkpoint: {missing}")
        if len(graph_vars) != len(variables):
            raise SystemExit(f"graph has {len(graph_vars)} variables, checkpoint {len(variables)}")
        assigns = [tf.compat.v1.assign(v, variables[v.op.name]) for v in graph_vars]
        fetch = dict(
            taggram=taggram, logits=y, timbral=timbral, temporal=temporal, cnn1=cnn1, cnn2=cnn2, cnn3=cnn3,
            mean_pool=mean_pool, max_pool=max_pool, penultimate=penultimate,
        )
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(assigns)
            out = sess.run(fetch, feed_dict={x: patches, is_training: False})
    out = {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
    for k in ("timbral", "temporal", "cnn1", "cnn2", "cnn3"):
        out[k] = out[k].reshape(out[k].shape[0], out[k].shape[1], -1)  # drop TF's trailing 1-axis
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--musicnn-dir", type=Path, default=None, help="the installed musicnn package (default: import it)")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "services/generator/musicaas_model/checkpoint")
    ap.add_argument("--fixture", type=Path, default=ROOT / "tests/generator/fixtures/musicnn_reference.npz")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--chorales", type=int, default=2, help="Bach chorales to render as test clips")
    args = ap.parse_args(argv)

    import torch

    import musicnn as musicnn_pkg
    from musicaas.models.musicnn_frontend import log_mel_patches
    from musicaas_model import musicnn

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    pkg_dir = args.musicnn_dir or Path(musicnn_pkg.__file__).parent
    from musicnn import configuration as upstream_config

    labels = {"MTT_musicnn": list(upstream_config.MTT_LABELS), "MSD_musicnn": list(upstream_config.MSD_LABELS)}
    assert (upstream_config.SR, upstream_config.FFT_SIZE, upstream_config.FFT_HOP, upstream_config.N_MELS) == (
        musicnn.SAMPLE_RATE_HZ, musicnn.N_FFT, musicnn.HOP, musicnn.N_MELS
    ), "preprocessing constants differ from musicnn/configuration.py"

    t0 = time.time()
    clips = synthetic_clips()
    clips.update(chorale_clips(args.chorales))
    patches, origin = [], []
    for clip_name, audio in clips.items():
        p = log_mel_patches(audio)
        patches.append(p)
        origin += [(clip_name, i) for i in range(p.shape[0])]
    x = np.concatenate(patches).astype(np.float32)
    print(f"{len(clips)} clips, {x.shape[0]} patches {x.shape[1:]} ({time.time() - t0:.1f} s)", flush=True)

    f16 = upstream_float16_log_mel(clips["loud_noise_chords"])
    f16_inf = float(np.mean(~np.isfinite(f16)))
    print(f"upstream float16 spectrogram of the loud clip: {100 * f16_inf:.1f} % of bins are inf", flush=True)

    # one fixture patch per clip (the first), so the test covers loud, quiet, drums and chorales
    firsts = [i for i, (c, j) in enumerate(origin) if j == 0]
    fixture = {
        "log_mel": x[firsts],
        "clips": np.array([origin[i][0] for i in firsts]),
        "musicnn_version": np.array(MUSICNN_VERSION),
    }
    summary = {"clips": list(clips), "patches": int(x.shape[0]), "float16_inf_fraction_loud_clip": f16_inf, "models": {}}

    for name in args.models:
        variables = read_checkpoint(str(pkg_dir / name) + "/")
        state = to_state_dict(variables)
        model = musicnn.MusicnnTagger(num_classes=len(labels[name]))
        model.load_state_dict(state, strict=True)
        model.eval()
        n_params = sum(p.numel() for p in model.parameters())

        ref = run_tf(name, variables, x)
        with torch.inference_mode():
            got = {k: v.numpy() for k, v in model.features(torch.from_numpy(x)).items()}
        diffs = {k: float(np.max(np.abs(got[k] - ref[k]))) for k in ref}
        scale = {k: float(np.max(np.abs(ref[k]))) for k in ref}
        # the port in float64: how much of the difference is float32 rounding on either side
        with torch.inference_mode():
            exact = {k: v.numpy() for k, v in model.double().features(torch.from_numpy(x).double()).items()}
        model.float()
        diffs64 = {k: float(np.max(np.abs(exact[k] - ref[k]))) for k in ("taggram", "penultimate")}
        diffs_torch32 = {k: float(np.max(np.abs(exact[k] - got[k]))) for k in ("taggram", "penultimate")}
        print(f"{name}: {n_params} parameters; max |torch - tf| (max |tf|) per layer: "
              + ", ".join(f"{k} {diffs[k]:.2e} ({scale[k]:.3g})" for k in ref), flush=True)
        print(f"{name}: float64 port vs tf {diffs64}; float32 port vs float64 port {diffs_torch32}", flush=True)
        for k in ("taggram", "penultimate"):
            if not diffs[k] < args.tolerance:
                raise SystemExit(f"{name}: {k} differs from TensorFlow by {diffs[k]:.3e} >= {args.tolerance}")
        # different patches must give different outputs (no constant output from saturation)
        spread = float(np.max(np.ptp(ref["penultimate"], axis=0)))
        assert spread > 1e-2, f"{name}: penultimate features do not vary across patches"

        config = {
            "name": name,
            "preprocessing": dict(musicnn.PREPROCESSING),
            "architecture": {"num_classes": len(labels[name]), "num_filt_midend": 64, "num_units_backend": 200, "bn_eps": musicnn.BN_EPS},
            "parameters": n_params,
            "source": {
                "package": "musicnn",
                "version": MUSICNN_VERSION,
                "licence": "ISC",
                "repository": "https://github.com/jordipons/musicnn",
                "paper": "Pons & Serra, musicnn: pre-trained convolutional neural networks for music audio tagging, ISMIR 2019 LBD",
                "training_data": "MagnaTagATune" if name.startswith("MTT") else "Million Song Dataset (Last.fm tags)",
            },
            "conversion": {
                "tool": "tools/convert_musicnn.py",
                "tensorflow": str(__import__("tensorflow").__version__),
                "torch": str(torch.__version__),
                "patches_checked": int(x.shape[0]),
                "max_abs_diff": diffs,
                "max_abs_tf": scale,
                "max_abs_diff_float64_port_vs_tf": diffs64,
                "max_abs_diff_float32_vs_float64_port": diffs_torch32,
            },
        }
        blob = {
            "format": musicnn.FORMAT,
            "state_dict": {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
            "tags": labels[name],
            "config": config,
        }
        out = args.out_dir / musicnn.WEIGHT_FILES[name]
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(blob, out)
        # round trip through the public loader
        loaded, tags, _ = musicnn.load_musicnn(name, path=out)
        with torch.inference_mode():
            again = loaded(torch.from_numpy(x[firsts]))[0].numpy()
        assert tags == labels[name] and np.max(np.abs(again - ref["taggram"][firsts])) < args.tolerance

        prefix = "mtt" if name.startswith("MTT") else "msd"
        for k in ("taggram", "penultimate", "mean_pool", "max_pool"):
            fixture[f"{prefix}_{k}"] = ref[k][firsts]
        summary["models"][name] = {"file": str(out.relative_to(ROOT)), "bytes": out.stat().st_size, "parameters": n_params, "max_abs_diff": diffs, "max_abs_diff_float64_port_vs_tf": diffs64}

    args.fixture.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.fixture, **fixture)
    summary["fixture"] = {"file": str(args.fixture.relative_to(ROOT)), "bytes": args.fixture.stat().st_size, "patches": len(firsts)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
