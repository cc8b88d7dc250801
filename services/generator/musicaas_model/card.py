"""The model card and the training figure of the symbolic model (no torch).

* :func:`write_model_card`: ``MODEL_CARD.md`` from the summary that
  :func:`musicaas_model.train.main` writes to ``train_log.json`` (data, licence, splits,
  steps, losses, date).
* :func:`plot_losses`: ``loss.png``, the training curve.
* :func:`write_card_section`: replace or append one ``## `` section of a card (the
  evaluation command and the quality benchmark add theirs: :mod:`musicaas_model.evaluate`,
  ``bench/generator_quality.py``).
"""

from __future__ import annotations

import math
from pathlib import Path


def plot_losses(out: Path, log: list[dict], losses: list[float]) -> None:
    """``loss.png``: per-step train loss (and its running mean) with the valid loss at each evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if losses:
        ax.plot(range(1, len(losses) + 1), losses, color="0.75", lw=0.8, label="train (per step)")
        k = 25
        if len(losses) >= k:
            run = [sum(losses[i - k : i]) / k for i in range(k, len(losses) + 1)]
            ax.plot(range(k, len(losses) + 1), run, color="C0", label=f"train (mean of {k})")
    if log:
        ax.plot([e["step"] for e in log], [e["valid_loss"] for e in log], "o-", color="C1", label="valid")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title("musicaas symbolic model: training")
    ax.grid(alpha=0.3)
    if losses or log:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=110)
    plt.close(fig)


def write_model_card(out: Path, summary: dict, *, torch_version: str) -> None:
    """``MODEL_CARD.md`` in ``out`` from the training summary of :func:`musicaas_model.train.main`
    (keeps an existing ``## Evaluation`` section and what follows it)."""
    s = summary
    cfg = s["config"]
    splits = s["splits"]
    lines = [
        "# musicaas symbolic model (Bach chorales + Essen folk songs, REMI, with controls)",
        "",
        f"Trained {s['date']} (musicaas_model, torch {torch_version}, {s['threads']} CPU thread{'s' if s['threads'] != 1 else ''}, "
        f"{s['wall_minutes']:.1f} min wall time in all, on a 2-core machine shared with other jobs) with:",
        "",
        *[f"- `python -m musicaas_model.train {' '.join(x['argv'])}` (from step {x['start_step']}, "
          f"{x['wall_minutes']:.1f} min)" for x in s["sessions"]],
        "",
    ]
    if s.get("init_from"):
        lines += [
            f"Warm-started from `{s['init_from']}`, a checkpoint of the same layer sizes"
            + (f" (trained {m['date']}, {m['steps_done']} steps, chorale test loss {m['test_loss']:.3f})"
               if (m := s.get("init_meta") or {}).get("test_loss") is not None else "")
            + "; token embeddings were mapped by token name, tokens new to this vocabulary started from the usual "
            "random init.",
            "",
        ]
    lines += [
        "## What it is",
        "",
        f"A decoder-only Transformer (GPT-style, Radford et al. 2019; {cfg['n_layer']} layers, d_model "
        f"{cfg['d_model']}, {cfg['n_head']} heads, d_ff {cfg['d_ff']}, context {cfg['block_size']} tokens, "
        f"{s['parameters']:,} parameters) over REMI tokens (Huang & Yang 2020) produced by miditok's `REMI` "
        "tokenizer (`tokenizer.json`: Bar, TimeSig (3/4, 4/4), Position (16th notes), Pitch (MIDI 21-108), "
        "Duration; no velocity, no tempo).",
        "",
        "Every sequence starts with a control prefix (CTRL-style conditioning tokens, Keskar et al. 2019):",
        "",
        "| token | values | learned from |",
        "|---|---|---|",
        "| `Style_<s>` | `chorale`, `folk` | the corpus a piece comes from |",
        "| `Key_<tonic>-<mode>` | 24 keys | the written key (chorales) / key signature + final note (folk) |",
        "| `Metre_<n>-<d>` | `4-4`, `3-4` | the piece's time signature |",
        "| `TempoBin_<i>` | 8 bins, edges 60/72/84/96/108/120/144 bpm | nothing: the corpora carry no tempo; drawn "
        "uniformly in training so the model ignores it; the tempo is written into the MIDI file |",
        "| `Inst_<f>` | the 16 General MIDI families (program // 8) | nothing: drawn uniformly in training; the "
        "program is written into the MIDI file (the renderer substitutes an in-tune instrument of the family) |",
        "| `Bars_<n>` | 1-32 | the number of bars that follow `BOS` |",
        "",
        "then `BOS`, then an optional primer (REMI bars to continue). The server (PyTriton) samples with "
        "temperature, top-k (Fan et al. 2018) and top-p (Holtzman et al. 2020), one seeded `torch.Generator` per "
        "request (same seed and parameters -> same tokens -> same MIDI), a KV cache, and decoding constraints "
        "(`musicaas_model/constraints.py`): the REMI grammar with the requested metre (so the MIDI always has the "
        "requested time signature and bar count), optional key guidance (default on: pitches outside the key's "
        "scale masked, first and last bar on the tonic triad), and melody harmonisation (the given melody is "
        "clamped as the top voice, the other voices are sampled below it; Hokamp & Liu 2017; cf. Coconet, Huang "
        "et al. 2017 and DeepBach, Hadjeres et al. 2017).",
        "",
        f"All voices are merged into one track. It is a small model trained for {s['wall_minutes']:.0f} minutes on a "
        "shared CPU: "
        "expect chorale-like four-part textures and folk-like melodies whose pitch content follows the key; "
        "voice leading, cadences and form are weak.",
        "",
        "## Data",
        "",
        f"- **Bach chorales** bundled with music21 {s['music21_version']} (`music21.corpus.getComposer('bach')`): "
        "scores whose time signature is 4/4 or 3/4 throughout and whose first written `music21.key.Key` is major "
        f"or minor ({s['pieces_total']} pieces); pickup bars padded to the bar grid.",
        f"- **Essen folk songs** (music21's `essenFolksong` ABC files {', '.join(s.get('folk_files', []))}): tunes "
        "in 4/4 or 3/4 throughout whose final note is the tonic of the key signature's major key or of its "
        f"relative minor (modal endings dropped), the first {s.get('folk_pieces_total', 0)} in file order "
        "(a cap that keeps parsing to a few minutes). Nearly all are major (the collection is mostly major "
        "German songs), so folk + minor prompts rely on transposition and the chorales.",
        "",
        f"Split by piece (alternative chorale versions `bwvX.Y-*` stay together), per corpus, sorted names shuffled "
        f"with seed {s['split_seed']}, 80/10/10 (the test/valid names are in `train_log.json`):",
        "",
        "| split | pieces | sequences | tokens |",
        "|---|---|---|---|",
    ]
    for name in ("train", "valid", "test", "folk_train", "folk_valid", "folk_test"):
        if name in splits:
            sp = splits[name]
            lines.append(f"| {name.replace('_', ' ')} | {sp['pieces']} | {sp['sequences']} | {sp['tokens']:,} |")
    lines += [
        "",
        "Train pieces are transposed by -5..+6 semitones (all 12 tonics of their mode, so every key is covered); "
        f"valid and test stay in their written keys. Training windows: a random piece (folk with probability "
        f"{s.get('folk_share', 0):.2f}), 30% from its first bar, else from a random bar; the prefix's tempo and "
        "instrument drawn uniformly.",
        "",
        "### Licence of the data",
        "",
        "- Bach's chorale harmonisations are in the public domain. The encodings come from the music21 corpus, which "
        "music21's `corpus/license.txt` describes as distributed with the permission of the encoders and, to the "
        "best of the music21 authors' knowledge, either out of copyright in the United States or licensed for use, "
        "with the caveat that some encodings may carry restrictions (possibly on commercial use) stated in the "
        "individual files or directories.",
        "- The Essen folksong collection: music21's `corpus/essenFolksong/license.txt` says its legal status is "
        "unclear (entered by many people, under Helmut Schaffrath, continued by Ewa Dahlig-Turek, who gave "
        "permission for **non-commercial** distribution and use in music21); the ABC encodings are by Seymour "
        "Schlien, distributed with music21 by his permission.",
        "- The music21 software is BSD-licensed; its authors assume no copyright or change in licensing for the "
        "corpus. **Because of the Essen data, treat this checkpoint as for non-commercial use** unless that "
        "permission is extended (or retrain with `--no-folk`).",
        "",
        "## Training",
        "",
        f"- steps: {s['steps_done']} (planned {s['steps_planned']}; the time budget binds first), batch "
        f"{s['batch_size']} windows of up to {cfg['block_size']} tokens, {s['tokens_seen']:,} tokens seen",
        f"- AdamW, peak lr {s['lr']}, {s['warmup']} warm-up steps, cosine decay to 10%, weight decay "
        f"{s['weight_decay']}, dropout {cfg['dropout']}, grad-norm clip 1.0, seed {s['seed']}; the schedule's "
        "progress is max(step / steps, loop time / --max-minutes)",
        f"- final train loss (mean of the last {s['train_loss_window']} steps): {s['train_loss']:.3f} nats/token",
        f"- valid loss (chorales + folk): {s['valid_loss']:.3f} nats/token (perplexity {math.exp(s['valid_loss']):.2f})",
        f"- test loss, chorales: {s['test_loss']:.3f} nats/token (perplexity {math.exp(s['test_loss']):.2f})",
    ]
    if s.get("folk_test_loss") is not None:
        lines.append(f"- test loss, folk: {s['folk_test_loss']:.3f} nats/token "
                     f"(perplexity {math.exp(s['folk_test_loss']):.2f})")
    lines += [
        "",
        "Losses are next-token cross-entropy over all tokens after the control prefix. Curve: `loss.png`; every "
        "evaluation: `train_log.json`.",
        "",
        "![training loss](loss.png)",
        "",
        "## Intended use and limits",
        "",
        "Short, controlled chorale- or folk-style sketches for demos and tests of the musicaas generation path. "
        "Long requests are generated in windows (the context is "
        f"{cfg['block_size']} tokens, roughly {cfg['block_size'] // 42} chorale bars), so large-scale form is not "
        "modelled. Tempo and instrument do not change the notes (no data for them).",
        "",
    ]
    old = (out / "MODEL_CARD.md").read_text() if (out / "MODEL_CARD.md").exists() else ""
    _head, sep, tail = old.partition("## Evaluation")
    text = "\n".join(lines)
    if sep:
        text = text.rstrip("\n") + "\n\n" + sep + tail
    (out / "MODEL_CARD.md").write_text(text)


def write_card_section(card: Path, lines: list[str]) -> None:
    """Replace (or append) one ``## `` section of a Markdown model card.

    Parameters
    ----------
    card : pathlib.Path
        The Markdown file; created when missing.
    lines : list of str
        The new section, one line per item; ``lines[0]`` is its heading (e.g. ``"## Key adherence"``).
        The section found in ``card`` runs from the first occurrence of that heading to the next
        ``"\n## "`` (or the end of the file); without one, the section is appended after a blank line.

    Raises
    ------
    OSError
        When ``card`` cannot be read or written.
    """
    text = card.read_text() if card.exists() else ""
    head, sep, tail = text.partition(lines[0])
    if sep:
        rest = tail.split("\n## ", 1)
        text = head + "\n".join(lines) + (("\n## " + rest[1]) if len(rest) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    card.write_text(text)
