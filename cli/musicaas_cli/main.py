"""The ``musicaas`` command line.

::

    musicaas up [--port-base N] [--no-model-server] [--tls]     the stack in the foreground, supervised
    musicaas status [--json]                                    its processes, pids, restarts, addresses
    musicaas demo [--out DIR] [--audio DIR] [--chorales N]      the main job on real music
    musicaas analyze FILE... [--json] [--jobs N] [--plot DIR]   upload, wait for analysis
    musicaas generate --key "D minor" [--tempo 90] [--bars 8] ... --out DIR [--json]
    musicaas similar TRACK_ID [--limit K] [--diversity D] [--json]
    musicaas search "TEXT" [--limit K] [--diversity D] [--json]   free-text search
    musicaas recommend [--like ID[:W]]... [--dislike ID[:W]]... [--strategy S] [--target N=V]...
                       [--min N=V]... [--max N=V]... [--seed-tag T]... [--listener L] [--json]
    musicaas discover [--target ID] --context POS:NEG... [--json]
    musicaas interactions add --listener L --event E [--played-s S] TRACK_ID... | import FILE.jsonl | train
    musicaas list [--state S]... [--json]                        the tenant's tracks
    musicaas delete TRACK_ID...                                 delete tracks (idempotent)
    musicaas usage [--from DAY] [--to DAY] [--json]             the tenant's usage per day and its limits
    musicaas tenants add NAME [--rate R] [--quota NAME=VALUE]... a tenant and its first API key (printed once)
    musicaas tenants list | rotate NAME | revoke NAME [--key-id K]
    musicaas tenants nats-creds NAME --out FILE                 a partner's NATS credentials (nkey seed)

``--state-dir DIR`` (default ``$MUSICAAS_STATE_DIR`` or ``./.musicaas``) goes before or after
the sub-command. The gateway address comes from ``MUSICAAS_GATEWAY`` (default
``127.0.0.1:50051``), the API key from ``MUSICAAS_API_KEY``, else the dev key in the state
folder (:mod:`musicaas.client`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import grpc
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from musicaas.client import (
    GatewayClient, NoApiKey, analysis_record, gateway_addr, resolve_api_key, rpc_error_text,
)
from musicaas.common.v1 import common_pb2
from musicaas.generator.v1 import generator_pb2
from musicaas.runtime.logging import configure_logging
from musicaas.runtime.protoconv import mode_name
from musicaas.runtime.tls import TlsFiles
from musicaas_cli.demo import run_demo
from musicaas_cli import discovery
from musicaas_cli.stack import (
    GaveUp, LocalStack, RestartPolicy, StackFailed, StackPorts, StartInterrupted, read_stack_status,
)


def _client(args) -> GatewayClient:
    """A client of the gateway; TLS-verified with the local CA when the running stack has ``--tls``."""
    state_dir = Path(args.state_dir)
    status = read_stack_status(state_dir) if not os.environ.get("MUSICAAS_GATEWAY_CA_FILE") else None
    ca_file = (status or {}).get("tls", {}) or {}
    return GatewayClient(gateway_addr(), resolve_api_key(state_dir), ca_file=ca_file.get("ca_file"))


def cmd_up(args) -> int:
    """``musicaas up``: run the stack until Ctrl-C or SIGTERM, restarting what dies.

    The exit status is 0 after Ctrl-C or SIGTERM (everything stopped in order), 1 when the
    stack could not start, when a process kept dying (the supervisor gave up), or when a stack
    already runs from this state folder.
    """
    console = Console(stderr=True)
    state_dir = Path(args.state_dir)
    running = read_stack_status(state_dir)
    if running is not None and running["running"]:
        console.print(
            f"[red]a musicaas stack already runs from {escape(str(state_dir))} (supervisor pid "
            f"{running['supervisor']['pid']}); see `musicaas status`"
        )
        return 1
    ports = StackPorts.from_base(args.port_base) if args.port_base else StackPorts()
    policy = RestartPolicy(max_restarts=args.max_restarts, window_s=args.restart_window)
    stack = LocalStack(state_dir, ports=ports, tiny_model=args.tiny_model, model_server=not args.no_model_server,
                       policy=policy, tls=args.tls)
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    def report(message: str) -> None:
        console.print(message, markup=False, highlight=False, soft_wrap=True)

    def failed(exc: StackFailed, what: str, *, tail: bool = True) -> int:
        console.print(f"[red]{what}: {escape(exc.name)} {escape(exc.reason)}[/red]", soft_wrap=True)
        if tail and exc.log_tail:
            report(f"last lines of {exc.log}:\n" + "\n".join(f"  {line}" for line in exc.log_tail))
        elif exc.log:
            report(f"see {exc.log}")
        return 1

    try:
        with console.status("starting musicaas") as status:
            stack.start(lambda step: status.update(f"starting {step}"), stop=stop)
    except StartInterrupted:
        console.print("stopped before the stack was serving")
        return 0
    except StackFailed as exc:
        return failed(exc, "musicaas could not start")
    print(f"musicaas is SERVING: gateway {stack.gateway_addr} (API key in {state_dir / 'api_key'})", flush=True)
    for name in stack.names():
        addrs = stack.addresses(name)
        print(f"  {name:<12} {addrs.get('grpc') or addrs.get('nats'):<24} metrics {addrs['metrics']}", flush=True)
    if stack.ca_file:
        print(f"TLS on every hop (mutual between the services); clients verify with the CA {stack.ca_file}",
              flush=True)
    print("`musicaas status` shows the processes; Ctrl-C stops them", flush=True)
    code = 0
    try:
        stack.supervise(stop, report)
    except GaveUp as exc:
        code = failed(exc, "giving up", tail=False)  # the supervisor has just reported its last lines
    finally:
        console.print("stopping musicaas…")
        stack.stop()
    return code


def _status_rows(status: dict) -> list[tuple[str, ...]]:
    rows = [("NAME", "PID", "STATE", "RESTARTS", "ADDRESS", "METRICS")]
    for name, p in status.get("processes", {}).items():
        addrs = p.get("addresses", {})
        rows.append((name, str(p.get("pid") or "-"), p["state"], str(p.get("restarts", 0)),
                     addrs.get("grpc") or addrs.get("nats") or "-", addrs.get("metrics") or "-"))
    return rows


def cmd_status(args) -> int:
    """``musicaas status``: the processes of the stack running from the state folder, read from
    its ``stack.json`` and checked against the live pids; exit status 1 when none runs."""
    state_dir = Path(args.state_dir)
    status = read_stack_status(state_dir)
    if status is None or not status["running"]:
        orphans = {n: p["pid"] for n, p in (status or {}).get("processes", {}).items() if p.get("alive")}
        if status is None:
            reason = f"no musicaas stack has run from {state_dir}"
        else:
            reason = f"no musicaas stack is running from {state_dir} (last {status.get('state')} at {status.get('updated_at')})"
            if status.get("error"):
                reason += f": {status['error']}"
        if orphans:
            reason += "; still alive without their supervisor: " + ", ".join(f"{n} (pid {p})" for n, p in orphans.items())
        if args.json:
            print(json.dumps({**(status or {}), "running": False, "message": reason}))
        else:
            print(reason)
        return 1
    if args.json:
        print(json.dumps(status))
        return 0
    sup = status["supervisor"]
    print(f"musicaas stack in {status['state_dir']}: {status['state']} (supervisor pid {sup['pid']}"
          f"{'' if sup.get('supervising') else ', not restarting processes'})")
    rows = _status_rows(status)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
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


def _analyze_one(client: GatewayClient, path: str, timeout_s: float,
                 stop: threading.Event) -> tuple[dict, common_pb2.Track | None]:
    """Upload one file and wait until it is indexed or failed: (record without the analysis, track)."""
    record: dict = {"path": path}
    try:
        resp = client.upload_file(Path(path))
        track = client.wait_track(resp.track_id, timeout_s=timeout_s, stop=stop)
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
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs, thread_name_prefix="analyze")
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
    """``musicaas similar`` (:func:`musicaas_cli.discovery.cmd_similar`)."""
    return discovery.cmd_similar(args, _client)


def cmd_search(args) -> int:
    """``musicaas search`` (:func:`musicaas_cli.discovery.cmd_search`)."""
    return discovery.cmd_search(args, _client)


def cmd_recommend(args) -> int:
    """``musicaas recommend`` (:func:`musicaas_cli.discovery.cmd_recommend`)."""
    return discovery.cmd_recommend(args, _client)


def cmd_discover(args) -> int:
    """``musicaas discover`` (:func:`musicaas_cli.discovery.cmd_discover`)."""
    return discovery.cmd_discover(args, _client)


def cmd_interactions(args) -> int:
    """``musicaas interactions`` (:func:`musicaas_cli.discovery.cmd_interactions`)."""
    return discovery.cmd_interactions(args, _client)


def cmd_list(args) -> int:
    """``musicaas list``: the tenant's tracks (id, state, title, key, tempo), one per line or JSON."""
    states = [common_pb2.TrackState.Value(f"TRACK_STATE_{s.upper()}") for s in args.state]
    with _client(args) as client:
        try:
            tracks = list(client.list_tracks(states=states, include_analysis=True))
        except grpc.RpcError as exc:
            print(json.dumps({"error": rpc_error_text(exc)}) if args.json else f"error: {rpc_error_text(exc)}")
            return 1
    rows = [analysis_record(t) for t in tracks]
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['track_id']}  {r['state']:<8}  {r.get('key') or '-'} {r.get('mode') or ''}  {r['title']}")
    return 0


def cmd_delete(args) -> int:
    """``musicaas delete``: delete tracks; exit 1 if any id is unknown."""
    failed = 0
    with _client(args) as client:
        for track_id in args.track_ids:
            try:
                client.delete_track(track_id)
                print(json.dumps({"track_id": track_id, "deleted": True}))
            except grpc.RpcError as exc:
                failed += 1
                print(json.dumps({"track_id": track_id, "error": rpc_error_text(exc)}))
    return 1 if failed else 0


def cmd_usage(args) -> int:
    """``musicaas usage``: the calling tenant's usage per UTC day, and its limits."""
    from google.protobuf import json_format

    with _client(args) as client:
        try:
            resp = client.usage(day_from=args.day_from or "", day_to=args.day_to or "")
        except grpc.RpcError as exc:
            print(json.dumps({"error": rpc_error_text(exc)}) if args.json else f"error: {rpc_error_text(exc)}")
            return 1
    record = json_format.MessageToDict(resp, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    if args.json:
        print(json.dumps(record))
    else:
        for day in record["days"]:
            print("  ".join(f"{k}={v}" for k, v in day.items()))
        print(f"limits: {json.dumps(record.get('limits', {}))}")
    return 0


def _stack_nats(state_dir: Path):
    """The running local stack's NATS URL, the admin's nkey seed file and its TLS files (None: plaintext)."""
    status = read_stack_status(state_dir)
    if status is None or "nats" not in status.get("processes", {}):
        raise SystemExit(f"no local stack in {state_dir}: start one with `musicaas up`")
    url = status["processes"]["nats"]["addresses"]["nats"]
    tls = status.get("tls") or None
    return url, str(LocalStack(state_dir).admin_seed_file), TlsFiles(ca_file=tls["ca_file"]) if tls else None


def cmd_tenants(args) -> int:
    """``musicaas tenants ...`` on the running local stack (API keys in the ``tenants`` bucket;
    ``nats-creds``: a partner's NATS credentials, and the server reloaded)."""
    import asyncio

    from musicaas.runtime import natsauth
    from musicaas.runtime.bus import Bus
    from musicaas_gateway import tenants

    configure_logging(service="musicaas-cli", level="warning", fmt="console")  # stdout carries the JSON answer
    state_dir = Path(args.state_dir)
    if args.tenants_command == "nats-creds":
        try:
            public_key = LocalStack(state_dir).issue_partner_credentials(args.name, Path(args.out))
        except (ValueError, TimeoutError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps({"tenant": args.name, "credentials": str(Path(args.out).resolve()),
                          "public_key": public_key,
                          "subjects": natsauth.partner_subjects(args.name)}))
        return 0
    url, seed, tls = _stack_nats(state_dir)

    async def run() -> int:
        async with Bus(url, name="musicaas-cli", connect_timeout_s=10, nkey_seed_file=seed, tls=tls) as bus:
            return await tenants.run_command(args, bus)

    return asyncio.run(run())


def cmd_demo(args) -> int:
    """``musicaas demo``."""
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
    """The argument parser of every sub-command.

    ``--state-dir`` is accepted before the sub-command and after it (the later one wins): every
    sub-parser has its own copy whose default is ``SUPPRESS``, so that it only overrides the
    top-level value when it is given.
    """
    state_dir_help = (
        "state folder: JetStream store, Qdrant shard, logs, dev API key "
        "(default $MUSICAAS_STATE_DIR, else ./.musicaas)"
    )
    parser = argparse.ArgumentParser(prog="musicaas", description="Music AI as a service.")
    parser.add_argument(
        "--state-dir", default=os.environ.get("MUSICAAS_STATE_DIR", ".musicaas"), metavar="DIR", help=state_dir_help
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", default=argparse.SUPPRESS, metavar="DIR", help=state_dir_help)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", parents=[common], help="run the whole stack in the foreground, restarting what dies")
    up.add_argument(
        "--port-base", type=int, default=0, metavar="N",
        help=f"use {StackPorts.count()} consecutive loopback ports from here (default: gateway 50051, analyzer 50052, "
        "recommender 50053, generator 50054, NATS 4222, Triton 8001/8000/8002, metrics of gateway, analyzer, "
        "recommender, generator 9101-9104, NATS monitoring 8222)",
    )
    up.add_argument(
        "--no-model-server", action="store_true",
        help="start without the model server (Triton): generation answers UNAVAILABLE, the rest works",
    )
    up.add_argument(
        "--max-restarts", type=int, default=RestartPolicy.max_restarts, metavar="N",
        help="give up (stop everything, exit 1) when a process dies after N restarts within the window (default 5)",
    )
    up.add_argument(
        "--restart-window", type=float, default=RestartPolicy.window_s, metavar="S",
        help="the window of --max-restarts, in seconds (default 60)",
    )
    up.add_argument(
        "--tls", action="store_true",
        help="TLS on every hop with a private CA made in <state-dir>/tls: the gateway, NATS, and mutual TLS "
        "between the services (clients: MUSICAAS_GATEWAY_CA_FILE, or the CLI finds it)",
    )
    up.add_argument("--tiny-model", action="store_true", help=argparse.SUPPRESS)  # tests: a random 1-layer model
    up.set_defaults(fn=cmd_up)

    status = sub.add_parser("status", parents=[common], help="the processes of the running local stack")
    status.add_argument("--json", action="store_true", help="the whole state as one JSON object")
    status.set_defaults(fn=cmd_status)

    demo = sub.add_parser("demo", parents=[common], help="run the main job on Bach chorales (or your audio)")
    demo.add_argument("--out", default="demo-out", help="output folder (MIDI, WAV, report.json)")
    demo.add_argument("--audio", default=None, help="analyse your own audio files from this folder instead of chorales")
    demo.add_argument("--chorales", type=int, default=16, help="number of chorales to render (default 16)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the generated pieces")
    demo.set_defaults(fn=cmd_demo)

    analyze = sub.add_parser("analyze", parents=[common], help="upload audio files and print their analysis")
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

    gen = sub.add_parser("generate", parents=[common], help="generate pieces (MIDI + WAV)")
    gen.add_argument("--key", required=True, help='e.g. "D minor"')
    gen.add_argument("--tempo", type=float, default=100.0, help="tempo in BPM (20-300)")
    gen.add_argument("--bars", type=int, default=8, help="length in bars (1-32)")
    gen.add_argument("--metre", default=None, help='time signature: "4/4" (default) or "3/4"')
    gen.add_argument("--style", default=None, help='"chorale" (default) or "folk"')
    gen.add_argument(
        "--instrument", type=int, default=None, metavar="P",
        help="General MIDI program 0-127 of the output (default: the style's own, chorale 52 Choir Aahs, "
        "folk 73 Flute)",
    )
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

    discovery.add_commands(sub, common, {
        "similar": cmd_similar, "search": cmd_search, "recommend": cmd_recommend, "discover": cmd_discover,
        "interactions": cmd_interactions,
    })

    lst = sub.add_parser("list", parents=[common], help="the tenant's tracks")
    lst.add_argument("--state", action="append", default=[],
                     choices=["uploaded", "analyzed", "indexed", "failed"], help="only this state (repeatable)")
    lst.add_argument("--json", action="store_true", help="one JSON array of analysis records")
    lst.set_defaults(fn=cmd_list)

    delete = sub.add_parser("delete", parents=[common], help="delete tracks (bytes, analysis, vector point)")
    delete.add_argument("track_ids", nargs="+", metavar="TRACK_ID")
    delete.set_defaults(fn=cmd_delete)

    usage = sub.add_parser("usage", parents=[common], help="the tenant's usage per UTC day and its limits")
    usage.add_argument("--from", dest="day_from", metavar="YYYY-MM-DD", help="first day (default today)")
    usage.add_argument("--to", dest="day_to", metavar="YYYY-MM-DD", help="last day (default --from)")
    usage.add_argument("--json", action="store_true")
    usage.set_defaults(fn=cmd_usage)

    from musicaas_gateway.tenants import add_tenant_commands

    ten = sub.add_parser("tenants", parents=[common], help="tenants and their API keys on the running local stack")
    creds = add_tenant_commands(ten).add_parser(
        "nats-creds", help="write a partner's NATS credentials (nkey seed) for its tenant's events")
    creds.add_argument("name")
    creds.add_argument("--out", required=True, metavar="FILE")
    ten.set_defaults(fn=cmd_tenants)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``musicaas`` command; returns the exit status.

    Raises
    ------
    SystemExit
        With the message, when no API key can be found (see :func:`musicaas.client.resolve_api_key`).
    """
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except NoApiKey as exc:
        raise SystemExit(str(exc)) from None
