"""The peers scored beside the analyzer: librosa in-process, Essentia in a subprocess.

* **librosa** (ISC): ``librosa.beat.beat_track(y=y, sr=sr)`` with its defaults (tempo,
  beats; Ellis 2007) and, for the key, the Krumhansl & Kessler (1982) profiles correlated
  with the mean of ``librosa.feature.chroma_stft`` (default parameters): what one writes
  with librosa alone, as ``bench/analyzer_accuracy.py``'s baseline does (written out here,
  so that the peer uses no code of the analyzer).
* **Essentia** (AGPL-3.0): never a dependency of the project. It lives in its own venv
  (``~/.cache/musicaas-bench/peer-venv``) and runs ``essentia_peer.py`` in a subprocess;
  the audio crosses as a ``.npy`` file. ``RhythmExtractor2013(method="multifeature")``
  (Zapata et al. 2014) and ``KeyExtractor()`` (defaults), at the 44.1 kHz they assume.

Neither has a downbeat tracker in these releases, so downbeats are scored for the analyzer only.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

#: Krumhansl & Kessler (1982) probe-tone profiles, C major / C minor.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def kk_key(chroma_mean: np.ndarray) -> str:
    """The key whose rotated Krumhansl-Kessler profile correlates best with ``chroma_mean`` (12, C..B)."""
    best, name = -2.0, "X"
    for mode, profile in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for tonic in range(12):
            r = np.corrcoef(chroma_mean, np.roll(profile, tonic))[0, 1]
            if np.isfinite(r) and r > best:
                best, name = r, f"{PITCH_NAMES[tonic]} {mode}"
    return name


def librosa_peer(y: np.ndarray, sr: int) -> dict:
    import librosa

    t0 = time.perf_counter()
    tempo, beats = librosa.beat.beat_track(y=y, sr=sr, units="time")
    key = kk_key(librosa.feature.chroma_stft(y=y, sr=sr).mean(axis=1))
    dt = time.perf_counter() - t0
    return {"bpm": float(np.atleast_1d(tempo)[0]), "beats_s": np.asarray(beats, float).tolist(), "key": key, "compute_s": dt}


class EssentiaPeer:
    """One long-lived Essentia subprocess (started once per worker)."""

    def __init__(self, python: Path, *, timeout_s: float = 120.0):
        script = Path(__file__).with_name("essentia_peer.py")
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        self._proc = subprocess.Popen([str(python), str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True, env=env)
        self._tmp = tempfile.TemporaryDirectory(prefix="essentia-peer-")
        self.timeout_s = timeout_s
        hello = json.loads(self._proc.stdout.readline() or "{}")
        if not hello.get("ready"):
            raise RuntimeError("the Essentia peer did not start")
        self.version = hello.get("version", "?")

    def __call__(self, y: np.ndarray, sr: int) -> dict:
        path = os.path.join(self._tmp.name, "y.npy")
        np.save(path, np.asarray(y, dtype=np.float32))
        self._proc.stdin.write(json.dumps({"npy": path, "sr": int(sr)}) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the Essentia peer died")
        out = json.loads(line)
        if "error" in out:
            raise RuntimeError(f"Essentia failed: {out['error']}")
        return out

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._tmp.cleanup()
