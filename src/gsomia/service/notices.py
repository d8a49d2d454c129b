"""Notices between partner nodes and what a node records of its partners: handlers.

The transport (:mod:`gsomia.shell.notices`, :mod:`gsomia.shell.peer_inbox`) carries bytes and
calls these; what a node accepts, refuses and records of a partner is decided here, one
unit of work each.

Accepting (:func:`accept_incident`, :func:`accept_classification_notice`). A node accepts an
incident only about an item it provided to the sender, and a notice only about an item it
holds from the sender; everything else (unsigned, forged, misaddressed, unknown item) is
refused and audited as ``notice-refused`` before the error is raised: one by one up to a
bound per partner and window, then as a count (:mod:`gsomia.service.refusals`). What is
accepted is passed on in the same commit (:mod:`gsomia.service.outbox`), never back to the sender.

Settling (:func:`settle_notices`). A notice the partner took (202) is ``delivered``, one it
refused for good ``refused`` (both on record, ``notices-settled``), any other outcome is
tried again after the one backoff (:func:`gsomia.core.outbox.backoff`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gsomia.core.agreements import Catalogue
from gsomia.core.audit import AuditKind, TreeHead, verify_tree_head
from gsomia.core.custody import INCIDENT_KINDS, ClassificationNotice, register_digest
from gsomia.core.errors import (
    GsomiaError,
    LimitReached,
    MalformedInput,
    PolicyDenied,
    ProofInvalid,
)
from gsomia.core.limits import PARTNER_ROWS
from gsomia.core.outbox import (
    CLASSIFICATION,
    CONSENT_REQUEST,
    FIRST_BACKOFF,
    INCIDENT,
    MAX_BACKOFF,
    definitive,
    next_try,
    not_now_after,
)
from gsomia.core.partner_heads import HeadVerdict
from gsomia.core.types import Party
from gsomia.service import handlers
from gsomia.service.ports import KeyStore, QueuedNotice, UnitOfWork
from gsomia.service.refusals import RefusalSummary, RefusalWindow

__all__ = ["FIRST_BACKOFF", "MAX_BACKOFF", "accept_classification_notice",
           "accept_incident", "record_head_exchange", "record_partner_head",
           "record_peer_refused", "record_refusal", "record_refusal_summaries",
           "settle_notices"]

DELIVERED, REFUSED = "delivered", "refused"


def _refuse(uow: UnitOfWork, kind: str, sender: Party, item_id: object, exc: GsomiaError,
            now: datetime, refusals: RefusalWindow) -> None:
    admitted, closed = refusals.admit(sender, kind, item_id, now)
    if not admitted and not closed:
        return  # counted: on record in the summary once the window closes
    reasons = list(exc.reasons) if isinstance(exc, PolicyDenied) else [str(exc)]
    details: dict[str, Any] = {"sender": sender, "notice": kind,
                               "reasons": [r[:500] for r in reasons[:10]]}
    if isinstance(exc, LimitReached):  # a partner at its bound: which one, for the operator
        details |= {"limit": exc.limit, "bound": exc.bound}
    try:
        with uow:
            _write_summaries(uow, closed, now)
            if admitted:
                uow.audit.append(AuditKind.NOTICE_REFUSED, now, sender,
                                 item_id=item_id[:300] if isinstance(item_id, str) and item_id
                                 else None, details=details)
            uow.commit()
    except BaseException:
        refusals.give_back(closed)  # not on record: counted again, never dropped
        raise


def record_refusal(uow: UnitOfWork, *, kind: str, sender: Party, item_id: object,
                   refused: GsomiaError, now: datetime, refusals: RefusalWindow) -> None:
    """A partner's message refused (``kind``: what it was), on record as ``refusals``
    allows: one by one up to its bound per partner and window, then counted."""
    _refuse(uow, kind, sender, item_id, refused, now, refusals)


def _write_summaries(uow: UnitOfWork, summaries: Sequence[RefusalSummary], now: datetime,
                     kind: AuditKind = AuditKind.NOTICE_REFUSED) -> None:
    for summary in summaries:
        uow.audit.append(kind, now, summary.sender, details=summary.details())


def record_refusal_summaries(uow: UnitOfWork, *, refusals: RefusalWindow,
                             now: datetime, everything: bool = False,
                             kind: AuditKind = AuditKind.NOTICE_REFUSED) -> int:
    """Put on record (as ``kind``: ``notice-refused``, or ``envelope-refused`` for a window
    of envelopes) the counts of refusals not written one by one, of the windows closed by
    ``now`` (``everything``: of all, as the node stops); how many summaries were written."""
    summaries = refusals.closed(None if everything else now)
    if summaries:
        try:
            with uow:
                _write_summaries(uow, summaries, now, kind)
                uow.commit()
        except BaseException:
            refusals.give_back(summaries)
            raise
    return len(summaries)


def accept_incident(uow: UnitOfWork, *, keys: KeyStore, kind: str, item_id: str,
                    description: str, sender: Party, now: datetime,
                    refusals: RefusalWindow,
                    bound: int = PARTNER_ROWS["incidents_per_partner"],
                    window: timedelta = timedelta(hours=PARTNER_ROWS["incident_window_hours"])
                    ) -> dict[str, Any]:
    """A holder's report about an item this node provided to it (Art. 17).

    At most ``bound`` reports are kept from one partner within ``window`` before ``now``
    (:class:`LimitReached` after, on record as any refusal, so bounded in the log too).
    Any text makes a new report, so without it a partner could make the node
    store rows without end; counted over a window, not the node's life, so a partner that
    reports for years is never refused a genuine report for those it made long ago. A
    refusal goes on record as ``refusals`` allows: one by one up to its bound, then counted."""
    text = f"reported by {sender}: {description}"[:4000]
    try:
        if kind not in INCIDENT_KINDS:
            raise MalformedInput(f"{kind!r} is not an incident kind", where="kind",
                                 expected=", ".join(INCIDENT_KINDS))
        with uow:
            provided = uow.repo.receipted([item_id], sender, "obtained")
            reports = uow.repo.incidents()
            duplicate = next((r.reference for r in reports
                              if (r.item_id, r.kind, r.reported_by, r.description)
                              == (item_id, kind, sender, text)), None)
            since = now - window
            kept = sum(r.reported_by == sender and r.at > since for r in reports)
        if kept >= bound and duplicate is None:
            raise LimitReached("incidents_per_partner", bound, f"{sender}'s incident report")
        if not provided:
            # Not held, or held but never given to the sender: the same answer for both.
            raise PolicyDenied((f"{keys.party} did not provide {item_id} to {sender}",))
        if duplicate is not None:
            return {"accepted": True, "duplicate": True, "reference": duplicate}
        report = handlers.report_incident(uow, keys=keys, kind=kind, description=text,
                                          now=now, item_id=item_id, actor=sender,
                                          came_from=sender)
    except GsomiaError as exc:
        _refuse(uow, INCIDENT, sender, item_id, exc, now, refusals)
        raise
    return {"accepted": True, "reference": report.reference}


def accept_classification_notice(uow: UnitOfWork, *, keys: KeyStore, catalogue: Catalogue,
                                 doc: Mapping[str, Any], sender: Party,
                                 originator_keys: Mapping[Party, Ed25519PublicKey],
                                 now: datetime, refusals: RefusalWindow,
                                 bound: int = PARTNER_ROWS["classification_notices_per_partner"],
                                 window: timedelta = timedelta(
                                     hours=PARTNER_ROWS["notice_window_hours"])
                                 ) -> dict[str, Any]:
    """The originator's signed notice, from the party this node holds the item from:
    re-mark every version to this party's equivalent level (Art. 4) and pass it on.

    At most ``bound`` notices of one originator from one partner are applied within
    ``window`` before ``now`` (:class:`LimitReached` after, on record as any refusal): each
    new signature is a new notice, stored, audited and passed on with the custody rows it
    re-marks, so an originator re-marking one item again and again, or a relay passing on all
    it is sent, would otherwise grow the node without end. Counted per originator, so under
    ``hub`` one originator re-marking a lot never uses up another's share of the relay's.
    The bound says "not now", never "never": the peer API answers it 429, the sender tries
    again later, and the notice is applied once the window has room. A notice already
    applied is answered as such at any count."""
    item_id = doc.get("item_id") if isinstance(doc, Mapping) else None
    try:
        notice = ClassificationNotice.from_json(doc)
        with uow:
            versions = uow.repo.item_versions(notice.item_id)
            applied = any(n.signature == notice.signature
                          for n in uow.repo.notices_for(notice.item_id))
            current = uow.repo.custody_of(notice.item_id, versions[-1].version)[-1] \
                if versions else None
            kept = 0 if applied else uow.repo.notices_from(sender, now - window,
                                                           originator=notice.originator)
        if current is None or current.provider != sender:
            raise PolicyDenied((f"{keys.party} holds no {notice.item_id} from {sender}",))
        key = originator_keys.get(notice.originator)
        if key is None:
            raise ProofInvalid(f"no key for originator {notice.originator}")
        if applied:
            return {"accepted": True, "duplicate": True}
        if kept >= bound:
            raise LimitReached("classification_notices_per_partner", bound,
                               f"{sender}'s classification notice of {notice.originator}'s items")
        remarked = handlers.apply_classification_notice(
            uow, keys=keys, catalogue=catalogue, notice=notice, originator_public=key,
            now=now, actor=sender, came_from=sender)
    except GsomiaError as exc:
        _refuse(uow, CLASSIFICATION, sender, item_id, exc, now, refusals)
        raise
    return {"accepted": True,
            "national_levels": sorted({r.national_label.level for r in remarked})}


def settle_notices(uow: UnitOfWork, *, outcomes: Sequence[tuple[QueuedNotice, int, str]],
                   now: datetime, waits: Mapping[int, float] | None = None
                   ) -> tuple[int, int, int]:
    """Each notice posted with the partner's HTTP status (0: no answer) and text; the
    (delivered, refused, to retry) counts. ``waits``: by row, the seconds the partner's
    ``Retry-After`` asked for (:func:`gsomia.core.outbox.retry_after`)."""
    updates: list[tuple[int, Mapping[str, Any]]] = []
    settled: dict[str, list[str]] = {}
    counts = {DELIVERED: 0, REFUSED: 0, "retry": 0}
    failed: list[str] = []  # consent requests the originator refused to take
    for notice, status, text in outcomes:
        if status == 202:
            updates.append((notice.row, {"status": DELIVERED, "delivered_at": now,
                                         "attempts": notice.attempts + 1,
                                         "last_error": None}))
            settled.setdefault(DELIVERED, []).append(
                register_digest("notices", notice.register()))
            counts[DELIVERED] += 1
        elif definitive(status):
            updates.append((notice.row, {"status": REFUSED, "attempts": notice.attempts + 1,
                                         "last_error": f"HTTP {status}: {text}"}))
            if notice.kind == CONSENT_REQUEST:
                # The originator read it and refused to take it: nothing will answer it.
                failed.append(notice.reference)
            settled.setdefault(REFUSED, []).append(
                register_digest("notices", notice.register()))
            counts[REFUSED] += 1
        else:
            updates.append((notice.row, {
                "attempts": notice.attempts + 1,
                "not_now": not_now_after(notice.not_now, status),
                "next_at": next_try(notice.attempts, now, status,
                                    (waits or {}).get(notice.row), not_now=notice.not_now),
                "last_error": (f"HTTP {status}: " if status else "") + text}))
            counts["retry"] += 1
    with uow:
        if settled:
            # A notice marked delivered or refused is on record, so one dropped behind the
            # log's back (marked delivered, never sent) shows in audit verify.
            uow.audit.append(AuditKind.NOTICES_SETTLED, now, "node",
                             details=dict(sorted(settled.items())))
        uow.outbox.update_notices(updates)
        for request_id in failed:  # only one still pending: an answer may have come first
            uow.repo.answer_consent_requests("", None, "failed", now, request_id=request_id)
        uow.commit()
    return counts[DELIVERED], counts[REFUSED], counts["retry"]


# ---- what a node records of its partners ----------------------------------------------------


def record_head_exchange(uow: UnitOfWork, *, partner: Party, previous: TreeHead | None,
                         head: TreeHead, verdict: HeadVerdict, now: datetime) -> None:
    """The verdict on a partner's head this node asked for: a consistent head is the next
    base (``tree-head-exchanged``), an inconsistent one evidence of a rewrite."""
    with uow:
        if verdict.consistent:
            uow.audit.append(AuditKind.TREE_HEAD_EXCHANGED, now, "node",
                             details={"partner": partner, "head": head.to_json(),
                                      "consistent": True, "from_size": verdict.from_size,
                                      "direction": "obtained"})
        else:
            uow.audit.append(AuditKind.PARTNER_LOG_INCONSISTENT, now, "node",
                             details={"partner": partner, "head": head.to_json(),
                                      "recorded": previous.to_json() if previous else None,
                                      "from_size": verdict.from_size,
                                      "reason": verdict.reason[:500]})
        uow.commit()


def record_partner_head(uow: UnitOfWork, *, sender: Party, head: TreeHead,
                        sender_key: Ed25519PublicKey, now: datetime) -> None:
    """A head a partner posted of its own log: kept once its signature verifies, and only
    when it differs from the newest head recorded of that partner (posting the same signed
    head again and again must not grow the log)."""
    verify_tree_head(head, sender_key)
    with uow:
        if _newest_head_of(uow, sender) == head.to_json():
            return
        uow.audit.append(AuditKind.TREE_HEAD_EXCHANGED, now, sender,
                         details={"partner": sender, "head": head.to_json()})
        uow.commit()


_HEAD_KINDS = (AuditKind.TREE_HEAD_EXCHANGED.value, AuditKind.PARTNER_LOG_INCONSISTENT.value)
_HEADS_READ = 1024


def _newest_head_of(uow: UnitOfWork, partner: Party) -> object:
    """The head (as JSON) of the newest event recording one of ``partner``'s heads among the
    newest ``_HEADS_READ``, or None. The few newest are read first (with a handful of
    partners the answer is there); the read stays bounded, so a head posted again after more
    than that many heads of others is recorded once more (one event per ``_HEADS_READ``
    recorded, where reading the whole log would cost each post a scan of it)."""
    for limit in (32, _HEADS_READ):
        rows = uow.repo.head_records(_HEAD_KINDS, limit)
        for row in rows:
            try:
                details = json.loads(row.details)
            except ValueError:
                continue
            if isinstance(details, dict) and details.get("partner") == partner:
                return details.get("head")
        if len(rows) < limit:
            break
    return None


def record_peer_refused(uow: UnitOfWork, *, issuer: str | None, details: Mapping[str, Any],
                        route: str, now: datetime,
                        refusals: RefusalWindow | None = None) -> None:
    """A client certificate that counts as no partner: recorded under the party whose CA
    issued it (that CA's key made it), or ``unknown-peer``; as ``refusals`` allows (one by
    one up to its bound per issuer and window, then counted by route in a summary), since
    whoever holds such a certificate can call in a loop."""
    actor = issuer or "unknown-peer"
    admitted, closed = refusals.admit(actor, route[:300], None, now) if refusals is not None \
        else (True, [])
    if not admitted and not closed:
        return  # counted: on record in the summary once the window closes
    try:
        with uow:
            _write_summaries(uow, closed, now, AuditKind.PEER_REFUSED)
            if admitted:
                uow.audit.append(AuditKind.PEER_REFUSED, now, actor,
                                 details={**details, "route": route[:300]})
            uow.commit()
    except BaseException:
        if refusals is not None:
            refusals.give_back(closed)
        raise
