"""Transport security for gRPC between nodes: a deployment CA and one certificate per node.

Both directions authenticate (mutual TLS). A node's TLS certificate names it twice: its code as
the subject's common name (what the server reads to know who asks) and ``node-<code>.nodes.fedappraisal``
as a DNS name (what a client checks to know it reached the node it meant, whatever address it
dialled). These are transport keys only; what a node signs is signed with its Ed25519 key, and is
verified as such whether or not the channel was secure (docs/design.md §4.5: transport security is
separate and also required).

Creating a CA and certificates needs ``cryptography.x509``; a running node only reads PEM bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from aggregator.errors import ConfigError

HOST_SUFFIX = ".nodes.fedappraisal"


class TlsError(ConfigError):
    """TLS files or a CA that cannot be used (``tls.*``)."""

    default_code = "config.tls"


def node_host(code: str) -> str:
    return f"node-{code}{HOST_SUFFIX}"


@dataclass(frozen=True)
class TlsFiles:
    ca: bytes    # the deployment CA certificate (PEM): the only issuer this node trusts on the transport
    cert: bytes  # this node's certificate (PEM)
    key: bytes   # this node's TLS private key (PEM)

    @classmethod
    def load(cls, ca: Path, cert: Path, key: Path) -> TlsFiles:
        try:
            return cls(ca.read_bytes(), cert.read_bytes(), key.read_bytes())
        except OSError as exc:
            raise TlsError(f"{exc.filename}: 无法读取 TLS 文件 (cannot read TLS file): {exc.strerror}",
                           code="tls.unreadable") from None


def server_credentials(tls: TlsFiles | Sequence[TlsFiles]) -> grpc.ServerCredentials:
    """One node's certificate, or a host's: one per hosted node, gRPC choosing by the client's SNI.
    Every node of a host must trust the same deployment CA (one set of client roots per listener)."""
    files = [tls] if isinstance(tls, TlsFiles) else list(tls)
    if not files:
        raise TlsError("没有 TLS 证书 (no TLS certificate)", code="tls.none")
    if any(f.ca != files[0].ca for f in files):
        raise TlsError("同一主机上的节点须信任同一部署 CA (nodes of one host must trust one deployment CA)",
                       code="tls.mixed_ca")
    return grpc.ssl_server_credentials([(f.key, f.cert) for f in files], root_certificates=files[0].ca,
                                       require_client_auth=True)


def channel_credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert)


def peer_code(auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
    """The node code of an authenticated peer (its certificate's common name), or None."""
    names = list(auth_context.get("x509_common_name") or [])
    return names[0].decode("ascii", "replace") if names else None


# Issuing certificates: for the CLI, the launcher and tests.

def create_ca(name: str, days: int = 3650) -> tuple[bytes, bytes]:
    """A new deployment CA: (private key PEM, certificate PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            cert.public_bytes(serialization.Encoding.PEM))


def issue_node_cert(ca_key_pem: bytes, ca_cert_pem: bytes, code: str, *, hosts: Sequence[str] = (),
                    days: int = 730) -> tuple[bytes, bytes]:
    """A node's TLS certificate for server and client use: (private key PEM, certificate PEM).
    ``hosts``: extra DNS names or IP addresses it may also be reached by."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    try:
        ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
        ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    except ValueError:
        raise TlsError("CA 私钥或证书不是 PEM 格式 (CA key or certificate is not PEM)", code="tls.ca_not_pem") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TlsError("CA 私钥应为 ECDSA P-256 (CA key must be ECDSA P-256)", code="tls.ca_not_ecdsa")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(node_host(code))]
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, code)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            cert.public_bytes(serialization.Encoding.PEM))


def certificate_code(cert_pem: bytes) -> str:
    """The node code a TLS certificate names (its common name)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise TlsError("TLS 证书不是 PEM 格式 (TLS certificate is not PEM)", code="tls.cert_not_pem") from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""
