"""Partners: ``partners.json`` read (again only when it changed) and written, and the mutual-TLS
clients towards each party's node, pinned to its CA.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from gsomia.core import crypto
from gsomia.core.errors import MalformedInput
from gsomia.core.types import Party, party
from gsomia.shell.settled_files import SettledFiles

if TYPE_CHECKING:
    import httpx

    from gsomia.shell.exchange._node import NodePort


PARTNERS_FILE = "partners.json"
PARTIES = ("JPN", "KOR", "USA")


@dataclass(frozen=True)
class Peer:
    """Another party's node as this node knows it."""

    party: Party
    url: str
    signing_public: Ed25519PublicKey
    envelope_public: X25519PublicKey
    # SHA-256 of the DER of the party's TLS CA certificate: only certificates that chain to
    # it count as this party (gsomia.shell.peer_identity). None: nobody does.
    tls_ca_sha256: str | None = None

    def to_json(self) -> dict[str, str]:
        out = {"url": self.url,
               "signing_public": crypto.b64u(crypto.raw_public(self.signing_public)),
               "envelope_public": crypto.b64u(crypto.raw_public(self.envelope_public))}
        if self.tls_ca_sha256 is not None:
            out["tls_ca_sha256"] = self.tls_ca_sha256
        return out


@dataclass(frozen=True)
class Partners:
    """Every party's node (for originators' keys) and those this node delivers to."""

    me: Party
    topology: str
    peers: Mapping[Party, Peer]
    deliver_to: tuple[Party, ...]

    def signing_keys(self) -> dict[Party, Ed25519PublicKey]:
        return {p: peer.signing_public for p, peer in self.peers.items()}

    def peer(self, code: str) -> Peer:
        found = self.peers.get(code)
        if found is None:
            raise MalformedInput(f"{code} is not a known party", where="partners",
                                 expected="one of " + ", ".join(sorted(self.peers)))
        return found

    def to_json(self) -> dict[str, Any]:
        return {"party": self.me, "topology": self.topology,
                "deliver_to": list(self.deliver_to),
                "parties": {p: peer.to_json() for p, peer in sorted(self.peers.items())}}

    @classmethod
    def from_json(cls, data: Any, *, where: str = PARTNERS_FILE) -> Partners:
        if not isinstance(data, Mapping) or not isinstance(data.get("parties"), Mapping):
            raise MalformedInput("not a partners document", where=where)
        peers: dict[Party, Peer] = {}
        for code, doc in data["parties"].items():
            code = party(code, where=f"{where}: parties")
            peers[code] = Peer(
                code, str(doc["url"]),
                crypto.ed25519_public_from_raw(
                    crypto.from_b64u(doc["signing_public"], where=f"{where}: {code}")),
                crypto.x25519_public_from_raw(
                    crypto.from_b64u(doc["envelope_public"], where=f"{where}: {code}")),
                _ca_pin(doc.get("tls_ca_sha256"), where=f"{where}: {code}: tls_ca_sha256"))
        pins = [p.tls_ca_sha256 for p in peers.values() if p.tls_ca_sha256 is not None]
        if len(pins) != len(set(pins)):
            raise MalformedInput("two parties pin the same TLS CA", where=f"{where}: parties",
                                 expected="each party's own CA (gsomia federation up)")
        return cls(party(data["party"], where=f"{where}: party"), str(data.get("topology", "")),
                   peers, tuple(party(p, where=f"{where}: deliver_to")
                                for p in data.get("deliver_to", [])))

    @classmethod
    def load(cls, folder: Path) -> Partners | None:
        # A string, not a Path: built at every peer request, where pathlib's parsing was
        # half of what reading the pins cost once the files were no longer read.
        key = os.path.join(os.fspath(folder), PARTNERS_FILE)
        try:
            # Asked at every commit, sender pass and peer request: read again only when it
            # may have changed (gsomia.shell.settled_files), parsed again, its keys loaded,
            # only when its bytes did.
            raw = _FILES.read(key)
            cached = _LOADED.get(key)
            if cached is not None and cached[0] == raw:
                return cached[1]
            found = cls.from_json(json.loads(raw.decode("utf-8")), where=key)
            if len(_LOADED) > 64:
                _LOADED.clear()
            _LOADED[key] = (raw, found)
            return found
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MalformedInput(f"cannot read {key}: {exc}", where=key) from None

    def write(self, folder: Path) -> None:
        path = Path(folder) / PARTNERS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n", "utf-8")
        tmp.replace(path)


# path -> (its bytes, what they say)
_LOADED: dict[str, tuple[bytes, Partners]] = {}
_FILES = SettledFiles()


def _ca_pin(value: Any, *, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64 or \
            any(c not in "0123456789abcdef" for c in value):
        raise MalformedInput(f"{value!r} is not a certificate fingerprint", where=where,
                             expected="64 lowercase hex digits: the SHA-256 of the party's "
                                      "tls/ca.crt in DER (ca_certificate in gsomia node info)")
    return value


def require_partners(node: NodePort) -> Partners:
    found = Partners.load(node.folder)
    if found is None:
        raise MalformedInput(f"{node.folder} has no {PARTNERS_FILE}", where="--node",
                             expected="a node of a federation (gsomia federation up)")
    return found


def client_tls(folder: Path, to: Party) -> ssl.SSLContext:
    """Mutual TLS towards party ``to``'s node: this node's client certificate, and ``to``'s
    CA pinned in partners.json as the only one trusted (none pinned: no server is)."""
    from gsomia.shell.peer_identity import client_context, pinned_cas

    partners = Partners.load(Path(folder))
    pinned = pinned_cas(Path(folder), partners) if partners is not None else {}
    return client_context(Path(folder), pinned.get(to))


# Seconds a node's server keeps a current partner's idle connection for its next request
# (one whose client certificate is a partner's with an agreement in force with this node,
# :class:`gsomia.shell.peer_identity.CurrentPartners`); uvicorn keeps any other for 5.
# A courier's second connection (the batch beside the one in flight) goes idle for seconds
# between two such batches: at 5 s, 12% of the reports that went beside one to JPN paid a
# fresh mutual TLS handshake before their request left (33 ms at the median, 95 at the
# 99th percentile, load 10; trace26), against 1% of the others.
PARTNER_IDLE_KEPT_S = 30
# Connections of one partner a server process keeps that long at once; the partner's next
# ones get uvicorn's 5 s, as anyone's. A node opens a few towards a partner (its courier's
# two, the tree heads', a consent's): a partner's keys turned against the node hold no more
# than this many connections for 30 s each (at most two partners: 16 a process).
PARTNER_CONNECTIONS_KEPT = 8
# A courier's client keeps an idle connection this long: less than the partner's server, so
# no batch goes out on a connection the server is closing (lost as a failed post, and
# retried after a backoff). A partner of an earlier version closes an idle one after 5 s,
# and so does a partner's server for a connection beyond PARTNER_CONNECTIONS_KEPT or while
# the agreement is not in force: httpcore drops a pooled connection the server has closed
# (it reads as readable) before it reuses it, so only a post that meets that close in
# flight fails, and goes again.
COURIER_IDLE_KEPT_S = 25.0


def peer_client(folder: Path, timeout: float = 10.0,
                keepalive: float | None = None) -> httpx.Client:
    """An HTTP client towards partners: each party's URL in partners.json trusts that
    party's pinned CA alone, so a partner's certificate cannot answer for another partner;
    any other URL is refused at the handshake. ``keepalive``: seconds an idle connection is
    kept for the next request (None: httpx's default)."""
    import httpx

    from gsomia.shell.peer_identity import client_context, pinned_cas

    folder = Path(folder)
    partners = Partners.load(folder)
    pinned = pinned_cas(folder, partners) if partners is not None else {}
    others = [p for p in partners.peers.values() if p.party != partners.me] \
        if partners is not None else []  # a node does not call itself on the peer API
    kept: dict[str, Any] = {} if keepalive is None else \
        {"limits": httpx.Limits(keepalive_expiry=keepalive)}
    mounts = {}
    for peer in others:
        url = httpx.URL(peer.url)
        host = f"[{url.host}]" if ":" in url.host else url.host
        port = f":{url.port}" if url.port is not None else ""
        mounts[f"{url.scheme}://{host}{port}"] = httpx.HTTPTransport(
            verify=client_context(folder, pinned.get(peer.party)), **kept)
    # Built once per client: the sender's and the notices' clients live as long as the node
    # process, and a running federation's partners file keeps its URLs and pins.
    return httpx.Client(verify=client_context(folder, None), mounts=mounts, timeout=timeout,
                        headers={"content-type": "application/json"})
