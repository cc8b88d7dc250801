"""The development part's audio, rendered once and cached, for tuning the analyzer (issue 12).

Tuning reads this cache and never the held-out part: :func:`build` plans renders of many
more pieces than the evaluation plays, then **keeps only the development part's renders**
(``protocol.split_of``) and the development part's real recordings. Each item is one
``<item>.npz`` (``y``: float32 mono at :data:`sources.SR`) and one line of ``index.jsonl``
(its references and render plan) in ``CACHE/analysis_eval/dev-audio-v3/`` (v2: a third of the renders with drums;
v3: plus the drummed game music of :func:`sources.game_midi_songs`, every song in the
development part, kind ``game``).

    python bench/analysis_eval/devcache.py build      # ~10 minutes on 2 cores, ~1.5 GB
    python bench/analysis_eval/devcache.py stats

Use from a tuning script (``bench/`` on ``sys.path``)::

    from analysis_eval import devcache
    for item in devcache.items(kind="chorale"):
        item.y, item.meta["key_ref"], item.meta["bpm_ref"], item.meta["beats_ref"]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "analysis_eval"

from . import protocol, sources  # noqa: E402

DIR = sources.CACHE / "analysis_eval" / "dev-audio-v3"
#: Pieces planned (both parts; only the development half is kept) and renders per piece.
N_CHORALES, N_FOLK, N_FOLK_METRES, RENDERS = 400, 240, 160, 2
#: The ensemble family of the drummed game songs (kind ``game``).
GAME_FAMILY = "drummed game music"


@dataclass
class DevItem:
    meta: dict
    path: Path

    @property
    def y(self) -> np.ndarray:
        with np.load(self.path) as z:
            return z["y"]


def _init() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    from . import run

    run._W["fluid"] = {}


def _task(task) -> dict | None:
    from . import run

    kind = task[0]
    if kind == "render":
        _, piece, plan = task
        name = plan.item_id.replace(":", "_").replace("/", "_").replace("#", "_r")
        out = DIR / f"{name}.npz"
        y, refs = run.render_item(piece, plan)
        meta = {"item": plan.item_id, "split": plan.split, "kind": piece.kind, "family": plan.family,
                "source": plan.source, "dynamics": plan.dynamics, "reverb": plan.reverb, "detune": plan.detune_cents,
                "transpose": plan.transpose, "programs": list(plan.programs), "metre_text": piece.metre_text,
                "drums": plan.drums,
                "beat_q": piece.beat_q, **{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in refs.items()}}
    elif kind == "game":
        _, song, sf = task
        name = f"{song.piece_id.replace(':', '_').replace('/', '_')}_{sf}"
        out = DIR / f"{name}.npz"
        y, refs = sources.render_game_song(song, sf)
        meta = {"item": f"{song.piece_id}#{sf}", "split": protocol.DEV, "kind": "game", "family": GAME_FAMILY,
                "source": f"{sf}/fluidsynth", "key_ref": None, "bpm_ref": refs["bpm_ref"],
                "beats_ref": refs["beats_ref"].tolist(), "downbeats_ref": None, "beats_per_bar": None, "drums": True}
    else:
        _, rec = task
        name = rec.piece_id.replace(":", "_").replace("/", "_")
        out = DIR / f"{name}.npz"
        y = sources.load_recording(rec)
        meta = {"item": rec.piece_id, "split": protocol.DEV, "kind": "real", "family": "real recordings",
                "source": "planetblupi", "key_ref": None, "bpm_ref": rec.tempo_bpm, "beats_ref": None,
                "downbeats_ref": None, "beats_per_bar": None}
    np.savez(out, y=np.asarray(y, dtype=np.float32))
    meta["file"] = out.name
    meta["audio_s"] = len(y) / sources.SR
    return meta


def build(workers: int = 2) -> int:
    sources.setup_worker_environment()
    DIR.mkdir(parents=True, exist_ok=True)
    seen = sources.seen_chorales()
    pieces = (sources.load_chorale_pieces(N_CHORALES, seen=seen) + sources.load_folk_pieces(N_FOLK)
              + sources.load_folk_metre_pieces(N_FOLK_METRES))
    by_id = {p.piece_id: p for p in pieces}
    plans = protocol.plan_renders([p.piece_id for p in pieces], sources.SOURCES, renders_per_piece=RENDERS, seen=seen)
    tasks = [("render", by_id[p.piece_id], p) for p in plans if p.split == protocol.DEV]
    tasks += [("real", r) for r in sources.real_recordings() if protocol.split_of(r.piece_id) == protocol.DEV]
    tasks += [("game", song, sf) for song in sources.game_midi_songs() for sf in sources.GAME_MIDI_SOUNDFONTS]
    assert all(t[2].split == protocol.DEV for t in tasks if t[0] == "render")
    print(f"rendering {len(tasks)} development items into {DIR}", flush=True)
    t0 = time.perf_counter()
    metas = []
    with mp.get_context("spawn").Pool(workers, initializer=_init) as pool:
        for i, meta in enumerate(pool.imap_unordered(_task, tasks, chunksize=2), 1):
            metas.append(meta)
            if i % 50 == 0:
                print(f"  {i}/{len(tasks)} {time.perf_counter() - t0:.0f} s", flush=True)
    metas.sort(key=lambda m: m["item"])
    (DIR / "index.jsonl").write_text("".join(json.dumps(m, default=float) + "\n" for m in metas))
    print(f"{len(metas)} items, {sum(m['audio_s'] for m in metas) / 60:.0f} min of audio, {time.perf_counter() - t0:.0f} s")
    return 0


def items(*, kind: str | None = None, family: str | None = None, every: int = 1) -> list[DevItem]:
    """The cached development items (all, or of one ``kind``: chorale / folk / real / game, or one
    ``family``), every ``every``-th. Raises FileNotFoundError before :func:`build` ran."""
    lines = (DIR / "index.jsonl").read_text().splitlines()
    out = []
    for line in lines:
        m = json.loads(line)
        if m["split"] != protocol.DEV:  # never: build keeps the development part only
            continue
        if (kind is None or m["kind"] == kind) and (family is None or m["family"] == family):
            out.append(DevItem(m, DIR / m["file"]))
    return out[::every]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="the development part's audio cache for tuning")
    ap.add_argument("command", choices=("build", "stats"))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    if args.command == "build":
        return build(args.workers)
    from collections import Counter

    its = items()
    print(f"{len(its)} items")
    for field in ("kind", "family", "source", "metre_text", "drums"):
        print(field, dict(Counter(i.meta.get(field) for i in its)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
