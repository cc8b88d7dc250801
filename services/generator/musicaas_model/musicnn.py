"""PyTorch port of the musicnn audio taggers (``MTT_musicnn``, ``MSD_musicnn``).

Source: J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for
music audio tagging", Late-Breaking/Demo session of ISMIR 2019; the ``musicnn`` package
(version 0.1.0 on PyPI, repository ``github.com/jordipons/musicnn``, ISC licence: see
``checkpoint/MUSICNN_LICENSE`` and ``MUSICNN_CARD.md``). The weights in
``checkpoint/musicnn_mtt.pt`` and ``checkpoint/musicnn_msd.pt`` are that package's
TensorFlow checkpoints converted by ``tools/convert_musicnn.py``, which also checks that
this port gives TensorFlow's outputs (``tests/generator/test_musicnn.py`` keeps checking
it against the stored reference ``tests/generator/fixtures/musicnn_reference.npz``).

Model (``musicnn/models.py``, ``build_musicnn``), for one patch of 187 frames x 96 mel bands:

* front-end, musically motivated CNN on the batch-normalised log-mel patch: two *timbral*
  convolutions spanning 7 frames x 38 and 7 x 67 mel bands (204 filters each) and three
  *temporal* convolutions spanning 128, 64 and 32 frames x 1 band (51 filters each);
  each is ReLU -> batch norm -> max over frequency, giving 561 channels per frame;
* mid-end: three 1-D convolutions over time (kernel 7, 64 filters, ReLU, batch norm),
  the second and third residual; front-end and mid-end outputs are concatenated (dense
  connection): 561 + 3 x 64 = 753 channels per frame;
* back-end: max and mean over time (753 each, 1506 flattened in TensorFlow's order,
  ``[max_0, mean_0, max_1, mean_1, ...]``), batch norm, dense 200 + ReLU + batch norm
  (the *penultimate* layer, 200 values), dense 50 -> sigmoid (tag probabilities).

About 0.79 M parameters per model. What the conversion had to match in TensorFlow's
graph: batch norm with epsilon 1e-3 (``tf.compat.v1.layers.batch_normalization``'s
default, not PyTorch's 1e-5), TensorFlow's "same" padding of the even-length temporal
kernels (one frame more after than before: 63/64, 31/32, 15/16), and the flatten order
of the pooled features.

Input (``musicnn/configuration.py``, ``musicnn/extractor.py``): 16 kHz mono audio,
``librosa.feature.melspectrogram`` with n_fft 512, hop 256, 96 mel bands (power 2,
Slaney mel scale and norm, Hann window, centred frames), then ``log10(10000 x + 1)``,
cut into patches of 187 frames (3 s: ``librosa.time_to_frames(3, sr=16000, n_fft=512,
hop_length=256) + 1``). :func:`log_mel_patches` computes that in float32 and avoids two
bugs of musicnn's own ``extractor``:

1. ``batch_data`` casts the mel spectrogram to float16 before ``log10(10000 x + 1)``.
   Under NumPy >= 2 (NEP 50 promotion) ``10000 * x`` then stays float16 and overflows
   (max 65504) wherever the mel power exceeds 6.55, i.e. on the loud bins of any loud
   patch: those become ``inf`` and the network returns NaN for every such patch. (Under
   the NumPy 1.x that musicnn pinned, value-based casting promoted the product to
   float32, and the cast only rounded the mel power to float16, at most 2.1e-4 off in
   log-mel; the MTT training spectrograms were stored in float16 too.) Here the whole
   computation is float32.
2. ``extractor`` returns the *first* patch's penultimate (and ``cnn1``-``cnn3``)
   features for every patch (the loop stores the first batch's variables instead of the
   new ones). Here every patch gets its own features (:meth:`MusicnnTagger.features`).

Frames are centred with reflect padding (librosa's default when musicnn was trained,
0.6/0.7; librosa >= 0.10 defaults to zero padding). Only the first and last frame differ.

Torch is imported at module level. The preprocessing lives outside the model server:
:func:`musicaas.models.musicnn_frontend.log_mel_patches` (numpy and librosa), which the
analyzer runs, with its constants in the numpy-only :mod:`musicaas.models.musicnn_contract`,
so that neither the model server nor the recommender needs librosa.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from musicaas.models.musicnn_contract import (  # noqa: E402 - the constants are defined once, torch-free
    HOP,
    N_FFT,
    N_FRAMES,
    N_MELS,
    PREPROCESSING,
    SAMPLE_RATE_HZ,
)

#: Batch-norm epsilon of ``tf.compat.v1.layers.batch_normalization``.
BN_EPS = 1e-3

#: Shipped weight files, by upstream model name.
WEIGHT_FILES = {"MTT_musicnn": "musicnn_mtt.pt", "MSD_musicnn": "musicnn_msd.pt"}

#: Format tag of the shipped ``.pt`` files.
FORMAT = "musicaas.musicnn/1"


def checkpoint_dir() -> Path:
    """Folder of the shipped weights (``musicaas_model/checkpoint``)."""
    return Path(__file__).resolve().parent / "checkpoint"


def _same_pad(kernel: int) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) for stride 1: the extra one goes after."""
    total = kernel - 1
    return total // 2, total - total // 2


class _ConvReluBnMaxF(nn.Module):
    """Conv2d over (time x frequency) with 1 input channel, then ReLU, batch norm and the
    maximum over frequency: ``bn(relu(conv(pad(x)))).amax(dim=3)``, [B, 1, T, F] -> [B, C, T].

    In eval mode the ReLU and batch norm run on the [B, C, T] maximum instead of the
    [B, C, T, F] tensor: batch norm at inference is a per-channel affine map ``a x + b``, and
    ReLU and an increasing map commute with a maximum, so the result equals
    ``a relu(max_F z) + b`` where ``a >= 0`` and ``a relu(min_F z) + b`` where ``a < 0``.
    The minimum comes from the same maximum: the filters of the channels with ``a < 0`` run
    negated (``min_F z = -max_F(-z)``; a sign flip is exact in floating point), so one
    maximum over frequency serves every channel. Exact up to float rounding (the port's
    check against TensorFlow's outputs covers it; the shipped weights give bit-identical
    outputs to the previous form, which took a separate minimum). This skips ReLU, batch
    norm and a minimum on the full tensor (the minimum alone was about 10 % of the
    network's CPU time in torch's profiler, passes of one patch). In training mode (batch
    statistics) it runs the literal order.
    """

    def __init__(self, kernel: tuple[int, int], filters: int, pad_time: tuple[int, int]):
        super().__init__()
        self.pad = (0, 0, *pad_time)
        self.conv = nn.Conv2d(1, filters, kernel_size=kernel)
        self.bn = nn.BatchNorm2d(filters, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, 1, T, F]
        x = F.pad(x, self.pad)
        if self.bn.training:
            return self.bn(F.relu(self.conv(x))).amax(dim=3)
        a = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        b = self.bn.bias - self.bn.running_mean * a
        sign = torch.where(a < 0, -1.0, 1.0)
        z = F.conv2d(x, self.conv.weight * sign[:, None, None, None], self.conv.bias * sign)
        ext = z.amax(dim=3) * sign[None, :, None]  # max_F z where a >= 0, min_F z where a < 0
        return F.relu(ext) * a[None, :, None] + b[None, :, None]


def _timbral(bands: int, filters: int) -> _ConvReluBnMaxF:
    """Timbral block: a (7 frames x ``bands`` mels) filter, zero padding 3 frames each side."""
    return _ConvReluBnMaxF((7, bands), filters, (3, 3))


def _temporal(frames: int, filters: int) -> _ConvReluBnMaxF:
    """Temporal block: a (``frames`` x 1 mel) filter with TensorFlow's "same" padding."""
    return _ConvReluBnMaxF((frames, 1), filters, _same_pad(frames))


class _Midend(nn.Module):
    """1-D conv over time (kernel 7, zero padding 3), ReLU, batch norm."""

    def __init__(self, in_channels: int, filters: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, kernel_size=7, padding=3)
        self.bn = nn.BatchNorm1d(filters, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, C, T]
        return self.bn(F.relu(self.conv(x)))


class MusicnnTagger(nn.Module):
    """The musicnn tagger (``build_musicnn`` of ``musicnn/models.py``), inference only.

    Parameters
    ----------
    num_classes : int
        Number of tags (50 for both shipped models).
    num_filt_midend : int
        Mid-end filters (64 for ``MTT_musicnn`` and ``MSD_musicnn``).
    num_units_backend : int
        Penultimate units (200 for both).

    Dropout layers of the original are identities at inference and are left out; the
    module is meant to run in ``eval()`` mode (batch norm uses the stored statistics).
    """

    def __init__(self, num_classes: int = 50, num_filt_midend: int = 64, num_units_backend: int = 200):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
        timbral_filters, temporal_filters = int(1.6 * 128), int(1.6 * 32)  # 204, 51
        self.timbral = nn.ModuleList(
            [_timbral(int(0.4 * N_MELS), timbral_filters), _timbral(int(0.7 * N_MELS), timbral_filters)]
        )
        self.temporal = nn.ModuleList([_temporal(k, temporal_filters) for k in (128, 64, 32)])
        front = 2 * timbral_filters + 3 * temporal_filters  # 561
        self.midend = nn.ModuleList(
            [_Midend(front, num_filt_midend), _Midend(num_filt_midend, num_filt_midend), _Midend(num_filt_midend, num_filt_midend)]
        )
        pooled = 2 * (front + 3 * num_filt_midend)  # 1506
        self.pool_bn = nn.BatchNorm1d(pooled, eps=BN_EPS)
        self.dense = nn.Linear(pooled, num_units_backend)
        self.dense_bn = nn.BatchNorm1d(num_units_backend, eps=BN_EPS)
        self.out = nn.Linear(num_units_backend, num_classes)

    def features(self, log_mel: torch.Tensor) -> dict[str, torch.Tensor]:
        """All the layers that musicnn's ``extractor`` exposes, per patch.

        Parameters
        ----------
        log_mel : torch.Tensor [batch, frames, 96], float32
            Log-mel patches (:func:`log_mel_patches`). ``frames`` is 187 for the trained
            input length; the network is fully convolutional up to the temporal pooling,
            so other lengths run (as upstream allows), though the models saw 3 s patches.

        Returns
        -------
        dict of torch.Tensor, float32
            ``timbral`` [batch, frames, 408], ``temporal`` [batch, frames, 153],
            ``cnn1``, ``cnn2``, ``cnn3`` [batch, frames, 64] (cnn2, cnn3 after the residual
            sums), ``max_pool``, ``mean_pool`` [batch, 753], ``penultimate`` [batch, 200],
            ``logits`` and ``taggram`` (sigmoid probabilities in [0, 1]) [batch, num_classes].
            Channel orders are TensorFlow's, so each entry equals upstream's feature of that name.

        Raises
        ------
        ValueError
            When ``log_mel`` is not 3-D with 96 mel bands.
        """
        if log_mel.ndim != 3 or log_mel.shape[2] != N_MELS:
            raise ValueError(f"log_mel must be [batch, frames, {N_MELS}], got {tuple(log_mel.shape)}")
        x = self.input_bn(log_mel.unsqueeze(1))  # [B, 1, T, F]
        timbral = [block(x) for block in self.timbral]
        temporal = [block(x) for block in self.temporal]
        front = torch.cat(timbral + temporal, dim=1)  # [B, 561, T]
        cnn1 = self.midend[0](front)
        cnn2 = self.midend[1](cnn1) + cnn1
        cnn3 = self.midend[2](cnn2) + cnn2
        mid = torch.cat([front, cnn1, cnn2, cnn3], dim=1)  # [B, 753, T]
        max_pool = mid.amax(dim=2)
        mean_pool = mid.mean(dim=2)
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # TF order: max_i, mean_i
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(flat))))
        logits = self.out(penultimate)
        t = lambda parts: torch.cat(parts, dim=1).transpose(1, 2)  # noqa: E731 - [B, C, T] -> [B, T, C]
        return {
            "timbral": t(timbral),
            "temporal": t(temporal),
            "cnn1": cnn1.transpose(1, 2),
            "cnn2": cnn2.transpose(1, 2),
            "cnn3": cnn3.transpose(1, 2),
            "max_pool": max_pool,
            "mean_pool": mean_pool,
            "penultimate": penultimate,
            "logits": logits,
            "taggram": torch.sigmoid(logits),
        }

    def forward(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tag probabilities and penultimate features of each patch.

        Parameters
        ----------
        log_mel : torch.Tensor [batch, 187, 96], float32
            Log-mel patches from :func:`log_mel_patches`.

        Returns
        -------
        tag_probs : torch.Tensor [batch, num_classes], float32 in [0, 1]
            Sigmoid of the logits (upstream's taggram rows); tags are independent, rows do not sum to 1.
        penultimate : torch.Tensor [batch, 200], float32
            Batch-normalised output of the 200-unit dense layer (upstream's ``penultimate``).

        Raises
        ------
        ValueError
            When ``log_mel`` is not 3-D with 96 mel bands.
        """
        out = self.features(log_mel)
        return out["taggram"], out["penultimate"]


def tf_variable_map() -> dict[str, str]:
    """PyTorch state-dict key -> TensorFlow checkpoint variable for the conv/dense weights and
    batch norms of :class:`MusicnnTagger` (layer creation order of ``build_musicnn``).

    Kernels need transposing: conv ``[kh, kw, in, out]`` -> ``[out, in, kh, kw]``
    (mid-end: ``[7, C, 1, out]`` -> ``[out, C, 7]``), dense ``[in, out]`` -> ``[out, in]``
    (see :func:`tf_to_torch`).
    """
    convs = ["timbral.0", "timbral.1", "temporal.0", "temporal.1", "temporal.2", "midend.0", "midend.1", "midend.2"]
    bns = ["input_bn"] + [f"{c}.bn" for c in convs] + ["pool_bn", "dense_bn"]
    mapping: dict[str, str] = {}
    for i, name in enumerate(convs):
        tf_name = "conv2d" if i == 0 else f"conv2d_{i}"
        mapping[f"{name}.conv.weight"] = f"{tf_name}/kernel"
        mapping[f"{name}.conv.bias"] = f"{tf_name}/bias"
    for i, name in enumerate(bns):
        tf_name = "batch_normalization" if i == 0 else f"batch_normalization_{i}"
        for torch_leaf, tf_leaf in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_variance")):
            mapping[f"{name}.{torch_leaf}"] = f"{tf_name}/{tf_leaf}"
    for torch_name, tf_name in (("dense", "dense"), ("out", "dense_1")):
        mapping[f"{torch_name}.weight"] = f"{tf_name}/kernel"
        mapping[f"{torch_name}.bias"] = f"{tf_name}/bias"
    return mapping


def tf_to_torch(key: str, value: np.ndarray) -> torch.Tensor:
    """Convert one TensorFlow checkpoint array to the layout of state-dict entry ``key``."""
    a = np.asarray(value, dtype=np.float32)
    if key.endswith("conv.weight"):
        a = a.transpose(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]
        if key.startswith("midend."):
            a = a[:, 0, :, :].transpose(0, 2, 1)  # [out, 1, 7, C] -> [out, C, 7]
    elif key in ("dense.weight", "out.weight"):
        a = a.T
    return torch.from_numpy(np.ascontiguousarray(a))


def load_musicnn(
    name: str = "MTT_musicnn", *, path: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[MusicnnTagger, list[str], dict]:
    """Load a shipped musicnn tagger.

    Parameters
    ----------
    name : {"MTT_musicnn", "MSD_musicnn"}
        ``MTT_musicnn``: trained on MagnaTagATune (50 tags, instruments, genres, moods);
        ``MSD_musicnn``: trained on the Million Song Dataset's Last.fm tags (50 tags, genres, decades, moods).
    path : path, optional
        A ``.pt`` written by ``tools/convert_musicnn.py``; default the shipped file for ``name``.
    device : torch device
        Where to put the model.

    Returns
    -------
    model : MusicnnTagger
        In ``eval()`` mode, float32.
    tags : list of str
        The ``num_classes`` tag names, in output order.
    config : dict
        Preprocessing constants (:data:`PREPROCESSING`), architecture sizes, the source
        package and version, and the conversion's measured max differences to TensorFlow.

    Raises
    ------
    ValueError
        For an unknown ``name`` or a file that is not a musicnn checkpoint.
    FileNotFoundError
        When the weight file is missing.
    """
    if path is None:
        if name not in WEIGHT_FILES:
            raise ValueError(f"unknown musicnn model {name!r}; shipped: {sorted(WEIGHT_FILES)}")
        path = checkpoint_dir() / WEIGHT_FILES[name]
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"musicnn weights not found at {path} (run tools/convert_musicnn.py)")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a musicnn checkpoint (format {FORMAT!r})")
    config = dict(blob["config"])
    arch = config["architecture"]
    model = MusicnnTagger(arch["num_classes"], arch["num_filt_midend"], arch["num_units_backend"])
    model.load_state_dict(blob["state_dict"])
    model.eval().to(device)
    return model, list(blob["tags"]), config


#: Patches per forward pass on a CPU. The network's convolutions run faster per patch in small
#: passes, whose [B, 204, 187, 59] activations stay in cache: 2 patches took 55-59 ms per
#: patch against 93-100 ms in passes of 16 (medians of six interleaved rounds of 32 patches,
#: one torch thread; 33-37 ms against 55-59 ms with two; this machine's CPU, 2026-12-02).
#: On an accelerator the whole request is one pass (:data:`DEVICE_PATCHES_PER_PASS`).
CPU_PATCHES_PER_PASS = 2
#: Patches per forward pass on an accelerator (CUDA).
DEVICE_PATCHES_PER_PASS = 256


@functools.lru_cache(maxsize=2)
def _cached(name: str) -> tuple[MusicnnTagger, list[str], dict]:
    return load_musicnn(name)


@torch.inference_mode()
def tag_patches(log_mel: np.ndarray, *, model: MusicnnTagger | None = None, name: str = "MTT_musicnn",
                batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run the tagger over patches in batches (each patch's outputs do not depend on the
    others in its pass: inference-mode batch norm).

    Parameters
    ----------
    log_mel : np.ndarray [patches, 187, 96], float32
        From :func:`log_mel_patches`.
    model : MusicnnTagger, optional
        Default: the shipped ``name`` model (loaded once and cached).
    name : str
        Shipped model to use when ``model`` is None.
    batch_size : int > 0, optional
        Patches per forward pass; default :data:`CPU_PATCHES_PER_PASS` on a CPU,
        :data:`DEVICE_PATCHES_PER_PASS` elsewhere.

    Returns
    -------
    taggram : np.ndarray [patches, num_classes], float32 in [0, 1]
    penultimate : np.ndarray [patches, 200], float32
    """
    if model is None:
        model = _cached(name)[0]
    device = next(model.parameters()).device
    if batch_size is None:
        batch_size = CPU_PATCHES_PER_PASS if device.type == "cpu" else DEVICE_PATCHES_PER_PASS
    x = torch.as_tensor(np.asarray(log_mel, dtype=np.float32))
    probs, pen = [], []
    for i in range(0, x.shape[0], batch_size):
        p, q = model(x[i : i + batch_size].to(device))
        probs.append(p.cpu())
        pen.append(q.cpu())
    return torch.cat(probs).numpy(), torch.cat(pen).numpy()


def embed(
    log_mel: np.ndarray,
    *,
    model: MusicnnTagger | None = None,
    name: str = "MTT_musicnn",
    batch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Track embedding and track-level tags: the means over a track's patches.

    Parameters
    ----------
    log_mel : np.ndarray [patches, 187, 96], float32
        The track's patches (:func:`musicaas.models.musicnn_frontend.log_mel_patches`, which
        the model server itself never needs: it receives patches).
    model : MusicnnTagger, optional
        Default: the shipped ``name`` model, loaded once and cached.
    name : {"MTT_musicnn", "MSD_musicnn"}
        Which shipped model, when ``model`` is None. ``MTT_musicnn``'s mean penultimate
        layer is the recommended track embedding.
    batch_size : int > 0, optional
        Patches per forward pass (:func:`tag_patches`' default when None).

    Returns
    -------
    embedding : np.ndarray [200], float32
        Mean over patches of the penultimate layer (not normalised).
    tag_probs : np.ndarray [num_classes], float32 in [0, 1]
        Mean over patches of the tag probabilities (upstream's taggram averaged over time).
    """
    taggram, penultimate = tag_patches(log_mel, model=model, name=name, batch_size=batch_size)
    return penultimate.mean(axis=0).astype(np.float32), taggram.mean(axis=0).astype(np.float32)


def top_tags(tag_probs: np.ndarray, tags: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable tags, as ``(tag, probability)`` pairs, most probable first."""
    order = np.argsort(-np.asarray(tag_probs))[:k]
    return [(tags[i], float(tag_probs[i])) for i in order]
