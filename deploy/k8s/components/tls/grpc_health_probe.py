"""Kubelet exec probe: grpc.health.v1 ``Check`` over TLS (mutual TLS when the server asks).

Kubelet's native ``grpc`` probe speaks plaintext only, so with components/tls the service
Deployments run this instead (from the ConfigMap musicaas-grpc-probe)::

    python /etc/musicaas/probe/grpc_health_probe.py --port 50053 recommender.musicaas.svc
    python /etc/musicaas/probe/grpc_health_probe.py --port 50053 --any-status recommender.musicaas.svc

It dials 127.0.0.1:<port>, verifies the server certificate against ``MUSICAAS_TLS_CA_FILE``
for the name given (one of the certificate's DNS names; the pod IP is not in it) and presents
``MUSICAAS_TLS_CERT_FILE`` / ``MUSICAAS_TLS_KEY_FILE`` as its client certificate: the same
environment the service itself reads, which exec probes inherit.

Exit status 0: the server answered SERVING (with ``--any-status``: answered at all, SERVING or
NOT_SERVING: the liveness / startup question "does the process serve RPCs", not "are its
dependencies up"); 1 otherwise, with one line on stderr (never key material).
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server_name", help="a DNS name of the server's certificate")
    parser.add_argument("--port", type=int, default=int(os.environ.get("MUSICAAS_GRPC_PORT") or 0))
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds for the RPC")
    parser.add_argument("--any-status", action="store_true", help="any answer counts (liveness, startup)")
    args = parser.parse_args(argv)

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    def read(var: str) -> bytes | None:
        path = os.environ.get(var, "")
        if not path:
            return None
        with open(path, "rb") as fh:
            return fh.read()

    try:
        ca = read("MUSICAAS_TLS_CA_FILE")
        key, cert = read("MUSICAAS_TLS_KEY_FILE"), read("MUSICAAS_TLS_CERT_FILE")
    except OSError as exc:
        print(f"probe: cannot read a TLS file: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 1
    if ca is None:
        print("probe: MUSICAAS_TLS_CA_FILE is not set", file=sys.stderr)
        return 1
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key if cert else None,
                                         certificate_chain=cert if key else None)
    options = [("grpc.ssl_target_name_override", args.server_name), ("grpc.enable_retries", 0)]
    with grpc.secure_channel(f"127.0.0.1:{args.port}", creds, options=options) as channel:
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=args.timeout).status
        except grpc.RpcError as exc:
            print(f"probe: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    if status == health_pb2.HealthCheckResponse.SERVING or args.any_status:
        return 0
    print(f"probe: {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
