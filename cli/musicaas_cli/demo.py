"""``musicaas demo``: the main job on real music.

1. Render Bach chorales from the music21 corpus to audio with the General MIDI SoundFont
   (or take the user's own files with ``--audio``).
2. Upload them through the gateway and wait until each is analysed and indexed.
3. Generate pieces in chosen keys (they are analysed and indexed like uploads).
4. Print a table: key, mode, tempo, loudness per track; for chorales whether the analysed
   key matches the key written in the score (and the hit rate); for generated pieces the
   requested against the analysed key; the model's top tags; the top 5 tracks similar to one
   chorale.
5. Search and recommend: a free-text search, recommendations from a liked track with a
   tempo target, and recommendations for three listeners whose interactions the demo
   records (each listener likes the tracks of one mode or kind; the listener model is
   trained on demand), each result with the signal that chose it.
6. Write MIDI, WAV and ``report.json`` to the output folder.

Starts the local stack when no gateway answers at ``MUSICAAS_GATEWAY``, and stops what it started.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import grpc
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from musicaas.client import GatewayClient, analysis_record, gateway_addr, resolve_api_key, rpc_error_text
from musicaas.common.v1 import common_pb2
from musicaas.keys import Key, tonic_pitch_class
from musicaas.render import encode_wav, render_midi
from musicaas.runtime.protoconv import mode_name
from musicaas_cli.stack import LocalStack, health_status

GENERATION_KEYS = ("D minor", "F major", "A minor", "Eb major")
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}
SAMPLE_RATE_HZ = 22050


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


def _key_of(track: common_pb2.Track) -> Key | None:
    a = track.analysis
    mode = mode_name(a.mode)
    return Key(tonic_pitch_class(a.key), mode) if a.key and mode else None


#: Fields of the analysis record the report keeps (the full tree is in GetTrack / analyze --json).
_REPORT_KEYS = (
    "track_id", "key", "mode", "key_confidence", "tempo_bpm", "duration_s", "loudness_lufs",
    "time_signature", "features", "scores", "tags", "embedding_model",
)
#: The demo's free-text query.
SEARCH_TEXT = "slow choral piece in a minor key"
SCORE_NAMES = ("tonal_clarity", "rhythmic_stability", "dynamic_range", "repetition")


def _summary_record(track: common_pb2.Track) -> dict:
    record = analysis_record(track)
    return {k: record.get(k) for k in _REPORT_KEYS}


def _score_comparison(rows: list[dict]) -> dict[str, dict[str, float | None]]:
    """Mean evaluation score per kind of piece (human chorales or uploads vs generated)."""
    out: dict[str, dict[str, float | None]] = {}
    for kind in sorted({r["kind"] for r in rows}):
        scored = [r["scores"] for r in rows if r["kind"] == kind and r.get("scores")]
        out[kind] = {
            name: (sum(sc[name] for sc in scored if sc.get(name) is not None) / len(scored)) if scored else None
            for name in SCORE_NAMES
        }
    return out


def _fmt(x: float, spec: str) -> str:
    return format(x, spec) if math.isfinite(x) else "-"


def run_demo(*, out: Path, audio_dir: Path | None, state_dir: Path, num_chorales: int = 16, seed: int = 7) -> int:
    """Run the main job (see the module docstring); returns the exit status: 0, or 1 when a track or generation failed."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    out.mkdir(parents=True, exist_ok=True)
    stack = None
    addr = gateway_addr()
    if health_status(addr) is None:
        stack = LocalStack(state_dir)
        with console.status("starting the local stack") as status:
            stack.start(lambda step: status.update(f"starting {step}"))
        addr = stack.gateway_addr
        console.print(f"started the local stack: gateway {addr}, state in {state_dir}")
    else:
        console.print(f"using the running gateway at {addr}")
    try:
        with GatewayClient(addr, resolve_api_key(state_dir) if stack is None else stack.api_key) as client:
            def job() -> int:
                return _run(console, client, out=out, audio_dir=audio_dir, num_chorales=num_chorales, seed=seed)

            if stack is None:
                return job()
            return _supervised(stack, job, console)
    finally:
        if stack is not None:
            with console.status("stopping the local stack"):
                stack.stop()


def _supervised(stack: LocalStack, job, console: Console) -> int:
    """Run ``job`` in a thread while this thread supervises the stack it started (a process
    that dies is restarted, as under ``musicaas up``: restarted processes belong to the thread
    that started the stack); the job's result, or its exception raised here."""
    import threading

    done = threading.Event()
    result: dict = {}

    def work() -> None:
        try:
            result["value"] = job()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the supervising thread
            result["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="demo", daemon=True).start()
    stack.supervise(done, lambda message: console.print(f"[yellow]{escape(message)}"))
    if "error" in result:
        raise result["error"]
    return result["value"]


def _inputs(console: Console, *, out: Path, audio_dir: Path | None, num_chorales: int) -> list[dict]:
    """Items ``{name, path, written_key}`` to upload."""
    items = []
    if audio_dir is not None:
        for path in sorted(p for p in audio_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES):
            items.append({"name": path.stem, "path": path, "written_key": None})
        if not items:
            raise SystemExit(f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in {audio_dir}")
        return items
    from musicaas.chorales import iter_chorales

    folder = out / "chorales"
    folder.mkdir(exist_ok=True)
    with _progress(console) as progress:
        task = progress.add_task("rendering chorales", total=num_chorales)
        for chorale in iter_chorales(num_chorales):
            (folder / f"{chorale.name}.mid").write_bytes(chorale.midi)
            wav = folder / f"{chorale.name}.wav"
            wav.write_bytes(encode_wav(render_midi(chorale.midi, sample_rate_hz=SAMPLE_RATE_HZ), sample_rate_hz=SAMPLE_RATE_HZ))
            items.append({"name": chorale.name, "path": wav, "written_key": chorale.key})
            progress.advance(task)
    return items


def _run(console: Console, client: GatewayClient, *, out: Path, audio_dir: Path | None, num_chorales: int, seed: int) -> int:
    items = _inputs(console, out=out, audio_dir=audio_dir, num_chorales=num_chorales)
    rows: list[dict] = []
    with _progress(console) as progress:
        task = progress.add_task("uploading and analysing", total=len(items))
        for item in items:
            row = {"kind": "chorale" if audio_dir is None else "audio", "name": item["name"], "path": str(item["path"])}
            try:
                resp = client.upload_file(item["path"], title=item["name"])
                track = client.wait_track(resp.track_id)
                if track.state == common_pb2.TRACK_STATE_FAILED:
                    row["error"] = track.error
                else:
                    row.update(_summary_record(track))
                    if item["written_key"] is not None:
                        row["written_key"] = str(item["written_key"])
                        row["key_match"] = _key_of(track) == item["written_key"]
            except grpc.RpcError as exc:
                row["error"] = rpc_error_text(exc)
            rows.append(row)
            progress.advance(task)

        gen_dir = out / "generated"
        gen_dir.mkdir(exist_ok=True)
        task = progress.add_task("generating and analysing", total=len(GENERATION_KEYS))
        for i, key in enumerate(GENERATION_KEYS):
            row = {"kind": "generated", "name": f"generated {key}", "requested_key": key}
            try:
                resp = client.generate(key=key, tempo_bpm=90.0, num_bars=8, temperature=1.0, seed=seed + i)
                stem = key.replace(" ", "_").replace("#", "s")
                piece = resp.pieces[0]
                (gen_dir / f"{stem}.mid").write_bytes(piece.midi)
                (gen_dir / f"{stem}.wav").write_bytes(piece.audio_wav)
                row.update(generation_id=resp.generation_id, seed=resp.params.seed, path=str(gen_dir / f"{stem}.wav"))
                track = client.wait_track(piece.track_id)
                if track.state == common_pb2.TRACK_STATE_FAILED:
                    row["error"] = track.error
                else:
                    row.update(_summary_record(track))
                    row["key_match"] = _key_of(track) == Key.parse(key)
            except grpc.RpcError as exc:
                row["error"] = rpc_error_text(exc)
            rows.append(row)
            progress.advance(task)

    query = next((r for r in rows if r["kind"] != "generated" and "track_id" in r), None)
    similar = []
    if query is not None:
        similar = [
            {"track_id": t.track_id, "title": t.title, "score": round(t.score, 4), "key": t.key,
             "mode": mode_name(t.mode),
             "tempo_bpm": round(t.tempo_bpm, 1)}
            for t in client.similar(query["track_id"], limit=5)
        ]

    chorales = [r for r in rows if "key_match" in r and r["kind"] == "chorale"]
    generated = [r for r in rows if "key_match" in r and r["kind"] == "generated"]
    summary = {
        "chorale_key_hits": sum(r["key_match"] for r in chorales),
        "chorales_scored": len(chorales),
        "chorale_key_hit_rate": (sum(r["key_match"] for r in chorales) / len(chorales)) if chorales else None,
        "generated_key_agreement": sum(r["key_match"] for r in generated),
        "generated_scored": len(generated),
        "errors": sum("error" in r for r in rows),
    }

    table = Table(title="musicaas demo: analysis of every track")
    for col in ("kind", "name", "key", "tempo BPM", "loudness LUFS", "written / requested", "match", "top tags"):
        table.add_column(col)
    for r in rows:
        if "error" in r:
            table.add_row(r["kind"], r["name"], "[red]error", "", "", r.get("written_key", r.get("requested_key", "")), r["error"][:60])
            continue
        table.add_row(
            r["kind"], r["name"],
            f"{r['key']} {r['mode']} ({r['key_confidence']:.2f})" if r["key"] else "none",
            _fmt(r["tempo_bpm"], ".1f"),
            _fmt(r["loudness_lufs"] if r["loudness_lufs"] is not None else float("nan"), ".1f"),
            r.get("written_key", r.get("requested_key", "")),
            {True: "yes", False: "no"}.get(r.get("key_match"), ""),
            ", ".join(t["name"] for t in (r.get("tags") or [])[:3]),
        )
    console.print(table)
    if chorales:
        console.print(
            f"chorale key hit rate (analysed vs written in the score): {summary['chorale_key_hits']}/"
            f"{len(chorales)} = {summary['chorale_key_hit_rate']:.0%}"
        )
    if generated:
        console.print(f"generated pieces whose analysed key is the requested one: {summary['generated_key_agreement']}/{len(generated)}")
    if query is not None:
        sim = Table(title=f"top 5 similar to {query['name']} ({query['key']} {query['mode']})")
        for col in ("score", "title", "key", "tempo BPM"):
            sim.add_column(col)
        for s in similar:
            sim.add_row(f"{s['score']:.3f}", s["title"], f"{s['key']} {s['mode']}", f"{s['tempo_bpm']:.1f}")
        console.print(sim)
    comparison = _score_comparison(rows)
    cmp_table = Table(title="music evaluation scores, mean per kind of piece (0-1; see musicaas_analyzer docs)")
    cmp_table.add_column("kind")
    for name in SCORE_NAMES:
        cmp_table.add_column(name.replace("_", " "))
    for kind, means in comparison.items():
        cmp_table.add_row(kind, *[_fmt(means[n], ".2f") if means[n] is not None else "-" for n in SCORE_NAMES])
    console.print(cmp_table)
    finding = _search_and_recommend(console, client, rows)
    report = {
        "tracks": rows, "summary": summary, "score_comparison": comparison,
        "similar": {"query": query, "results": similar}, **finding,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    console.print(f"wrote MIDI, WAV and report.json to {out}{os.sep}")
    return 0 if summary["errors"] == 0 else 1


def _result_table(title: str, results: list[dict]) -> Table:
    table = Table(title=title)
    for col in ("score", "title", "key", "tempo BPM", "top tags", "why"):
        table.add_column(col)
    for r in results:
        table.add_row(f"{r['score']:.3f}", r["title"], f"{r['key'] or '-'} {r['mode'] or ''}", f"{r['tempo_bpm']:.1f}",
                      ", ".join(t["name"] for t in r["tags"][:3]), r.get("reason") or "")
    return table


def _train_when_recorded(client: GatewayClient, recorded: int, timeout_s: float = 30.0):
    """Train the listener model once the recommender has consumed ``recorded`` interactions
    (they reach it asynchronously, over NATS); the last attempt's error otherwise."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            trained = client.train_listener_model()
            if trained.interactions >= recorded or time.monotonic() > deadline:
                return trained
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def _search_and_recommend(console: Console, client: GatewayClient, rows: list[dict]) -> dict:
    """A free-text search, a recommendation from a liked track with a tempo target, and
    recommendations for three demo listeners (interactions recorded through the gateway, the
    listener model trained on demand). A step the platform refuses is reported, not fatal."""
    from musicaas.client import INTERACTION_EVENTS, attribute_targets, scored_record
    from musicaas.common.v1 import common_pb2 as pb

    done = [r for r in rows if "track_id" in r]
    out: dict = {"search": None, "recommend": None, "listeners": []}
    if len(done) < 3:
        return out
    try:
        hits = [scored_record(t) for t in client.search(SEARCH_TEXT, limit=5)]
        out["search"] = {"text": SEARCH_TEXT, "results": hits}
        console.print(_result_table(f'search: "{SEARCH_TEXT}"', hits))
    except grpc.RpcError as exc:
        out["search"] = {"text": SEARCH_TEXT, "error": rpc_error_text(exc)}
        console.print(f"[yellow]search: {rpc_error_text(exc)}")
    liked = done[0]
    try:
        recs = [scored_record(t) for t in client.recommend(
            positive=[(liked["track_id"], 1.0)], attributes=attribute_targets(target={"tempo_bpm": 80.0}),
            diversity=0.3, limit=5)]
        out["recommend"] = {"liked": liked["track_id"], "target_tempo_bpm": 80.0, "diversity": 0.3, "results": recs}
        console.print(_result_table(f"recommended from {liked['name']}, target 80 BPM, diversity 0.3", recs))
    except grpc.RpcError as exc:
        out["recommend"] = {"error": rpc_error_text(exc)}
        console.print(f"[yellow]recommend: {rpc_error_text(exc)}")
    # three listeners: minor-mode tracks, major-mode tracks, generated pieces
    tastes = {
        "demo-listener-minor": [r for r in done if r.get("mode") == "minor"],
        "demo-listener-major": [r for r in done if r.get("mode") == "major"],
        "demo-listener-generated": [r for r in done if r["kind"] == "generated"],
    }
    events = []
    for listener, liked_rows in tastes.items():
        for r in liked_rows[: max(1, len(liked_rows) // 2)]:
            events.append(pb.Interaction(listener_id=listener, track_id=r["track_id"],
                                         event=INTERACTION_EVENTS["complete"], played_s=float(r.get("duration_s") or 0)))
            events.append(pb.Interaction(listener_id=listener, track_id=r["track_id"], event=INTERACTION_EVENTS["like"]))
    try:
        recorded = client.record_interactions(events).recorded if events else 0
        trained = _train_when_recorded(client, recorded)
        console.print(f"recorded {recorded} interactions of {len(tastes)} listeners; listener model "
                      f"{trained.model_version or '-'} ({trained.listeners} listeners, {trained.tracks} tracks)")
    except grpc.RpcError as exc:
        console.print(f"[yellow]interactions: {rpc_error_text(exc)}")
        return out
    for listener in tastes:
        try:
            resp = client.recommend_for_listener(listener, limit=5)
        except grpc.RpcError as exc:
            out["listeners"].append({"listener_id": listener, "error": rpc_error_text(exc)})
            continue
        recs = [scored_record(t) for t in resp.tracks]
        out["listeners"].append({"listener_id": listener, "model_version": resp.model_version,
                                 "collaborative_weight": resp.collaborative_weight, "results": recs})
        console.print(_result_table(
            f"for {listener} ({resp.interactions} interactions, collaborative weight {resp.collaborative_weight:.2f})", recs))
    return out
