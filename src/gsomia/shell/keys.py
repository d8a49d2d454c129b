"""The node's identity on disk: its Ed25519 and X25519 keys, a private CA and TLS certificates.

Layout under the node folder (private keys mode 0600, created exclusively, never replaced)::

    keys/signing.key      Ed25519 private key (PKCS#8 PEM): bindings, receipts, tree heads
    keys/signing.pub      its public key (SubjectPublicKeyInfo PEM): what partners trust
    keys/envelope.key     X25519 private key (PKCS#8 PEM): partners seal envelopes to it
    keys/envelope.pub
    tls/ca.key, ca.crt            the node's private certificate authority (ECDSA P-256)
    tls/server.key, server.crt    serverAuth, SAN localhost and 127.0.0.1
    tls/client.key, client.crt    clientAuth, for mutual TLS towards partner nodes

TLS uses ECDSA P-256 rather than Ed25519 because every TLS stack accepts it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gsomia.core import crypto
from gsomia.core.errors import MalformedInput
from gsomia.core.types import Party

CERT_DAYS = 825  # the longest validity common TLS clients accept for a server certificate

KEY_FILES = {
    "signing": "keys/signing.key", "signing_public": "keys/signing.pub",
    "envelope": "keys/envelope.key", "envelope_public": "keys/envelope.pub",
    "ca_key": "tls/ca.key", "ca_cert": "tls/ca.crt",
    "server_key": "tls/server.key", "server_cert": "tls/server.crt",
    "client_key": "tls/client.key", "client_cert": "tls/client.crt",
}


def is_private(rel: str) -> bool:
    """Whether the key file at ``rel`` holds a secret (public keys and certificates do not)."""
    return not rel.endswith((".pub", ".crt"))


def exposed_private_keys(folder: Path, files: Mapping[str, str]) -> list[tuple[Path, int]]:
    """The private key files of ``files`` (name -> path under ``folder``) that the group or
    others may read or write, with their modes: a node must not work with such a key."""
    out = []
    for rel in files.values():
        path = folder / rel
        if not is_private(rel):
            continue
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue  # missing keys fail loudly when they are loaded
        if mode & 0o077:
            out.append((path, mode))
    return out


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (never replacing a file), write and sync it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _private_pem(key: Any) -> bytes:
    out: bytes = key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    return out


def _public_pem(key: Any) -> bytes:
    out: bytes = key.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return out


def _name(party: Party, role: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, {"JPN": "JP", "KOR": "KR", "USA": "US"}.get(
            party, "ZZ")),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gsomia"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, party),
        x509.NameAttribute(NameOID.COMMON_NAME, f"gsomia {party} {role}"),
    ])


def _certificate(subject: x509.Name, public: Any, issuer: x509.Name, issuer_key: Any,
                 now: datetime, *, ca: bool, usage: list[x509.ObjectIdentifier] | None,
                 issuer_public: Any) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),
                       critical=False)
    )
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage or []), critical=False)
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def create_identity(folder: Path, party: Party, now: datetime) -> dict[str, str]:
    """Generate every key and certificate of a new node under ``folder``.

    Refuses (MalformedInput) if any of the files already exists. Returns the fingerprints.
    """
    for rel in KEY_FILES.values():
        if (folder / rel).exists():
            raise MalformedInput(f"{folder / rel} already exists", where="folder",
                                 expected="a folder without a node in it")
    signing = crypto.new_signing_key()
    envelope = crypto.new_envelope_key()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(party, "node CA")
    ca_cert = _certificate(ca_name, ca_key.public_key(), ca_name, ca_key, now, ca=True,
                           usage=None, issuer_public=ca_key.public_key())
    certs = {}
    for role, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH),
                        ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(_name(party, f"node {role}"), key.public_key(), ca_name, ca_key,
                            now, ca=False, usage=[usage], issuer_public=ca_key.public_key())
        certs[role] = (key, cert)
    write_private(folder / KEY_FILES["signing"], _private_pem(signing))
    write_public(folder / KEY_FILES["signing_public"], _public_pem(signing.public_key()))
    write_private(folder / KEY_FILES["envelope"], _private_pem(envelope))
    write_public(folder / KEY_FILES["envelope_public"], _public_pem(envelope.public_key()))
    write_private(folder / KEY_FILES["ca_key"], _private_pem(ca_key))
    write_public(folder / KEY_FILES["ca_cert"], ca_cert.public_bytes(serialization.Encoding.PEM))
    for role, (key, cert) in certs.items():
        write_private(folder / KEY_FILES[f"{role}_key"], _private_pem(key))
        write_public(folder / KEY_FILES[f"{role}_cert"],
                     cert.public_bytes(serialization.Encoding.PEM))
    return FileKeyStore(folder, party).fingerprints()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MalformedInput(f"cannot read {path}: {exc.strerror}", where="node keys",
                             expected="the key files node init wrote") from None


def load_signing_public(path: str | Path) -> Ed25519PublicKey:
    """A node's Ed25519 public key from a PEM file, or raw base64url text in a file."""
    data = _read(Path(path)).strip()
    if data.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise MalformedInput("not an Ed25519 public key", where=str(path),
                                 expected="the node's keys/signing.pub")
        return key
    return crypto.ed25519_public_from_raw(crypto.from_b64u(data.decode("ascii", "replace"),
                                                           where=str(path)), where=str(path))


def cert_fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass
class FileKeyStore:
    """The node's keys, read from its folder on first use (the ``KeyStore`` port)."""

    folder: Path
    _party: Party
    files: Mapping[str, str] = field(default_factory=lambda: dict(KEY_FILES))
    _signing: Ed25519PrivateKey | None = field(default=None, repr=False)
    _envelope: X25519PrivateKey | None = field(default=None, repr=False)

    @property
    def party(self) -> Party:
        return self._party

    def path(self, name: str) -> Path:
        return self.folder / self.files.get(name, KEY_FILES[name])

    def signing_key(self) -> Ed25519PrivateKey:
        if self._signing is None:
            key = serialization.load_pem_private_key(_read(self.path("signing")), None)
            if not isinstance(key, Ed25519PrivateKey):
                raise MalformedInput("not an Ed25519 private key", where=str(self.path("signing")))
            self._signing = key
        return self._signing

    def public_signing_key(self) -> Ed25519PublicKey:
        return self.signing_key().public_key()

    def envelope_key(self) -> X25519PrivateKey:
        if self._envelope is None:
            key = serialization.load_pem_private_key(_read(self.path("envelope")), None)
            if not isinstance(key, X25519PrivateKey):
                raise MalformedInput("not an X25519 private key",
                                     where=str(self.path("envelope")))
            self._envelope = key
        return self._envelope

    def public_envelope_key(self) -> X25519PublicKey:
        return self.envelope_key().public_key()

    def certificate(self, role: str) -> x509.Certificate:
        """``ca``, ``server`` or ``client``."""
        return x509.load_pem_x509_certificate(_read(self.path(f"{role}_cert")))

    def fingerprints(self) -> dict[str, str]:
        """SHA-256 fingerprints: raw public keys for Ed25519/X25519, DER for certificates."""
        out = {"signing_key": crypto.fingerprint(self.public_signing_key()),
               "envelope_key": crypto.fingerprint(self.public_envelope_key())}
        for role in ("ca", "server", "client"):
            out[f"{role}_certificate"] = cert_fingerprint(self.certificate(role))
        return out

    def check_modes(self) -> list[str]:
        """Private key files readable by others (should be none)."""
        files = {**KEY_FILES, **self.files}
        return [str(path) for path, _ in exposed_private_keys(self.folder, files)]
