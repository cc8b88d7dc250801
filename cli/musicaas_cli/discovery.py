"""The finding commands of ``musicaas``: ``similar``, ``search``, ``recommend``, ``discover``
and ``interactions add|import``, over :class:`musicaas.client.GatewayClient`.

::

    musicaas similar TRACK_ID [--limit K] [--diversity D] --json
    musicaas search "TEXT" [--limit K] [--diversity D] [--tag T]... --json
    musicaas recommend [--like ID[:WEIGHT]]... [--dislike ID[:WEIGHT]]... [--strategy S]
                       [--target NAME=VALUE]... [--min NAME=VALUE]... [--max NAME=VALUE]...
                       [--seed-tag TAG]... [--diversity D] [--listener L] [--limit K] --json
    musicaas discover [--target ID] --context POS:NEG... [--limit K] --json
    musicaas interactions add --listener L --event EVENT [--played-s S] TRACK_ID...
    musicaas interactions import FILE.jsonl      one {listener_id, event, track_id, at, played_s} per line
    musicaas interactions train                  retrain the tenant's listener model now

``--json`` prints one JSON array of results: ``{track_id, score, title, tags: [{name, score}],
key, mode, tempo_bpm, ..., reason}`` (:func:`musicaas.client.scored_record`). With
``--listener`` alone, ``recommend`` asks ``RecommendForListener``; with examples too, the
listener's taste profile is one more positive example of ``Recommend``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from pathlib import Path
from typing import Callable

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from musicaas.client import (
    INTERACTION_EVENTS, STRATEGIES, GatewayClient, attribute_targets, rpc_error_text, scored_record,
)
from musicaas.common.v1 import common_pb2
from musicaas.recommender.v1 import recommender_pb2

#: Rows per RecordInteractions call when importing a file.
IMPORT_BATCH_ROWS = 1000


def _example(text: str) -> tuple[str, float]:
    """``ID`` or ``ID:WEIGHT`` (weight a finite number > 0)."""
    track_id, _, weight = text.partition(":")
    if not track_id:
        raise argparse.ArgumentTypeError(f"expected ID or ID:WEIGHT, got {text!r}")
    if not weight:
        return track_id, 1.0
    try:
        value = float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"weight of {track_id!r} is not a number: {weight!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"weight of {track_id!r} must be a finite number > 0, got {weight!r}")
    return track_id, value


def _assignment(text: str) -> tuple[str, float]:
    """``NAME=VALUE`` with a number."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: {value!r} is not a number") from None


def _pair(text: str) -> tuple[str, str]:
    pos, sep, neg = text.partition(":")
    if not sep or not pos or not neg:
        raise argparse.ArgumentTypeError(f"expected POSITIVE_ID:NEGATIVE_ID, got {text!r}")
    return pos, neg


def _filter(args) -> recommender_pb2.TrackFilter | None:
    tags = getattr(args, "tag", None) or []
    return recommender_pb2.TrackFilter(tags=tags) if tags else None


def _print(rows: list[dict], as_json: bool, extra: dict | None = None) -> None:
    if as_json:
        print(json.dumps(rows if extra is None else {**extra, "tracks": rows}))
        return
    if extra:
        print("  ".join(f"{k}={v}" for k, v in extra.items()))
    for r in rows:
        tags = ", ".join(t["name"] for t in r["tags"][:3])
        reason = f"  [{r['reason']}]" if r.get("reason") else ""
        print(f"{r['score']:.3f}  {r['track_id']}  {r['key'] or '-'} {r['mode'] or ''}  "
              f"{r['tempo_bpm']:.0f} BPM  {r['title']}  ({tags}){reason}")


def _call(args, client_of: Callable[[argparse.Namespace], GatewayClient], fn) -> int:
    with client_of(args) as client:
        try:
            return fn(client)
        except grpc.RpcError as exc:
            text = rpc_error_text(exc)
            print(json.dumps({"error": text}) if getattr(args, "json", False) else f"error: {text}")
            return 1


def cmd_similar(args, client_of) -> int:
    """``musicaas similar``: tracks similar to one track."""
    def run(client: GatewayClient) -> int:
        tracks = client.similar(args.track_id, limit=args.limit, diversity=args.diversity, flt=_filter(args))
        _print([scored_record(t) for t in tracks], args.json)
        return 0
    return _call(args, client_of, run)


def cmd_search(args, client_of) -> int:
    """``musicaas search``: free-text search."""
    def run(client: GatewayClient) -> int:
        tracks = client.search(args.text, limit=args.limit, diversity=args.diversity, flt=_filter(args))
        _print([scored_record(t) for t in tracks], args.json)
        return 0
    return _call(args, client_of, run)


def cmd_recommend(args, client_of) -> int:
    """``musicaas recommend``: from examples, seed tags, targets, or a listener."""
    attributes = attribute_targets(target=dict(args.target), minimum=dict(args.min), maximum=dict(args.max))

    def run(client: GatewayClient) -> int:
        if args.listener and not (args.like or args.dislike or args.seed_tag):
            resp = client.recommend_for_listener(
                args.listener, limit=args.limit, diversity=args.diversity, attributes=attributes,
                include_played=args.include_played, flt=_filter(args),
            )
            extra = {"model_version": resp.model_version, "collaborative_weight": round(resp.collaborative_weight, 4),
                     "interactions": resp.interactions}
            _print([scored_record(t) for t in resp.tracks], args.json, extra)
            return 0
        tracks = client.recommend(
            positive=args.like, negative=args.dislike, strategy=args.strategy, attributes=attributes,
            seed_tags=args.seed_tag, diversity=args.diversity, listener_id=args.listener or "",
            limit=args.limit, flt=_filter(args),
        )
        _print([scored_record(t) for t in tracks], args.json)
        return 0
    return _call(args, client_of, run)


def cmd_discover(args, client_of) -> int:
    """``musicaas discover``: discovery (with a target) or context search."""
    def run(client: GatewayClient) -> int:
        tracks = client.discover(target=args.target or "", context=args.context, limit=args.limit, flt=_filter(args))
        _print([scored_record(t) for t in tracks], args.json)
        return 0
    return _call(args, client_of, run)


def _timestamp(value) -> Timestamp | None:
    """An ISO 8601 time (``Z`` or an offset; naive means UTC) or seconds since the epoch."""
    if value in (None, ""):
        return None
    ts = Timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        when = dt.datetime.fromtimestamp(float(value), dt.timezone.utc)
    else:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
    ts.FromDatetime(when.astimezone(dt.timezone.utc))
    return ts


def interaction_row(record: dict) -> common_pb2.Interaction:
    """One JSONL record (``listener_id``, ``event``, ``track_id``, optional ``at``,
    ``played_s``, ``interaction_id``) as an Interaction.

    Raises
    ------
    ValueError
        An unknown event name, a time that does not parse, or a non-numeric played_s.
    """
    event = str(record.get("event", "")).lower()
    if event not in INTERACTION_EVENTS:
        raise ValueError(f"unknown event {event!r}: expected one of {', '.join(INTERACTION_EVENTS)}")
    row = common_pb2.Interaction(
        listener_id=str(record.get("listener_id", "")), track_id=str(record.get("track_id", "")),
        event=INTERACTION_EVENTS[event], played_s=float(record.get("played_s") or 0.0),
        interaction_id=str(record.get("interaction_id") or ""),
    )
    at = _timestamp(record.get("at"))
    if at is not None:
        row.at.CopyFrom(at)
    return row


def _record(client: GatewayClient, rows: list[common_pb2.Interaction], offsets: list[int]) -> tuple[int, list[dict]]:
    resp = client.record_interactions(rows)
    return resp.recorded, [{"row": offsets[r.index], "field": r.field, "reason": r.reason} for r in resp.rejected]


def cmd_interactions(args, client_of) -> int:
    """``musicaas interactions add|import|train``."""
    def run(client: GatewayClient) -> int:
        if args.action == "train":
            resp = client.train_listener_model()
            out = {"model_version": resp.model_version, "listeners": resp.listeners, "tracks": resp.tracks,
                   "interactions": resp.interactions}
            print(json.dumps(out) if args.json else "  ".join(f"{k}={v}" for k, v in out.items()))
            return 0
        recorded, rejected = 0, []
        if args.action == "add":
            rows = [interaction_row({"listener_id": args.listener, "event": args.event, "track_id": t,
                                     "played_s": args.played_s, "at": args.at}) for t in args.track_ids]
            recorded, rejected = _record(client, rows, list(range(len(rows))))
        else:
            batch: list[common_pb2.Interaction] = []
            offsets: list[int] = []
            with Path(args.file).open(encoding="utf-8") as fh:
                for line_no, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        batch.append(interaction_row(json.loads(line)))
                        offsets.append(line_no)
                    except (ValueError, TypeError, AttributeError) as exc:
                        rejected.append({"row": line_no, "field": "", "reason": str(exc)[:200]})
                        continue
                    if len(batch) == IMPORT_BATCH_ROWS:
                        n, bad = _record(client, batch, offsets)
                        recorded, rejected = recorded + n, rejected + bad
                        batch, offsets = [], []
            if batch:
                n, bad = _record(client, batch, offsets)
                recorded, rejected = recorded + n, rejected + bad
        out = {"recorded": recorded, "rejected": rejected}
        if args.json:
            print(json.dumps(out))
        else:
            print(f"recorded {recorded}, rejected {len(rejected)}")
            for r in rejected:
                print(f"  {'line' if args.action == 'import' else 'row'} {r['row']}: {r['reason']}")
        return 0 if not rejected else 2
    return _call(args, client_of, run)


def add_commands(sub, common: argparse.ArgumentParser, commands: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    """Register ``similar``, ``search``, ``recommend``, ``discover`` and ``interactions`` on
    the sub-command parser ``sub``; ``commands`` maps each name to the function it runs
    (``args -> exit status``)."""
    def limit(p):
        p.add_argument("--limit", type=int, default=10, help="number of results, 1-100 (default 10)")
        p.add_argument("--json", action="store_true", help="one JSON array of results")

    def diversity(p):
        p.add_argument("--diversity", type=float, default=0.0,
                       help="0-1: re-rank by maximal marginal relevance (0: by score alone)")

    def tags(p):
        p.add_argument("--tag", action="append", default=[], help="only tracks with this tag (repeatable)")

    sim = sub.add_parser("similar", parents=[common], help="tracks similar to a track")
    sim.add_argument("track_id")
    limit(sim), diversity(sim), tags(sim)
    sim.set_defaults(fn=commands["similar"])

    search = sub.add_parser("search", parents=[common], help="free-text search ('calm piano piece in a minor key')")
    search.add_argument("text")
    limit(search), diversity(search), tags(search)
    search.set_defaults(fn=commands["search"])

    rec = sub.add_parser("recommend", parents=[common], help="recommendations from examples, tags, targets or a listener")
    rec.add_argument("--like", action="append", default=[], type=_example, metavar="ID[:WEIGHT]")
    rec.add_argument("--dislike", action="append", default=[], type=_example, metavar="ID[:WEIGHT]")
    rec.add_argument("--strategy", default="", choices=[s for s in STRATEGIES if s])
    rec.add_argument("--target", action="append", default=[], type=_assignment, metavar="NAME=VALUE",
                     help="preferred value of tempo_bpm, energy, danceability, valence, loudness_lufs, "
                          "duration_s, key (0-11), mode (0/1), year")
    rec.add_argument("--min", action="append", default=[], type=_assignment, metavar="NAME=VALUE")
    rec.add_argument("--max", action="append", default=[], type=_assignment, metavar="NAME=VALUE")
    rec.add_argument("--seed-tag", action="append", default=[], metavar="TAG")
    rec.add_argument("--listener", default=None, metavar="L", help="a listener id (alone: RecommendForListener)")
    rec.add_argument("--include-played", action="store_true", help="with --listener alone: keep played tracks")
    limit(rec), diversity(rec), tags(rec)
    rec.set_defaults(fn=commands["recommend"])

    disc = sub.add_parser("discover", parents=[common], help="discovery / context search")
    disc.add_argument("--target", default=None, metavar="ID")
    disc.add_argument("--context", action="append", required=True, type=_pair, metavar="POS:NEG")
    limit(disc), tags(disc)
    disc.set_defaults(fn=commands["discover"])

    inter = sub.add_parser("interactions", parents=[common], help="record listener interactions")
    isub = inter.add_subparsers(dest="action", required=True)
    add = isub.add_parser("add", parents=[common], help="record one event for tracks")
    add.add_argument("--listener", required=True)
    add.add_argument("--event", required=True, choices=list(INTERACTION_EVENTS))
    add.add_argument("--played-s", type=float, default=0.0, help="seconds played")
    add.add_argument("--at", default=None, help="ISO 8601 time (default now)")
    add.add_argument("track_ids", nargs="+", metavar="TRACK_ID")
    add.add_argument("--json", action="store_true")
    imp = isub.add_parser("import", parents=[common], help="record a JSONL file, 1000 rows per call")
    imp.add_argument("file")
    imp.add_argument("--json", action="store_true")
    train = isub.add_parser("train", parents=[common], help="retrain the tenant's listener model now")
    train.add_argument("--json", action="store_true")
    inter.set_defaults(fn=commands["interactions"])
