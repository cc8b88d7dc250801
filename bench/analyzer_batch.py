"""Batch throughput of the analyzer's worker pool: audio seconds analysed per wall-clock second.

N Bach chorales (:func:`musicaas.chorales.iter_chorales`) are rendered with
:func:`musicaas.render.render_midi`, encoded as 16-bit WAV (:func:`musicaas.render.encode_wav`)
and given all at once to :class:`musicaas_analyzer.service.Analyzer` (``await
analyzer.analyze(wav, name)`` for every file, gathered), once per worker count. The
workers are started and warmed up before the clock starts (``Analyzer.start``, timed
separately). Each setting runs ``--rounds`` times and the best round is reported (the
machine may be shared); every round's wall time is printed too, and so is the CPU time the
analyses used (the workers' user + system time from /proc): "CPU / wall" is the number of
cores they actually kept busy, which tells a shared machine from a pool that does not scale.

``--workers 0`` is the in-process fallback: ``--threads`` threads, no worker processes.

Run (about a minute on two cores)::

    python bench/analyzer_batch.py --n 8                # workers=1 vs workers=2
    python bench/analyzer_batch.py --n 16 --workers 0,1,2 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time


def render(n: int) -> list[tuple[str, bytes, float]]:
    from musicaas.chorales import iter_chorales
    from musicaas.render import encode_wav, render_midi

    out = []
    for chorale in iter_chorales(n):
        y = render_midi(chorale.midi, sample_rate_hz=22050)
        out.append((chorale.name, encode_wav(y, sample_rate_hz=22050), y.size / 22050))
    return out


def cpu_seconds(analyzer) -> float:
    """CPU time (user + system) used so far by the analyses: the worker processes' (read from
    /proc), or this process's for the threads fallback."""
    if not analyzer.workers:
        return time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in list(getattr(analyzer._pool, "_processes", None) or {}):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


async def run_setting(workers: int, threads: int, files, rounds: int) -> dict:
    from musicaas_analyzer.service import Analyzer, AnalyzerSettings

    settings = AnalyzerSettings(workers=workers, concurrency=threads)
    t0 = time.perf_counter()
    analyzer = Analyzer(settings)
    await analyzer.start()
    start_s = time.perf_counter() - t0
    walls, cpus = [], []
    try:
        for _ in range(rounds):
            c0, t0 = cpu_seconds(analyzer), time.perf_counter()
            results = await asyncio.gather(*(analyzer.analyze(wav, f"{name}.wav") for name, wav, _ in files))
            walls.append(time.perf_counter() - t0)
            cpus.append(cpu_seconds(analyzer) - c0)
    finally:
        await analyzer.close()
    audio_s = sum(r.duration_s for r in results)
    return {
        "workers": workers, "threads": threads, "start_s": start_s, "walls": walls, "cpus": cpus,
        "audio_s": audio_s, "keys": [f"{r.key} {r.mode}" for r in results],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8, help="number of chorales (default 8)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2; 0 = threads)")
    parser.add_argument("--threads", type=int, default=2, help="threads for --workers 0 (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per setting; the best is reported")
    args = parser.parse_args()
    settings = [int(w) for w in args.workers.split(",")]

    t0 = time.perf_counter()
    files = render(args.n)
    total_audio = sum(d for _, _, d in files)
    print(f"{len(files)} chorales, {total_audio:.1f} s of audio, rendered in {time.perf_counter() - t0:.1f} s; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")

    rows = [asyncio.run(run_setting(w, args.threads, files, args.rounds)) for w in settings]
    ref = None
    header = (f"{'workers':>12} {'start (s)':>10} {'wall (s)':>9} {'audio (s)':>10} {'audio s / wall s':>17} "
              f"{'speed-up':>9} {'CPU (s)':>8} {'CPU / wall':>11}   rounds (wall s)")
    print(header)
    print("-" * len(header))
    for row in rows:
        i = min(range(len(row["walls"])), key=row["walls"].__getitem__)
        best, cpu = row["walls"][i], row["cpus"][i]
        rate = row["audio_s"] / best
        ref = ref or rate
        label = f"{row['workers']}" if row["workers"] else f"0 ({row['threads']} thr)"
        print(f"{label:>12} {row['start_s']:>10.1f} {best:>9.2f} {row['audio_s']:>10.1f} {rate:>17.1f} "
              f"{rate / ref:>8.2f}x {cpu:>8.2f} {cpu / best:>11.2f}   {', '.join(f'{w:.2f}' for w in row['walls'])}")
    print("start: worker start-up and warm-up, untimed; the first process setting also starts the fork server")
    print("CPU / wall: cores the analyses kept busy (at most the worker count; less when the machine is shared)")
    if len({tuple(r["keys"]) for r in rows}) != 1:
        print("WARNING: the settings gave different keys")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":  # worker processes re-import this script as __mp_main__: run nothing then
    main()
