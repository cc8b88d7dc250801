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
--tls`` makes a private CA and one certificate per process with :func:`make_local_pki`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
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


# --- a private PKI for the local stack ---------------------------------------------------------


def make_local_pki(folder: Path, names: list[str], *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
                   days: int = 825) -> dict[str, tuple[Path, Path]]:
    """A self-signed CA (``ca.pem``, ``ca.key``) and, for each of ``names``, a certificate and
    key (``<name>.pem``, ``<name>.key``) signed by it, valid for ``hosts`` (server and client
    use), written to ``folder`` (keys mode 0600). Existing files are kept, so a restarted
    stack keeps its CA. ECDSA P-256, SHA-256 (``cryptography``).

    Returns
    -------
    dict
        name -> (certificate path, key path), and ``"ca"`` -> (CA certificate, CA key).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    now = dt.datetime.now(dt.timezone.utc)

    def write_key(path: Path, key) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        os.chmod(path, 0o600)

    ca_cert_path, ca_key_path = folder / "ca.pem", folder / "ca.key"
    if ca_cert_path.exists() and ca_key_path.exists():
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "musicaas local CA")])
        ca_cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        write_key(ca_key_path, ca_key)
        ca_cert_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    out = {"ca": (ca_cert_path, ca_key_path)}
    alt_names = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    for name in names:
        cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
        if not (cert_path.exists() and key_path.exists()):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"musicaas {name}")]))
                .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            write_key(key_path, key)
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[name] = (cert_path, key_path)
    return out
