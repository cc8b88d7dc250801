"""Speed benchmark of the symbolic generator: Triton (dynamic batching) vs in-process sampling.

One command, figures side by side::

    python bench/generator_speed.py [--checkpoint PATH | --tiny] [--quick] [--out result.json]

For 8-bar and 16-bar requests at 1, 4 and 16 concurrent clients:

* **Triton**: a real Triton (PyTriton) started with
  :func:`musicaas_model.serve.start_triton` on free loopback ports, called by ``c``
  concurrent :class:`~musicaas_generator.triton_client.TritonGenerator` clients, each
  sending ``--requests`` requests one after the other (different seeds and keys); the
  dynamic batcher groups concurrent requests into one batched, KV-cached sampling loop.
* **in-process**: the same model, checks and sampler (:meth:`musicaas_model.serve.SymbolicModel.sample`,
  which the Triton path reaches through ``infer``) called directly with the same ``c``
  requests as one batch, ``--requests`` times.

Reported: generated tokens per second (all clients together), p50/p95 latency of one
request, and the throughput gain at 16 clients over 1 client (target >= 3x); Triton's
latency at 1 client relative to in-process (target within 20%). Then the KV cache: the
mean per-token time of the last quarter of a long sequence (filling the context window,
no re-encoding) over that of the first quarter (target <= 1.5x).

Timings are wall-clock on this machine, which other jobs may share; ``--quick`` sends
fewer requests (about a minute with the shipped model).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pct(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    i = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[i]


def _prompts(tok, bars, n):
    from musicaas.keys import ALL_KEYS
    from musicaas_generator import tokens

    return [tokens.build_prompt(ALL_KEYS[(7 * i) % 24], bars, tokenizer=tok) for i in range(n)]


async def _triton_round(url, tok, bars, clients, requests_each):
    from musicaas_generator.contract import SampleRequest
    from musicaas_generator.triton_client import TritonGenerator

    latencies, total_tokens = [], 0
    prompts = _prompts(tok, bars, clients * requests_each)

    async def client(c, g):
        nonlocal total_tokens
        for r in range(requests_each):
            i = c * requests_each + r
            t = time.perf_counter()
            out = await g.generate(SampleRequest(prompts[i], temperature=1.0, seed=100 + i, num_bars=bars))
            latencies.append(time.perf_counter() - t)
            total_tokens += len(out)

    async with TritonGenerator(url, timeout_s=600) as g:
        await g.wait_ready(timeout_s=60)
        started = time.perf_counter()
        await asyncio.gather(*[client(c, g) for c in range(clients)])
        wall = time.perf_counter() - started
    return {"tokens_per_s": total_tokens / wall, "p50_s": _pct(latencies, 0.5), "p95_s": _pct(latencies, 0.95),
            "requests": len(latencies), "tokens": total_tokens, "wall_s": wall}


def _inprocess_round(server, tok, bars, clients, requests_each):
    from musicaas_generator.contract import SampleRequest

    latencies, total_tokens = [], 0
    prompts = _prompts(tok, bars, clients * requests_each)
    started = time.perf_counter()
    for r in range(requests_each):
        reqs = [SampleRequest(prompts[c * requests_each + r], temperature=1.0, seed=100 + c * requests_each + r,
                              num_bars=bars)
                for c in range(clients)]
        t = time.perf_counter()
        outs = server.sample(reqs)
        dt = time.perf_counter() - t
        latencies += [dt] * clients
        total_tokens += sum(len(o) for o in outs)
    wall = time.perf_counter() - started
    return {"tokens_per_s": total_tokens / wall, "p50_s": _pct(latencies, 0.5), "p95_s": _pct(latencies, 0.95),
            "requests": len(latencies), "tokens": total_tokens, "wall_s": wall}


def kv_cache_profile(server, tok, repeats: int = 3) -> dict:
    """Per-token times of one long sequence (no re-encoding): last quarter / first quarter."""
    from musicaas_model.model import GenerationRequest, generate

    prompt = _prompts(tok, 32, 1)[0]
    n = server.model.cfg.block_size - len(prompt) - 1
    ratios, firsts, lasts = [], [], []
    for rep in range(repeats):
        times: list[float] = []
        generate(server.model, [GenerationRequest(prompt, 1.0, 7 + rep, 32, n)], server.special, server.grammar,
                 step_times=times)
        q = max(1, len(times) // 4)
        first, last = statistics.mean(times[1 : q + 1]), statistics.mean(times[-q:])  # skip the prefill
        firsts.append(first)
        lasts.append(last)
        ratios.append(last / first)
    return {"tokens": n, "first_quarter_ms": 1000 * statistics.median(firsts),
            "last_quarter_ms": 1000 * statistics.median(lasts), "ratio": statistics.median(ratios)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--checkpoint", default=None, help="model.pt (default: the shipped checkpoint)")
    g.add_argument("--tiny", action="store_true", help="the random 1-layer model (a smoke test of the benchmark)")
    p.add_argument("--quick", action="store_true", help="fewer requests per client")
    p.add_argument("--requests", type=int, default=None, help="requests per client (default 3, --quick 1)")
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--bars", default="8,16")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the model (both paths)")
    p.add_argument("--max-batch-size", type=int, default=16, help="Triton's largest dynamic batch")
    p.add_argument("--max-queue-delay-us", type=int, default=20000)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    requests_each = args.requests or (1 if args.quick else 3)
    clients = [int(c) for c in args.clients.split(",")]
    bar_counts = [int(b) for b in args.bars.split(",")]

    import torch

    from musicaas.runtime.procs import free_port
    from musicaas_generator import tokens
    from musicaas_model import data
    from musicaas_model.serve import DEFAULT_CHECKPOINT, start_triton

    torch.set_num_threads(args.threads)
    checkpoint = None if args.tiny else (args.checkpoint or str(DEFAULT_CHECKPOINT))
    tok = data.build_tokenizer() if args.tiny else tokens.load_tokenizer(Path(checkpoint).with_name("tokenizer.json"))
    handle = start_triton(checkpoint, free_port(), free_port(), free_port(), tiny=args.tiny, threads=args.threads,
                          max_batch_size=args.max_batch_size, max_queue_delay_us=args.max_queue_delay_us)
    result = {"checkpoint": checkpoint or "tiny", "requests_per_client": requests_each, "rows": []}
    try:
        server = handle.model  # the very model object Triton serves: same weights, same sampler
        for bars in bar_counts:
            for c in clients:
                tr = asyncio.run(_triton_round(handle.grpc_url, tok, bars, c, requests_each))
                ip = _inprocess_round(server, tok, bars, c, requests_each)
                result["rows"].append({"bars": bars, "clients": c, "triton": tr, "in_process": ip})
                print(f"[{bars} bars, {c} clients: triton {tr['tokens_per_s']:.0f} tok/s, "
                      f"in-process {ip['tokens_per_s']:.0f} tok/s]", file=sys.stderr)
        result["kv_cache"] = kv_cache_profile(server, tok, repeats=1 if args.quick else 3)
    finally:
        handle.stop()

    print()
    print(f"generator speed: {result['checkpoint']} ({requests_each} request(s) per client, "
          f"{args.threads} torch threads, Triton max batch {args.max_batch_size})")
    print(f"{'bars':>4s} {'clients':>7s} | {'Triton tok/s':>12s} {'p50 s':>7s} {'p95 s':>7s} | "
          f"{'in-proc tok/s':>13s} {'p50 s':>7s} {'p95 s':>7s}")
    for r in result["rows"]:
        t, i = r["triton"], r["in_process"]
        print(f"{r['bars']:4d} {r['clients']:7d} | {t['tokens_per_s']:12.0f} {t['p50_s']:7.2f} {t['p95_s']:7.2f} | "
              f"{i['tokens_per_s']:13.0f} {i['p50_s']:7.2f} {i['p95_s']:7.2f}")
    summary = {}
    for bars in bar_counts:
        rows = {r["clients"]: r for r in result["rows"] if r["bars"] == bars}
        if 1 in rows and max(rows) > 1:
            hi = max(rows)
            gain = rows[hi]["triton"]["tokens_per_s"] / rows[1]["triton"]["tokens_per_s"]
            overhead = rows[1]["triton"]["p50_s"] / rows[1]["in_process"]["p50_s"] - 1
            summary[bars] = {"throughput_gain": gain, "clients": hi, "triton_latency_overhead_1_client": overhead}
            print(f"{bars:2d} bars: Triton throughput at {hi} clients / 1 client = {gain:.1f}x (target >= 3x: "
                  f"{'ok' if gain >= 3 else 'MISSED'}); Triton p50 at 1 client vs in-process = {overhead:+.0%} "
                  f"(target within 20%: {'ok' if abs(overhead) <= 0.2 else 'MISSED'})")
    kv = result["kv_cache"]
    print(f"KV cache: {kv['tokens']} tokens, per-token {kv['first_quarter_ms']:.1f} ms (first quarter) -> "
          f"{kv['last_quarter_ms']:.1f} ms (last quarter) = {kv['ratio']:.2f}x (target <= 1.5x: "
          f"{'ok' if kv['ratio'] <= 1.5 else 'MISSED'})")
    result["summary"] = summary
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
