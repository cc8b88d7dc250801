"""The ``musicaas`` command line.

::

    musicaas up [--state-dir DIR]                       the stack in the foreground
    musicaas demo [--out DIR] [--audio DIR]             the main job on real music
    musicaas analyze FILE... [--json]                   upload, wait for analysis
    musicaas generate --key "D minor" --tempo 90 --bars 8 [--seed N] [--temperature T] --out DIR [--json]
    musicaas similar TRACK_ID [--limit K] [--json]

The gateway address comes from ``MUSICAAS_GATEWAY`` (default ``127.0.0.1:50051``), the API
key from ``MUSICAAS_API_KEY``, else the dev key in the state folder.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from pathlib import Path

import grpc

from musicaas.common.v1 import common_pb2
from musicaas.runtime.protoconv import mode_name, source_name, state_name

DEFAULT_GATEWAY = "127.0.0.1:50051"


def gateway_addr() -> str:
    return os.environ.get("MUSICAAS_GATEWAY", DEFAULT_GATEWAY)


def resolve_api_key(state_dir: Path) -> str:
    key = os.environ.get("MUSICAAS_API_KEY")
    if key:
        return key
    path = state_dir / "api_key"
    if path.exists():
        return path.read_text().strip()
    raise SystemExit(f"no API key: set MUSICAAS_API_KEY or start the stack (musicaas up) to create {path}")


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def analysis_record(track: common_pb2.Track) -> dict:
    """The CLI's JSON fields for an analysed track."""
    a = track.analysis
    return {
        "track_id": track.track_id,
        "key": a.key or None,
        "mode": mode_name(a.mode),
        "key_confidence": round(a.key_confidence, 4),
        "tempo_bpm": round(a.tempo_bpm, 2),
        "beats_s": [round(b, 3) for b in a.beats_s],
        "duration_s": round(a.duration_s, 3),
        "loudness_lufs": _finite(round(a.loudness_lufs, 2)),
    }


def rpc_error_text(exc: grpc.RpcError) -> str:
    return f"{exc.code().name}: {exc.details()}"


def _client(args):
    from musicaas.client import GatewayClient

    return GatewayClient(gateway_addr(), resolve_api_key(Path(args.state_dir)))


def cmd_up(args) -> int:
    from rich.console import Console

    from musicaas.stack import LocalStack, StackPorts

    console = Console(stderr=True)
    ports = StackPorts.from_base(args.port_base) if args.port_base else StackPorts()
    stack = LocalStack(Path(args.state_dir), ports=ports)
    with console.status("starting musicaas") as status:
        stack.start(lambda step: status.update(f"starting {step}"))
    print(f"musicaas is SERVING: gateway {stack.gateway_addr} (API key in {Path(args.state_dir) / 'api_key'})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            dead = [n for n, ok in stack.alive().items() if not ok]
            if dead:
                console.print(f"[red]stopped unexpectedly: {', '.join(dead)} (see {Path(args.state_dir) / 'logs'})")
                break
    finally:
        console.print("stopping musicaas…")
        stack.stop()
    return 0


def cmd_analyze(args) -> int:
    failures = 0
    with _client(args) as client:
        for path in args.files:
            record: dict = {"path": str(path)}
            try:
                resp = client.upload_file(Path(path))
                track = client.wait_track(resp.track_id, timeout_s=args.timeout)
                if track.state == common_pb2.TRACK_STATE_FAILED:
                    record["track_id"] = track.track_id
                    record["error"] = track.error
                else:
                    record.update(analysis_record(track))
            except grpc.RpcError as exc:
                record["error"] = rpc_error_text(exc)
            except (OSError, TimeoutError) as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
            if "error" in record:
                failures += 1
            if args.json:
                print(json.dumps(record), flush=True)
            elif "error" in record:
                print(f"{path}: error: {record['error']}", flush=True)
            else:
                print(
                    f"{path}: {record['track_id']} key {record['key']} {record['mode']} "
                    f"(confidence {record['key_confidence']:.2f}), {record['tempo_bpm']:.1f} BPM, "
                    f"{record['duration_s']:.1f} s, {record['loudness_lufs']} LUFS",
                    flush=True,
                )
    return 1 if failures else 0


def cmd_generate(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with _client(args) as client:
        try:
            resp = client.generate(
                key=args.key, tempo_bpm=args.tempo, num_bars=args.bars, temperature=args.temperature, seed=args.seed
            )
        except grpc.RpcError as exc:
            print(json.dumps({"error": rpc_error_text(exc)}) if args.json else f"error: {rpc_error_text(exc)}")
            return 1
        stem = f"{resp.generation_id}"
        midi_path, audio_path = out / f"{stem}.mid", out / f"{stem}.wav"
        midi_path.write_bytes(resp.midi)
        audio_path.write_bytes(resp.audio_wav)
        track = client.wait_track(resp.track_id, timeout_s=args.timeout)
    a = track.analysis
    record = {
        "generation_id": resp.generation_id,
        "track_id": resp.track_id,
        "midi_path": str(midi_path),
        "audio_path": str(audio_path),
        "requested_key": resp.params.key,
        "analyzed_key": a.key or None,
        "analyzed_mode": mode_name(a.mode),
        "seed": resp.params.seed,
        "duration_s": round(resp.duration_s, 3),
    }
    if args.json:
        print(json.dumps(record))
    else:
        print(
            f"{midi_path} and {audio_path}: requested {record['requested_key']}, analysed "
            f"{record['analyzed_key']} {record['analyzed_mode']} (seed {record['seed']})"
        )
    return 0


def cmd_similar(args) -> int:
    with _client(args) as client:
        try:
            tracks = client.similar(args.track_id, limit=args.limit)
        except grpc.RpcError as exc:
            print(json.dumps({"error": rpc_error_text(exc)}) if args.json else f"error: {rpc_error_text(exc)}")
            return 1
    rows = [
        {
            "track_id": t.track_id,
            "score": round(t.score, 4),
            "title": t.title,
            "key": t.key or None,
            "mode": mode_name(t.mode),
            "tempo_bpm": round(t.tempo_bpm, 2),
            "source": source_name(t.source),
            "duration_s": round(t.duration_s, 3),
            "loudness_lufs": _finite(round(t.loudness_lufs, 2)),
        }
        for t in tracks
    ]
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['score']:.3f}  {r['track_id']}  {r['key']} {r['mode']}  {r['tempo_bpm']:.0f} BPM  {r['title']}")
    return 0


def cmd_demo(args) -> int:
    from musicaas.demo import run_demo

    return run_demo(
        out=Path(args.out), audio_dir=Path(args.audio) if args.audio else None, state_dir=Path(args.state_dir),
        num_chorales=args.chorales, seed=args.seed,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musicaas", description="Music AI as a service.")
    parser.add_argument(
        "--state-dir", default=os.environ.get("MUSICAAS_STATE_DIR", ".musicaas"),
        help="state folder: JetStream store, Qdrant shard, logs, dev API key (default ./.musicaas)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole stack in the foreground")
    up.add_argument(
        "--port-base", type=int, default=0,
        help="use 8 consecutive loopback ports from here (default: gateway 50051, analyzer 50052, "
        "recommender 50053, generator 50054, NATS 4222, Triton 8001/8000/8002)",
    )
    up.set_defaults(fn=cmd_up)

    demo = sub.add_parser("demo", help="run the main job on Bach chorales (or your audio)")
    demo.add_argument("--out", default="demo-out", help="output folder (MIDI, WAV, report.json)")
    demo.add_argument("--audio", default=None, help="analyse your own audio files from this folder instead of chorales")
    demo.add_argument("--chorales", type=int, default=16, help="number of chorales to render (default 16)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the generated pieces")
    demo.set_defaults(fn=cmd_demo)

    analyze = sub.add_parser("analyze", help="upload audio files and print their analysis")
    analyze.add_argument("files", nargs="+")
    analyze.add_argument("--json", action="store_true", help="one JSON object per line")
    analyze.add_argument("--timeout", type=float, default=300.0, help="seconds to wait per file")
    analyze.set_defaults(fn=cmd_analyze)

    gen = sub.add_parser("generate", help="generate a piece (MIDI + WAV)")
    gen.add_argument("--key", required=True, help='e.g. "D minor"')
    gen.add_argument("--tempo", type=float, default=100.0, help="tempo in BPM (20-300)")
    gen.add_argument("--bars", type=int, default=8, help="length in bars (1-32)")
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--json", action="store_true")
    gen.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the analysis")
    gen.set_defaults(fn=cmd_generate)

    sim = sub.add_parser("similar", help="tracks similar to a track")
    sim.add_argument("track_id")
    sim.add_argument("--limit", type=int, default=10)
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(fn=cmd_similar)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
