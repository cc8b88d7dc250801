"""The exec probe of components/tls (grpc_health_probe.py) against a real gRPC server with
mutual TLS: kubelet's own grpc probe cannot do TLS, so this script is what keeps the
services' startup / readiness / liveness probes meaningful under TLS."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from musicaas_cli.pki import make_local_pki

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "deploy" / "k8s" / "components" / "tls" / "grpc_health_probe.py"
NAME = "recommender.musicaas.svc"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    files = make_local_pki(folder, ["server", "client"], hosts=(NAME,))
    other = make_local_pki(tmp_path_factory.mktemp("other-pki"), ["stranger"], hosts=(NAME,))
    return files, other


@pytest.fixture(scope="module")
def server(pki):
    files, _ = pki
    cert, key = files["server"]
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())],
                                        root_certificates=files["ca"][0].read_bytes(), require_client_auth=True)
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, srv)
    port = srv.add_secure_port("127.0.0.1:0", creds)
    srv.start()
    yield port, servicer
    srv.stop(0)


def probe(port: int, env: dict[str, str], *args: str, name: str = NAME) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MUSICAAS_")}
    return subprocess.run([sys.executable, str(PROBE), "--port", str(port), *args, name],
                          env={**base, **env}, capture_output=True, text=True, timeout=60)


def tls_env(files, who: str = "client") -> dict[str, str]:
    cert, key = files[who]
    return {"MUSICAAS_TLS_CA_FILE": str(files["ca"][0]), "MUSICAAS_TLS_CERT_FILE": str(cert),
            "MUSICAAS_TLS_KEY_FILE": str(key)}


def test_serving_passes_readiness_and_liveness(pki, server):
    files, _ = pki
    port, servicer = server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    for args in ((), ("--any-status",)):
        res = probe(port, tls_env(files), *args)
        assert res.returncode == 0, res.stderr


def test_not_serving_fails_readiness_only(pki, server):
    files, _ = pki
    port, servicer = server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        res = probe(port, tls_env(files))
        assert res.returncode == 1 and "NOT_SERVING" in res.stderr
        assert probe(port, tls_env(files), "--any-status").returncode == 0
    finally:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)


def test_refused_without_a_client_certificate_or_with_a_foreign_one(pki, server):
    files, other = pki
    port, _ = server
    res = probe(port, {"MUSICAAS_TLS_CA_FILE": str(files["ca"][0])}, "--any-status")
    assert res.returncode == 1
    foreign = {**tls_env(other, "stranger"), "MUSICAAS_TLS_CA_FILE": str(files["ca"][0])}
    assert probe(port, foreign, "--any-status").returncode == 1


def test_the_server_name_is_verified(pki, server):
    files, _ = pki
    port, _ = server
    res = probe(port, tls_env(files), "--any-status", name="elsewhere.example.com")
    assert res.returncode == 1
    assert "BEGIN" not in res.stderr  # never key material


def test_no_server_or_no_ca(pki):
    files, _ = pki
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert probe(free, tls_env(files), "--any-status", "--timeout", "1").returncode == 1
    res = probe(free, {}, "--any-status")
    assert res.returncode == 1 and "MUSICAAS_TLS_CA_FILE" in res.stderr
