"""The musicnn tags of each structural section, from the model's per-patch probabilities.

The tagger answers one row of :data:`~musicaas.models.musicnn_contract.NUM_TAGS` sigmoid
probabilities per log-mel patch; patch ``i`` holds frames ``187 i`` to ``187 i + 186``
(hop 256 at 16 kHz, centred frames: :func:`musicaas.models.musicnn_frontend.log_mel_patches`
with its default non-overlapping hop), so it covers the audio from ``i * PATCH_S`` to
``(i + 1) * PATCH_S`` seconds (``PATCH_S`` = 2.992 s). A section's tags are the mean
probability of each tag over the patches that overlap the section, each patch weighted by
the seconds it shares with the section (a patch that only grazes the section's edge counts
little), ranked best first, as many as the track's top tags
(:data:`~musicaas.models.musicnn_contract.TOP_TAGS`). This is the track-level mean of
:func:`~musicaas.models.musicnn_contract.summarise` restricted to the section, i.e.
musicnn's "taggram" (Pons & Serra 2019, *musicnn: pre-trained convolutional neural
networks for music audio tagging*) averaged over the section's time span.

A section gets no tags when it is shorter than one patch (the model has no window that fits
inside it), or when the patches cover less than half a patch of it (the frames after the
last whole patch are not tagged: musicnn drops them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from musicaas.models import musicnn_contract as mc

#: Least seconds of a section the patches must cover, as a fraction of one patch.
MIN_COVERED_PATCHES = 0.5


def section_tags(
    sections: Sequence[tuple[float, float]],
    patch_probabilities: np.ndarray,
    *,
    patch_s: float = mc.PATCH_S,
    top: int = mc.TOP_TAGS,
) -> list[tuple[tuple[str, float], ...]]:
    """The top tags of each section, best first.

    Parameters
    ----------
    sections : sequence of (start_s, duration_s), seconds
        The sections' start and length (``Section.start_s``, ``Section.duration_s``).
    patch_probabilities : np.ndarray [shape=(patches, 50)], float, in [0, 1]
        The tagger's per-patch ``TAGS`` output, in patch order (patch ``i`` starts at
        ``i * patch_s`` seconds).
    patch_s : float > 0, seconds
        Length of, and distance between, patches.
    top : int >= 0
        Tags kept per section.

    Returns
    -------
    list of tuple of (str, float)
        One entry per section: ``top`` pairs of (tag name of
        :data:`~musicaas.models.musicnn_contract.TAG_NAMES`, overlap-weighted mean
        probability in [0, 1]) in decreasing probability (ties in tag order), or ``()`` for
        a section shorter than ``patch_s`` or covered by less than half a patch.

    Raises
    ------
    ValueError
        When ``patch_probabilities`` is not ``[patches, 50]`` or holds NaN or infinity, or
        ``patch_s`` is not positive.
    """
    probs = np.asarray(patch_probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != mc.NUM_TAGS:
        raise ValueError(f"patch probabilities must be [patches, {mc.NUM_TAGS}], got {probs.shape}")
    if not np.all(np.isfinite(probs)):
        raise ValueError("patch probabilities hold NaN or infinity")
    if not patch_s > 0:
        raise ValueError(f"patch_s must be > 0 seconds, got {patch_s!r}")
    eps = 1e-4 * patch_s  # float32 section bounds
    starts = np.arange(probs.shape[0], dtype=np.float64) * patch_s
    out: list[tuple[tuple[str, float], ...]] = []
    for start_s, duration_s in sections:
        start_s, duration_s = float(start_s), float(duration_s)
        if not (np.isfinite(start_s) and np.isfinite(duration_s)) or duration_s + eps < patch_s or not len(probs):
            out.append(())
            continue
        overlap = np.clip(np.minimum(start_s + duration_s, starts + patch_s) - np.maximum(start_s, starts), 0.0, None)
        covered = float(overlap.sum())
        if covered < MIN_COVERED_PATCHES * patch_s:
            out.append(())
            continue
        mean = overlap @ probs / covered
        order = np.argsort(-mean, kind="stable")[: max(0, int(top))]
        out.append(tuple((mc.TAG_NAMES[i], float(mean[i])) for i in order))
    return out
