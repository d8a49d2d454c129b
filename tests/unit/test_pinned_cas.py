"""A certificate counts as party P only if it chains to P's pinned CA (issue 10, finding 1):
properties of :func:`gsomia.shell.peer_identity.party_of_certificate` over generated issuing
CAs, claimed organisational units, pins, key usages and instants; and the pins themselves
(a CA file that is not the pinned one is trusted for nobody)."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia import bootstrap
from gsomia.core.agreements import Catalogue, status
from gsomia.core.errors import MalformedInput
from gsomia.shell.exchange import Partners
from gsomia.shell.keys import CERT_DAYS, _certificate, _name, cert_fingerprint, create_identity
from gsomia.shell.peer_identity import (
    NO_PARTNERS_CA,
    CurrentPartners,
    PeerRefused,
    PinnedPeers,
    party_of_certificate,
    pinned_cas,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
CA_NAMES = ("JPN", "KOR", "USA", "XYZ")  # XYZ: a CA no federation pins
PARTIES = ("JPN", "KOR", "USA")


def _ca(code: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(code, "node CA")
    return key, _certificate(name, key.public_key(), name, key, NOW, ca=True, usage=None,
                             issuer_public=key.public_key())


CAS = {code: _ca(code) for code in CA_NAMES}
LEAF_KEY = ec.generate_private_key(ec.SECP256R1())


def leaf(issuer: str, units: list[str], usage: x509.ObjectIdentifier) -> bytes:
    """A leaf certificate naming ``units`` as OUs, issued by CA ``issuer``."""
    ca_key, ca_cert = CAS[issuer]
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gsomia"),
                         *(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, u)
                           for u in units),
                         x509.NameAttribute(NameOID.COMMON_NAME, "gsomia node client")])
    cert = _certificate(subject, LEAF_KEY.public_key(), ca_cert.subject, ca_key, NOW,
                        ca=False, usage=[usage], issuer_public=ca_cert.public_key())
    return cert.public_bytes(serialization.Encoding.DER)


# Which CA each party's pin names: distinct CAs (the partners file refuses two parties
# pinning one), possibly not the party's own, and parties left unpinned.
pins_st = st.permutations(CA_NAMES).flatmap(lambda order: st.fixed_dictionaries(
    {}, optional=dict(zip(PARTIES, map(st.just, order), strict=False))))


@settings(max_examples=300, deadline=None)
@given(issuer=st.sampled_from(CA_NAMES),
       units=st.lists(st.sampled_from([*CA_NAMES, "usa", "JP", "USA "]), max_size=3),
       pins=pins_st,
       usage=st.sampled_from([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
       days=st.sampled_from([0, CERT_DAYS // 2, CERT_DAYS + 1, -1]))
def test_a_certificate_is_party_p_only_if_it_chains_to_ps_pinned_ca(
        issuer: str, units: list[str], pins: dict[str, str], usage: x509.ObjectIdentifier,
        days: int) -> None:
    pinned = {party: CAS[ca][1] for party, ca in pins.items()}
    at = NOW + timedelta(days=days)
    found = party_of_certificate(leaf(issuer, units, usage), pinned, at)
    # The one party whose pin names the issuing CA, if any.
    owner = next((p for p, ca in pins.items() if ca == issuer), None)
    usable = usage == ExtendedKeyUsageOID.CLIENT_AUTH and 0 <= days <= CERT_DAYS
    if owner is not None and usable and all(u == owner for u in units):
        assert found == owner
    else:
        assert isinstance(found, PeerRefused)
        # A refusal names the issuing party whenever the pins identify it, so the audit
        # records who made the certificate, not whom it names.
        if owner is not None and usable:
            assert found.issuer == owner and found.claimed == tuple(units)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600))
def test_bytes_that_are_no_certificate_count_as_nobody(der: bytes) -> None:
    pinned = {p: CAS[p][1] for p in PARTIES}
    assert isinstance(party_of_certificate(der, pinned, NOW), PeerRefused)


def test_a_certificate_signed_by_another_key_under_a_pinned_name_counts_as_nobody() -> None:
    """An impostor CA with KOR's CA's very name (the issuer name matches the pin's subject)
    does not make KOR: the signature decides."""
    key = ec.generate_private_key(ec.SECP256R1())
    kor_ca = CAS["KOR"][1]
    forged = _certificate(_name("KOR", "node client"), LEAF_KEY.public_key(), kor_ca.subject,
                          key, NOW, ca=False, usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
                          issuer_public=kor_ca.public_key())
    found = party_of_certificate(forged.public_bytes(serialization.Encoding.DER),
                                 {p: CAS[p][1] for p in PARTIES}, NOW)
    assert isinstance(found, PeerRefused) and found.issuer is None


def _partners(tmp_path: Path) -> tuple[dict[str, Path], dict[str, object]]:
    homes = {p: tmp_path / p for p in PARTIES}
    for code, home in homes.items():
        create_identity(home, code, NOW)
    raw = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    doc: dict[str, object] = {"party": "JPN", "topology": "direct", "deliver_to": ["KOR"],
                              "parties": {p: {"url": f"https://127.0.0.1:{i + 1}",
                                              "signing_public": raw, "envelope_public": raw,
                                              "tls_ca_sha256": cert_fingerprint(
                                                  x509.load_pem_x509_certificate(
                                                      (h / "tls" / "ca.crt").read_bytes()))}
                                          for i, (p, h) in enumerate(homes.items())}}
    return homes, doc


def test_a_ca_file_that_is_not_the_pinned_one_is_trusted_for_nobody(tmp_path: Path) -> None:
    homes, doc = _partners(tmp_path)
    jpn = homes["JPN"]
    (jpn / "tls" / "partners").mkdir()
    # USA's file holds KOR's CA (a swapped or planted file): the pin says otherwise.
    (jpn / "tls" / "partners" / "KOR.crt").write_bytes((homes["KOR"] / "tls" / "ca.crt")
                                                      .read_bytes())
    (jpn / "tls" / "partners" / "USA.crt").write_bytes((homes["KOR"] / "tls" / "ca.crt")
                                                      .read_bytes())
    pinned = pinned_cas(jpn, Partners.from_json(doc))
    assert sorted(pinned) == ["JPN", "KOR"]
    # Without a pin a party is nobody's, whatever file is there.
    del doc["parties"]["KOR"]["tls_ca_sha256"]  # type: ignore[index]
    assert sorted(pinned_cas(jpn, Partners.from_json(doc))) == ["JPN"]


def test_the_partners_file_refuses_bad_and_shared_pins(tmp_path: Path) -> None:
    _, doc = _partners(tmp_path)
    parties = doc["parties"]
    assert isinstance(parties, dict)
    shared = json.loads(json.dumps(doc))
    shared["parties"]["USA"]["tls_ca_sha256"] = parties["KOR"]["tls_ca_sha256"]
    with pytest.raises(MalformedInput, match="same TLS CA"):
        Partners.from_json(shared)
    for bad in ("", "AB" * 32, "00" * 31, 7):
        broken = json.loads(json.dumps(doc))
        broken["parties"]["KOR"]["tls_ca_sha256"] = bad
        with pytest.raises(MalformedInput, match="fingerprint"):
            Partners.from_json(broken)



@pytest.fixture(scope="module")
def jpn_pins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JPN's node folder as the server reads it: its own CA, KOR's and USA's pinned (XYZ's
    nobody's)."""
    folder = tmp_path_factory.mktemp("JPN")
    (folder / "tls" / "partners").mkdir(parents=True)
    (folder / "tls" / "ca.crt").write_bytes(CAS["JPN"][1].public_bytes(serialization.Encoding.PEM))
    for code in ("KOR", "USA"):
        (folder / "tls" / "partners" / f"{code}.crt").write_bytes(
            CAS[code][1].public_bytes(serialization.Encoding.PEM))
    raw = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    (folder / "partners.json").write_text(json.dumps(
        {"party": "JPN", "topology": "direct", "deliver_to": ["KOR", "USA"],
         "parties": {p: {"url": f"https://127.0.0.1:{i + 1}", "signing_public": raw,
                         "envelope_public": raw,
                         "tls_ca_sha256": cert_fingerprint(CAS[p][1])}
                     for i, p in enumerate(PARTIES)}}))
    return folder


SHIPPED = bootstrap.catalogue()


@settings(max_examples=200, deadline=None)
@given(issuer=st.sampled_from([None, *CA_NAMES]),  # None: no client certificate
       units=st.lists(st.sampled_from([*CA_NAMES, "usa"]), max_size=2),
       usage=st.sampled_from([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
       days=st.sampled_from([0, CERT_DAYS // 2, CERT_DAYS + 1, -1]),
       agreements=st.sets(st.sampled_from(sorted(SHIPPED.agreements))))
def test_only_a_current_partner_gets_a_partners_keep_alive(
        jpn_pins: Path, issuer: str | None, units: list[str], usage: x509.ObjectIdentifier,
        days: int, agreements: set[str]) -> None:
    """keepalive27: any certificate the TLS layer verified got the 30 s keep-alive, one of
    JPN's own CA (a local account's) and a pinned party's with no agreement in force too.
    The server keeps longer only a connection whose certificate the peer API takes as
    another party's, with an agreement in force carrying items between it and JPN."""
    at = NOW + timedelta(days=days)
    known = [SHIPPED.get(i) for i in agreements]
    tls = {"client_cert_der": leaf(issuer, units, usage) if issuer is not None else None}
    found = CurrentPartners(PinnedPeers(jpn_pins, "JPN", clock=lambda: at),
                            Catalogue.of(known, SHIPPED.schemes))(tls)
    valid = usage == ExtendedKeyUsageOID.CLIENT_AUTH and 0 <= days <= CERT_DAYS \
        and all(u == issuer for u in units)
    partner = issuer in ("KOR", "USA") and valid and any(
        {issuer, "JPN"} <= a.parties and (a.topology != "hub" or a.hub in (issuer, "JPN"))
        and status(a, at).in_force for a in known)
    assert found == (issuer if partner else None)
    if issuer == "JPN" and valid:  # the peer API's answer, left for the requests: no partner
        assert isinstance(tls["gsomia_peer"], PeerRefused)
        assert tls["gsomia_peer"].issuer == "JPN"


def test_the_nodes_own_ca_is_no_partners_pin(jpn_pins: Path, tmp_path: Path) -> None:
    """peerpolicy28: the own CA is left out of the pins a partner is found by (peerself27
    refused the node's own party after the chain check, a case of its own): a certificate
    of it fails the same check as a stranger's, its issuer named for the audit alone. A
    partner pinned to the node's own CA counts as nobody (with the own CA out of the pins,
    JPN's own certificates would otherwise be KOR's)."""
    pins = PinnedPeers(jpn_pins, "JPN", clock=lambda: NOW)
    assert set(pins.pinned()) == {"KOR", "USA"}  # partners.json pins JPN too
    own = pins.party_of(leaf("JPN", ["JPN"], ExtendedKeyUsageOID.CLIENT_AUTH), NOW)
    stranger = pins.party_of(leaf("XYZ", ["XYZ"], ExtendedKeyUsageOID.CLIENT_AUTH), NOW)
    assert isinstance(own, PeerRefused) and isinstance(stranger, PeerRefused)
    assert (own.reason, own.issuer, stranger.issuer) == (stranger.reason, "JPN", None)
    # KOR pinned to JPN's own CA (and JPN itself not pinned, so no shared pin to refuse).
    folder = tmp_path / "JPN"
    (folder / "tls" / "partners").mkdir(parents=True)
    jpn_ca = CAS["JPN"][1].public_bytes(serialization.Encoding.PEM)
    (folder / "tls" / "ca.crt").write_bytes(jpn_ca)
    (folder / "tls" / "partners" / "KOR.crt").write_bytes(jpn_ca)
    doc = json.loads((jpn_pins / "partners.json").read_text())
    doc["parties"]["KOR"]["tls_ca_sha256"] = cert_fingerprint(CAS["JPN"][1])
    del doc["parties"]["JPN"]["tls_ca_sha256"]
    (folder / "partners.json").write_text(json.dumps(doc))
    mislaid = PinnedPeers(folder, "JPN", clock=lambda: NOW)
    assert "KOR" not in mislaid.pinned()
    found = mislaid.party_of(leaf("JPN", ["KOR"], ExtendedKeyUsageOID.CLIENT_AUTH), NOW)
    assert isinstance(found, PeerRefused) and found.reason == NO_PARTNERS_CA


KEPT: dict[str, object] = {"peers": None}  # one PinnedPeers across examples: what it keeps
CLOCK = [NOW]  # its clock: a connection's request is decided at the step's instant
LEAVES = {code: leaf(code, [code], ExtendedKeyUsageOID.CLIENT_AUTH) for code in CA_NAMES}


@settings(max_examples=50, deadline=None)
@given(steps=st.lists(st.tuples(
    st.sampled_from(["decide", "swap KOR's CA file", "unpin KOR", "restore"]),
    st.sampled_from(CA_NAMES), st.sampled_from([0, 1, CERT_DAYS - 1, CERT_DAYS + 1, -1])),
    min_size=1, max_size=8))
def test_a_kept_decision_is_the_one_decided_afresh(
        jpn_pins: Path, tmp_path_factory: pytest.TempPathFactory,
        steps: list[tuple[str, str, int]]) -> None:
    """peerpolicy28: a partner's decision is kept (a connection's costs 0.6-0.85 ms: the
    CA files read and parsed, the chain verified, on the event loop). Over changes to the
    pins and CA files and instants in and out of the certificates' validity, one long-lived
    PinnedPeers answers as one made afresh for each decision: never a stale yes. So does a
    request on a connection kept across the steps (finalreview28a: the connection kept its
    first answer, a revoked pin, a swapped CA file or an expired certificate changed nothing
    for a partner's courier that kept its connection open)."""
    folder = jpn_pins.parent / "kept-JPN"
    if KEPT["peers"] is None:
        folder.mkdir(exist_ok=True)
        KEPT["peers"] = PinnedPeers(folder, "JPN", clock=lambda: CLOCK[0])
    peers = KEPT["peers"]
    assert isinstance(peers, PinnedPeers)

    def restore() -> None:
        (folder / "tls").mkdir(exist_ok=True)
        for rel in ("tls/ca.crt", "tls/partners/KOR.crt", "tls/partners/USA.crt",
                    "partners.json"):
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes((jpn_pins / rel).read_bytes())

    restore()
    connections: dict[str, dict[str, object]] = {}  # one per issuer, open across the steps
    for action, issuer, days in steps:
        if action == "swap KOR's CA file":
            kor = folder / "tls" / "partners" / "KOR.crt"
            was = kor.stat()
            kor.write_bytes(CAS["USA"][1].public_bytes(serialization.Encoding.PEM))
            os.utime(kor, ns=(was.st_atime_ns, was.st_mtime_ns))  # same mtime (and size)
        elif action == "unpin KOR":
            doc = json.loads((folder / "partners.json").read_text())
            doc["parties"]["KOR"].pop("tls_ca_sha256", None)
            (folder / "partners.json").write_text(json.dumps(doc))
        elif action == "restore":
            restore()
        at = NOW + timedelta(days=days)
        der = LEAVES[issuer]
        fresh = PinnedPeers(folder, "JPN").party_of(der, at)
        assert peers.party_of(der, at) == fresh, (action, issuer, days)
        CLOCK[0] = at
        tls = connections.setdefault(issuer, {"client_cert_der": der})
        assert peers({"extensions": {"tls": tls}}) == fresh, (action, issuer, days)
