"""Publishing: an item (or a batch) labelled, stored and logged, with its custody."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from gsomia.core import crypto, limits
from gsomia.core.agreements import Catalogue
from gsomia.core.audit import ENTRIES, AuditKind
from gsomia.core.custody import (
    CreatedCustody,
    CustodyRecord,
    StoredItem,
    item_version,
    record_bytes,
    records_detail,
    stamp,
)
from gsomia.core.errors import MalformedInput, PolicyDenied, Unavailable
from gsomia.core.labels import SecurityLabel
from gsomia.core.outbox import ItemStored
from gsomia.core.policy import Person, decide_new_version
from gsomia.core.stix import (
    apply_marking,
    check_extension_properties,
    check_label_marking,
    check_spec_version,
    is_label_marking,
    label_marking,
)
from gsomia.core.types import Party
from gsomia.service import access
from gsomia.service.outbox import commit
from gsomia.service.ports import (
    BindingSigner,
    KeyStore,
    PendingSignatures,
    StixValidator,
    UnitOfWork,
)


@dataclass(frozen=True, slots=True)
class LabelRequest:
    """The label a publisher asks for, in its own national scheme."""

    level: str
    rel_to: tuple[Party, ...]
    purpose: str
    caveats: frozenset[str] = frozenset()
    policy: str | None = None
    category: str | None = None


def make_label(request: LabelRequest, *, originator: Party, catalogue: Catalogue,
               now: datetime) -> SecurityLabel:
    """The originator's label for ``request``, or MalformedInput saying what to fix.

    Every value must be one the catalogue knows (``Catalogue.vocabulary``): a label with an
    unknown trigraph or purpose would be stored, bound and shown as if it meant something."""
    label = SecurityLabel(originator, request.level, frozenset(request.rel_to),
                          request.purpose, frozenset(request.caveats), policy=request.policy,
                          category=request.category, created=now)
    # A refusal names the field (rel_to); the command line shows it as its flag.
    return catalogue.vocabulary.check(label, where=str)


@dataclass(frozen=True, slots=True)
class Published:
    item_id: str
    version: str
    seq: int
    marking: str
    national_marking: str
    binding_key: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.item_id, "version": self.version, "seq": self.seq,
                "marking": self.marking, "national_marking": self.national_marking,
                "binding_key": self.binding_key}


ALREADY_HELD = "this version is already held"
"""What a publisher's batch answers for a version the node holds (not stored again)."""

REFUSED_TO_PUBLISH = (
    "refused: you may publish only what you may read, as a new item or as a new version of "
    "an item you may read, under the label it already carries (only its originator changes "
    "a classification)")
"""The one answer a person gets for any object refused by the access rule: a label above
their clearance, an item they may not read, a label change. One text for all, so that a
refusal tells nothing about an item the person may not see (not its level, nor which of
these it was)."""


NOT_A_NEW_VERSION = (
    "not a version this node accepts: a new version of an item held here must come from its "
    "originator under the label the item carries here (a level changes only by the "
    "originator's classification notice)")
"""Why a partner's new version of a held item is refused. It names neither the item's
originator nor its label: the sender may know neither."""


def publish(uow: UnitOfWork, *, keys: KeyStore, catalogue: Catalogue,
            obj: Mapping[str, Any], label: LabelRequest, now: datetime,
            actor: str = "operator", validate: StixValidator | None = None,
            publisher: Person | None = None) -> Published:
    """Validate, label, bind, store and audit one STIX object (one commit)."""
    return publish_many(uow, keys=keys, catalogue=catalogue, entries=[(obj, label)], now=now,
                        actor=actor, validate=validate, publisher=publisher)[0]


def publish_many(uow: UnitOfWork, *, keys: KeyStore, catalogue: Catalogue,
                 entries: Sequence[tuple[Mapping[str, Any], LabelRequest]], now: datetime,
                 actor: str = "operator", validate: StixValidator | None = None,
                 publisher: Person | None = None, as_posted: bool = False,
                 one_leaf: bool = False, signer: BindingSigner | None = None,
                 skipped: dict[int, str] | None = None,
                 before_commit: Callable[[UnitOfWork, Sequence[Published]], None] | None
                 = None, stix_checked: bool = False,
                 kept_as_is: Callable[[bytes], str | None] | None = None) -> list[Published]:
    """Publish several objects in one commit: all are stored and audited, or none.

    Everything that can be refused (the object, the label, a version already held, a new
    version :func:`gsomia.core.policy.decide_new_version` refuses) is checked before
    anything is written. ``publisher`` is the person publishing (TAXII, dashboard), None for
    the node's operator: a person is refused with :data:`REFUSED_TO_PUBLISH` whatever the
    reason, the operator with the reasons.

    ``as_posted``: the objects already reference their label's marking-definition (TAXII),
    and are stored exactly as given, so they read back as posted; otherwise each is marked
    with the label as bound here. Either way, a gsomia label marking-definition may be
    published under the very label it carries (it is then an object like any other, seen
    only by those who may see that label); no other marking or extension definition may.

    ``one_leaf``: the batch is one ``items-published`` event listing every item (its id,
    version, type and content hash, which covers its object, label and binding) instead of
    an ``item-created`` and a ``label-bound`` event per item: the TAXII ingest path, where
    building and writing two leaves per item was a fifth of an object's cost. Each item is
    still checked by ``audit verify`` and proved alone (``audit prove --item``).

    ``signer``: signs the bindings elsewhere (the TAXII server's signing process), while
    this thread checks the next objects and reads what the batch is checked against; if it
    cannot sign, the batch raises :class:`Unavailable` and nothing is written. None: here.

    ``skipped``: a publisher's batch answered object by object (TAXII): an entry the
    publisher may not add (:data:`REFUSED_TO_PUBLISH`) or a version already held
    (:data:`ALREADY_HELD`) is put there under its index in ``entries``, decided inside the
    batch's transaction, and the others are published; without it either refuses the batch.

    ``before_commit``: called in the batch's transaction just before it commits, with what
    it publishes (``skipped`` filled by then), to write what must commit with the batch or
    not at all. Not called when nothing is written (every entry held or refused).

    ``stix_checked``: the caller has checked each object's depth, ``spec_version`` and
    ``x_gsomia_*`` properties already (TAXII: each object of an envelope on its own, so that
    a bad one is a failure of its own); they are not checked again. The size of each object's
    canonical bytes is checked here all the same.

    ``kept_as_is``: with ``skipped``, given the stored content of an item's current version,
    why no new version may replace it (None: one may); an entry it names is put in
    ``skipped`` with that reason. Asked in the batch's transaction, only of items held whose
    new version the publisher may otherwise add: what it says is never news to them.
    """
    signing: BindingSigner = signer if signer is not None else _Signer(keys.signing_key())
    labels: dict[LabelRequest, _LabelForm] = {}
    checked: list[tuple[dict[str, Any], bytes, _LabelForm, bytes, str, str]] = []
    pending: list[PendingSignatures] = []
    seen: set[tuple[str, str]] = set()
    try:
        prepared = _prepare(signing, checked, pending, labels, seen, keys=keys,
                            catalogue=catalogue, entries=entries, now=now,
                            validate=validate, publisher=publisher, as_posted=as_posted,
                            stix_checked=stix_checked)
        return _publish_prepared(uow, signing, checked, pending, prepared, keys=keys,
                                 catalogue=catalogue, now=now, actor=actor,
                                 publisher=publisher, one_leaf=one_leaf, skipped=skipped,
                                 before_commit=before_commit, kept_as_is=kept_as_is)
    finally:
        for chunk in pending:  # a batch refused before its signatures were taken
            chunk.abandon()


_SIGN_CHUNK = 25  # digests handed to the signer at a time, so it starts while we go on
# The first few go at once: the signer, not this thread, is then the one that takes longer,
# and each digest it is not yet given is time the batch waits for it at the end.
_FIRST_CHUNK = 5


def _prepare(signing: BindingSigner,
             checked: list[tuple[dict[str, Any], bytes, _LabelForm, bytes, str, str]],
             pending: list[PendingSignatures], labels: dict[LabelRequest, _LabelForm],
             seen: set[tuple[str, str]], *, keys: KeyStore, catalogue: Catalogue,
             entries: Sequence[tuple[Mapping[str, Any], LabelRequest]], now: datetime,
             validate: StixValidator | None, publisher: Person | None,
             as_posted: bool, stix_checked: bool) -> list[tuple[str, str, _LabelForm]]:
    """Check each entry and hand its binding digest to ``signing``; fills ``checked``
    (object as bound, its bytes, label form, digest, id, version) and ``pending``."""
    prepared: list[tuple[str, str, _LabelForm]] = []
    handed = 0  # digests handed to the signer so far
    last_request: LabelRequest | None = None
    last_form: _LabelForm | None = None
    for i, (obj, request) in enumerate(entries):
        if not isinstance(obj, Mapping):
            raise MalformedInput("not a JSON object", where=f"object {i}",
                                 expected="a STIX 2.1 object")
        # The label first: it is cheap to check, and a wrong level should not wait for STIX.
        # Objects of one batch mostly share a label request; each distinct one is made, and
        # put in its canonical forms, once (same request and ``now``: the same label).
        # The same request object as the entry before (a TAXII batch): its form, unhashed.
        form = last_form if request is last_request else labels.get(request)
        if form is None:
            form = labels[request] = _LabelForm.of(
                make_label(request, originator=keys.party, catalogue=catalogue, now=now),
                catalogue, now)
            # A person publishes only under a label they may read: else they would put
            # above their clearance what they could then neither see nor correct.
            if publisher is not None and not access.may_read(publisher, form.label,
                                                             catalogue.schemes):
                raise PolicyDenied((REFUSED_TO_PUBLISH,))
        last_request, last_form = request, form
        is_marking = is_label_marking(obj)
        if is_marking:
            check_label_marking(obj, form.label, catalogue.vocabulary, where=f"object {i}")
        elif obj.get("type") in ("marking-definition", "extension-definition"):
            raise MalformedInput(f"a {obj['type']} is not an item", where="object.type",
                                 expected="a STIX domain, relationship or cyber-observable "
                                          "object, or a gsomia label marking-definition")
        # Before anything walks the object recursively (validator, canonical JSON).
        if not stix_checked:
            limits.check_depth(obj, where=f"object {i}")
            check_spec_version(obj, where=f"object {i}")
            check_extension_properties(obj, where=f"object {obj.get('id', i)}")
        if validate is not None:
            validate(obj)
        marked = dict(obj) if as_posted or is_marking else apply_marking(obj, form.marking)
        content = crypto.canonical(marked, where="object")
        # What no partner would take is refused here, not retried by the sender for ever.
        limits.check_item_size(content, where=f"object {i}")
        item_id, stix_type = marked.get("id"), marked.get("type")
        if not isinstance(item_id, str) or not item_id or not isinstance(stix_type, str):
            raise MalformedInput("the object has no id or type", where="object",
                                 expected="a STIX object")
        version = item_version(marked)
        if (item_id, version) in seen:
            raise MalformedInput(f"{item_id} version {version} appears twice",
                                 where=f"object {i}", expected="each version once")
        seen.add((item_id, version))
        checked.append((marked, content, form,
                        crypto.binding_digest_of(form.canonical, content), item_id, version))
        prepared.append((item_id, version, form))
        if len(checked) - handed >= (_SIGN_CHUNK if handed else _FIRST_CHUNK):
            pending.append(signing.begin([c[3] for c in checked[handed:]]))
            handed = len(checked)
    if handed < len(checked):
        pending.append(signing.begin([c[3] for c in checked[handed:]]))
    return prepared


def _publish_prepared(uow: UnitOfWork, signing: BindingSigner,
                      checked: Sequence[tuple[dict[str, Any], bytes, _LabelForm, bytes, str,
                                              str]],
                      pending: list[PendingSignatures],
                      prepared: Sequence[tuple[str, str, _LabelForm]], *, keys: KeyStore,
                      catalogue: Catalogue, now: datetime, actor: str,
                      publisher: Person | None, one_leaf: bool,
                      skipped: dict[int, str] | None,
                      before_commit: Callable[[UnitOfWork, Sequence[Published]], None] | None,
                      kept_as_is: Callable[[bytes], str | None] | None = None
                      ) -> list[Published]:
    out: list[Published] = []
    with uow:
        # Whether the publisher may add to an item is decided before "already held" is
        # said: that answer would tell a person about a version they may not see.
        versions = uow.repo.versions_held(sorted({p[0] for p in prepared}))
        held = versions & {(p[0], p[1]) for p in prepared}
        # Custody rows are written only with their item's row, or for versions held: an id
        # with no version held has none, and a batch of new ids reads no custody at all.
        known = sorted({v[0] for v in versions})
        current = uow.repo.current_labels(known) if known else {}
        # Read in this transaction: no version stored meanwhile escapes the question.
        contents = uow.repo.current_contents(known) \
            if known and skipped is not None and kept_as_is is not None else {}
        kept: list[int] = []
        for n, (item_id, version, form) in enumerate(prepared):
            verdict = decide_new_version(form.label, current.get(item_id, []),
                                         catalogue.schemes, publisher=publisher)
            if skipped is not None:
                # Asked only of an item the publisher may read (every version held, as the
                # verdict requires), before "already held", as when it was asked first.
                why = kept_as_is(contents[item_id]) \
                    if verdict.permit and item_id in contents and kept_as_is is not None \
                    else None
                if why is not None:
                    skipped[n] = why
                    continue
                if not verdict.permit or (item_id, version) in held:
                    skipped[n] = ALREADY_HELD if verdict.permit else REFUSED_TO_PUBLISH
                    continue
            elif not verdict.permit:
                raise PolicyDenied((REFUSED_TO_PUBLISH,) if publisher is not None
                                   else (f"{item_id}: " + "; ".join(verdict.reasons),))
            # Versions of one new id within this batch share its first label too.
            current.setdefault(item_id, [form.label])
            kept.append(n)
        if held and skipped is None:
            item_id, version = sorted(held)[0]
            raise MalformedInput(
                f"{item_id} version {version} is already held", where="object.modified",
                expected="a new version (a later 'modified') to publish a change")
        if not kept:
            return out  # all held or refused: nothing to write, no signature to wait for
        # The custody records need no signature: made while the signer works.
        records = CreatedCustody(keys.party, now, [
            (prepared[n][0], prepared[n][1], prepared[n][2].label, prepared[n][2].canonical)
            for n in kept]) if one_leaf else None
        digests = records.digests() if records is not None else []
        # Nor do their rows: written now, under the seq the batch's one event takes below
        # (nothing else appends to this unit of work's log meanwhile), while the signer works.
        leaf_seq = uow.audit.size if records is not None else -1
        if records is not None:
            uow.repo.add_created_custody(records, seq=leaf_seq)
        # Only now wait for the signatures: the checks and reads above ran meanwhile. What
        # cannot be signed is refused whole, before anything is written (a refusal rolls
        # back the custody rows with the rest).
        signatures: list[bytes] = []
        while pending:
            signatures.extend(pending[0].result())
            pending.pop(0)
        if len(signatures) != len(checked):
            raise Unavailable("the signing process answered for "
                              f"{len(signatures)} of {len(checked)} bindings")
        bound: list[tuple[StoredItem, _LabelForm, crypto.Binding]] = []
        for n in kept:
            marked, content, form, digest, _, _ = checked[n]
            binding = crypto.Binding(crypto.SIGNATURE_ALGORITHM, signing.key, signatures[n],
                                     digest)
            bound.append((StoredItem.from_canonical(marked, content, form.label,
                                                    form.canonical, binding, now),
                          form, binding))
        _vouch_bound(uow, keys, signing.key, [(checked[n][3], signatures[n]) for n in kept])
        # Every item of the batch is added at the same instant (StoredItem normalises it).
        added_at = stamp(bound[0][0].added_at) if bound else ""
        stored: list[tuple[StoredItem, int]] = []
        custodies: list[tuple[CustodyRecord, int]] = []
        if one_leaf and bound:
            out = _publish_one_leaf(uow, bound, digests, keys.party, actor, now,
                                    added_at, stored, leaf_seq)
        else:
            for item, form, binding in bound:
                label = form.label
                custody = CustodyRecord(item.item_id, item.version, "created", keys.party,
                                        label, label, now,
                                        agreement=label.policy).knowing(item.label)
                chash = item.content_hash()
                created = uow.audit.append(
                    AuditKind.ITEM_CREATED, now, actor, item_id=item.item_id,
                    item_version=item.version, content_hash=chash,
                    details={"type": item.stix_type, "originator": keys.party,
                             "added_at": added_at,
                             "marking": form.english, "national_marking": form.national,
                             "records": records_detail(custody=[custody.digest()])})
                uow.audit.append(
                    AuditKind.LABEL_BOUND, now, "node", item_id=item.item_id,
                    item_version=item.version, content_hash=chash,
                    details={"key": binding.key, "digest": crypto.b64u(binding.digest),
                             "label": form.json})
                stored.append((item, created.seq))
                custodies.append((custody, created.seq))
                uow.events.append(ItemStored(item.item_id, item.version, label))
                out.append(Published(item.item_id, item.version, created.seq, form.english,
                                     form.national, binding.key))
        # One statement each for the batch's items and custody records.
        uow.repo.add_items(stored)
        uow.repo.add_custody_many(custodies)
        if before_commit is not None:
            before_commit(uow, out)
        commit(uow, now)
    return out


def _vouch_bound(uow: UnitOfWork, keys: KeyStore, key: str,
                 signed: Sequence[tuple[bytes, bytes]]) -> None:
    """The bindings this batch signed (digest, signature), kept in the node's remembered
    checks before the commit wakes its couriers: the seal of each finds its check there
    rather than verify again what this process has just signed (a third of the seal's CPU).
    Only under the node's own key (a signer holding another would be refused before; a
    binding under it is not this node's to vouch for), and only for the exact bytes
    signed: the seal recomputes them from what is stored, so a rewrite since is verified.
    The signing process's answers are not verified here: a signature it got wrong would be
    shipped over exactly the label and content this node decided and bound, and refused by
    the partner, which verifies every binding it receives."""
    if not signed:
        return
    raw = crypto.raw_public(keys.public_signing_key())
    if key != crypto.fingerprint(raw):
        return
    uow.remembered.vouch(
        crypto.SignatureCheck(raw, signature,
                              crypto.signed_message(crypto.BINDING_CONTEXT, digest))
        for digest, signature in signed)


def _publish_one_leaf(uow: UnitOfWork,
                      prepared: Sequence[tuple[StoredItem, _LabelForm, crypto.Binding]],
                      digests: Sequence[str],
                      party: Party, actor: str, now: datetime, added_at: str,
                      stored: list[tuple[StoredItem, int]], seq: int) -> list[Published]:
    """One ``items-published`` event for the whole batch, whose items' custody records
    (their digests ``digests``) are already written under ``seq``, the seq the event must
    take; fills ``stored`` with the rows to write under it."""
    # Sealed: the leaf commits to the entries by their Merkle root (each entry salted), so
    # a proof of one item shows that item alone; its label is fixed by its content hash.
    salts = os.urandom(16 * len(prepared)).hex()
    entries = [{"id": item.item_id, "version": item.version, "type": item.stix_type,
                "content_hash": item.content_hash(), "custody": digest,
                "salt": salts[32 * n:32 * n + 32]}
               for n, ((item, _, _), digest) in enumerate(zip(prepared, digests, strict=True))]
    event = uow.audit.append(
        AuditKind.ITEMS_PUBLISHED, now, actor,
        details={"originator": party, "added_at": added_at,
                 "key": prepared[0][2].key, ENTRIES: entries})
    if event.seq != seq:  # a bug, never input: the transaction is rolled back
        raise RuntimeError(f"the batch's event took seq {event.seq}, its custody rows {seq}")
    out = []
    for item, form, binding in prepared:
        stored.append((item, event.seq))
        uow.events.append(ItemStored(item.item_id, item.version, form.label))
        out.append(Published(item.item_id, item.version, event.seq, form.english,
                             form.national, binding.key))
    return out


@dataclass(frozen=True, slots=True)
class _LabelForm:
    """A label made for publishing, with the forms each item bound to it needs."""

    label: SecurityLabel
    json: dict[str, Any]
    canonical: bytes
    english: str
    national: str
    marking: dict[str, Any]

    @classmethod
    def of(cls, label: SecurityLabel, catalogue: Catalogue, now: datetime) -> _LabelForm:
        english = label.english_marking(catalogue.schemes)
        body = label.to_json()
        return cls(label, body, record_bytes(body), english, label.national_marking(),
                   label_marking(label, english, created=now))


class _Signer:
    """Binding signatures in this thread (the ``BindingSigner`` port, signing at once), with
    the key's fingerprint made once (it derives the public key: as dear as a signature)."""

    def __init__(self, key: Any) -> None:
        self.key = crypto.fingerprint(key)
        self._sign: Any = partial(crypto.sign, key)

    def begin(self, digests: Sequence[bytes]) -> PendingSignatures:
        return _Signed([self._sign(crypto.signed_message(crypto.BINDING_CONTEXT, d))
                        for d in digests])


@dataclass(frozen=True, slots=True)
class _Signed:
    signatures: list[bytes]

    def result(self) -> list[bytes]:
        return self.signatures

    def abandon(self) -> None:
        pass
