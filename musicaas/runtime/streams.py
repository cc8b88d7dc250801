"""A bounded pipe from an async producer (a gRPC client stream) to a blocking reader.

The NATS object store (``nats.js.object_store.ObjectStore.put``) reads a file-like object
with ``readinto`` in an executor thread, chunk by chunk, publishing each chunk as it is
read. :class:`ChunkPipe` is that file-like object: the upload handler writes the chunks it
receives, the object store reads them, and at most ``max_buffered_bytes`` wait between the
two, so an upload of any size holds a bounded amount of memory in the gateway.

:meth:`ChunkPipe.abort` makes the reader raise, which makes the object store purge the
chunks it already stored: a cancelled or refused upload leaves no object behind.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque


def _resolve(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class PipeAborted(Exception):
    """Raised in the reader when the writer aborted the pipe (the upload was cancelled or refused)."""


class ChunkPipe:
    """A bounded, thread-safe byte pipe: async writes, blocking ``readinto``.

    Parameters
    ----------
    max_buffered_bytes : int > 0, bytes
        Most bytes written but not yet read; :meth:`write` waits while the pipe holds more.
    """

    def __init__(self, *, max_buffered_bytes: int = 4 * 1024 * 1024) -> None:
        if max_buffered_bytes <= 0:
            raise ValueError(f"max_buffered_bytes must be > 0, got {max_buffered_bytes}")
        self.max_buffered_bytes = max_buffered_bytes
        self._chunks: deque[memoryview] = deque()
        self._buffered = 0
        self._closed = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        #: Largest number of bytes buffered at any moment (for tests and benchmarks).
        self.peak_buffered_bytes = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes written and not yet read."""
        return self._buffered

    def _room(self) -> bool:
        return self._buffered < self.max_buffered_bytes or self._error is not None

    async def write(self, data: bytes) -> None:
        """Append ``data``; waits (without blocking the event loop) while the pipe is full.

        Raises
        ------
        PipeAborted
            The pipe was aborted, or closed for writing.
        """
        if not data:
            return
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                if self._closed or self._error is not None:
                    raise PipeAborted("write to a closed or aborted pipe")
                if self._room():
                    break
                # wait in the event loop, not in a thread: the reader (an executor thread)
                # wakes us when it has taken data, so no executor thread is held while full
                waiter = loop.create_future()
                self._waiters.append((loop, waiter))
            await waiter
        with self._cond:
            if self._error is not None:
                raise PipeAborted("the pipe was aborted") from self._error
            self._chunks.append(memoryview(bytes(data)))
            self._buffered += len(data)
            self.peak_buffered_bytes = max(self.peak_buffered_bytes, self._buffered)
            self._cond.notify_all()

    def _wake_writers(self) -> None:
        """Resolve the futures of writers waiting for room (called with the lock held)."""
        while self._waiters:
            loop, waiter = self._waiters.pop()
            loop.call_soon_threadsafe(_resolve, waiter)

    def close(self) -> None:
        """End of data: the reader gets the rest, then 0 (end of file)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def abort(self, error: BaseException | None = None) -> None:
        """Make the reader raise :class:`PipeAborted` at its next read; buffered bytes are dropped."""
        with self._cond:
            self._error = error or PipeAborted("the upload was aborted")
            self._chunks.clear()
            self._buffered = 0
            self._wake_writers()
            self._cond.notify_all()

    # -- the reader's side: a minimal binary file object ---------------------------------

    def readable(self) -> bool:
        """True: the object store treats the pipe as a readable binary file."""
        return True

    def readinto(self, buffer) -> int:
        """Fill ``buffer`` with up to ``len(buffer)`` bytes; blocks until data, end of file or abort.

        Returns
        -------
        int
            Bytes written into ``buffer``; 0 at the end of the data.

        Raises
        ------
        PipeAborted
            The writer aborted the pipe.
        """
        out = memoryview(buffer).cast("B")
        with self._cond:
            self._cond.wait_for(lambda: self._chunks or self._closed or self._error is not None)
            if self._error is not None:
                raise PipeAborted(str(self._error)) from self._error
            n = 0
            while self._chunks and n < len(out):
                head = self._chunks[0]
                take = min(len(head), len(out) - n)
                out[n:n + take] = head[:take]
                n += take
                if take == len(head):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = head[take:]
            self._buffered -= n
            if self._room():
                self._wake_writers()
            return n
