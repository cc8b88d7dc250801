"""``musicaas.generator.v1.GeneratorService``: ``GenerateTrack`` and the progress stream of
``GenerateTrackStream`` over :class:`~musicaas_generator.pipeline.Generator` (torch-free)."""

from __future__ import annotations

import asyncio

import structlog

from musicaas.generator.v1 import generator_pb2, generator_pb2_grpc
from musicaas.runtime.bus import new_id
from musicaas.tenancy import tenant_from_context
from musicaas_generator.pipeline import Generator

log = structlog.get_logger()


class GeneratorServicer(generator_pb2_grpc.GeneratorServiceServicer):
    """``musicaas.generator.v1.GeneratorService`` over :class:`Generator`."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    async def GenerateTrack(self, request, context) -> generator_pb2.GenerateTrackResponse:
        """One generation for the calling tenant (``x-musicaas-tenant`` metadata, set by the gateway)."""
        tenant = tenant_from_context(context)
        return generator_pb2.GenerateTrackResponse(result=await self.generator.generate(request, tenant=tenant))

    async def GenerateTrackStream(self, request, context):
        """Progress events, then COMPLETED with the result; the caller's cancellation stops the work."""
        tenant = tenant_from_context(context)
        if not request.generation_id:
            request = generator_pb2.GenerateTrackRequest(params=request.params, generation_id=new_id("gen"))
        generation_id = request.generation_id
        queue: asyncio.Queue[generator_pb2.GenerationProgress] = asyncio.Queue()
        task = asyncio.create_task(self.generator.generate(request, progress=queue.put_nowait, tenant=tenant))
        getter: asyncio.Future | None = None
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                    continue
                getter.cancel()
                while not queue.empty():
                    yield queue.get_nowait()
                result = task.result()  # raises the generation's error
                yield generator_pb2.GenerationProgress(
                    generation_id=generation_id, stage=generator_pb2.GENERATION_STAGE_COMPLETED,
                    num_variations=len(result.pieces), fraction=1.0, message="completed", result=result,
                )
                return
        finally:
            if getter is not None and not getter.done():
                getter.cancel()
            if not task.done():
                # the caller went away (or the server is stopping): stop sampling, store nothing
                task.cancel()
                try:
                    await task
                except BaseException:  # noqa: BLE001 - cancelled on purpose
                    pass
                log.info("generation_cancelled", generation_id=generation_id)
