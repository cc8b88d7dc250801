"""Train the symbolic model on the music21 Bach chorales (CPU-sized by default).

::

    python -m musicaas_model.train --out services/generator/musicaas_model/checkpoint

writes into ``--out``:

``model.pt``         weights + config + special token ids (what the Triton server loads)
``tokenizer.json``   the miditok REMI tokenizer (what the torch-free client loads)
``train_log.json``   losses per evaluation, split sizes, timings
``loss.png``         the training curve (:func:`musicaas_model.card.plot_losses`)
``MODEL_CARD.md``    data, licence, splits, steps, losses, date (:mod:`musicaas_model.card`)
``train_state.pt``   optimizer/RNG state for ``--resume`` (not meant to be shipped)

The run is deterministic for a given seed and thread count (data order, dropout and
initialisation are seeded); ``--resume`` continues from ``train_state.pt`` with the same
data stream. Training windows are a control prefix ``[Key, Bars, BOS]`` followed by
whole bars (see :mod:`musicaas_model.data`); the loss skips the prefix.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from musicaas_model import data
from musicaas_model.card import plot_losses, write_model_card
from musicaas_model.model import ModelConfig, MusicTransformer, SpecialIds, save_checkpoint

IGNORE = -100


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m musicaas_model.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="checkpoint directory (created)")
    p.add_argument("--steps", type=int, default=600, help="optimizer steps (default: 600)")
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--block-size", type=int, default=384, help="context window in tokens")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay to 10%%)")
    p.add_argument("--warmup", type=int, default=40)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--max-minutes", type=float, default=14.0,
                   help="training-loop wall-time budget: the lr schedule follows whichever of steps or time runs out "
                        "first, and training stops when it does (0 = steps only)")
    p.add_argument("--cache", default=os.path.join(Path.home(), ".cache", "musicaas", "bach_chorales.json"),
                   help="JSON cache of the parsed corpus")
    p.add_argument("--folk-cache", default=os.path.join(Path.home(), ".cache", "musicaas", "essen_folk.json"),
                   help="JSON cache of the parsed Essen folk tunes (the 'folk' style)")
    p.add_argument("--no-folk", action="store_true", help="train on the chorales only")
    p.add_argument("--folk-share", type=float, default=0.35, help="share of training windows drawn from folk tunes")
    p.add_argument("--init-from", default=None,
                   help="warm-start from a model.pt with the same layer sizes: weights copied, token embeddings "
                        "mapped by token name through the tokenizer.json next to it (new tokens keep their init)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/train_state.pt")
    return p.parse_args(argv)


def _progress(step: int, loop_s: float, args) -> float:
    """Fraction of the run done: by steps, or by wall time when ``--max-minutes`` binds first."""
    by_time = loop_s / (60.0 * args.max_minutes) if args.max_minutes > 0 else 0.0
    return min(1.0, max(step / max(1, args.steps), by_time))


def _lr_at(step: int, progress: float, args) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak over the run's progress."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _collate(windows: list[list[int]], pad: int, n_prefix: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad windows; targets ignore padding and the control prefix (the first ``n_prefix - 1`` targets)."""
    width = max(len(w) for w in windows) - 1
    x = torch.full((len(windows), width), pad, dtype=torch.long)
    y = torch.full((len(windows), width), IGNORE, dtype=torch.long)
    for i, w in enumerate(windows):
        t = torch.tensor(w, dtype=torch.long)
        x[i, : len(w) - 1] = t[:-1]
        y[i, : len(w) - 1] = t[1:]
        y[i, : n_prefix - 1] = IGNORE  # the rest of the prefix and BOS follow from the prompt; not learned
    return x, y


def _sample_windows(rng: random.Random, pieces, tokenizer, batch: int, max_len: int, folk=None,
                    folk_share: float = 0.0) -> list[list[int]]:
    """Random windows (30% from a piece's start); tempo and instrument controls drawn uniformly."""
    out = []
    for _ in range(batch):
        pool = folk if folk and rng.random() < folk_share else pieces
        piece = pool[rng.randrange(len(pool))]
        start = 0 if rng.random() < 0.3 else rng.randrange(piece.num_bars)
        tempo, program = data.random_render_controls(rng)
        out.append(data.make_window(tokenizer, piece, start, max_len, tempo_bpm=tempo, program=program))
    return out


def _eval_windows(pieces, tokenizer, max_len: int) -> list[list[int]]:
    """Consecutive non-overlapping windows covering every piece (deterministic)."""
    bar = tokenizer.vocab["Bar_None"]
    out = []
    for piece in pieces:
        start = 0
        while start < piece.num_bars:
            w = data.make_window(tokenizer, piece, start, max_len)
            out.append(w)
            start += max(1, sum(1 for t in w[3:] if t == bar))
    return out


@torch.no_grad()
def nll_sum(model: MusicTransformer, windows: list[list[int]], pad: int, batch: int = 16,
            n_prefix: int = 3) -> tuple[float, int]:
    """Summed next-token cross-entropy (nats) over the scored tokens of ``windows``, and their count.

    ``windows`` are token-id lists (control prefix first); the targets skip the prefix and padding
    (see :func:`_collate`). The model is put back in training mode afterwards.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        x, y = _collate(windows[i : i + batch], pad, n_prefix)
        logits = model(x)
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE, reduction="sum"))
        count += int((y != IGNORE).sum())
    model.train(was_training)
    return total, count


def evaluate(model: MusicTransformer, windows: list[list[int]], pad: int, batch: int = 16, n_prefix: int = 3) -> float:
    """Mean next-token cross-entropy (nats/token) over all scored tokens of ``windows`` (:func:`nll_sum`)."""
    total, count = nll_sum(model, windows, pad, batch, n_prefix)
    return total / max(1, count)


def warm_start(model: MusicTransformer, path: str | os.PathLike, vocab: dict[str, int]) -> tuple[int, dict]:
    """Copy weights from ``path`` into ``model`` (token rows mapped by name).

    Returns
    -------
    (int, dict)
        The number of token-embedding rows mapped, and the source checkpoint's metadata
        (date, steps, losses) for the model card.

    Raises
    ------
    SystemExit
        When a layer's shape differs (``--layers``/``--d-model`` must match the source).
    """
    import miditok

    from musicaas_model.model import load_checkpoint

    old, _special, _meta = load_checkpoint(path)
    old_vocab = dict(miditok.REMI(params=Path(path).with_name("tokenizer.json")).vocab)
    src = old.state_dict()
    dst = model.state_dict()
    mapped = 0
    for name, tensor in dst.items():
        if name not in src:
            continue
        if name in ("tok_emb.weight", "head.weight"):
            for tok, i in vocab.items():
                j = old_vocab.get(tok)
                if j is not None:
                    tensor[i] = src[name][j]
                    mapped += name == "tok_emb.weight"
        elif name == "pos_emb.weight":
            n = min(tensor.shape[0], src[name].shape[0])
            tensor[:n] = src[name][:n]
        elif tensor.shape == src[name].shape:
            tensor.copy_(src[name])
        else:
            raise SystemExit(f"--init-from: {name} has shape {tuple(src[name].shape)}, expected {tuple(tensor.shape)}")
    model.load_state_dict(dst)
    return mapped, {k: _meta[k] for k in ("date", "steps_done", "valid_loss", "test_loss") if k in _meta}


def main(argv=None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    tokenizer = data.build_tokenizer()
    records = data.load_chorales(args.cache)
    folk_records = [] if args.no_folk else data.load_folk(args.folk_cache)
    train_recs, valid_recs, test_recs = data.split_records(records, seed=data.SPLIT_SEED)
    ftrain_recs, fvalid_recs, ftest_recs = data.split_records(folk_records, seed=data.SPLIT_SEED) if folk_records \
        else ([], [], [])
    train_pieces = data.encode_records(tokenizer, train_recs, augment=True)
    valid_pieces = data.encode_records(tokenizer, valid_recs, augment=False)
    test_pieces = data.encode_records(tokenizer, test_recs, augment=False)
    ftrain_pieces = data.encode_records(tokenizer, ftrain_recs, augment=True)
    fvalid_pieces = data.encode_records(tokenizer, fvalid_recs, augment=False)
    ftest_pieces = data.encode_records(tokenizer, ftest_recs, augment=False)
    special = SpecialIds.from_vocab(tokenizer.vocab)
    n_prefix = data.prefix_length(tokenizer)
    max_len = args.block_size + 1
    cvalid_windows = _eval_windows(valid_pieces, tokenizer, max_len)
    fvalid_windows = _eval_windows(fvalid_pieces, tokenizer, max_len)
    valid_windows = cvalid_windows + fvalid_windows
    test_windows = _eval_windows(test_pieces, tokenizer, max_len)
    ftest_windows = _eval_windows(ftest_pieces, tokenizer, max_len)
    print(
        f"pieces: chorales train {len(train_recs)} (x12 -> {len(train_pieces)} sequences), valid {len(valid_recs)}, "
        f"test {len(test_recs)}; folk train {len(ftrain_recs)}, valid {len(fvalid_recs)}, test {len(ftest_recs)}; "
        f"vocab {len(tokenizer.vocab)}; prep {time.time() - t_start:.0f}s",
        file=sys.stderr,
    )

    cfg = ModelConfig(
        vocab_size=len(tokenizer.vocab),
        block_size=args.block_size,
        n_layer=args.layers,
        n_head=args.heads,
        d_model=args.d_model,
        d_ff=4 * args.d_model,
        dropout=args.dropout,
    )
    model = MusicTransformer(cfg)
    init_meta: dict = {}
    if args.init_from and not args.resume:
        mapped, init_meta = warm_start(model, args.init_from, dict(tokenizer.vocab))
        print(f"warm start from {args.init_from}: {mapped} token embeddings mapped", file=sys.stderr)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )

    state_path = out / "train_state.pt"
    step, log, losses, tokens_seen, elapsed_before, sessions = 0, [], [], 0, 0.0, []
    this_session = {"argv": sys.argv[1:] if argv is None else list(argv), "start_step": 0, "wall_minutes": 0.0}
    if args.resume and state_path.exists():
        state = torch.load(state_path, weights_only=False)
        if state["config"] != cfg.to_dict():
            raise SystemExit(f"--resume: {state_path} was written with a different model config")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        step, log, losses = state["step"], state["log"], state["losses"]
        tokens_seen, elapsed_before = state["tokens_seen"], state["elapsed_s"]
        sessions = list(state.get("sessions", []))
        init_meta = dict(state.get("init_meta", {}))
        this_session["start_step"] = step
        print(f"resumed from {state_path} at step {step}", file=sys.stderr)

    def save_state() -> None:
        torch.save(
            {
                "config": cfg.to_dict(), "model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.getstate(),
                "torch_rng": torch.get_rng_state(), "step": step, "log": log, "losses": losses,
                "tokens_seen": tokens_seen, "elapsed_s": elapsed_before + time.time() - t_loop, "init_meta": init_meta,
                "sessions": sessions + [dict(this_session, wall_minutes=(time.time() - t_start) / 60)],
            },
            state_path,
        )

    model.train()
    t_loop = time.time()
    bar = tqdm(total=args.steps, initial=step, desc="training", unit="step", dynamic_ncols=True)
    while step < args.steps:
        progress = _progress(step, elapsed_before + time.time() - t_loop, args)
        if progress >= 1.0:
            print(f"time budget of {args.max_minutes} min reached at step {step}", file=sys.stderr)
            break
        lr = _lr_at(step, progress, args)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = _collate(_sample_windows(rng, train_pieces, tokenizer, args.batch_size, max_len, ftrain_pieces,
                                        args.folk_share), special.pad, n_prefix)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens_seen += int((y != IGNORE).sum())
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr:.1e}")
        if step % args.eval_every == 0 or step == args.steps or _progress(step, elapsed_before + time.time() - t_loop, args) >= 1.0:
            # per style and together (chorale valid loss is what checkpoint choices look at; test stays unseen)
            c_sum, c_n = nll_sum(model, cvalid_windows, special.pad, n_prefix=n_prefix)
            f_sum, f_n = nll_sum(model, fvalid_windows, special.pad, n_prefix=n_prefix)
            valid_loss = (c_sum + f_sum) / max(1, c_n + f_n)
            cvalid = c_sum / max(1, c_n)
            fvalid = f_sum / f_n if f_n else None
            recent = losses[-args.eval_every :]
            log.append({
                "step": step, "train_loss": sum(recent) / len(recent), "valid_loss": valid_loss,
                "valid_loss_chorales": cvalid, "valid_loss_folk": fvalid, "lr": lr,
                "elapsed_s": round(elapsed_before + time.time() - t_loop, 1), "tokens_seen": tokens_seen,
            })
            bar.write(f"step {step}: train {log[-1]['train_loss']:.3f}  valid {valid_loss:.3f} "
                      f"(chorales {cvalid:.3f})")
            save_state()
            plot_losses(out, log, losses)
    bar.close()

    valid_loss = evaluate(model, valid_windows, special.pad, n_prefix=n_prefix)
    test_loss = evaluate(model, test_windows, special.pad, n_prefix=n_prefix)
    folk_test_loss = evaluate(model, ftest_windows, special.pad, n_prefix=n_prefix) if ftest_windows else None
    window = min(50, len(losses))
    train_loss = sum(losses[-window:]) / max(1, window)
    import music21

    summary = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "sessions": sessions + [dict(this_session, wall_minutes=(time.time() - t_start) / 60)],
        "threads": args.threads,
        "wall_minutes": sum(x["wall_minutes"] for x in sessions) + (time.time() - t_start) / 60,
        "config": cfg.to_dict(),
        "parameters": model.num_parameters(),
        "music21_version": music21.__version__,
        "pieces_total": len(records),
        "folk_pieces_total": len(folk_records),
        "folk_files": list(data.FOLK_FILES),
        "folk_share": 0.0 if not folk_records else args.folk_share,
        "init_from": args.init_from,
        "init_meta": init_meta,
        "split_seed": data.SPLIT_SEED,
        "splits": {
            name: {"pieces": len(recs), "sequences": len(pieces), "tokens": sum(len(p.ids) for p in pieces)}
            for name, recs, pieces in (
                ("train", train_recs, train_pieces), ("valid", valid_recs, valid_pieces), ("test", test_recs, test_pieces),
                ("folk_train", ftrain_recs, ftrain_pieces), ("folk_valid", fvalid_recs, fvalid_pieces),
                ("folk_test", ftest_recs, ftest_pieces),
            )
        },
        "split_names": {"valid": [r.name for r in valid_recs], "test": [r.name for r in test_recs],
                        "folk_valid": [r.name for r in fvalid_recs], "folk_test": [r.name for r in ftest_recs]},
        "steps_done": step,
        "steps_planned": args.steps,
        "batch_size": args.batch_size,
        "tokens_seen": tokens_seen,
        "lr": args.lr,
        "warmup": args.warmup,
        "weight_decay": args.weight_decay,
        "seed": args.seed,
        "train_loss": train_loss,
        "train_loss_window": window,
        "valid_loss": valid_loss,
        "test_loss": test_loss,
        "folk_test_loss": folk_test_loss,
        "tokenizer_fingerprint": data.tokenizer_fingerprint(tokenizer),
        "log": log,
    }
    meta = {k: summary[k] for k in ("date", "steps_done", "train_loss", "valid_loss", "test_loss", "tokenizer_fingerprint")}
    meta["vocab"] = dict(tokenizer.vocab)
    # The checkpoint and its tokenizer are written together, last, so that a reader never sees a mismatched pair
    # for long (write to temporary names, then rename).
    save_checkpoint(out / "model.pt.tmp", model, special, meta=meta)
    tokenizer.save(out / "tokenizer.json.tmp")
    os.replace(out / "tokenizer.json.tmp", out / "tokenizer.json")
    os.replace(out / "model.pt.tmp", out / "model.pt")
    save_state()
    (out / "train_log.json").write_text(json.dumps(summary, indent=1))
    plot_losses(out, log, losses)
    write_model_card(out, summary, torch_version=torch.__version__)
    print(
        f"done: {step} steps, train {train_loss:.3f}, valid {valid_loss:.3f}, test {test_loss:.3f}, "
        f"{summary['wall_minutes']:.1f} min -> {out / 'model.pt'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
