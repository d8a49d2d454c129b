"""Proofs of an item's place in the log: made from the store, and checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gsomia.core import crypto
from gsomia.core.audit import (
    ENTRIES,
    ENTRIES_ROOT,
    ENTRY_COUNT,
    SEALED_KINDS,
    AuditEvent,
    AuditKind,
    TreeHead,
    batch_entries,
    entry_path,
    event_leaf_hash,
    hashes_from_json,
    hashes_to_json,
    inclusion_proof,
    verify_consistency,
    verify_entry,
    verify_inclusion,
    verify_tree_head,
)
from gsomia.core.errors import MalformedInput, PolicyDenied, ProofInvalid
from gsomia.core.types import iso
from gsomia.service.ports import AuditReader

PROOF_VERSION = "gsomia/audit-proof/v1"


def latest_head(reader: AuditReader) -> TreeHead:
    head = reader.latest_head()
    if head is None:
        raise MalformedInput("the log has no signed tree head", where="audit")
    return head


def prove(reader: AuditReader, *, public_key: Ed25519PublicKey, event: int | None = None,
          against: int | None = None, party_code: str | None = None,
          item: tuple[str, str | None] | None = None,
          whole_batch: bool = False) -> dict[str, Any]:
    """Inclusion of event ``event`` and/or consistency of the signed head of size ``against``
    with the latest signed head, as one JSON document anyone can check with
    :func:`check_proof` and the node's public key. ``item`` (id, version or None for its
    latest): the inclusion of the event that stored it, and its place in that event.

    A sealed batch leaf (it commits to its items by the Merkle root of their entries) is
    proved with its entries left out, and an item in it by its own entry
    and that entry's path to the root: nothing of the batch's other items is shown. An older
    batch leaf lists the whole batch in itself, so its proof cannot leave the others out:
    for ``item`` it is refused unless ``whole_batch`` (the operator's own use)."""
    found: tuple[int, str, str] | None = None
    read_of: tuple[str, str | None] | None = None
    if item is not None and event is not None and _sealed_read(reader.event(event)):
        # That the item was read by event ``event`` (a sealed read): its entry, alone.
        read_of, item = item, None
    if item is not None:
        found = reader.item_seq(*item)
        if found is None:
            raise MalformedInput(f"no item {item[0]}" + (f" version {item[1]}" if item[1]
                                                         else "") + " is held",
                                 where="item", expected="ID or ID@VERSION of a held item")
        if event is not None and event != found[0]:
            raise MalformedInput(f"the item was stored by event {found[0]}, not {event}",
                                 where="event_seq", expected=f"{found[0]}, or none")
        event = found[0]
    head = latest_head(reader)
    leaves = reader.leaf_hashes()
    if len(leaves) < head.size:
        raise ProofInvalid(f"the store holds {len(leaves)} events but the latest signed head "
                           f"covers {head.size}: run audit verify")
    doc: dict[str, Any] = {
        "version": PROOF_VERSION, "party": party_code,
        "public_key": crypto.b64u(crypto.raw_public(public_key)), "head": head.to_json()}
    if event is not None:
        if not 0 <= event < head.size:
            raise MalformedInput(f"no event {event} under the latest signed head",
                                 where="event_seq", expected=f"0 to {head.size - 1}")
        row = reader.event(event)
        if row is None:
            raise ProofInvalid(f"event {event} is missing from the store: run audit verify")
        path = inclusion_proof(leaves, event, head.size)
        stored = bytes.fromhex(row["leaf_hash"])
        verify_inclusion(stored, event, head.size, path, head.root)
        shown = {k: v for k, v in row.items() if k != "leaf_hash"}
        details = shown["details"]
        sealed = row["kind"] in SEALED_KINDS and isinstance(details, Mapping) \
            and ENTRIES in details
        if sealed:
            # What the leaf itself holds: the entries are proved one at a time, if at all.
            shown["details"] = {k: v for k, v in details.items() if k != ENTRIES}
        elif found is not None and not whole_batch and batch_entries(row["kind"], details):
            raise PolicyDenied((
                f"item {found[1]}@{found[2]} was stored by event {event}, a batch leaf "
                "of the earlier form, which lists every item of its batch: a proof of it "
                "would show the others. Pass --whole-batch to make it anyway (for your own "
                "records, not to hand to a partner)",))
        doc["inclusion"] = {"event": shown, "leaf_hash": stored.hex(), "index": event,
                            "tree_size": head.size, "path": hashes_to_json(path)}
        if found is not None:
            doc["inclusion"]["item"] = _item_in(AuditEvent.from_json(row), found[1], found[2])
        if read_of is not None:
            doc["inclusion"]["item"] = _read_in(AuditEvent.from_json(row), *read_of)
    if against is not None:
        old = reader.tree_head(against)
        if old is None:
            sizes = reader.head_sizes()
            near = [s for s in sizes if abs(s - against) <= 5][:10] or sizes[-5:]
            raise MalformedInput(f"no signed tree head of size {against}", where="against",
                                 expected="the size of a signed head, e.g. "
                                          + ", ".join(map(str, near)))
        from gsomia.core.audit import consistency_proof

        path = consistency_proof(leaves, old.size, head.size)
        verify_consistency(old.size, head.size, old.root, head.root, path)
        doc["consistency"] = {"old_head": old.to_json(), "path": hashes_to_json(path)}
    return doc


def _item_in(event: AuditEvent, item_id: str, version: str) -> dict[str, Any]:
    """Where ``event`` records the item: its entry in a batch leaf (``place``), or the
    event's own item (``place`` null); ProofInvalid if it does not record it at all."""
    if event.item_id == item_id and event.item_version == version \
            and event.content_hash is not None:
        return {"id": item_id, "version": version, "place": None,
                "content_hash": event.content_hash}
    details = event.details
    for entry in batch_entries(event.kind.value, details):
        if (entry.item_id, entry.version) == (item_id, version):
            found = {"id": item_id, "version": version, "place": entry.place,
                     "content_hash": entry.content_hash}
            if ENTRIES in details:  # sealed: the entry and its path to the leaf's root
                found.update(entry=details[ENTRIES][entry.place],
                             entries=len(details[ENTRIES]),
                             path=hashes_to_json(entry_path(details, entry.place)))
            return found
    raise ProofInvalid(f"event {event.seq} does not record item {item_id}@{version}: run "
                       "audit verify")


def _sealed_read(row: Mapping[str, Any] | None) -> bool:
    return row is not None and row["kind"] == AuditKind.ACCESS_GRANTED.value \
        and isinstance(row["details"], Mapping) and ENTRIES in row["details"]


def _read_in(event: AuditEvent, item_id: str, version: str | None) -> dict[str, Any]:
    """The entry of a sealed read that records the read of ``item_id`` (``version``, or the
    first version of it read), with its path to the leaf's root; MalformedInput if the read
    did not include it."""
    kind = event.kind.value
    entries = event.details[ENTRIES]
    for place, entry in enumerate(entries):
        if entry["id"] == item_id and version in (None, entry["version"]):
            return {"id": item_id, "version": entry["version"], "place": place,
                    "content_hash": None, "entry": dict(entry), "entries": len(entries),
                    "path": hashes_to_json(entry_path(event.details, place, kind))}
    raise MalformedInput(f"event {event.seq} is no read of item {item_id}"
                         + (f"@{version}" if version else ""), where="item",
                         expected="an item the read included")


def _sealed_item(event: AuditEvent, claimed: Mapping[str, Any]) -> dict[str, Any]:
    """The item a proof claims of a sealed batch leaf, once its entry is checked to be the
    one at its place under the leaf's ``entries_root``; ProofInvalid if it is not."""
    if ENTRIES in event.details:
        raise ProofInvalid("a proof of one item carries the batch leaf without its entries")
    entry, place, count = claimed.get("entry"), claimed.get("place"), claimed.get("entries")
    if not isinstance(entry, Mapping) or type(place) is not int or type(count) is not int:
        raise MalformedInput("not an item of a sealed batch", where="proof.inclusion.item",
                             expected="id, version, place, content_hash, entry, entries, path")
    kind = event.kind.value
    verify_entry(entry, place, count,
                 hashes_from_json(claimed.get("path"), where="proof.inclusion.item.path"),
                 event.details.get(ENTRIES_ROOT), event.details.get(ENTRY_COUNT), kind)
    return {"id": entry["id"], "version": entry["version"], "place": place,
            "content_hash": entry.get("content_hash") if kind == "items-published" else None,
            "entry": dict(entry), "entries": count, "path": claimed.get("path")}


@dataclass(frozen=True, slots=True)
class ProofCheck:
    head_size: int
    event: int | None = None
    kind: str | None = None
    old_size: int | None = None
    checks: tuple[str, ...] = field(default=())
    item: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "head_size": self.head_size, "event": self.event,
                "kind": self.kind, "old_size": self.old_size, "item": self.item,
                "checks": list(self.checks)}


def check_proof(doc: Any, public_key: Ed25519PublicKey) -> ProofCheck:
    """Check a :func:`prove` document offline; raise :class:`ProofInvalid` on any failure."""
    if not isinstance(doc, Mapping) or doc.get("version") != PROOF_VERSION:
        raise MalformedInput("not an audit proof", where="proof",
                             expected=f'a JSON document with "version": "{PROOF_VERSION}"')
    checks: list[str] = []
    head = TreeHead.from_json(doc.get("head"))  # type: ignore[arg-type]
    verify_tree_head(head, public_key)
    checks.append(f"tree head of size {head.size} is signed by key {head.key[:16]}…")
    event_no: int | None = None
    kind: str | None = None
    item: str | None = None
    inclusion = doc.get("inclusion")
    if inclusion is not None:
        if not isinstance(inclusion, Mapping):
            raise MalformedInput("not an inclusion proof", where="proof.inclusion")
        event = AuditEvent.from_json(inclusion.get("event", {}))
        leaf = event_leaf_hash(event)
        if inclusion.get("leaf_hash") not in (None, leaf.hex()):
            raise ProofInvalid(f"event {event.seq} does not hash to the leaf hash given")
        if inclusion.get("index") != event.seq or inclusion.get("tree_size") != head.size:
            raise ProofInvalid("inclusion proof names another index or tree size than the "
                               "event and the head")
        verify_inclusion(leaf, event.seq, head.size,
                         hashes_from_json(inclusion.get("path"), where="proof.inclusion.path"),
                         head.root)
        event_no, kind = event.seq, event.kind.value
        checks.append(f"event {event.seq} ({event.kind.value} at {iso(event.at)}) is leaf "
                      f"{event.seq} of that tree")
        claimed = inclusion.get("item")
        if claimed is not None:
            if not isinstance(claimed, Mapping) or type(claimed.get("id")) is not str \
                    or type(claimed.get("version")) is not str:
                raise MalformedInput("not an item", where="proof.inclusion.item",
                                     expected="id, version, place, content_hash")
            # Recomputed from the event the proof carries: a place or hash that the leaf
            # does not hold fails, whatever the document claims.
            try:
                recorded = (_sealed_item(event, claimed)
                            if event.kind.value in SEALED_KINDS
                            and ENTRIES_ROOT in event.details
                            else _item_in(event, claimed["id"], claimed["version"]))
            except MalformedInput as exc:
                raise ProofInvalid(f"event {event.seq} does not list its items as a node "
                                   f"writes them: {exc}") from None
            if recorded != dict(claimed):
                raise ProofInvalid(f"event {event.seq} records item {claimed['id']}@"
                                   f"{claimed['version']} otherwise than the proof claims")
            item = f"{claimed['id']}@{claimed['version']}"
            where = ("the event's item" if recorded["place"] is None
                     else f"entry {recorded['place']} of the event")
            checks.append(f"item {item} is {where}, content hash "
                          f"{recorded['content_hash'][:16]}…" if recorded["content_hash"]
                          else f"item {item} is {where} (a read of it)")
    old_size: int | None = None
    consistency = doc.get("consistency")
    if consistency is not None:
        if not isinstance(consistency, Mapping):
            raise MalformedInput("not a consistency proof", where="proof.consistency")
        old = TreeHead.from_json(consistency.get("old_head"))  # type: ignore[arg-type]
        verify_tree_head(old, public_key)
        verify_consistency(old.size, head.size, old.root, head.root,
                           hashes_from_json(consistency.get("path"),
                                            where="proof.consistency.path"))
        old_size = old.size
        checks.append(f"the signed tree of size {old.size} is a prefix of the tree of size "
                      f"{head.size}")
    if inclusion is None and consistency is None:
        raise MalformedInput("the proof proves nothing", where="proof",
                             expected="an inclusion or a consistency member")
    return ProofCheck(head.size, event_no, kind, old_size, tuple(checks), item)
