"""What a node does: one unit of work per use case, its audit events in the same commit.

Every handler takes ``now`` from its caller (the shell reads the clock) and fails closed: an
error before ``commit()`` leaves nothing behind, neither records nor events. A denial that
must be on record (an access refused, an item refused on receipt, a classification change
refused) is committed first and raised afterwards.

Use cases: :func:`initialise`, :func:`publish`, :func:`publish_many`, :func:`ingest`,
:func:`add_user`, :func:`read_item`, :func:`grant_consent`, :func:`refuse_consent`,
:func:`record_consent`, :func:`refuse_action` (a desk action refused),
:func:`change_classification`, :func:`apply_classification_notice`,
:func:`report_incident`, :func:`record_receipt`; and on the read side
:func:`verify_audit`, :func:`prove`, :func:`check_proof`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gsomia.core import crypto, limits, roles
from gsomia.core.agreements import Catalogue
from gsomia.core.audit import (
    ENTRIES,
    ENTRIES_ROOT,
    ENTRY_COUNT,
    SEALED_KINDS,
    AuditEvent,
    AuditKind,
    LogProblem,
    LogVerdict,
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
    verify_log,
    verify_tree_head,
)
from gsomia.core.custody import (
    ClassificationNotice,
    ConsentRecord,
    CustodyRecord,
    IncidentReport,
    NodeUser,
    ReceiptRecord,
    Revocation,
    StoredItem,
    item_version,
    record_bytes,
    records_detail,
    sign_classification_notice,
    stamp,
    token_hash,
    verify_classification_notice,
)
from gsomia.core.errors import MalformedInput, PolicyDenied, ProofInvalid, Unavailable
from gsomia.core.labels import Scheme, SecurityLabel
from gsomia.core.outbox import (
    ConsentObtained,
    IncidentRecorded,
    ItemStored,
    NoticeRecorded,
    ReceiptObtained,
)
from gsomia.core.policy import (
    Consent,
    Decision,
    Person,
    ReleaseRequest,
    StandingConsent,
    decide,
    decide_classification_change,
    decide_new_version,
)
from gsomia.core.stix import (
    apply_marking,
    check_extension_properties,
    check_label_marking,
    check_spec_version,
    check_warning_party,
    is_label_marking,
    label_marking,
)
from gsomia.core.types import Party, iso, party
from gsomia.service import access
from gsomia.service.outbox import commit
from gsomia.service.ports import (
    AuditReader,
    BindingSigner,
    KeyStore,
    PendingSignatures,
    SignatureChecks,
    StixValidator,
    UnitOfWork,
    checks_here,
)
from gsomia.service.refusals import RefusalSummary, RefusalWindow

PROOF_VERSION = "gsomia/audit-proof/v1"
_STORING = (AuditKind.ITEM_CREATED.value, AuditKind.RECEIVED.value)
_PURPOSE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


# ---- node ---------------------------------------------------------------------------------


def initialise(uow: UnitOfWork, *, keys: KeyStore, now: datetime,
               identity: Mapping[str, Any]) -> AuditEvent:
    """Open the log with the node's identity (party and key fingerprints) as event 0."""
    with uow:
        if uow.audit.size:
            raise MalformedInput("the database already holds a node's audit log",
                                 where="database", expected="an empty database for a new node")
        event = uow.audit.append(AuditKind.NODE_INITIALISED, now, "node",
                                 details={"party": keys.party, **identity})
        uow.commit()
    return event


# ---- publishing ---------------------------------------------------------------------------


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
        records = [CustodyRecord(prepared[n][0], prepared[n][1], "created", keys.party,
                                 prepared[n][2].label, prepared[n][2].label, now,
                                 agreement=prepared[n][2].label.policy
                                 ).knowing(prepared[n][2].canonical)
                   for n in kept] if one_leaf else []
        digests = [record.digest() for record in records]
        # Nor do their rows: written now, under the seq the batch's one event takes below
        # (nothing else appends to this unit of work's log meanwhile), while the signer works.
        leaf_seq = uow.audit.size if records else -1
        if records:
            uow.repo.add_custody_many([(record, leaf_seq) for record in records])
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
        # Every item of the batch is added at the same instant (StoredItem normalises it).
        added_at = stamp(bound[0][0].added_at) if bound else ""
        stored: list[tuple[StoredItem, int]] = []
        custodies: list[tuple[CustodyRecord, int]] = []
        if one_leaf and bound:
            out = _publish_one_leaf(uow, bound, records, digests, keys.party, actor, now,
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


def _publish_one_leaf(uow: UnitOfWork,
                      prepared: Sequence[tuple[StoredItem, _LabelForm, crypto.Binding]],
                      records: Sequence[CustodyRecord], digests: Sequence[str],
                      party: Party, actor: str, now: datetime, added_at: str,
                      stored: list[tuple[StoredItem, int]], seq: int) -> list[Published]:
    """One ``items-published`` event for the whole batch, whose items' custody records
    (and their digests) are ``records``, already written under ``seq``, the seq the event
    must take; fills ``stored`` with the rows to write under it."""
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


# ---- receiving ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Incoming:
    """An item as a partner delivered it: the object and label the originator bound, and
    (over the peer API) the envelope it came in, which :func:`ingest` signs a receipt for."""

    obj: Mapping[str, Any]
    label: SecurityLabel
    binding: crypto.Binding
    sender: Party
    consents: tuple[Consent, ...] = ()
    envelope_digest: bytes | None = None
    envelope: crypto.Envelope | None = None
    standing: tuple[StandingConsent, ...] = ()


@dataclass(frozen=True, slots=True)
class Ingested:
    """Outcome for one incoming item: ``stored``, ``duplicate`` (already held) or
    ``refused`` with reasons; ``receipt`` is the receipt signed for its envelope (not for a
    refusal)."""

    item_id: str
    version: str
    status: str
    reasons: tuple[str, ...] = ()
    agreement: str | None = None
    national_level: str | None = None
    seq: int | None = None
    receipt: crypto.Receipt | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.item_id, "version": self.version, "status": self.status,
                "reasons": list(self.reasons), "agreement": self.agreement,
                "national_level": self.national_level, "seq": self.seq}


def check_binding(incoming: Incoming,
                  originator_keys: Mapping[Party, Ed25519PublicKey]) -> str | None:
    """Why the originator's binding does not hold (None if it does). Fails closed."""
    public = originator_keys.get(incoming.label.originator)
    if public is None:
        return f"no public key known for originator {incoming.label.originator}"
    try:
        crypto.verify_binding(incoming.label.to_json(), incoming.obj, incoming.binding, public)
    except (ProofInvalid, MalformedInput) as exc:
        return f"binding of {incoming.label.originator}: {exc}"
    return None


def check_bindings(batch: Sequence[Incoming],
                   originator_keys: Mapping[Party, Ed25519PublicKey]) -> list[str | None]:
    """:func:`check_binding` for each item, in order."""
    return [check_binding(i, originator_keys) for i in batch]


def ingest(uow: UnitOfWork, *, keys: KeyStore, catalogue: Catalogue,
           batch: Sequence[Incoming], originator_keys: Mapping[Party, Ed25519PublicKey],
           now: datetime) -> list[Ingested]:
    """Receive a batch of items in one commit.

    Each item must carry a binding by its originator that verifies, and this node's own copy
    of the release policy must permit the sender to release it here (a node refuses what the
    sender had no right to send). Accepted items are re-marked to this node's equivalent
    level (Art. 4), stored with a custody record and audited; refused ones are audited with
    their reasons; versions already held are reported as duplicates and change nothing.
    One commit (one sync, one signed head) serves the whole batch.

    An item that came in an envelope gets a receipt signed for that envelope, stored or
    duplicate (a sender that lost our answer resends). The receipt given is recorded once
    per (item, version, sender), in the commit that stores the item (its ``received`` event
    records both), so a resend is answered but never recorded twice.
    """
    verdicts = screen_incoming(batch, keys=keys, catalogue=catalogue,
                               originator_keys=originator_keys, now=now)
    with uow:
        out = ingest_into(uow, keys=keys, catalogue=catalogue, verdicts=verdicts, now=now)
        commit(uow, now)
    return out


Verdict = tuple[Incoming, str, str, str | None, Decision | None, StoredItem | None]


def screen_incoming(batch: Sequence[Incoming], *, keys: KeyStore, catalogue: Catalogue,
                    originator_keys: Mapping[Party, Ed25519PublicKey],
                    now: datetime, checks: SignatureChecks = checks_here) -> list[Verdict]:
    """The checks of :func:`ingest` that need no store (run before the write lock).

    The originators' binding signatures of the whole batch go to ``checks`` at once (another
    process, while this one decides the releases); an item whose signature does not verify
    is refused, whatever its decision (fail closed)."""
    screened: list[tuple[Incoming, str, str, str | None, StoredItem | None]] = []
    signed: list[tuple[int, crypto.SignatureCheck]] = []
    for incoming in batch:
        item_id = str(incoming.obj.get("id", ""))
        version = _version(incoming.obj)
        problem: str | None = None
        item: StoredItem | None = None
        public = originator_keys.get(incoming.label.originator)
        content = b""
        try:
            # Bounds first: they decide whether the object may be walked at all.
            limits.check_depth(incoming.obj, where="object")
            check_spec_version(incoming.obj, where="object")
            # What the originator should never have published is refused like any bad item.
            check_extension_properties(incoming.obj, where=f"object {item_id}")
            check_warning_party(incoming.obj, incoming.label.originator,
                                where=f"object {item_id}")
            content = crypto.canonical(incoming.obj, where="content")
            limits.check_item_size(content, where="content")
        except MalformedInput as exc:
            problem = str(exc)
        if problem is None and public is None:
            problem = f"no public key known for originator {incoming.label.originator}"
        elif problem is None and public is not None:
            # The bytes bound are the bytes stored: canonicalise once for both.
            try:
                label_bytes = record_bytes(incoming.label.to_json())
                check = crypto.binding_check(label_bytes, content, incoming.binding, public)
                item = StoredItem.from_canonical(incoming.obj, content, incoming.label,
                                                 label_bytes, incoming.binding, now)
                signed.append((len(screened), check))
            except (ProofInvalid, MalformedInput) as exc:
                problem = f"binding of {incoming.label.originator}: {exc}"
        screened.append((incoming, item_id, version, problem, item))
    answers = checks.submit([c for _, c in signed])
    verdicts: list[Verdict] = []
    for incoming, item_id, version, problem, item in screened:
        if problem is not None:
            verdicts.append((incoming, item_id, version, problem, None, None))
            continue
        decision = decide(ReleaseRequest(item_id, incoming.label, incoming.sender, keys.party,
                                         now, incoming.consents, incoming.standing), catalogue)
        verdicts.append((incoming, item_id, version,
                         None if decision.permit else "; ".join(decision.reasons), decision,
                         item))
    verified = answers()
    if len(verified) != len(signed):
        verified = [False] * len(signed)  # an answer that does not add up verifies nothing
    for (n, _), good in zip(signed, verified, strict=True):
        if not good:
            incoming, item_id, version = verdicts[n][:3]
            verdicts[n] = (incoming, item_id, version,
                           f"binding of {incoming.label.originator}: "
                           f"{crypto.BINDING_SIGNATURE_FAILS}", None, None)
    return verdicts


def ingest_into(uow: UnitOfWork, *, keys: KeyStore, catalogue: Catalogue,
                verdicts: Sequence[Verdict], now: datetime,
                window: RefusalWindow | None = None,
                summaries: list[RefusalSummary] | None = None) -> list[Ingested]:
    """Store what :func:`screen_incoming` let through, inside the caller's unit of work
    (not committed): the decisions needing the store, custody, receipts given, audit.

    ``window``: how many refused items of a sender go on record one by one (a partner's
    own signature makes an envelope verify, whatever the item it seals); the rest are
    counted, and the summaries of the windows this closed are written and added to
    ``summaries`` (to give back if the commit fails). None: every one."""
    verdicts = list(verdicts)
    out: list[Ingested] = []
    signer = keys.signing_key() if any(v[0].envelope is not None for v in verdicts) \
        else None
    held = uow.repo.held_versions([(v[1], v[2]) for v in verdicts if v[3] is None])
    # A partner's new version of an item held here must keep its originator and its
    # label as marked here (a version already held is a duplicate, checked below): an
    # item is re-marked only by its originator's signed classification notice.
    current = uow.repo.current_labels(sorted({v[1] for v in verdicts if v[3] is None}))
    national_labels: dict[int, SecurityLabel] = {}  # made once, checked here, stored below
    for n, (incoming, item_id, version, problem, verdict, _) in enumerate(verdicts):
        if problem is not None or verdict is None or (item_id, version) in held:
            continue
        marked = national_labels[n] = incoming.label.remarked(
            keys.party, verdict.recipient_level or incoming.label.level)
        change = decide_new_version(marked, current.get(item_id, []), catalogue.schemes)
        if not change.permit:
            verdicts[n] = (incoming, item_id, version, NOT_A_NEW_VERSION, None, None)
        else:
            current.setdefault(item_id, [marked])
    items: list[tuple[StoredItem, int]] = []
    custody: list[tuple[CustodyRecord, int]] = []
    given: set[tuple[str, str, str]] = set()  # (item, version, sender) recorded here
    receipts: list[tuple[ReceiptRecord, int]] = []
    for n, (incoming, item_id, version, problem, verdict, stored) in enumerate(verdicts):
        if problem is not None or verdict is None or stored is None:
            reasons = (problem or "refused",)
            admitted, closed = (True, []) if window is None else \
                window.admit(incoming.sender, "item", item_id, now)
            for summary in closed:
                uow.audit.append(AuditKind.ENVELOPE_REFUSED, now, summary.sender,
                                 details=summary.details())
            if summaries is not None:
                summaries.extend(closed)
            seq = None
            if admitted:
                seq = uow.audit.append(
                    AuditKind.ENVELOPE_REFUSED, now, incoming.sender,
                    item_id=item_id or None, item_version=version if item_id else None,
                    details={"sender": incoming.sender, "reasons": list(reasons)}).seq
            out.append(Ingested(item_id, version, "refused", reasons, seq=seq))
            continue
        decision = verdict
        receipt = given_record = None
        if incoming.envelope is not None and signer is not None:
            receipt = crypto.make_receipt(incoming.envelope, received_at=now, key=signer,
                                         digest=incoming.envelope_digest)
            given_record = ReceiptRecord(item_id, version, incoming.sender, "given",
                                         receipt.to_json(), now)
        if (item_id, version) in held:
            once = (item_id, version, incoming.sender)
            if given_record is not None and once not in given and not any(
                    r.direction == "given" and r.peer == incoming.sender
                    and r.version == version for r in uow.repo.receipts_for(item_id)):
                # Held from another path or sender: this sender's first receipt.
                event = uow.audit.append(
                    AuditKind.RECEIPT, now, "node", item_id=item_id, item_version=version,
                    details={"peer": incoming.sender, "direction": "given",
                             "records": records_detail(receipts=[given_record.digest()])})
                uow.repo.add_receipt(given_record, seq=event.seq)
            given.add(once)
            out.append(Ingested(item_id, version, "duplicate", agreement=decision.agreement,
                                national_level=decision.recipient_level, receipt=receipt))
            continue
        held.add((item_id, version))
        level = decision.recipient_level or incoming.label.level
        national = national_labels.get(n) or incoming.label.remarked(keys.party, level)
        record = CustodyRecord(item_id, version, "received", keys.party, incoming.label,
                               national, now, provider=incoming.sender,
                               agreement=decision.agreement,
                               envelope_digest=incoming.envelope_digest
                               ).knowing(stored.label)
        event = uow.audit.append(
            AuditKind.RECEIVED, now, incoming.sender, item_id=item_id,
            item_version=version, content_hash=stored.content_hash(),
            details={"sender": incoming.sender, "type": stored.stix_type,
                     "originator": stored.originator, "added_at": stamp(stored.added_at),
                     "agreement": decision.agreement, "binding_key": incoming.binding.key,
                     "national_level": level,
                     "records": records_detail(
                         custody=[record.digest()],
                         receipts=[given_record.digest()] if given_record else [])})
        items.append((stored, event.seq))
        custody.append((record, event.seq))
        uow.events.append(ItemStored(item_id, version, incoming.label, incoming.sender))
        if given_record is not None:
            receipts.append((given_record, event.seq))
            given.add((item_id, version, incoming.sender))
        out.append(Ingested(item_id, version, "stored", decision.reasons,
                            decision.agreement, level, event.seq, receipt))
    uow.repo.add_items(items)
    uow.repo.add_custody_many(custody)
    uow.repo.add_receipts(receipts)
    return out


def _version(obj: Mapping[str, Any]) -> str:
    return item_version(obj)


# ---- people and access --------------------------------------------------------------------


def add_user(uow: UnitOfWork, *, keys: KeyStore, schemes: Mapping[Party, Scheme], name: str,
             clearance: str, need_to_know: Iterable[str], token: str, now: datetime,
             actor: str = "operator", purposes: Collection[str] | None = None,
             role: str = "reader", appointer: NodeUser | None = None) -> NodeUser:
    """Register a person with a clearance in the node's scheme and need-to-know purposes.

    ``token`` is the secret the shell drew; only its hash is stored. ``purposes``: those the
    agreements know (``Catalogue.vocabulary.purposes``), which the operator's commands pass;
    a misspelt need-to-know would otherwise quietly open nothing. ``role``: what the person
    may do at the dashboard's desk (:mod:`gsomia.core.roles`). ``appointer``: the user adding
    them from the desk (None: the node's host), refused (:class:`PolicyDenied`) unless an
    admin appointing within their own clearance, need-to-know and role.
    """
    role = roles.parse_role(role)
    if not name or not name.strip() or len(name) > 100 or any(c.isspace() for c in name):
        raise MalformedInput(f"{name!r} is not a user name", where="name",
                             expected="1 to 100 characters without spaces")
    scheme = schemes.get(keys.party)
    if scheme is None:
        raise MalformedInput(f"no classification scheme for {keys.party}", where="party")
    scheme.level(clearance, where="clearance")
    needed = frozenset(p.strip() for p in need_to_know if p.strip())
    if not needed:
        raise MalformedInput("no need-to-know given", where="need_to_know",
                             expected="one or more purposes such as dprk-missile")
    for p in sorted(needed):
        if not _PURPOSE.match(p):
            raise MalformedInput(f"{p!r} is not a purpose", where="need_to_know",
                                 expected="purpose codes such as dprk-missile")
        if purposes is not None and p not in purposes:
            raise MalformedInput(f"{p!r} is not a purpose of any agreement",
                                 where="need_to_know",
                                 expected="one or more of " + ", ".join(sorted(purposes)))
    if len(token) < 32:
        raise MalformedInput("token too short", where="token", expected="32 or more characters")
    if appointer is not None:
        allowed = access.acting(appointer.role, roles.Action.USER_ADD)
        problem = None if allowed.permit else allowed.reason
        problem = problem or roles.appointment_problem(
            appointer.person(), appointer.role, clearance=clearance, need_to_know=needed,
            role=role, schemes=schemes)
        if problem is not None:
            raise PolicyDenied((problem,))
    user = NodeUser(name, keys.party, clearance, needed, token_hash(token), now, role)
    with uow:
        if uow.repo.user_named(name) is not None:
            raise MalformedInput(f"user {name!r} already exists", where="name",
                                 expected="a new name")
        event = uow.audit.append(
            AuditKind.USER_ADDED, now, actor,
            details={**user.public_json(), "records": records_detail(users=[user.digest()])})
        uow.repo.add_user(user, seq=event.seq)
        uow.commit()
    return user


def revoke_user(uow: UnitOfWork, *, name: str, now: datetime,
                actor: str = "operator") -> Revocation:
    """Withdraw a user's token: every interface refuses it from this commit on.

    The user stays in the register (their past reads remain attributable), marked revoked.
    """
    with uow:
        user = uow.repo.user_named(name)
        if user is None:
            raise MalformedInput(f"no user {name!r} on this node", where="name",
                                 expected="the name of a registered user (gsomia user list)")
        if name in uow.repo.revoked_names():
            raise MalformedInput(f"the token of {name!r} is already revoked", where="name",
                                 expected="a user whose token is active")
        revocation = Revocation(name, user.token_hash, actor, now)
        event = uow.audit.append(
            AuditKind.USER_REVOKED, now, actor,
            details={"name": name, "revoked_at": stamp(now),
                     "records": records_detail(revocations=[revocation.digest()])})
        uow.repo.add_revocation(revocation, seq=event.seq)
        uow.commit()
    return revocation


@dataclass(frozen=True, slots=True)
class FailedAuthentications:
    """Failed authentications of one source against one account through one interface,
    counted over ``first``..``last`` (``throttled``: of them, refused unchecked because the
    source or account was being slowed down)."""

    source: str
    account: str | None
    interface: str
    failures: int
    throttled: int
    first: datetime
    last: datetime

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "account": self.account, "interface": self.interface,
                "failures": self.failures, "throttled": self.throttled,
                "first": stamp(self.first), "last": stamp(self.last)}


def record_failed_authentications(uow: UnitOfWork, *, counts: Sequence[FailedAuthentications],
                                  now: datetime) -> None:
    """Audit failed sign-ins and bad tokens, one event per (source, account, interface)
    count, all in one commit. The caller aggregates, so a flood adds few events."""
    if not counts:
        return
    with uow:
        for c in counts:
            uow.audit.append(AuditKind.AUTHENTICATION_FAILED, now, c.source,
                             details=c.to_json())
        uow.commit()


@dataclass(frozen=True, slots=True)
class Reading:
    """A granted read: the item, its custody as held here, the decision, who read it."""

    item: StoredItem
    custody: CustodyRecord
    decision: Decision
    user: NodeUser
    seq: int


def read_item(uow: UnitOfWork, *, schemes: Mapping[Party, Scheme], token: str, item_id: str,
              version: str | None = None, now: datetime) -> Reading:
    """Art. 7: a person reads an item only with clearance and need-to-know; always audited.

    Raises :class:`PolicyDenied` (after committing the denial to the log) when refused. An
    item the person may not read and an item not held get the same answer, word for word
    (:func:`not_readable`); the log keeps the true reasons.
    """
    what = f"{item_id}" + (f" version {version}" if version else "")
    with uow:
        user = uow.repo.user_by_token(token_hash(token))
        if user is None:
            uow.audit.append(AuditKind.ACCESS_DENIED, now, "unknown", item_id=item_id or None,
                             item_version=version if item_id else None,
                             details={"reasons": ["no user holds this token"]})
            uow.commit()
            raise PolicyDenied(("no user holds this token",))
        item = uow.repo.get_item(item_id, version)
        if item is None:
            uow.audit.append(AuditKind.ACCESS_DENIED, now, user.name, item_id=item_id or None,
                             item_version=version if item_id else None,
                             details={"reasons": [f"{what} is not held here"]})
            uow.commit()
            raise PolicyDenied((not_readable(what),))
        custody = uow.repo.custody_of(item.item_id, item.version)
        if not custody:
            raise ProofInvalid(f"{item.item_id} version {item.version} has no custody record")
        current = custody[-1]
        decision = access.reading(user.person(), current.national_label, schemes)
        kind = AuditKind.ACCESS_GRANTED if decision.permit else AuditKind.ACCESS_DENIED
        event = uow.audit.append(
            kind, now, user.name, item_id=item.item_id, item_version=item.version,
            content_hash=item.content_hash() if decision.permit else None,
            details={"reasons": list(decision.reasons),
                     "marking": current.national_label.national_marking(),
                     "clearance": user.clearance})
        uow.commit()
    if not decision.permit:
        raise PolicyDenied((not_readable(what),))
    return Reading(item, current, decision, user, event.seq)


def not_readable(what: str) -> str:
    """The one answer to a read of an item that is not held or that the reader may not read:
    saying which, or why (a level, a purpose), would tell what the reader may not know."""
    return f"no item {what} that you may read is held here"


# ---- consents, classification changes, incidents, receipts ---------------------------------


def grant_consent(uow: UnitOfWork, *, keys: KeyStore, item_id: str, recipient: Party,
                  now: datetime, actor: str = "operator") -> crypto.Consent:
    """As originator, consent in writing to the release of ``item_id`` to ``recipient``."""
    recipient = party(recipient, where="recipient")
    with uow:
        item = uow.repo.get_item(item_id)
        if item is None:
            raise MalformedInput(f"{item_id} is not held here", where="item")
        if item.originator != keys.party:
            raise PolicyDenied((f"{item_id} originated at {item.originator}; only the "
                                "originator consents to a release to a third party",))
        consent = crypto.grant_consent(item_id=item_id, originator=keys.party,
                                       recipient=recipient, granted_at=now,
                                       key=keys.signing_key())
        record = ConsentRecord(item_id, keys.party, recipient, "given", consent.to_json(), now)
        event = uow.audit.append(
            AuditKind.CONSENT, now, actor, item_id=item_id,
            details={"originator": keys.party, "recipient": recipient, "direction": "given",
                     "records": records_detail(consents=[record.digest()])})
        uow.repo.add_consent(record, seq=event.seq)
        uow.commit()
    return consent


def refuse_consent(uow: UnitOfWork, *, keys: KeyStore, item_id: str, request: str,
                   holder: Party, recipient: Party, reason: str, now: datetime,
                   actor: str = "operator") -> AuditEvent:
    """As originator, refuse a holder's request to release ``item_id`` to ``recipient``:
    on record with the reason given (the holder is told by the caller)."""
    with uow:
        event = uow.audit.append(
            AuditKind.CONSENT, now, actor, item_id=item_id,
            details={"originator": keys.party, "recipient": recipient, "holder": holder,
                     "request": request, "direction": "refused-given",
                     "reason": reason[:1000]})
        uow.commit()
    return event


def refuse_action(uow: UnitOfWork, *, actor: str, action: str, reasons: Sequence[str],
                  now: datetime, item_id: str | None = None) -> AuditEvent:
    """Put on record an action a person was refused at the desk, with the true reasons
    (the person may have been told less: an item they may not see reads as absent)."""
    with uow:
        event = uow.audit.append(AuditKind.ACTION_REFUSED, now, actor, item_id=item_id,
                                 details={"action": action, "reasons": list(reasons)})
        uow.commit()
    return event


def refuse_bounded(uow: UnitOfWork, *, refusals: RefusalWindow, actor: str, action: str,
                   reasons: Sequence[str], now: datetime, item_id: str | None = None,
                   details: Mapping[str, Any] | None = None) -> None:
    """:func:`refuse_action` for a refusal a person can repeat in a loop (a TAXII post): on
    record one by one up to ``refusals``' bound per person and window, then counted, the
    count written as one ``action-refused`` summary with the next refusal after its window
    (or at close). What cannot be written is given back to ``refusals``, never dropped."""
    admitted, closed = refusals.admit(actor, action, item_id, now)
    if not admitted and not closed:
        return  # counted: on record in the summary once the window closes
    try:
        with uow:
            _action_summaries(uow, closed, now)
            if admitted:
                uow.audit.append(AuditKind.ACTION_REFUSED, now, actor, item_id=item_id,
                                 details={"action": action,
                                          "reasons": [r[:500] for r in reasons[:10]],
                                          **(details or {})})
            uow.commit()
    except BaseException:
        refusals.give_back([*closed, *([RefusalSummary(actor, {action: 1},
                                                       (item_id,) if item_id else (), now,
                                                       now)] if admitted else [])])
        raise


def record_action_summaries(uow: UnitOfWork, *, refusals: RefusalWindow,
                            now: datetime | None) -> int:
    """The counts :func:`refuse_bounded` kept of the windows closed by ``now`` (None: of
    all, as the node stops) put on record; how many summaries were written."""
    summaries = refusals.closed(now)
    if summaries:
        try:
            with uow:
                _action_summaries(uow, summaries, now or max(s.last for s in summaries))
                uow.commit()
        except BaseException:
            refusals.give_back(summaries)
            raise
    return len(summaries)


def _action_summaries(uow: UnitOfWork, summaries: Sequence[RefusalSummary],
                      now: datetime) -> None:
    for summary in summaries:
        uow.audit.append(AuditKind.ACTION_REFUSED, now, summary.sender,
                         details={"action": ", ".join(sorted(summary.kinds)),
                                  **summary.details()})


def record_consent(uow: UnitOfWork, *, consent: crypto.Consent,
                   originator_public: Ed25519PublicKey, now: datetime,
                   actor: str = "node") -> ConsentRecord:
    """Keep a consent obtained from an originator, after checking its signature; the relay
    it opens is queued in the same commit, and this node's requests for it are answered.

    Kept only for an item of the originator's held here (PolicyDenied otherwise, the same
    answer whether or not the item is held), and once per (item, recipient): a second
    consent for a pair already consented returns the one kept. The originator's signature
    is all a consent holds, so it could otherwise make this node keep a row and an audit
    event per consent it signs, for any id, without bound."""
    crypto.verify_consent(consent, originator_public)
    record = ConsentRecord(consent.item_id, consent.originator, consent.recipient, "obtained",
                           consent.to_json(), now)
    with uow:
        item = uow.repo.get_item(consent.item_id)
        if item is None or item.originator != consent.originator:
            raise PolicyDenied((f"this node does not hold {consent.item_id} of "
                                f"{consent.originator}'s",))
        for kept in uow.repo.consents_for(consent.item_id):
            if (kept.originator, kept.recipient, kept.direction) == \
                    (consent.originator, consent.recipient, "obtained"):
                # A request asked again since is answered all the same (its status is the
                # operator's view only: no row and no event more).
                uow.repo.answer_consent_requests(consent.item_id, consent.recipient,
                                                 "granted", now)
                uow.commit()
                return kept
        event = uow.audit.append(
            AuditKind.CONSENT, now, actor, item_id=consent.item_id,
            details={"originator": consent.originator, "recipient": consent.recipient,
                     "direction": "obtained",
                     "records": records_detail(consents=[record.digest()])})
        uow.repo.add_consent(record, seq=event.seq)
        uow.repo.answer_consent_requests(consent.item_id, consent.recipient, "granted", now)
        uow.events.append(ConsentObtained(consent.item_id, consent.recipient))
        commit(uow, now)
    return record


def change_classification(uow: UnitOfWork, *, keys: KeyStore,
                          schemes: Mapping[Party, Scheme], item_id: str, new_level: str,
                          now: datetime, actor: str = "operator") -> ClassificationNotice:
    """As originator, change an item's level; every version held is re-marked here.

    Returns the signed notice for the exchange to send to every holder. A holder's attempt
    is refused (:class:`PolicyDenied`) and recorded. A level the node's scheme does not have
    is bad input, not a refusal on record.
    """
    own = schemes.get(keys.party)
    if own is None:
        raise MalformedInput(f"no classification scheme for {keys.party}", where="party")
    own.level(new_level, where="level")
    with uow:
        versions = uow.repo.item_versions(item_id)
        if not versions:
            raise MalformedInput(f"{item_id} is not held here", where="item")
        latest = uow.repo.custody_of(item_id, versions[-1].version)[-1]
        decision = decide_classification_change(keys.party, latest.original_label, new_level,
                                                schemes)
        if not decision.permit:
            uow.audit.append(AuditKind.CLASSIFICATION_CHANGED, now, actor, item_id=item_id,
                             details={"permit": False, "reasons": list(decision.reasons),
                                      "new_level": new_level})
            uow.commit()
            raise PolicyDenied(decision.reasons)
        notice = sign_classification_notice(
            item_id=item_id, originator=keys.party, old_level=latest.national_label.level,
            new_level=new_level, issued_at=now, key=keys.signing_key())
        remarked = _remark_all(uow, versions, keys.party, new_level, now,
                               f"classification changed by originator {keys.party}")
        event = uow.audit.append(
            AuditKind.CLASSIFICATION_CHANGED, now, actor, item_id=item_id,
            details={"permit": True, "originator": keys.party, "old_level": notice.old_level,
                     "new_level": new_level,
                     "records": records_detail(classification_notices=[notice.digest()],
                                               custody=[r.digest() for r in remarked])})
        uow.repo.add_notice(notice, seq=event.seq)
        for record in remarked:
            uow.repo.add_custody(record, seq=event.seq)
        uow.events.append(NoticeRecorded(notice))
        commit(uow, now)
    return notice


def apply_classification_notice(uow: UnitOfWork, *, keys: KeyStore, catalogue: Catalogue,
                                notice: ClassificationNotice,
                                originator_public: Ed25519PublicKey, now: datetime,
                                actor: str = "node",
                                came_from: Party | None = None) -> list[CustodyRecord]:
    """As holder, re-mark every version held to the equivalent of the originator's new level.

    The notice must be signed by the item's originator; the equivalent level comes from the
    agreement each version was received under (``NoEquivalent`` if it has none).
    """
    verify_classification_notice(notice, originator_public)
    with uow:
        versions = uow.repo.item_versions(notice.item_id)
        if not versions:
            raise MalformedInput(f"{notice.item_id} is not held here", where="notice.item_id")
        remarked: list[CustodyRecord] = []
        for item in versions:
            current = uow.repo.custody_of(item.item_id, item.version)[-1]
            if current.original_label.originator != notice.originator:
                raise ProofInvalid(f"notice from {notice.originator}, but {notice.item_id} "
                                   f"originated at {current.original_label.originator}")
            if keys.party == notice.originator:
                level = notice.new_level
            elif current.agreement is None:
                raise MalformedInput(f"{notice.item_id} was received under no agreement",
                                     where="custody")
            else:
                level = catalogue.get(current.agreement).equivalent(
                    notice.originator, notice.new_level, keys.party)
            remarked.append(CustodyRecord(
                item.item_id, item.version, "remarked", keys.party, current.original_label,
                current.national_label.remarked(keys.party, level), now,
                provider=current.provider, agreement=current.agreement,
                note=f"notice of {notice.originator}: {notice.old_level} → {notice.new_level}"))
        event = uow.audit.append(
            AuditKind.CLASSIFICATION_CHANGED, now, actor, item_id=notice.item_id,
            details={"permit": True, "originator": notice.originator,
                     "old_level": notice.old_level, "new_level": notice.new_level,
                     "national_levels": sorted({r.national_label.level for r in remarked}),
                     "records": records_detail(classification_notices=[notice.digest()],
                                               custody=[r.digest() for r in remarked])})
        uow.repo.add_notice(notice, seq=event.seq)
        for record in remarked:
            uow.repo.add_custody(record, seq=event.seq)
        # Passed on to those this node delivered the item to, never back to ``came_from``.
        uow.events.append(NoticeRecorded(notice, came_from))
        commit(uow, now)
    return remarked


def _remark_all(uow: UnitOfWork, versions: Sequence[StoredItem], holder: Party, level: str,
                now: datetime, note: str) -> list[CustodyRecord]:
    out = []
    for item in versions:
        current = uow.repo.custody_of(item.item_id, item.version)[-1]
        out.append(CustodyRecord(item.item_id, item.version, "remarked", holder,
                                 current.original_label,
                                 current.national_label.remarked(holder, level), now,
                                 provider=current.provider, agreement=current.agreement,
                                 note=note))
    return out


def report_incident(uow: UnitOfWork, *, keys: KeyStore, kind: str, description: str,
                    now: datetime, item_id: str | None = None,
                    actor: str = "operator", came_from: Party | None = None) -> IncidentReport:
    """Record a loss, compromise or possible compromise (Art. 17), naming whom to tell:
    the provider the item came from, else its originator if that is another party. The
    report to that party is queued in the same commit (``came_from``: the partner that
    reported it here, which is not told again)."""
    with uow:
        notify: Party | None = None
        if item_id is not None:
            versions = uow.repo.item_versions(item_id)
            if not versions:
                raise MalformedInput(f"{item_id} is not held here", where="item")
            current = uow.repo.custody_of(item_id, versions[-1].version)[-1]
            notify = current.provider or (current.original_label.originator
                                          if current.original_label.originator != keys.party
                                          else None)
        reference = f"{keys.party}-incident-{uow.audit.size}"
        report = IncidentReport(reference, kind, item_id, description, actor, notify, now)
        event = uow.audit.append(
            AuditKind.INCIDENT, now, actor, item_id=item_id,
            details={"reference": reference, "kind": kind, "notify": notify,
                     "records": records_detail(incidents=[report.digest()])})
        uow.repo.add_incident(report, seq=event.seq)
        uow.events.append(IncidentRecorded(report, came_from))
        commit(uow, now)
    return report


def record_receipt(uow: UnitOfWork, *, keys: KeyStore, receipt: crypto.Receipt, now: datetime,
                   peer_public: Ed25519PublicKey | None = None,
                   actor: str = "node", delivered_only: bool = False) -> ReceiptRecord:
    """Keep a receipt this node signed (given) or a partner signed for it (obtained; its
    signature is checked when ``peer_public`` is given).

    ``delivered_only`` (a receipt a partner posts): an obtained receipt is kept only for a
    delivery this node queued to that partner, else PolicyDenied. A partner's own signature
    is all a receipt holds, so it could otherwise claim items this node never sent it (a
    row each, without bound, and a custody claim an incident report rests on).

    Once per (item, version, peer, direction): a receipt for a delivery already receipted
    (a resend after a lost answer) changes nothing and returns the record already kept."""
    direction: Literal["given", "obtained"]
    if receipt.recipient == keys.party:
        direction, peer = "given", receipt.sender
    elif receipt.sender == keys.party:
        direction, peer = "obtained", receipt.recipient
        if peer_public is not None:
            crypto.verify_receipt(receipt, peer_public)
    else:
        raise MalformedInput(f"receipt between {receipt.sender} and {receipt.recipient} does "
                             f"not concern {keys.party}", where="receipt")
    record = ReceiptRecord(receipt.item_id, receipt.version, peer, direction,
                           receipt.to_json(), now)
    with uow:
        for kept in uow.repo.receipts_for(receipt.item_id):
            if (kept.version, kept.peer, kept.direction) == (receipt.version, peer, direction):
                return kept
        if delivered_only and direction == "obtained" and not uow.outbox.queued_deliveries(
                {(receipt.item_id, receipt.version, peer)}):
            # The same answer whether or not the item is held here.
            raise PolicyDenied((f"{keys.party} sent {peer} no {receipt.item_id} version "
                                f"{receipt.version}",))
        event = uow.audit.append(
            AuditKind.RECEIPT, now, actor, item_id=receipt.item_id,
            item_version=receipt.version,
            details={"peer": peer, "direction": direction,
                     "records": records_detail(receipts=[record.digest()])})
        uow.repo.add_receipt(record, seq=event.seq)
        if direction == "obtained":
            uow.events.append(ReceiptObtained(record.item_id, record.version, peer))
        commit(uow, now)
    return record


def check_release(request: ReleaseRequest, catalogue: Catalogue) -> Decision:
    """One release decided and explained, recorded nowhere (``agreements release-check``,
    the demo's story)."""
    return decide(request, catalogue)


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


# ---- verifying the log ----------------------------------------------------------------------


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


# ---- proofs -------------------------------------------------------------------------------


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
