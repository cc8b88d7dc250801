"""ChunkPipe: chunks reach the real NATS object store as they are written, in bounded memory; an abort leaves nothing."""

from __future__ import annotations

import asyncio
import hashlib
import os

import nats
import nats.js.errors
import pytest

from musicaas.runtime.streams import ChunkPipe, PipeAborted


@pytest.fixture()
async def store(nats_url):
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    bucket = "pipetest" + os.urandom(4).hex()
    obj = await js.create_object_store(bucket=bucket)
    yield obj
    await js.delete_object_store(bucket)
    await nc.close()


async def test_a_large_stream_is_stored_whole_with_bounded_buffering(store):
    pipe = ChunkPipe(max_buffered_bytes=256 * 1024)
    put = asyncio.create_task(store.put("big", pipe))
    digest, total = hashlib.sha256(), 0
    for i in range(64):  # 16 MiB in 256 KiB chunks
        chunk = os.urandom(256 * 1024)
        digest.update(chunk)
        total += len(chunk)
        await pipe.write(chunk)
    pipe.close()
    info = await asyncio.wait_for(put, 60)
    assert info.size == total
    # the writer waited for the reader: never more than the bound plus one chunk in memory
    assert pipe.peak_buffered_bytes <= 2 * 256 * 1024
    got = await store.get("big")
    assert hashlib.sha256(got.data).digest() == digest.digest()


async def test_an_aborted_stream_leaves_no_object_and_no_chunks(store):
    pipe = ChunkPipe(max_buffered_bytes=64 * 1024)
    put = asyncio.create_task(store.put("cancelled", pipe))
    for _ in range(8):
        await pipe.write(os.urandom(64 * 1024))
    await asyncio.sleep(0.2)  # some chunks are stored by now
    pipe.abort()
    with pytest.raises(PipeAborted):
        await asyncio.wait_for(put, 30)
    with pytest.raises(nats.js.errors.ObjectNotFoundError):
        await store.get("cancelled")
    status = await store.status()
    assert status.size == 0  # the stored chunks were purged
    with pytest.raises(PipeAborted):
        await pipe.write(b"more")


async def test_readinto_splits_and_joins_chunks():
    pipe = ChunkPipe(max_buffered_bytes=1024)
    await pipe.write(b"abcdef")
    await pipe.write(b"gh")
    pipe.close()
    buf = bytearray(4)
    out = []
    while n := await asyncio.to_thread(pipe.readinto, buf):
        out.append(bytes(buf[:n]))
    assert b"".join(out) == b"abcdefgh" and out[0] == b"abcd"
    with pytest.raises(ValueError):
        ChunkPipe(max_buffered_bytes=0)
