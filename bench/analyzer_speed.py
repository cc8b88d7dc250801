"""Speed and memory of the analyzer, with a plain-librosa baseline measured in the same run.

Measured, on this machine:

1. **One core**: seconds of audio analysed per second of wall time (median of 3 runs on a
   3-minute track), every BLAS/FFT/numba thread pool limited to one thread and the process
   pinned to one CPU, for
   * the analyzer's tier one (``detail=False``: tempo, beats, key, loudness, embedding,
     plus the confidences, metre, audio features and descriptors),
   * the full analysis (``detail=True``: plus bars, beats, tatums, segments, sections),
   * the baseline: librosa ``beat_track`` + Krumhansl-Kessler key on ``chroma_stft`` +
     ``pyloudnorm`` integrated loudness (no embedding, no features).
   Target: tier one >= 100x real time.
2. **Batch throughput** on all cores: the same tracks through a process pool of one worker
   and of ``os.cpu_count()`` workers (each pinned to one thread), audio seconds per second.
3. **Memory**: peak resident memory of a fresh subprocess while it decodes and analyses
   (``analyze_bytes``, full detail) a 10-minute and a 30-minute 44.1 kHz stereo 16-bit WAV
   held in memory (the peak mark is reset after imports, JIT warm-up and making the file,
   so it is the analysis's own peak on top of what was resident), and the size of the file.
   Target: <= 1.5 GB for 10 minutes; the 30-minute figure shows how the peak grows (the
   file is decoded block by block, loudness measured and the mix resampled on the way,
   the short-time features computed block by block: what remains proportional to length
   is the 22050 Hz mix and a few per-frame arrays).

Run (about two minutes; ``--quick`` skips the 30-minute file and uses fewer runs)::

    python bench/analyzer_speed.py
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

SR = 22050


def material(seconds: float) -> np.ndarray:
    """Rendered chorales (four, each on another in-tune GM instrument), tiled to ``seconds``."""
    import symusic

    from musicaas.render import render_midi

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "analyzer"))
    from conftest import chorale_midi_bytes

    parts = []
    for name, program in (("bach/bwv66.6", 48), ("bach/bwv1.6", 5), ("bach/bwv269", 73), ("bach/bwv26.6", 46)):
        score = symusic.Score.from_midi(chorale_midi_bytes(name))
        for track in score.tracks:
            track.program = program
        parts.append(render_midi(score.dumps_midi(), sample_rate_hz=SR))
    y = np.concatenate(parts)
    reps = int(np.ceil(seconds * SR / y.size))
    return np.tile(y, reps)[: int(seconds * SR)].astype(np.float32)


def baseline(y: np.ndarray, sr: int) -> None:
    import librosa
    import pyloudnorm

    from musicaas_analyzer.keyfinding import estimate_key

    librosa.beat.beat_track(y=y, sr=sr)
    estimate_key(librosa.feature.chroma_stft(y=y, sr=sr).mean(axis=1), profile="krumhansl-kessler")
    pyloudnorm.Meter(sr).integrated_loudness(y.astype(np.float64))


def _pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def _worker_init() -> None:
    from musicaas_analyzer.analysis import warm_up

    warm_up()


def _analyse_one(y: np.ndarray) -> float:
    from musicaas_analyzer.analysis import analyze_signal

    return analyze_signal(y, sample_rate_hz=SR).duration_s


MEMORY_CHILD = r"""
import io, os, resource, sys, time
import numpy as np
minutes = float(sys.argv[1])
from musicaas_analyzer.analysis import analyze_bytes, warm_up
warm_up()

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024  # kB -> MB
    return float("nan")

sr = 44100
rng = np.random.default_rng(0)
# A 44.1 kHz stereo 16-bit WAV of harmonic tones and clicks, written block by block.
import soundfile as sf
buf = io.BytesIO()
n = int(minutes * 60 * sr)
with sf.SoundFile(buf, "w", samplerate=sr, channels=2, format="WAV", subtype="PCM_16") as f:
    block = sr * 10
    t = np.arange(block) / sr
    for start in range(0, n, block):
        k = min(block, n - start)
        f0 = 110.0 * 2 ** (int(rng.integers(0, 24)) / 12)
        tone = sum(np.sin(2 * np.pi * h * f0 * t[:k]) / h for h in range(1, 6))
        clicks = (np.sin(2 * np.pi * 2.0 * t[:k]) > 0.995).astype(float)
        x = 0.2 * tone + 0.3 * clicks + 0.01 * rng.standard_normal(k)
        f.write(np.stack([x, 0.8 * x], axis=1) * 0.8)
data = buf.getvalue()
del buf, tone, clicks, x, t
file_mb = len(data) / 2**20
before = status("VmRSS")
try:  # reset the peak-RSS mark (Linux >= 4.0), so that the import/JIT peak does not hide it
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    reset = 1
except OSError:
    reset = 0
t0 = time.perf_counter()
r = analyze_bytes(data, filename="long.wav", max_duration_s=3600)
wall = time.perf_counter() - t0
peak = status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{before:.0f} {peak:.0f} {file_mb:.0f} {wall:.1f} {r.duration_s:.0f} {len(r.segments)} {len(r.beats)} {reset}")
"""


def memory(minutes: float) -> dict:
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(minutes)], capture_output=True, text=True, env=env, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"memory run for {minutes} min failed:\n{out.stderr[-2000:]}")
    before, peak, file_mb, wall, duration, segments, beats, reset = out.stdout.split()[-8:]
    return {"before_mb": float(before), "peak_mb": float(peak), "file_mb": float(file_mb), "wall_s": float(wall),
            "duration_s": float(duration), "segments": int(segments), "beats": int(beats), "reset": reset == "1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run each, no 30-minute file")
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the speed-test track (default 180 s)")
    args = parser.parse_args()
    runs = 1 if args.quick else 3

    import concurrent.futures
    import warnings

    from musicaas_analyzer.analysis import analyze_signal, warm_up

    warnings.filterwarnings("ignore")
    _pin_one_core()
    warm_up()
    y = material(args.seconds)
    duration = y.size / SR
    baseline(y[: 10 * SR], SR)  # librosa's own numba warm-up

    def rate(fn) -> float:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return duration / float(np.median(times))

    tier1 = rate(lambda: analyze_signal(y, sample_rate_hz=SR, detail=False))
    full = rate(lambda: analyze_signal(y, sample_rate_hz=SR, detail=True))
    base = rate(lambda: baseline(y, SR))
    print(f"\n1. One core, {duration:.0f} s track (median of {runs}), seconds of audio per second of wall time:")
    print(f"   {'analyzer tier one (detail=False)':40s}{tier1:8.0f}x   target >= 100x: {'met' if tier1 >= 100 else 'NOT met'}")
    print(f"   {'analyzer full (tree included)':40s}{full:8.0f}x")
    print(f"   {'baseline (librosa beat+chroma, pyloudnorm)':40s}{base:8.0f}x")

    # 2. Batch throughput.
    n_cpu = os.cpu_count() or 1
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(range(n_cpu)))  # undo the one-core pinning
    tracks = [y[i * 45 * SR : (i + 1) * 45 * SR] for i in range(max(1, int(duration // 45)))] * 2
    audio = sum(t.size for t in tracks) / SR
    results = {}
    for workers in sorted({1, n_cpu}):
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, initializer=_worker_init) as pool:
            list(pool.map(_analyse_one, tracks[:workers]))  # start and warm every worker
            t0 = time.perf_counter()
            list(pool.map(_analyse_one, tracks))
            results[workers] = audio / (time.perf_counter() - t0)
    print(f"\n2. Batch: {len(tracks)} tracks of 45 s (full analysis), process pool:")
    for workers, value in results.items():
        print(f"   {workers} worker{'s' if workers > 1 else ' '}: {value:6.0f}x real time")
    if len(results) > 1:
        print(f"   speed-up {results[n_cpu] / results[1]:.2f} on {n_cpu} cores")

    # 3. Memory.
    print("\n3. Peak memory of a fresh process decoding and analysing a 44.1 kHz stereo 16-bit WAV (full detail):")
    for minutes in ((10.0,) if args.quick else (10.0, 30.0)):
        m = memory(minutes)
        verdict = ""
        if minutes == 10.0:
            verdict = f"   target <= 1536 MB: {'met' if m['peak_mb'] <= 1536 else 'NOT met'}"
        print(
            f"   {minutes:4.0f} min ({m['file_mb']:.0f} MB file): peak RSS during the analysis {m['peak_mb']:.0f} MB "
            f"(resident before it, file bytes included: {m['before_mb']:.0f} MB; the analysis added "
            f"{m['peak_mb'] - m['before_mb']:.0f} MB); {m['wall_s']:.1f} s, {m['beats']} beats, "
            f"{m['segments']} segments{verdict}"
        )
        if not m["reset"]:
            print("     (peak RSS could not be reset: it includes the import and JIT peak)")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(this process peaked at {own:.0f} MB)")


if __name__ == "__main__":
    main()
