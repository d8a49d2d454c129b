"""Delivery between nodes: the outbox, the sender, and the receiving side of an envelope.

Sending. An item becomes due for a partner when this node's release policy permits it
(originator's own items; a received item only with the originator's consent, the
third-party rule). :func:`queue_deliveries` writes one ``outbox`` row per (item, version,
partner), unique, so queueing twice changes nothing; :func:`publish` queues in the same
transaction as the publish, and :func:`scan` catches up, from a watermark on the audit
``seq``, whatever was stored by other paths (``gsomia publish``, TAXII POST, received
items). :class:`Sender` pushes due rows in batches over mutual TLS (httpx, one kept-alive
connection per partner), each envelope sealed with a fresh nonce (a retry is a new envelope,
so the recipient's replay check never refuses a retry), records the partner's signed
receipts in custody (once per (item, version, partner), in one commit per batch), and backs
off exponentially on failure. It seals the next batch while the partner works on the one in
flight, and sleeps between passes until a commit is seen (the commit signal every unit of
work sends, :func:`gsomia.shell.store.signal_commit`; :func:`wake`; SQLite's
``data_version`` as the fallback) rather than polling the tables.

Receiving. :func:`receive` checks each envelope (sender = TLS peer, nonce never seen,
signature, addressee, key, decryption, consents signed by the originator), then hands the
batch to :func:`gsomia.service.handlers.ingest` (originator binding, own release policy,
Art. 4 re-marking, store, audit); the nonces are stored in the ingest's own commit.
Idempotency is on (item, version, sender): a version already held is a ``duplicate`` and
still gets a receipt for the envelope it came in (the sender may have lost the first
answer), but the receipt given is recorded once, in the commit that stored the item. Every
refusal is audited as ``envelope-refused``.

``partners.json`` in the node folder (written by ``gsomia federation up``) names every
party's URL and public keys, and which of them this node delivers to (its topology).
"""

from __future__ import annotations

import dataclasses
import json
import os
import ssl
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from gsomia.core import crypto, limits
from gsomia.core.agreements import Catalogue
from gsomia.core.audit import AuditKind
from gsomia.core.custody import ReceiptRecord, records_detail
from gsomia.core.errors import GsomiaError, MalformedInput, PolicyDenied, ProofInvalid
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Consent, ReleaseRequest, decide
from gsomia.core.types import Party, iso, party
from gsomia.service import handlers
from gsomia.shell import store as node_store
from gsomia.shell.store import (
    consent_requests,
    envelopes_seen,
    exchange_state,
    now_utc,
    outbox,
)

PARTNERS_FILE = "partners.json"
PARTIES = ("JPN", "KOR", "USA")

PENDING, DELIVERED, REFUSED = "pending", "delivered", "refused"
MAX_BACKOFF = 5.0


def definitive(status: int) -> bool:
    """An HTTP refusal that retrying cannot change: the partner read the request and said
    no (413 too large, 422 malformed, 403 refused, ...). 401 (our certificate not yet
    trusted), 408, 425 and 429 say "not now", and 5xx "not working": those are retried."""
    return 400 <= status < 500 and status not in (401, 408, 425, 429)


class Refused(OSError):
    """The partner refused a whole request with a definitive status."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status


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
        try:
            raw = path.read_bytes()
            # The sender and notice threads read it every pass: parse it and load the keys
            # again only when its bytes changed.
            cached = _LOADED.get(str(path))
            if cached is not None and cached[0] == raw:
                return cached[1]
            found = cls.from_json(json.loads(raw.decode("utf-8")), where=str(path))
            if len(_LOADED) > 64:
                _LOADED.clear()
            _LOADED[str(path)] = (raw, found)
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


_LOADED: dict[str, tuple[bytes, Partners]] = {}


def _ca_pin(value: Any, *, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64 or \
            any(c not in "0123456789abcdef" for c in value):
        raise MalformedInput(f"{value!r} is not a certificate fingerprint", where=where,
                             expected="64 lowercase hex digits: the SHA-256 of the party's "
                                      "tls/ca.crt in DER (ca_certificate in gsomia node info)")
    return value


def require_partners(node: Any) -> Partners:
    found = Partners.load(node.folder)
    if found is None:
        raise MalformedInput(f"{node.folder} has no {PARTNERS_FILE}", where="--node",
                             expected="a node of a federation (gsomia federation up)")
    return found


# ---- the outbox -------------------------------------------------------------------------------


def _consents_of(conn: sa.Connection, item_ids: Sequence[str]) -> dict[str, list[Any]]:
    table = node_store.consents
    out: dict[str, list[Any]] = {}
    for chunk in _chunks(sorted(set(item_ids))):
        for row in conn.execute(sa.select(table.c.item_id, table.c.originator,
                                          table.c.recipient, table.c.document)
                                .where(table.c.item_id.in_(chunk)).order_by(table.c.row)):
            out.setdefault(row.item_id, []).append(row)
    return out


def _chunks(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def queue_deliveries(conn: sa.Connection, *, audit: Any, me: Party,
                     deliver_to: Sequence[Party], catalogue: Catalogue,
                     keys: Iterable[tuple[str, str]], now: datetime,
                     only: Party | None = None,
                     known: Mapping[tuple[str, str], Any] | None = None,
                     scanned_to: int | None = None) -> int:
    """Queue each (item, version) to every partner this node's release policy permits.

    Runs inside the caller's unit of work (``audit`` is its log). Never back to the party it
    came from or to its originator; an item received from a partner passes on only with the
    originator's consent (the policy's third-party rule). ``known``: the items just stored
    in this transaction (with ``originator`` and ``label``), so they need not be read back.
    The rows queued, and ``scanned_to`` (the outbox scan watermark, if this commit moves
    it), are recorded by one ``deliveries-queued`` event."""
    wanted = list(dict.fromkeys(keys))
    if not wanted or not deliver_to:
        return _record_queued(conn, audit, [], now, scanned_to)
    items = node_store.items
    rows: dict[tuple[str, str], Any] = {}
    row: Any
    if known is not None and all(k in known for k in wanted):
        rows = {k: known[k] for k in wanted}
    else:
        for chunk in _chunks(sorted({k[0] for k in wanted})):
            for row in conn.execute(sa.select(items.c.id, items.c.version,
                                              items.c.originator, items.c.label)
                                    .where(items.c.id.in_(chunk))):
                rows[(row.id, row.version)] = row
    # Only what came from a partner needs the originator's consents (third-party rule).
    relayed = sorted({k[0] for k, r in rows.items() if r.originator != me})
    consents = _consents_of(conn, relayed) if relayed else {}
    repo = node_store.SqlRepository(conn)
    labels: dict[bytes, SecurityLabel] = {}
    out: list[dict[str, Any]] = []
    for key in wanted:
        found = rows.get(key)
        if found is None:
            continue
        row = found
        held = consents.get(key[0], [])
        provider: Party | None = None
        if row.originator != me:
            # Without a consent a received item goes nowhere: skip the custody lookup.
            if not held:
                continue
            custody = repo.custody_of(*key)
            provider = custody[0].provider if custody else None
        raw = bytes(row.label)
        label = labels.get(raw)
        if label is None:
            label = labels[raw] = SecurityLabel.from_stored(json.loads(raw))
        grants = tuple(Consent(c.item_id, c.originator, c.recipient) for c in held)
        for recipient in deliver_to:
            if recipient in (me, label.originator, provider) or \
                    (only is not None and recipient != only):
                continue
            decision = decide(ReleaseRequest(key[0], label, me, recipient, now, grants),
                              catalogue)
            if decision.permit:
                out.append({"item_id": key[0], "version": key[1], "recipient": recipient,
                            "status": PENDING, "attempts": 0, "next_at": now,
                            "queued_at": now})
    return _record_queued(conn, audit, out, now, scanned_to)


def _record_queued(conn: sa.Connection, audit: Any, rows: list[dict[str, Any]],
                   now: datetime, scanned_to: int | None) -> int:
    """Insert the deliveries not queued before, each naming the event that records it.

    Queueing twice changes nothing: a delivery already in the outbox is left out here (the
    write lock is held), so every row has exactly one recording event."""
    if rows:
        held: set[tuple[str, str, str]] = set()
        for chunk in _chunks(sorted({r["item_id"] for r in rows})):
            held.update((r.item_id, r.version, r.recipient) for r in conn.execute(
                sa.select(outbox.c.item_id, outbox.c.version, outbox.c.recipient)
                .where(outbox.c.item_id.in_(chunk))))
        fresh = []
        for row in rows:
            key = (row["item_id"], row["version"], row["recipient"])
            if key not in held:
                held.add(key)
                fresh.append(row)
        rows = fresh
    if not rows and scanned_to is None:
        return 0
    details: dict[str, Any] = {"records": records_detail(
        outbox=[node_store.register_digest("outbox", r) for r in rows])}
    if scanned_to is not None:
        details["scanned_to"] = scanned_to
    event = audit.append(AuditKind.DELIVERIES_QUEUED, now, "node", details=details)
    if rows:
        conn.execute(outbox.insert(), [{**r, "seq": event.seq} for r in rows])
    return len(rows)


def _advance(conn: sa.Connection, added: int) -> int | None:
    """Move the scan watermark past what this commit stored and queued itself, when
    nothing older is left unscanned (writers commit in ``seq`` order); the new mark."""
    items = node_store.items
    mark = conn.execute(sa.select(exchange_state.c.scanned_seq)
                        .where(exchange_state.c.id == 1)).scalar()
    if mark is None:
        return None
    newer = conn.execute(sa.select(sa.func.count(), sa.func.max(items.c.seq))
                         .where(items.c.seq > mark)).one()
    if newer[0] == added and newer[1] is not None:
        conn.execute(exchange_state.update().where(exchange_state.c.id == 1)
                     .values(scanned_seq=newer[1]))
        return int(newer[1])
    return None


@contextmanager
def _writing(node: Any) -> Iterator[sa.Connection]:
    with node.store.engine.connect().execution_options(gsomia_write=True) as conn, \
            conn.begin():
        yield conn


def scan(node: Any, partners: Partners, now: datetime) -> int:
    """Queue what was stored since the last scan (one transaction); the count queued."""
    items = node_store.items
    with node.store.engine.connect() as conn:
        # Read first: most passes find nothing new, and must not take the write lock.
        mark = conn.execute(sa.select(exchange_state.c.scanned_seq)
                            .where(exchange_state.c.id == 1)).scalar()
        newest = conn.execute(sa.select(sa.func.max(items.c.seq))).scalar()
        conn.rollback()
    if newest is None or (mark is not None and newest <= mark):
        return 0
    uow = node.uow()
    with uow:
        conn = uow.repo.conn
        mark = conn.execute(sa.select(exchange_state.c.scanned_seq)
                            .where(exchange_state.c.id == 1)).scalar()
        if mark is None:
            conn.execute(exchange_state.insert(), {"id": 1, "scanned_seq": -1})
            mark = -1
        rows = conn.execute(sa.select(items.c.id, items.c.version, items.c.seq)
                            .where(items.c.seq > mark).order_by(items.c.seq)).all()
        if not rows:
            return 0
        scanned_to = max(r.seq for r in rows)
        conn.execute(exchange_state.update().where(exchange_state.c.id == 1)
                     .values(scanned_seq=scanned_to))
        queued = queue_deliveries(conn, audit=uow.audit, me=node.party,
                                  deliver_to=partners.deliver_to, catalogue=node.catalogue,
                                  keys=[(r.id, r.version) for r in rows], now=now,
                                  scanned_to=scanned_to)
        uow.commit()
    return queued


class _WrappedUnitOfWork:
    """A store unit of work that records what it adds, so a subclass's ``commit`` can write
    more rows in the same transaction before committing."""

    _inner: Any

    def __enter__(self) -> Any:
        self._inner.__enter__()
        self.repo = _RecordingRepository(self._inner.repo)
        self.audit = self._inner.audit
        return self

    def __exit__(self, *exc: Any) -> None:
        self._inner.__exit__(*exc)

    def _write_buffered(self, conn: sa.Connection) -> None:
        if self.repo.receipts:
            conn.execute(node_store.receipts.insert(), self.repo.receipts)
            self.repo.receipts = []


class _QueueingUnitOfWork(_WrappedUnitOfWork):
    """A unit of work that queues deliveries of what it stores in its own commit."""

    def __init__(self, inner: Any, node: Any, partners: Partners, now: datetime) -> None:
        self._inner, self._node, self._partners, self._now = inner, node, partners, now

    def commit(self) -> None:
        conn = self._inner.repo.conn
        self._write_buffered(conn)
        mark = _advance(conn, len(self.repo.added))
        queue_deliveries(conn, audit=self._inner.audit, me=self._node.party,
                         deliver_to=self._partners.deliver_to, catalogue=self._node.catalogue,
                         keys=self.repo.added, now=self._now, known=self.repo.stored,
                         scanned_to=mark)
        self._inner.commit()

    def rollback(self) -> None:
        self._inner.rollback()


def _receipt_values(record: ReceiptRecord, seq: int) -> dict[str, Any]:
    # As ``SqlRepository.add_receipt`` writes it (the audit verifier rereads the digest).
    return {"item_id": record.item_id, "version": record.version, "peer": record.peer,
            "direction": record.direction,
            "document": json.dumps(dict(record.document), ensure_ascii=False, sort_keys=True),
            "at": record.at, "seq": seq}


class _RecordingRepository:
    """Records the items added; holds receipts back to write them in one statement at commit
    (one insert per receipt is a tenth of a delivery's cost)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.added: list[tuple[str, str]] = []
        self.stored: dict[tuple[str, str], Any] = {}
        self.receipts: list[dict[str, Any]] = []

    def add_receipt(self, record: ReceiptRecord, *, seq: int) -> None:
        self.receipts.append(_receipt_values(record, seq))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def add_item(self, item: Any, *, seq: int) -> None:
        self.added.append((item.item_id, item.version))
        self.stored[(item.item_id, item.version)] = item
        self._inner.add_item(item, seq=seq)

    def add_items(self, batch: list[tuple[Any, int]]) -> None:
        self.added.extend((item.item_id, item.version) for item, _ in batch)
        self.stored.update(((item.item_id, item.version), item) for item, _ in batch)
        self._inner.add_items(batch)


def publish(node: Any, *, entries: Sequence[tuple[Mapping[str, Any], handlers.LabelRequest]],
            now: datetime | None = None, actor: str = "operator",
            validate: Any = None) -> list[handlers.Published]:
    """``handlers.publish_many`` with the deliveries queued in the same commit."""
    at = now or now_utc()
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)  # labels keep milliseconds
    partners = require_partners(node)
    uow = _QueueingUnitOfWork(node.uow(), node, partners, at)
    out = handlers.publish_many(uow, keys=node.keys,
                                catalogue=node.catalogue, entries=entries, now=at,
                                actor=actor, validate=validate)
    wake(node)
    return out


def pending(node: Any, recipient: Party | None = None) -> int:
    """Deliveries not yet receipted (or refused)."""
    query = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.status == PENDING)
    if recipient is not None:
        query = query.where(outbox.c.recipient == recipient)
    with node.store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def outbox_rows(node: Any) -> list[dict[str, Any]]:
    with node.store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(outbox).order_by(outbox.c.row))]


# ---- the sender -------------------------------------------------------------------------------


def client_tls(folder: Path, to: Party) -> ssl.SSLContext:
    """Mutual TLS towards party ``to``'s node: this node's client certificate, and ``to``'s
    CA pinned in partners.json as the only one trusted (none pinned: no server is)."""
    from gsomia.shell.peer_identity import client_context, pinned_cas

    partners = Partners.load(Path(folder))
    pinned = pinned_cas(Path(folder), partners) if partners is not None else {}
    return client_context(Path(folder), pinned.get(to))


def peer_client(folder: Path, timeout: float = 10.0) -> Any:
    """An HTTP client towards partners: each party's URL in partners.json trusts that
    party's pinned CA alone, so a partner's certificate cannot answer for another partner;
    any other URL is refused at the handshake."""
    import httpx

    from gsomia.shell.peer_identity import client_context, pinned_cas

    folder = Path(folder)
    partners = Partners.load(folder)
    pinned = pinned_cas(folder, partners) if partners is not None else {}
    others = [p for p in partners.peers.values() if p.party != partners.me] \
        if partners is not None else []  # a node does not call itself on the peer API
    mounts = {}
    for peer in others:
        url = httpx.URL(peer.url)
        host = f"[{url.host}]" if ":" in url.host else url.host
        port = f":{url.port}" if url.port is not None else ""
        mounts[f"{url.scheme}://{host}{port}"] = httpx.HTTPTransport(
            verify=client_context(folder, pinned.get(peer.party)))
    # Built once per client: the sender's and the notices' clients live as long as the node
    # process, and a running federation's partners file keeps its URLs and pins.
    return httpx.Client(verify=client_context(folder, None), mounts=mounts, timeout=timeout,
                        headers={"content-type": "application/json"})


def payloads_of(conn: sa.Connection, keys: Sequence[tuple[str, str]],
                recipient: Party) -> dict[tuple[str, str], dict[str, Any]]:
    """What each envelope carries: the object and label the originator bound, and the
    originator's signed consents naming ``recipient`` (they travel with a relay)."""
    items = node_store.items
    ids = sorted({k[0] for k in keys})
    wanted = set(keys)
    consents = _consents_of(conn, ids)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for chunk in _chunks(ids):
        for row in conn.execute(sa.select(items.c.id, items.c.version, items.c.content,
                                          items.c.label, items.c.binding)
                                .where(items.c.id.in_(chunk))):
            if (row.id, row.version) not in wanted:
                continue
            out[(row.id, row.version)] = {
                "object": json.loads(row.content), "label": json.loads(row.label),
                "binding": json.loads(row.binding),
                "consents": [json.loads(c.document) for c in consents.get(row.id, [])
                             if c.recipient == recipient]}
    return out


@dataclass
class SendReport:
    delivered: int = 0
    refused: int = 0
    failed: int = 0
    in_flight: int = 0


# In-process wake-ups: a commit that queued deliveries in the sender's own process (a relay
# stored by ``receive``, a TAXII or dashboard publish through :func:`publish`) wakes it at
# once; commits by other processes are seen through SQLite's ``data_version``.
_WAKE: dict[str, threading.Event] = {}
_WAKE_LOCK = threading.Lock()


def _wake_event(folder: Path) -> threading.Event:
    key = str(Path(folder).resolve())
    with _WAKE_LOCK:
        return _WAKE.setdefault(key, threading.Event())


def wake(node: Any) -> None:
    """Tell ``node``'s sender (if one runs, in this process or another) that deliveries are
    queued."""
    event = _WAKE.get(str(Path(node.folder).resolve())) if _WAKE else None
    if event is not None:
        event.set()
    node_store.signal_commit(node.store.engine)


def _listen(engine: sa.Engine) -> Any:
    """A socket receiving the commit signals of ``engine``'s database (see
    :func:`gsomia.shell.store.signal_commit`); None if there can be none or another sender
    of this database already listens (this one then polls)."""
    import socket

    address = node_store.commit_signal_address(engine)
    if address is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    return sock


def _drain(sock: Any) -> None:
    with suppress(OSError):
        while sock.recv(64):
            pass


class _Changes:
    """Whether another connection has committed to the node's database since the last
    look: SQLite's ``PRAGMA data_version`` on a connection of its own (microseconds, no
    lock). On other databases it cannot tell, and says yes."""

    def __init__(self, engine: sa.Engine) -> None:
        import sqlite3

        self._db: Any = None
        self._last: int | None = None
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            self._db = sqlite3.connect(str(engine.url.database), isolation_level=None,
                                       check_same_thread=False)

    def __call__(self) -> bool:
        if self._db is None:
            return True
        try:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
        except Exception:  # a locked or vanished file: look with a full pass
            return True
        changed = bool(version != self._last)
        self._last = int(version)
        return changed

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


@dataclass
class _Batch:
    """Envelopes sealed for one partner, posted on the sender's HTTP thread.

    ``bodies``: each envelope's JSON, in the order of ``sealed`` (None entries left out);
    ``unsent``: why a row has no envelope (refused here, never posted)."""

    peer: Peer
    sealed: list[tuple[Any, crypto.Envelope | None]]
    sent_at: datetime
    answer: Any = None  # a Future of the partner's results
    bodies: list[str] = dataclasses.field(default_factory=list)
    unsent: dict[int, str] = dataclasses.field(default_factory=dict)


_BATCH_FRAME = len('{"envelopes":[]}')


class Sender:
    """Pushes a node's due deliveries to its partners; one ``step`` per pass.

    Pipelined: while a partner verifies and stores batch k, this node seals batch k+1 (the
    rows in flight are left out of the query), posts it as soon as k's answer is back, and
    only then records k's receipts. At most one batch per partner is in flight; a batch
    whose answer is lost (crash, network) stays ``pending`` and goes again, and the
    partner answers the resend with a receipt it does not record twice."""

    def __init__(self, node: Any, *, batch: int = 256, clock: Any = now_utc,
                 client: Any = None) -> None:
        self.node = node
        self.batch = batch
        self.clock = clock
        self._client = client
        self._in_flight: dict[Party, _Batch] = {}
        self._pool: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = peer_client(self.node.folder)
        return self._client

    def close(self) -> None:
        for batch in list(self._in_flight.values()):
            # On failure the rows stay pending and go again after a restart.
            with suppress(Exception):
                self._finish(batch, SendReport())
        self._in_flight.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._client is not None:
            self._client.close()

    def step(self) -> SendReport:
        partners = require_partners(self.node)
        scan(self.node, partners, self.clock())
        report = SendReport()
        for recipient in partners.deliver_to:
            peer = partners.peers.get(recipient)
            if peer is not None:
                self._send_to(peer, report)
        for gone in set(self._in_flight) - set(partners.deliver_to):
            self._finish(self._in_flight.pop(gone), report)
        report.in_flight = sum(len(b.sealed) for b in self._in_flight.values())
        return report

    def _seal(self, peer: Peer) -> _Batch | None:
        now = self.clock()
        flying = self._in_flight.get(peer.party)
        query = (sa.select(outbox.c.row, outbox.c.item_id, outbox.c.version, outbox.c.attempts)
                 .where(outbox.c.status == PENDING, outbox.c.recipient == peer.party,
                        outbox.c.next_at <= now)
                 .order_by(outbox.c.row).limit(self.batch))
        if flying is not None:
            query = query.where(outbox.c.row.notin_([r.row for r, _ in flying.sealed]))
        with self.node.store.engine.connect() as conn:
            due = conn.execute(query).all()
            if not due:
                return None
            payloads = payloads_of(conn, [(r.item_id, r.version) for r in due], peer.party)
        batch = _Batch(peer, [], now)
        key = self.node.keys.signing_key()
        size = _BATCH_FRAME
        for row in due:
            payload = payloads.get((row.item_id, row.version))
            if payload is None:
                batch.sealed.append((row, None))
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
            body = json.dumps(envelope.to_json())
            if _BATCH_FRAME + len(body) > limits.PEER_BODY:
                # Alone it is more than a partner takes (an item stored before the bound
                # at publish, or a relay's consents): say so once rather than post it.
                batch.sealed.append((row, None))
                batch.unsent[row.row] = (
                    f"its envelope is {len(body)} bytes, more than the {limits.PEER_BODY} "
                    f"bytes a partner accepts")
                continue
            if size + len(body) + 1 > limits.PEER_BODY:
                break  # the rest go in the next batch, still due
            size += len(body) + 1
            batch.sealed.append((row, envelope))
            batch.bodies.append(body)
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
            raise OSError(f"HTTP {response.status_code}: {response.text[:300]}")
        results = response.json().get("results")
        if not isinstance(results, list) or len(results) != len(bodies):
            raise OSError("the partner answered with another number of results")
        return results

    def _one_by_one(self, batch: _Batch) -> tuple[list[Any], list[Any]]:
        """After a whole batch was refused: each envelope alone, so one bad envelope does
        not cost the others their delivery. The partner's results, and the rows to retry
        (a network failure on the way)."""
        results: list[Any] = []
        retry: list[Any] = []
        kept: list[tuple[Any, crypto.Envelope | None]] = []
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
            except Exception:  # network, partner down: this one goes again later
                retry.append(row)
                continue
            kept.append((row, envelope))
        batch.sealed = kept
        return results, retry

    def _launch(self, batch: _Batch) -> None:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gsomia-post")
        batch.answer = self._pool.submit(self._post, batch)
        self._in_flight[batch.peer.party] = batch

    def _finish(self, batch: _Batch, report: SendReport) -> None:
        try:
            results = batch.answer.result()
        except Refused as refused:
            # The partner read the request and said no for good: find out for which.
            if len(batch.bodies) > 1:
                results, retry = self._one_by_one(batch)
                if retry:
                    self._retry(retry, str(refused), batch.sent_at)
                    report.failed += len(retry)
            else:
                results = [{"refused": True, "status": refused.status,
                            "reasons": [str(refused)]}] * len(batch.bodies)
        except Exception as exc:  # network, TLS, partner down: retry later with backoff
            self._retry([r for r, _ in batch.sealed], str(exc), batch.sent_at)
            report.failed += len(batch.sealed)
            return
        self._settle(batch.peer, batch.sealed, results, report, batch.unsent)

    def _send_to(self, peer: Peer, report: SendReport) -> None:
        # Seal the next batch while the partner works on the one in flight.
        following = self._seal(peer)
        flying = self._in_flight.pop(peer.party, None)
        if flying is not None:
            flying.answer.exception()  # wait for the answer, whatever it is
        if following is not None:
            self._launch(following)
        if flying is not None:
            self._finish(flying, report)

    def _retry(self, rows: Sequence[Any], error: str, now: datetime) -> None:
        with _writing(self.node) as conn:
            for row in rows:
                delay = min(MAX_BACKOFF, 0.1 * 2 ** row.attempts)
                conn.execute(outbox.update().where(outbox.c.row == row.row,
                                                   outbox.c.status == PENDING).values(
                    attempts=row.attempts + 1, last_error=error[:500],
                    next_at=now + timedelta(seconds=delay)))

    def _settle(self, peer: Peer, sealed: list[tuple[Any, crypto.Envelope | None]],
                results: list[Any], report: SendReport,
                unsent: Mapping[int, str] | None = None) -> None:
        """Record the partner's receipts and refusals in one commit, once each.

        Only a delivery still ``pending`` is settled, and a receipt is recorded only if none
        from ``peer`` is held for that (item, version): a second sender, or a receipt pushed
        over the peer API, never doubles the custody record."""
        outcome = iter(results)
        receipts: list[tuple[Any, crypto.Receipt]] = []
        refused: list[tuple[Any, str]] = []
        for row, envelope in sealed:
            if envelope is None:
                refused.append((row, (unsent or {}).get(row.row,
                                                       "the item is no longer held here")))
                continue
            result = next(outcome)
            try:
                if not isinstance(result, Mapping) or "receipt" not in result:
                    raise PolicyDenied(tuple(result.get("reasons") or ["refused"])
                                       if isinstance(result, Mapping) else ("refused",))
                receipt = crypto.Receipt.from_json(result["receipt"])
                crypto.verify_receipt(receipt, peer.signing_public, envelope=envelope)
                receipts.append((row, receipt))
            except GsomiaError as exc:
                refused.append((row, str(exc)))
        now = self.clock()  # when the answer came back: publish-to-receipt ends here
        table = node_store.receipts
        uow = self.node.uow()
        with uow:
            conn = uow.repo.conn
            rows = [r.row for r, _ in receipts] + [r.row for r, _ in refused]
            still: set[int] = set()
            for chunk in _chunks(rows):
                still.update(conn.execute(sa.select(outbox.c.row).where(
                    outbox.c.row.in_(chunk), outbox.c.status == PENDING)).scalars())
            kept: set[tuple[str, str]] = set()
            ids = sorted({r.item_id for r, _ in receipts if r.row in still})
            for chunk in _chunks(ids):
                kept.update((k.item_id, k.version) for k in conn.execute(
                    sa.select(table.c.item_id, table.c.version).where(
                        table.c.item_id.in_(chunk), table.c.peer == peer.party,
                        table.c.direction == "obtained")))
            written: list[dict[str, Any]] = []
            delivered: list[dict[str, Any]] = []
            for row, receipt in receipts:
                if row.row not in still:
                    continue
                delivered.append({"r": row.row, "n": row.attempts + 1})
                if (receipt.item_id, receipt.version) in kept:
                    continue
                kept.add((receipt.item_id, receipt.version))
                record = ReceiptRecord(receipt.item_id, receipt.version, peer.party,
                                       "obtained", receipt.to_json(), now)
                event = uow.audit.append(
                    AuditKind.RECEIPT, now, "node", item_id=receipt.item_id,
                    item_version=receipt.version,
                    details={"peer": peer.party, "direction": "obtained",
                             "records": records_detail(receipts=[record.digest()])})
                written.append(_receipt_values(record, event.seq))
            if written:
                conn.execute(table.insert(), written)
            if delivered:
                conn.execute(outbox.update().where(outbox.c.row == sa.bindparam("r"))
                             .values(status=DELIVERED, delivered_at=now,
                                     attempts=sa.bindparam("n")), delivered)
            gave_up = [{"r": r.row, "n": r.attempts + 1, "e": why[:500]}
                       for r, why in refused if r.row in still]
            for r, why in refused:
                if r.row in still:
                    # Not retried from now on, and on record: audit verify holds every outbox row
                    # marked refused against these events.
                    uow.audit.append(AuditKind.DELIVERY_REFUSED, now, "node",
                                     item_id=r.item_id, item_version=r.version,
                                     details={"recipient": peer.party, "reason": why[:500],
                                              "attempts": r.attempts + 1})
            if gave_up:
                conn.execute(outbox.update().where(outbox.c.row == sa.bindparam("r"))
                             .values(status=REFUSED, last_error=sa.bindparam("e"),
                                     attempts=sa.bindparam("n")), gave_up)
            uow.commit()
        report.delivered += len(delivered)
        report.refused += len(gave_up)

    def run(self, stop: threading.Event, idle: float = 0.004, tick: float = 0.05,
            signalled_idle: float = 0.025) -> None:
        """Until ``stop``: send what is due; between passes, wait for a commit (the commit
        signal, or a wake-up in this process) and look every ``idle`` seconds whether
        anything was committed anyway (every ``signalled_idle`` seconds while the commit
        signals arrive: commits that send none are rare), and pass anyway every ``tick``
        seconds (deliveries whose backoff ran out)."""
        import select

        last = ""
        woken = _wake_event(self.node.folder)
        changes = _Changes(self.node.store.engine)
        signals = _listen(self.node.store.engine)
        try:
            while not stop.is_set():
                woken.clear()
                if signals is not None:
                    _drain(signals)
                changes()  # what this pass sees; a commit from now on means another pass
                try:
                    report = self.step()
                except Exception as exc:  # the loop outlives one bad pass; rows stay queued
                    report = SendReport(failed=1)
                    if repr(exc) != last:  # say it once, not every pass
                        last = repr(exc)
                        print(f"gsomia sender: {last}", file=sys.stderr, flush=True)
                if report.delivered or report.refused or report.in_flight:
                    continue
                until = time.monotonic() + (tick if not report.failed else 0.2)
                while not stop.is_set() and time.monotonic() < until:
                    if signals is None:
                        if woken.wait(idle) or changes():
                            break
                        continue
                    wait = max(0.0, min(signalled_idle, until - time.monotonic()))
                    if select.select([signals], [], [], wait)[0] or woken.is_set() or \
                            changes():
                        break
        finally:
            changes.close()
            if signals is not None:
                signals.close()


def in_background(worker: Any, name: str) -> tuple[threading.Thread, threading.Event]:
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


def start_sender(node: Any) -> tuple[threading.Thread, threading.Event]:
    """The sender on a daemon thread (``gsomia node run``)."""
    return in_background(Sender(node), "gsomia-sender")


# ---- receiving ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    """One envelope's outcome: a receipt, or refusal reasons (and the HTTP status)."""

    receipt: crypto.Receipt | None
    reasons: tuple[str, ...] = ()
    status: int = 202

    def to_json(self) -> dict[str, Any]:
        if self.receipt is not None:
            return {"receipt": self.receipt.to_json()}
        return {"refused": True, "status": self.status, "reasons": list(self.reasons)}


class _NonceUnitOfWork(_WrappedUnitOfWork):
    """The ingest's unit of work, storing the envelopes' nonces in the same commit."""

    def __init__(self, inner: Any, seen: list[dict[str, Any]],
                 queue: tuple[Partners, Any, datetime] | None = None) -> None:
        self._inner, self._seen, self._queue = inner, seen, queue

    def commit(self) -> None:
        conn = self._inner.repo.conn
        self._write_buffered(conn)
        if self._seen:
            # The replay register is covered by the log: a nonce deleted behind its back
            # (which would let the envelope in again) shows in audit verify.
            first = self._seen[0]
            event = self._inner.audit.append(
                AuditKind.ENVELOPES_ACCEPTED, first["at"], first["sender"],
                details={"sender": first["sender"], "records": records_detail(
                    envelopes_seen=[node_store.register_digest("envelopes_seen", r)
                                    for r in self._seen])})
            conn.execute(envelopes_seen.insert(),
                         [{**r, "seq": event.seq} for r in self._seen])
        if self.repo.added and self._queue is not None:
            # Relays of what was stored are queued in the same commit as the storing.
            partners, node, now = self._queue
            mark = _advance(conn, len(self.repo.added))
            queue_deliveries(conn, audit=self._inner.audit, me=node.party,
                             deliver_to=partners.deliver_to, catalogue=node.catalogue,
                             keys=self.repo.added, now=now, known=self.repo.stored,
                             scanned_to=mark)
        self._inner.commit()

    def rollback(self) -> None:
        self._inner.rollback()


def _seen_nonces(node: Any, nonces: list[str]) -> set[str]:
    if not nonces:
        return set()
    with node.store.engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.select(envelopes_seen.c.nonce)
                                           .where(envelopes_seen.c.nonce.in_(nonces)))}


def _refuse(node: Any, refusals: list[tuple[crypto.Envelope | None, Party, tuple[str, ...]]],
            now: datetime) -> None:
    if not refusals:
        return
    uow = node.uow()
    with uow:
        for envelope, sender, reasons in refusals:
            uow.audit.append(
                AuditKind.ENVELOPE_REFUSED, now, sender,
                item_id=envelope.item_id if envelope else None,
                item_version=envelope.version if envelope else None,
                details={"sender": sender, "reasons": list(reasons),
                         "nonce": crypto.b64u(envelope.nonce) if envelope else None})
        uow.commit()


def _opened(node: Any, partners: Partners, envelope: crypto.Envelope,
            sender: Party) -> handlers.Incoming:
    """Steps before ingest, each raising with its reason."""
    if envelope.sender != sender:
        raise PolicyDenied((f"envelope.sender is {envelope.sender}, but the TLS client "
                            f"certificate is {sender}'s",))
    peer = partners.peers.get(sender)
    if peer is None:
        raise PolicyDenied((f"{sender} is not a partner of this node",))
    sealed = len(envelope.ciphertext) - limits.AEAD_TAG
    if sealed > limits.MAX_ITEM_BYTES + limits.PAYLOAD_RESERVE:
        raise MalformedInput(f"the sealed payload is {sealed} bytes", where="envelope",
                             expected=f"an item of at most {limits.MAX_ITEM_BYTES} bytes with "
                                      "its label, binding and consents")
    payload = crypto.open_envelope(envelope, recipient=node.party,
                                   recipient_private=node.keys.envelope_key(),
                                   sender_public=peer.signing_public)
    try:
        obj, label_doc = payload["object"], payload["label"]
        binding = crypto.Binding.from_json(payload["binding"])
        consent_docs = payload.get("consents", [])
    except (KeyError, TypeError):
        raise MalformedInput("the payload lacks object, label or binding",
                             where="envelope payload") from None
    if not isinstance(obj, dict) or not isinstance(consent_docs, list):
        raise MalformedInput("object or consents of the wrong shape", where="envelope payload")
    label = SecurityLabel.from_json(label_doc, node.catalogue.vocabulary,
                                    where="envelope payload.label")
    if label.created is not None and label.to_json() != label_doc and \
            str(label_doc.get("created", "")).endswith(".000Z"):
        # types.iso renders 1-999 microseconds as ".000Z" but parsing that gives 0, which
        # renders as "Z": keep the bytes the originator bound (the binding still decides).
        label = dataclasses.replace(label, created=label.created.replace(microsecond=1))
    if obj.get("id") != envelope.item_id or handlers._version(obj) != envelope.version:
        raise ProofInvalid("the envelope header names another item or version than it holds")
    consents: list[Consent] = []
    originator = partners.peers.get(label.originator)
    for doc in consent_docs:
        consent = crypto.Consent.from_json(doc)
        if originator is None:
            raise ProofInvalid(f"no key for originator {label.originator} to check a consent")
        # A consent travels with a relay and is checked again at every hop.
        crypto.verify_consent(consent, originator.signing_public, item_id=envelope.item_id,
                              originator=label.originator)
        consents.append(Consent(consent.item_id, consent.originator, consent.recipient))
    return handlers.Incoming(obj, label, binding, sender, tuple(consents),
                             crypto.envelope_digest(envelope), envelope)


def receive(node: Any, partners: Partners, envelopes: Sequence[crypto.Envelope],
            sender: Party, now: datetime) -> list[Delivered]:
    """Verify, ingest and receipt a batch of envelopes from ``sender`` (one commit)."""
    out: list[Delivered | None] = [None] * len(envelopes)
    refusals: list[tuple[crypto.Envelope | None, Party, tuple[str, ...]]] = []
    nonces = [crypto.b64u(e.nonce) for e in envelopes]
    seen = _seen_nonces(node, nonces)
    batch: list[tuple[int, crypto.Envelope, handlers.Incoming]] = []
    in_batch: set[str] = set()
    for i, envelope in enumerate(envelopes):
        try:
            if nonces[i] in seen or nonces[i] in in_batch:
                raise PolicyDenied((f"replayed envelope: nonce {nonces[i]} was seen before",))
            incoming = _opened(node, partners, envelope, sender)
            in_batch.add(nonces[i])
            batch.append((i, envelope, incoming))
        except (PolicyDenied, ProofInvalid, MalformedInput) as exc:
            reasons = exc.reasons if isinstance(exc, PolicyDenied) else (str(exc),)
            status = 409 if "replayed" in " ".join(reasons) else \
                (422 if isinstance(exc, MalformedInput) else 403)
            out[i] = Delivered(None, tuple(reasons), status)
            refusals.append((envelope, sender, tuple(reasons)))
    _refuse(node, refusals, now)
    if batch:
        rows = [{"nonce": nonces[i], "sender": sender, "item_id": e.item_id,
                 "version": e.version, "at": now} for i, e, _ in batch]
        try:
            results = handlers.ingest(
                _NonceUnitOfWork(node.uow(), rows, (partners, node, now)),
                keys=node.keys, catalogue=node.catalogue, batch=[b[2] for b in batch],
                originator_keys=partners.signing_keys(), now=now)
        except sa.exc.IntegrityError:
            # A concurrent delivery of the same nonce won the race: this one is a replay.
            reasons = ("replayed envelope: its nonce was stored by a concurrent delivery",)
            _refuse(node, [(e, sender, reasons) for _, e, _ in batch], now)
            for i, _, _ in batch:
                out[i] = Delivered(None, reasons, 409)
            return [d for d in out if d is not None]
        for (i, _, _), result in zip(batch, results, strict=True):
            if result.status == "refused" or result.receipt is None:
                out[i] = Delivered(None, result.reasons or ("not receipted",), 403)
                continue
            out[i] = Delivered(result.receipt)
        if any(r.status == "stored" for r in results):
            wake(node)  # relays of what was stored were queued in that commit
    return [d for d in out if d is not None]


# ---- consents over the peer API ----------------------------------------------------------------


def new_request_id(node: Any, now: datetime) -> str:
    return f"{node.party}-consent-{now.strftime('%Y%m%dT%H%M%S')}-{os.urandom(4).hex()}"


def consent_rows(node: Any) -> list[dict[str, Any]]:
    with node.store.engine.connect() as conn:
        rows = conn.execute(sa.select(consent_requests).order_by(consent_requests.c.at))
        return [{**dict(r._mapping), "at": iso(r.at),
                 "decided_at": iso(r.decided_at) if r.decided_at else None} for r in rows]


def consent_row(node: Any, request_id: str) -> dict[str, Any]:
    with node.store.engine.connect() as conn:
        row = conn.execute(sa.select(consent_requests)
                           .where(consent_requests.c.id == request_id)).first()
    if row is None:
        raise MalformedInput(f"no consent request {request_id!r}", where="--request",
                             expected="an id from gsomia consent list")
    return dict(row._mapping)


def record_request(node: Any, *, request_id: str, item_id: str, holder: Party,
                   recipient: Party, reason: str, direction: str, now: datetime,
                   actor: str) -> None:
    """Keep a consent request (asked of this node, or asked by it) and audit it."""
    row = {"id": request_id, "item_id": item_id, "holder": holder, "recipient": recipient,
           "reason": reason, "status": "pending", "direction": direction, "at": now}
    uow = node.uow()
    with uow:
        event = uow.audit.append(
            AuditKind.CONSENT, now, actor, item_id=item_id,
            details={"request": request_id, "direction": f"requested-{direction}",
                     "holder": holder, "recipient": recipient, "records": records_detail(
                         consent_requests=[node_store.register_digest("consent_requests",
                                                                      row)])})
        uow.repo.conn.execute(consent_requests.insert(), {**row, "seq": event.seq})
        uow.commit()


def decide_request(node: Any, request_id: str, status: str, now: datetime) -> None:
    with _writing(node) as conn:
        conn.execute(consent_requests.update().where(consent_requests.c.id == request_id)
                     .values(status=status, decided_at=now))


def settle_outgoing(node: Any, item_id: str, recipient: Party | None, status: str,
                    now: datetime) -> None:
    """Mark this node's pending requests for ``item_id`` (to ``recipient``) answered."""
    query = consent_requests.update().where(
        consent_requests.c.item_id == item_id, consent_requests.c.direction == "outgoing",
        consent_requests.c.status == "pending")
    if recipient is not None:
        query = query.where(consent_requests.c.recipient == recipient)
    with _writing(node) as conn:
        conn.execute(query.values(status=status, decided_at=now))


def queue_after_consent(node: Any, consent: crypto.Consent, now: datetime) -> int:
    """A consent obtained opens the relay: queue the item's versions to its recipient."""
    partners = Partners.load(node.folder)
    if partners is None:
        return 0
    uow = node.uow()
    with uow:
        conn = uow.repo.conn
        versions = list(conn.execute(sa.select(node_store.items.c.version)
                                     .where(node_store.items.c.id == consent.item_id))
                        .scalars())
        queued = queue_deliveries(conn, audit=uow.audit, me=node.party,
                                  deliver_to=partners.deliver_to, catalogue=node.catalogue,
                                  keys=[(consent.item_id, v) for v in versions], now=now,
                                  only=consent.recipient)
        uow.commit()
    wake(node)
    return queued


def wait_until(check: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``check()`` until true or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(interval)
    return bool(check())
