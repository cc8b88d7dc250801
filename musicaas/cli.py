"""The ``musicaas`` command line.

::

    musicaas up [--state-dir DIR]                       the stack in the foreground
    musicaas demo [--out DIR] [--audio DIR]             the main job on real music
    musicaas analyze FILE... [--json] [--jobs N] [--plot DIR]   upload, wait for analysis
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
from musicaas.runtime.protoconv import mode_name, source_name

DEFAULT_GATEWAY = "127.0.0.1:50051"


def gateway_addr() -> str:
    """The gateway address: ``$MUSICAAS_GATEWAY`` or 127.0.0.1:50051."""
    return os.environ.get("MUSICAAS_GATEWAY", DEFAULT_GATEWAY)


def resolve_api_key(state_dir: Path) -> str:
    """The API key: ``$MUSICAAS_API_KEY``, else ``state_dir/api_key``; exits with a message when neither exists."""
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
    """The CLI's JSON fields for an analysed track.

    The first keys (``track_id`` to ``loudness_lufs``) are the original record; the rest
    mirror the newer ``TrackAnalysis`` fields (units in the key names; times in seconds,
    confidences, features and scores in [0, 1]). ``midi`` is null for audio input.
    """
    a = track.analysis

    def r4(x: float) -> float | None:
        return _finite(round(float(x), 4))

    def spans(items) -> list[dict]:
        return [{"start_s": r4(i.start_s), "duration_s": r4(i.duration_s), "confidence": r4(i.confidence)} for i in items]

    record = {
        "track_id": track.track_id,
        "key": a.key or None,
        "mode": mode_name(a.mode),
        "key_confidence": round(a.key_confidence, 4),
        "tempo_bpm": round(a.tempo_bpm, 2),
        "beats_s": [round(b, 3) for b in a.beats_s],
        "duration_s": round(a.duration_s, 3),
        "loudness_lufs": _finite(round(a.loudness_lufs, 2)),
    }
    f, d, s = a.features, a.descriptors, a.scores
    record.update(
        {
            "analyzer_version": a.analyzer_version,
            "is_silent": a.is_silent,
            "sample_rate_hz": a.sample_rate_hz,
            "mode_confidence": r4(a.mode_confidence),
            "tempo_confidence": r4(a.tempo_confidence),
            "tempo_candidates": [{"tempo_bpm": round(c.tempo_bpm, 2), "weight": r4(c.weight)} for c in a.tempo_candidates],
            "time_signature": a.time_signature or None,
            "time_signature_confidence": r4(a.time_signature_confidence),
            "features": {
                name: r4(getattr(f, name))
                for name in ("danceability", "energy", "valence", "acousticness", "instrumentalness", "speechiness", "liveness")
            },
            "scores": {
                name: r4(getattr(s, name)) for name in ("tonal_clarity", "rhythmic_stability", "dynamic_range", "repetition")
            },
            "descriptors": {
                "mfcc_mean": [r4(v) for v in d.mfcc_mean],
                "chroma_mean": [r4(v) for v in d.chroma_mean],
                "spectral_centroid_hz": r4(d.spectral_centroid_hz),
                "spectral_rolloff_hz": r4(d.spectral_rolloff_hz),
                "spectral_flux": r4(d.spectral_flux),
                "spectral_contrast_db": [r4(v) for v in d.spectral_contrast_db],
                "zero_crossing_rate_hz": r4(d.zero_crossing_rate_hz),
                "onset_rate_hz": r4(d.onset_rate_hz),
                "loudness_range_lu": r4(d.loudness_range_lu),
            },
            "bars": spans(a.bars),
            "beats": spans(a.beats),
            "tatums": spans(a.tatums),
            "sections": [
                {
                    "start_s": r4(x.start_s),
                    "duration_s": r4(x.duration_s),
                    "confidence": r4(x.confidence),
                    "loudness_lufs": r4(x.loudness_lufs),
                    "tempo_bpm": r4(x.tempo_bpm),
                    "tempo_confidence": r4(x.tempo_confidence),
                    "key": x.key or None,
                    "mode": mode_name(x.mode),
                    "key_confidence": r4(x.key_confidence),
                    "mode_confidence": r4(x.mode_confidence),
                    "time_signature": x.time_signature or None,
                    "time_signature_confidence": r4(x.time_signature_confidence),
                }
                for x in a.sections
            ],
            "segments": [
                {
                    "start_s": r4(x.start_s),
                    "duration_s": r4(x.duration_s),
                    "confidence": r4(x.confidence),
                    "loudness_start_db": r4(x.loudness_start_db),
                    "loudness_max_db": r4(x.loudness_max_db),
                    "loudness_max_time_s": r4(x.loudness_max_time_s),
                    "loudness_end_db": r4(x.loudness_end_db),
                    "pitches": [r4(v) for v in x.pitches],
                    "timbre": [r4(v) for v in x.timbre],
                }
                for x in a.segments
            ],
            "midi": None,
        }
    )
    if a.HasField("midi"):
        m = a.midi
        record["midi"] = {
            "note_count": m.note_count,
            "note_density_per_s": r4(m.note_density_per_s),
            "lowest_pitch_midi": m.lowest_pitch_midi,
            "highest_pitch_midi": m.highest_pitch_midi,
            "time_signature": f"{m.time_signature_numerator}/{m.time_signature_denominator}",
            "tempo_changes": m.tempo_changes,
            "track_count": m.track_count,
            "has_drums": m.has_drums,
            "key_signature": m.key_signature or None,
            "key_signature_mode": mode_name(m.key_signature_mode),
        }
    return record


def rpc_error_text(exc: grpc.RpcError) -> str:
    """``"<STATUS_NAME>: <details>"`` of a failed call (the CLI's ``error`` field)."""
    return f"{exc.code().name}: {exc.details()}"


def _client(args):
    from musicaas.client import GatewayClient

    return GatewayClient(gateway_addr(), resolve_api_key(Path(args.state_dir)))


def cmd_up(args) -> int:
    """``musicaas up``: run the stack until Ctrl-C or SIGTERM."""
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


def _analyze_plot_paths(files: list[str], plot_dir: Path) -> list[Path]:
    """One PNG per input, named after the file; repeated names get ``-2``, ``-3``, …"""
    used: set[str] = set()
    out = []
    for f in files:
        stem = Path(f).stem or "track"
        name, n = stem, 1
        while name in used:
            n += 1
            name = f"{stem}-{n}"
        used.add(name)
        out.append(plot_dir / f"{name}.png")
    return out


def _analyze_one(client, path: str, timeout_s: float, stop: threading.Event) -> tuple[dict, common_pb2.Track | None]:
    """Upload one file and wait until it is indexed or failed: (record without the analysis, track)."""
    import time

    from musicaas.client import DONE_STATES

    record: dict = {"path": path}
    try:
        resp = client.upload_file(Path(path))
        deadline = time.monotonic() + timeout_s
        while True:
            track = client.get_track(resp.track_id)
            if track.state in DONE_STATES:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"track {resp.track_id} still {common_pb2.TrackState.Name(track.state)} after {timeout_s:.0f} s"
                )
            if stop.wait(0.25):
                raise TimeoutError("interrupted")
        if track.state == common_pb2.TRACK_STATE_FAILED:
            record["track_id"] = track.track_id
            record["error"] = track.error
            return record, None
        return record, track
    except grpc.RpcError as exc:
        record["error"] = rpc_error_text(exc)
    except (OSError, TimeoutError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
    return record, None


def cmd_analyze(args) -> int:
    """Upload the files on ``--jobs`` threads, each waiting for its own analysis; print one
    result per file in input order as soon as it and those before it are done, then a summary
    (on stderr with ``--json``). A progress bar shows on stderr when it is a terminal. The exit
    status is 1 when a file was rejected or (with ``--plot``) a plot could not be drawn."""
    import concurrent.futures
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    files = [str(p) for p in args.files]
    plot_paths = None
    if args.plot:
        plot_dir = Path(args.plot)
        plot_dir.mkdir(parents=True, exist_ok=True)
        plot_paths = _analyze_plot_paths(files, plot_dir)
    errors = Console(stderr=True)
    summary_out = sys.stderr if args.json else sys.stdout
    records: list[dict | None] = [None] * len(files)
    next_out = ok = failed = plots_failed = 0
    audio_s = 0.0
    stop = threading.Event()
    started = time.monotonic()

    def emit(record: dict) -> None:
        if args.json:
            print(json.dumps(record), flush=True)
        elif "error" in record:
            print(f"{record['path']}: error: {record['error']}", flush=True)
        else:
            line = (
                f"{record['path']}: {record['track_id']} key {record['key']} {record['mode']} "
                f"(confidence {record['key_confidence']:.2f}), {record['tempo_bpm']:.1f} BPM, "
                f"{record['duration_s']:.1f} s, {record['loudness_lufs']} LUFS"
            )
            if "plot" in record:
                line += f", plot {record['plot']}"
            elif "plot_error" in record:
                line += f", plot failed: {record['plot_error']}"
            print(line, flush=True)

    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=errors, disable=not errors.is_terminal,
        # stdout lines go above the bar only when stdout is the terminal too
        redirect_stdout=sys.stdout.isatty(), redirect_stderr=False,
    )
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs), thread_name_prefix="analyze")
    try:
        with _client(args) as client, progress:
            task = progress.add_task("analysing", total=len(files))
            futures = {pool.submit(_analyze_one, client, f, args.timeout, stop): i for i, f in enumerate(files)}
            for future in concurrent.futures.as_completed(futures):
                i = futures[future]
                try:
                    record, track = future.result()
                except Exception as exc:  # noqa: BLE001 - an unexpected failure is this file's error
                    record, track = {"path": files[i], "error": f"{type(exc).__name__}: {exc}"}, None
                if track is not None:
                    record.update(analysis_record(track))
                    audio_s += track.analysis.duration_s
                    if plot_paths is not None:
                        from musicaas_analyzer.plots import plot_track

                        try:
                            plot_track(Path(files[i]).read_bytes(), track.analysis, path=plot_paths[i],
                                       title=Path(files[i]).name)
                            record["plot"] = str(plot_paths[i])
                        except Exception as exc:  # noqa: BLE001 - one bad plot must not end the batch
                            record["plot_error"] = f"{type(exc).__name__}: {exc}"
                            plots_failed += 1
                if "error" in record:
                    failed += 1
                else:
                    ok += 1
                records[i] = record
                progress.update(task, advance=1, description=f"analysing: {ok} ok, {failed} failed")
                while next_out < len(records) and records[next_out] is not None:
                    emit(records[next_out])
                    next_out += 1
    except KeyboardInterrupt:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        errors.print(f"interrupted after {ok + failed} of {len(files)} files")
        return 130
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
    wall_s = time.monotonic() - started
    print(
        f"{len(files)} file{'s' if len(files) != 1 else ''}: {ok} ok, {failed} failed"
        + (f" ({plots_failed} plot{'s' if plots_failed != 1 else ''} failed)" if plots_failed else "")
        + f"; {audio_s:.1f} s of audio in {wall_s:.1f} s wall time "
        f"({audio_s / max(wall_s, 1e-9):.1f} audio s per wall s)",
        file=summary_out, flush=True,
    )
    return 1 if failed or plots_failed else 0


def cmd_generate(args) -> int:
    """Generate one or more pieces (synchronously, or as an asynchronous job with ``--async``)."""
    from musicaas.generator.v1 import generator_pb2

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def fail(text: str) -> int:
        print(json.dumps({"error": text}) if args.json else f"error: {text}")
        return 1

    controls = dict(
        key=args.key, tempo_bpm=args.tempo, num_bars=args.bars, temperature=args.temperature, seed=args.seed,
        metre=args.metre, style=args.style, instrument=args.instrument, top_k=args.top_k, top_p=args.top_p,
        num_variations=args.variations, key_guidance=False if args.no_key_guidance else None,
    )
    for flag, name in ((args.primer, "primer_midi"), (args.melody, "melody_midi")):
        if flag is not None:
            try:
                controls[name] = Path(flag).read_bytes()
            except OSError as exc:
                return fail(f"cannot read {flag}: {exc.strerror or exc}")
    with _client(args) as client:
        try:
            if args.async_:
                submitted = client.submit_generation(**controls)
                generation_id = submitted.generation_id
                if args.json:
                    print(json.dumps({"generation_id": generation_id, "state": "queued"}), flush=True)
                else:
                    print(f"generation {generation_id} submitted", flush=True)
                if args.no_wait:
                    return 0
                job = client.wait_generation(generation_id, timeout_s=args.timeout, include_data=True)
                if job.state == generator_pb2.GENERATION_STATE_FAILED:
                    return fail(job.error)
                params, pieces = job.params, list(job.pieces)
            else:
                resp = client.generate(**controls, timeout_s=args.timeout)
                generation_id, params, pieces = resp.generation_id, resp.params, list(resp.pieces)
        except grpc.RpcError as exc:
            return fail(rpc_error_text(exc))
        except TimeoutError as exc:
            return fail(str(exc))
        rows = []
        for piece in pieces:
            stem = generation_id if piece.index == 0 else f"{generation_id}-{piece.index}"
            midi_path, audio_path = out / f"{stem}.mid", out / f"{stem}.wav"
            midi_path.write_bytes(piece.midi)
            audio_path.write_bytes(piece.audio_wav)
            row = {
                "index": piece.index,
                "seed": piece.seed,
                "track_id": piece.track_id,
                "midi_path": str(midi_path),
                "audio_path": str(audio_path),
                "duration_s": round(piece.duration_s, 3),
            }
            if piece.HasField("soprano_kept"):
                row["soprano_kept"] = round(piece.soprano_kept, 4)
            rows.append(row)
        try:
            track = client.wait_track(pieces[0].track_id, timeout_s=args.timeout)
        except (grpc.RpcError, TimeoutError) as exc:
            return fail(rpc_error_text(exc) if isinstance(exc, grpc.RpcError) else str(exc))
    a = track.analysis
    first = rows[0]
    record = {
        "generation_id": generation_id,
        "track_id": first["track_id"],
        "midi_path": first["midi_path"],
        "audio_path": first["audio_path"],
        "requested_key": params.key,
        "analyzed_key": a.key or None,
        "analyzed_mode": mode_name(a.mode),
        "seed": params.seed,
        "duration_s": first["duration_s"],
        "metre": params.metre,
        "style": params.style,
        "instrument": params.instrument,
        "pieces": rows,
    }
    if "soprano_kept" in first:
        record["soprano_kept"] = first["soprano_kept"]
    if args.json:
        print(json.dumps(record))
    else:
        for row in rows:
            extra = f", soprano kept {row['soprano_kept']:.0%}" if "soprano_kept" in row else ""
            print(f"{row['midi_path']} and {row['audio_path']} (seed {row['seed']}{extra})")
        print(
            f"requested {record['requested_key']} {params.metre} {params.style}, first piece analysed "
            f"{record['analyzed_key']} {record['analyzed_mode']}"
        )
    return 0


def cmd_similar(args) -> int:
    """``musicaas similar``: tracks similar to one track."""
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
    """``musicaas demo``."""
    from musicaas.demo import run_demo

    return run_demo(
        out=Path(args.out), audio_dir=Path(args.audio) if args.audio else None, state_dir=Path(args.state_dir),
        num_chorales=args.chorales, seed=args.seed,
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
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
    analyze.add_argument("--json", action="store_true", help="one JSON object per line, in input order")
    analyze.add_argument("--timeout", type=float, default=300.0, help="seconds to wait per file")
    analyze.add_argument(
        "--jobs", type=_positive_int, default=4, metavar="N",
        help="files uploaded and awaited at once (default 4)",
    )
    analyze.add_argument(
        "--plot", default=None, metavar="DIR",
        help="write one PNG per analysed file to DIR: waveform with beats and bars, chromagram "
        "with the key, sections, loudness over time",
    )
    analyze.set_defaults(fn=cmd_analyze)

    gen = sub.add_parser("generate", help="generate pieces (MIDI + WAV)")
    gen.add_argument("--key", required=True, help='e.g. "D minor"')
    gen.add_argument("--tempo", type=float, default=100.0, help="tempo in BPM (20-300)")
    gen.add_argument("--bars", type=int, default=8, help="length in bars (1-32)")
    gen.add_argument("--metre", default=None, help='time signature: "4/4" (default) or "3/4"')
    gen.add_argument("--style", default=None, help='"chorale" (default) or "folk"')
    gen.add_argument("--instrument", type=int, default=None,
                     help="General MIDI program 0-127 of the output (default 0, piano; 52 is Choir Aahs)")
    gen.add_argument("--seed", type=int, default=None, help="seed of the first piece (variation i uses seed + i)")
    gen.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (> 0, at most 5)")
    gen.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens (0: off)")
    gen.add_argument("--top-p", type=float, default=None, help="nucleus sampling probability in (0, 1] (1: off)")
    gen.add_argument(
        "--no-key-guidance", action="store_true",
        help="sample the model's own distribution (no masking of out-of-key pitches; see the model card)",
    )
    gen.add_argument("--variations", type=int, default=None, help="number of pieces, 1-8, sampled together")
    gen.add_argument("--primer", default=None, metavar="FILE", help="MIDI file whose first bars the pieces continue")
    gen.add_argument("--melody", default=None, metavar="FILE",
                     help="monophonic MIDI melody to harmonise as a four-part chorale (soprano = the melody)")
    gen.add_argument("--async", dest="async_", action="store_true",
                     help="submit an asynchronous job: print its generation id, then wait for it")
    gen.add_argument("--no-wait", action="store_true", help="with --async: print the generation id and exit")
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--json", action="store_true")
    gen.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the generation and the analysis")
    gen.set_defaults(fn=cmd_generate)

    sim = sub.add_parser("similar", help="tracks similar to a track")
    sim.add_argument("track_id")
    sim.add_argument("--limit", type=int, default=10)
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(fn=cmd_similar)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``musicaas`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
