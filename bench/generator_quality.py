"""Quality benchmark of the symbolic generator: likelihood, key adherence, controls, harmonisation.

One command, figures side by side::

    python bench/generator_quality.py [--checkpoint PATH] [--quick] [--out result.json] [--figures DIR]

Measured (the model is the checkpoint's, sampled in process with the server's own
sampler and decoding constraints, :func:`musicaas_model.model.generate`):

1. **Token NLL** (nats/token) on the test split (chorales, and folk tunes), the same
   windows and scored tokens as training's evaluation, against an n-gram baseline fitted
   on the same (transposition-augmented) training token sequences: interpolated absolute
   discounting (Ney, Essen & Kneser 1994) with order chosen on the valid split among
   2..7 (on this corpus the 6-gram wins: the REMI grammar makes long contexts cheap to
   count). Target: model NLL >= 25% lower.
2. **Key adherence** over 96 pieces (4 per key, all 24 keys; 8 bars; chorale style;
   metre alternating 4/4 and 3/4, tempo 70/90/110/130 bpm): the MIDI is rendered to audio
   (:func:`musicaas.render.render_midi`) and analysed by the project's analyzer
   (:func:`musicaas_analyzer.analysis.analyze_signal`), with music21's symbolic
   ``analyze('key')`` (Krumhansl-Schmuckler) as a second opinion; the same analyses of
   the first 8 bars of the real test-split chorales are the reference. Sampled with the
   server's default key-guided decoding (:mod:`musicaas_model.constraints`); the full run
   also reports the model without it. Target: >= 90%.
3. **Controls**: the share of pieces whose MIDI parses with the requested time
   signature, bar count (bars spanned by the notes) and tempo. Target: 100%.
4. **Pitch-class histogram distance**: total variation distance between the
   key-relative, duration-weighted pitch-class histogram of the generated pieces and of
   the test split, per mode (0 = identical, 1 = disjoint).
5. **Harmonisation**: the top line of test-split chorales (highest note at each onset,
   first 8 bars) is harmonised by the model; the share of melody notes kept as the top
   voice (:func:`musicaas_generator.tokens.soprano_kept`). Target: 100%.

``--quick`` uses 1 piece per key, 4 melodies and a smaller n-gram search (about a minute).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = ROOT / "services" / "generator" / "musicaas_model" / "checkpoint" / "model.pt"
CACHE = Path.home() / ".cache" / "musicaas"


# ----------------------------------------------------------------------------- n-gram baseline


class NGram:
    """Interpolated absolute-discounting n-gram model over token ids (Ney, Essen & Kneser 1994)."""

    def __init__(self, order: int, vocab_size: int, discount: float = 0.75) -> None:
        self.order = order
        self.V = vocab_size
        self.d = discount
        self.counts = [defaultdict(Counter) for _ in range(order)]  # level k: context of k tokens -> next counts

    def fit(self, sequences) -> "NGram":
        for seq in sequences:
            for i, tok in enumerate(seq):
                for k in range(self.order):
                    if i - k < 0:
                        break
                    self.counts[k][tuple(seq[i - k : i])][tok] += 1
        self.totals = [{c: sum(cnt.values()) for c, cnt in level.items()} for level in self.counts]
        return self

    def prob(self, context: tuple, tok: int, order: int | None = None) -> float:
        """P(tok | context) interpolated over the orders 1..``order`` (default: the fitted order)."""
        p = 1.0 / self.V
        for k in range(order or self.order):
            if k > len(context):
                break
            ctx = tuple(context[len(context) - k :]) if k else ()
            cnt = self.counts[k].get(ctx)
            if not cnt:
                break
            total = self.totals[k][ctx]
            p = max(cnt.get(tok, 0) - self.d, 0.0) / total + self.d * len(cnt) / total * p
        return p

    def nll(self, windows, n_prefix: int, order: int | None = None) -> float:
        """Mean -log p over the tokens a model is scored on (after the control prefix)."""
        order = order or self.order
        total, count = 0.0, 0
        for w in windows:
            for i in range(n_prefix, len(w)):
                ctx = tuple(w[max(0, i - order + 1) : i])
                total -= math.log(self.prob(ctx, w[i], order))
                count += 1
        return total / max(1, count)


def fit_baseline(train_seqs, valid_windows, n_prefix: int, orders, vocab_size: int) -> tuple[NGram, int]:
    """Fit one :class:`NGram` of the largest order in ``orders`` and pick the order with the lowest valid NLL.

    The lower orders reuse the first levels of the same counts, so the search costs one fit.
    Returns the model and the chosen order (score test windows with ``ngram.nll(w, n_prefix, order)``).
    """
    ngram = NGram(max(orders), vocab_size).fit(train_seqs)
    return ngram, min(orders, key=lambda o: ngram.nll(valid_windows, n_prefix, o))


# ----------------------------------------------------------------------------- helpers


def key_relative_histogram(notes, key) -> np.ndarray:
    h = np.zeros(12)
    for _onset, duration, pitch in notes:
        h[(pitch - key.tonic_pc) % 12] += duration
    return h / h.sum() if h.sum() else h


def top_line(notes, end_q: float):
    """Highest note at each onset before ``end_q`` quarters, cut at the next onset: a monophonic melody."""
    by_onset = defaultdict(list)
    for onset, duration, pitch in notes:
        if onset < end_q:
            by_onset[onset].append((pitch, duration))
    onsets = sorted(by_onset)
    line = []
    for i, onset in enumerate(onsets):
        pitch, duration = max(by_onset[onset])
        nxt = onsets[i + 1] if i + 1 < len(onsets) else end_q
        line.append((onset, min(duration, nxt - onset, end_q - onset), pitch))
    # keep a note only while it is not under a still-sounding higher earlier note
    return [n for n in line if n[1] > 0]


def parse_check(midi: bytes, metre: str, bars: int, tempo: float) -> dict:
    import symusic

    score = symusic.Score.from_midi(midi)
    num, den = (int(x) for x in metre.split("/"))
    ts_ok = bool(score.time_signatures) and all(
        (t.numerator, t.denominator) == (num, den) for t in score.time_signatures
    )
    tempo_ok = len(score.tempos) >= 1 and abs(score.tempos[0].qpm - tempo) < 0.01 * tempo
    tpq = score.ticks_per_quarter
    onsets = [n.time / tpq for t in score.tracks for n in t.notes]
    bar_q = num * 4 / den
    spanned = int(max(onsets) // bar_q) + 1 if onsets else 0
    return {"time_signature": ts_ok, "tempo": bool(tempo_ok), "bars": spanned == bars, "bars_found": spanned}


def audio_key(midi: bytes, sr: int = 22050):
    from musicaas.render import render_midi
    from musicaas_analyzer.analysis import analyze_signal

    y = render_midi(midi, sample_rate_hz=sr)
    return analyze_signal(y.astype(np.float32), sample_rate_hz=sr, detail=False).key


def _notes_of(midi: bytes):
    import symusic

    score = symusic.Score.from_midi(midi)
    tpq = score.ticks_per_quarter
    return [(n.time / tpq, n.duration / tpq, n.pitch) for t in score.tracks for n in t.notes]


def _record_midi(record, end_q: float, tempo: float = 80.0) -> bytes:
    import symusic

    from musicaas_model import data

    score = data.record_to_score(record)
    for track in score.tracks:
        keep = [n for n in track.notes if n.time < end_q * data.TICKS_PER_QUARTER]
        track.notes.clear()
        for n in keep:
            track.notes.append(n)
        track.program = 52
    score.tempos.append(symusic.Tempo(0, tempo))
    return bytes(score.dumps_midi())


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--quick", action="store_true", help="1 piece per key, 4 melodies, n-gram orders 3-5 only")
    p.add_argument("--per-key", type=int, default=None, help="pieces per key (default 4, --quick 1)")
    p.add_argument("--bars", type=int, default=8)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--melodies", type=int, default=None, help="melodies to harmonise (default 16, --quick 4)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-key-guidance", action="store_true",
                   help="sample without key-guided decoding (the full run also reports that side by side)")
    p.add_argument("--out", default=None, help="write all figures as JSON here")
    p.add_argument("--figures", default=None, help="write eval_keys.png and eval_pitch_classes.png here")
    p.add_argument("--update-card", action="store_true",
                   help="write the figures next to the checkpoint and replace the '## Evaluation' section of its "
                        "MODEL_CARD.md with these results")
    args = p.parse_args(argv)
    per_key = args.per_key or (1 if args.quick else 4)
    n_melodies = args.melodies or (4 if args.quick else 16)

    import torch

    from musicaas.keys import ALL_KEYS, Key
    from musicaas_generator import tokens
    from musicaas_model import data, train
    from musicaas_model.constraints import Grammar
    from musicaas_model.evaluate import analyse_notes
    from musicaas_model.model import GenerationRequest, generate, load_checkpoint

    torch.set_num_threads(args.threads)
    t0 = time.time()
    model, special, _meta = load_checkpoint(args.checkpoint)
    tok = tokens.load_tokenizer(Path(args.checkpoint).with_name("tokenizer.json"))
    vocab = dict(tok.vocab)
    if len(vocab) != model.cfg.vocab_size:
        raise SystemExit(f"tokenizer ({len(vocab)} ids) does not match the checkpoint ({model.cfg.vocab_size})")
    grammar = Grammar.from_vocab(vocab)
    n_prefix = data.prefix_length(tok)
    result: dict = {"checkpoint": str(args.checkpoint), "quick": args.quick}

    # 1. likelihood vs n-gram ------------------------------------------------------------
    records = data.load_chorales(CACHE / "bach_chorales.json", progress=False)
    folk = data.load_folk(CACHE / "essen_folk.json", progress=False) if (CACHE / "essen_folk.json").exists() else []
    train_r, valid_r, test_r = data.split_records(records)
    ftrain_r, fvalid_r, ftest_r = data.split_records(folk) if folk else ([], [], [])
    max_len = model.cfg.block_size + 1
    test_w = train._eval_windows(data.encode_records(tok, test_r, augment=False), tok, max_len)
    valid_w = train._eval_windows(data.encode_records(tok, valid_r, augment=False), tok, max_len)
    ftest_w = train._eval_windows(data.encode_records(tok, ftest_r, augment=False), tok, max_len) if folk else []
    model_nll = train.evaluate(model, test_w, special.pad, n_prefix=n_prefix)
    model_fnll = train.evaluate(model, ftest_w, special.pad, n_prefix=n_prefix) if ftest_w else None
    train_seqs = []
    for pieces in (data.encode_records(tok, train_r, augment=not args.quick),
                   data.encode_records(tok, ftrain_r, augment=not args.quick)):
        for piece in pieces:
            train_seqs.append(data.prompt_ids(tok, Key.from_index(piece.key_index), min(32, piece.num_bars),
                                              style=piece.style, metre=piece.metre) + piece.ids)
    orders = (3, 4, 5) if args.quick else (2, 3, 4, 5, 6, 7)
    ngram, order = fit_baseline(train_seqs, valid_w, n_prefix, orders, len(vocab))
    ngram_nll = ngram.nll(test_w, n_prefix, order)
    ngram_fnll = ngram.nll(ftest_w, n_prefix, order) if ftest_w else None
    result["nll"] = {
        "model_test_chorales": model_nll, "ngram_test_chorales": ngram_nll, "ngram_order": order,
        "reduction": 1 - model_nll / ngram_nll, "model_test_folk": model_fnll, "ngram_test_folk": ngram_fnll,
        "train_sequences": len(train_seqs),
    }
    print(f"[nll done in {time.time() - t0:.0f}s]", file=sys.stderr)

    # 2-4. key adherence, controls, pitch classes -----------------------------------------
    t1 = time.time()
    tempos = (70.0, 90.0, 110.0, 130.0)
    jobs = []
    for key in ALL_KEYS:
        for j in range(per_key):
            metre = "4/4" if j % 2 == 0 else "3/4"
            jobs.append((key, j, metre, tempos[j % 4]))
    def sample_rows(guided: bool) -> list[dict]:
        rows = []
        batch = 24
        for b in range(0, len(jobs), batch):
            chunk = jobs[b : b + batch]
            reqs = [
                GenerationRequest(tokens.build_prompt(key, args.bars, metre=metre, tempo_bpm=tempo, tokenizer=tok),
                                  args.temperature, 1000 + 31 * key.index + j, args.bars,
                                  min(4096, 130 * args.bars), args.top_k, args.top_p, None, guided)
                for key, j, metre, tempo in chunk
            ]
            outs = generate(model, reqs, special, grammar)
            for (key, j, metre, tempo), out in zip(chunk, outs):
                midi = tokens.tokens_to_midi(out, tempo_bpm=tempo, program=52, metre=metre, tokenizer=tok)
                notes = _notes_of(midi)
                found_audio = audio_key(midi)
                found_sym = analyse_notes(notes)
                rows.append({
                    "requested": str(key), "metre": metre, "tempo": tempo, "tokens": len(out), "guided": guided,
                    "audio_key": str(found_audio) if found_audio else None,
                    "music21_key": str(found_sym) if found_sym else None,
                    **parse_check(midi, metre, args.bars, tempo),
                    "hist": key_relative_histogram(notes, key).tolist(),
                })
        return rows

    def adherence_of(rows):
        n = max(1, len(rows))
        return {
            "pieces": len(rows),
            "analyzer_audio": sum(r["audio_key"] == r["requested"] for r in rows) / n,
            "music21_symbolic": sum(r["music21_key"] == r["requested"] for r in rows) / n,
            "by_mode_analyzer": {m: float(np.mean([r["audio_key"] == r["requested"] for r in rows
                                                   if r["requested"].endswith(m)])) for m in ("major", "minor")},
        }

    rows = sample_rows(not args.no_key_guidance)
    unguided = sample_rows(False) if (not args.quick and not args.no_key_guidance) else []
    gen_s = time.time() - t1
    n = len(rows)
    adherence = adherence_of(rows)
    adherence["key_guidance"] = not args.no_key_guidance
    if unguided:
        adherence["without_key_guidance"] = adherence_of(unguided)
    controls = {
        "time_signature": sum(r["time_signature"] for r in rows) / n,
        "bars": sum(r["bars"] for r in rows) / n,
        "tempo": sum(r["tempo"] for r in rows) / n,
        "all": sum(r["time_signature"] and r["bars"] and r["tempo"] for r in rows) / n,
    }
    # reference: real test-split chorales, first 8 bars, same two analysers
    ref = []
    for record in test_r[: (8 if args.quick else len(test_r))]:
        bar_q = record.time_signature[0] * 4 / record.time_signature[1]
        midi = _record_midi(record, args.bars * bar_q)
        found_audio = audio_key(midi)
        found_sym = analyse_notes(_notes_of(midi))
        ref.append((record.key, found_audio, found_sym, key_relative_histogram(
            [x for x in record.notes if x[0] < args.bars * bar_q], record.key)))
    adherence["reference_test_chorales"] = {
        "pieces": len(ref),
        "analyzer_audio": sum(r[1] == r[0] for r in ref) / max(1, len(ref)),
        "music21_symbolic": sum(r[2] == r[0] for r in ref) / max(1, len(ref)),
    }
    # pitch-class histogram distance per mode (test split = all test chorales, full length)
    def tv_of(rows):
        tv = {}
        for mode in ("major", "minor"):
            gen = [np.array(r["hist"]) for r in rows if r["requested"].endswith(mode)]
            real = [key_relative_histogram(rec.notes, rec.key) for rec in test_r if rec.key.mode == mode]
            if gen and real:
                tv[mode] = 0.5 * float(np.abs(np.mean(gen, 0) - np.mean(real, 0)).sum())
        return tv

    tv = tv_of(rows)
    if unguided:
        tv.update({f"{mode} (no key guidance)": d for mode, d in tv_of(unguided).items()})
    result["key_adherence"] = adherence
    result["controls"] = controls
    result["pitch_class_tv_distance"] = tv
    result["generation_seconds"] = round(gen_s, 1)
    print(f"[keys done in {gen_s:.0f}s]", file=sys.stderr)

    # 5. harmonisation -----------------------------------------------------------------------
    t2 = time.time()
    kept = []
    mel_rows = []
    candidates = [r for r in test_r if r.time_signature == (4, 4)][:n_melodies]
    reqs, melodies = [], []
    for i, record in enumerate(candidates):
        line = top_line(record.notes, args.bars * 4.0)
        melody = [tokens.MelodyNote(float(s), float(d), int(p)) for s, d, p in line]
        bars = tokens.melody_bars(melody)
        prompt = tokens.build_prompt(record.key, bars, tokenizer=tok)
        reqs.append(GenerationRequest(prompt, args.temperature, 500 + i, bars, 4096, args.top_k, args.top_p,
                                      [(m.start_beats, m.duration_beats, m.pitch) for m in melody]))
        melodies.append(melody)
    for b in range(0, len(reqs), 8):
        outs = generate(model, reqs[b : b + 8], special, grammar)
        for out, melody, record in zip(outs, melodies[b : b + 8], candidates[b : b + 8]):
            midi = tokens.tokens_to_midi(out, tempo_bpm=80, program=52, tokenizer=tok)
            share = tokens.soprano_kept(midi, melody)
            kept.append(share)
            mel_rows.append({"piece": record.name, "notes": len(melody), "kept": share,
                             "voices_per_onset": len(_notes_of(midi)) / max(1, len(melody))})
    result["harmonisation"] = {
        "melodies": len(kept), "soprano_kept_mean": float(np.mean(kept)) if kept else None,
        "soprano_kept_min": float(np.min(kept)) if kept else None,
        "mean_notes_per_melody_note": float(np.mean([r["voices_per_onset"] for r in mel_rows])) if mel_rows else None,
        "seconds": round(time.time() - t2, 1),
    }
    result["total_seconds"] = round(time.time() - t0, 1)

    # report ------------------------------------------------------------------------------------
    nll = result["nll"]
    ok = lambda cond: "ok" if cond else "MISSED"  # noqa: E731
    print()
    print(f"generator quality: {args.checkpoint} ({result['total_seconds']:.0f}s)")
    print(f"{'measure':46s} {'model':>10s} {'baseline/ref':>13s} {'target':>12s}")
    print(f"{'NLL test chorales (nats/token)':46s} {nll['model_test_chorales']:10.3f} "
          f"{nll['ngram_test_chorales']:13.3f} {'-25% ' + ok(nll['reduction'] >= 0.25):>12s}")
    print(f"{'  reduction vs ' + str(order) + '-gram':46s} {nll['reduction']:10.1%}")
    if model_fnll is not None:
        print(f"{'NLL test folk (nats/token)':46s} {model_fnll:10.3f} {ngram_fnll:13.3f}")
    a = adherence
    print(f"{'key adherence, analyzer on audio (' + str(n) + ')':46s} {a['analyzer_audio']:10.1%} "
          f"{a['reference_test_chorales']['analyzer_audio']:13.1%} {'>=90% ' + ok(a['analyzer_audio'] >= 0.9):>12s}")
    print(f"{'key adherence, music21 symbolic':46s} {a['music21_symbolic']:10.1%} "
          f"{a['reference_test_chorales']['music21_symbolic']:13.1%}")
    print(f"{'  analyzer: major / minor':46s} {a['by_mode_analyzer']['major']:10.1%} "
          f"{a['by_mode_analyzer']['minor']:13.1%}")
    if "without_key_guidance" in a:
        u = a["without_key_guidance"]
        print(f"{'key adherence without key guidance, analyzer':46s} {u['analyzer_audio']:10.1%}")
        print(f"{'key adherence without key guidance, music21':46s} {u['music21_symbolic']:10.1%}")
    print(f"{'MIDI parses with metre+bars+tempo':46s} {controls['all']:10.1%} {'':13s} "
          f"{'100% ' + ok(controls['all'] == 1.0):>12s}")
    print(f"{'  metre / bars / tempo':46s} {controls['time_signature']:10.1%} {controls['bars']:13.1%} "
          f"{controls['tempo']:12.1%}")
    for mode, d in tv.items():
        print(f"{'pitch-class TV distance to test, ' + mode:46s} {d:10.3f}")
    h = result["harmonisation"]
    if kept:
        print(f"{'harmonisation: soprano kept (' + str(len(kept)) + ' melodies)':46s} {h['soprano_kept_mean']:10.1%} "
              f"{'min ' + format(h['soprano_kept_min'], '.0%'):>13s} {'100% ' + ok(h['soprano_kept_min'] == 1.0):>12s}")
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "rows": rows + unguided, "melody_rows": mel_rows}, indent=1))
    if args.figures:
        write_figures(Path(args.figures), rows, test_r)
    if args.update_card:
        write_figures(Path(args.checkpoint).parent, rows, test_r)
        update_card(Path(args.checkpoint).with_name("MODEL_CARD.md"), result, args)
    return 0


def update_card(card: Path, r: dict, args) -> None:
    """Replace (or append) the ``## Evaluation`` section of the model card."""
    nll, a, c, h = r["nll"], r["key_adherence"], r["controls"], r["harmonisation"]
    ref = a["reference_test_chorales"]
    lines = [
        "## Evaluation",
        "",
        f"`python bench/generator_quality.py{' --quick' if args.quick else ''} --update-card` "
        f"({r['total_seconds']:.0f} s on the shared 2-core machine):",
        "",
        "| measure | model | baseline / reference | target |",
        "|---|---|---|---|",
        f"| NLL, test chorales (nats/token) | {nll['model_test_chorales']:.3f} | {nll['ngram_order']}-gram "
        f"{nll['ngram_test_chorales']:.3f} (model {abs(nll['reduction']):.1%} "
        f"{'below' if nll['reduction'] >= 0 else 'above'} the n-gram) | >= 25% lower |",
    ]
    if nll.get("model_test_folk") is not None:
        lines.append(f"| NLL, test folk tunes (nats/token) | {nll['model_test_folk']:.3f} | "
                     f"{nll['ngram_test_folk']:.3f} | |")
    lines += [
        f"| key adherence, project analyzer on rendered audio ({a['pieces']} pieces, key guidance on) | "
        f"{a['analyzer_audio']:.1%} | real test chorales {ref['analyzer_audio']:.1%} | >= 90% |",
        f"| key adherence, music21 `analyze('key')` | {a['music21_symbolic']:.1%} | real test chorales "
        f"{ref['music21_symbolic']:.1%} | |",
    ]
    if "without_key_guidance" in a:
        u = a["without_key_guidance"]
        lines.append(f"| key adherence without key guidance (analyzer / music21) | {u['analyzer_audio']:.1%} / "
                     f"{u['music21_symbolic']:.1%} | | |")
    lines += [
        f"| MIDI with the requested metre, bars and tempo | {c['all']:.1%} | | 100% |",
    ]
    for mode, d in r["pitch_class_tv_distance"].items():
        lines.append(f"| pitch-class histogram distance to the test split ({mode}, total variation) | {d:.3f} | | |")
    if h["melodies"]:
        lines.append(f"| harmonisation: soprano notes kept ({h['melodies']} test-chorale melodies) | "
                     f"{h['soprano_kept_mean']:.1%} (min {h['soprano_kept_min']:.0%}) | | 100% |")
    lines += [
        "",
        "Key guidance (the server's default, `KEY_GUIDANCE` input) masks pitches outside the key's scale, keeps the "
        "first and last bar on the tonic triad and favours the tonic triad's pitches; the row without it is the "
        "model's own distribution. Harmonisation keeps the melody by construction (constrained decoding).",
        "",
        "![requested vs analysed key](eval_keys.png)",
        "",
        "![pitch classes relative to the tonic](eval_pitch_classes.png)",
        "",
    ]
    from musicaas_model.card import write_card_section

    write_card_section(card, lines)


def write_figures(out: Path, rows: list[dict], test_records) -> None:
    """``eval_keys.png`` (requested vs analysed key) and ``eval_pitch_classes.png`` (key-relative histograms)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from musicaas.keys import ALL_KEYS

    out.mkdir(parents=True, exist_ok=True)
    names = [str(k) for k in ALL_KEYS]
    conf = np.zeros((24, 25))
    for r in rows:
        i = names.index(r["requested"])
        j = names.index(r["audio_key"]) if r["audio_key"] in names else 24
        conf[i, j] += 1
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(conf, cmap="Blues")
    ax.set_xticks(range(25), names + ["none"], rotation=90, fontsize=6)
    ax.set_yticks(range(24), names, fontsize=6)
    ax.set_xlabel("key found by the analyzer (rendered audio)")
    ax.set_ylabel("requested key")
    ax.set_title("key adherence")
    fig.tight_layout()
    fig.savefig(out / "eval_keys.png", dpi=110)
    plt.close(fig)

    labels = ["1", "b2", "2", "b3", "3", "4", "#4", "5", "b6", "6", "b7", "7"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for ax, mode in zip(axes, ("major", "minor")):
        gen = [np.array(r["hist"]) for r in rows if r["requested"].endswith(mode)]
        real = [key_relative_histogram(rec.notes, rec.key) for rec in test_records if rec.key.mode == mode]
        x = np.arange(12)
        if gen:
            ax.bar(x - 0.2, np.mean(gen, 0), 0.4, label="generated")
        if real:
            ax.bar(x + 0.2, np.mean(real, 0), 0.4, label="test split")
        ax.set_xticks(x, labels)
        ax.set_title(f"{mode}: pitch classes relative to the tonic")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "eval_pitch_classes.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
