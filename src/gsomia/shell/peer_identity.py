"""Which partner a TLS certificate belongs to: the party whose pinned CA issued it.

Each party's node has its own private CA (:mod:`gsomia.shell.keys`); ``partners.json`` pins
each party's CA by the SHA-256 of its certificate (``tls_ca_sha256``), and the certificate
itself sits in ``tls/partners/P.crt`` (this node's own in ``tls/ca.crt``). A certificate
counts as party P only if it chains to P's pinned CA, checked with ``cryptography``'s X.509
verifier against a store that holds P's CA and nothing else. The organisational unit a
certificate names is what its holder *claims*: it decides nothing, and a certificate whose
OU names another party than its issuer's is refused, since only a partner that minted it
with its own CA key can have made it. A CA file that does not match its pin is not trusted
at all, for anyone.

Both directions use the pins: the server maps a client certificate to its party
(:class:`PinnedPeers`), and the client trusts, for each partner's URL, that partner's CA
alone (:func:`client_context`), so a partner cannot answer in another partner's name either.
"""

from __future__ import annotations

import functools
import hashlib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from gsomia.core.types import Party
from gsomia.shell.settled_files import SettledFiles

if TYPE_CHECKING:
    from gsomia.core.agreements import Agreement, Catalogue
    from gsomia.shell.exchange import Partners

__all__ = ["NO_PARTNERS_CA", "CurrentPartners", "PeerRefused", "PinnedPeers", "ca_bundle",
           "client_context", "current_partner", "former_partner", "party_of_certificate",
           "pinned_cas"]


@dataclass(frozen=True, slots=True)
class PeerRefused:
    """A client certificate that counts as no party: why, who issued it, what it claimed."""

    reason: str
    issuer: Party | None
    claimed: tuple[str, ...]
    fingerprint: str
    # For the audit alone (the caller is answered ``reason``): why a party's own certificate
    # was refused, say that no agreement with it is in force.
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        found = {"reason": self.reason, "issuer": self.issuer, "claimed_ou": list(self.claimed),
                 "certificate_sha256": self.fingerprint}
        return found | ({"note": self.note} if self.note else {})


NO_PARTNERS_CA = ("the certificate chains to no partner's pinned CA "
                  "(tls_ca_sha256 in partners.json)")


def _ca_file(folder: Path, me: Party, code: Party) -> Path:
    return folder / "tls" / ("ca.crt" if code == me else f"partners/{code}.crt")


def pinned_cas(folder: Path, partners: Partners) -> dict[Party, x509.Certificate]:
    """Each party's CA certificate whose SHA-256 matches its pin in ``partners``
    (an :class:`gsomia.shell.exchange.Partners`); parties without a pin, or whose file is
    missing, unreadable or another CA, are left out: nobody counts as them."""
    found: dict[Party, x509.Certificate] = {}
    for code, peer in partners.peers.items():
        pin = getattr(peer, "tls_ca_sha256", None)
        cert = _pinned_ca(_read_or_none(_ca_file(Path(folder), partners.me, code)), pin) \
            if pin else None
        if cert is not None:
            found[code] = cert
    return found


def _pinned_ca(data: bytes | None, pin: str) -> x509.Certificate | None:
    """The CA certificate in ``data`` (PEM) if its SHA-256 is ``pin``."""
    try:
        cert = x509.load_pem_x509_certificate(data) if data else None
    except ValueError:
        return None
    if cert is None or \
            hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest() != pin:
        return None
    return cert


def _units(cert: x509.Certificate) -> tuple[str, ...]:
    return tuple(str(a.value) for a in
                 cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME))


def party_of_certificate(der: bytes, pinned: Mapping[Party, x509.Certificate],
                         now: datetime) -> Party | PeerRefused:
    """The party whose pinned CA issued the client certificate ``der`` (valid at ``now``,
    for clientAuth), or why it counts as nobody."""
    fingerprint = hashlib.sha256(der).hexdigest()
    try:
        leaf = x509.load_der_x509_certificate(der)
        claimed = _units(leaf)
    except ValueError:
        return PeerRefused("not an X.509 certificate", None, (), fingerprint)
    issuers = []
    for code, ca in sorted(pinned.items()):
        if leaf.issuer != ca.subject:  # cannot chain to it; the signature check is below
            continue
        verifier = PolicyBuilder().store(Store([ca])).time(now).build_client_verifier()
        try:
            verifier.verify(leaf, [])
        except (VerificationError, ValueError):
            continue
        issuers.append(code)
    if not issuers:
        return PeerRefused(NO_PARTNERS_CA, None, claimed, fingerprint)
    if len(issuers) > 1:  # two parties pinning one CA: it says nothing about which
        return PeerRefused("the certificate chains to the pinned CAs of "
                           + " and ".join(issuers), None, claimed, fingerprint)
    issuer = issuers[0]
    if any(unit != issuer for unit in claimed):
        return PeerRefused(f"the certificate names OU={','.join(claimed)} but was issued by "
                           f"{issuer}'s CA: a partner's CA vouches for that partner only",
                           issuer, claimed, fingerprint)
    return issuer


class PinnedPeers:
    """The peer identity of an ASGI request (``ApiConfig.peer_identity``): the party of the
    client certificate the TLS layer received (``client_cert_der`` in the ASGI TLS extension,
    see :func:`gsomia.shell.commands.serve.tls_protocol`), a :class:`PeerRefused`, or None
    without a certificate. Only partners' pinned CAs make a party: never this node's own
    (its certificates, a local account's say, are refused as any of no partner's CA).
    Decided at each request, against the pins as they are then (the answer is left in the
    connection's TLS extension, ``gsomia_peer``, for the audit and the server's keep-alive).

    Each decision is kept under what it depends on: the certificate's bytes and the pins as
    read then (partners.json's pins and the bytes of each CA file, not parsed, for every
    decision; a file is read again only when it may have changed,
    :class:`gsomia.shell.settled_files.SettledFiles`), and used again only inside the time
    the certificate and every CA it was checked against are all valid, where time changes
    nothing of the answer: nothing kept outlives a pin, a file or a validity that changed.
    A certificate refused outside that time is not kept. Partners' and refused certificates
    are kept apart, so the certificates the node's own CA issued (the TLS layer takes them)
    evict no partner's."""

    KEPT = 256  # decisions kept at most, of each kind (a node has a few partners)

    def __init__(self, folder: Path, party: Party,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.folder = Path(folder)
        self.party = party
        self.clock = clock or (lambda: datetime.now(UTC))
        self._pins: dict[Any, tuple[Any, dict[Party, x509.Certificate],
                                    x509.Certificate | None]] = {}
        self._decided: dict[tuple[bytes, Any], tuple[Party, datetime, datetime]] = {}
        self._refused: dict[tuple[bytes, Any], tuple[PeerRefused, datetime, datetime]] = {}
        self._files = SettledFiles(kept=16)
        self._paths: dict[Party, str] = {}  # each party's CA file's path

    def _read(self) -> tuple[Any, dict[Party, x509.Certificate], x509.Certificate | None]:
        """The partners' pinned CAs and this node's own CA, with the key they are kept
        under: the pins and the bytes of every file they were read from."""
        from gsomia.shell.exchange import Partners

        partners = Partners.load(self.folder)
        pins = tuple(sorted((code, getattr(peer, "tls_ca_sha256", None) or "")
                            for code, peer in partners.peers.items())) \
            if partners is not None else ()
        # Each partner's CA file as it is now: what is parsed below is these bytes, never a
        # second reading that the key would not name. Read again only when it may have
        # changed (its stat, or changed too recently for the stat to tell: a CA swapped for
        # another of the same size and times is seen at the next request, finalreview28a);
        # an unchanged file's bytes are the same object, so the key is found by identity.
        files = tuple((code, pin, self._bytes_of(code))
                      for code, pin in pins if pin and code != self.party)
        own_bytes = self._bytes_of(self.party)
        key = (files, own_bytes)
        kept = self._pins.get(key)
        if kept is None:
            try:
                own = x509.load_pem_x509_certificate(own_bytes) if own_bytes else None
            except ValueError:
                own = None
            found = {code: ca for code, pin, data in files
                     if (ca := _pinned_ca(data, pin)) is not None}
            # A partner's pin is never this node's own CA: its own certificates (any it
            # issues, a local account's) make no partner, under its own code or another's.
            found = {code: ca for code, ca in found.items() if own is None or ca != own}
            # The key kept with them: the decisions kept under it share its bytes.
            kept = (key, found, own)
            if len(self._pins) >= 8:
                self._pins.clear()
            self._pins[key] = kept
        return kept

    def _bytes_of(self, code: Party) -> bytes | None:
        """The bytes of ``code``'s CA file (this node's own: ``tls/ca.crt``), None if it
        cannot be read."""
        path = self._paths.get(code)
        if path is None:
            path = self._paths[code] = str(_ca_file(self.folder, self.party, code))
        try:
            return self._files.read(path)
        except OSError:
            return None

    def pinned(self) -> dict[Party, x509.Certificate]:
        """Each partner's CA whose file matches its pin in partners.json; never this node's
        own CA (a partner pinned to it counts as nobody)."""
        return dict(self._read()[1])

    def party_of(self, der: bytes, now: datetime) -> Party | PeerRefused:
        """The partner whose pinned CA issued ``der`` at ``now``, or why it is nobody's."""
        key, pinned, own = self._read()
        kept = self._decided.get((der, key)) or self._refused.get((der, key))
        if kept is not None and kept[1] <= now < kept[2]:
            return kept[0]
        found = party_of_certificate(der, pinned, now)
        if isinstance(found, PeerRefused) and found.issuer is None and own is not None:
            # Refused by the same check as a stranger's; the audit alone names this node as
            # the issuer of one of its own certificates (a local account's).
            mine = party_of_certificate(der, {self.party: own}, now)
            if mine == self.party or (isinstance(mine, PeerRefused)
                                      and mine.issuer == self.party):
                found = PeerRefused(found.reason, self.party, found.claimed,
                                    found.fingerprint)
        try:
            leaf = x509.load_der_x509_certificate(der)
        except ValueError:
            return found  # no certificate at all: nothing worth keeping
        checked = [leaf, *pinned.values(), *([own] if own is not None else [])]
        valid_from = max(c.not_valid_before_utc for c in checked)
        valid_until = min(c.not_valid_after_utc for c in checked)
        if valid_from <= now < valid_until:
            table: dict[tuple[bytes, Any], Any] = \
                self._decided if isinstance(found, str) else self._refused
            if len(table) >= self.KEPT:
                table.clear()
            table[(der, key)] = (found, valid_from, valid_until)
        return found

    def __call__(self, scope: Mapping[str, Any]) -> Party | PeerRefused | None:
        tls = scope.get("extensions", {}).get("tls")
        if not isinstance(tls, dict):
            return None
        der = tls.get("client_cert_der")
        if not isinstance(der, bytes) or not der:
            return None
        # Decided again at each request of the connection, from the decisions kept (a
        # lookup once the pins are read): a partner's courier keeps its connection for
        # minutes, and a decision kept with the connection outlived the pin revoked, the CA
        # file swapped or the certificate expired under it (finalreview28a).
        decided = tls["gsomia_peer"] = self.party_of(der, self.clock())
        return decided


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def current_partner(found: Party | PeerRefused | None, me: Party, catalogue: Catalogue,
                    now: datetime) -> Party | None:
    """The partner ``found`` (the party of a client certificate, :class:`PinnedPeers`) is, if
    this node exchanges with it now: another party than this node's own (a certificate of
    this node's own CA is one of its own, whoever holds it) with an agreement in force at
    ``now`` carrying items between the two, one way or the other."""
    if not isinstance(found, str) or found == me:
        return None
    return found if any(a.in_force_at(now) for a in _between(found, me, catalogue)) else None


def former_partner(found: Party | PeerRefused | None, me: Party, catalogue: Catalogue,
                   now: datetime) -> Party | None:
    """The partner ``found`` is or was: another party with an agreement carrying items
    between it and this node that has come into force by ``now`` (in force still or ended),
    so items may have been exchanged under it; None for a party that never had one."""
    if not isinstance(found, str) or found == me:
        return None
    return found if any(a.in_force_by(now) for a in _between(found, me, catalogue)) else None


def _between(one: Party, other: Party, catalogue: Catalogue) -> tuple[Agreement, ...]:
    return (*catalogue.channels(one, other), *catalogue.channels(other, one))


class CurrentPartners:
    """Which current partner (:func:`current_partner`), if any, holds a connection: decided
    once, as it is made, with the peer API's own :class:`PinnedPeers` (which decides each
    request of it again): the server keeps such a connection idle longer (``node serve``),
    and nobody else's."""

    def __init__(self, peers: PinnedPeers, catalogue: Catalogue) -> None:
        self.peers = peers
        self.catalogue = catalogue

    def __call__(self, tls: dict[str, Any]) -> Party | None:
        found = self.peers({"extensions": {"tls": tls}})
        return current_partner(found, self.peers.party, self.catalogue, self.peers.clock())


def ca_bundle(folder: Path) -> Path:
    """One PEM file of the CAs the server asks the TLS layer to accept client certificates
    from: this node's own and each pinned partner CA (the party is decided afterwards)."""
    from gsomia.shell.exchange import Partners

    folder = Path(folder)
    own = folder / "tls" / "ca.crt"
    partners = Partners.load(folder)
    cas = [c for code, c in sorted(pinned_cas(folder, partners).items())
           if code != partners.me] if partners is not None else []
    data = b"".join([own.read_bytes(), *(c.public_bytes(serialization.Encoding.PEM)
                                         for c in cas)])
    bundle = folder / "tls" / "trusted-cas.pem"
    if not bundle.exists() or bundle.read_bytes() != data:
        tmp = bundle.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(bundle)
    return bundle


def client_context(folder: Path, ca: x509.Certificate | None) -> ssl.SSLContext:
    """Mutual TLS towards one node: this node's client certificate, and that node's pinned
    CA as the only trust anchor (none: every server is refused)."""
    folder = Path(folder)
    files: list[tuple[int, int, int] | None] = []
    for name in ("client.crt", "client.key"):
        try:
            found = (folder / "tls" / name).stat()
            files.append((found.st_mtime_ns, found.st_size, found.st_ino))
        except OSError:
            files.append(None)
    return _client_context(str(folder), tuple(files), ca)


@functools.lru_cache(maxsize=64)
def _client_context(folder: str, files: tuple[Any, ...],
                    ca: x509.Certificate | None) -> ssl.SSLContext:
    # Cached by CA and the key files' identity (``files``, part of the key only): a context
    # is safe to share between connections, and loading a key and a CA costs milliseconds
    # that a tool making one client per request (an operator's consent, a bench) would pay
    # every time.
    # Not create_default_context: that would also trust the system's public CAs.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is None:  # no server will be trusted: no need to offer it a certificate
        return ctx
    ctx.load_verify_locations(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    ctx.load_cert_chain(str(Path(folder) / "tls" / "client.crt"),
                        str(Path(folder) / "tls" / "client.key"))
    return ctx
