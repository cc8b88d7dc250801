"""``python -m musicaas.runtime.natsauth``: the operator command behind the Kubernetes
Secrets musicaas-nats-users and musicaas-nats-accounts (deploy/k8s/README.md).

Seeds must only ever reach files (``partner --out``) and, base64-encoded inside the
Secret's data, stdout of ``k8s-secrets``: never stderr, never in clear."""

from __future__ import annotations

import base64
import importlib.util
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from musicaas.runtime import natsauth

ROOT = Path(__file__).resolve().parents[2]
USERS = ("gateway", "analyzer", "recommender", "generator", "admin")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musicaas.runtime.natsauth", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def seeds_in(folder: Path) -> list[str]:
    return [p.read_text().strip() for p in sorted((folder / "platform").glob("*.seed"))]


@pytest.fixture
def auth(tmp_path):
    folder = tmp_path / "auth"
    res = run("init", str(folder))
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""  # nothing on stdout, public keys on stderr
    for user in USERS:
        assert user in res.stderr
        assert natsauth.seed_public_key((folder / "platform" / f"{user}.seed").read_bytes()) in res.stderr
    assert len(seeds_in(folder)) == len(USERS)
    for seed in seeds_in(folder):
        assert seed not in res.stderr
    assert (folder / "accounts.conf").read_text() == natsauth.render_accounts_config(folder)
    return folder


def test_init_keeps_existing_seeds(auth):
    before = seeds_in(auth)
    res = run("init", str(auth))
    assert res.returncode == 0 and "kept" in res.stderr and "created" not in res.stderr
    assert seeds_in(auth) == before


def test_partner_render_revoke(auth, tmp_path):
    out = tmp_path / "acme.seed"
    res = run("partner", str(auth), "acme", "--out", str(out))
    assert res.returncode == 0, res.stderr
    seed = out.read_text().strip()
    assert seed.startswith("SU") and oct(out.stat().st_mode & 0o777) == "0o600"
    public = natsauth.seed_public_key(seed)
    assert public in res.stderr and "TENANT_acme" in res.stderr
    assert seed not in res.stderr + res.stdout
    accounts = (auth / "accounts.conf").read_text()
    assert public in accounts and "TENANT_acme" in accounts
    assert seed not in accounts
    assert not any(seed in p.read_text() for p in auth.rglob("*") if p.is_file())  # the seed is not kept

    (auth / "accounts.conf").unlink()
    assert run("render", str(auth)).returncode == 0
    assert (auth / "accounts.conf").read_text() == accounts

    res = run("revoke", str(auth), "acme")
    assert res.returncode == 0 and public in res.stderr
    assert "TENANT_acme" not in (auth / "accounts.conf").read_text()


def secrets_of(stdout: str) -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(stdout) if d]
    assert all(d["apiVersion"] == "v1" and d["kind"] == "Secret" and d["type"] == "Opaque" for d in docs)
    return {d["metadata"]["name"]: d for d in docs}


def test_k8s_secrets_are_the_two_secrets_with_the_expected_keys(auth, tmp_path):
    partner = tmp_path / "acme.seed"
    assert run("partner", str(auth), "acme", "--out", str(partner)).returncode == 0
    res = run("k8s-secrets", str(auth))
    assert res.returncode == 0, res.stderr
    secrets = secrets_of(res.stdout)
    assert set(secrets) == {"musicaas-nats-users", "musicaas-nats-accounts"}
    users, accounts = secrets["musicaas-nats-users"], secrets["musicaas-nats-accounts"]
    for s in secrets.values():
        assert s["metadata"]["namespace"] == "musicaas"
        assert s["metadata"]["labels"]["app.kubernetes.io/part-of"] == "musicaas"
    assert set(users["data"]) == {f"{u}.seed" for u in USERS}
    for user in USERS:
        assert base64.b64decode(users["data"][f"{user}.seed"]) == (auth / "platform" / f"{user}.seed").read_bytes()
    assert set(accounts["data"]) == {"accounts.conf"}
    conf = base64.b64decode(accounts["data"]["accounts.conf"]).decode()
    assert conf == natsauth.render_accounts_config(auth)
    assert natsauth.seed_public_key(partner.read_text()) in conf
    # no seed in clear on stdout or stderr; the partner's seed nowhere at all
    for seed in seeds_in(auth):
        assert seed not in res.stdout and seed not in res.stderr
    partner_seed = partner.read_text().strip()
    assert partner_seed not in res.stdout and base64.b64encode(partner_seed.encode()).decode()[:40] not in res.stdout
    # Kubernetes accepts them (strict schema, like the manifests)
    vk = sys.modules.get("validate_k8s")
    if vk is None:
        spec = importlib.util.spec_from_file_location("validate_k8s", ROOT / "tools" / "validate_k8s.py")
        vk = sys.modules["validate_k8s"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(vk)
    assert vk.validate_schema(list(secrets.values())) == []


def test_k8s_secrets_accounts_only_prints_no_seed(auth):
    res = run("k8s-secrets", str(auth), "--only", "accounts", "--namespace", "tenant-test")
    assert res.returncode == 0, res.stderr
    secrets = secrets_of(res.stdout)
    assert set(secrets) == {"musicaas-nats-accounts"}
    assert secrets["musicaas-nats-accounts"]["metadata"]["namespace"] == "tenant-test"
    for seed in seeds_in(auth):
        assert seed not in res.stdout
        assert base64.b64encode((seed + "\n").encode()).decode() not in res.stdout
    users = secrets_of(run("k8s-secrets", str(auth), "--only", "users").stdout)
    assert set(users) == {"musicaas-nats-users"}


def test_k8s_secrets_refuses_to_print_seeds_to_a_terminal(auth):
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "musicaas.runtime.natsauth", "k8s-secrets", str(auth)],
                              stdout=follower, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60)
        os.close(follower)
        follower = -1
        printed = b""
        try:
            while chunk := os.read(leader, 4096):
                printed += chunk
        except OSError:
            pass
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 2 and "refusing" in proc.stderr
    assert b"kind: Secret" not in printed


def test_errors_go_to_stderr_with_a_status(tmp_path):
    res = run("k8s-secrets", str(tmp_path / "missing"))
    assert res.returncode == 1 and res.stdout == "" and res.stderr.startswith("error:")
    assert run("init", str(tmp_path / "a")).returncode == 0
    res = run("partner", str(tmp_path / "a"), "Not_A_Tenant", "--out", str(tmp_path / "x.seed"))
    assert res.returncode == 1 and "invalid tenant name" in res.stderr
    assert not (tmp_path / "x.seed").exists()
    res = run("k8s-secrets", str(tmp_path / "a"), "--namespace", "bad namespace")
    assert res.returncode == 1 and "invalid namespace" in res.stderr and res.stdout == ""
    (tmp_path / "a" / "platform" / "gateway.seed").write_text("SUnot-a-seed\n")
    res = run("k8s-secrets", str(tmp_path / "a"))
    assert res.returncode == 1 and res.stdout == "" and "SUnot-a-seed" not in res.stderr
    assert run().returncode == 2  # usage
