"""What the platform's async Triton clients share: the lifecycle, and the coalescing of calls.

The clients (the generator's :class:`~musicaas_generator.triton_client.TritonGenerator`, the
analyzer's :class:`~musicaas_analyzer.tagger.TritonTagger`, the recommender's
:class:`~musicaas_recommender.text_encoder.TritonTextEncoder`) subclass:

* :class:`TritonClient`: the ``host:port`` and ``timeout_s`` checks, the lazy
  ``tritonclient.grpc.aio`` client (made on first use), :meth:`~TritonClient.close`, the
  ``async with`` protocol, :meth:`~TritonClient.is_ready` / :meth:`~TritonClient.wait_ready`
  and the :class:`~musicaas.runtime.errors.Unavailable` of a server that cannot be reached
  ("model server at <url> is unavailable: ...");
* :class:`CoalescingTritonClient`: on top, the coalescing of concurrent calls: the calls
  that arrive within ``linger_s`` of each other are handed together to the subclass's
  :meth:`~CoalescingTritonClient._run_batch` (which stacks their rows along the batch
  dimension and sends them in requests of at most ``max_rows`` rows, see
  :meth:`~CoalescingTritonClient._infer`), and each call gets its own result back; the
  ``requests_sent`` / ``rows_sent`` counters count the requests.

Torch-free, and ``tritonclient`` free at import: it is imported inside the methods that use
it, since the programs that import :mod:`musicaas` without calling a model (the gateway, the
CLI) do not install it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Generic, Sequence, TypeVar

from musicaas.runtime.errors import InvalidArgument, Unavailable

#: What one coalesced call hands in, and what it gets back.
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
_Client = TypeVar("_Client", bound="TritonClient")


def error_message(exc: Exception) -> str:
    """The message of a ``tritonclient`` error (``InferenceServerException.message()``), else
    ``str(exc)``, else the exception's type name (never empty)."""
    msg = getattr(exc, "message", None)
    msg = msg() if callable(msg) else msg
    return str(msg or exc) or type(exc).__name__


class TritonClient:
    """The lifecycle of an async client of one Triton model.

    Parameters
    ----------
    url : str
        ``host:port`` of Triton's gRPC endpoint.
    timeout_s : float > 0, seconds
        Deadline of each inference request.
    model_name : str
        Triton model to call.

    Raises
    ------
    InvalidArgument
        For a url that is not ``host:port``, or a ``timeout_s`` that is not > 0.
    """

    def __init__(self, url: str, *, timeout_s: float, model_name: str) -> None:
        if not url or ":" not in url:
            raise InvalidArgument(f"model server url must be 'host:port', got {url!r}")
        if not timeout_s or timeout_s <= 0:
            raise InvalidArgument(f"timeout_s must be > 0, got {timeout_s!r}")
        self.url = url
        self.timeout_s = float(timeout_s)
        self.model_name = model_name
        self._client = None

    async def __aenter__(self: _Client) -> _Client:
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.close()

    def _ensure_client(self):
        """The ``tritonclient.grpc.aio.InferenceServerClient``, made on first use.

        Raises
        ------
        Unavailable
            When the client cannot be made (a malformed url and the like).
        """
        if self._client is None:
            from tritonclient.grpc.aio import InferenceServerClient

            try:
                self._client = InferenceServerClient(url=self.url)
            except Exception as exc:  # malformed url and the like
                raise self._unavailable(str(exc)) from exc
        return self._client

    async def close(self) -> None:
        """Close the gRPC channel (idempotent; a later call opens a new one)."""
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except Exception:  # a channel that never connected
                pass

    def _unavailable(self, detail: str) -> Unavailable:
        return Unavailable(f"model server at {self.url} is unavailable: {detail}")

    async def is_ready(self, *, timeout_s: float = 2.0) -> bool:
        """True when the server answers and the model is loaded (never raises)."""
        try:
            client = self._ensure_client()
            return bool(await client.is_model_ready(self.model_name, client_timeout=timeout_s))
        except Exception:
            return False

    async def wait_ready(self, *, timeout_s: float = 60.0, poll_s: float = 0.5) -> None:
        """Return once :meth:`is_ready`; raise :class:`Unavailable` after ``timeout_s`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(timeout_s)
        while not await self.is_ready(timeout_s=min(2.0, max(0.1, deadline - loop.time()))):
            if loop.time() >= deadline:
                raise self._unavailable(f"{self.model_name} not ready within {timeout_s:g}s")
            await asyncio.sleep(poll_s)


class CoalescingTritonClient(TritonClient, Generic[ItemT, ResultT]):
    """A :class:`TritonClient` whose concurrent calls share requests.

    A subclass's public call checks its argument, then ``return await self._submit(item)``;
    :meth:`_run_batch` gets the items of the calls that arrived within ``linger_s`` of each
    other and returns one result per item, in order (it sends its requests with
    :meth:`_infer`).

    Parameters
    ----------
    url, timeout_s, model_name
        As :class:`TritonClient`.
    linger_s : float >= 0, seconds
        How long a call waits for other calls to share its requests (a negative value is 0).
    max_rows : int in [1, max_batch_size]
        Rows per request.
    max_batch_size : int > 0
        The model's ``max_batch_size`` (its contract's ``MAX_BATCH_SIZE``).
    cancelled_message : str
        Message of the :class:`Unavailable` that the waiting calls get when the shared
        round is cancelled.

    Raises
    ------
    InvalidArgument
        As :class:`TritonClient`, or for ``max_rows`` out of range.
    """

    def __init__(self, url: str, *, timeout_s: float, linger_s: float, max_rows: int, model_name: str,
                 max_batch_size: int, cancelled_message: str = "the request was cancelled") -> None:
        super().__init__(url, timeout_s=timeout_s, model_name=model_name)
        if not 0 < int(max_rows) <= max_batch_size:
            raise InvalidArgument(f"max_rows must be in [1, {max_batch_size}], got {max_rows!r}")
        self.linger_s = max(0.0, float(linger_s))
        self.max_rows = int(max_rows)
        #: Requests sent, and rows per request (tests, logs).
        self.requests_sent = 0
        self.rows_sent: list[int] = []
        self._cancelled_message = cancelled_message
        self._pending: list[tuple[ItemT, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    # ------------------------------------------------------------------ one request

    async def _infer(self, client, make_inputs: Callable[[], list], outputs: list, rows: int) -> Any:
        """Send one request of ``rows`` rows: count it in ``requests_sent`` / ``rows_sent``,
        then ``client.infer(model_name, make_inputs(), outputs=outputs)`` within ``timeout_s``;
        returns Triton's ``InferResult``.

        Raises
        ------
        Unavailable
            When the call fails (``make_inputs`` included) or gets no answer within
            ``timeout_s`` (plus a second's grace for the client's own deadline).
        """
        self.requests_sent += 1
        self.rows_sent.append(rows)
        try:
            return await asyncio.wait_for(
                client.infer(self.model_name, make_inputs(), outputs=outputs, client_timeout=self.timeout_s),
                timeout=self.timeout_s + 1.0,
            )
        except asyncio.TimeoutError:
            raise self._unavailable(f"no answer within {self.timeout_s:g}s") from None
        except Exception as exc:
            raise self._unavailable(error_message(exc)) from exc

    # ------------------------------------------------------------------ coalescing

    async def _submit(self, item: ItemT) -> ResultT:
        """``item``'s result, computed by :meth:`_run_batch` together with the items of the
        calls that arrive within ``linger_s``; raises what that round raised."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_later())
        return await future

    async def _run_batch(self, items: list[ItemT]) -> Sequence[ResultT]:
        """One result per item, in order (subclasses)."""
        raise NotImplementedError

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.linger_s)
        batch, self._pending = self._pending, []
        self._flusher = None  # calls from now on start the next round
        try:
            results = await self._run_batch([item for item, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - every waiting call gets the error
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else Unavailable(self._cancelled_message))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), res in zip(batch, results):
            if not fut.done():
                fut.set_result(res)
