"""Run the recommender service: ``python -m musicaas_recommender`` (settings from MUSICAAS_* variables)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from musicaas.events.v1 import events_pb2
from musicaas.recommender.v1 import recommender_pb2_grpc
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus
from musicaas.runtime.logging import configure_logging
from musicaas.runtime.server import GrpcService, run_service
from musicaas_recommender.index import open_index
from musicaas_recommender.listeners import InteractionsConsumer, ListenerRecommender
from musicaas_recommender.listeners.store import InteractionStore
from musicaas_recommender.text_encoder import TritonTextEncoder

log = structlog.get_logger()
from musicaas_recommender.service import (
    AnalyzedConsumer,
    DeletedConsumer,
    IndexWriter,
    RecommenderServicer,
    RecommenderSettings,
)


async def main(settings: RecommenderSettings | None = None, *, stop: asyncio.Event | None = None) -> None:
    """Serve the recommender until SIGTERM (or ``stop``), then close the index and the bus.

    Runs the gRPC service, the ``tracks.analyzed``, ``tracks.deleted`` and
    ``interactions.recorded`` consumers (every tenant's), the scheduled retraining of the
    listener models (``listener_train_interval_s`` > 0) and, when ``index_size_refresh_s`` > 0,
    the periodic count of the index-size gauge. With ``text_encoder_enabled``, track
    descriptions and free-text queries are embedded by the model server at ``triton_url``
    (indexing waits for it: a model server that is down leaves tracks queued, retried).

    Parameters
    ----------
    settings : RecommenderSettings, optional
        Defaults to the ``MUSICAAS_*`` environment.
    stop : asyncio.Event, optional
        Set it to shut down as SIGTERM would.

    Raises
    ------
    FailedPrecondition
        The Qdrant Edge shard cannot be opened (held by another process, or stored with
        another vector size).
    """
    settings = settings or RecommenderSettings()
    configure_logging(service="recommender", level=settings.log_level, fmt=settings.log_format)
    async with contextlib.AsyncExitStack() as stack:
        bus = await stack.enter_async_context(Bus.from_settings(settings, name="recommender"))
        index = open_index(
            qdrant_url=settings.qdrant_url,
            edge_path=settings.qdrant_path,
            dim=settings.embedding_dim,
            collection=settings.qdrant_collection,
            qdrant_api_key=settings.qdrant_api_key or None,
        )
        stack.push_async_callback(index.close)
        encoder = None
        if settings.text_encoder_enabled:
            encoder = TritonTextEncoder(settings.triton_url, timeout_s=settings.text_encoder_timeout_s)
            stack.push_async_callback(encoder.close)
        store = await stack.enter_async_context(InteractionStore(settings.listener_db_path))
        listeners = ListenerRecommender(store, index, settings.listener_config())
        interactions = InteractionsConsumer(listeners)
        writer = IndexWriter(index)  # one for both consumers: one gauge, one lock
        analyzed = AnalyzedConsumer(bus, index, writer=writer, text_encoder=encoder)
        deleted = DeletedConsumer(index, writer=writer)
        await writer.refresh()
        if not await store.tenants():
            # a new listener store (a new volume): rebuild it from the stream's stored
            # interactions.recorded events (idempotent by interaction id)
            replayed = await bus.replay(interactions.subject, interactions.message_type, interactions.handle)
            log.info("listener_store_rebuilt", events=replayed)
        background = [
            lambda: bus.consume(
                durable=analyzed.durable,
                subject=busmod.TRACKS_ANALYZED,
                message_type=events_pb2.TrackAnalyzed,
                handler=analyzed.handle,
                on_permanent_failure=analyzed.failed,
                max_deliver=analyzed.max_deliver,
            ),
            lambda: bus.consume(
                durable=deleted.durable,
                subject=busmod.TRACKS_DELETED,
                message_type=events_pb2.TrackDeleted,
                handler=deleted.handle,
                max_deliver=deleted.max_deliver,
            ),
        ]
        background.append(lambda: bus.consume(
            durable=interactions.durable,
            subject=interactions.subject,
            message_type=interactions.message_type,
            handler=interactions.handle,
            on_permanent_failure=interactions.failed,
        ))
        if settings.listener_train_interval_s > 0:
            background.append(lambda: listeners.run_schedule(settings.listener_train_interval_s))
        if settings.index_size_refresh_s > 0:
            background.append(lambda: writer.refresh_every(settings.index_size_refresh_s))
        await run_service(
            name="recommender",
            **settings.server_kwargs(),
            ready=[lambda: bus.is_connected],
            services=[GrpcService(RecommenderServicer(index, text_encoder=encoder, listeners=listeners),
                                  recommender_pb2_grpc.add_RecommenderServiceServicer_to_server,
                                  "musicaas.recommender.v1.RecommenderService")],
            background=background,
            stop=stop,
        )


if __name__ == "__main__":
    asyncio.run(main())
