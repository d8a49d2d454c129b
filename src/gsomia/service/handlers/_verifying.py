"""Verifying the log against its signed tree heads, and the operator accepting a head."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gsomia.core import crypto
from gsomia.core.audit import (
    ENTRIES,
    AuditEvent,
    AuditKind,
    LogProblem,
    LogVerdict,
    TreeHead,
    verify_log,
)
from gsomia.core.errors import MalformedInput
from gsomia.service.ports import AuditReader, UnitOfWork

_STORING = (AuditKind.ITEM_CREATED.value, AuditKind.RECEIVED.value)


def accept_head(uow: UnitOfWork, *, head: TreeHead, problems: Sequence[str],
                partners: Sequence[Mapping[str, Any]], now: datetime,
                actor: str = "operator") -> AuditEvent:
    """The operator accepts the latest head after checking it with the partners (the head
    kept outside the database was lost): on record, with what was checked."""
    with uow:
        event = uow.audit.append(
            AuditKind.HEAD_ACCEPTED, now, actor,
            details={"size": head.size, "root": head.root.hex(), "problems": list(problems),
                     "partners": [dict(p) for p in partners]})
        uow.commit()
    return event


HEAD_FILE_MISSING = (
    "the tree head kept outside the database is missing: a database restored from an older "
    "copy would not show. If you restored from a backup or lost the file, check the log "
    "with your partners (gsomia audit verify --partners), then run gsomia audit accept-head "
    "--node DIR --checked-with-partners, which records that you did")
# The courier retries a row at most this long after its last try (outbox.MAX_BACKOFF, 5 s,
# or a lease of outbox.LEASE_S, 60 s), so a next try much later than that was pushed
# away by hand: the delivery would silently never go.
NEXT_TRY_SLACK_S = 3600.0
# Events verify_audit reads beyond their records (one set lookup per event in its hot loop).
_WATCHED = frozenset({*_STORING, AuditKind.ITEMS_PUBLISHED.value,
                      AuditKind.DELIVERIES_QUEUED.value,
                      AuditKind.DELIVERY_REFUSED.value, AuditKind.NOTICES_SETTLED.value,
                      AuditKind.NODE_INITIALISED.value})


def verify_audit(reader: AuditReader, *, public_key: Ed25519PublicKey,
                 max_heads: int = 64, max_problems: int = 100,
                 now: datetime | None = None) -> LogVerdict:
    """Recompute the whole log from the store and check it against the signed tree heads.

    On top of :func:`gsomia.core.audit.verify_log` (events, items, heads): events after the
    latest signed head (``unsigned``), a stored frontier that disagrees with the log
    (``frontier``), every register row against the digest its event recorded
    (``record-modified``, ``record-missing``, ``record-unlogged``), the head kept outside the
    database (``head-file-missing``), the node's identity (``identity``), each delivery's
    and notice's state against the log (``delivery-state``, ``notice-state``), the outbox
    scan watermark (``register-state``), and values or schema objects of the wrong kind
    (``column-type``, ``schema``). ``now`` (the caller's clock) bounds a delivery's next try.
    """
    heads = reader.tree_heads(max_heads)
    latest_signed = reader.latest_head()
    if latest_signed is not None and all(h.size != latest_signed.size for h in heads):
        heads.append(latest_signed)
    extra: list[LogProblem] = []
    try:
        external = reader.external_head()
    except MalformedInput as exc:
        external = None
        extra.append(LogProblem("external-head", "tree-head.json", str(exc)))
    else:
        kept = reader.head_file()
        if external is None and kept is not None and latest_signed is not None:
            extra.append(LogProblem("head-file-missing", kept, HEAD_FILE_MISSING))
    if external is not None and all(h.to_json() != external.to_json() for h in heads):
        heads.append(external)
    expected: dict[int, dict[str, list[str]]] = {}
    # What the event storing each item says about it, by (seq, id, version): (id, version,
    # type, originator, added) of each item it stored (one, or a batch's).
    stored_by: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    refused: set[tuple[Any, Any, Any]] = set()  # (item, version, recipient) logged refused
    settled: dict[str, set[str]] = {"delivered": set(), "refused": set()}
    marks: list[Any] = []  # outbox scan watermarks, in log order
    identity: list[Any] = []

    def rows() -> Iterator[Mapping[str, Any]]:
        for row in reader.rows():
            details = row["details"]
            # Most events (reads) carry no records: keep their path to one dict lookup.
            if type(details) is dict and ("records" in details or row["kind"] in _WATCHED):
                records = details.get("records")
                if isinstance(records, Mapping) and type(row["seq"]) is int:
                    expected[row["seq"]] = {str(k): list(v) for k, v in records.items()
                                            if isinstance(v, list)}
                kind = row["kind"]
                if kind in _STORING and type(row["seq"]) is int:
                    said = (row["item_id"], row["item_version"], details.get("type"),
                            details.get("originator"), details.get("added_at"))
                    stored_by[(row["seq"], *said[:2])] = said
                elif kind == AuditKind.ITEMS_PUBLISHED.value and type(row["seq"]) is int:
                    sealed = ENTRIES in details
                    listed = details.get(ENTRIES if sealed else "items")
                    custody: list[str] = []
                    for e in listed if type(listed) is list else ():
                        if type(e) is dict and type(e.get("id")) is str \
                                and type(e.get("version")) is str:
                            stored_by[(row["seq"], e["id"], e["version"])] = (
                                e["id"], e["version"], e.get("type"),
                                details.get("originator"), details.get("added_at"))
                        # A sealed batch records each custody row in its item's entry.
                        if sealed and type(e) is dict:
                            custody.append(str(e.get("custody")))
                    if sealed:
                        expected[row["seq"]] = {"custody": custody}
                elif kind == AuditKind.DELIVERY_REFUSED.value:
                    refused.add((row["item_id"], row["item_version"],
                                 details.get("recipient")))
                    # The rest of one answer's refusals, on record together.
                    together = details.get("deliveries")
                    for d in together if type(together) is list else ():
                        if type(d) is list and len(d) == 2:
                            refused.add((d[0], d[1], details.get("recipient")))
                elif kind == AuditKind.NOTICES_SETTLED.value:
                    for outcome, keys in settled.items():
                        found = details.get(outcome)
                        if isinstance(found, list):
                            keys.update(str(k) for k in found)
                elif kind == AuditKind.DELIVERIES_QUEUED.value and "scanned_to" in details:
                    marks.append(details["scanned_to"])
                elif row["seq"] == 0 and kind == AuditKind.NODE_INITIALISED.value:
                    identity.append(details)
            yield row

    verdict = verify_log(rows(), heads, reader.item_record, public_key=public_key,
                         stored_items=reader.stored_items(), max_problems=max_problems)
    # After the pass over the events, which also picked out their values of the wrong kind.
    extra[:0] = reader.storage_problems()
    latest = latest_signed.size if latest_signed is not None else 0
    if verdict.size > latest:
        extra.append(LogProblem(
            "unsigned", f"seq {latest}-{verdict.size - 1}",
            f"events seq {latest} to {verdict.size - 1} are covered by no signed tree head "
            "(the node signs one in every commit): they were inserted behind its back"))
    acc = reader.accumulator()
    if acc is None or acc.size != verdict.size or acc.root() != verdict.root:
        held = "missing" if acc is None else f"records {acc.size} events"
        extra.append(LogProblem(
            "frontier", "audit_state",
            f"the node's Merkle frontier {held}, root "
            f"{acc.root().hex()[:16] if acc else '-'}…, but the log as stored has "
            f"{verdict.size} events, root {verdict.root.hex()[:16]}…"))
    extra.extend(_identity_problems(reader.identity(), identity, public_key))
    for meta in reader.item_meta():
        where = f"item {meta[0]}@{meta[1]}"
        said = stored_by.get((meta[5], meta[0], meta[1]))
        if said is None or said != meta[:5]:
            extra.append(LogProblem(
                "item-modified", where,
                f"{where} was modified: its stored type, originator, time added or event seq "
                f"({meta[5]}) differ from what the event that stored it recorded"))
    for row in reader.record_rows():
        wanted = expected.get(row.seq, {}).get(row.table)
        if wanted and row.digest in wanted:
            wanted.remove(row.digest)
        elif wanted is not None or row.seq in expected:
            extra.append(LogProblem(
                "record-modified", f"{row.table} {row.where}",
                f"{row.table} row {row.where} does not match what event seq {row.seq} "
                "recorded: it was modified"))
            if wanted:
                wanted.pop()  # this row stands for one the event recorded: not also missing
        else:
            extra.append(LogProblem(
                "record-unlogged", f"{row.table} {row.where}",
                f"{row.table} row {row.where} names event seq {row.seq}, which records no "
                "such row: it was inserted behind the log's back"))
    for seq, tables in sorted(expected.items()):
        for table, left in sorted(tables.items()):
            for d in left:
                extra.append(LogProblem(
                    "record-missing", f"{table} recorded by seq {seq}",
                    f"a {table} row recorded by event seq {seq} ({d[:16]}…) is missing or "
                    "was changed"))
    extra.extend(_delivery_problems(reader, refused, now))
    for key, status, where in reader.notice_states():
        if status == "pending" or (status in settled and key in settled[status]):
            continue
        extra.append(LogProblem(
            "notice-state", f"notices {where}",
            f"the notice {where} is marked {status!r}, but the log records no such outcome: "
            "a notice to a partner was dropped or its state rewritten"))
    mark = reader.scan_mark()
    logged_mark = marks[-1] if marks else None
    if mark is not None and mark != logged_mark and not (logged_mark is None and mark == -1):
        extra.append(LogProblem(
            "register-state", "exchange_state scanned_seq",
            f"the outbox scan watermark is {mark!r}, but the log last recorded "
            f"{logged_mark!r}: moved forward, it would skip deliveries silently"))
    problems = verdict.problems + tuple(extra[:max(0, max_problems - len(verdict.problems))])
    return LogVerdict(verdict.ok and not extra, verdict.size, verdict.root, problems,
                      verdict.truncated or len(verdict.problems) + len(extra) > max_problems)


def _identity_problems(rows: list[tuple[Any, Any]], logged: list[Any],
                       public_key: Ed25519PublicKey) -> list[LogProblem]:
    """The node_identity row must name the party event 0 names and the node's own key."""
    key = crypto.fingerprint(public_key)
    party_logged = logged[0].get("party") if logged else None
    if len(rows) == 1 and rows[0] == (party_logged, key):
        return []
    return [LogProblem(
        "identity", "node_identity",
        f"the node's identity row holds {rows!r}, but event 0 names party "
        f"{party_logged!r} and the node's key is {key[:16]}…: it was rewritten")]


def _delivery_problems(reader: AuditReader, refused: set[tuple[Any, Any, Any]],
                       now: datetime | None) -> Iterator[LogProblem]:
    """A delivery is pending, delivered with the partner's signed receipt (kept and logged),
    or refused with the partner's refusal logged; anything else hides a dropped delivery."""
    receipted = reader.obtained_receipts()
    for item_id, version, recipient, status, next_at, where in reader.deliveries():
        key = (item_id, version, recipient)
        if status == "pending":
            if not isinstance(next_at, datetime):
                reason = f"its next try {next_at!r} is not a time"
            elif now is not None and (next_at - now).total_seconds() > NEXT_TRY_SLACK_S:
                reason = f"its next try is set to {next_at.isoformat()}, far past any backoff"
            else:
                continue
        elif (status == "delivered" and key in receipted) or \
                (status == "refused" and key in refused):
            continue
        elif status == "delivered":
            reason = f"it is marked delivered, but no receipt of {recipient} is held for it"
        elif status == "refused":
            reason = "it is marked refused, but the log records no refusal by the partner"
        else:
            reason = f"its status is {status!r}"
        yield LogProblem("delivery-state", f"outbox {where}",
                         f"the delivery {where}: {reason}: a delivery was dropped or its "
                         "state rewritten behind the log's back")
