"""NATS authentication (musicaas.runtime.natsauth) against a real nats-server started with the
rendered configuration: nkey users, the PLATFORM account, one account per partner tenant with
stream imports of that tenant's partner-visible events, and reloads that add or remove a
tenant while the server runs.

One server (module scope) with partners for ``acme`` and ``beta`` from the start; the reload
tests add and remove their own tenants. Every assertion is about what a real connection can
or cannot do."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import urllib.request

import nats
import nats.errors
import nats.js.errors
import pytest

from musicaas.runtime import natsauth
from musicaas.runtime.procs import free_port, nats_server_args, pid_alive, start_nats_server, stop_process

pytestmark = [pytest.mark.integration]

VISIBLE = [f"music.acme.{event}" for event in natsauth.PARTNER_EVENTS]


async def _quiet(exc):  # nats-py logs every connection error unless given a callback
    pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A nats-server with auth on; partners of acme and beta; ``creds`` holds their seed files."""
    root = tmp_path_factory.mktemp("natsauth")
    auth, store, creds = root / "auth", root / "nats", root / "creds"
    creds.mkdir()
    natsauth.issue_partner_credentials(auth, "acme", creds / "acme.seed")
    natsauth.issue_partner_credentials(auth, "beta", creds / "beta.seed")
    port, monitor = free_port(), free_port()
    proc = start_nats_server(store_dir=store, port=port, monitor_port=monitor, auth_dir=auth,
                             log_file=root / "nats.log")
    info = {
        "url": f"nats://127.0.0.1:{port}", "varz": f"http://127.0.0.1:{monitor}/varz", "proc": proc,
        "auth": auth, "creds": creds, "seeds": natsauth.ensure_platform_users(auth), "log": root / "nats.log",
    }

    async def platform_assets():
        nc = await connect(info, info["seeds"]["admin"])
        js = nc.jetstream()
        await js.add_stream(name="MUSIC", subjects=["music.>"])
        kv = await js.create_key_value(bucket="tracks")
        await kv.put("acme.t1", b"secret track record")
        obj = await js.create_object_store(bucket="blobs")
        await obj.put("acme/t1.wav", b"RIFF....")
        await nc.close()

    asyncio.run(platform_assets())
    yield info
    stop_process(proc)


async def connect(server, seed=None, **kw):
    """A connection that does not reconnect: a refusal or a close shows at once."""
    opts = {"allow_reconnect": False, "connect_timeout": 3, "error_cb": _quiet, **kw}
    if seed is not None:
        opts["nkeys_seed"] = str(seed)
    return await nats.connect(server["url"], **opts)


async def collect(sub, *, count: int, settle_s: float = 0.4) -> list:
    """``count`` messages from ``sub`` (waiting up to 5 s), then whatever else arrives within ``settle_s``."""
    out = []
    while len(out) < count:
        out.append(await sub.next_msg(timeout=5))
    while True:
        try:
            out.append(await sub.next_msg(timeout=settle_s))
        except nats.errors.TimeoutError:
            return out


def varz(server) -> dict:
    with urllib.request.urlopen(server["varz"], timeout=2) as resp:
        return json.load(resp)


# ------------------------------------------------------------------------- files and rendering

def test_seeds_are_private_and_only_partner_public_keys_are_kept(server):
    auth = server["auth"]
    for user, path in server["seeds"].items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, user
        assert path.read_text().startswith("SU")
    for folder in (auth, auth / "platform", auth / "partners", auth / "partners" / "acme"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    seed = (server["creds"] / "acme.seed").read_text().strip()
    assert stat.S_IMODE((server["creds"] / "acme.seed").stat().st_mode) == 0o600
    public = natsauth.seed_public_key(seed)
    assert (auth / "partners" / "acme" / "partner.pub").read_text().strip() == public
    stored = [p.read_text() for p in auth.rglob("*") if p.is_file()]
    assert not any(seed in text for text in stored), "a partner's seed is stored in the auth folder"
    conf = natsauth.render_accounts_config(auth)
    assert public in conf and '"TENANT_acme"' in conf
    assert 'stream: "music.acme.tracks.uploaded"' not in conf
    assert 'stream: "music.acme.generations.requested"' not in conf
    # ensure_platform_users keeps existing seeds
    before = {user: path.read_text() for user, path in server["seeds"].items()}
    assert natsauth.ensure_platform_users(auth) == server["seeds"]
    assert {user: path.read_text() for user, path in server["seeds"].items()} == before


@pytest.mark.parametrize("bad", ["", "Acme", "1acme", "a.b", "a*", "a>", "a b", "a\n", "a" * 33, 'a"}', "a_b"])
def test_bad_tenant_and_user_names_are_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        natsauth.issue_partner_credentials(tmp_path / "auth", bad, tmp_path / "x.seed")
    with pytest.raises(ValueError):
        natsauth.issue_partner_credentials(tmp_path / "auth", "acme", tmp_path / "x.seed", user=bad)
    with pytest.raises(ValueError):
        natsauth.revoke_partner(tmp_path / "auth", bad)
    assert not (tmp_path / "x.seed").exists()


def test_tampered_auth_folder_is_refused_when_rendering(tmp_path):
    auth = tmp_path / "auth"
    natsauth.ensure_platform_users(auth)
    natsauth.issue_partner_credentials(auth, "acme", tmp_path / "acme.seed")
    (auth / "partners" / "acme" / "partner.pub").write_text('UABC"} users: [ {nkey: "x"\n')
    with pytest.raises(ValueError, match="not a user public nkey"):
        natsauth.render_accounts_config(auth)
    (auth / "partners" / "acme" / "partner.pub").unlink()
    (auth / "partners" / "Bad.Tenant").mkdir()
    with pytest.raises(ValueError, match="not a tenant folder"):
        natsauth.render_accounts_config(auth)


def test_render_needs_the_platform_users(tmp_path):
    with pytest.raises(FileNotFoundError):
        natsauth.render_accounts_config(tmp_path / "empty")


def test_without_auth_dir_the_config_has_no_accounts(tmp_path):
    args = nats_server_args(store_dir=tmp_path, port=4222)
    conf = (tmp_path / "nats.conf").read_text()
    assert args[-2:] == ["-c", str(tmp_path / "nats.conf")]
    assert "include" not in conf and "accounts" not in conf and "jetstream" in conf


# ------------------------------------------------------------------------------ the wire

async def test_unauthenticated_and_unknown_connections_are_refused(server, tmp_path):
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect(server)
    stranger = tmp_path / "stranger.seed"
    stranger.write_bytes(natsauth.new_user_seed())
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect(server, stranger)


async def test_every_platform_user_shares_jetstream_kv_and_object_store(server):
    for user, seed in server["seeds"].items():
        nc = await connect(server, seed)
        js = nc.jetstream()
        kv = await js.key_value("tracks")
        assert (await kv.get("acme.t1")).value == b"secret track record"
        await kv.put(f"acme.by-{user}", user.encode())
        assert (await (await js.object_store("blobs")).get("acme/t1.wav")).data == b"RIFF...."
        ack = await js.publish("music.acme.tracks.uploaded", user.encode())
        assert ack.stream == "MUSIC"
        await nc.close()
    nc = await connect(server, server["seeds"]["gateway"])
    kv = await nc.jetstream().key_value("tracks")
    for user in natsauth.PLATFORM_USERS:
        assert (await kv.get(f"acme.by-{user}")).value == user.encode()
    await nc.close()


async def test_partner_receives_exactly_its_tenants_partner_events(server):
    partner = await connect(server, server["creds"] / "acme.seed")
    everything = await partner.subscribe(">")  # all that reaches the partner's account
    await partner.flush()
    platform = await connect(server, server["seeds"]["analyzer"])
    js = platform.jetstream()
    hidden = ["music.acme.tracks.uploaded", "music.acme.generations.requested", "music.beta.tracks.analyzed",
              "music.beta.interactions.recorded", "music.acmex.tracks.analyzed"]
    for subject in hidden + VISIBLE:
        await js.publish(subject, subject.encode())
    got = await collect(everything, count=len(VISIBLE))
    assert [(m.subject, m.data) for m in got] == [(s, s.encode()) for s in VISIBLE]
    await partner.close()
    await platform.close()


async def test_partner_keeps_its_own_stream_and_durable_consumer(server):
    partner = await connect(server, server["creds"] / "acme.seed")
    pjs = partner.jetstream()
    await pjs.add_stream(name="ACME_EVENTS", subjects=["music.acme.>"])
    sub = await pjs.pull_subscribe("music.acme.tracks.analyzed", durable="indexer", stream="ACME_EVENTS")
    await sub.unsubscribe()
    account = await pjs.account_info()
    assert (account.limits.max_streams, account.limits.max_consumers) == (4, 32)
    await partner.close()

    platform = await connect(server, server["seeds"]["analyzer"])
    await platform.jetstream().publish("music.acme.tracks.analyzed", b"while the partner was away")
    await platform.jetstream().publish("music.acme.tracks.uploaded", b"not for partners")
    await platform.close()

    partner = await connect(server, server["creds"] / "acme.seed")
    pjs = partner.jetstream()
    sub = await pjs.pull_subscribe("music.acme.tracks.analyzed", durable="indexer", stream="ACME_EVENTS")
    msgs = await sub.fetch(batch=10, timeout=3)
    assert [(m.subject, m.data) for m in msgs] == [("music.acme.tracks.analyzed", b"while the partner was away")]
    await msgs[0].ack_sync()
    assert (await pjs.stream_info("ACME_EVENTS")).state.messages == 1  # the upload never reached it
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(batch=1, timeout=0.5)
    await partner.close()


async def test_partner_publish_stays_in_its_account(server):
    platform = await connect(server, server["seeds"]["admin"])
    pjs = platform.jetstream()
    before = (await pjs.stream_info("MUSIC")).state.last_seq
    watch = await platform.subscribe("music.>")
    await platform.flush()

    partner = await connect(server, server["creds"] / "acme.seed")
    own = await partner.subscribe("music.acme.>")
    await partner.flush()
    forged = ["music.acme.tracks.uploaded", "music.acme.tracks.analyzed", "music.acme.generations.requested"]
    for subject in forged:
        await partner.publish(subject, b"forged")
    await partner.flush()
    assert [m.subject for m in await collect(own, count=len(forged), settle_s=0.1)] == forged  # it was published

    await platform.publish("music.platform-marker.x.y", b"marker")  # the platform's watcher works
    assert [m.data for m in await collect(watch, count=1)] == [b"marker"]
    assert (await pjs.stream_info("MUSIC")).state.last_seq == before + 1  # only the marker
    await partner.close()
    await platform.close()


async def test_partner_cannot_reach_the_platforms_jetstream_assets(server):
    partner = await connect(server, server["creds"] / "acme.seed")
    pjs = partner.jetstream()
    with pytest.raises(nats.js.errors.BucketNotFoundError):
        await pjs.key_value("tracks")
    with pytest.raises(nats.js.errors.NotFoundError):
        await pjs.object_store("blobs")
    with pytest.raises(nats.js.errors.NotFoundError):
        await pjs.stream_info("MUSIC")
    names = [s.config.name for s in await pjs.streams_info()]
    assert not {"MUSIC", "KV_tracks", "OBJ_blobs"} & set(names)
    await partner.close()

    # nothing of the platform's KV and object store traffic reaches the tenant's account
    watcher = await connect(server, server["creds"] / "acme.seed")
    spy = await watcher.subscribe(">")
    await watcher.flush()
    platform = await connect(server, server["seeds"]["gateway"])
    js = platform.jetstream()
    await (await js.key_value("tracks")).put("acme.t2", b"another record")
    await (await js.object_store("blobs")).put("acme/t2.wav", b"RIFF")
    await platform.close()
    seen = [m.subject for m in await collect(spy, count=0, settle_s=0.5)]
    # (the tenant's own JetStream may still announce the probes above: $JS.EVENT.ADVISORY.API)
    assert [subject for subject in seen if not subject.startswith("$JS.EVENT.ADVISORY.")] == []
    await watcher.close()


async def test_a_tenant_added_at_runtime_works_after_a_reload_without_restart(server):
    tenant, seed = "gamma-2", server["creds"] / "gamma.seed"
    start = varz(server)["start"]
    admin = await connect(server, server["seeds"]["admin"])
    natsauth.issue_partner_credentials(server["auth"], tenant, seed)
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect(server, seed)  # not before the reload

    natsauth.write_accounts_config(server["auth"])
    natsauth.reload_server(server["proc"].pid, varz_url=server["varz"])

    partner = await connect(server, seed)
    sub = await partner.subscribe(">")
    await partner.flush()
    await admin.jetstream().publish(f"music.{tenant}.tracks.uploaded", b"hidden")
    await admin.jetstream().publish(f"music.{tenant}.generations.completed", b"done")
    assert [(m.subject, m.data) for m in await collect(sub, count=1)] == [
        (f"music.{tenant}.generations.completed", b"done")]
    await partner.jetstream().add_stream(name="GAMMA", subjects=[f"music.{tenant}.>"])  # JetStream in the new account
    # no restart: same process, same start time, the admin's connection never dropped
    assert server["proc"].poll() is None and varz(server)["start"] == start
    assert admin.is_connected and admin.stats["reconnects"] == 0
    await partner.close()
    await admin.close()


async def test_revoked_partner_is_disconnected_and_refused_after_a_reload(server):
    tenant, seed = "delta", server["creds"] / "delta.seed"
    natsauth.issue_partner_credentials(server["auth"], tenant, seed)
    natsauth.write_accounts_config(server["auth"])
    natsauth.reload_server(server["proc"].pid, varz_url=server["varz"])
    partner = await connect(server, seed)
    acme = await connect(server, server["creds"] / "acme.seed")
    assert partner.is_connected

    assert natsauth.revoke_partner(server["auth"], tenant) == [natsauth.seed_public_key(seed.read_bytes())]
    assert not (server["auth"] / "partners" / tenant).exists()
    conf = natsauth.write_accounts_config(server["auth"]).read_text()
    assert "TENANT_delta" not in conf and "music.delta." not in conf
    natsauth.reload_server(server["proc"].pid, varz_url=server["varz"])

    for _ in range(50):
        if partner.is_closed:
            break
        await asyncio.sleep(0.1)
    assert partner.is_closed, "the revoked partner's open connection was not closed"
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect(server, seed)
    assert acme.is_connected  # other tenants are untouched
    await acme.close()


async def test_rotating_a_partner_key_retires_the_old_seed(server, tmp_path):
    old = server["creds"] / "beta.seed"
    old_copy = tmp_path / "old-beta.seed"
    old_copy.write_bytes(old.read_bytes())
    new = tmp_path / "new-beta.seed"
    natsauth.issue_partner_credentials(server["auth"], "beta", new)
    natsauth.write_accounts_config(server["auth"])
    natsauth.reload_server(server["proc"].pid, varz_url=server["varz"])
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect(server, old_copy)
    nc = await connect(server, new)
    await nc.close()


def test_reload_of_a_bad_config_times_out_and_the_server_runs_on(server, tmp_path):
    accounts = natsauth.accounts_config_file(server["auth"])
    good = accounts.read_text()
    try:
        accounts.write_text(good + "\nthis is { not a config\n")
        with pytest.raises(TimeoutError):
            natsauth.reload_server(server["proc"].pid, varz_url=server["varz"], timeout_s=1.5)
        assert pid_alive(server["proc"].pid)
    finally:
        accounts.write_text(good)
        os.chmod(accounts, 0o600)
    natsauth.reload_server(server["proc"].pid, varz_url=server["varz"])
