"""Webhooks: registration through the API, signed deliveries from a durable consumer to a real
HTTP receiver on loopback, retries with backoff, each endpoint served once, and a dead-letter
record after the last retry; the signature scheme checked both ways (a tampered body fails)."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
import uuid

import grpc
import pytest

from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.gateway.v1 import gateway_pb2
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus
from musicaas.runtime.errors import InvalidArgument, NotFound
from musicaas_gateway import webhooks
from musicaas_gateway.auth import KeyDirectory
from musicaas_gateway.service import GatewayServicer, GatewaySettings
from musicaas_gateway.tenants import add_tenant

pytestmark = pytest.mark.integration


# --- the signature scheme ------------------------------------------------------------------


def test_a_signed_body_verifies_and_a_tampered_one_does_not():
    secret = webhooks.new_secret()
    body = b'{"id":"analyzed:acme:trk_1","data":{}}'
    ts = int(time.time())
    headers = {"webhook-id": "analyzed:acme:trk_1", "webhook-timestamp": str(ts),
               "webhook-signature": webhooks.sign(secret, "analyzed:acme:trk_1", ts, body)}
    assert webhooks.verify(secret, headers, body)
    assert not webhooks.verify(secret, headers, body.replace(b"{}", b'{"x":1}'))  # tampered body
    assert not webhooks.verify(webhooks.new_secret(), headers, body)  # another secret
    assert not webhooks.verify(secret, {**headers, "webhook-id": "other"}, body)  # another id
    old = ts - 3600
    stale = {**headers, "webhook-timestamp": str(old), "webhook-signature": webhooks.sign(secret, headers["webhook-id"], old, body)}
    assert not webhooks.verify(secret, stale, body)  # replayed an hour later
    assert webhooks.verify(secret, {k.upper(): v for k, v in headers.items()}, body)  # header case


def test_the_signature_is_base64_hmac_sha256_of_id_timestamp_and_body():
    import base64
    import hashlib
    import hmac

    key = bytes(range(24))
    secret = "whsec_" + base64.b64encode(key).decode()
    expected = base64.b64encode(hmac.new(key, b"msg_1.1700000000.hello", hashlib.sha256).digest()).decode()
    assert webhooks.sign(secret, "msg_1", 1700000000, b"hello") == "v1," + expected


@pytest.mark.parametrize("url", [
    "http://example.com/hook", "ftp://example.com/x", "https://", "https://user:pw@example.com/",
    "https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://169.254.169.254/latest/meta-data",
    "https://[::1]/hook", "https://localhost/hook", "https://exa mple.com/", "https://e.com/" + "x" * 2100,
])
def test_endpoints_that_are_not_public_https_are_refused(url):
    with pytest.raises(InvalidArgument):
        webhooks.check_url(url)


def test_public_https_and_allowed_private_endpoints_are_accepted():
    assert webhooks.check_url("https://hooks.example.com/musicaas?x=1")
    assert webhooks.check_url("http://127.0.0.1:8080/hook", allow_private=True)
    assert webhooks.check_events([]) == list(webhooks.WEBHOOK_EVENTS)
    with pytest.raises(InvalidArgument, match=r"events\[1\]"):
        webhooks.check_events(["tracks.analyzed", "tracks.uploaded"])  # internal events are not offered


# --- delivery -------------------------------------------------------------------------------


class Receiver:
    """An HTTP endpoint on loopback that answers 500 to the first ``fail_first`` requests."""

    def __init__(self, fail_first: int = 0, always_fail: bool = False) -> None:
        self.fail_first, self.always_fail = fail_first, always_fail
        self.requests: list[tuple[dict, bytes, int]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                status = 500 if outer.always_fail or len(outer.requests) < outer.fail_first else 204
                outer.requests.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()


class _Ctx:
    def __init__(self, key: str) -> None:
        self.key = key

    def invocation_metadata(self):
        return (("authorization", f"Bearer {self.key}"),)


@pytest.fixture
async def platform(nats_url):
    async with Bus(nats_url, name="gateway") as bus:
        name = f"hooks-{uuid.uuid4().hex[:6]}"
        _, key = await add_tenant(bus, name)
        keys = KeyDirectory(bus, [])
        await keys.start()
        settings = GatewaySettings(webhook_allow_private=True, webhook_retry_delay_s=0.2, webhook_max_deliver=4,
                                   webhook_timeout_s=2.0)
        nowhere = grpc.aio.insecure_channel("127.0.0.1:1")  # these flows call no downstream service
        servicer = GatewayServicer(bus, settings, keys=keys, generator_channel=nowhere, recommender_channel=nowhere)
        dispatcher = webhooks.WebhookDispatcher(bus, timeout_s=2.0, retry_delay_s=0.2, max_deliver=4,
                                                allow_private=True)
        tasks = [asyncio.create_task(c()) for c in dispatcher.consumers()]
        yield {"bus": bus, "tenant": name, "ctx": _Ctx(key), "gateway": servicer}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await nowhere.close()


async def _until(cond, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("not within the time")


async def test_a_failing_endpoint_gets_the_event_once_after_retries_signed(platform):
    bus, tenant, ctx, gateway = platform["bus"], platform["tenant"], platform["ctx"], platform["gateway"]
    flaky, broken = Receiver(fail_first=2), Receiver(always_fail=True)
    try:
        reg = await gateway.RegisterWebhook(gateway_pb2.RegisterWebhookRequest(
            url=flaky.url, events=["tracks.analyzed"]), ctx)
        secret = reg.webhook.secret
        assert secret.startswith("whsec_") and reg.webhook.webhook_id.startswith("whk_")
        bad = await gateway.RegisterWebhook(gateway_pb2.RegisterWebhookRequest(url=broken.url), ctx)
        listed = (await gateway.ListWebhooks(gateway_pb2.ListWebhooksRequest(), ctx)).webhooks
        assert {h.webhook_id for h in listed} == {reg.webhook.webhook_id, bad.webhook.webhook_id}
        assert all(h.secret == "" for h in listed)  # the secret is shown once

        track_id = "trk_" + uuid.uuid4().hex[:24]
        event = events_pb2.TrackAnalyzed(track_id=track_id, tenant=tenant,
                                         analysis=common_pb2.TrackAnalysis(key="D", tempo_bpm=96.0))
        await bus.publish(busmod.TRACKS_ANALYZED, event, event_id=f"analyzed:{tenant}:{track_id}")
        # 2 failures, then success; the broken one is tried max_deliver (4) times, then dead-lettered
        await _until(lambda: any(s == 204 for _, _, s in flaky.requests) and len(broken.requests) >= 4)
        await asyncio.sleep(1.5)  # any extra delivery would come by now
        statuses = [s for _, _, s in flaky.requests]
        assert statuses == [500, 500, 204]  # exactly once successfully, though the event was retried for the other
        assert len(broken.requests) == 4
        headers, body, _ = flaky.requests[-1]
        assert webhooks.verify(secret, headers, body)
        assert not webhooks.verify(secret, headers, body + b" ")
        payload = json.loads(body)
        assert payload["event"] == "tracks.analyzed" and payload["tenant"] == tenant
        assert payload["type"] == "io.musicaas.tracks.analyzed.v1" and payload["id"] == f"analyzed:{tenant}:{track_id}"
        assert payload["data"]["track_id"] == track_id and payload["data"]["analysis"]["key"] == "D"
        # the last retry left a dead-letter record of the event
        letters = await bus.dead_letters("gateway-webhooks-tracks-analyzed")
        mine = [d for d in letters if d.ce_id == f"analyzed:{tenant}:{track_id}"]
        assert len(mine) == 1 and mine[0].code == "UNAVAILABLE" and bad.webhook.webhook_id in mine[0].reason
    finally:
        flaky.close()
        broken.close()


async def test_only_chosen_events_go_out_and_a_deleted_webhook_gets_nothing(platform):
    bus, tenant, ctx, gateway = platform["bus"], platform["tenant"], platform["ctx"], platform["gateway"]
    rx = Receiver()
    try:
        reg = await gateway.RegisterWebhook(gateway_pb2.RegisterWebhookRequest(
            url=rx.url, events=["tracks.deleted"]), ctx)
        await bus.publish(busmod.TRACKS_FAILED, events_pb2.TrackFailed(track_id="trk_x", tenant=tenant, stage="analyzer"),
                          event_id=f"failed:{tenant}:x")
        await bus.publish(busmod.TRACKS_DELETED, events_pb2.TrackDeleted(track_id="trk_y", tenant=tenant),
                          event_id=f"deleted:{tenant}:y")
        await _until(lambda: len(rx.requests) >= 1)
        await asyncio.sleep(1.0)
        assert [json.loads(b)["event"] for _, b, _ in rx.requests] == ["tracks.deleted"]
        await gateway.DeleteWebhook(gateway_pb2.DeleteWebhookRequest(webhook_id=reg.webhook.webhook_id), ctx)
        with pytest.raises(NotFound):
            await gateway.DeleteWebhook(gateway_pb2.DeleteWebhookRequest(webhook_id=reg.webhook.webhook_id), ctx)
        await bus.publish(busmod.TRACKS_DELETED, events_pb2.TrackDeleted(track_id="trk_z", tenant=tenant),
                          event_id=f"deleted:{tenant}:z")
        await asyncio.sleep(1.5)
        assert len(rx.requests) == 1
        with pytest.raises(InvalidArgument):
            await gateway.DeleteWebhook(gateway_pb2.DeleteWebhookRequest(webhook_id="../x"), ctx)
    finally:
        rx.close()


async def test_registration_refuses_bad_endpoints_by_default(nats_url):
    async with Bus(nats_url, name="gateway") as bus:
        name = f"hooks-{uuid.uuid4().hex[:6]}"
        _, key = await add_tenant(bus, name)
        keys = KeyDirectory(bus, [])
        await keys.start()
        nowhere = grpc.aio.insecure_channel("127.0.0.1:1")
        gateway = GatewayServicer(bus, GatewaySettings(), keys=keys, generator_channel=nowhere,
                                  recommender_channel=nowhere)
        with pytest.raises(InvalidArgument, match="https"):
            await gateway.RegisterWebhook(gateway_pb2.RegisterWebhookRequest(url="http://127.0.0.1:9/x"), _Ctx(key))
        with pytest.raises(InvalidArgument, match="private"):
            await gateway.RegisterWebhook(gateway_pb2.RegisterWebhookRequest(url="https://10.0.0.1/x"), _Ctx(key))
        assert await bus.list_webhooks(name) == []
        await nowhere.close()
