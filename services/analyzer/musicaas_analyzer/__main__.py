"""Run the analyzer service: ``python -m musicaas_analyzer`` (settings from MUSICAAS_* variables)."""

from __future__ import annotations

import asyncio
import contextlib

from musicaas.analyzer.v1 import analyzer_pb2_grpc
from musicaas.events.v1 import events_pb2
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus
from musicaas.runtime.logging import configure_logging
from musicaas.runtime.server import GrpcService, run_service
from musicaas_analyzer.service import Analyzer, AnalyzerServicer, AnalyzerSettings, UploadConsumer


async def main(settings: AnalyzerSettings | None = None, *, stop: asyncio.Event | None = None) -> None:
    settings = settings or AnalyzerSettings()
    configure_logging(service="analyzer", level=settings.log_level, fmt=settings.log_format)
    async with contextlib.AsyncExitStack() as stack:
        bus = await stack.enter_async_context(Bus.from_settings(settings, name="analyzer"))
        # starts and warms the worker processes before SERVING; closed after the server stops
        analyzer = await stack.enter_async_context(Analyzer.from_settings(settings))
        consumer = UploadConsumer(bus, analyzer)
        await run_service(
            name="analyzer",
            **settings.server_kwargs(),
            ready=[lambda: bus.is_connected],
            services=[GrpcService(AnalyzerServicer(analyzer), analyzer_pb2_grpc.add_AnalyzerServiceServicer_to_server,
                                  "musicaas.analyzer.v1.AnalyzerService")],
            # one pull loop per worker process, so uploads are analysed on every core
            background=[
                lambda: bus.consume(
                    durable=consumer.durable,
                    subject=busmod.TRACKS_UPLOADED,
                    message_type=events_pb2.TrackUploaded,
                    handler=consumer.handle,
                    on_permanent_failure=consumer.failed,
                    ack_sync=True,  # a lost ack would analyse the track again
                    # the model server down (Unavailable) leaves uploads queued, not failed:
                    # about 50 minutes of redeliveries (2 s x n, at most 60 s apart) before one
                    # is given up; input errors are permanent and end at once
                    max_deliver=consumer.max_deliver,
                )
            ] * max(1, settings.workers),
            stop=stop,
        )


if __name__ == "__main__":
    asyncio.run(main())
