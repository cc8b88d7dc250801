"""Integrated loudness, ITU-R BS.1770-4 (the measure behind EBU R 128), in LUFS.

The K-weighting filters are pyloudnorm's (the stages of ``pyloudnorm.Meter(rate)``: the
RBJ-cookbook high shelf, +4 dB above about 1.5 kHz, and the 38 Hz high pass, designed
for the actual sample rate). The gating is BS.1770-4's: 400 ms blocks with 75 % overlap,
an absolute gate at -70 LKFS, then a relative gate 10 LU below the absolutely-gated mean.
It is computed here rather than with ``pyloudnorm.Meter.integrated_loudness`` so that long
files are filtered in chunks (pyloudnorm copies the whole signal and filters each channel
in float64 at once, well over a gigabyte for 30 min of 44.1 kHz stereo) and the blocks
are summed without a Python loop; the tests check that both agree to 0.05 LU (they agree
to 1e-6 LU on whole 100 ms multiples).

Conventions:

* Silence: when no block reaches the absolute gate the loudness is undefined (pyloudnorm
  returns -inf); it is reported as :data:`LOUDNESS_FLOOR_LUFS` (-70.0), the gate itself.
* Audio shorter than one 400 ms block is measured as one block spanning the whole signal.
* Mono and stereo channels have weight 1.0 (BS.1770 weights the front channels 1.0), so a
  stereo file whose channels are identical measures about 3 LU louder than one channel.
"""

from __future__ import annotations

import functools

import numpy as np

#: Reported for silence or near-silence (nothing above BS.1770's -70 LKFS absolute gate).
LOUDNESS_FLOOR_LUFS = -70.0

_BLOCK_S = 0.4
_STEP_S = 0.1
_ABSOLUTE_GATE = -70.0
_RELATIVE_GATE = -10.0
_CHUNK_SEGMENTS = 256


@functools.lru_cache(maxsize=16)
def _k_weighting(sample_rate_hz: int) -> tuple[tuple[np.ndarray, np.ndarray, float], ...]:
    import pyloudnorm

    meter = pyloudnorm.Meter(sample_rate_hz)  # K-weighting, BS.1770-4
    return tuple(
        (np.asarray(stage.b, dtype=np.float64), np.asarray(stage.a, dtype=np.float64), float(stage.passband_gain))
        for stage in meter._filters.values()
    )


def _block_power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def _segment_energies(channel: np.ndarray, sample_rate_hz: int, edges: np.ndarray) -> np.ndarray:
    """Sum of squared K-weighted samples in each segment [edges[k], edges[k+1])."""
    from scipy.signal import lfilter, lfilter_zi

    stages = _k_weighting(sample_rate_hz)
    states = [lfilter_zi(b, a) * 0.0 for b, a, _ in stages]
    out = np.empty(len(edges) - 1, dtype=np.float64)
    for start in range(0, len(edges) - 1, _CHUNK_SEGMENTS):
        stop = min(start + _CHUNK_SEGMENTS, len(edges) - 1)
        lo, hi = int(edges[start]), int(edges[stop])
        x = np.asarray(channel[lo:hi], dtype=np.float64)
        for i, (b, a, gain) in enumerate(stages):
            x, states[i] = lfilter(b, a, x, zi=states[i])
            if gain != 1.0:
                x = x * gain
        np.square(x, out=x)
        out[start:stop] = np.add.reduceat(x, edges[start:stop] - lo)
    return out


def _whole_signal_energy(channel: np.ndarray, sample_rate_hz: int) -> float:
    from scipy.signal import lfilter

    x = np.asarray(channel, dtype=np.float64)
    for b, a, gain in _k_weighting(sample_rate_hz):
        x = gain * lfilter(b, a, x)
    return _block_power(x)


def integrated_loudness(samples: np.ndarray, sample_rate_hz: int) -> float:
    """Integrated loudness of mono or multichannel audio, LUFS.

    Parameters
    ----------
    samples : np.ndarray [shape=(n,) or (n, channels)], float
        Finite samples, full scale = 1.0. Channels are weighted 1.0 each (front L/R/C).
    sample_rate_hz : int > 0, Hz

    Returns
    -------
    float
        Integrated loudness in LUFS, never below :data:`LOUDNESS_FLOOR_LUFS`.
    """
    x = np.asarray(samples)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    block = int(round(_BLOCK_S * sample_rate_hz))
    if n == 0:
        return LOUDNESS_FLOOR_LUFS
    if n < block:
        # Shorter than one gating block: one block over the whole signal.
        power = np.array([[_whole_signal_energy(x[:, c], sample_rate_hz) for c in range(x.shape[1])]])
    else:
        n_segments = int(np.floor(n / (_STEP_S * sample_rate_hz) + 1e-9))
        edges = np.round(np.arange(n_segments + 1) * _STEP_S * sample_rate_hz).astype(np.int64)
        edges[-1] = min(edges[-1], n)
        per_segment = np.stack(
            [_segment_energies(x[:, c], sample_rate_hz, edges) for c in range(x.shape[1])], axis=1
        )
        # Block j spans segments j..j+3 (400 ms, 75 % overlap).
        n_blocks = n_segments - 3
        csum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(per_segment, axis=0)])
        energy = csum[4 : 4 + n_blocks] - csum[:n_blocks]
        lengths = (edges[4 : 4 + n_blocks] - edges[:n_blocks]).astype(np.float64)
        power = energy / lengths[:, None]
    total = power.sum(axis=1)  # channel weights G_i = 1.0
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(total)
    gated = block_lufs > _ABSOLUTE_GATE
    if not gated.any():
        return LOUDNESS_FLOOR_LUFS
    relative = -0.691 + 10.0 * np.log10(total[gated].mean()) + _RELATIVE_GATE
    gated &= block_lufs > relative
    lufs = -0.691 + 10.0 * np.log10(total[gated].mean())
    return float(max(lufs, LOUDNESS_FLOOR_LUFS))
