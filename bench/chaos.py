"""Chaos run: uploads and generation jobs while processes of the local stack are SIGKILLed.

1. **Uploads.** ``--uploads`` distinct short WAVs (default 500) are uploaded from 4 client
   threads, while the analyzer, the recommender and nats-server are each killed with SIGKILL
   at random moments (one kill every ``--kill-every`` seconds on average, the victim drawn at
   random) and restarted by the stack's own supervisor (``musicaas up``'s). A client retries
   an upload that failed with UNAVAILABLE or DEADLINE_EXCEEDED (NATS was down); an upload
   counts as *accepted* once the gateway answered it with a track id.
2. **Generation jobs.** ``--jobs`` asynchronous generations (default 20) are submitted while
   the model server (Triton) is killed twice.

At the end (after at most ``--settle`` seconds of quiet) it prints, beside what must hold:
accepted uploads, tracks indexed, failed, stuck (neither), vector points in the index (must
equal the distinct tracks indexed: no duplicate point), jobs completed / failed / stuck, and
the day's usage records (tracks stored, audio seconds analysed, generations: each piece of
work counted once, however often its event was redelivered). The run assumes it does not
cross 00:00 UTC (usage is per UTC day).

Usage::

    python bench/chaos.py                     # 500 uploads at 5/s, 20 jobs (about 4 minutes on 2 cores)
    python bench/chaos.py --uploads 150 --jobs 6 --kill-every 4
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np

from musicaas.client import GatewayClient
from musicaas.common.v1 import common_pb2
from musicaas.generator.v1 import generator_pb2
from musicaas.render import encode_wav
from musicaas_cli.stack import LocalStack, RestartPolicy, StackPorts

SR = 22050
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def short_wav(i: int) -> bytes:
    """2 s of a chord that differs per ``i`` (distinct bytes: a distinct track)."""
    rng = np.random.default_rng(i)
    t = np.arange(2 * SR) / SR
    root = 45 + i % 24
    y = sum(0.15 * np.sin(2 * np.pi * 440.0 * 2 ** ((root + k - 69) / 12) * t) for k in (0, 4, 7))
    y = y + 0.01 * rng.standard_normal(len(t))
    return encode_wav(np.asarray(y, dtype=np.float32), sample_rate_hz=SR)


def metric(url: str, name: str) -> float | None:
    """The value of an unlabelled Prometheus sample ``name`` at ``url``, or None."""
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


class Chaos(threading.Thread):
    """Kills a random victim with SIGKILL every ``every_s`` seconds on average, until stopped."""

    def __init__(self, stack: LocalStack, victims: list[str], every_s: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.stack, self.victims, self.every_s = stack, victims, every_s
        self.rng = random.Random(seed)
        self.kills: dict[str, int] = {v: 0 for v in victims}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.rng.uniform(0.5, 1.5) * self.every_s):
            victim = self.rng.choice(self.victims)
            proc = self.stack.procs.get(victim)
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.kill(proc.pid, signal.SIGKILL)
                self.kills[victim] += 1
            except ProcessLookupError:
                pass


def upload_all(stack: LocalStack, indices: list[int], accepted: dict[str, int], lock: threading.Lock,
               retries: list[int], pause_s: float) -> None:
    with GatewayClient(stack.gateway_addr, stack.api_key, timeout_s=30) as client:
        for i in indices:
            time.sleep(pause_s)
            data = short_wav(i)
            for attempt in range(200):
                try:
                    resp = client.upload_bytes(data, filename=f"chaos-{i}.wav")
                    with lock:
                        accepted[resp.track_id] = i
                    break
                except grpc.RpcError as exc:
                    if exc.code() not in RETRYABLE:
                        raise
                    with lock:
                        retries[0] += 1
                    time.sleep(min(2.0, 0.1 * (attempt + 1)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uploads", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--rate", type=float, default=5.0, help="uploads per second (so that kills land among them)")
    parser.add_argument("--kill-every", type=float, default=8.0, help="mean seconds between kills")
    parser.add_argument("--settle", type=float, default=240.0, help="seconds to wait for the last tracks")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="musicaas-chaos-") as tmp:
        policy = RestartPolicy(max_restarts=1000, window_s=60.0, backoff_max_s=2.0)
        stack = LocalStack(Path(tmp), ports=StackPorts.free(), tiny_model=True, policy=policy)
        print("starting the stack (tiny model) ...", flush=True)
        stack.start()
        stop_supervising = threading.Event()
        result: dict = {}

        def scenario() -> None:
            try:
                result.update(run_scenario(stack, args))
            finally:
                stop_supervising.set()

        worker = threading.Thread(target=scenario, daemon=True)
        worker.start()
        try:
            stack.supervise(stop_supervising, report=lambda msg: print(f"  supervisor: {msg}", flush=True))
            worker.join()
        finally:
            stack.stop()
    if not result:
        return 1
    return 0 if result["ok"] else 1


def run_scenario(stack: LocalStack, args) -> dict:
    t0 = time.monotonic()
    accepted: dict[str, int] = {}
    lock, retries = threading.Lock(), [0]
    chaos = Chaos(stack, ["analyzer", "recommender", "nats"], args.kill_every, args.seed)
    chaos.start()
    indices = list(range(args.uploads))
    threads = [threading.Thread(target=upload_all, args=(stack, indices[k::4], accepted, lock, retries, 4 / args.rate))
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    chaos.stop.set()
    chaos.join()
    upload_s = time.monotonic() - t0
    print(f"  {len(accepted)} uploads accepted in {upload_s:.0f} s ({retries[0]} retried calls); "
          f"kills: {chaos.kills}", flush=True)

    # generation jobs while Triton is killed twice
    job_ids, job_retries = [], 0
    with GatewayClient(stack.gateway_addr, stack.api_key, timeout_s=30) as client:
        for j in range(args.jobs):
            for attempt in range(100):
                try:
                    job_ids.append(client.submit_generation(key="C major", num_bars=2, seed=100 + j).generation_id)
                    break
                except grpc.RpcError as exc:
                    if exc.code() not in RETRYABLE:
                        raise
                    job_retries += 1
                    time.sleep(0.5)
            if j in (args.jobs // 4, args.jobs // 2):
                triton = stack.procs.get("triton")
                if triton is not None and triton.poll() is None:
                    os.kill(triton.pid, signal.SIGKILL)
                    chaos.kills["triton"] = chaos.kills.get("triton", 0) + 1

        # settle: every accepted track indexed or failed, every job done
        deadline = time.monotonic() + args.settle
        states: dict[str, int] = {}
        jobs: dict[str, int] = {}
        while time.monotonic() < deadline:
            try:
                states = {tid: client.get_track(tid).state for tid in accepted}
                jobs = {g: client.get_generation(g).state for g in job_ids}
            except grpc.RpcError:
                time.sleep(1.0)
                continue
            tracks_done = all(s in (common_pb2.TRACK_STATE_INDEXED, common_pb2.TRACK_STATE_FAILED) for s in states.values())
            jobs_done = all(s in (generator_pb2.GENERATION_STATE_COMPLETED, generator_pb2.GENERATION_STATE_FAILED)
                            for s in jobs.values())
            if tracks_done and jobs_done:
                break
            time.sleep(1.0)
        # the generated pieces are tracks too: wait for them to be indexed before counting points
        generated = []
        for g in job_ids:
            job = client.get_generation(g)
            generated += [p.track_id for p in job.pieces]
        while time.monotonic() < deadline and not all(
                client.get_track(t).state in (common_pb2.TRACK_STATE_INDEXED, common_pb2.TRACK_STATE_FAILED)
                for t in generated):
            time.sleep(1.0)
        time.sleep(3.0)  # the index-size gauge follows the last upsert
        # usage is metered once per piece of work: as many records as tracks, analyses and jobs
        durations = sum(client.get_track(t).analysis.duration_s for t in [*accepted, *set(generated)])
        today = client.usage().days[0]
    points = metric(stack.metrics_url("recommender"), "musicaas_recommender_index_points")

    indexed = sum(s == common_pb2.TRACK_STATE_INDEXED for s in states.values())
    failed = sum(s == common_pb2.TRACK_STATE_FAILED for s in states.values())
    stuck = len(states) - indexed - failed
    completed = sum(s == generator_pb2.GENERATION_STATE_COMPLETED for s in jobs.values())
    jobs_failed = sum(s == generator_pb2.GENERATION_STATE_FAILED for s in jobs.values())
    jobs_stuck = len(jobs) - completed - jobs_failed
    distinct_indexed = indexed + len(set(generated))
    rows = [
        ("uploads accepted", len(accepted), f"= {args.uploads} distinct files"),
        ("tracks indexed", indexed, "= accepted"),
        ("tracks failed", failed, "0 (every file is valid)"),
        ("tracks stuck", stuck, "0"),
        ("vector points", points, f"= {distinct_indexed} (uploads + generated pieces; no duplicate)"),
        ("jobs completed", completed, f"= {len(job_ids)} submitted"),
        ("jobs failed", jobs_failed, "0"),
        ("jobs stuck", jobs_stuck, "0"),
        ("usage: tracks", today.tracks_stored, f"= {distinct_indexed} (one record per stored track)"),
        ("usage: audio s", round(today.audio_seconds, 1), f"= {durations:.1f} (the tracks' durations, each once)"),
        ("usage: jobs", today.generations, f"= {completed} completed"),
    ]
    print(f"\nchaos run: kills {chaos.kills}, {retries[0]} upload and {job_retries} submit calls retried, "
          f"{time.monotonic() - t0:.0f} s in all")
    print(f"{'measure':<18}{'count':>8}   must be")
    for name, value, want in rows:
        print(f"{name:<18}{value if value is not None else 'n/a':>8}   {want}")
    ok = (len(accepted) == args.uploads and indexed == len(accepted) and stuck == 0 and failed == 0
          and jobs_stuck == 0 and completed == len(job_ids) and points == distinct_indexed
          and today.tracks_stored == distinct_indexed and abs(today.audio_seconds - durations) < 0.5
          and today.generations == completed)
    print("result: " + ("every accepted upload indexed once, every job done" if ok else "NOT as it must be"))
    return {"ok": ok}


if __name__ == "__main__":
    sys.exit(main())
