"""Free-text search: precision@5 on queries whose answers are known by construction.

The set
-------
Pieces the generator trains on, from the music21 corpus: Bach chorales
(:func:`musicaas.chorales.iter_chorales`: four voices, written key) and Essen folk songs
(:func:`musicaas_model.data.load_folk`: one melody line; the first tunes of
``FOLK_FILES`` are all major, so they serve the major half only). No other corpus piece is
used. Each track is one piece rendered (:func:`musicaas.render.render_midi`, TimGM6mb) with
every part on one General MIDI instrument (:data:`INSTRUMENTS`: electric piano 2,
string ensemble, harp, flute, trumpet: the programs that render in tune under symusic 0.5.9,
so no substitute is played), at one tempo (:data:`TEMPI_BPM`: slow 60, moderate 96,
fast 144 quarter notes per minute; every tempo event replaced), cut to its first
:data:`CLIP_S` seconds. Grid: 5 instruments x 3 tempi x 2 modes x 2 takes = 60 tracks; the
mode is the piece's written mode (6 minor chorales; 3 major chorales and 3 major folk songs),
pieces rotated over the grid so that no piece goes with one instrument or tempo.

Each track is described as the platform describes it: the analyzer's real analysis
(:func:`musicaas_analyzer.analysis.analyze_signal`, tier one: tempo, key and mode, energy,
valence), the musicnn MTT tags run in-process with torch
(:func:`musicaas_model.musicnn.tag_patches` on the analysis's own log-mel patches,
summarised by :func:`musicaas.models.musicnn_contract.summarise`, as the analyzer service
does) and its metadata (title like "Chorale BWV 66.6" / "Folk song erk20 no. 3", composer or
artist, and a file name like ``bwv66.6_take2.wav``), through
:func:`musicaas_recommender.describe.describe_track`.

Queries (:data:`QUERIES`) name one to three of instrument, tempo class and mode
("slow piano piece in a minor key", "fast brass"); the relevant tracks are those rendered
with these attributes.

Methods
-------
* ``metadata keywords``: the baseline, what search sees without descriptions: the number
  of distinct query words (stop words out) found in the title, composer/artist and file
  name; ties in a fixed pseudo-random order per query (sha1 of query and track id). By construction the
  metadata does not name instrument, tempo or mode, so this sits at chance level.
* ``BM25 (Qdrant)``: the descriptions in the recommender's index
  (:class:`musicaas_recommender.index.EdgeTrackIndex`, a Qdrant Edge shard in a temporary
  folder), ``search(tenant, text)`` without a text vector: Qdrant Edge's BM25. When the
  index cannot be used, a numpy BM25 (k1 1.2, b 0.75, the same tokens) is used instead and
  the table says so.
* ``dense (MiniLM)``: cosine of the all-MiniLM-L6-v2 vectors of the query and of each
  description (:class:`musicaas_model.text_encoder.TextEncoderModel`, in-process: the
  code the model server runs), ranked with numpy.
* ``hybrid (Qdrant RRF)``: ``search(tenant, text, text_vector=...)``: Qdrant's
  reciprocal-rank fusion of the dense and BM25 rankings.
* ``dense, true attributes``: a diagnostic ceiling: the same dense ranking over
  descriptions written from the true instrument (as a free tag), tempo and key, i.e. what a
  perfect analysis would give; the gap to ``dense (MiniLM)`` is the cost of the analysis
  (musicnn's tags, the tempo and key estimates), the rest the cost of the text matching.
* ``chance``: the expected score of a random ranking.

Score: precision@5 with the denominator capped at the number of relevant tracks,
``hits in the top 5 / min(5, |relevant|)``, so that 1.0 is reachable by every query (the
three-attribute queries have 2 relevant tracks), averaged over the queries of each group
(1, 2 or 3 attributes named) and over all.

The table also reports how often the descriptions state the truth (tempo word, mode, and
the instrument's MTT tag where the vocabulary has one: MagnaTagATune has no brass tag).

Run::

    python bench/search.py              # about 4 minutes the first time (2 cores), seconds after
    python bench/search.py --verbose    # also each query's top 5 and a few descriptions
    python bench/search.py --refresh    # recompute the cached renders and analyses

Renders, analyses and tags are cached under ``~/.cache/musicaas-bench/search/`` (keyed by
the analyzer version and the tag model).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SR = 22050
CLIP_S = 30.0
#: name -> (General MIDI program, the MTT tag that names it or None, words for the true description)
INSTRUMENTS: dict[str, tuple[int, str | None, str]] = {
    "piano": (5, "piano", "piano"),
    "strings": (48, "strings", "strings"),
    "harp": (46, "harp", "harp"),
    "flute": (73, "flute", "flute"),
    "brass": (56, None, "brass, trumpet"),
}
TEMPI_BPM = {"slow": 60.0, "moderate": 96.0, "fast": 144.0}
MODES = ("major", "minor")
TAKES = 2
PIECES_PER_MODE = 6
TENANT = "bench"

#: (query, required attributes)
QUERIES: list[tuple[str, dict[str, str]]] = [
    ("piano music", {"instrument": "piano"}),
    ("a string ensemble", {"instrument": "strings"}),
    ("harp", {"instrument": "harp"}),
    ("flute melody", {"instrument": "flute"}),
    ("trumpet and brass", {"instrument": "brass"}),
    ("slow music", {"tempo": "slow"}),
    ("fast upbeat track", {"tempo": "fast"}),
    ("a piece in a minor key", {"mode": "minor"}),
    ("happy tune in a major key", {"mode": "major"}),
    ("slow piano", {"instrument": "piano", "tempo": "slow"}),
    ("fast brass", {"instrument": "brass", "tempo": "fast"}),
    ("fast flute tune", {"instrument": "flute", "tempo": "fast"}),
    ("slow strings", {"instrument": "strings", "tempo": "slow"}),
    ("harp in a minor key", {"instrument": "harp", "mode": "minor"}),
    ("piano in a major key", {"instrument": "piano", "mode": "major"}),
    ("slow piece in a minor key", {"tempo": "slow", "mode": "minor"}),
    ("fast piece in a major key", {"tempo": "fast", "mode": "major"}),
    ("slow piano piece in a minor key", {"instrument": "piano", "tempo": "slow", "mode": "minor"}),
    ("fast brass in a major key", {"instrument": "brass", "tempo": "fast", "mode": "major"}),
    ("moderate tempo flute in a minor key", {"instrument": "flute", "tempo": "moderate", "mode": "minor"}),
    ("strings at a moderate tempo in a major key", {"instrument": "strings", "tempo": "moderate", "mode": "major"}),
]

STOP = frozenset("a an and at in of on the with to for by piece music track tune song".split())


def cache_dir() -> Path:
    from musicaas.models.musicnn_contract import EMBEDDING_MODEL
    from musicaas_analyzer.analysis import ANALYZER_VERSION

    tag = f"a{ANALYZER_VERSION}-{EMBEDDING_MODEL.replace('/', '_')}-clip{int(CLIP_S)}"
    path = Path(os.environ.get("MUSICAAS_BENCH_CACHE", Path.home() / ".cache" / "musicaas-bench")) / "search" / tag
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- the set


@dataclass
class Piece:
    name: str  # "bwv66.6" or "essen-erk20-003"
    mode: str
    midi: bytes  # as written (music21 or symusic), any programs and tempo
    title: str
    composer: str = ""
    artist: str = ""


@dataclass
class Track:
    track_id: str
    piece: Piece
    instrument: str
    tempo: str
    take: int
    analysis: dict = field(default_factory=dict)  # tempo_bpm, key, mode, energy, valence, duration_s, tags, embedding
    description: str = ""
    true_description: str = ""

    @property
    def mode(self) -> str:
        return self.piece.mode

    @property
    def filename(self) -> str:
        return f"{self.piece.name}_take{self.take + 1}.wav"

    def attributes(self) -> dict[str, str]:
        return {"instrument": self.instrument, "tempo": self.tempo, "mode": self.mode}


def load_pieces(cache: Path, log) -> dict[str, list[Piece]]:
    """6 minor chorales; 3 major chorales and 3 major folk songs (cached as MIDI)."""
    index = cache / "pieces.json"
    if index.exists():
        rows = json.loads(index.read_text())
        pieces = [Piece(r["name"], r["mode"], (cache / f"{r['name']}.mid").read_bytes(), r["title"], r["composer"],
                        r["artist"]) for r in rows]
    else:
        from musicaas.chorales import iter_chorales

        log("parsing chorales and folk songs from the music21 corpus (once)...")
        pieces, need = [], {"minor": PIECES_PER_MODE, "major": PIECES_PER_MODE // 2}
        for ch in iter_chorales(200, stride=7):
            if need.get(ch.key.mode, 0) > 0:
                need[ch.key.mode] -= 1
                number = ch.name[3:] if ch.name.startswith("bwv") else ch.name
                pieces.append(Piece(ch.name, ch.key.mode, ch.midi, f"Chorale BWV {number}", composer="J. S. Bach"))
            if not any(need.values()):
                break
        from musicaas_model import data

        folk = [r for r in data.load_folk(None, progress=False, max_pieces=12) if r.key.mode == "major"]
        for r in folk[:: max(1, len(folk) // (PIECES_PER_MODE // 2))][: PIECES_PER_MODE // 2]:
            score = data.record_to_score(r)
            stem, number = r.name.split("-")[1], int(r.name.split("-")[2])
            pieces.append(Piece(r.name, "major", score.dumps_midi(), f"Folk song {stem} no. {number}",
                                artist="Traditional"))
        for p in pieces:
            (cache / f"{p.name}.mid").write_bytes(p.midi)
        index.write_text(json.dumps([{k: getattr(p, k) for k in ("name", "mode", "title", "composer", "artist")}
                                     for p in pieces], indent=1))
    by_mode = {m: [p for p in pieces if p.mode == m] for m in MODES}
    for m in MODES:
        if len(by_mode[m]) < PIECES_PER_MODE:
            raise SystemExit(f"only {len(by_mode[m])} {m} pieces found, need {PIECES_PER_MODE}")
    return by_mode


def build_tracks(pieces: dict[str, list[Piece]]) -> list[Track]:
    tracks = []
    names = list(INSTRUMENTS)
    tempos = list(TEMPI_BPM)
    for mode in MODES:
        pool = pieces[mode]
        for i, inst in enumerate(names):
            for j, tempo in enumerate(tempos):
                for take in range(TAKES):
                    piece = pool[(i + 2 * j + 3 * take) % len(pool)]
                    tid = f"{piece.name}-{inst}-{tempo}-{take}"
                    tracks.append(Track(tid, piece, inst, tempo, take))
    return tracks


def render(track: Track) -> np.ndarray:
    """The track's audio: every part on its instrument, one tempo, the first CLIP_S seconds."""
    import symusic

    from musicaas.render import render_midi

    score = symusic.Score.from_midi(track.piece.midi)
    program = INSTRUMENTS[track.instrument][0]
    bpm = TEMPI_BPM[track.tempo]
    tpq = score.ticks_per_quarter
    end_tick = int(CLIP_S * bpm / 60.0 * tpq)
    for t in score.tracks:
        t.program = program
        t.is_drum = False
        keep = [n for n in t.notes if n.time < end_tick]
        t.notes.clear()
        for n in keep:
            t.notes.append(symusic.Note(int(n.time), int(min(n.duration, end_tick - n.time + tpq)), int(n.pitch),
                                        int(n.velocity)))
    score.tempos.clear()
    score.tempos.append(symusic.Tempo(0, float(bpm)))
    y = render_midi(score.dumps_midi(), sample_rate_hz=SR)
    return y[: int(CLIP_S * SR)]


def analyse(track: Track, cache: Path, *, refresh: bool) -> dict:
    """Analysis fields and tags of the track (cached JSON)."""
    path = cache / f"{track.track_id}.json"
    if path.exists() and not refresh:
        return json.loads(path.read_text())
    from musicaas.models import musicnn_contract as mc
    from musicaas_analyzer.analysis import analyze_signal
    from musicaas_model.musicnn import tag_patches

    y = render(track)
    a = analyze_signal(y, sample_rate_hz=SR, detail=False)
    probs, pen = tag_patches(a.log_mel)
    tags = mc.summarise(probs, pen)
    out = {
        "tempo_bpm": float(a.tempo_bpm),
        "key": a.key.tonic if a.key is not None else "",
        "mode": a.key.mode if a.key is not None else "",
        "energy": float(a.features.energy),
        "valence": float(a.features.valence),
        "duration_s": float(a.duration_s),
        "loudness_lufs": float(a.loudness_lufs),
        "is_silent": bool(a.is_silent),
        "tags": [[n, round(float(s), 4)] for n, s in tags.tags],
        "embedding": [round(float(v), 6) for v in tags.embedding],
    }
    path.write_text(json.dumps(out))
    return out


def describe(track: Track) -> None:
    from musicaas_recommender.describe import describe_track

    a, p = track.analysis, track.piece
    meta = dict(title=p.title, composer=p.composer, artist=p.artist)
    track.description = describe_track(
        tempo_bpm=a["tempo_bpm"], key=a["key"], mode=a["mode"], energy=a["energy"], valence=a["valence"],
        duration_s=a["duration_s"], is_silent=a["is_silent"], tags=[tuple(t) for t in a["tags"]], **meta)
    # the true attributes: what a perfect analysis would say (the instrument as a free tag; the
    # tonic left out, as no query names one)
    track.true_description = describe_track(
        tempo_bpm=TEMPI_BPM[track.tempo], mode=track.mode, duration_s=a["duration_s"],
        free_tags=[w.strip() for w in INSTRUMENTS[track.instrument][2].split(",")], **meta)


# --------------------------------------------------------------------------- ranking


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _tiebreak(track_id: str, query: str = "") -> str:
    """A fixed pseudo-random order of the tracks, another one per query (ties are not broken
    by the order the grid was built in, which follows the attributes)."""
    return hashlib.sha1(f"{query}\0{track_id}".encode()).hexdigest()


def rank_metadata(query: str, tracks: list[Track]) -> list[str]:
    q = {t for t in tokens(query) if t not in STOP}
    scored = []
    for tr in tracks:
        words = set(tokens(" ".join([tr.piece.title, tr.piece.composer, tr.piece.artist, tr.filename])))
        scored.append((-len(q & words), _tiebreak(tr.track_id, query), tr.track_id))
    return [tid for *_, tid in sorted(scored)]


def rank_bm25_numpy(query: str, tracks: list[Track], *, k1: float = 1.2, b: float = 0.75) -> list[str]:
    docs = [tokens(t.description) for t in tracks]
    n = len(docs)
    avg = sum(map(len, docs)) / n
    df = Counter(w for d in docs for w in set(d))
    scores = []
    for tr, d in zip(tracks, docs):
        tf = Counter(d)
        s = 0.0
        for w in set(tokens(query)):
            if w in tf:
                idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
                s += idf * tf[w] * (k1 + 1) / (tf[w] + k1 * (1 - b + b * len(d) / avg))
        scores.append((-s, _tiebreak(tr.track_id, query), tr.track_id))
    return [tid for *_, tid in sorted(scores)]


def rank_dense(qvec: np.ndarray, dvecs: np.ndarray, tracks: list[Track]) -> list[str]:
    sims = dvecs @ qvec
    order = sorted(range(len(tracks)), key=lambda i: (-float(sims[i]), _tiebreak(tracks[i].track_id)))
    return [tracks[i].track_id for i in order]


async def index_rankings(tracks: list[Track], dvecs: np.ndarray, qvecs: np.ndarray, log):
    """``(bm25, hybrid)`` rankings (top 5 per query) from the recommender's Qdrant Edge index, or None."""
    try:
        from musicaas_recommender.index import EdgeTrackIndex, TrackMetadata, TrackPayload
    except Exception as exc:  # noqa: BLE001 - the bench falls back to numpy
        log(f"recommender index unavailable ({exc}); BM25 by numpy, no hybrid")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        index = EdgeTrackIndex(tmp, dim=200, optimize_interval_s=0)
        try:
            for tr, dv in zip(tracks, dvecs):
                a = tr.analysis
                payload = TrackPayload(
                    track_id=tr.track_id, key=a["key"] or None, mode=a["mode"] or None, tempo_bpm=a["tempo_bpm"],
                    source="upload", duration_s=a["duration_s"], loudness_lufs=max(-70.0, a["loudness_lufs"]),
                    title=tr.piece.title, metadata=TrackMetadata(composer=tr.piece.composer, artist=tr.piece.artist),
                    tags=tuple((n, s) for n, s in a["tags"]), energy=a["energy"], valence=a["valence"],
                    description=tr.description,
                )
                await index.upsert(TENANT, payload, np.asarray(a["embedding"], np.float32), text_vector=dv)
            bm25, hybrid = [], []
            for (q, _), qv in zip(QUERIES, qvecs):
                bm25.append([r.track_id for r in await index.search(TENANT, q, limit=5)])
                hybrid.append([r.track_id for r in await index.search(TENANT, q, text_vector=qv, limit=5)])
            return bm25, hybrid
        except Exception as exc:  # noqa: BLE001 - an index still being written: say so, use numpy
            log(f"recommender index search failed ({type(exc).__name__}: {exc}); BM25 by numpy, no hybrid")
            return None
        finally:
            await index.close()


def precision_at_5(ranked: list[str], relevant: set[str]) -> float:
    return sum(1 for tid in ranked[:5] if tid in relevant) / min(5, len(relevant))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", action="store_true", help="each query's top 5 and a few descriptions")
    parser.add_argument("--refresh", action="store_true", help="recompute cached renders and analyses")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    cache = cache_dir()
    pieces = load_pieces(cache, log)
    tracks = build_tracks(pieces)
    todo = [t for t in tracks if args.refresh or not (cache / f"{t.track_id}.json").exists()]
    if todo:
        log(f"rendering and analysing {len(todo)} of {len(tracks)} tracks (cached in {cache})...")
    t_an = time.perf_counter()
    for i, tr in enumerate(tracks):
        tr.analysis = analyse(tr, cache, refresh=args.refresh)
        if todo and (i + 1) % 10 == 0:
            log(f"  {i + 1}/{len(tracks)}")
    t_an = time.perf_counter() - t_an
    for tr in tracks:
        describe(tr)

    from musicaas_model.text_encoder import TextEncoderModel
    from musicaas_recommender.describe import tempo_word

    t_enc = time.perf_counter()
    encoder = TextEncoderModel.shipped(device="cpu")
    dvecs = encoder.encode([t.description for t in tracks])
    tvecs = encoder.encode([t.true_description for t in tracks])
    qvecs = encoder.encode([q for q, _ in QUERIES])
    t_enc = time.perf_counter() - t_enc

    t_idx = time.perf_counter()
    from_index = asyncio.run(index_rankings(tracks, dvecs, qvecs, log))
    t_idx = time.perf_counter() - t_idx

    relevant = [{t.track_id for t in tracks if all(t.attributes()[k] == v for k, v in want.items())}
                for _, want in QUERIES]
    methods: dict[str, list[list[str]]] = {
        "metadata keywords (baseline)": [rank_metadata(q, tracks) for q, _ in QUERIES],
    }
    if from_index is not None:
        methods["BM25 over descriptions (Qdrant Edge)"] = from_index[0]
    else:
        methods["BM25 over descriptions (numpy)"] = [rank_bm25_numpy(q, tracks) for q, _ in QUERIES]
    methods["dense MiniLM cosine (numpy)"] = [rank_dense(qv, dvecs, tracks) for qv in qvecs]
    if from_index is not None:
        methods["hybrid dense+BM25 RRF (Qdrant Edge)"] = from_index[1]
    methods["dense, true-attribute descriptions"] = [rank_dense(qv, tvecs, tracks) for qv in qvecs]

    n = len(tracks)
    chance = [5 * len(r) / n / min(5, len(r)) for r in relevant]
    groups = {k: [i for i, (_, want) in enumerate(QUERIES) if len(want) == k] for k in (1, 2, 3)}

    def summary(scores: list[float]) -> list[float]:
        return [float(np.mean([scores[i] for i in groups[k]])) for k in (1, 2, 3)] + [float(np.mean(scores))]

    print(f"\nFree-text search, {n} rendered tracks ({len(INSTRUMENTS)} instruments x {len(TEMPI_BPM)} tempi x "
          f"{len(MODES)} modes x {TAKES} takes), {len(QUERIES)} queries")
    print("precision@5 = hits in the top 5 / min(5, relevant); mean over queries naming 1, 2, 3 attributes, and all\n")
    header = f"{'method':40s} {'1 attr':>7s} {'2 attr':>7s} {'3 attr':>7s} {'all':>7s}"
    print(header)
    print("-" * len(header))
    per_query = {}
    for name, ranks in methods.items():
        scores = [precision_at_5(r, rel) for r, rel in zip(ranks, relevant)]
        per_query[name] = scores
        print(f"{name:40s} " + " ".join(f"{v:7.2f}" for v in summary(scores)))
    print(f"{'chance (expected)':40s} " + " ".join(f"{v:7.2f}" for v in summary(chance)))
    print(f"\n(queries per group: {len(groups[1])}, {len(groups[2])}, {len(groups[3])})")

    # how often the descriptions state the truth
    tempo_ok = np.mean([tempo_word(t.analysis["tempo_bpm"]) == t.tempo if t.analysis["tempo_bpm"] > 0 else False
                        for t in tracks])
    mode_ok = np.mean([t.analysis["mode"] == t.mode for t in tracks])
    inst_rows = [t for t in tracks if INSTRUMENTS[t.instrument][1]]
    inst_ok = np.mean([INSTRUMENTS[t.instrument][1] in t.description.lower() for t in inst_rows])
    print("\ndescriptions vs truth: tempo word right %.0f%%, mode right %.0f%%, instrument named %.0f%% "
          "(of the %d tracks whose instrument has an MTT tag)" % (100 * tempo_ok, 100 * mode_ok, 100 * inst_ok,
                                                                  len(inst_rows)))
    named = Counter()
    for t in tracks:
        for name, _ in t.analysis["tags"][:3]:
            named[(t.instrument, name)] += 1
    for inst in INSTRUMENTS:
        top = sorted(((c, tag) for (i, tag), c in named.items() if i == inst), reverse=True)[:4]
        print(f"  {inst:8s} top-3 tags most often: " + ", ".join(f"{tag} ({c})" for c, tag in top))

    print("\nper query (" + ", ".join(f"{i + 1}={name.split(' (')[0]}" for i, name in enumerate(methods)) + "):")
    for qi, (q, want) in enumerate(QUERIES):
        cells = " ".join(f"{per_query[m][qi]:4.2f}" for m in methods)
        print(f"  {q:45s} |R|={len(relevant[qi]):2d}  {cells}")
        if args.verbose:
            best = methods["dense MiniLM cosine (numpy)"][qi][:5]
            print("      dense top 5: " + ", ".join(best))
    if args.verbose:
        print("\nsample descriptions:")
        for t in tracks[:: max(1, n // 6)]:
            print(f"  {t.track_id}: {t.description}")
            print(f"  {'':{len(t.track_id)}s}  true: {t.true_description}")
    print(f"\ntime: analysis {t_an:.1f}s ({len(todo)} computed, {n - len(todo)} cached), text encoding "
          f"{t_enc:.1f}s (load + {2 * n + len(QUERIES)} texts), index {t_idx:.1f}s, "
          f"total {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
