"""The tensor contract of the musicnn tagger served by Triton (numpy only).

Both sides import this module: the model server (:mod:`musicaas_model.serve`, which binds
:class:`musicaas_model.musicnn.MusicnnTagger` with :data:`INPUTS` / :data:`OUTPUTS`) and the
analyzer (which computes :func:`musicaas.models.musicnn_frontend.log_mel_patches` from the decoded audio, sends them with
:func:`build_inputs` and reads the answer with :func:`decode_outputs` and
:func:`summarise`). The preprocessing lives here, not in the torch module, so that the
client can compute the model's input without torch.

One row is one patch (3 s of audio); the batch dimension is added by Triton
(``max_batch_size`` :data:`MAX_BATCH_SIZE`, dynamic batching), so the patches of several
tracks travel in one request when they are concatenated along it.

=============  =====  =========  ===================================================
name           dtype  shape      meaning
=============  =====  =========  ===================================================
``LOG_MEL``    FP32   [187, 96]  input: ``log10(10000 * mel + 1)`` patch (:func:`musicaas.models.musicnn_frontend.log_mel_patches`)
``TAGS``       FP32   [50]       output: sigmoid probability of each of :data:`TAG_NAMES`
``EMBEDDING``  FP32   [200]      output: the penultimate layer (batch-normalised dense 200)
=============  =====  =========  ===================================================

The track-level result (:func:`summarise`) averages both outputs over the track's patches:
the mean penultimate, L2-normalised, is the learned track embedding
(:data:`EMBEDDING_MODEL` names it in the payload), and the mean probabilities rank the tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

#: Name of the model in Triton's model repository.
MODEL_NAME = "musicaas_musicnn_mtt"
#: Version the server registers (Triton model versions are integers).
MODEL_VERSION = 1
#: Name and version of the learned embedding, stored with every analysis
#: (``TrackAnalysis.embedding_model``): a new model is a re-embedding migration.
EMBEDDING_MODEL = "musicnn-MTT/1"
#: Largest batch (patches) Triton forms; also the most rows one client request carries.
MAX_BATCH_SIZE = 64

#: Sample rate the model was trained at, Hz.
SAMPLE_RATE_HZ = 16000
#: STFT size, samples.
N_FFT = 512
#: STFT hop, samples (16 ms at 16 kHz).
HOP = 256
#: Mel bands.
N_MELS = 96
#: Frames per patch (3 s; ``librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1``).
N_FRAMES = 187
#: Seconds of audio per patch (non-overlapping patches).
PATCH_S = N_FRAMES * HOP / SAMPLE_RATE_HZ

#: Preprocessing constants, also stored in each shipped ``.pt`` (``config["preprocessing"]``).
PREPROCESSING = {
    "sample_rate_hz": SAMPLE_RATE_HZ,
    "n_fft": N_FFT,
    "hop_length": HOP,
    "n_mels": N_MELS,
    "n_frames": N_FRAMES,
    "power": 2.0,
    "window": "hann",
    "center": True,
    "pad_mode": "reflect",
    "mel_htk": False,
    "mel_norm": "slaney",
    "log": "log10(10000 * mel + 1)",
    "dtype": "float32",
}

#: The 50 MagnaTagATune tags, in the order of the ``TAGS`` output (checked against the weights by a test).
TAG_NAMES: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop",
    "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)
NUM_TAGS = len(TAG_NAMES)
#: Length of the ``EMBEDDING`` output (and of the learned track embedding).
EMBEDDING_DIM = 200
#: Tags kept per track (best first).
TOP_TAGS = 10

LOG_MEL = "LOG_MEL"
TAGS = "TAGS"
EMBEDDING = "EMBEDDING"

#: ``(name, numpy dtype, Triton datatype, per-row shape)`` of each input.
INPUTS: tuple[tuple[str, str, str, tuple[int, ...]], ...] = ((LOG_MEL, "float32", "FP32", (N_FRAMES, N_MELS)),)
#: ``(name, numpy dtype, Triton datatype, per-row shape)`` of each output.
OUTPUTS: tuple[tuple[str, str, str, tuple[int, ...]], ...] = (
    (TAGS, "float32", "FP32", (NUM_TAGS,)),
    (EMBEDDING, "float32", "FP32", (EMBEDDING_DIM,)),
)


def check_patches(log_mel: np.ndarray) -> np.ndarray:
    """``log_mel`` as a C-contiguous float32 ``[patches, 187, 96]`` array with at least one patch.

    Raises
    ------
    ValueError
        For another shape, no patch, or non-finite values.
    """
    a = np.ascontiguousarray(log_mel, dtype=np.float32)
    if a.ndim != 3 or a.shape[1:] != (N_FRAMES, N_MELS) or a.shape[0] == 0:
        raise ValueError(f"log-mel patches must be [patches >= 1, {N_FRAMES}, {N_MELS}], got {tuple(a.shape)}")
    if not np.all(np.isfinite(a)):
        raise ValueError("log-mel patches hold NaN or infinity")
    return a


def split_rows(counts: Sequence[int], max_rows: int = MAX_BATCH_SIZE) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges of at most ``max_rows`` rows covering ``sum(counts)`` rows."""
    total = int(sum(counts))
    return [(s, min(s + max_rows, total)) for s in range(0, total, max_rows)]


def decode_outputs(outputs: Mapping[str, np.ndarray], rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``(tags [rows, 50], embedding [rows, 200])`` float32 from a response's arrays.

    Raises
    ------
    ValueError
        When an output is missing or has another shape (a server speaking another contract).
    """
    got = []
    for name, _dtype, _triton, shape in OUTPUTS:
        a = outputs.get(name)
        if a is None:
            raise ValueError(f"the response has no {name} output")
        a = np.asarray(a, dtype=np.float32)
        if a.shape != (rows, *shape):
            raise ValueError(f"{name} has shape {a.shape}, expected {(rows, *shape)}")
        got.append(a)
    return got[0], got[1]


@dataclass(frozen=True)
class TrackTags:
    """The track-level result of a track's patches.

    Attributes
    ----------
    embedding : np.ndarray [200], float32
        Mean penultimate over the patches, L2-normalised (zero stays zero).
    tags : tuple of (str, float)
        The :data:`TOP_TAGS` most probable tags, best first, with the mean probability over the patches.
    probabilities : np.ndarray [50], float32 in [0, 1]
        Mean probability of every tag of :data:`TAG_NAMES`.
    patches : int
        Patches averaged.
    """

    embedding: np.ndarray
    tags: tuple[tuple[str, float], ...]
    probabilities: np.ndarray
    patches: int
    model: str = EMBEDDING_MODEL


def summarise(tags: np.ndarray, embedding: np.ndarray, *, top: int = TOP_TAGS) -> TrackTags:
    """Average one track's per-patch outputs (``[patches, 50]``, ``[patches, 200]``) into a :class:`TrackTags`."""
    tags = np.asarray(tags, dtype=np.float32)
    embedding = np.asarray(embedding, dtype=np.float32)
    if tags.ndim != 2 or tags.shape[1] != NUM_TAGS or embedding.shape != (tags.shape[0], EMBEDDING_DIM) or not len(tags):
        raise ValueError(f"per-patch outputs must be [patches, {NUM_TAGS}] and [patches, {EMBEDDING_DIM}], "
                         f"got {tags.shape} and {embedding.shape}")
    probs = tags.mean(axis=0).astype(np.float32)
    vec = embedding.astype(np.float64).mean(axis=0)
    norm = float(np.linalg.norm(vec))
    vec = (vec / norm if norm > 0 else vec).astype(np.float32)
    order = np.argsort(-probs, kind="stable")[: max(0, int(top))]
    return TrackTags(embedding=vec, tags=tuple((TAG_NAMES[i], float(probs[i])) for i in order),
                     probabilities=probs, patches=int(tags.shape[0]))
