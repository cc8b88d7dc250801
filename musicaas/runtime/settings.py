"""Settings from the environment (pydantic-settings), prefix ``MUSICAAS_``.

Every service reads a subclass of :class:`ServiceSettings`; the same code runs on one
machine and on Kubernetes, only these values differ. Example: ``MUSICAAS_NATS_URL``,
``MUSICAAS_GRPC_PORT``, ``MUSICAAS_LOG_FORMAT=json``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from musicaas.runtime.tls import TlsFiles


class ServiceSettings(BaseSettings):
    """Settings every service shares."""

    model_config = SettingsConfigDict(env_prefix="MUSICAAS_", extra="ignore")

    #: Address the gRPC server binds to; Kubernetes sets 0.0.0.0.
    grpc_host: str = "127.0.0.1"
    #: gRPC port of this service.
    grpc_port: int = 50051
    #: NATS server URL(s), comma-separated.
    nats_url: str = "nats://127.0.0.1:4222"
    #: Replicas of the MUSIC stream, the KV bucket and the object store (3 on a NATS cluster).
    stream_replicas: int = Field(default=1, ge=1, le=5)
    #: Log level name.
    log_level: str = "info"
    #: ``auto``: JSON unless stderr is a terminal.
    log_format: Literal["auto", "json", "console"] = "auto"
    #: Seconds that in-flight calls get to finish on SIGTERM.
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    #: Largest gRPC message accepted or sent, in bytes.
    max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    #: File holding this service's NATS user nkey seed (``SU...``), for a server with
    #: authentication on (:mod:`musicaas.runtime.natsauth`); empty: connect without credentials.
    nats_nkey_seed_file: str = ""
    #: TLS (:mod:`musicaas.runtime.tls`): this service's certificate and key (PEM); with both
    #: set it serves TLS, and presents them as its client certificate.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    #: CA bundle (PEM) that verifies the servers this service calls (gRPC peers, NATS);
    #: set: client connections use TLS.
    tls_ca_file: str = ""
    #: True: this service's gRPC server requires client certificates from that CA (mutual TLS).
    tls_client_auth: bool = False
    #: Seconds to wait for NATS at start-up.
    nats_connect_timeout_s: float = Field(default=30.0, gt=0)
    #: Port of the Prometheus endpoint (``GET /metrics``, bound to ``grpc_host``); 0: the
    #: service's default (gateway 9101, analyzer 9102, recommender 9103, generator 9104).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    #: False: no metrics endpoint at all.
    metrics_enabled: bool = True
    #: OTLP/gRPC endpoint for traces (``http://collector:4317``); empty: the standard
    #: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``, else no export.
    otlp_endpoint: str = ""

    def server_kwargs(self) -> dict:
        """The :func:`musicaas.runtime.server.run_service` arguments these settings fix:
        bind address, shutdown grace (seconds), message size limit (bytes), metrics port
        (None when disabled), OTLP endpoint and TLS files."""
        return {
            "host": self.grpc_host,
            "port": self.grpc_port,
            "grace_s": self.shutdown_grace_s,
            "max_message_bytes": self.max_message_bytes,
            "metrics_port": self.metrics_port if self.metrics_enabled else None,
            "otlp_endpoint": self.otlp_endpoint or None,
            "tls": TlsFiles.from_settings(self),
        }
