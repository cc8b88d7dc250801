"""Run the generator service: ``python -m musicaas_generator`` (settings from MUSICAAS_* variables).

The package, torch-free: ``contract`` (the tensor contract and request type shared with the
model server), ``triton_client`` (the Triton adapter), ``tokens`` (prompts in, MIDI out),
``params`` (controls, defaults, the plan of a generation), ``pipeline`` (one generation),
``jobs`` (asynchronous jobs), ``servicer`` (the gRPC service), ``settings``.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from musicaas.generator.v1 import generator_pb2_grpc
from musicaas.runtime.bus import Bus
from musicaas.runtime.errors import Unavailable
from musicaas.runtime.logging import configure_logging
from musicaas.runtime.server import GrpcService, run_service
from musicaas_generator.jobs import JobRunner
from musicaas_generator.pipeline import Generator
from musicaas_generator.servicer import GeneratorServicer
from musicaas_generator.settings import GeneratorSettings
from musicaas_generator.triton_client import TritonGenerator


async def main(settings: GeneratorSettings | None = None, *, stop: asyncio.Event | None = None) -> None:
    settings = settings or GeneratorSettings()
    configure_logging(service="generator", level=settings.log_level, fmt=settings.log_format)
    log = structlog.get_logger()
    async with contextlib.AsyncExitStack() as stack:
        bus = await stack.enter_async_context(Bus.from_settings(settings, name="generator"))
        triton = await stack.enter_async_context(TritonGenerator(settings.triton_url, timeout_s=settings.triton_timeout_s))
        try:
            await triton.wait_ready(settings.triton_wait_s)
        except Unavailable as exc:
            # Serve anyway: calls answer UNAVAILABLE until Triton is back, no restart needed.
            log.warning("model_server_not_ready", url=settings.triton_url, error=exc.message)
        generator = Generator(bus, triton, settings)
        await run_service(
            name="generator",
            **settings.server_kwargs(),
            ready=[lambda: bus.is_connected],
            services=[GrpcService(GeneratorServicer(generator), generator_pb2_grpc.add_GeneratorServiceServicer_to_server,
                                  "musicaas.generator.v1.GeneratorService")],
            # asynchronous jobs (music.generations.requested), one at a time
            background=[JobRunner(generator).consume],
            stop=stop,
        )


if __name__ == "__main__":
    asyncio.run(main())
