"""A small typed async adapter around Triton's gRPC client for the symbolic model (torch-free).

::

    async with TritonGenerator("127.0.0.1:8001", timeout_s=60) as g:
        await g.wait_ready(timeout_s=30)
        ids = await g.generate(prompt, temperature=1.0, seed=7, num_bars=8, max_new_tokens=800)

Failures map onto the musicaas error tree: a server that cannot be reached (or whose
model is not loaded) raises :class:`~musicaas.runtime.errors.Unavailable`
("model server at <url> is unavailable: ..."), a call that runs out of time
:class:`~musicaas.runtime.errors.DeadlineExceeded`, a request the server rejects as
malformed :class:`~musicaas.runtime.errors.InvalidArgument`. Arguments are validated
before any network traffic (:mod:`musicaas_generator.contract`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Sequence

import numpy as np

from musicaas.runtime.errors import DeadlineExceeded, InvalidArgument, MusicaasError, Unavailable
from musicaas_generator import contract

#: Default per-call deadline for :meth:`TritonGenerator.generate` (CPU sampling of 32 bars takes a while).
DEFAULT_TIMEOUT_S = 120.0
#: Per-probe deadline while waiting for readiness.
_PROBE_TIMEOUT_S = 2.0


def _status_name(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    status = status() if callable(status) else status
    return str(status or "").rsplit(".", 1)[-1].upper()


def _message(exc: Exception) -> str:
    msg = getattr(exc, "message", None)
    msg = msg() if callable(msg) else msg
    return str(msg or exc)


class TritonGenerator:
    """Async client of the ``musicaas_symbolic`` Triton model.

    Parameters
    ----------
    url : str
        ``host:port`` of Triton's gRPC endpoint.
    timeout_s : float > 0
        Deadline of each :meth:`generate` call, seconds.
    model_name : str
        Triton model name (default :data:`contract.MODEL_NAME`).
    """

    def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, model_name: str = contract.MODEL_NAME) -> None:
        if not url or ":" not in url:
            raise InvalidArgument(f"model server url must be 'host:port', got {url!r}")
        if not timeout_s or timeout_s <= 0:
            raise InvalidArgument(f"timeout_s must be > 0, got {timeout_s!r}")
        self.url = url
        self.timeout_s = float(timeout_s)
        self.model_name = model_name
        self._client = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> "TritonGenerator":
        self._ensure_client()
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.close()

    def _ensure_client(self):
        if self._client is None:
            from tritonclient.grpc.aio import InferenceServerClient

            try:
                self._client = InferenceServerClient(url=self.url)
            except Exception as exc:  # malformed url and the like
                raise Unavailable(f"model server at {self.url} is unavailable: {exc}") from exc
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except Exception:  # closing a channel that never connected
                pass

    def _unavailable(self, detail: str) -> Unavailable:
        return Unavailable(f"model server at {self.url} is unavailable: {detail}")

    def _map_error(self, exc: Exception, *, timeout_s: float) -> MusicaasError:
        if isinstance(exc, MusicaasError):
            return exc
        status = _status_name(exc)
        detail = _message(exc)
        if status == "DEADLINE_EXCEEDED" or isinstance(exc, asyncio.TimeoutError):
            return DeadlineExceeded(f"model server at {self.url} did not answer within {timeout_s:g}s")
        if status == "INVALID_ARGUMENT":
            return InvalidArgument(f"model server at {self.url} rejected the request: {detail}")
        if "ValueError: " in detail:  # the model's own argument checks (PyTriton reports them as INTERNAL)
            reason = detail.rsplit("ValueError: ", 1)[1].strip().splitlines()[0]
            return InvalidArgument(f"model server at {self.url} rejected the request: {reason}")
        return self._unavailable(f"{status or type(exc).__name__}: {detail}")

    # ------------------------------------------------------------------ health

    async def is_ready(self, *, timeout_s: float = _PROBE_TIMEOUT_S) -> bool:
        """True when the server answers and the model is loaded (never raises for connection errors)."""
        client = self._ensure_client()
        try:
            return bool(await client.is_server_ready(client_timeout=timeout_s)) and bool(
                await client.is_model_ready(self.model_name, client_timeout=timeout_s)
            )
        except Exception:
            return False

    async def wait_ready(self, timeout_s: float = 30.0, *, poll_s: float = 0.25) -> None:
        """Poll until the model is ready.

        Raises
        ------
        Unavailable
            When it is not ready within ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + float(timeout_s)
        while True:
            remaining = deadline - time.monotonic()
            if await self.is_ready(timeout_s=max(0.1, min(_PROBE_TIMEOUT_S, remaining))):
                return
            if time.monotonic() >= deadline:
                raise self._unavailable(f"model {self.model_name!r} not ready after {timeout_s:g}s")
            await asyncio.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))

    # ------------------------------------------------------------------ inference

    @staticmethod
    def build_inputs(prompt_tokens: Sequence[int], *, temperature: float, seed: int, num_bars: int, max_new_tokens: int,
                     top_k: int = 0, top_p: float = 1.0, melody: Sequence | None = None, key_guidance: bool = True):
        """``tritonclient.grpc.InferInput`` objects for one request (batch of 1), validated.

        ``MELODY`` is sent only when a melody is given (it is an optional input).
        """
        from tritonclient.grpc import InferInput

        prompt = contract.validate_prompt(prompt_tokens)
        values = {
            contract.PROMPT_TOKENS: np.asarray([prompt], dtype=np.int64),
            contract.TEMPERATURE: np.asarray([[contract.validate_temperature(temperature)]], dtype=np.float32),
            contract.SEED: np.asarray([[contract.validate_seed(seed)]], dtype=np.int64),
            contract.NUM_BARS: np.asarray([[contract.validate_num_bars(num_bars)]], dtype=np.int32),
            contract.MAX_NEW_TOKENS: np.asarray([[contract.validate_max_new_tokens(max_new_tokens)]], dtype=np.int32),
            contract.TOP_K: np.asarray([[contract.validate_top_k(top_k)]], dtype=np.int32),
            contract.TOP_P: np.asarray([[contract.validate_top_p(top_p)]], dtype=np.float32),
            contract.KEY_GUIDANCE: np.asarray([[1 if key_guidance else 0]], dtype=np.int32),
        }
        if melody is not None:
            notes = contract.validate_melody(melody)
            values[contract.MELODY] = np.asarray([[x for note in notes for x in note]], dtype=np.float32)
        inputs = []
        for name, dtype, triton_dtype, _shape in contract.INPUTS:
            if name not in values:
                continue
            array = values[name].astype(dtype, copy=False)
            item = InferInput(name, list(array.shape), triton_dtype)
            item.set_data_from_numpy(array)
            inputs.append(item)
        return inputs

    async def generate(
        self,
        prompt_tokens: Sequence[int],
        *,
        temperature: float,
        seed: int,
        num_bars: int,
        max_new_tokens: int | None = None,
        timeout_s: float | None = None,
        top_k: int = 0,
        top_p: float = 1.0,
        melody: Sequence | None = None,
        key_guidance: bool = True,
    ) -> list[int]:
        """Sample a continuation of ``prompt_tokens`` on the server.

        With a primer in the prompt (ids after ``BOS``) the result starts with the primer.
        With ``melody`` the server harmonises it: it samples the other voices while
        forcing every melody note to be the top voice at its onset (constrained
        decoding), so the decoded MIDI keeps 100% of the melody (see
        :func:`musicaas_generator.tokens.soprano_kept`).

        Parameters
        ----------
        prompt_tokens : sequence of int
            Prompt ids (see :func:`musicaas_generator.tokens.build_prompt`).
        temperature : float in (0, 5]
        seed : int (signed 64-bit)
            Same inputs and seed give the same tokens.
        num_bars : int in [1, 32]
        max_new_tokens : int in [1, 4096], optional
            Default :func:`contract.default_max_new_tokens` of ``num_bars``.
        timeout_s : float, optional
            Deadline of this call (default: the client's ``timeout_s``).
        top_k : int in [0, 1000]
            Sample among the ``top_k`` most likely ids (0 = off; Fan et al. 2018).
        top_p : float in (0, 1]
            Nucleus sampling: the smallest set of ids holding ``top_p`` of the mass (1.0 = off;
            Holtzman et al. 2020).
        melody : sequence of MelodyNote, optional
            Melody to harmonise (:func:`musicaas_generator.tokens.parse_melody`); it must fit
            in ``num_bars`` bars and the prompt must hold no primer.
        key_guidance : bool
            Key-guided decoding (default): pitches outside the requested key's scale are
            masked and the first and last bar keep to the tonic triad (melody notes are
            never masked). False samples the model's own distribution.

        Returns
        -------
        list of int
            Generated ids, prompt not included.

        Raises
        ------
        InvalidArgument
            For an argument out of range (the message names it) or a request the server rejects.
        Unavailable
            When the server cannot be reached or the model is not loaded.
        DeadlineExceeded
            When the call takes longer than ``timeout_s``.
        """
        if max_new_tokens is None:
            max_new_tokens = contract.default_max_new_tokens(contract.validate_num_bars(num_bars))
        inputs = self.build_inputs(
            prompt_tokens, temperature=temperature, seed=seed, num_bars=num_bars, max_new_tokens=max_new_tokens,
            top_k=top_k, top_p=top_p, melody=melody, key_guidance=key_guidance,
        )
        from tritonclient.grpc import InferRequestedOutput

        deadline = float(timeout_s if timeout_s is not None else self.timeout_s)
        if deadline <= 0:
            raise InvalidArgument(f"timeout_s must be > 0, got {timeout_s!r}")
        client = self._ensure_client()
        try:
            result = await asyncio.wait_for(
                client.infer(
                    self.model_name,
                    inputs,
                    outputs=[InferRequestedOutput(contract.TOKENS)],
                    client_timeout=deadline,
                ),
                timeout=deadline + 1.0,
            )
        except Exception as exc:
            raise self._map_error(exc, timeout_s=deadline) from exc
        tokens = result.as_numpy(contract.TOKENS)
        if tokens is None:
            raise self._unavailable(f"response holds no {contract.TOKENS} output")
        return contract.strip_padding(np.asarray(tokens).reshape(-1).tolist())
