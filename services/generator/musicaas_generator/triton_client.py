"""A small typed async adapter around Triton's gRPC client for the symbolic model (torch-free).

::

    async with TritonGenerator("127.0.0.1:8001", timeout_s=60) as g:
        await g.wait_ready(timeout_s=30)
        ids = await g.generate(SampleRequest(prompt, temperature=1.0, seed=7, num_bars=8))

The request is a :class:`~musicaas_generator.contract.SampleRequest` (validated when it is
built, before any network traffic). Failures map onto the musicaas error tree: a server
that cannot be reached (or whose model is not loaded) raises
:class:`~musicaas.runtime.errors.Unavailable` ("model server at <url> is unavailable: ..."),
a call that runs out of time :class:`~musicaas.runtime.errors.DeadlineExceeded`, a row the
model's own checks reject (its ``ERROR`` output) :class:`~musicaas_generator.contract.FieldError`
naming the field, and a request Triton itself rejects as malformed
:class:`~musicaas.runtime.errors.InvalidArgument`.
"""

from __future__ import annotations

import asyncio
import time

from musicaas.models.triton_client import TritonClient
from musicaas.runtime.errors import DeadlineExceeded, InvalidArgument, MusicaasError
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


class TritonGenerator(TritonClient):
    """Async client of the ``musicaas_symbolic`` Triton model.

    The url and timeout checks, :meth:`close` and the ``async with`` protocol are
    :class:`musicaas.models.triton_client.TritonClient`'s; entering also makes the gRPC
    client, and :meth:`is_ready` / :meth:`wait_ready` are this model's own.

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
        super().__init__(url, timeout_s=timeout_s, model_name=model_name)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> "TritonGenerator":
        self._ensure_client()
        return self

    def _map_error(self, exc: Exception, *, timeout_s: float) -> MusicaasError:
        if isinstance(exc, MusicaasError):
            return exc
        status = _status_name(exc)
        detail = _message(exc)
        if status == "DEADLINE_EXCEEDED" or isinstance(exc, asyncio.TimeoutError):
            return DeadlineExceeded(f"model server at {self.url} did not answer within {timeout_s:g}s")
        if status == "INVALID_ARGUMENT":
            return InvalidArgument(f"model server at {self.url} rejected the request: {detail}")
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
    def build_inputs(request: contract.SampleRequest):
        """``tritonclient.grpc.InferInput`` objects of :meth:`contract.SampleRequest.to_inputs` (a batch of 1)."""
        from tritonclient.grpc import InferInput

        datatypes = {name: triton for name, _dtype, triton, _shape in contract.INPUTS}
        inputs = []
        for name, array in request.to_inputs().items():
            item = InferInput(name, list(array.shape), datatypes[name])
            item.set_data_from_numpy(array)
            inputs.append(item)
        return inputs

    async def generate(self, request: contract.SampleRequest, *, timeout_s: float | None = None) -> list[int]:
        """Sample a continuation of ``request.prompt_tokens`` on the server.

        With a primer in the prompt (ids after ``BOS``) the result starts with the primer.
        With ``request.melody`` the server harmonises it: it samples the other voices while
        forcing every melody note to be the top voice at its onset (constrained
        decoding), so the decoded MIDI keeps 100% of the melody (see
        :func:`musicaas_generator.tokens.soprano_kept`).

        Parameters
        ----------
        request : contract.SampleRequest
            The validated request (prompt, temperature, seed, bars, token budget, top-k,
            top-p, melody, key guidance).
        timeout_s : float > 0, optional
            Deadline of this call in seconds (default: the client's ``timeout_s``).

        Returns
        -------
        list of int
            Generated ids, prompt not included.

        Raises
        ------
        FieldError
            (an :class:`InvalidArgument`) when the model rejects the request, naming the field;
            a plain :class:`InvalidArgument` when Triton itself rejects it.
        Unavailable
            When the server cannot be reached, the model is not loaded or it failed.
        DeadlineExceeded
            When the call takes longer than ``timeout_s``.
        """
        from tritonclient.grpc import InferRequestedOutput

        deadline = float(timeout_s if timeout_s is not None else self.timeout_s)
        if deadline <= 0:
            raise InvalidArgument(f"timeout_s must be > 0, got {timeout_s!r}")
        inputs = self.build_inputs(request)
        client = self._ensure_client()
        try:
            result = await asyncio.wait_for(
                client.infer(
                    self.model_name,
                    inputs,
                    outputs=[InferRequestedOutput(name) for name, *_ in contract.OUTPUTS],
                    client_timeout=deadline,
                ),
                timeout=deadline + 1.0,
            )
        except Exception as exc:
            raise self._map_error(exc, timeout_s=deadline) from exc
        try:
            return contract.decode_outputs({name: result.as_numpy(name) for name, *_ in contract.OUTPUTS})
        except contract.FieldError as exc:
            raise contract.FieldError(exc.field, f"model server at {self.url} rejected the request: {exc.message}") \
                from None
        except ValueError as exc:
            raise self._unavailable(str(exc)) from None
