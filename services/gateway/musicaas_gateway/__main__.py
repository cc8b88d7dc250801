"""Run the gateway: ``python -m musicaas_gateway`` (settings from MUSICAAS_* variables)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib

import grpc
import structlog

from musicaas.gateway.v1 import gateway_pb2_grpc
from musicaas.runtime.bus import Bus
from musicaas.runtime.logging import configure_logging
from musicaas.runtime.server import GrpcService, run_service
from musicaas.runtime.tls import TlsFiles, aio_channel
from musicaas_gateway.auth import ApiKeyInterceptor, KeyDirectory
from musicaas_gateway.service import GatewayServicer, GatewaySettings
from musicaas_gateway.webhooks import WebhookDispatcher


def _channel(addr: str, max_bytes: int, tls: TlsFiles) -> grpc.aio.Channel:
    """A channel to an internal service: TLS (mutual with our certificate) when a CA is set."""
    return aio_channel(addr, tls, options=[
        ("grpc.max_receive_message_length", max_bytes),
        ("grpc.max_send_message_length", max_bytes),
        ("grpc.lb_policy_name", "round_robin"),
    ])


async def main(settings: GatewaySettings | None = None, *, stop: asyncio.Event | None = None) -> None:
    settings = settings or GatewaySettings()
    configure_logging(service="gateway", level=settings.log_level, fmt=settings.log_format)
    keys = [k.strip() for k in settings.api_keys.split(",") if k.strip()]
    if not keys:
        structlog.get_logger().info("no_static_api_keys", hint="tenants' keys come from `musicaas tenants add`")
    # each upload in flight holds one executor thread (the object store reads its pipe there):
    # enough threads for every upload allowed at once, plus the other blocking work
    executor = concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_uploads + 8, thread_name_prefix="gateway")
    asyncio.get_running_loop().set_default_executor(executor)
    async with contextlib.AsyncExitStack() as stack:
        bus = await stack.enter_async_context(Bus.from_settings(settings, name="gateway"))
        key_directory = KeyDirectory(bus, keys)
        await key_directory.start()
        dispatcher = WebhookDispatcher(
            bus, timeout_s=settings.webhook_timeout_s, retry_delay_s=settings.webhook_retry_delay_s,
            max_deliver=settings.webhook_max_deliver, allow_private=settings.webhook_allow_private,
        )
        tls = TlsFiles.from_settings(settings)
        generator_channel = _channel(settings.generator_addr, settings.max_message_bytes, tls)
        recommender_channel = _channel(settings.recommender_addr, settings.max_message_bytes, tls)
        stack.push_async_callback(generator_channel.close)
        stack.push_async_callback(recommender_channel.close)
        servicer = GatewayServicer(
            bus, settings, keys=key_directory, generator_channel=generator_channel,
            recommender_channel=recommender_channel,
        )
        await run_service(
            name="gateway",
            **settings.server_kwargs(),
            ready=[lambda: bus.is_connected],
            services=[GrpcService(servicer, gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
                                  "musicaas.gateway.v1.GatewayService")],
            interceptors=[ApiKeyInterceptor(key_directory)],
            background=[key_directory.run, *dispatcher.consumers()],
            stop=stop,
        )


if __name__ == "__main__":
    asyncio.run(main())
