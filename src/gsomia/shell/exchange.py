"""Delivery between nodes: the outbox, the sender, and the receiving side of an envelope.

Sending. An item becomes due for a partner when this node's release policy permits it
(originator's own items; a received item only with the originator's consent, the
third-party rule). :func:`queue_deliveries` writes one ``outbox`` row per (item, version,
partner), unique, so queueing twice changes nothing; :func:`publish` queues in the same
transaction as the publish, and :func:`scan` catches up, from a watermark on the audit
``seq``, whatever was stored by other paths (``gsomia publish``, TAXII POST, received
items). :class:`Sender` pushes due rows in batches over mutual TLS (httpx), each envelope
sealed with a fresh nonce (a retry is a new envelope, so the recipient's replay check never
refuses a retry), records the partner's signed receipts in custody, and backs off
exponentially on failure.

Receiving. :func:`receive` checks each envelope (sender = TLS peer, nonce never seen,
signature, addressee, key, decryption, consents signed by the originator), then hands the
batch to :func:`gsomia.service.handlers.ingest` (originator binding, own release policy,
Art. 4 re-marking, store, audit); the nonces are stored in the ingest's own commit.
Idempotency is on (item, version, sender): a version already held is a ``duplicate`` and
still gets a receipt. Every refusal is audited as ``envelope-refused``.

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
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from gsomia.core import crypto
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


# ---- partners ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """Another party's node as this node knows it."""

    party: Party
    url: str
    signing_public: Ed25519PublicKey
    envelope_public: X25519PublicKey

    def to_json(self) -> dict[str, str]:
        return {"url": self.url,
                "signing_public": crypto.b64u(crypto.raw_public(self.signing_public)),
                "envelope_public": crypto.b64u(crypto.raw_public(self.envelope_public))}


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
                    crypto.from_b64u(doc["envelope_public"], where=f"{where}: {code}")))
        return cls(party(data["party"], where=f"{where}: party"), str(data.get("topology", "")),
                   peers, tuple(party(p, where=f"{where}: deliver_to")
                                for p in data.get("deliver_to", [])))

    @classmethod
    def load(cls, folder: Path) -> Partners | None:
        path = Path(folder) / PARTNERS_FILE
        try:
            return cls.from_json(json.loads(path.read_text("utf-8")), where=str(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MalformedInput(f"cannot read {path}: {exc}", where=str(path)) from None

    def write(self, folder: Path) -> None:
        path = Path(folder) / PARTNERS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n", "utf-8")
        tmp.replace(path)


def require_partners(node: Any) -> Partners:
    found = Partners.load(node.folder)
    if found is None:
        raise MalformedInput(f"{node.folder} has no {PARTNERS_FILE}", where="--node",
                             expected="a node of a federation (gsomia federation up)")
    return found


# ---- the outbox -------------------------------------------------------------------------------


def _insert_ignore(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(table).on_conflict_do_nothing(), rows)
    else:
        conn.execute(table.insert().prefix_with("OR IGNORE"), rows)


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


def queue_deliveries(conn: sa.Connection, *, me: Party, deliver_to: Sequence[Party],
                     catalogue: Catalogue, keys: Iterable[tuple[str, str]], now: datetime,
                     only: Party | None = None) -> int:
    """Queue each (item, version) to every partner this node's release policy permits.

    Runs inside the caller's transaction. Never back to the party it came from or to its
    originator; an item received from a partner passes on only with the originator's
    consent (the policy's third-party rule)."""
    wanted = list(dict.fromkeys(keys))
    if not wanted or not deliver_to:
        return 0
    items = node_store.items
    ids = sorted({k[0] for k in wanted})
    rows: dict[tuple[str, str], Any] = {}
    row: Any
    for chunk in _chunks(ids):
        for row in conn.execute(sa.select(items.c.id, items.c.version, items.c.originator,
                                          items.c.label).where(items.c.id.in_(chunk))):
            rows[(row.id, row.version)] = row
    consents = _consents_of(conn, ids)
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
            label = labels[raw] = SecurityLabel.from_json(json.loads(raw))
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
    _insert_ignore(conn, outbox, out)
    return len(out)


def _advance(conn: sa.Connection, added: int) -> None:
    """Move the scan watermark past what this commit stored and queued itself, when
    nothing older is left unscanned (writers commit in ``seq`` order)."""
    items = node_store.items
    mark = conn.execute(sa.select(exchange_state.c.scanned_seq)
                        .where(exchange_state.c.id == 1)).scalar()
    if mark is None:
        return
    newer = conn.execute(sa.select(sa.func.count(), sa.func.max(items.c.seq))
                         .where(items.c.seq > mark)).one()
    if newer[0] == added and newer[1] is not None:
        conn.execute(exchange_state.update().where(exchange_state.c.id == 1)
                     .values(scanned_seq=newer[1]))


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
    with _writing(node) as conn:
        mark = conn.execute(sa.select(exchange_state.c.scanned_seq)
                            .where(exchange_state.c.id == 1)).scalar()
        if mark is None:
            conn.execute(exchange_state.insert(), {"id": 1, "scanned_seq": -1})
            mark = -1
        rows = conn.execute(sa.select(items.c.id, items.c.version, items.c.seq)
                            .where(items.c.seq > mark).order_by(items.c.seq)).all()
        if not rows:
            return 0
        queued = queue_deliveries(conn, me=node.party, deliver_to=partners.deliver_to,
                                  catalogue=node.catalogue,
                                  keys=[(r.id, r.version) for r in rows], now=now)
        conn.execute(exchange_state.update().where(exchange_state.c.id == 1)
                     .values(scanned_seq=max(r.seq for r in rows)))
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


class _QueueingUnitOfWork(_WrappedUnitOfWork):
    """A unit of work that queues deliveries of what it stores in its own commit."""

    def __init__(self, inner: Any, node: Any, partners: Partners, now: datetime) -> None:
        self._inner, self._node, self._partners, self._now = inner, node, partners, now

    def commit(self) -> None:
        conn = self._inner.repo.conn
        queue_deliveries(conn, me=self._node.party, deliver_to=self._partners.deliver_to,
                         catalogue=self._node.catalogue, keys=self.repo.added, now=self._now)
        _advance(conn, len(self.repo.added))
        self._inner.commit()

    def rollback(self) -> None:
        self._inner.rollback()


class _RecordingRepository:
    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.added: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def add_item(self, item: Any, *, seq: int) -> None:
        self.added.append((item.item_id, item.version))
        self._inner.add_item(item, seq=seq)

    def add_items(self, batch: list[tuple[Any, int]]) -> None:
        self.added.extend((item.item_id, item.version) for item, _ in batch)
        self._inner.add_items(batch)


def publish(node: Any, *, entries: Sequence[tuple[Mapping[str, Any], handlers.LabelRequest]],
            now: datetime | None = None, actor: str = "operator",
            validate: Any = None) -> list[handlers.Published]:
    """``handlers.publish_many`` with the deliveries queued in the same commit."""
    at = now or now_utc()
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)  # labels keep milliseconds
    partners = require_partners(node)
    uow = _QueueingUnitOfWork(node.uow(), node, partners, at)
    return handlers.publish_many(uow, keys=node.keys,
                                 catalogue=node.catalogue, entries=entries, now=at,
                                 actor=actor, validate=validate)


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


def client_tls(folder: Path) -> ssl.SSLContext:
    """Mutual TLS towards partners: this node's client certificate, partners' CAs trusted."""
    folder = Path(folder)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.load_verify_locations(cafile=str(folder / "tls" / "ca.crt"))
    for ca in sorted((folder / "tls" / "partners").glob("*.crt")):
        ctx.load_verify_locations(cafile=str(ca))
    ctx.load_cert_chain(str(folder / "tls" / "client.crt"), str(folder / "tls" / "client.key"))
    return ctx


def peer_client(folder: Path, timeout: float = 10.0) -> Any:
    import httpx

    return httpx.Client(verify=client_tls(folder), timeout=timeout,
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


class Sender:
    """Pushes a node's due deliveries to its partners; one ``step`` per pass."""

    def __init__(self, node: Any, *, batch: int = 256, clock: Any = now_utc,
                 client: Any = None) -> None:
        self.node = node
        self.batch = batch
        self.clock = clock
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = peer_client(self.node.folder)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def step(self) -> SendReport:
        partners = require_partners(self.node)
        now = self.clock()
        scan(self.node, partners, now)
        report = SendReport()
        for recipient in partners.deliver_to:
            peer = partners.peers.get(recipient)
            if peer is not None:
                self._send_to(peer, partners, report)
        return report

    def _send_to(self, peer: Peer, partners: Partners, report: SendReport) -> None:
        now = self.clock()
        with self.node.store.engine.connect() as conn:
            due = conn.execute(
                sa.select(outbox.c.row, outbox.c.item_id, outbox.c.version, outbox.c.attempts)
                .where(outbox.c.status == PENDING, outbox.c.recipient == peer.party,
                       outbox.c.next_at <= now)
                .order_by(outbox.c.row).limit(self.batch)).all()
            if not due:
                return
            payloads = payloads_of(conn, [(r.item_id, r.version) for r in due], peer.party)
            sealed: list[tuple[Any, crypto.Envelope | None]] = []
            key = self.node.keys.signing_key()
            for row in due:
                payload = payloads.get((row.item_id, row.version))
                if payload is None:
                    sealed.append((row, None))
                    continue
                sealed.append((row, crypto.seal_envelope(
                    sender=self.node.party, recipient=peer.party, item_id=row.item_id,
                    version=row.version, nonce=os.urandom(16), sent_at=now, payload=payload,
                    sender_key=key, recipient_public=peer.envelope_public)))
        envelopes = [e for _, e in sealed if e is not None]
        try:
            response = self.client.post(
                peer.url.rstrip("/") + "/peer/v1/envelopes/",
                content=json.dumps({"envelopes": [e.to_json() for e in envelopes]}))
            if response.status_code != 202:
                raise OSError(f"HTTP {response.status_code}: {response.text[:300]}")
            results = response.json().get("results")
            if not isinstance(results, list) or len(results) != len(envelopes):
                raise OSError("the partner answered with another number of results")
        except Exception as exc:  # network, TLS, partner down: retry later with backoff
            self._retry([r for r, _ in sealed], str(exc), now)
            report.failed += len(sealed)
            return
        self._settle(peer, sealed, results, now, report)

    def _retry(self, rows: Sequence[Any], error: str, now: datetime) -> None:
        with _writing(self.node) as conn:
            for row in rows:
                delay = min(MAX_BACKOFF, 0.1 * 2 ** row.attempts)
                conn.execute(outbox.update().where(outbox.c.row == row.row).values(
                    attempts=row.attempts + 1, last_error=error[:500],
                    next_at=now + timedelta(seconds=delay)))

    def _settle(self, peer: Peer, sealed: list[tuple[Any, crypto.Envelope | None]],
                results: list[Any], now: datetime, report: SendReport) -> None:
        outcome = iter(results)
        receipts: list[tuple[Any, crypto.Receipt]] = []
        refused: list[tuple[Any, str]] = []
        for row, envelope in sealed:
            if envelope is None:
                refused.append((row, "the item is no longer held here"))
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
        uow = self.node.uow()
        with uow:
            for row, receipt in receipts:
                record = ReceiptRecord(receipt.item_id, receipt.version, peer.party,
                                       "obtained", receipt.to_json(), now)
                event = uow.audit.append(
                    AuditKind.RECEIPT, now, "node", item_id=receipt.item_id,
                    item_version=receipt.version,
                    details={"peer": peer.party, "direction": "obtained",
                             "records": records_detail(receipts=[record.digest()])})
                uow.repo.add_receipt(record, seq=event.seq)
                uow.repo.conn.execute(outbox.update().where(outbox.c.row == row.row).values(
                    status=DELIVERED, delivered_at=now, attempts=row.attempts + 1))
            for row, why in refused:
                uow.repo.conn.execute(outbox.update().where(outbox.c.row == row.row).values(
                    status=REFUSED, last_error=why[:500], attempts=row.attempts + 1))
            uow.commit()
        report.delivered += len(receipts)
        report.refused += len(refused)

    def run(self, stop: threading.Event, idle: float = 0.005) -> None:
        """Until ``stop``: send what is due, sleeping ``idle`` seconds when nothing was."""
        last = ""
        while not stop.is_set():
            try:
                report = self.step()
            except Exception as exc:  # the loop outlives one bad pass; the rows stay queued
                report = SendReport(failed=1)
                if repr(exc) != last:  # say it once, not every pass
                    last = repr(exc)
                    print(f"gsomia sender: {last}", file=sys.stderr, flush=True)
            if not (report.delivered or report.refused):
                stop.wait(idle if not report.failed else 0.2)


def start_sender(node: Any) -> tuple[threading.Thread, threading.Event]:
    """The sender on a daemon thread (``gsomia node run``)."""
    stop = threading.Event()
    sender = Sender(node)

    def loop() -> None:
        try:
            sender.run(stop)
        finally:
            sender.close()

    thread = threading.Thread(target=loop, name="gsomia-sender", daemon=True)
    thread.start()
    return thread, stop


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
        if self._seen:
            conn.execute(envelopes_seen.insert(), self._seen)
        if self.repo.added and self._queue is not None:
            # Relays of what was stored are queued in the same commit as the storing.
            partners, node, now = self._queue
            queue_deliveries(conn, me=node.party, deliver_to=partners.deliver_to,
                             catalogue=node.catalogue, keys=self.repo.added, now=now)
            _advance(conn, len(self.repo.added))
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
    label = SecurityLabel.from_json(label_doc)
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
                             crypto.envelope_digest(envelope))


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
        key = node.keys.signing_key()
        for (i, envelope, _), result in zip(batch, results, strict=True):
            if result.status == "refused":
                out[i] = Delivered(None, result.reasons, 403)
                continue
            out[i] = Delivered(crypto.make_receipt(envelope, received_at=now, key=key))
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
    uow = node.uow()
    with uow:
        uow.repo.conn.execute(consent_requests.insert(), {
            "id": request_id, "item_id": item_id, "holder": holder, "recipient": recipient,
            "reason": reason, "status": "pending", "direction": direction, "at": now})
        uow.audit.append(AuditKind.CONSENT, now, actor, item_id=item_id,
                         details={"request": request_id, "direction": f"requested-{direction}",
                                  "holder": holder, "recipient": recipient})
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
    with _writing(node) as conn:
        versions = conn.execute(sa.select(node_store.items.c.version)
                                .where(node_store.items.c.id == consent.item_id)).scalars()
        return queue_deliveries(conn, me=node.party, deliver_to=partners.deliver_to,
                                catalogue=node.catalogue,
                                keys=[(consent.item_id, v) for v in versions], now=now,
                                only=consent.recipient)


def wait_until(check: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``check()`` until true or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(interval)
    return bool(check())
