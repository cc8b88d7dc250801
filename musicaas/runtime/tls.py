"""TLS for every hop: gRPC servers and channels, and NATS connections.

One set of settings (:class:`TlsFiles`, from ``MUSICAAS_TLS_*``):

* ``MUSICAAS_TLS_CERT_FILE`` / ``MUSICAAS_TLS_KEY_FILE`` (PEM): a service that has both
  serves TLS (:func:`server_credentials`) and presents them as its client certificate to
  the services it calls;
* ``MUSICAAS_TLS_CA_FILE`` (PEM bundle): the CA that clients use to verify servers (the
  gateway's channels to the recommender and the generator, every NATS connection);
* ``MUSICAAS_TLS_CLIENT_AUTH=true``: servers also require and verify a client certificate
  issued by that CA (mutual TLS between the services).

Nothing is on when nothing is set (the local stack's loopback default). ``musicaas up
--tls`` makes a private CA and one certificate per process
(:func:`musicaas_cli.pki.make_local_pki`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from musicaas.runtime.errors import FailedPrecondition


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files (empty: not set) and whether servers require client certificates."""
    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""
    client_auth: bool = False

    @classmethod
    def from_settings(cls, settings) -> "TlsFiles":
        """From a :class:`~musicaas.runtime.settings.ServiceSettings`."""
        return cls(settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file, settings.tls_client_auth)

    @property
    def serves_tls(self) -> bool:
        """True when a certificate and key are configured."""
        return bool(self.cert_file and self.key_file)

    @property
    def verifies_servers(self) -> bool:
        """True when a CA is configured: client connections use TLS."""
        return bool(self.ca_file)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise FailedPrecondition(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from exc


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials | None:
    """gRPC server credentials, or None when the service serves plaintext.

    Raises
    ------
    FailedPrecondition
        When a file cannot be read, or client auth is asked without a CA.
    """
    if not files.serves_tls:
        return None
    if files.client_auth and not files.ca_file:
        raise FailedPrecondition("MUSICAAS_TLS_CLIENT_AUTH needs MUSICAAS_TLS_CA_FILE")
    return grpc.ssl_server_credentials(
        [(_read(files.key_file, "key"), _read(files.cert_file, "certificate"))],
        root_certificates=_read(files.ca_file, "CA") if files.client_auth else None,
        require_client_auth=files.client_auth,
    )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials | None:
    """gRPC channel credentials that verify the server against the CA (and present this
    service's certificate, for mutual TLS), or None for a plaintext channel."""
    if not files.verifies_servers:
        return None
    mine = files.serves_tls
    return grpc.ssl_channel_credentials(
        root_certificates=_read(files.ca_file, "CA"),
        private_key=_read(files.key_file, "key") if mine else None,
        certificate_chain=_read(files.cert_file, "certificate") if mine else None,
    )


def aio_channel(addr: str, files: TlsFiles, options: list | None = None) -> grpc.aio.Channel:
    """A grpc.aio channel to ``addr``: TLS when a CA is configured, plaintext otherwise."""
    creds = channel_credentials(files)
    if creds is None:
        return grpc.aio.insecure_channel(addr, options=options)
    return grpc.aio.secure_channel(addr, creds, options=options)


def nats_ssl_context(files: TlsFiles) -> ssl.SSLContext | None:
    """The ``tls=`` context of a NATS connection (server verified against the CA; this
    service's certificate presented when it has one), or None for plaintext."""
    if not files.verifies_servers:
        return None
    context = ssl.create_default_context(cafile=files.ca_file)
    if files.serves_tls:
        context.load_cert_chain(files.cert_file, files.key_file)
    return context
