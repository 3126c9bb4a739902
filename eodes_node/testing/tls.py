"""Certificates made at test time: a CA, and server or client certificates it signs.

Tests of the broker links over TLS need a CA the broker trusts, a server certificate for
the loopback broker, client certificates (valid, expired, from another CA): none is ever
committed, each is made where the test runs. Private keys are written 0600.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from eodes_node.keyfiles import write_private_key

__all__ = ["CertFiles", "TestAuthority"]


@dataclass(frozen=True, slots=True)
class CertFiles:
    """A certificate and its private key, as files."""

    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eodes-node tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class TestAuthority:
    """A certificate authority of one test run, writing what it issues under ``folder``."""

    __test__ = False  # a helper, not a pytest test class

    def __init__(self, folder: Path, name: str = "eodes test CA") -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = folder / f"{_slug(name)}.ca.pem"
        self.ca_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def server(self, name: str, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> CertFiles:
        """A server certificate for ``hosts`` (DNS names or IP addresses)."""
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        return self._issue(
            name, ExtendedKeyUsageOID.SERVER_AUTH, x509.SubjectAlternativeName(names)
        )

    def client(self, name: str, *, expired: bool = False) -> CertFiles:
        """A client certificate; ``expired`` ended yesterday."""
        return self._issue(name, ExtendedKeyUsageOID.CLIENT_AUTH, None, expired=expired)

    def _issue(
        self,
        name: str,
        usage: x509.ObjectIdentifier,
        alt_names: x509.SubjectAlternativeName | None,
        *,
        expired: bool = False,
    ) -> CertFiles:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        ends = now - timedelta(days=1) if expired else now + timedelta(days=7)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=10))
            .not_valid_after(ends)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if alt_names is not None:
            builder = builder.add_extension(alt_names, critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        files = CertFiles(
            cert=self.folder / f"{_slug(name)}.cert.pem", key=self.folder / f"{_slug(name)}.key.pem"
        )
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_private_key(files.key, _key_pem(key))
        return files


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower())
