"""The sender: one partner link's loop, sealing batches of envelopes, posting them and the
notices, and settling the answers, with backoff.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from gsomia.core import crypto, limits
from gsomia.core.errors import MalformedInput
from gsomia.core.outbox import (
    CLASSIFICATION,
    CONSENT_REQUEST,
    INCIDENT,
    STANDING_CONSENT,
    STANDING_REVOCATION,
    Routing,
    backoff,
    definitive,
    retry_after,
)
from gsomia.core.types import Party
from gsomia.service import exchange as exchange_handlers
from gsomia.service import notices as notice_handlers
from gsomia.service.ports import (
    QueuedDelivery,
    QueuedNotice,
    ShellReads,
    SignatureChecks,
    checks_here,
)
from gsomia.shell import store as node_store
from gsomia.shell.exchange._outbox import scan
from gsomia.shell.exchange._partners import (
    COURIER_IDLE_KEPT_S,
    Partners,
    peer_client,
    require_partners,
)
from gsomia.shell.exchange._receiving import _checks
from gsomia.shell.signatures import RememberingChecks
from gsomia.shell.store import now_utc

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    import httpx
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from gsomia.service.standing import Parsed
    from gsomia.shell.exchange._node import Clock, NodePort
    from gsomia.shell.exchange._partners import Peer
    from gsomia.shell.exchange._progress import CourierProgress


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


def payloads_of(repo: ShellReads, keys: Sequence[tuple[str, str]],
                recipient: Party, now: datetime, routing: Routing,
                originator_keys: Mapping[Party, Ed25519PublicKey],
                checks: SignatureChecks = checks_here, here: SignatureChecks | None = None,
                parsed: Parsed | None = None
                ) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[tuple[str, str], str]]:
    """What each envelope carries: the object and label the originator bound, and the
    originator's signed consents naming ``recipient`` (they travel with a relay): per item,
    and the standing consents that cover the item at ``now`` (none once revoked here). And
    the versions that may not go to ``recipient`` at all, each with its reasons: the binding
    of the label and content as stored checked against the originator's key
    (``originator_keys``, the signatures through ``checks`` and ``here``:
    :func:`gsomia.service.outbox.unbound_at_seal`), and the release policy asked again over
    that label (:func:`gsomia.service.outbox.refused_at_seal`), whatever the row that names
    them says; these carry nothing. ``parsed``: the standing consents' documents parsed at
    earlier seals (:func:`gsomia.service.standing.with_documents`)."""
    from gsomia.core.labels import SecurityLabel
    from gsomia.service.outbox import reclassified_at_seal, refused_at_seal, unbound_at_seal
    from gsomia.service.standing import with_documents

    ids = sorted({k[0] for k in keys})
    wanted = set(keys)
    consents = repo.consents_of(ids)
    # Only those obtained from originators (a node's own items travel without consent),
    # and only those to ``recipient``, in the query: those to others were each read and
    # parsed at every seal, then dropped.
    standing = [(c, doc) for c, doc in with_documents(
        repo.standing_current(now, recipient=recipient, direction="obtained"), parsed)
        if c.recipient == recipient and not c.revoked]
    read: list[tuple[str, str, bytes, bytes, Any, dict[str, Any], SecurityLabel]] = []
    refused: dict[tuple[str, str], str] = {}
    # Items published together share their label's bytes: each is read once per batch.
    labels: dict[bytes, SecurityLabel] = {}
    for item_id, version, content, label_bytes, binding in repo.bound_versions(ids):
        if (item_id, version) not in wanted:
            continue
        # The node's own store's RFC 8785 text, parsed by orjson (several times json's
        # speed): three documents for every envelope sealed.
        try:
            label_doc = orjson.loads(label_bytes)
            label = labels.get(label_bytes) or labels.setdefault(
                label_bytes, SecurityLabel.from_stored(label_doc, where="label"))
        except (orjson.JSONDecodeError, MalformedInput, TypeError) as exc:  # retyped on disk
            refused[(item_id, version)] = f"its stored label does not read: {exc}"
            continue
        try:
            # Read by orjson, as the label (Binding.from_json's own read of the text takes a
            # few microseconds more an item); what it holds is checked by unbound_at_seal.
            binding_doc = orjson.loads(binding)
        except (orjson.JSONDecodeError, TypeError) as exc:
            refused[(item_id, version)] = f"its stored binding does not read: {exc}"
            continue
        read.append((item_id, version, content, label_bytes, binding_doc, label_doc, label))
    # The signatures are checked (on the signature worker, for a large batch) while the
    # policy decides and the payloads are built; nothing is sealed before their answer.
    bindings, unbound = unbound_at_seal(
        ((i, v, content, label_bytes, binding, label.originator)
         for i, v, content, label_bytes, binding, _, label in read),
        originator_keys, checks, here)
    refused.update(refused_at_seal(routing, recipient, now,
                                   ((i, v, label) for i, v, *_, label in read
                                    if (i, v) in bindings),
                                   consents, [c for c, _ in standing]))
    # The level the originator set since binding (its notices), which the envelope cannot
    # carry: such a version does not leave (hunt29).
    refused.update(reclassified_at_seal(((i, v, label) for i, v, *_, label in read),
                                        repo.notices_of(ids), originator_keys))
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for item_id, version, content, _, _, label_doc, label in read:
        bound = bindings.get((item_id, version))
        if bound is None or (item_id, version) in refused:
            continue
        try:
            # Read here, before the signatures' answer: bytes that do not read under a
            # binding whose digest was made to match them raised out of the seal at every
            # pass (the link's rows behind it waited for ever) before unbound() refused it.
            obj = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            refused[(item_id, version)] = f"its stored content does not read: {exc}"
            continue
        payload: dict[str, Any] = {
            "object": obj, "label": label_doc,
            "binding": bound.to_json(),
            "consents": [dict(c.document) for c in consents.get(item_id, [])
                         if c.recipient == recipient]}
        if standing:
            covering = [dict(doc) for c, doc in standing
                        if c.covers(label, recipient, now)]
            if covering:
                payload["standing_consents"] = covering
        out[(item_id, version)] = payload
    # Whether the policy released it or not: a version not bound as stored is refused as
    # such (its label says nothing the originator signed).
    for key, why in unbound().items():
        refused[key] = why
        out.pop(key, None)
    return out, refused


@dataclass
class SendReport:
    delivered: int = 0
    refused: int = 0
    failed: int = 0
    in_flight: int = 0


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
    # When the partner's answer came back, taken on the thread that posted: the delivery's
    # end, however long the answer then waits for the thread that records it.
    answered_at: datetime | None = None
    # The ticket of the pass that sealed it, until its request is written (the couriers'
    # progress, :meth:`Sender._sent`); None: not counted there.
    ticket: int | None = None

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


def _when_written(written: Callable[[], None]) -> Callable[[str, Any], None]:
    """An httpcore ``trace`` that calls ``written`` once, as the request's body is written
    (or its write failed: the answer is read all the same)."""
    told = False

    def trace(event: str, _info: Any) -> None:
        nonlocal told
        if not told and event.endswith(("send_request_body.complete",
                                        "send_request_body.failed",
                                        "receive_response_headers.started")):
            told = True
            written()
    return trace


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
        # The standing consents' documents parsed at earlier seals (under the seal's lock).
        self._standing_parsed: Parsed = {}
        self._deliver_to: tuple[Party, ...] = ()  # partners.json's, as the last pass read it
        # The partners' signing keys, as the last pass read them: a relay's binding is
        # checked against its originator's as it is sealed (:func:`payloads_of`).
        self._signing_keys: dict[Party, Ed25519PublicKey] = {}
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
        # The binding checks of the seal, each yes remembered in the node's keeping
        # (``store.remembered``: shared by its links and its publish path, so an item that
        # goes to two partners is verified once, and one this process bound not at all).
        self.seal_checks: RememberingChecks | None = None
        # How far this link got, for the warning centre beside it (:class:`Couriers` sets
        # it; a link's only), and the ticket of the loop's pass.
        self.progress: CourierProgress | None = None
        self._ticket = 0

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = peer_client(self.node.folder, keepalive=COURIER_IDLE_KEPT_S)
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
        # Whom the policy asked again at each seal may release to (:func:`payloads_of`).
        self._deliver_to = partners.deliver_to
        self._signing_keys = partners.signing_keys()
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
        self.node.store.synced_for_sending()  # as a batch of envelopes (_post_bodies)
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
        if not self._deliver_to:
            partners = require_partners(self.node)
            self._deliver_to, self._signing_keys = partners.deliver_to, partners.signing_keys()
        routing = Routing(self.node.party, self._deliver_to, self.node.catalogue)
        # The node's own items are bound by its own key, whatever partners.json says of it.
        originators = {**self._signing_keys,
                       self.node.party: self.node.keys.public_signing_key()}
        with self.node.store.repository() as repo:
            payloads, refused = payloads_of(repo, [(r.item_id, r.version) for r in due],
                                            peer.party, now, routing, originators,
                                            *self._seal_checks(),
                                            parsed=self._standing_parsed)
        batch = _Batch(peer, [], now, more=len(claimed) >= self.batch)
        key = self.node.keys.signing_key()
        size = _BATCH_FRAME
        for row in due:
            payload = payloads.get((row.item_id, row.version))
            if payload is None:
                # Refused by the policy asked again (the row's recipient or item is not
                # one it releases to), or no longer held: marked refused, on record.
                batch.sealed.append((row, None))
                why = refused.get((row.item_id, row.version))
                if why is not None:
                    batch.unsent[row.row] = why
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

    def _seal_checks(self) -> tuple[RememberingChecks, RememberingChecks]:
        """The seal's binding checks: half on the signature worker, half here."""
        if self.seal_checks is None:
            # The node's keeping: what its publish path bound in this process is found.
            self.seal_checks = self.node.store.remembered.through(_checks(self.node))
        return self.seal_checks, self.seal_checks.here

    def _post(self, batch: _Batch) -> list[Any]:
        try:
            if not batch.bodies:
                return []
            results = self._post_bodies(batch.peer, batch.bodies, lambda: self._sent(batch))
        finally:
            self._sent(batch)  # failed before its request was written: dealt with too
        batch.answered_at = self.clock()
        return results

    def _taking(self) -> int:
        """A pass's ticket, as it is about to claim (:class:`CourierProgress`)."""
        progress, link = self.progress, self.link
        return 0 if progress is None or link is None else progress.taking(link)

    def _count(self, batch: _Batch | None, ticket: int) -> None:
        """A batch sealed with ``ticket``: counted unsent until its request is written."""
        if batch is not None and self.progress is not None and self.link is not None:
            batch.ticket = ticket
            self.progress.sealed(self.link)

    def _sent(self, batch: _Batch) -> None:
        """``batch``'s request is written (or will not be): once a batch."""
        ticket, batch.ticket = batch.ticket, None
        if ticket is not None and self.progress is not None and self.link is not None:
            self.progress.sent(self.link, ticket)

    def _post_bodies(self, peer: Peer, bodies: Sequence[str],
                     written: Callable[[], None] | None = None) -> list[Any]:
        """``written``: called once the request's body is written (its answer awaited)."""
        extensions = {} if written is None else {"trace": _when_written(written)}
        # A received item's relay, or anything read from a commit whose sync runs outside
        # the write lock, leaves only once that commit is on disk.
        self.node.store.synced_for_sending()
        response = self.client.post(peer.url.rstrip("/") + "/peer/v1/envelopes/",
                                    content='{"envelopes":[' + ",".join(bodies) + "]}",
                                    extensions=extensions)
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
                ticket = self._taking()
                batch = self._seal(peer, beside=True)
                self._count(batch, ticket)
                if batch is None:
                    if self.progress is not None and self.link is not None:
                        self.progress.dealt(self.link, ticket)  # in flight or not due
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
                         batch.digests, at_once=at_once, answered_at=batch.answered_at)
            return
        self._settle(batch.peer, batch.sealed, results, report, batch.unsent, batch.digests)

    def _send_to(self, peer: Peer, report: SendReport, *, wait: bool = True) -> None:
        # Seal the next batch while the partner works on the one in flight.
        with self.sealing:
            following = self._seal(peer)
        self._count(following, self._ticket)
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
                digests: Mapping[int, bytes] | None = None, *, at_once: bool = False,
                answered_at: datetime | None = None) -> None:
        """Hand the partner's answers to the settling handler, in order; ``at_once``: see
        :meth:`_finish`; ``answered_at``: when the answer came back (None: now, as for
        answers posted again one by one)."""
        outcome = iter(results)
        sent = [exchange_handlers.Sent(row, envelope, next(outcome) if envelope else None,
                                       (unsent or {}).get(row.row),
                                       (digests or {}).get(row.row))
                for row, envelope in sealed]
        # The answer came back at ``answered_at``: publish-to-receipt ends there. The commit
        # waits for no disk sync: a power cut that loses it leaves the deliveries pending,
        # and they go again; the partner, holding the items, answers with receipts it
        # records once.
        # Everything else on an item's way (its store here, its store and receipt there)
        # is synced before anything is sent or answered.
        delivered, refused = exchange_handlers.settle(
            self.node.store.uow(synced=False, at_once=at_once), peer=peer.party,
            peer_public=peer.signing_public, sent=sent, now=self.clock(),
            answered_at=answered_at, checks=_checks(self.node))
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
            self._ticket = self._taking()
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
            if self.progress is not None and self.link is not None:
                # Backing off, the link takes nothing new: nothing waits for it.
                self.progress.resting(self.link, silent > 0)
                self.progress.dealt(self.link, self._ticket)
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
