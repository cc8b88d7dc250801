"""A small decoder-only Transformer over REMI tokens, and its batched sampler.

Architecture: GPT-style decoder (Radford et al., "Language Models are Unsupervised
Multitask Learners", 2019), i.e. the Transformer decoder of Vaswani et al. (2017) with
pre-layer-norm blocks, learned absolute position embeddings, GELU MLPs and a head tied
to the token embedding (Press & Wolf, 2017). Music generation with such a decoder over
event tokens follows Huang et al., "Music Transformer" (ICLR 2019) and Huang & Yang,
"Pop Music Transformer" (REMI, 2020).

Sampling (:func:`generate`) runs a whole batch of requests at once with a key/value
cache: prompts are left-padded, every row has its own position ids, attention mask,
temperature, top-k (Fan et al., ACL 2018), top-p / nucleus (Holtzman et al., ICLR 2020),
``torch.Generator`` (so a seed gives the same tokens for the same inputs), decoding
constraints (:mod:`musicaas_model.constraints`: REMI grammar, requested metre, melody
harmonisation) and stopping rule (requested number of bars, ``EOS`` or a token budget).
When a row's context would exceed the model's window, every row is re-encoded from its
control prefix plus the most recent whole bars that fit in half the window (the model
was trained on windows that start on a bar line after the same control prefix).
Prompts holding a primer (REMI ids after ``BOS``) are continued, and the primer is
returned in front of the continuation.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


#: Name prefixes of the control tokens (never sampled).
CONTROL_PREFIXES = ("Key_", "Bars_", "Style_", "Metre_", "TempoBin_", "Inst_")


@dataclass
class ModelConfig:
    """Hyper-parameters of :class:`MusicTransformer` (saved in the checkpoint)."""

    vocab_size: int
    block_size: int = 512
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 256
    d_ff: int = 1024
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SpecialIds:
    """Token ids the sampler needs (stored in the checkpoint next to the weights).

    Attributes
    ----------
    pad, bos, eos, bar : int
        ``PAD_None``, ``BOS_None``, ``EOS_None``, ``Bar_None``.
    never : tuple of int
        Ids the sampler must never emit (PAD, BOS and the control tokens).
    """

    pad: int
    bos: int
    eos: int
    bar: int
    never: tuple[int, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"pad": self.pad, "bos": self.bos, "eos": self.eos, "bar": self.bar, "never": list(self.never)}

    @classmethod
    def from_dict(cls, d: dict) -> "SpecialIds":
        return cls(int(d["pad"]), int(d["bos"]), int(d["eos"]), int(d["bar"]), tuple(int(i) for i in d["never"]))

    @classmethod
    def from_vocab(cls, vocab: dict[str, int]) -> "SpecialIds":
        never = [vocab["PAD_None"], vocab["BOS_None"]]
        never += [i for name, i in vocab.items() if name.startswith(CONTROL_PREFIXES)]
        return cls(vocab["PAD_None"], vocab["BOS_None"], vocab["EOS_None"], vocab["Bar_None"], tuple(sorted(never)))


class KVCache:
    """Pre-allocated keys/values of every layer: ``[n_layer, 2, B, H, capacity, Dh]``."""

    def __init__(self, cfg: ModelConfig, batch: int, capacity: int, *, device=None, dtype=torch.float32) -> None:
        head_dim = cfg.d_model // cfg.n_head
        self.kv = torch.zeros(cfg.n_layer, 2, batch, cfg.n_head, capacity, head_dim, device=device, dtype=dtype)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.kv.shape[-2]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention (Vaswani et al. 2017) with an optional KV cache.

    ``forward(x, mask, cache)``: ``x`` float32 ``[B, T, d_model]``; ``mask`` bool ``[B, 1, T, S]`` (True = may
    attend) or ``None`` for plain causal attention; the cache's keys/values of this layer are written at
    ``cache.length`` and attended to. Returns ``[B, T, d_model]``.
    """

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        assert cfg.d_model % cfg.n_head == 0
        self.layer = layer
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        if cache is not None:
            start = cache.length
            cache.kv[self.layer, 0, :, :, start : start + t] = k
            cache.kv[self.layer, 1, :, :, start : start + t] = v
            k = cache.kv[self.layer, 0, :, :, : start + t]
            v = cache.kv[self.layer, 1, :, :, : start + t]
        drop = self.dropout if self.training else 0.0
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    """Pre-layer-norm Transformer block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``, shapes ``[B, T, d_model]``."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mask, cache):
        x = x + self.drop(self.attn(self.ln1(x), mask, cache))
        return x + self.drop(self.mlp(self.ln2(x)))


class MusicTransformer(nn.Module):
    """Decoder-only Transformer language model over token ids."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight
        self.apply(self._init)
        for name, p in self.named_parameters():  # scaled init of residual projections (GPT-2)
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, 0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        idx: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Logits ``[B, T, V]`` for ids ``[B, T]``.

        Without ``mask`` the attention is plain causal over ``idx`` (training). With a
        ``cache``, ``mask`` is a boolean ``[B, 1, T, cache.length + T]`` (True = may
        attend) and ``positions`` gives each row's position ids ``[B, T]``.
        """
        b, t = idx.shape
        if positions is None:
            positions = torch.arange(t, device=idx.device).unsqueeze(0).expand(b, t)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(positions))
        for block in self.blocks:
            x = block(x, mask, cache)
        if cache is not None:
            cache.length += t
        return self.head(self.ln_f(x))


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path, model: MusicTransformer, special: SpecialIds, *, meta: dict | None = None, half: bool = False) -> None:
    """Write ``{"config", "special", "meta", "state_dict"}`` with ``torch.save``."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save(
        {"config": model.cfg.to_dict(), "special": special.to_dict(), "meta": meta or {}, "state_dict": state},
        path,
    )


def load_checkpoint(path, *, device: str = "cpu") -> tuple[MusicTransformer, SpecialIds, dict]:
    """Load a checkpoint written by :func:`save_checkpoint`; the model is in eval mode (fp32)."""
    blob = torch.load(path, map_location=device, weights_only=True)
    model = MusicTransformer(ModelConfig(**blob["config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    model.eval()
    return model, SpecialIds.from_dict(blob["special"]), dict(blob.get("meta", {}))


def tiny_model(vocab_size: int, *, seed: int = 0, block_size: int = 256) -> MusicTransformer:
    """A randomly initialised 1-layer model with the given vocabulary (fast integration tests)."""
    torch.manual_seed(seed)
    model = MusicTransformer(
        ModelConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=2, d_model=32, d_ff=64, dropout=0.0)
    )
    return model.eval()


# --------------------------------------------------------------------------- sampling


@dataclass
class GenerationRequest:
    """One row of a generation batch.

    Attributes
    ----------
    prompt : list of int
        Control prefix (``[Key_*, Bars_*, BOS]``), non-empty.
    temperature : float > 0
        Softmax temperature.
    seed : int
        Seed of this row's sampler.
    num_bars : int >= 1
        Stop before the ``num_bars + 1``-th ``Bar`` token.
    max_new_tokens : int >= 1
        Hard cap on the number of generated tokens.
    top_k : int >= 0
        Keep only the ``top_k`` most likely ids (0 = off).
    top_p : float in (0, 1]
        Keep the smallest set of ids whose probability reaches ``top_p`` (1 = off).
    melody : list of (start_beats, duration_beats, pitch), optional
        Melody to harmonise (needs a :class:`~musicaas_model.constraints.Grammar`).
    key_guidance : bool
        Mask pitches outside the prompt key's scale and keep the first and last bar on
        the tonic triad (needs a grammar; see :mod:`musicaas_model.constraints`).
    """

    prompt: list[int]
    temperature: float
    seed: int
    num_bars: int
    max_new_tokens: int
    top_k: int = 0
    top_p: float = 1.0
    melody: list | None = None
    key_guidance: bool = False


def filter_logits(row: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """``row`` (1-D logits, already tempered) with everything outside top-k / the top-p nucleus set to ``-inf``."""
    if top_k and top_k < row.numel():
        kth = torch.topk(row, int(top_k)).values[-1]
        row = row.masked_fill(row < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(row, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        cum = torch.cumsum(probs, dim=-1)
        drop = cum - probs >= top_p  # mass before this id already reaches top_p
        drop[0] = False
        row = row.clone()
        row[order[drop]] = float("-inf")
    return row


def _left_pad(rows: Sequence[Sequence[int]], pad: int):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    offsets = torch.zeros(len(rows), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
        offsets[i] = width - len(r)
    return ids, offsets


def _recent_bars(tokens: list[int], bar: int, budget: int) -> list[int]:
    """The longest suffix of ``tokens`` starting on a ``Bar`` token with at most ``budget`` ids."""
    if len(tokens) <= budget:
        return list(tokens)
    for i in range(len(tokens) - budget, len(tokens)):
        if tokens[i] == bar:
            return tokens[i:]
    return tokens[-budget:]


def _split_prompt(prompt: Sequence[int], bos: int) -> tuple[list[int], list[int]]:
    """(control prefix through ``BOS``, primer after it); no ``BOS``: the whole prompt is the prefix."""
    prompt = list(prompt)
    if bos in prompt:
        i = prompt.index(bos)
        return prompt[: i + 1], prompt[i + 1 :]
    return prompt, []


@torch.no_grad()
def generate(model: MusicTransformer, requests: Sequence[GenerationRequest], special: SpecialIds,
             grammar=None, *, step_times: list | None = None) -> list[list[int]]:
    """Sample continuations of every request's prompt (primer, if any, followed by the new ids).

    Every row stops at its own ``EOS``, before its ``num_bars + 1``-th new ``Bar`` token or
    after ``max_new_tokens`` new ids, whichever comes first. ``EOS`` is not allowed before
    the requested number of bars has started. With a ``grammar``
    (:class:`musicaas_model.constraints.Grammar`) every row follows the REMI grammar and
    the prompt's metre, and rows with a ``melody`` are harmonised. ``step_times``, when
    given, receives the wall time of every sampling step (benchmarks).

    Sampling is ancestral with a KV cache: temperature scaling, the grammar's mask and pitch
    bias, then top-k / nucleus (top-p, Holtzman et al. 2020) filtering, and one inverse-CDF
    draw per row from a CPU ``torch.Generator`` seeded with the row's ``seed``, so a row's ids
    do not depend on the other rows of the batch. Prompts longer than the context window
    keep their control prefix and the most recent whole bars (re-prefilled when the cache fills).

    Parameters
    ----------
    model : MusicTransformer
        The decoder; run in ``eval`` mode on its own device.
    requests : sequence of GenerationRequest
        One per row; ``prompt`` is a list of int token ids of ``special``'s vocabulary.
    special : SpecialIds
        Ids of ``PAD``, ``BOS``, ``EOS``, ``Bar`` and the never-sampled tokens.
    grammar : musicaas_model.constraints.Grammar, optional
        Required when any request has a ``melody``.
    step_times : list, optional
        Appended to with one float (seconds) per sampling step.

    Returns
    -------
    list of list of int
        Per request, its primer ids (the prompt after ``BOS``) followed by the new ids
        (without the final ``EOS``).

    Raises
    ------
    ValueError
        When a request has a ``melody`` and ``grammar`` is ``None``.
    """
    if not requests:
        return []
    from musicaas_model.constraints import RowConstraint, apply_pitch_bias

    if grammar is None and any(r.melody for r in requests):
        raise ValueError("harmonising a melody needs the vocabulary's grammar")
    split = [_split_prompt(r.prompt, special.bos) for r in requests]
    rules = [
        RowConstraint(grammar, r.prompt, r.melody, key_guidance=r.key_guidance, num_bars=r.num_bars)
        if grammar is not None else None
        for r in requests
    ]
    model.eval()
    device = next(model.parameters()).device
    cfg = model.cfg
    n = len(requests)
    gens = [torch.Generator(device="cpu").manual_seed(int(r.seed) & 0x7FFF_FFFF_FFFF_FFFF) for r in requests]
    temps = torch.tensor([max(float(r.temperature), 1e-4) for r in requests], dtype=torch.float32).unsqueeze(1)
    out: list[list[int]] = [[] for _ in requests]
    bars = [0] * n
    done = [False] * n
    never = torch.tensor(special.never, dtype=torch.long)
    keep = max(8, cfg.block_size // 2)

    def prefill(rows: list[list[int]]):
        ids, offsets = _left_pad(rows, special.pad)
        t = ids.shape[1]
        cache = KVCache(cfg, n, cfg.block_size, device=device)
        ar = torch.arange(t)
        positions = (ar.unsqueeze(0) - offsets.unsqueeze(1)).clamp(min=0)
        causal = ar.unsqueeze(1) >= ar.unsqueeze(0)  # [T, T]
        valid = ar.unsqueeze(0) >= offsets.unsqueeze(1)  # [B, T] keys that are not padding
        mask = causal.unsqueeze(0) & valid.unsqueeze(1)
        mask = mask | torch.eye(t, dtype=torch.bool).unsqueeze(0)  # padded queries see themselves
        logits = model(ids.to(device), positions=positions.to(device), mask=mask.unsqueeze(1).to(device), cache=cache)
        return cache, offsets, positions[:, -1] + 1, logits[:, -1].float().cpu()

    def context(i: int) -> list[int]:
        prefix, primer = split[i]
        budget = max(1, min(keep, cfg.block_size - 1 - len(prefix)))
        return prefix + _recent_bars(primer + out[i], special.bar, budget)

    rows = [context(i) if len(r.prompt) >= cfg.block_size else list(r.prompt) for i, r in enumerate(requests)]
    cache, offsets, next_pos, logits = prefill(rows)
    tick = time.perf_counter()
    while True:
        if step_times is not None:
            now = time.perf_counter()
            step_times.append(now - tick)
            tick = now
        step = torch.full((n,), special.pad, dtype=torch.long)
        active = [i for i in range(n) if not done[i]]
        act = torch.tensor(active, dtype=torch.long)
        rows_logits = logits[act] / temps[act]
        rows_logits[:, never] = float("-inf")
        allow = torch.ones_like(rows_logits, dtype=torch.bool)
        no_eos, bias_rows, biases = [], [], []
        for k, i in enumerate(active):
            r = requests[i]
            if bars[i] < r.num_bars:
                no_eos.append(k)
            rule = rules[i]
            if rule is None:
                continue
            allowed = rule.allowed()
            if allowed is not None:
                if bars[i] >= r.num_bars:  # the piece is complete: a Bar ends it like EOS
                    allowed = allowed.clone()
                    allowed[special.eos] = allowed[special.eos] | allowed[special.bar]
                allow[k] = allowed
            bias = rule.bias()
            if bias is not None:
                bias_rows.append(k)
                biases.append(bias)
        if no_eos:
            rows_logits[torch.tensor(no_eos), special.eos] = float("-inf")
        masked = rows_logits.masked_fill(~allow, float("-inf"))
        rows_logits = torch.where(torch.isfinite(masked).any(dim=1, keepdim=True), masked, rows_logits)
        if bias_rows:
            idx = torch.tensor(bias_rows, dtype=torch.long)
            rows_logits[idx] = apply_pitch_bias(rows_logits[idx], grammar, torch.stack(biases))
        for k, i in enumerate(active):
            r = requests[i]
            if r.top_k or r.top_p < 1.0:
                rows_logits[k] = filter_logits(rows_logits[k], r.top_k, r.top_p)
        # inverse-CDF sampling: one uniform draw per row from the row's own generator
        cdf = torch.cumsum(torch.softmax(rows_logits, dim=-1), dim=-1)
        u = torch.cat([1.0 - torch.rand(1, generator=gens[i]) for i in active])
        picks = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1)).squeeze(1).clamp(max=cdf.shape[1] - 1)
        for k, i in enumerate(active):
            r = requests[i]
            rule = rules[i]
            tok = int(picks[k])
            if tok == special.eos or (tok == special.bar and bars[i] >= r.num_bars):
                done[i] = True
                continue
            if tok == special.bar:
                bars[i] += 1
            if rule is not None:
                rule.advance(tok)
            out[i].append(tok)
            step[i] = tok
            if len(out[i]) >= r.max_new_tokens:
                done[i] = True
        if all(done):
            return [split[i][1] + out[i] for i in range(n)]
        if cache.length >= cache.capacity or int(next_pos.max()) >= cfg.block_size:
            rows = [context(i) for i in range(n)]
            cache, offsets, next_pos, logits = prefill(rows)
            continue
        s = cache.length + 1
        mask = (torch.arange(s).unsqueeze(0) >= offsets.unsqueeze(1)).view(n, 1, 1, s)
        logits = model(
            step.view(n, 1).to(device), positions=next_pos.view(n, 1).to(device), mask=mask.to(device), cache=cache
        )[:, -1].float().cpu()
        next_pos = next_pos + 1
