"""Tenants, partner feeds and TLS on the whole local stack (the tiny model on the model server),
run the way `musicaas up --tls` runs it: a private CA, TLS on the gateway and on NATS, mutual TLS between the services, NATS with
authentication on. Tenants and partner credentials are made with the `musicaas tenants` CLI
while the stack runs (no restart)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import grpc
import nats
import nats.errors
import nats.js.errors
import numpy as np
import pytest

from grpc_health.v1 import health_pb2
from musicaas.client import GatewayClient
from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.render import encode_wav
from musicaas.runtime.tls import TlsFiles, nats_ssl_context
from musicaas_cli.stack import LocalStack, StackPorts, health_status

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SR = 22050


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = LocalStack(tmp_path_factory.mktemp("stack"), ports=StackPorts.free(), tiny_model=True, tls=True)
    s.start()
    yield s
    s.stop()


def cli(stack: LocalStack, *args: str) -> dict:
    """Run ``musicaas --state-dir <stack> ARGS`` and parse its JSON output."""
    out = subprocess.run([sys.executable, "-m", "musicaas_cli", "--state-dir", str(stack.state_dir), *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def tenants(stack):
    """Two tenants made with the CLI on the running stack (name -> API key), once the gateway
    accepts their keys (it reads the tenants bucket again within a second, without a restart)."""
    keys = {name: cli(stack, "tenants", "add", name)["api_key"] for name in ("acme", "beta")}
    deadline = time.monotonic() + 10
    for key in keys.values():
        with client(stack, key) as c:
            while True:
                try:
                    c.usage()
                    break
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAUTHENTICATED or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
    return keys


def client(stack: LocalStack, key: str) -> GatewayClient:
    return GatewayClient(stack.gateway_addr, key, ca_file=stack.ca_file, timeout_s=30)


def wav(seed: int, seconds: float = 3.0) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = sum(0.15 * np.sin(2 * np.pi * (196.0 + 20 * seed) * k * t) / k for k in (1, 2, 3))
    return encode_wav(np.asarray(y + 0.01 * rng.standard_normal(len(t)), dtype=np.float32), sample_rate_hz=SR)


def test_every_hop_is_tls_and_plaintext_is_refused(stack):
    # the gateway: a plaintext client gets nowhere, one that verifies the CA is served
    with GatewayClient(stack.gateway_addr, stack.api_key, timeout_s=5) as plain:
        with pytest.raises(grpc.RpcError) as refused:
            plain.get_track("trk_" + "0" * 24)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    with client(stack, stack.api_key) as c:
        tid = c.upload_bytes(wav(1), filename="tls.wav").track_id
        assert c.wait_track(tid, timeout_s=120).state == common_pb2.TRACK_STATE_INDEXED
        piece = c.generate(key="C major", num_bars=1, seed=3).pieces[0]  # gateway -> generator
        assert piece.midi and c.wait_track(piece.track_id, timeout_s=120).state == common_pb2.TRACK_STATE_INDEXED
        # gateway -> recommender over mutual TLS: the tenant's other indexed track is found
        assert piece.track_id in {t.track_id for t in c.similar(tid, limit=5)}
    # an internal service wants a client certificate from the CA
    ca_only = TlsFiles(ca_file=str(stack.ca_file))
    assert health_status(stack.addr("recommender"), tls=ca_only, timeout_s=3) is None
    assert health_status(stack.addr("recommender"), tls=stack.tls_files(), timeout_s=3) \
        == health_pb2.HealthCheckResponse.SERVING
    assert health_status(stack.addr("recommender"), timeout_s=3) is None  # plaintext

    # NATS: TLS required, and credentials
    async def nats_checks():
        kwargs = stack.nats_connect_kwargs()
        with pytest.raises(Exception):
            await nats.connect(kwargs["servers"], nkeys_seed=kwargs["nkeys_seed"], connect_timeout=2,
                               allow_reconnect=False, max_reconnect_attempts=0)  # no TLS
        with pytest.raises(Exception):
            await nats.connect(kwargs["servers"], tls=kwargs["tls"], connect_timeout=2, allow_reconnect=False,
                               max_reconnect_attempts=0)  # TLS, but no credentials
        nc = await nats.connect(**kwargs)
        assert nc.is_connected and nc.connected_url.scheme in ("nats", "tls")
        await nc.close()

    asyncio.run(nats_checks())


def test_two_tenants_on_one_stack_see_only_their_own(stack, tenants):
    data = wav(2)
    with client(stack, tenants["acme"]) as acme, client(stack, tenants["beta"]) as beta:
        a_id = acme.upload_bytes(data, filename="same.wav").track_id
        b_id = beta.upload_bytes(data, filename="same.wav").track_id
        a_other = acme.upload_bytes(wav(3), filename="other.wav").track_id
        assert a_id != b_id  # the same file is two tracks, with ids nobody else can compute
        for c, tid in ((acme, a_id), (beta, b_id), (acme, a_other)):
            assert c.wait_track(tid, timeout_s=120).state == common_pb2.TRACK_STATE_INDEXED
        for c, foreign in ((acme, b_id), (beta, a_id)):
            with pytest.raises(grpc.RpcError) as nope:
                c.get_track(foreign)
            assert nope.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as nope:
                c.similar(foreign)
            assert nope.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as nope:
                c.delete_track(foreign)
            assert nope.value.code() == grpc.StatusCode.NOT_FOUND
        assert {t.track_id for t in acme.similar(a_id, limit=50)} == {a_other}
        assert list(beta.similar(b_id, limit=50)) == []
        assert {t.track_id for t in acme.list_tracks()} == {a_id, a_other}
        assert {t.track_id for t in beta.list_tracks()} == {b_id}
        batch = beta.get_tracks([b_id, a_id])
        assert [t.track_id for t in batch.tracks] == [b_id] and list(batch.missing_track_ids) == [a_id]
        # delete: gone from GetTrack, ListTracks and similar; the other tenant's copy stays
        acme.delete_track(a_other)
        acme.delete_track(a_other)  # idempotent
        with pytest.raises(grpc.RpcError) as gone:
            acme.get_track(a_other)
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        assert {t.track_id for t in acme.list_tracks()} == {a_id}
        assert [t.track_id for t in acme.similar(a_id, limit=50)] == []
        assert beta.get_track(b_id).state == common_pb2.TRACK_STATE_INDEXED
        usage = acme.usage()
        assert usage.days[0].tracks_stored == 2 and usage.days[0].audio_seconds == pytest.approx(6.0, abs=0.1)
    listed = {t["name"]: t for t in cli(stack, "tenants", "list")}
    assert {"acme", "beta"} <= set(listed) and "id_salt" not in json.dumps(listed)


def test_a_partner_feed_carries_exactly_its_tenants_events(stack, tenants, tmp_path):
    creds = tmp_path / "acme.nk"
    issued = cli(stack, "tenants", "nats-creds", "acme", "--out", str(creds))
    assert "music.acme.tracks.analyzed" in issued["subjects"]
    tls = nats_ssl_context(TlsFiles(ca_file=str(stack.ca_file)))
    url = stack.nats_connect_kwargs()["servers"]

    async def partner_session():
        nc = await nats.connect(url, nkeys_seed=str(creds), tls=tls)
        js = nc.jetstream()
        await js.add_stream(name="ACME_EVENTS", subjects=["music.acme.>"])
        sub = await js.pull_subscribe("music.acme.tracks.analyzed", durable="feed", stream="ACME_EVENTS")
        with pytest.raises(nats.js.errors.Error):  # the platform's buckets are not in its account
            await js.key_value("tracks")
        return nc, sub

    async def run():
        nc, sub = await partner_session()
        with client(stack, tenants["beta"]) as beta:
            beta_id = beta.upload_bytes(wav(4), filename="beta.wav").track_id
            beta.wait_track(beta_id, timeout_s=120)
        with client(stack, tenants["acme"]) as acme:
            acme_id = acme.upload_bytes(wav(5), filename="acme.wav").track_id
            acme.wait_track(acme_id, timeout_s=120)
        got = []
        try:
            while True:
                for m in await sub.fetch(batch=10, timeout=3):
                    got.append(events_pb2.TrackAnalyzed.FromString(m.data))
                    await m.ack()
        except nats.errors.TimeoutError:
            pass
        # a partner's publish never reaches the platform (its subjects are imports, not exports)
        await nc.publish("music.acme.tracks.uploaded", b"forged")
        await nc.close()
        return acme_id, beta_id, got

    acme_id, beta_id, got = asyncio.run(run())
    ids = [e.track_id for e in got]
    assert acme_id in ids and beta_id not in ids
    assert all(e.tenant == "acme" for e in got)
