"""Memory-bounded STFT: magnitudes computed a block of frames at a time.

A 30-minute track at 22050 Hz has about 77,500 frames of a 2048-point STFT; the whole
complex STFT would take 640 MB and its magnitudes another 320 MB, before any feature is
derived. The analyzer only needs per-frame summaries (mel bands, centroid, ...), so it
walks the STFT in blocks of :data:`BLOCK_FRAMES` frames. The frames are exactly those of
``librosa.stft(y, n_fft=n_fft, hop_length=hop, center=True)`` (Hann window, zero padding
of ``n_fft // 2`` at both ends), which the tests check.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: Frames per block (about 47 s at hop 512 and 22050 Hz).
BLOCK_FRAMES = 2048


def n_frames(n_samples: int, hop: int) -> int:
    """Number of frames ``librosa.stft(..., center=True)`` produces for ``n_samples``."""
    return 1 + n_samples // hop


def stft_magnitude_blocks(
    y: np.ndarray, *, n_fft: int, hop: int, max_bin: int | None = None, block_frames: int = BLOCK_FRAMES
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_frame, |STFT|)`` blocks of a centred, zero-padded Hann STFT.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], float32
    n_fft, hop : int
        Window length and hop, samples (``n_fft`` even).
    max_bin : int or None
        Keep only bins ``[0, max_bin)`` (all ``1 + n_fft // 2`` when None).
    block_frames : int
        Frames per block.

    Yields
    ------
    first_frame : int
    magnitudes : np.ndarray [shape=(bins, frames_in_block)], float32
    """
    import librosa

    total = n_frames(y.size, hop)
    half = n_fft // 2
    bins = 1 + n_fft // 2 if max_bin is None else int(max_bin)
    for f0 in range(0, total, block_frames):
        f1 = min(total, f0 + block_frames)
        start = f0 * hop - half
        stop = start + (f1 - f0 - 1) * hop + n_fft
        segment = y[max(start, 0) : min(stop, y.size)]
        if start < 0 or stop > y.size:
            segment = np.pad(segment, (max(0, -start), max(0, stop - y.size)))
        spec = librosa.stft(segment, n_fft=n_fft, hop_length=hop, center=False, window="hann")
        yield f0, np.abs(spec[:bins])
