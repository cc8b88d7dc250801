"""musicnn's input from audio: float32 log-mel patches (numpy and librosa).

Apart from the tensor contract (:mod:`musicaas.models.musicnn_contract`, numpy only) so that
what imports the contract (the recommender, the model server) needs no librosa; the
analyzer computes the patches with this module and sends them to the model server.
"""

from __future__ import annotations

import numpy as np

from musicaas.models.musicnn_contract import HOP, N_FFT, N_FRAMES, N_MELS, SAMPLE_RATE_HZ


def log_mel_patches(audio: np.ndarray, *, sample_rate_hz: int = SAMPLE_RATE_HZ, hop_frames: int = N_FRAMES) -> np.ndarray:
    """musicnn's input: float32 log-mel patches of 187 frames (about 3 s each).

    The fixed version of musicnn's ``batch_data``: ``log10(10000 * mel + 1)`` of the
    power mel spectrogram (n_fft 512, hop 256, 96 Slaney mel bands, Hann window, centred
    frames with reflect padding) computed in float32, not float16 (upstream's float16 cast
    overflows on loud patches; see :mod:`musicaas_model.musicnn`).

    Parameters
    ----------
    audio : np.ndarray [shape=(n,)], float, mono, nominally in [-1, 1]
        Audio at ``sample_rate_hz``.
    sample_rate_hz : int > 0, Hz
        Sample rate of ``audio``; anything but 16000 is resampled first (``librosa.resample``, soxr).
    hop_frames : int > 0, frames
        Start-to-start distance of the patches. The default, 187, gives non-overlapping
        patches, which is musicnn's default (``input_overlap=False``); frames after the
        last whole patch are dropped, as upstream does.

    Returns
    -------
    np.ndarray [shape=(patches, 187, 96)], float32, >= 0
        ``patches = 1 + (frames - 187) // hop_frames`` where ``frames = 1 + n // 256``
        (at 16 kHz). Audio shorter than one patch is repeat-padded to one patch (the
        ``repeat-pad`` of musicnn's training configuration); upstream fails there.

    Raises
    ------
    ValueError
        When the audio is not 1-D, is empty, holds NaN or infinity, or when
        ``sample_rate_hz`` or ``hop_frames`` is not positive.
    """
    import librosa

    y = np.asarray(audio)
    if y.ndim != 1:
        raise ValueError(f"audio must be mono, 1-D; got shape {y.shape}")
    if y.size == 0:
        raise ValueError("audio is empty")
    if sample_rate_hz <= 0 or hop_frames <= 0:
        raise ValueError(f"sample_rate_hz and hop_frames must be positive, got {sample_rate_hz}, {hop_frames}")
    y = y.astype(np.float32, copy=False)
    if not np.all(np.isfinite(y)):
        raise ValueError("audio holds NaN or infinity")
    if sample_rate_hz != SAMPLE_RATE_HZ:
        y = librosa.resample(y, orig_sr=sample_rate_hz, target_sr=SAMPLE_RATE_HZ).astype(np.float32)
    mel = librosa.feature.melspectrogram(
        y=y, sr=SAMPLE_RATE_HZ, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, pad_mode="reflect" if y.size > N_FFT // 2 else "constant"
    ).T.astype(np.float32, copy=False)  # [frames, 96]
    log_mel = np.log10(np.float32(10000.0) * mel + np.float32(1.0)).astype(np.float32)
    if log_mel.shape[0] < N_FRAMES:
        reps = -(-N_FRAMES // log_mel.shape[0])
        log_mel = np.tile(log_mel, (reps, 1))[:N_FRAMES]
    starts = range(0, log_mel.shape[0] - N_FRAMES + 1, hop_frames)
    return np.ascontiguousarray(np.stack([log_mel[s : s + N_FRAMES] for s in starts]), dtype=np.float32)


def silence_patches(duration_s: float) -> np.ndarray:
    """The patches :func:`log_mel_patches` gives for ``duration_s`` seconds of digital
    silence (all zeros; one patch at least), without computing a spectrogram."""
    frames = 1 + int(max(0.0, duration_s) * SAMPLE_RATE_HZ) // HOP
    return np.zeros((max(1, 1 + (frames - N_FRAMES) // N_FRAMES), N_FRAMES, N_MELS), dtype=np.float32)
