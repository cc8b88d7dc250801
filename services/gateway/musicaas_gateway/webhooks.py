"""Webhooks: a tenant's events POSTed to its HTTPS endpoints, signed, retried, dead-lettered.

Registered with ``RegisterWebhook`` (URL and event kinds; the signing secret is returned once),
delivered by the gateway from one durable consumer per event kind (``gateway-webhooks-<kind>``):

* **Body:** JSON, ``{"id", "type", "time", "tenant", "event", "data"}``: the CloudEvents id,
  type and time of the event, its kind (``tracks.analyzed``, ...), and the event's protobuf
  payload as proto3 JSON (field names as in ``protos/musicaas/events/v1/events.proto``).
* **Signature** (the Standard Webhooks scheme, https://www.standardwebhooks.com): headers
  ``webhook-id`` (the event id), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature:
  v1,<base64 HMAC-SHA256>``, computed with the secret's bytes (the base64 after ``whsec_``)
  over ``"<webhook-id>.<webhook-timestamp>.<body>"``. :func:`verify` checks one; receivers
  should also refuse timestamps more than 5 minutes away and drop repeated ``webhook-id``\\ s.
* **Retries:** a delivery that does not answer 2xx within ``webhook_timeout_s`` is retried
  with the message: a nak delayed ``webhook_retry_delay_s`` times the delivery count, up to
  ``webhook_max_deliver`` deliveries, then the event is terminated and leaves a dead-letter
  record (``DEADLETTER``, ``deadletter.gateway-webhooks-<kind>``). A webhook that already got
  the event is not sent it again when another webhook of the tenant needs a retry (a
  delivery marker per webhook and event, kept 7 days), so each endpoint receives each event
  once, unless the gateway dies between the endpoint's answer and the marker.
* **Safety:** only ``https://`` URLs (``http://`` and private, loopback and link-local
  addresses only with ``webhook_allow_private``, for tests and closed networks); the host is
  resolved again at each delivery and refused if it lands on such an address; redirects are
  not followed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import structlog
from google.protobuf import json_format

from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus
from musicaas.runtime.errors import InvalidArgument, Unavailable

log = structlog.get_logger()

#: Event kinds a webhook can receive, and their payload types.
WEBHOOK_EVENTS = {
    busmod.TRACKS_ANALYZED: events_pb2.TrackAnalyzed,
    busmod.TRACKS_FAILED: events_pb2.TrackFailed,
    busmod.TRACKS_DELETED: events_pb2.TrackDeleted,
    busmod.GENERATIONS_COMPLETED: events_pb2.GenerationCompleted,
    busmod.GENERATIONS_FAILED: events_pb2.GenerationFailed,
}
MAX_URL_CHARS = 2048
MAX_WEBHOOKS_PER_TENANT = 10
SECRET_PREFIX = "whsec_"
WEBHOOK_ID_RE = re.compile(r"whk_[0-9a-f]{24}")
#: Largest timestamp skew :func:`verify` accepts by default, seconds.
TOLERANCE_S = 300


def new_secret() -> str:
    """A signing secret: ``whsec_`` + base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 over ``id.timestamp.body``."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance_s: float = TOLERANCE_S,
           now: float | None = None) -> bool:
    """Whether a delivery's signature is valid (the receiver's check; header names in any case).

    Parameters
    ----------
    secret : str
        The ``whsec_...`` secret of the webhook.
    headers : dict
        The request's headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).
    body : bytes
        The raw request body.
    tolerance_s : float, seconds
        Largest accepted distance between the timestamp and ``now``.
    """
    h = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, timestamp = h["webhook-id"], int(h["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in h.get("webhook-signature", "").split())


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved \
        or ip.is_unspecified


def check_url(url: str, *, allow_private: bool = False) -> str:
    """``url`` when it is an acceptable webhook endpoint.

    Raises
    ------
    InvalidArgument
        Not ``https://`` (``http://`` only with ``allow_private``), too long, no host, or an
        IP address on a private, loopback or link-local network (allowed with ``allow_private``).
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidArgument(f"url: 1-{MAX_URL_CHARS} printable characters without spaces")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        raise InvalidArgument("url: must be https://")
    if not parts.hostname or parts.username or parts.password:
        raise InvalidArgument("url: needs a host, and no user name or password")
    host = parts.hostname
    if not allow_private:
        try:
            if _private(host):
                raise InvalidArgument("url: private, loopback and link-local addresses are refused")
        except ValueError:  # a host name: checked again when it is resolved at delivery
            if host == "localhost" or host.endswith(".localhost") or host.endswith(".local"):
                raise InvalidArgument("url: local host names are refused") from None
    return url


def check_events(events) -> list[str]:
    """The event kinds of a webhook (every kind when empty).

    Raises
    ------
    InvalidArgument
        For a kind that is not one of :data:`WEBHOOK_EVENTS` (the message names the index).
    """
    out = []
    for i, kind in enumerate(events):
        if kind not in WEBHOOK_EVENTS:
            raise InvalidArgument(f"events[{i}]: expected one of {', '.join(WEBHOOK_EVENTS)}")
        if kind not in out:
            out.append(kind)
    return out or list(WEBHOOK_EVENTS)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class WebhookDispatcher:
    """Delivers the tenants' events to their webhooks (see the module docstring).

    Parameters
    ----------
    bus : Bus
    timeout_s : float, seconds
        Per HTTP request.
    retry_delay_s : float, seconds
        Nak delay unit (times the delivery count).
    max_deliver : int
        Deliveries before an event is dead-lettered.
    allow_private : bool
        Deliver to private / loopback addresses and plain http (tests, closed networks).
    """

    def __init__(self, bus: Bus, *, timeout_s: float = 10.0, retry_delay_s: float = 5.0, max_deliver: int = 8,
                 allow_private: bool = False) -> None:
        self.bus = bus
        self.timeout_s = timeout_s
        self.retry_delay_s = retry_delay_s
        self.max_deliver = max_deliver
        self.allow_private = allow_private
        self._opener = urllib.request.build_opener(_NoRedirect)

    def consumers(self) -> list:
        """One zero-argument coroutine function per event kind, for ``run_service(background=...)``."""
        return [lambda kind=kind: self.consume(kind) for kind in WEBHOOK_EVENTS]

    async def consume(self, kind: str) -> None:
        """Run the durable consumer of ``kind`` until cancelled."""
        await self.bus.consume(
            durable=f"gateway-webhooks-{kind.replace('.', '-')}", subject=kind,
            message_type=WEBHOOK_EVENTS[kind], handler=lambda event, headers: self.deliver(kind, event, headers),
            max_deliver=self.max_deliver, nak_delay_s=self.retry_delay_s, ack_wait_s=max(15.0, 3 * self.timeout_s),
        )

    async def deliver(self, kind: str, event, headers: dict[str, str]) -> None:
        """POST the event to each of the tenant's webhooks that wants ``kind`` and has not got it.

        Raises
        ------
        Unavailable
            When an endpoint did not take it (the event is retried for those that did not).
        """
        hooks = [h for h in await self.bus.list_webhooks(event.tenant) if kind in h.events]
        if not hooks:
            return
        event_id = headers.get("ce-id", "")
        body = json.dumps({
            "id": event_id, "type": headers.get("ce-type", ""), "time": headers.get("ce-time", ""),
            "tenant": event.tenant, "event": kind,
            "data": json_format.MessageToDict(event, preserving_proto_field_name=True),
        }, separators=(",", ":")).encode()
        failed = []
        for hook in hooks:
            if await self.bus.webhook_delivered(event.tenant, hook.webhook_id, event_id):
                continue
            error = await asyncio.to_thread(self._post, hook, event_id, body)
            if error is None:
                await self.bus.mark_webhook_delivered(event.tenant, hook.webhook_id, event_id)
                log.info("webhook_delivered", tenant=event.tenant, webhook_id=hook.webhook_id, kind=kind)
            else:
                failed.append(f"{hook.webhook_id}: {error}")
                log.warning("webhook_failed", tenant=event.tenant, webhook_id=hook.webhook_id, kind=kind, error=error)
        if failed:
            raise Unavailable("webhook delivery failed: " + "; ".join(failed))

    def _post(self, hook: common_pb2.Webhook, event_id: str, body: bytes) -> str | None:
        """One HTTP POST; None on a 2xx answer, else why (status or error, short)."""
        host = urllib.parse.urlsplit(hook.url).hostname or ""
        if not self.allow_private:
            try:
                addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
            except OSError as exc:
                return f"cannot resolve the host: {exc.strerror or exc}"
            if any(_private(a) for a in addresses):
                return "the host resolves to a private address"
        timestamp = int(time.time())
        request = urllib.request.Request(hook.url, data=body, method="POST", headers={
            "content-type": "application/json", "user-agent": "musicaas-webhooks/1",
            "webhook-id": event_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(hook.secret, event_id, timestamp, body),
        })
        try:
            with self._opener.open(request, timeout=self.timeout_s) as resp:
                return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return f"{type(exc).__name__}: {str(getattr(exc, 'reason', exc))[:100]}"


def new_webhook(tenant: str, url: str, events, *, allow_private: bool = False) -> common_pb2.Webhook:
    """A new webhook record (id and secret made here), after checking ``url`` and ``events``."""
    return common_pb2.Webhook(
        webhook_id="whk_" + secrets.token_hex(12), tenant=tenant, url=check_url(url, allow_private=allow_private),
        events=check_events(events), secret=new_secret(),
    )
