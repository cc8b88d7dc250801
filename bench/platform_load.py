"""Gateway load and upload-to-indexed latency through the whole local stack, on loopback.

Starts the local stack (nats-server, analyzer, recommender, gateway and generator; no model
server: nothing here generates), indexes a seed set, then

1. **gateway load**: GetTrack, SimilarTracks and UploadTrack from N concurrent clients
   (N = 1, 8, 32 side by side; N = 1 is the baseline): p50 / p95 / p99 latency in ms,
   requests per second, errors, and the peak resident memory of every process of the stack
   during the run (VmRSS sampled every 50 ms from /proc);
2. **end to end**: the time from the start of an upload of a 3-minute track to its state
   INDEXED (GetTrack polled every 20 ms), p50 / p95 at 1 and 8 concurrent uploads, beside the
   target (p95 < 3 s at 1 on this machine's CPU).

Usage::

    python bench/platform_load.py            # the full run (about 4 minutes on 2 cores)
    python bench/platform_load.py --quick    # fewer requests (about 1.5 minutes)

Percentiles: numpy's linear interpolation between order statistics.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from musicaas.client import GatewayClient
from musicaas.common.v1 import common_pb2
from musicaas.render import encode_wav
from musicaas.runtime.procs import PeakMemory
from musicaas_cli.stack import LocalStack, StackPorts

SR = 22050


def tone_track(seconds: float, seed: int) -> bytes:
    """A WAV of ``seconds`` of chords on a 2-second grid (a different progression per seed), 22050 Hz mono."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    y = np.zeros(n, dtype=np.float32)
    step = 2 * SR
    for start in range(0, n, step):
        root = 48 + int(rng.integers(0, 12))
        seg = slice(start, min(n, start + step))
        for interval in (0, 4, 7):
            f = 440.0 * 2 ** ((root + interval - 69) / 12)
            y[seg] += 0.15 * np.sin(2 * np.pi * f * t[seg]) * np.exp(-1.5 * (t[seg] - t[start]))
    y += 0.01 * rng.standard_normal(n).astype(np.float32)
    return encode_wav(np.clip(y, -1, 1), sample_rate_hz=SR)


def percentiles_ms(latencies_s: list[float]) -> tuple[float, float, float]:
    if not latencies_s:
        return (float("nan"),) * 3
    p = np.percentile(np.asarray(latencies_s) * 1000.0, [50, 95, 99])
    return float(p[0]), float(p[1]), float(p[2])


def run_load(stack: LocalStack, *, op: str, clients: int, requests: int, track_ids: list[str],
             uploads: list[bytes]) -> dict:
    """``requests`` calls of ``op`` spread over ``clients`` threads, each with its own channel."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        with GatewayClient(stack.gateway_addr, stack.api_key) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    if op == "GetTrack":
                        client.get_track(track_ids[i % len(track_ids)])
                    elif op == "SimilarTracks":
                        client.similar(track_ids[i % len(track_ids)], limit=10)
                    else:
                        client.upload_bytes(uploads[i % len(uploads)], filename=f"load-{i}.wav")
                    dt = time.perf_counter() - t0
                    with lock:
                        latencies.append(dt)
                except grpc.RpcError as exc:
                    with lock:
                        errors[exc.code().name] = errors.get(exc.code().name, 0) + 1

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    wall = time.perf_counter() - t0
    p50, p95, p99 = percentiles_ms(latencies)
    return {"op": op, "clients": clients, "n": len(latencies), "rps": len(latencies) / wall,
            "p50": p50, "p95": p95, "p99": p99, "errors": sum(errors.values()), "error_codes": errors}


def upload_to_indexed(stack: LocalStack, tracks: list[bytes], *, concurrency: int) -> list[float]:
    """Seconds from the start of each upload to its state INDEXED."""

    def one(data: bytes) -> float:
        with GatewayClient(stack.gateway_addr, stack.api_key) as client:
            t0 = time.perf_counter()
            track_id = client.upload_bytes(data, filename="e2e.wav").track_id
            while True:
                track = client.get_track(track_id)
                if track.state == common_pb2.TRACK_STATE_INDEXED:
                    return time.perf_counter() - t0
                if track.state == common_pb2.TRACK_STATE_FAILED:
                    raise RuntimeError(f"{track_id} failed: {track.error}")
                if time.perf_counter() - t0 > 300:
                    raise TimeoutError(f"{track_id} not indexed after 300 s")
                time.sleep(0.02)

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, tracks))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and tracks")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated client counts (first = baseline)")
    parser.add_argument("--skip-load", action="store_true", help="only the end-to-end latency")
    args = parser.parse_args(argv)
    client_counts = [int(x) for x in args.clients.split(",")]
    reads = 150 if args.quick else 600
    writes = 24 if args.quick else 96
    e2e_1, e2e_8 = (4, 8) if args.quick else (8, 16)

    with tempfile.TemporaryDirectory(prefix="musicaas-bench-") as tmp:
        stack = LocalStack(Path(tmp), ports=StackPorts.free(), model_server=False)
        print("starting the stack (no model server) ...", flush=True)
        t0 = time.perf_counter()
        stack.start()
        print(f"  serving after {time.perf_counter() - t0:.1f} s", flush=True)
        try:
            with GatewayClient(stack.gateway_addr, stack.api_key) as client:
                seed_ids = [client.upload_bytes(tone_track(8.0, s), filename=f"seed-{s}.wav").track_id for s in range(12)]
                for tid in seed_ids:
                    track = client.wait_track(tid, timeout_s=120)
                    assert track.state == common_pb2.TRACK_STATE_INDEXED, track.error
            pids = {name: proc.pid for name, proc in stack.procs.items()}
            rows, peaks = [], {}
            next_seed = 1000
            for clients in ([] if args.skip_load else client_counts):
                uploads = [tone_track(5.0, next_seed + i) for i in range(writes)]  # new bytes: real uploads
                next_seed += writes
                with PeakMemory(every_s=0.05, with_hwm=False, **pids) as sampler:
                    for op, n in (("GetTrack", reads), ("SimilarTracks", reads), ("UploadTrack", writes)):
                        rows.append(run_load(stack, op=op, clients=clients, requests=n, track_ids=seed_ids,
                                             uploads=uploads))
                peaks[clients] = {name: kib / 1024 for name, kib in sampler.peak_kib.items()}
                print(f"  load at N={clients} done", flush=True)

            if args.skip_load:
                rows, client_counts = [], []
            print("\ngateway load (N concurrent clients; N = %d is the baseline)" % (client_counts or [1])[0])
            print(f"{'op':<14}{'N':>4}{'req':>6}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
            for r in rows:
                print(f"{r['op']:<14}{r['clients']:>4}{r['n']:>6}{r['rps']:>9.1f}{r['p50']:>9.1f}{r['p95']:>9.1f}"
                      f"{r['p99']:>9.1f}{r['errors']:>8}" + (f"  {r['error_codes']}" if r["errors"] else ""))
            print("\npeak RSS of each process during the load, MiB")
            names = list(pids)
            print(f"{'N':>4}" + "".join(f"{n:>13}" for n in names))
            for clients in client_counts:
                print(f"{clients:>4}" + "".join(f"{peaks[clients][n]:>13.0f}" for n in names))

            print("\nend to end: upload of a 3-minute track -> state INDEXED", flush=True)
            results = {}
            for concurrency, count in ((1, e2e_1), (8, e2e_8)):
                tracks = [tone_track(180.0, next_seed + i) for i in range(count)]
                next_seed += count
                lat = upload_to_indexed(stack, tracks, concurrency=concurrency)
                results[concurrency] = lat
            print(f"{'concurrent':>10}{'tracks':>8}{'p50 s':>9}{'p95 s':>9}{'mean s':>9}   target")
            for concurrency, lat in results.items():
                p50, p95 = (float(x) for x in np.percentile(lat, [50, 95]))
                target = "p95 < 3 s " + ("met" if p95 < 3.0 else "MISSED") if concurrency == 1 else ""
                print(f"{concurrency:>10}{len(lat):>8}{p50:>9.2f}{p95:>9.2f}{statistics.mean(lat):>9.2f}   {target}")
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
