"""Delivery between nodes: the transport. It carries bytes and calls the handlers of
:mod:`gsomia.service.exchange`, which decide and record.

Sending. Every commit that stores an item (any publish path, a receipt of a partner's
envelope) or obtains a consent queues its deliveries in the same commit
(:mod:`gsomia.service.outbox`); :func:`scan` is crash recovery only, from a watermark on the
audit ``seq``, for items stored before the node had partners. :class:`Sender` pushes due
rows in batches over mutual TLS (httpx, one kept-alive connection per partner), each
envelope sealed with a fresh nonce (a retry is a new envelope, so the recipient's replay
check never refuses a retry), hands the partner's answers to
:func:`gsomia.service.exchange.settle` (one commit per batch), and backs off exponentially
on failure. The same courier posts the notices of the one outbox (incident reports,
classification notices) and hands the answers to
:func:`gsomia.service.notices.settle_notices`, with the same backoff. It seals the next
batch while the partner works on the one in flight, and sleeps between passes until a
commit is signalled (the commit signal every unit of work sends,
:func:`gsomia.shell.store.signal_commit`; :func:`wake`) or the earliest queued row is due,
with a pass every :data:`FALLBACK_S` seconds for what a lost signal or a crash left (SQLite's
``data_version``, looked at every few milliseconds, only where another sender holds the
signal) rather than polling the tables.

Receiving. :func:`receive` reads which nonces the replay register holds and hands the batch
to :func:`gsomia.service.exchange.receive` (checks, ingest, receipts, refusals audited as
``envelope-refused``, nonces and relays in the same commit).

``partners.json`` in the node folder (written by ``gsomia federation up``) names every
party's URL and public keys, and which of them this node delivers to (its topology).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from gsomia.core import crypto, limits
from gsomia.core.agreements import Catalogue
from gsomia.core.errors import MalformedInput, Unavailable
from gsomia.core.outbox import (
    CLASSIFICATION,
    CONSENT_REQUEST,
    INCIDENT,
    STANDING_CONSENT,
    STANDING_REVOCATION,
    backoff,
    definitive,
    retry_after,
)
from gsomia.core.types import Party, iso, party
from gsomia.service import exchange as exchange_handlers
from gsomia.service import handlers
from gsomia.service import notices as notice_handlers
from gsomia.service import outbox as outbox_handlers
from gsomia.service.exchange import MAX_BACKOFF, Delivered
from gsomia.service.ports import (
    ConsentRequest,
    KeyStore,
    QueuedDelivery,
    QueuedNotice,
    Repository,
    SignatureChecks,
    StixValidator,
    checks_here,
)
from gsomia.service.refusals import RefusalWindow
from gsomia.shell import store as node_store
from gsomia.shell.store import (
    ConstraintViolated,
    SqlUnitOfWork,
    Store,
    now_utc,
)

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    import httpx

Clock = Callable[[], datetime]

__all__ = ["MAX_BACKOFF", "Delivered", "Kick", "NodePort", "Partners", "Peer", "Sender",
           "definitive"]


class NodePort(Protocol):
    """What the transport needs of a node (``gsomia.shell.node.Node``)."""

    @property
    def folder(self) -> Path: ...

    @property
    def party(self) -> Party: ...

    @property
    def keys(self) -> KeyStore: ...

    @property
    def catalogue(self) -> Catalogue: ...

    @property
    def store(self) -> Store: ...

    def uow(self) -> SqlUnitOfWork: ...


PARTNERS_FILE = "partners.json"
PARTIES = ("JPN", "KOR", "USA")

PENDING, DELIVERED, REFUSED = "pending", "delivered", "refused"
NOTICE_PATHS = {INCIDENT: "/peer/v1/incidents/",
                CLASSIFICATION: "/peer/v1/classification-notices/",
                STANDING_CONSENT: "/peer/v1/consents/standing/",
                STANDING_REVOCATION: "/peer/v1/consents/standing/revocations/",
                CONSENT_REQUEST: "/peer/v1/consents/requests/"}
# Notices go seconds apart, so no keep-alive: an idle connection held open would make the
# partner's server wait out its graceful-shutdown timeout when it stops.
_CLOSE = {"connection": "close"}


class Refused(OSError):
    """The partner refused a whole request with a definitive status."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status


class NotNow(OSError):
    """The partner answered a whole request "not now" (429, 503, ...); ``wait``: the
    seconds its Retry-After asked for, if it said."""

    def __init__(self, status: int, text: str, wait: float | None) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status
        self.wait = wait


# ---- partners ---------------------------------------------------------------------------------


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
        path = Path(folder) / PARTNERS_FILE
        key = str(path)
        try:
            # Asked at every commit, sender pass and peer request: a file whose stat is the
            # one cached is not read again, unless it changed so recently that a rewrite in
            # place within the clock's tick could share size and times (racy git's rule).
            st = os.stat(key)
            stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            cached = _LOADED.get(key)
            if cached is not None and cached[0] == stamp and \
                    time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _SETTLED_NS:
                return cached[2]
            raw = path.read_bytes()
            # Parse it and load the keys again only when its bytes changed.
            if cached is not None and cached[1] == raw:
                _LOADED[key] = (stamp, raw, cached[2])
                return cached[2]
            found = cls.from_json(json.loads(raw.decode("utf-8")), where=key)
            if len(_LOADED) > 64:
                _LOADED.clear()
            _LOADED[key] = (stamp, raw, found)
            return found
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MalformedInput(f"cannot read {path}: {exc}", where=str(path)) from None

    def write(self, folder: Path) -> None:
        path = Path(folder) / PARTNERS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n", "utf-8")
        tmp.replace(path)


# path -> (its stat when read, its bytes, what they say)
_LOADED: dict[str, tuple[tuple[int, ...], bytes, Partners]] = {}
# A file changed less than this long ago is read again even if its stat is the one cached.
_SETTLED_NS = 2_000_000_000


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


# ---- the outbox -------------------------------------------------------------------------------


def scan(node: NodePort, partners: Partners, now: datetime) -> int:
    """Crash recovery: queue what was stored since the last scan (items stored before the
    node had partners); one transaction, the count queued. Every publish and every receipt
    queues its own deliveries in its commit, so this finds work only after such a gap."""
    # Read first: most passes find nothing new, and must not take the write lock.
    with node.store.repository() as repo:
        if not repo.stored_since_scan():
            return 0
    return outbox_handlers.recover(node.uow(), now)


def publish(node: NodePort, *,
            entries: Sequence[tuple[Mapping[str, Any], handlers.LabelRequest]],
            now: datetime | None = None, actor: str = "operator",
            validate: StixValidator | None = None) -> list[handlers.Published]:
    """``handlers.publish_many`` in a federation's node (its deliveries are queued in the
    same commit, as on every publish path), then the sender woken."""
    at = now or now_utc()
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)  # labels keep milliseconds
    require_partners(node)
    # Its commit wakes the couriers (the links it queued rows for, named in the commit
    # signal): a wake() more here would have them look at the outbox again, in the middle
    # of posting the rows just queued.
    return handlers.publish_many(node.uow(), keys=node.keys, catalogue=node.catalogue,
                                 entries=entries, now=at, actor=actor, validate=validate)


def pending(node: NodePort, recipient: Party | None = None) -> int:
    """Deliveries not yet receipted (or refused)."""
    with node.store.repository() as repo:
        return repo.deliveries_pending(recipient)


def outbox_rows(node: NodePort) -> list[dict[str, Any]]:
    """The deliveries of the outbox (its notices: :func:`gsomia.shell.notices.notice_rows`)."""
    with node.store.repository() as repo:
        return repo.delivery_rows()


# ---- the sender -------------------------------------------------------------------------------


def client_tls(folder: Path, to: Party) -> ssl.SSLContext:
    """Mutual TLS towards party ``to``'s node: this node's client certificate, and ``to``'s
    CA pinned in partners.json as the only one trusted (none pinned: no server is)."""
    from gsomia.shell.peer_identity import client_context, pinned_cas

    partners = Partners.load(Path(folder))
    pinned = pinned_cas(Path(folder), partners) if partners is not None else {}
    return client_context(Path(folder), pinned.get(to))


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


def payloads_of(repo: Repository, keys: Sequence[tuple[str, str]],
                recipient: Party, now: datetime) -> dict[tuple[str, str], dict[str, Any]]:
    """What each envelope carries: the object and label the originator bound, and the
    originator's signed consents naming ``recipient`` (they travel with a relay): per item,
    and the standing consents that cover the item at ``now`` (none once revoked here)."""
    from gsomia.core.labels import SecurityLabel
    from gsomia.service.standing import with_documents

    ids = sorted({k[0] for k in keys})
    wanted = set(keys)
    consents = repo.consents_of(ids)
    # Only those obtained from originators: a node's own items travel without consent.
    standing = [(c, doc) for c, doc in with_documents(
        r for r in repo.standing_current(now) if r.direction == "obtained")
        if c.recipient == recipient and not c.revoked]
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for item_id, version, content, label_bytes, binding in repo.bound_versions(ids):
        if (item_id, version) not in wanted:
            continue
        # The node's own store's RFC 8785 text, parsed by orjson (several times json's
        # speed): three documents for every envelope sealed.
        label_doc = orjson.loads(label_bytes)
        payload: dict[str, Any] = {
            "object": orjson.loads(content), "label": label_doc,
            "binding": orjson.loads(binding),
            "consents": [dict(c.document) for c in consents.get(item_id, [])
                         if c.recipient == recipient]}
        if standing:
            label = SecurityLabel.from_stored(label_doc, where="label")
            covering = [dict(doc) for c, doc in standing
                        if c.covers(label, recipient, now)]
            if covering:
                payload["standing_consents"] = covering
        out[(item_id, version)] = payload
    return out


@dataclass
class SendReport:
    delivered: int = 0
    refused: int = 0
    failed: int = 0
    in_flight: int = 0


# ---- wake-ups ---------------------------------------------------------------------------------


# In-process wake-ups: a commit that queued deliveries in the sender's own process (a relay
# stored by ``receive``, a TAXII or dashboard publish through :func:`publish`) wakes it at
# once; commits by other processes are seen through SQLite's ``data_version``.
_WAKE: dict[str, threading.Event] = {}
_WAKE_LOCK = threading.Lock()


def _wake_event(folder: Path) -> threading.Event:
    key = str(Path(folder).resolve())
    with _WAKE_LOCK:
        return _WAKE.setdefault(key, threading.Event())


def wake(node: NodePort) -> None:
    """Tell ``node``'s sender (if one runs, in this process or another) that deliveries are
    queued: after a write not committed through a unit of work (whose commit wakes the
    couriers itself, :func:`gsomia.shell.store.signal_commit`)."""
    event = _WAKE.get(str(Path(node.folder).resolve())) if _WAKE else None
    if event is not None:
        event.set()
    node_store.signal_commit(node.store.engine)


def _drain(sock: Any) -> frozenset[str] | None:
    """Read every commit signal waiting: the recipients they name rows queued to, or None
    if one of them did not say (the couriers then look at the outbox)."""
    named: set[str] | None = set()
    with suppress(OSError):
        while data := sock.recv(256):
            found = node_store.read_datagram(data)
            if found is None:
                named = None
            elif named is not None:
                named |= found
    return None if named is None else frozenset(named)


# ---- the sender's loop ------------------------------------------------------------------------


@dataclass
class _Batch:
    """Envelopes sealed for one partner, posted on the sender's HTTP thread.

    ``bodies``: each envelope's JSON, in the order of ``sealed`` (None entries left out);
    ``unsent``: why a row has no envelope (refused here, never posted)."""

    peer: Peer
    sealed: list[tuple[QueuedDelivery, crypto.Envelope | None]]
    sent_at: datetime
    answer: Future[list[Any]] | None = None  # the partner's results
    bodies: list[str] = field(default_factory=list)
    unsent: dict[int, str] = field(default_factory=dict)
    # Each posted row's envelope digest (SHA-256 of its body, which is its canonical JSON):
    # what the partner's receipt must name, hashed once as it leaves.
    digests: dict[int, bytes] = field(default_factory=dict)
    # Whoever records the answer took the batch (the answer's callback or the loop): it is
    # recorded once.
    taken: bool = False
    # Rows were left for the next batch (it took as many as a batch takes).
    more: bool = False

    def posted(self) -> Future[list[Any]]:
        if self.answer is None:
            raise RuntimeError("a batch was settled before it was posted")
        return self.answer


_BATCH_FRAME = len('{"envelopes":[]}')
# The sender's longest sleep with nothing queued: what a lost commit signal can delay.
FALLBACK_S = 2.0
MIN_PAUSE_S = 0.05
# A batch of at most this many envelopes, with nothing in flight to its partner, is posted by
# the link's loop itself (:meth:`Sender._post_here`): a light load's one or two items.
POST_HERE_AT_MOST = 8
_STOP_SLICE_S = 0.25


class Kick(threading.Event):
    """A link's wake-up (:meth:`Sender.run`'s ``kick``). While the loop posts a batch on its
    own thread (:meth:`Sender._post_here`) it cannot see a commit: ``beside``, set for that
    while, is called too, and seals what was queued meanwhile beside that batch."""

    def __init__(self) -> None:
        super().__init__()
        self.beside: Callable[[], None] | None = None

    def set(self) -> None:
        super().set()
        beside = self.beside
        if beside is not None:
            beside()


class Sender:
    """The courier: pushes a node's due deliveries and notices to its partners (to its
    ``link`` only, as one of :class:`Couriers`); one ``step`` per pass. Several of one link
    may run over one PostgreSQL database (each takes its rows with
    :meth:`gsomia.shell.store.Store.claim`); on SQLite, one per link.

    Pipelined: while a partner verifies and stores batch k, this node seals batch k+1 (the
    rows in flight are left out of the query), posts it as soon as k's answer is back, and
    only then records k's receipts. A row queued while the loop waits for the answer to a
    small batch it posted itself goes at once beside it (:meth:`_beside_pass`): at most two
    batches per partner are in flight, and never two that carry the same item (a newer
    version overtaking an older one would be refused as not new, the older lost). A batch
    whose answer is lost (crash, network) stays ``pending`` and goes again, and the
    partner answers the resend with a receipt it does not record twice."""

    def __init__(self, node: NodePort, *, batch: int = 256, clock: Clock = now_utc,
                 client: httpx.Client | None = None, notice_batch: int = 64,
                 link: Party | None = None) -> None:
        self.node = node
        # One partner link's courier (see :class:`Couriers`): only rows to ``link``, so
        # loops of different links never take the same row; None: every partner in turn.
        self.link = link
        # The link whose loop also posts notices to recipients no loop has (the others').
        self.strays: frozenset[Party] | None = None
        self._notices = threading.Lock()
        self.batch = batch
        self.notice_batch = notice_batch
        self.clock = clock
        self._client = client
        self._in_flight: dict[Party, _Batch] = {}
        # The second batch in flight to a partner, posted while the loop waited for the
        # answer to the first (:meth:`_beside_pass`); one at most, so two per partner.
        self._beside: dict[Party, _Batch] = {}
        self._beside_asked = False  # a beside pass is queued and has not begun
        # The batch the loop is posting itself (:meth:`_post_here`): only then may a pass
        # beside it seal (the loop is not between a seal and the record of its batch).
        self._here: _Batch | None = None
        # :meth:`run`'s stop: once set, no new batch goes beside (the kicks that tell the
        # loops to stop would otherwise post one, and the node's stop wait for its answer).
        self._stop: threading.Event | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._recovered = False
        # Set when a partner's answer comes back (by :meth:`run`: its wake-up event).
        self._answered: threading.Event | None = None
        # :meth:`run` records answers on a thread of its own (``_settler``), so that a
        # settle's commit and disk sync do not hold up the next seal (a small batch's, with
        # nothing else to record, on the loop's: :meth:`_post_here`); the rows of the
        # batches being recorded are left out of the claims meanwhile, as those in flight.
        self._settler: ThreadPoolExecutor | None = None
        self._settling: set[int] = set()
        self._settled = SendReport()  # what it recorded since the last pass
        self._settled_lock = threading.Lock()
        # Guards ``_in_flight`` and each batch's ``taken``: an answer's callback (on the
        # posting thread) and the loop may both reach for the same batch.
        self._flight = threading.Lock()
        self._closing = False
        # Held while sealing: the links of one node (:class:`Couriers`) share it, so that
        # their seals, CPU in one interpreter, go one after the other rather than
        # interleave (each then as slow as both: a report sealed for JPN and for USA at
        # once reached JPN later than when JPN's went first).
        self.sealing = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = peer_client(self.node.folder)
        return self._client

    def close(self) -> None:
        with self._flight:
            self._closing = True
        if self._settler is not None:
            self._settler.shutdown(wait=True)
        for batch in list(self._in_flight.values()):
            # On failure the rows stay pending and go again after a restart.
            if self._take(batch):
                with suppress(Exception):
                    self._finish(batch, SendReport())
        self._in_flight.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._client is not None:
            self._client.close()

    def step(self, *, wait: bool = True) -> SendReport:
        """One pass. ``wait``: for the answer of each batch in flight (else one still
        unanswered is left in flight, as :meth:`run` does, to seal what is queued meanwhile
        rather than wait for that answer first)."""
        partners = require_partners(self.node)
        if not self._recovered:
            # Crash recovery once: every commit since queues its own deliveries.
            scan(self.node, partners, self.clock())
            self._recovered = True
        report = SendReport()
        for recipient in partners.deliver_to:
            if self.link is not None and recipient != self.link:
                continue
            peer = partners.peers.get(recipient)
            if peer is not None:
                self._send_to(peer, report, wait=wait)
        for gone in set(self._in_flight) - set(partners.deliver_to):
            with self._flight:
                batch = self._in_flight.pop(gone, None)
            if batch is not None and self._take(batch):
                self._finish(batch, report)
        with self._flight:  # an answer's callback takes batches out meanwhile
            flying = [*self._in_flight.values(), *self._beside.values()]
        report.in_flight = sum(len(b.sealed) for b in flying)
        with self._settled_lock:
            settled, self._settled = self._settled, SendReport()
        report.delivered += settled.delivered
        report.refused += settled.refused
        report.failed += settled.failed
        with self._notices:
            self._send_notices(partners, report)
        return report

    def _send_notices(self, partners: Partners, report: SendReport) -> None:
        """Post the notices due (incident reports, classification notices) and hand the
        partners' answers to :func:`gsomia.service.notices.settle_notices`."""
        now = self.clock()
        due = self.node.store.claim(deliveries=False, now=now, limit=self.notice_batch,
                                    recipient=self.link, or_not_to=self.strays)
        if not due:
            return
        outcomes: list[tuple[QueuedNotice, int, str]] = []
        waits: dict[int, float] = {}
        # A partner that did not answer is not asked again this pass: its other notices
        # back off with the one that failed (one timeout, not one per notice).
        down: dict[str, str] = {}
        for row in due:
            peer = partners.peers.get(row.recipient)
            try:
                if row.recipient in down:
                    raise OSError(down[row.recipient])
                if peer is None:
                    raise OSError(f"no URL for {row.recipient} in partners.json")
                response = self.client.post(peer.url.rstrip("/") + NOTICE_PATHS[row.kind],
                                            content=row.body.encode("utf-8"),
                                            headers=_CLOSE)
                status, text = response.status_code, response.text[:500]
                wait = None if status == 202 else \
                    retry_after(response.headers.get("retry-after"), now)
                if wait is not None:
                    waits[row.row] = wait
            except (KeyError, AttributeError) as exc:  # a row no notice path posts
                status, text = 0, f"not a notice this node posts: {exc!r}"[:500]
            except Exception as exc:  # network, TLS, partner down: retry with backoff
                status, text = 0, str(exc)[:500]
                down.setdefault(row.recipient, text)
            outcomes.append((QueuedNotice(row.row, row.kind, row.recipient, row.reference,
                                          row.item_id, row.body, row.attempts, row.not_now),
                             status, text))
        delivered, refused, failed = notice_handlers.settle_notices(
            self.node.uow(), outcomes=outcomes, now=now, waits=waits)
        report.delivered += delivered
        report.refused += refused
        report.failed += failed

    def _seal(self, peer: Peer, *, beside: bool = False) -> _Batch | None:
        """The next batch to ``peer``: rows due, none in flight or being recorded. Nor any
        of an item in a batch that may still be unanswered when this one is posted (the
        loop posts its next after the answer to its own, so only the batch beside it
        counts; ``beside``, a batch to go beside the loop's: both)."""
        now = self.clock()
        with self._flight:
            flying = [b for b in (self._in_flight.get(peer.party),
                                  self._beside.get(peer.party)) if b is not None]
            leaving = [*(r.row for b in flying for r, _ in b.sealed), *self._settling]
            unanswered = {r.item_id for b in flying
                          if beside or b is self._beside.get(peer.party)
                          for r, _ in b.sealed}
        claimed = [QueuedDelivery(r.row, r.item_id, r.version, peer.party, r.attempts,
                                  r.not_now)
                   for r in self.node.store.claim(
                       deliveries=True, recipient=peer.party, now=now, limit=self.batch,
                       leaving=leaving)]
        due = [r for r in claimed if r.item_id not in unanswered]
        if len(due) < len(claimed):
            # They wait for the answer to their item's batch (its end wakes the loop).
            self.node.store.release([r.row for r in claimed if r.item_id in unanswered], now)
        if not due:
            return None
        with self.node.store.repository() as repo:
            payloads = payloads_of(repo, [(r.item_id, r.version) for r in due], peer.party,
                                   now)
        batch = _Batch(peer, [], now, more=len(claimed) >= self.batch)
        key = self.node.keys.signing_key()
        size = _BATCH_FRAME
        for row in due:
            payload = payloads.get((row.item_id, row.version))
            if payload is None:
                batch.sealed.append((row, None))
                continue
            if payload["label"].get("originator") != self.node.party and \
                    not payload["consents"] and not payload.get("standing_consents"):
                # Queued under a standing consent that has since expired or been revoked:
                # the relay is checked again as it leaves, and does not leave.
                batch.sealed.append((row, None))
                batch.unsent[row.row] = (
                    "no consent of the originator covers this relay any more (a standing "
                    "consent expired or was revoked after the delivery was queued)")
                continue
            try:
                envelope = crypto.seal_envelope(
                    sender=self.node.party, recipient=peer.party, item_id=row.item_id,
                    version=row.version, nonce=os.urandom(16), sent_at=now, payload=payload,
                    sender_key=key, recipient_public=peer.envelope_public)
            except MalformedInput as exc:  # stored before today's bounds: it cannot go
                batch.sealed.append((row, None))
                batch.unsent[row.row] = f"cannot be sealed: {exc}"
                continue
            encoded = crypto.canonical(envelope.to_json())
            body = encoded.decode("ascii")
            if _BATCH_FRAME + len(body) > limits.PEER_BODY:
                # Alone it is more than a partner takes (an item stored before the bound
                # at publish, or a relay's consents): say so once rather than post it.
                batch.sealed.append((row, None))
                batch.unsent[row.row] = (
                    f"its envelope is {len(body)} bytes, more than the {limits.PEER_BODY} "
                    f"bytes a partner accepts")
                continue
            if size + len(body) + 1 > limits.PEER_BODY:
                # The rest go in the next batch: due again now, not when their lease ends.
                self.node.store.release([r.row for r in due[due.index(row):]], now)
                batch.more = True
                break
            size += len(body) + 1
            batch.sealed.append((row, envelope))
            batch.bodies.append(body)
            batch.digests[row.row] = crypto.sha256(encoded)
        return batch if batch.sealed else None

    def _post(self, batch: _Batch) -> list[Any]:
        if not batch.bodies:
            return []
        return self._post_bodies(batch.peer, batch.bodies)

    def _post_bodies(self, peer: Peer, bodies: Sequence[str]) -> list[Any]:
        response = self.client.post(peer.url.rstrip("/") + "/peer/v1/envelopes/",
                                    content='{"envelopes":[' + ",".join(bodies) + "]}")
        if response.status_code != 202:
            if definitive(response.status_code):
                raise Refused(response.status_code, response.text[:300])
            raise NotNow(response.status_code, response.text[:300],
                         retry_after(response.headers.get("retry-after"), self.clock()))
        results = response.json().get("results")
        if not isinstance(results, list) or len(results) != len(bodies):
            raise OSError("the partner answered with another number of results")
        return results

    def _one_by_one(self, batch: _Batch
                    ) -> tuple[list[Any], list[tuple[QueuedDelivery, str, int, float | None]]]:
        """After a whole batch was refused: each envelope alone, so one bad envelope does
        not cost the others their delivery. The partner's results, and the rows to retry
        each with its own outcome (error, status, wait): a network failure on the way, or
        the partner's "not now" to that envelope."""
        results: list[Any] = []
        retry: list[tuple[QueuedDelivery, str, int, float | None]] = []
        kept: list[tuple[QueuedDelivery, crypto.Envelope | None]] = []
        bodies = iter(batch.bodies)
        for row, envelope in batch.sealed:
            if envelope is None:
                kept.append((row, None))
                continue
            body = next(bodies)
            try:
                results.extend(self._post_bodies(batch.peer, [body]))
            except Refused as refused:
                results.append({"refused": True, "status": refused.status,
                                "reasons": [str(refused)]})
            except Exception as exc:  # network, partner down: this one goes again later
                if isinstance(exc, NotNow):
                    retry.append((row, str(exc), exc.status, exc.wait))
                else:
                    retry.append((row, str(exc), 0, None))
                continue
            kept.append((row, envelope))
        batch.sealed = kept
        return results, retry

    def _posting(self) -> ThreadPoolExecutor:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            # Two: the loop's batch and the one beside it (:meth:`_beside_pass`).
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gsomia-post")
        return self._pool

    def _launch(self, batch: _Batch) -> None:
        batch.answer = self._posting().submit(self._post, batch)
        with self._flight:
            self._in_flight[batch.peer.party] = batch
        if self._answered is not None:
            batch.answer.add_done_callback(lambda _: self._answer_in(batch))

    def _post_here(self, batch: _Batch) -> None:
        """Post a small batch on the loop's own thread, nothing being in flight to its
        partner (:meth:`run` only), and hand the answer to the settling thread. On the
        posting thread it waited for that thread to wake and take the interpreter lock
        from the loop, which went on with its pass: under load the longest wait on the
        way (17-20 ms of a light-load item's median, 2 cores at a load of 10). A large
        batch still goes on the posting thread, the loop sealing the next meanwhile; a
        small one seals in a millisecond or two, which is all the overlap it loses.

        Its answer is recorded here too if the settling thread has nothing to record (they
        are recorded in order) and the write lock is free at once: handed to that thread,
        the receipts waited for it to wake and take the interpreter lock (0.7 ms at the
        median, 12-15 ms at the 99th percentile at a load of 20, latency20's trace). When
        another writer holds the lock (mostly the commit queueing the next row) the answer
        still goes to that thread: recorded here, the next row's seal would wait for this
        settle after that commit (8 ms at the median at a load of 20, against 4)."""
        from concurrent.futures import Future

        answer: Future[list[Any]] = Future()
        batch.answer = answer
        with self._flight:
            self._in_flight[batch.peer.party] = batch
            self._here = batch
        kick = self._answered
        if isinstance(kick, Kick):  # a commit meanwhile: its rows go beside this batch
            kick.beside = lambda: self._ask_beside(batch.peer)
            if kick.is_set():  # one came since the pass began, before it was armed
                self._ask_beside(batch.peer)
        try:
            answer.set_result(self._post(batch))
        except BaseException as exc:  # the settle retries it; an interrupt still ends here
            answer.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            if isinstance(kick, Kick):
                kick.beside = None
            with self._flight:
                self._here = None
        if (not self._hand_over(batch, here=True) or batch.more) and \
                self._answered is not None:
            self._answered.set()

    def _ask_beside(self, peer: Peer) -> None:
        """A commit while the loop posts: a pass beside it on a posting thread, unless one is
        queued already or a batch is beside it already (two in flight at most)."""
        with self._flight:
            if self._closing or self._beside_asked or peer.party in self._beside or \
                    (self._stop is not None and self._stop.is_set()):
                return
            self._beside_asked = True
            self._posting().submit(self._beside_pass, peer)

    def _beside_pass(self, peer: Peer) -> None:
        """Seal what is due to ``peer`` and not of an item in flight, post it on this thread
        while the loop still waits for its own answer, and hand the answer to the settling
        thread (whose end wakes the loop) as the loop's are."""
        from concurrent.futures import Future

        with self._flight:
            self._beside_asked = False
        batch = None
        try:
            with self.sealing:
                with self._flight:
                    # Asked during a post of the loop's that has ended: the loop's own
                    # next pass takes the rows (it may have sealed them already).
                    if self._closing or self._here is None or \
                            peer.party in self._beside or \
                            (self._stop is not None and self._stop.is_set()):
                        return
                batch = self._seal(peer, beside=True)
                if batch is None:
                    return
                answer: Future[list[Any]] = Future()
                batch.answer = answer
                with self._flight:  # within the seal: the loop's next seal leaves its rows
                    self._beside[peer.party] = batch
            try:
                answer.set_result(self._post(batch))
            except Exception as exc:  # the settle retries it
                answer.set_exception(exc)
            if not self._hand_over(batch) and self._take(batch):
                self._finish(batch, SendReport())  # the sender closes: recorded here
        except Exception as exc:  # the rows stay pending; the loop's next pass takes them
            print(f"gsomia sender: {exc!r}", file=sys.stderr, flush=True)
        finally:
            if batch is not None:
                with self._flight:
                    if self._beside.get(peer.party) is batch:
                        del self._beside[peer.party]

    def _answer_in(self, batch: _Batch) -> None:
        """On the posting thread, as the partner's answer arrives (:meth:`run` only): hand
        the batch to the settling thread at once. Through a pass of the loop it took a
        thread hop and a claim more before the receipts were recorded, each waiting for
        the GIL on a busy node. The loop is woken now only if the batch left rows for the
        next (a drain of a backlog: sealed while this one settles); a row queued meanwhile
        woke it already, and the settle's end wakes it in any case."""
        if (not self._hand_over(batch) or batch.more) and self._answered is not None:
            self._answered.set()

    def _take(self, batch: _Batch) -> bool:
        """Claim the recording of ``batch``'s answer: True once, for the first caller."""
        with self._flight:
            if batch.taken:
                return False
            batch.taken = True
            return True

    def _finish(self, batch: _Batch, report: SendReport, *, at_once: bool = False) -> None:
        """``at_once``: a successful answer's settle takes the write lock at once or raises
        :class:`gsomia.shell.store.WriterBusy` having recorded nothing (a refused batch,
        posted again one by one, and a failure are recorded waiting, as ever)."""
        try:
            results = batch.posted().result()
        except Refused as refused:
            # The partner read the request and said no for good: find out for which.
            if len(batch.bodies) > 1:
                results, retry = self._one_by_one(batch)
                if retry:
                    exchange_handlers.retry_each(self.node.uow(), failed=retry,
                                                 now=batch.sent_at)
                    report.failed += len(retry)
            else:
                results = [{"refused": True, "status": refused.status,
                            "reasons": [str(refused)]}] * len(batch.bodies)
        except Exception as exc:  # network, TLS, partner down: retry later with backoff
            self._retry([r for r, _ in batch.sealed], str(exc), batch.sent_at,
                        *((exc.status, exc.wait) if isinstance(exc, NotNow) else ()))
            report.failed += len(batch.sealed)
            return
        else:
            self._settle(batch.peer, batch.sealed, results, report, batch.unsent,
                         batch.digests, at_once=at_once)
            return
        self._settle(batch.peer, batch.sealed, results, report, batch.unsent, batch.digests)

    def _send_to(self, peer: Peer, report: SendReport, *, wait: bool = True) -> None:
        # Seal the next batch while the partner works on the one in flight.
        with self.sealing:
            following = self._seal(peer)
        flying = self._in_flight.get(peer.party)
        if flying is not None and following is None and not wait and \
                not flying.posted().done():
            return  # nothing new: the answer, or a row queued meanwhile, wakes the loop
        with self._flight:
            if self._in_flight.get(peer.party) is flying:
                self._in_flight.pop(peer.party, None)
        if flying is not None:
            flying.posted().exception()  # wait for the answer, whatever it is
        if following is not None:
            if flying is None and not wait and self._answered is not None and \
                    len(following.bodies) <= POST_HERE_AT_MOST:
                self._post_here(following)
            else:
                self._launch(following)
        if flying is None:
            return
        if not wait:
            self._hand_over(flying)  # unless its callback did already
        elif self._take(flying):
            self._finish(flying, report)

    def _hand_over(self, batch: _Batch, *, here: bool = False) -> bool:
        """Record ``batch``'s answer on the settling thread, in order; its end wakes
        :meth:`run`, which may have more to send. False: another caller took it, or the
        sender closes (:meth:`close` records what is left in flight). ``here``: on this
        thread instead if the settling thread has nothing to record (:meth:`_post_here`)."""
        with self._flight:
            if self._settler is None:
                from concurrent.futures import ThreadPoolExecutor

                self._settler = ThreadPoolExecutor(max_workers=1,
                                                   thread_name_prefix="gsomia-settle")
            if batch.taken or self._closing:
                return False
            batch.taken = True
            rows = [r.row for r, _ in batch.sealed]
            here = here and not self._settling
            # Before the batch leaves ``_in_flight``: a claim meanwhile leaves its rows out.
            self._settling.update(rows)
            if self._in_flight.get(batch.peer.party) is batch:
                del self._in_flight[batch.peer.party]
            if self._beside.get(batch.peer.party) is batch:
                del self._beside[batch.peer.party]
            if not here:
                # Under the lock: close() sees either this batch submitted (and waits for
                # its settle) or ``_closing`` set first.
                self._settler.submit(self._settle_aside, batch, rows)
        if here:  # on the loop's thread, which close() is called from after it
            self._settle_aside(batch, rows, at_once=True)
        return True

    def _settle_aside(self, batch: _Batch, rows: list[int], *, at_once: bool = False
                      ) -> None:
        """``at_once``: on the loop's thread (:meth:`_post_here`); if another writer holds
        the lock, the settling thread records the answer instead."""
        settled = SendReport()
        handed = False
        try:
            try:
                self._finish(batch, settled, at_once=at_once)
            except node_store.WriterBusy:  # nothing was recorded: that thread records it
                with self._flight:
                    if self._settler is not None and not self._closing:
                        self._settler.submit(self._settle_aside, batch, rows)
                        handed = True
                if not handed:  # the sender closes: recorded here after all, waiting
                    self._finish(batch, settled)
        except Exception as exc:  # the rows stay pending and go again
            settled.failed += len(rows)
            print(f"gsomia sender: {exc!r}", file=sys.stderr, flush=True)
        finally:
            if not handed:  # else the settle that took the batch does what follows
                self._settled_now(settled, rows)

    def _settled_now(self, settled: SendReport, rows: list[int]) -> None:
        """What a settle recorded, for the next pass's report; its rows free again."""
        with self._settled_lock:
            self._settled.delivered += settled.delivered
            self._settled.refused += settled.refused
            self._settled.failed += settled.failed
        self._settling.difference_update(rows)
        if self._answered is not None:
            self._answered.set()

    def _retry(self, rows: Sequence[QueuedDelivery], error: str, now: datetime,
               status: int = 0, wait: float | None = None) -> None:
        exchange_handlers.retry(self.node.uow(), deliveries=rows, error=error, now=now,
                                status=status, wait=wait)

    def _settle(self, peer: Peer, sealed: list[tuple[QueuedDelivery, crypto.Envelope | None]],
                results: list[Any], report: SendReport,
                unsent: Mapping[int, str] | None = None,
                digests: Mapping[int, bytes] | None = None, *, at_once: bool = False) -> None:
        """Hand the partner's answers to the settling handler, in order; ``at_once``: see
        :meth:`_finish`."""
        outcome = iter(results)
        sent = [exchange_handlers.Sent(row, envelope, next(outcome) if envelope else None,
                                       (unsent or {}).get(row.row),
                                       (digests or {}).get(row.row))
                for row, envelope in sealed]
        # When the answer came back: publish-to-receipt ends here. Its commit waits for no
        # disk sync: a power cut that loses it leaves the deliveries pending, and they go
        # again; the partner, holding the items, answers with receipts it records once.
        # Everything else on an item's way (its store here, its store and receipt there)
        # is synced before anything is sent or answered.
        delivered, refused = exchange_handlers.settle(
            self.node.store.uow(synced=False, at_once=at_once), peer=peer.party,
            peer_public=peer.signing_public, sent=sent, now=self.clock(),
            checks=_checks(self.node))
        report.delivered += delivered
        report.refused += refused

    def run(self, stop: threading.Event, kick: threading.Event | None = None,
            fallback: float = FALLBACK_S) -> None:
        """Until ``stop``: send what is due; between passes, sleep until ``kick`` is set
        (:class:`Couriers` sets it at every commit signal, and every ``fallback`` seconds),
        or until the earliest queued row is due (a retry's backoff). A :class:`Kick` (as
        the couriers' are) also sends rows queued while the loop posts beside that batch; a
        plain event leaves them for the loop's next pass.

        After passes in which the partner did not answer, the loop first waits out a backoff
        of its own (doubling with each such pass, as a row's), rows queued meanwhile
        included: against a partner down with a backlog it would otherwise wake for each row
        coming due, twenty passes a second, CPU the centre in this interpreter needs."""
        kick = self._answered = kick if kick is not None else Kick()
        self._stop = stop
        last = ""
        silent = 0  # passes in a row in which the partner did not answer
        while not stop.is_set():
            kick.clear()  # what this pass sees; a commit from now on means another pass
            try:
                report = self.step(wait=False)
            except Exception as exc:  # the loop outlives one bad pass; rows stay queued
                report = SendReport(failed=1)
                if repr(exc) != last:  # say it once, not every pass
                    last = repr(exc)
                    print(f"gsomia sender: {last}", file=sys.stderr, flush=True)
            if report.delivered or report.refused:
                silent = 0
            elif report.failed and not report.in_flight:
                silent += 1
            if report.delivered or report.refused or self._answer_back():
                continue
            if report.in_flight:
                # Until the answer (its callback kicks) or a row queued meanwhile, which
                # is sealed while the partner still works on the batch in flight.
                while not stop.is_set() and not kick.wait(_STOP_SLICE_S):
                    pass
                continue
            quiet = backoff(silent - 1) if silent else 0.0
            start = time.monotonic()
            until = start + max(quiet, self._pause(fallback))
            while not stop.is_set():
                now, left = time.monotonic(), until - time.monotonic()
                if left <= 0:
                    break
                # In slices, so that a stop is seen within one.
                if now < start + quiet:
                    stop.wait(min(_STOP_SLICE_S, start + quiet - now))
                elif kick.wait(min(_STOP_SLICE_S, left)):
                    break

    def _answer_back(self) -> bool:
        with self._flight:
            flying = list(self._in_flight.values())
        return any(b.answer is not None and b.answer.done() for b in flying)

    def hand_strays(self, strays: frozenset[Party] | None) -> None:
        """Make this loop post (or stop posting) the notices to recipients outside
        ``strays``; between two notice passes, so that no two loops take the same row."""
        with self._notices:
            self.strays = strays

    def _pause(self, fallback: float) -> float:
        """Seconds until the earliest row this sender posts is due: at most ``fallback``, at
        least :data:`MIN_PAUSE_S` (a row due but not taken, such as one to a partner this
        node no longer delivers to, must not make it spin)."""
        try:
            partners = Partners.load(self.node.folder)
            due = None if partners is None else self.node.store.next_due(
                recipients=[p for p in partners.deliver_to if self.link in (None, p)],
                notices_to=self.link, or_not_to=self.strays)
        except Exception:  # the store busy or the file unreadable: the fallback pass sees
            return fallback
        if due is None:
            return fallback
        return min(fallback, max(MIN_PAUSE_S, (due - self.clock()).total_seconds()))


# ---- the couriers -----------------------------------------------------------------------------


class Worker(Protocol):
    def run(self, stop: threading.Event) -> None: ...

    def close(self) -> None: ...


def in_background(worker: Worker, name: str) -> tuple[threading.Thread, threading.Event]:
    """``worker.run(stop)`` on a daemon thread until ``stop`` is set, then ``worker.close()``:
    the shape of every loop ``gsomia node run`` keeps beside its API."""
    stop = threading.Event()

    def loop() -> None:
        try:
            worker.run(stop)
        finally:
            worker.close()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread, stop


class Couriers:
    """A node's couriers: one :class:`Sender` loop per partner link, each on a thread of
    its own taking only the rows to its partner, so that a report for JPN never waits for
    USA's answer or for the commit of USA's receipts. This loop wakes them: at a commit
    signal (the one every writing unit of work sends, in any process of the node) only the
    links to which a row was queued since their last wake-up (one indexed query: a commit
    that settles USA's receipts costs JPN's loop nothing), and all of them every
    ``fallback`` seconds at most (a row whose signal was lost, or left by a crash,
    still goes); without the signal (another sender of this database listens to it) it
    looks every ``idle`` seconds whether anything was committed. A partner added to
    partners.json gets its loop at the next wake-up."""

    def __init__(self, node: NodePort, *, batch: int = 256, clock: Clock = now_utc) -> None:
        self.node = node
        self.batch = batch
        self.clock = clock
        self._links: dict[Party, tuple[Sender, threading.Thread, Kick]] = {}
        self._recovered = False
        self._sealing = threading.Lock()  # one link seals at a time (see Sender.sealing)
        # Each recipient's newest pending row when its link was last woken for it.
        self._seen: dict[str, int] = {}

    def _open_links(self, stop: threading.Event) -> None:
        partners = require_partners(self.node)
        if not self._recovered:
            # Crash recovery once, before any loop: every commit since queues its own.
            scan(self.node, partners, self.clock())
            self._recovered = True
        new = sorted((set(partners.deliver_to) | set(partners.peers)) - set(self._links))
        if not new:
            return
        for code in new:
            sender = Sender(self.node, batch=self.batch, clock=self.clock, link=code)
            sender._recovered = True
            sender.sealing = self._sealing
            kick = Kick()
            thread = threading.Thread(target=self._link_loop, args=(sender, stop, kick),
                                      name=f"gsomia-sender-{code}", daemon=True)
            self._links[code] = (sender, thread, kick)
        # Notices to a recipient without a link (no URL for it) go with the first link's,
        # to fail and back off as they always did.
        links = frozenset(self._links)
        for code, (sender, _, _) in sorted(self._links.items()):
            sender.hand_strays(links if code == min(links) else None)
        for code in new:
            self._links[code][1].start()

    @staticmethod
    def _link_loop(sender: Sender, stop: threading.Event, kick: threading.Event) -> None:
        try:
            sender.run(stop, kick)
        finally:
            sender.close()

    def _kick(self, links: Collection[Party] | None = None) -> None:
        for code, (_, _, kick) in list(self._links.items()):
            if links is None or code in links:
                kick.set()

    def _queued(self, recipients: frozenset[str]) -> None:
        """A commit of this process queued rows to ``recipients``: wake their links (from
        the committing thread; see :func:`gsomia.shell.store.on_queued`)."""
        links = set(self._links)
        self._kick({to if to in links else min(links, default="") for to in recipients})

    def _concerned(self) -> set[Party] | None:
        """The links with a row queued since they were last woken for their rows: the
        recipient's own, or the first link's for a recipient without one (as
        :meth:`_open_links` hands them). None: the store could not say (wake them all)."""
        try:
            newest = self.node.store.newest_pending()
        except Exception:  # the store busy: a pass too many costs less than a row left
            return None
        links = set(self._links)
        concerned: set[Party] = set()
        for to, row in newest.items():
            link = to if to in links else min(links, default=None)
            if link is not None and row > self._seen.get(to, 0):
                concerned.add(link)
                self._seen[to] = row
        return concerned

    def _wake_links(self, named: frozenset[str] | None, *, every: bool = False) -> None:
        """Kick the links the commits since the last wake-up concern: every link on the
        fallback pass; those of the recipients the commit signals ``named`` (no query; an
        empty set: none, as a commit whose rows this process's links were handed already);
        None, signals that did not say: those with a row queued since (one query)."""
        if every:
            self._kick()
        elif named is None:
            self._kick(self._concerned())
        elif named:
            self._queued(named)

    def run(self, stop: threading.Event, idle: float = 0.004,
            fallback: float = FALLBACK_S) -> None:
        import select

        last = ""
        woken = _wake_event(self.node.folder)
        signals = node_store.listen_for_commits(self.node.store.engine)
        changes = node_store.Changes(self.node.store.engine) if signals is None else None
        fell_back = True
        node_store.on_queued(self.node.store.engine, self._queued)
        try:
            while not stop.is_set():
                # Which links the commits since the last wake-up concern: named by their
                # signals, or (a signal that does not say, a wake(), a poll) looked up.
                unnamed = woken.is_set() or signals is None
                woken.clear()
                named = _drain(signals) if signals is not None else None
                if changes is not None:
                    changes()  # what the kicked passes see; a commit from now on kicks again
                if fell_back or not self._links:  # not at every commit: partners rarely change
                    try:
                        self._open_links(stop)
                    except Exception as exc:  # no partners yet, the store busy: next wake-up
                        if repr(exc) != last:  # say it once, not every pass
                            last = repr(exc)
                            print(f"gsomia sender: {last}", file=sys.stderr, flush=True)
                self._wake_links(None if unnamed else named, every=fell_back)
                until = time.monotonic() + fallback
                fell_back = True
                while not stop.is_set() and time.monotonic() < until:
                    if changes is not None:
                        if woken.wait(idle) or changes():
                            fell_back = False
                            break
                        continue
                    # In slices, so that a stop is seen within one.
                    wait = max(0.0, min(_STOP_SLICE_S, until - time.monotonic()))
                    if select.select([signals], [], [], wait)[0] or woken.is_set():
                        fell_back = False
                        break
        finally:
            node_store.on_queued(self.node.store.engine, None)
            if changes is not None:
                changes.close()
            if signals is not None:
                signals.close()
            self._kick()  # each loop sees the stop now, not at the end of its sleep
            for _, thread, _ in list(self._links.values()):
                thread.join()  # each records the answer of its batch in flight

    def close(self) -> None:
        pass


def start_sender(node: NodePort) -> tuple[threading.Thread, threading.Event]:
    """The couriers on daemon threads (``gsomia node run``)."""
    return in_background(Couriers(node), "gsomia-sender")


# ---- receiving ------------------------------------------------------------------------------


def _checks(node: NodePort) -> SignatureChecks:
    """The node's signature worker; a node port without one verifies in its own process."""
    found: SignatureChecks | None = getattr(node, "signatures", None)
    return found if found is not None else checks_here


def _seen_nonces(node: NodePort, nonces: list[str]) -> set[str]:
    if not nonces:
        return set()
    with node.store.repository() as repo:
        return repo.seen_nonces(nonces)


def _revoked_standing(node: NodePort, named: Collection[tuple[str, str]]
                      ) -> set[tuple[str, str]]:
    # (consent id, originator): a revocation signed by another party that names the id
    # revokes nothing (as in standing.in_force), and must not refuse the relays under it.
    with node.store.repository() as repo:
        return repo.revoked_standing(named)


_RECEIVE_TRIES = 3  # each lost only to a concurrent delivery of some of the same nonces


def receive(node: NodePort, partners: Partners, envelopes: Sequence[crypto.Envelope],
            sender: Party, now: datetime, window: RefusalWindow | None = None
            ) -> list[Delivered]:
    """Verify, ingest and receipt a batch of envelopes from ``sender`` (one commit);
    ``window``: how many refused envelopes of ``sender`` go on record one by one.

    A concurrent delivery (the peer API answers each on a thread of its own) that stored
    some of the same nonces first makes the commit fail on the replay register's key: the
    batch is received again over the register read anew, so only those nonces are replays
    and the rest are stored (a refusal is final to the sender: a new envelope refused with
    them would never be delivered). Lost every time: refused as unavailable, which the
    sender retries."""
    nonces = [crypto.b64u(e.nonce) for e in envelopes]
    for _ in range(_RECEIVE_TRIES):
        seen = _seen_nonces(node, nonces)
        try:
            # The relays of what it stores are queued in its commit, which wakes the links.
            return exchange_handlers.receive(
                node.uow(), keys=node.keys, catalogue=node.catalogue,
                signing_keys=partners.signing_keys(), envelopes=envelopes, sender=sender,
                seen=seen, now=now, revoked=lambda named: _revoked_standing(node, named),
                checks=_checks(node), window=window)
        except ConstraintViolated:
            continue
    raise Unavailable(f"concurrent deliveries kept storing the nonces of this batch of "
                      f"{len(envelopes)} envelope(s) first ({_RECEIVE_TRIES} tries): "
                      "nothing of it was stored; send it again")


# ---- consents over the peer API ----------------------------------------------------------------


def new_request_id(node: NodePort, now: datetime) -> str:
    return f"{node.party}-consent-{now.strftime('%Y%m%dT%H%M%S')}-{os.urandom(4).hex()}"


_REQUEST_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")


def proposed_request_id(value: object, requester: Party) -> str | None:
    """The id a holder proposes for its consent request (it keeps the request pending under
    it before asking), or None for none proposed. Only in the holder's own name space
    (``{holder}-consent-...``): one partner cannot take, or collide with, another's ids."""
    if value is None:
        return None
    prefix = f"{requester}-consent-"
    if not isinstance(value, str) or not value.startswith(prefix) or \
            len(value) > 100 or len(value) == len(prefix) or \
            not set(value) <= _REQUEST_ID_CHARS:
        raise MalformedInput("not a request id of the requester's", where="request",
                             expected=f"{prefix}... (letters, digits and hyphens, at most "
                                      "100 characters)")
    return value


def consent_rows(node: NodePort) -> list[dict[str, Any]]:
    with node.store.repository() as repo:
        rows = repo.consent_request_rows()
    return [{**r, "at": iso(r["at"]),
             "decided_at": iso(r["decided_at"]) if r["decided_at"] else None} for r in rows]


def consent_row(node: NodePort, request_id: str) -> dict[str, Any]:
    with node.store.repository() as repo:
        row = repo.consent_request_row(request_id)
    if row is None:
        raise MalformedInput(f"no consent request {request_id!r}", where="--request",
                             expected="an id from gsomia consent list")
    return row


def record_request(node: NodePort, *, request_id: str, item_id: str, holder: Party,
                   recipient: Party, reason: str, direction: str, now: datetime,
                   actor: str, bound: int | None = None) -> None:
    """Keep a consent request (asked of this node, or asked by it) and audit it; ``bound``:
    how many of a partner's may be pending."""
    exchange_handlers.record_consent_request(
        node.uow(), request=ConsentRequest(request_id, item_id, holder, recipient, reason,
                                           direction, now), now=now, actor=actor, bound=bound)


def decide_request(node: NodePort, request_id: str, status: str, now: datetime) -> None:
    exchange_handlers.answer_consent_request(node.uow(), request_id=request_id, status=status,
                                             now=now)


def wait_until(check: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``check()`` until true or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(interval)
    return bool(check())
