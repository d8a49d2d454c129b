"""Notices between partner nodes: incident reports, classification notices, tree heads.

Sending. An incident report (Art. 17) travels from the holder back along the custody
chain: to the party the item came from (its originator, or the relay that provided it),
which passes it on to its own provider in turn. A classification notice, signed by the
originator, travels to every party the originator's node delivered the item to (its
receipts obtained tell who), and each holder passes it on to those it delivered to. Both
are queued by the handler that records them, in the same commit as the audit event that
causes them (:mod:`gsomia.service.outbox`), so a crash never loses one or sends one that
was rolled back. They are rows of the one outbox, beside the deliveries, and the courier
of their recipient's link (:class:`gsomia.shell.exchange.Couriers`) posts them over mutual
TLS and hands the answers to :func:`gsomia.service.notices.settle_notices` (delivered,
refused, or retried with the one backoff); the receiver is idempotent (a notice it
already applied is answered as a duplicate), so a retry after a lost answer changes nothing.

Incident reports carry no signature of their own (the core has no signed incident form):
the TLS client certificate identifies the holder, and the report names its reference.
Classification notices are signed by the originator and checked against its key at every
hop.

Receiving (:func:`accept_incident`, :func:`accept_classification_notice`): the handlers of
:mod:`gsomia.service.notices` accept a notice only about an item this node provided to the
sender or holds from it; everything else is refused and audited as ``notice-refused``
before the error goes back as a 4xx.

Tree heads. Every ``heads_every`` seconds, when its own log has grown by more than tree-head
records since the last exchange (or ``heads_quiet`` seconds have passed), a node posts its
latest signed head to each partner it delivers to with ``?since=N``, N being the size of
that partner's head it last recorded as consistent; the partner records the head and
answers with its own latest head (as it was before that record) and an RFC 9162 consistency
proof from N. Neither record waits for a disk sync of its own, unless it is of an
inconsistent head (SECURITY.md says what a power cut may lose), and the connection to each
partner is kept from one exchange to the next (:data:`HEADS_KEPT`).
:func:`gsomia.core.partner_heads.judge_partner_head` decides; a consistent head is audited
as ``tree-head-exchanged`` (``consistent: true``) and becomes the next base, an inconsistent
one as ``partner-log-inconsistent`` and never becomes the base. Only own log growth other
than these records triggers an exchange, so two nodes do not ping-pong records forever; each
such exchange is followed by one more at the next pass, whose answer covers the partner's
record of the first (the answer leaves out the record it causes).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import weakref
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gsomia.core.audit import AuditKind, TreeHead, hashes_from_json, hashes_to_json
from gsomia.core.custody import INCIDENT_KINDS, ClassificationNotice, IncidentReport
from gsomia.core.errors import GsomiaError, MalformedInput, Unavailable
from gsomia.core.limits import PARTNER_ROWS
from gsomia.core.outbox import (
    CLASSIFICATION,
    INCIDENT,
)
from gsomia.core.partner_heads import HeadVerdict, MerkleLevels, judge_partner_head
from gsomia.core.types import Party, iso
from gsomia.service import handlers
from gsomia.service import notices as notice_handlers
from gsomia.service.notices import MAX_BACKOFF
from gsomia.service.refusals import RefusalWindow
from gsomia.shell.exchange import (
    NOTICE_PATHS,
    PARTIES,
    Clock,
    NodePort,
    Partners,
    Peer,
    in_background,
    peer_client,
)
from gsomia.shell.store import now_utc

if TYPE_CHECKING:
    import httpx

    from gsomia.core.agreements import Catalogue
    from gsomia.service.ports import AuditReader, LoggedHead, Repository, ShellReads
    from gsomia.shell.store import Store

__all__ = [
    "CLASSIFICATION",
    "INCIDENT",
    "MAX_BACKOFF",
    "PATHS",
    "LeafCache",
    "NoticeSender",
    "accept_classification_notice",
    "accept_incident",
    "head_events",
    "head_with_proof",
    "incident_rows",
    "notice_rows",
    "parse_since",
    "partner_heads",
    "pending",
    "queued_to",
    "reclassify",
    "report_incident",
    "start_notices",
]

PATHS = NOTICE_PATHS
PENDING, DELIVERED, REFUSED = "pending", "delivered", "refused"
HEADS_EVERY = 2.0
HEADS_QUIET = 60.0
# Seconds the connection to a partner is kept between exchanges: one every HEADS_EVERY
# while the log grows reuses it (a fresh mutual TLS handshake each time cost both nodes CPU
# beside their deliveries); kept no longer than the partner's server keeps an idle one
# (:data:`gsomia.shell.exchange.PARTNER_IDLE_KEPT_S` for a partner's connection, 5 s before),
# so no post goes out on a connection the server is closing.
HEADS_KEPT = 3.0
_HEAD_KINDS = (AuditKind.TREE_HEAD_EXCHANGED.value, AuditKind.PARTNER_LOG_INCONSISTENT.value)


# ---- what the operator does ---------------------------------------------------------------------


def queued_to(node: NodePort, kind: str, reference: str) -> list[Party]:
    with node.store.repository() as repo:
        return repo.queued_recipients(kind, reference)


def report_incident(node: NodePort, *, item_id: str, kind: str, description: str,
                    now: datetime | None = None,
                    actor: str = "operator") -> tuple[IncidentReport, list[Party]]:
    """Record a loss or compromise here and queue it to whoever provided the item."""
    at = now or now_utc()
    if kind not in INCIDENT_KINDS:
        raise MalformedInput(f"{kind!r} is not an incident kind", where="--kind",
                             expected=", ".join(INCIDENT_KINDS))
    report = handlers.report_incident(node.uow(), keys=node.keys, kind=kind,
                                      description=description, now=at, item_id=item_id,
                                      actor=actor)
    return report, queued_to(node, INCIDENT, report.reference)


def reclassify(node: NodePort, *, item_id: str, level: str, now: datetime | None = None,
               actor: str = "operator") -> tuple[ClassificationNotice, list[Party]]:
    """As originator, change an item's level and queue the signed notice to every holder."""
    at = now or now_utc()
    notice = handlers.change_classification(node.uow(), keys=node.keys,
                                            schemes=node.catalogue.schemes, item_id=item_id,
                                            new_level=level, now=at, actor=actor)
    return notice, queued_to(node, CLASSIFICATION, notice.digest())


def notice_rows(node: NodePort, kind: str | None = None,
                references: Collection[str] | None = None) -> list[dict[str, Any]]:
    with node.store.repository() as repo:
        rows = repo.notice_rows(kind, references)
    out = []
    for row in rows:
        for name in ("next_at", "queued_at", "delivered_at"):
            row[name] = iso(row[name]) if isinstance(row[name], datetime) else row[name]
        try:
            row["body"] = json.loads(row["body"])
        except (TypeError, ValueError):  # retyped on the host's disk: shown as stored
            row["body"] = f"unreadable: {row['body']!r}"
        out.append(row)
    return out


def pending(node: NodePort) -> int:
    with node.store.repository() as repo:
        return repo.notices_in(PENDING)


def incident_rows(node: NodePort, item_ids: Collection[str] | None = None
                  ) -> list[dict[str, Any]]:
    """Incidents reported here and received from partners, with where each was sent;
    ``item_ids``: only those about no item or about one of these, and only their notices,
    the others not read (the desk's, for the items its user may read)."""
    with node.store.repository() as repo:
        rows = repo.incident_records(item_ids)
    sent: dict[str, list[dict[str, Any]]] = {}
    for row in notice_rows(node, INCIDENT,
                           None if item_ids is None else [r["reference"] for r in rows]):
        sent.setdefault(row["reference"], []).append(
            {"to": row["recipient"], "status": row["status"],
             "attempts": row["attempts"], "last_error": row["last_error"]})
    out = []
    for r in rows:
        received = r["reported_by"] in PARTIES and r["reported_by"] != node.party
        out.append({"reference": r["reference"], "direction": "received" if received
                    else "reported", "kind": r["kind"], "item_id": r["item_id"],
                    "description": r["description"], "reported_by": r["reported_by"],
                    "notify": r["notify"], "at": iso(r["at"]), "seq": r["seq"],
                    "sent": sent.get(r["reference"], [])})
    return out


# ---- receiving ------------------------------------------------------------------------------


def accept_incident(node: NodePort, *, kind: str, item_id: str, description: str,
                    sender: Party, now: datetime, refusals: RefusalWindow,
                    bound: int | None = None,
                    window: timedelta | None = None) -> dict[str, Any]:
    """A holder's report about an item this node provided to it (Art. 17); ``bound``: the
    node's ``incidents_per_partner``, counted over ``window`` (``incident_window_hours``);
    ``refusals``: how many refusals go on record apart."""
    return notice_handlers.accept_incident(
        node.uow(), keys=node.keys, kind=kind, item_id=item_id, description=description,
        sender=sender, now=now, refusals=refusals,
        bound=PARTNER_ROWS["incidents_per_partner"] if bound is None else bound,
        window=window or timedelta(hours=PARTNER_ROWS["incident_window_hours"]))


def accept_classification_notice(node: NodePort, doc: Mapping[str, Any], sender: Party,
                                 originator_keys: Mapping[Party, Ed25519PublicKey],
                                 now: datetime, refusals: RefusalWindow,
                                 bound: int | None = None,
                                 window: timedelta | None = None) -> dict[str, Any]:
    """The originator's signed notice, from the party this node holds the item from;
    ``bound``: the node's ``classification_notices_per_partner``, counted over ``window``
    (``notice_window_hours``)."""
    return notice_handlers.accept_classification_notice(
        node.uow(), keys=node.keys, catalogue=node.catalogue, doc=doc, sender=sender,
        originator_keys=originator_keys, now=now, refusals=refusals,
        bound=PARTNER_ROWS["classification_notices_per_partner"] if bound is None else bound,
        window=window or timedelta(hours=PARTNER_ROWS["notice_window_hours"]))


# ---- tree heads -------------------------------------------------------------------------------


class LeafCache:
    """The log's Merkle levels, read once and then extended with what was appended.

    One per node, shared by the peer API's worker threads: two exchanges extending it at
    once would add the same leaves twice, and a proof read mid-extension would find a level
    not yet built, so each extends and proves under the lock."""

    def __init__(self) -> None:
        self.levels = MerkleLevels()
        self._lock = threading.Lock()

    def consistency(self, reader: AuditReader, since: int, size: int) -> list[bytes]:
        """The consistency proof from ``since`` to ``size``, the levels read up to it."""
        with self._lock:
            if self.levels.size < size:
                self.levels.extend(reader.leaf_hashes_from(self.levels.size))
            return self.levels.consistency_proof(since, size)


def head_for_partners(reader: AuditReader) -> TreeHead | None:
    """The log's newest head, synced to disk before a partner (or the dashboard) gets it
    (None: none signed yet). A log that cannot be synced refuses it: a partner holding a
    head that a power cut takes back would see this node as rolled back."""
    try:
        return reader.latest_head()
    except OSError as exc:
        raise Unavailable(
            f"this node cannot hand out its audit log's tree head now: the database's "
            f"write-ahead log could not be synced to disk ({exc}); its operator should "
            f"check that the node's folder and database files are readable by the node and "
            f"the disk is healthy; ask again later") from None


def head_with_proof(node: NodePort, since: int, cache: LeafCache | None = None) -> dict[str, Any]:
    """This node's latest head and a consistency proof from ``since`` (none if ``since`` is
    past the head: the asker then sees the log shrank)."""
    with node.store.reader() as reader:
        head = head_for_partners(reader)
        if head is None:
            raise MalformedInput("this node's log has no signed tree head yet", where="audit")
        if since > head.size:
            return {"head": head.to_json(), "consistency": None}
        path = (cache or LeafCache()).consistency(reader, since, head.size)
    return {"head": head.to_json(),
            "consistency": {"old_size": since, "path": hashes_to_json(path)}}


def parse_since(value: str) -> int:
    """The ``since`` of a tree-head exchange (the asker's recorded size of our log)."""
    if not value.isdigit() or len(value) > 16:
        raise MalformedInput(f"{value[:40]!r} is not a tree size", where="since",
                             expected="a non-negative integer")
    return int(value)


def head_events(repo: Repository) -> list[LoggedHead]:
    """The log's records of partners' heads, exchanged or found inconsistent, newest first."""
    return repo.head_records(_HEAD_KINDS)


class PartnersOf(Protocol):
    """What :func:`partner_heads` reads of a node or of the dashboard's view of one."""

    @property
    def party(self) -> Party: ...

    @property
    def catalogue(self) -> Catalogue: ...

    @property
    def store(self) -> Store: ...


def partner_heads(node: PartnersOf) -> list[dict[str, Any]]:
    """Per partner: its latest head seen and when; ``consistent`` is False once any of its
    heads failed a check (the evidence of a rewrite is never outweighed by later good heads),
    True if checked and never failed, None if never checked from this side.

    The partners are those the node's agreements name and those of its federation
    (``partners.json``, when the node's folder is known): a partner that left every
    agreement but whose log was once found rewritten must stay in sight (review18). Each
    one's few records are read by index (the dashboard asks on every poll: reading every
    head of the log cost 17 ms at 4,000 heads, and grew with the log)."""
    partners = sorted(({p for a in node.catalogue.agreements.values() for p in a.parties}
                       | _federation_of(getattr(node, "folder", None))) - {node.party})
    with _SEEN_LOCK:
        seen = dict(_SEEN.get(node.store, {}))
    rows: list[LoggedHead] = []
    with node.store.repository() as repo:
        newest = repo.newest_events(1)
        mark = int(newest[0][0]) if newest else 0
        if any(after > mark for after, _ in seen.values()):
            seen = {}  # a log shorter than what was read (restored under this store): anew
        since = min((seen.get(p, (0, []))[0] for p in partners), default=0)
        fresh = repo.newest_head_after(since) is not None
        for partner in partners:
            after, before = seen.get(partner, (0, []))
            kept = _few(list(before) + repo.partner_head_records(partner, after)) \
                if fresh else before
            seen[partner] = (mark, kept)
            rows += kept
    with _SEEN_LOCK:
        _SEEN.setdefault(node.store, {}).update(seen)
    return _partner_heads(rows)


def _federation_of(folder: Any) -> set[Party]:
    """The parties of the node's ``partners.json`` (none without a folder or the file; an
    unreadable file shows the agreements' partners still, and ``gsomia doctor`` names it)."""
    if folder is None:
        return set()
    try:
        found = Partners.load(Path(folder))  # parsed again only when its bytes change
    except GsomiaError:
        return set()
    return set(found.peers) if found is not None else set()


# Per store, per partner: the records kept (:func:`_few`) of the log up to a seq. A partner
# never heard from would otherwise cost a read of every head in the log on each poll; with
# this, only the heads logged since the last one.
_SEEN: weakref.WeakKeyDictionary[Any, dict[str, tuple[int, list[LoggedHead]]]] = \
    weakref.WeakKeyDictionary()
_SEEN_LOCK = threading.Lock()


def _few(rows: Sequence[LoggedHead]) -> list[LoggedHead]:
    """Of one partner's head records, those :func:`_partner_heads` reads (as
    ``partner_head_records`` returns them): every inconsistent one, the newest exchanged,
    and, if none was inconsistent, the newest found consistent."""
    unique = sorted({r.seq: r for r in rows}.values(), key=lambda r: -r.seq)
    exchanged = [r for r in unique if r.kind == AuditKind.TREE_HEAD_EXCHANGED.value]
    inconsistent = [r for r in unique if r.kind == AuditKind.PARTNER_LOG_INCONSISTENT.value]
    checked = [] if inconsistent else [r for r in exchanged
                                       if '"consistent":true' in r.details][:1]
    keep = {r.seq: r for r in (*inconsistent, *exchanged[:1], *checked)}
    return [keep[seq] for seq in sorted(keep, reverse=True)]


def _partner_heads(rows: Sequence[LoggedHead]) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: -r.seq):  # newest first
        try:
            details = json.loads(row.details)
        except ValueError:
            continue
        partner = details.get("partner")
        if not isinstance(partner, str):
            continue
        entry = found.setdefault(partner, {"partner": partner, "head": details.get("head"),
                                           "at": row.at, "seq": row.seq, "consistent": None,
                                           "checked_size": None, "checked_at": None,
                                           "inconsistencies": 0, "reason": None})
        size = (details.get("head") or {}).get("size")
        if row.kind == AuditKind.PARTNER_LOG_INCONSISTENT.value:
            entry["inconsistencies"] += 1
            if entry["consistent"] is not False:
                entry.update(consistent=False, reason=details.get("reason"),
                             checked_at=row.at, checked_size=size)
        elif details.get("consistent") is True and entry["consistent"] is None:
            entry.update(consistent=True, checked_at=row.at, checked_size=size)
    return [found[p] for p in sorted(found)]


def _recorded_base(repo: ShellReads, partner: Party) -> TreeHead | None:
    """The head of ``partner`` last found consistent: the next exchange's base. Read newest
    first by index, stopping at it (every head in the log was read and parsed). A record
    that cannot be read is passed over, as :func:`partner_check.held_head_of` does (one
    stopped the sender's every exchange with every partner)."""
    for row in repo.partner_heads_newest(partner, AuditKind.TREE_HEAD_EXCHANGED,
                                         '%"consistent":true%'):
        try:
            details = json.loads(row.details)
            if details.get("partner") == partner and details.get("consistent") is True:
                return TreeHead.from_json(details["head"])
        except (ValueError, KeyError, TypeError, AttributeError, MalformedInput):
            continue
    return None


# ---- the sender ----------------------------------------------------------------------------------


@dataclass
class NoticeReport:
    delivered: int = 0
    refused: int = 0
    failed: int = 0
    heads: int = 0
    inconsistent: int = 0


class NoticeSender:
    """Exchanges tree heads with partners; one ``step`` a pass (the notices go with the
    deliveries, by the one courier)."""

    def __init__(self, node: NodePort, *, clock: Clock = now_utc,
                 client: httpx.Client | None = None,
                 heads_every: float = HEADS_EVERY, heads_quiet: float = HEADS_QUIET,
                 batch: int = 64) -> None:
        self.node = node
        self.clock = clock
        self._client = client
        self.heads_every = heads_every
        self.heads_quiet = heads_quiet
        self.batch = batch
        self._next_heads = 0.0
        # Per partner: the own mark of the last exchange, when, and whether it was the
        # second at that mark (:meth:`exchange_heads`).
        self._sent_mark: dict[Party, tuple[int, float, bool]] = {}
        self._base: dict[Party, TreeHead | None] = {}
        self._flagged: dict[Party, bytes] = {}
        self._mark = -1
        self._errors: dict[Party, str] = {}

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = peer_client(self.node.folder, keepalive=HEADS_KEPT)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def step(self, *, heads: bool | None = None) -> NoticeReport:
        """Exchange heads when due (``heads`` forces or skips that). The notices themselves
        go with the deliveries, by their link's courier (:class:`gsomia.shell.exchange.Sender`)."""
        report = NoticeReport()
        partners = Partners.load(self.node.folder)
        if partners is None:
            self._next_heads = time.monotonic() + self.heads_every
            return report
        due = time.monotonic() >= self._next_heads if heads is None else heads
        if due:
            self._next_heads = time.monotonic() + self.heads_every
            self.exchange_heads(partners, report, force=bool(heads))
        return report

    # -- tree heads --

    def _own_mark(self) -> int:
        """The seq of this log's newest event other than tree-head records."""
        with self.node.store.repository() as repo:
            rows = repo.newest_events(64)
        found = next((int(seq) for seq, kind in rows if kind not in _HEAD_KINDS), None)
        # 64 head records in a row and nothing else: nothing new since the last look.
        self._mark = found if found is not None else self._mark
        return self._mark

    def exchange_heads(self, partners: Partners, report: NoticeReport,
                       force: bool = False) -> None:
        mark = self._own_mark()
        for code in partners.deliver_to:
            peer = partners.peers.get(code)
            if peer is None or code == self.node.party:
                continue
            last = self._sent_mark.get(code)
            quiet = last is not None and time.monotonic() - last[1] < self.heads_quiet
            if not force and last is not None and last[0] == mark and last[2] and quiet:
                continue
            try:
                verdict = self.exchange_with(peer)
            except Exception as exc:  # the partner is down or answered badly: next time
                report.failed += 1
                if self._errors.get(code) != repr(exc):  # say it once, not every pass
                    self._errors[code] = repr(exc)
                    print(f"gsomia notices: tree head exchange with {code}: {exc!r}",
                          file=sys.stderr, flush=True)
                continue
            self._errors.pop(code, None)
            # The partner answers with its head from before it recorded ours, so that record
            # (and whatever it committed as this exchange went) is in no head checked here.
            # One exchange more at the same mark, the next pass, checks it: without it, a
            # log that then fell quiet stayed unchecked past its last record until the
            # heads_quiet exchange (test_sender_crash's heads never settled, syncs20). That
            # one's own record is left for later, or the two nodes would exchange forever.
            settled = last is not None and last[0] == mark
            self._sent_mark[code] = (mark, time.monotonic(), settled)
            report.heads += 1
            if verdict is not None and not verdict.consistent:
                report.inconsistent += 1

    def base(self, partner: Party) -> TreeHead | None:
        if partner not in self._base:
            with self.node.store.repository() as repo:
                self._base[partner] = _recorded_base(repo, partner)
        return self._base[partner]

    def exchange_with(self, peer: Peer) -> HeadVerdict | None:
        """One exchange: post our head, judge theirs, record the verdict (audited)."""
        with self.node.store.reader() as reader:
            mine = reader.latest_head()
        if mine is None:
            return None
        previous = self.base(peer.party)
        since = previous.size if previous is not None else 0
        response = self.client.post(peer.url.rstrip("/") + "/peer/v1/tree-heads/",
                                    params={"since": str(since)},
                                    content=json.dumps(mine.to_json()))
        if response.status_code not in (200, 202):
            raise OSError(f"HTTP {response.status_code}: {response.text[:300]}")
        data = response.json()
        if isinstance(data, Mapping) and "head" in data:
            head = TreeHead.from_json(data["head"])
            proof_doc = data.get("consistency")
        else:  # a partner that answers with its bare head gives no proof
            head, proof_doc = TreeHead.from_json(data), None
        proof = None
        if isinstance(proof_doc, Mapping) and proof_doc.get("old_size") == since:
            proof = hashes_from_json(proof_doc.get("path"), where="consistency.path")
        verdict = judge_partner_head(previous, head, proof, peer.signing_public)
        self.record(peer.party, previous, head, verdict)
        return verdict

    def record(self, partner: Party, previous: TreeHead | None, head: TreeHead,
               verdict: HeadVerdict) -> None:
        if not verdict.consistent and self._flagged.get(partner) == head.signature:
            return  # the same bad head again: recorded once
        # A consistent head's record waits for no disk sync: lost at a power cut, the next
        # exchange asks from the base before it and the partner proves its log again, and
        # nothing is released on its strength (a head this node hands out is synced first).
        # An inconsistent head is evidence of a rewrite, which the partner need not repeat:
        # synced before it is reported.
        uow = self.node.store.uow(synced=not verdict.consistent)
        notice_handlers.record_head_exchange(uow, partner=partner, previous=previous,
                                             head=head, verdict=verdict, now=self.clock())
        if verdict.consistent:
            self._base[partner] = head
            self._flagged.pop(partner, None)
            return
        self._flagged[partner] = head.signature
        print(f"gsomia notices: {partner}'s log is inconsistent with its head of size "
              f"{verdict.from_size}: {verdict.reason}", file=sys.stderr, flush=True)

    def run(self, stop: threading.Event, idle: float = 0.05) -> None:
        """Until ``stop``: a pass when the next exchange of heads is due (every
        ``heads_every`` seconds), and none between (a pass did nothing else)."""
        last = ""
        while not stop.is_set():
            least = idle
            try:
                self.step()
            except Exception as exc:  # the loop outlives one bad pass
                least = 0.2
                if repr(exc) != last:
                    last = repr(exc)
                    print(f"gsomia notices: {last}", file=sys.stderr, flush=True)
            stop.wait(max(least, self._next_heads - time.monotonic()))


def start_notices(node: NodePort, *, heads_every: float = HEADS_EVERY
                  ) -> tuple[threading.Thread, threading.Event]:
    """The tree-head exchange on a daemon thread (``gsomia node run``)."""
    return in_background(NoticeSender(node, heads_every=heads_every), "gsomia-notices")

