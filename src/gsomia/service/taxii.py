"""TAXII 2.1 service: who may see what, cursors, audit, and publishing through the API.

Every read goes through here: the caller's visible label classes are decided with the Art. 7
access rule (:mod:`gsomia.service.access`: clearance at or above the level *and* need-to-know), the
store pages only over those, and a granted read is audited before anything is returned. An
item the caller may not see and an item that does not exist give the same :class:`NotFound`,
which the API renders as the same 404 body; both are recorded alike (``record_miss``, off the
request path, the reasons worked out when the event is written), so neither the answer nor
its time tells them apart. A POST is refused by the access rule in one set of words
(``REFUSED_TO_PUBLISH``), decided before "already held" could be said; such a refusal is
audited with the rule's own reasons, bounded per person (:meth:`ObjectStore.record_refused`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache, partial
from typing import Any

from gsomia.core import limits, stix
from gsomia.core.audit import ENTRIES, AuditKind
from gsomia.core.errors import GsomiaError, MalformedInput, NotFound, PolicyDenied
from gsomia.core.labels import LabelVocabulary, Scheme, SecurityLabel
from gsomia.core.policy import Decision, Person
from gsomia.core.taxii import (
    Filters,
    Position,
    TaxiiCollection,
    decode_cursor,
    encode_cursor,
    filter_digest,
    parse_filters,
    status,
)
from gsomia.core.taxii import collection as taxii_collection
from gsomia.core.types import Party
from gsomia.service import access
from gsomia.service.handlers import REFUSED_TO_PUBLISH
from gsomia.service.ports import UnitOfWork
from gsomia.service.taxii_ports import (
    AccessRecord,
    ObjectStore,
    Outcome,
    PostStatus,
    Query,
    RefusedPost,
    StoredVersion,
    Submission,
)

__all__ = ["MAX_OBJECTS_PER_POST", "NODE_MADE_REFUSED", "NotFound", "Served", "StixCheck",
           "TaxiiService", "marking_id", "record_accesses", "token_hash"]

MAX_OBJECTS_PER_POST = 10_000

StixCheck = Callable[[Mapping[str, Any]], None]
"""Raises MalformedInput naming what is wrong with one STIX 2.1 object."""


@dataclass(frozen=True, slots=True)
class Served:
    """One page as the API renders it."""

    rows: Sequence[StoredVersion]
    more: bool
    next: str | None

    @property
    def first_added(self) -> datetime | None:
        return self.rows[0].date_added if self.rows else None

    @property
    def last_added(self) -> datetime | None:
        return self.rows[-1].date_added if self.rows else None


marking_id = lru_cache(maxsize=4096)(stix.marking_id)
"""The id of the marking-definition that carries a label (it depends on the label only)."""

class TaxiiService:
    """The TAXII side of one node: one API root; the collection of the node's holdings and
    the labelled collections its ``node.toml`` defines."""

    def __init__(self, store: ObjectStore, *, party: Party, vocabulary: LabelVocabulary,
                 cursor_secret: bytes, collection_id: str, check: StixCheck,
                 collections: Sequence[TaxiiCollection] = (), title: str = "") -> None:
        self.store = store
        self.party = party
        self.vocabulary = vocabulary
        self.schemes: Mapping[Party, Scheme] = vocabulary.schemes
        self.secret = cursor_secret
        self.collection_id = collection_id
        self.check = check
        self._markings: dict[str, str] = {}
        holdings = TaxiiCollection(
            collection_id, title or f"{party} holdings",
            "Every item the node holds; each reader sees what Art. 7 allows. Each object "
            "posted must reference its gsomia label marking-definition.")
        self.collections: dict[str, TaxiiCollection] = {holdings.id: holdings}
        for c in collections:
            if c.label is None or c.label.originator != party or c.id in self.collections:
                raise MalformedInput(f"collection {c.title!r} is not a labelled collection of "
                                     f"{party}'s own items", where="taxii.collections")
            self.collections[c.id] = c

    # ---- collections -----------------------------------------------------------------------
    def collection_for(self, person: Person, collection: str) -> TaxiiCollection:
        """The collection ``collection`` if ``person`` may see it; NotFound otherwise. A
        labelled collection whose label the person may not read does not exist for them."""
        found = self.collections.get(collection)
        if found is None or (found.label is not None
                             and not access.reading(person, found.label, self.schemes).permit):
            raise NotFound(f"no collection {collection}")
        return found

    def collections_for(self, person: Person) -> list[TaxiiCollection]:
        """Every collection ``person`` may see, the holdings first."""
        out = []
        for cid in self.collections:
            try:
                out.append(self.collection_for(person, cid))
            except NotFound:
                continue
        return out

    def collection_doc(self, person: Person, collection: TaxiiCollection) -> dict[str, Any]:
        """The collection resource: a labelled one says, as ``x_gsomia_label``, the label
        it applies and the marking-definition a plain object posted there will reference."""
        label = None
        if collection.label is not None:
            english = collection.label.english_marking(self.schemes)
            label = {"marking_ref": marking_id(collection.label), "marking": english,
                     "national_marking": collection.label.national_marking(),
                     "label": collection.label.to_json()}
        description = collection.description or (
            f"Items {self.party} originated under {label['marking']}; plain STIX posted "
            "here gets this label" if label else "")
        return taxii_collection(collection.id, collection.title, description,
                                can_read=True, can_write=True, label=label)

    # ---- people ----------------------------------------------------------------------------
    def authenticate(self, token: str, name: str | None = None) -> Person | None:
        """The person holding ``token`` (and called ``name``, for HTTP basic), or None."""
        if not token or len(token) > 512:
            return None
        found = self.store.person_by_token(token_hash(token))
        if found is None or (name is not None and found[0] != name):
            return None
        return found[1]

    def visible(self, person: Person, collection: TaxiiCollection | None = None
                ) -> frozenset[str]:
        """The label classes ``person`` may read (Art. 7), decided once per class; in a
        labelled ``collection``, only its label's class."""
        return self._readable(self.store.label_classes(), person, collection)

    def _readable(self, classes: Mapping[str, SecurityLabel], person: Person,
                  collection: TaxiiCollection | None) -> frozenset[str]:
        wanted = collection.label if collection is not None else None
        return frozenset(key for key, label in classes.items()
                         if (wanted is None or stix.same_label(label, wanted))
                         and access.reading(person, label, self.schemes).permit)

    # ---- reads -----------------------------------------------------------------------------
    def read(self, person: Person, collection: str, endpoint: str,
             params: Mapping[str, Sequence[str]], now: datetime,
             object_id: str | None = None, *, audited: bool = True,
             kinds: frozenset[str] | None = None) -> Served:
        """One page of ``objects``, ``manifest``, ``object`` or ``versions``; audited, unless
        the caller records with :meth:`record_read` what it gives (``audited=False``).
        ``kinds``: only items labelled with one of these categories (the warnings feed)."""
        chosen = self.collection_for(person, collection)
        filters = parse_filters(params, endpoint)
        if endpoint == "versions":
            filters = _all_versions(filters)
        scope = endpoint if object_id is None else f"{endpoint}:{object_id}"
        # Worked out only for a cursor read or made: most GETs by id need neither.
        digest = partial(filter_digest, collection, scope, filters, person.name)
        after: Position | None = None
        if filters.next is not None:
            after = decode_cursor(self.secret, digest(), filters.next)
        with_content = endpoint in ("objects", "object")
        def visible(classes: Mapping[str, SecurityLabel]) -> frozenset[str]:
            readable = self._readable(classes, person, chosen)
            return readable if kinds is None else frozenset(
                k for k in readable if classes[k].category in kinds)

        page = self.store.page_by(lambda classes: Query(
            filters, visible(classes), after, filters.limit, object_id,
            with_content=with_content))
        if object_id is not None and not page.rows and after is None:
            # Absent or hidden, the request does the same work: queue the event and answer;
            # whether the item is held, and why it is refused, is worked out off the path.
            self.store.record_miss(AccessRecord(
                person, endpoint, (), [(object_id, ())], now,
                explain=partial(self._why_not, person, object_id)))
            raise NotFound(f"no object {object_id} in collection {collection}")
        if page.rows and audited:
            self.record_read(person, endpoint, [(r.id, r.version) for r in page.rows], now)
        token = encode_cursor(self.secret, digest(), page.rows[-1].position) \
            if page.more and page.rows else None
        return Served(page.rows, page.more and token is not None, token)

    def record_read(self, person: Person, via: str, given: Sequence[tuple[str, str]],
                    now: datetime) -> None:
        """Audit that ``person`` was given these (id, version)s through ``via``; raises
        AuditUnavailable when the log cannot be written, and then nothing may be given."""
        if given:
            self.store.record_access(AccessRecord(person, via, list(given), (), now))

    def record_read_now(self, person: Person, via: str, given: Sequence[tuple[str, str]],
                        now: datetime, *, alone: bool) -> bool:
        """:meth:`record_read`, if that waits for no other reader's commit; else False and
        nothing recorded (the caller then calls :meth:`record_read` where it may wait)."""
        return not given or self.store.record_access_now(
            AccessRecord(person, via, list(given), (), now), alone=alone)

    def _why_not(self, person: Person, object_id: str) -> Sequence[str]:
        """For the log only: why a read of ``object_id`` by id found nothing."""
        labels = self.store.labels_of(object_id)
        if not labels:
            return (f"{object_id} is not held here",)
        for label in labels:
            decision = access.reading(person, label, self.schemes)
            if not decision.permit:
                return decision.reasons
        return ("no version the reader may see matches the request's filters",)

    def status(self, person: Person, status_id: str) -> Mapping[str, Any]:
        found = self.store.status(status_id) if len(status_id) <= 64 else None
        if found is None or found[0] != person.name:
            raise NotFound(f"no status {status_id}")
        return found[1]

    # ---- writes ----------------------------------------------------------------------------
    def add(self, person: Person, collection: str, body: Any, media: str, now: datetime,
            status_id: str) -> dict[str, Any]:
        """Publish the objects of an envelope (or bundle): one status, stored and returned.

        A malformed envelope is MalformedInput (nothing stored), and so is a gsomia label
        that is malformed or holds a value the agreements do not know: the objects it
        labels cannot be judged. Each other object that fails a check is a failure in the
        status and the others are published, as TAXII 2.1 §5.4 allows. The label comes from
        the gsomia marking-definition the object references: sent in the same envelope, or
        one the poster may see here (a marking kept as an object, or the label of items they
        may read). In a labelled collection an object that references none gets the
        collection's. Unlabelled means refused. A label marking-definition is itself kept as
        an object, under the label it carries, by the same rules as any other object.
        """
        try:
            chosen = self.collection_for(person, collection)
        except NotFound:
            # Absent or hidden alike on record (the same work either way: the answer's time
            # says no more than its body), so probing for collections leaves a trace.
            found = self.collections.get(collection)
            why = access.reading(person, found.label, self.schemes).reasons \
                if found is not None and found.label is not None else ()
            self.store.record_refused(RefusedPost(
                person.name, collection[:300], (), 0,
                why or (f"no collection {collection[:300]}",), now))
            raise
        objects = _envelope_objects(body, media)
        markings = self._known_markings(person)
        failures: list[Outcome] = []
        successes: list[Outcome] = []
        others: list[tuple[int, Mapping[str, Any]]] = []
        for i, obj in enumerate(objects):
            try:
                stix.check_spec_version(obj, where=f"objects[{i}]")
            except MalformedInput as exc:
                failures.append(Outcome(obj["id"], _version_text(obj), False, str(exc)))
                continue
            if stix.is_label_marking(obj):
                label = stix.label_from_marking(obj, self.vocabulary,
                                                where=f"body.objects[{i}]")
                if obj["id"] != marking_id(label):
                    raise MalformedInput("its id is not the one its label gives",
                                         where=f"body.objects[{i}].id",
                                         expected=marking_id(label))
                markings[obj["id"]] = label
                others.append((i, obj))
            elif obj["id"] in _BUILT_IN:
                same = dict(obj) == _BUILT_IN[obj["id"]]
                (successes if same else failures).append(Outcome(
                    obj["id"], _version_text(obj), same,
                    "built in" if same else "differs from the built-in gsomia definition"))
            else:
                others.append((i, obj))
        self._resolve_stored(person, others, markings)
        submissions: list[Submission] = []
        decisions: dict[SecurityLabel, Decision] = {}  # one access decision per label
        refused: list[tuple[str, Sequence[str]]] = []  # (id, the true reasons) for the log
        for i, obj in others:
            try:
                submissions.append(self._submission(person, obj, markings, i, decisions,
                                                    chosen))
            except GsomiaError as exc:
                failures.append(Outcome(obj["id"], _version_text(obj), False, str(exc)))
                if isinstance(exc, PolicyDenied):
                    refused.append((obj["id"], getattr(exc, "why", exc.reasons)))
        own = self._collection_marking(chosen, submissions)
        if not submissions:
            body_out = status(status_id, now, [o.to_json() for o in successes],
                              [o.to_json() for o in failures])
            self.store.save_status(status_id, person.name, body_out, now)
            self._refused(person, chosen, refused, now)
            return body_out
        made: list[dict[str, Any]] = []

        def status_of(outcomes: Sequence[Outcome]) -> dict[str, Any]:
            ok, bad = list(successes), list(failures)
            for outcome in outcomes[len(own):]:
                (ok if outcome.ok else bad).append(outcome)
            made.append(status(status_id, now, [o.to_json() for o in ok],
                               [o.to_json() for o in bad]))
            return made[-1]

        # The status is saved in the commit that stores the objects (one commit, not two):
        # it never reports objects that were not committed.
        outcomes = self.store.add_objects([*own, *submissions], person, now,
                                          status=PostStatus(status_id, person.name, status_of),
                                          kept_as_is=_node_made_kept)
        answer = made[-1] if made else status_of(outcomes)
        # Refused in the batch's transaction: a new version of an item they may not read,
        # or of one the node made.
        refused.extend((o.id, (o.message,)) for o in outcomes[len(own):]
                       if not o.ok and o.message in (REFUSED_TO_PUBLISH, NODE_MADE_REFUSED))
        self._refused(person, chosen, refused, now)
        return answer

    def _refused(self, person: Person, collection: TaxiiCollection,
                 refused: Sequence[tuple[str, Sequence[str]]], now: datetime) -> None:
        """Put on record, bounded by the store, the objects of a post refused for the
        poster's rights: one event for the post, its first ids and their distinct reasons."""
        if not refused:
            return
        reasons = list(dict.fromkeys(r for _, why in refused for r in why))
        self.store.record_refused(RefusedPost(person.name, collection.id,
                                              [i for i, _ in refused[:10]], len(refused),
                                              reasons[:10], now))

    def _submission(self, person: Person, obj: Mapping[str, Any],
                    markings: Mapping[str, SecurityLabel], i: int,
                    decisions: dict[SecurityLabel, Decision],
                    collection: TaxiiCollection) -> Submission:
        self.check(obj)
        stix.check_extension_properties(obj, where=f"objects[{i}]")
        made = stix.node_made(obj)
        if made is not None:
            # Decided on the object alone, before any label: it says nothing of what is held.
            raise PolicyDenied((f"objects[{i}].{made}: {NODE_MADE_REFUSED}",))
        if stix.is_label_marking(obj):
            label = markings[obj["id"]]
        else:
            refs = obj.get("object_marking_refs", [])
            labels = {markings[r] for r in refs if isinstance(r, str) and r in markings}
            if not labels and collection.label is not None:
                # Plain STIX into a labelled collection: the collection's label, referenced
                # as a gsomia label always is, so the object never travels unmarked.
                labels = {collection.label}
                obj = stix.apply_marking(obj, {"id": marking_id(collection.label)})
            if not labels:
                raise MalformedInput(
                    "carries no gsomia security label",
                    where=f"objects[{i}].object_marking_refs",
                    expected="the id of a marking-definition with the gsomia security label "
                             f"extension ({stix.EXTENSION_ID}), sent in the same envelope "
                             "or earlier, or a post to a labelled collection")
            if len(labels) > 1:
                raise MalformedInput("references more than one gsomia security label",
                                     where=f"objects[{i}].object_marking_refs",
                                     expected="exactly one label per item")
            label = labels.pop()
        if collection.label is not None and not stix.same_label(label, collection.label):
            raise MalformedInput(
                "is labelled otherwise than the collection it is posted to",
                where=f"objects[{i}].object_marking_refs",
                expected=f"the collection's label {marking_id(collection.label)}, or no "
                         "gsomia label at all (the collection applies its own)")
        if label.category in stix.NODE_MADE_KINDS:
            # Decided on the posted label alone: it says nothing of what is held.
            raise PolicyDenied((f"objects[{i}]: labelled {label.category}: "
                                f"{NODE_MADE_REFUSED}",))
        if label.originator != self.party:
            raise MalformedInput(
                f"is labelled as originated by {label.originator}", where=f"objects[{i}]",
                expected=f"items originated here ({self.party}); partners' items arrive "
                         "over the peer API")
        decision = decisions.get(label)
        if decision is None:
            decision = decisions[label] = access.reading(person, label, self.schemes)
        if not decision.permit:
            # The same words as for an item the person may not read (see REFUSED_TO_PUBLISH).
            raise _RefusedToPublish(decision.reasons)
        return Submission(obj, label)

    def _collection_marking(self, collection: TaxiiCollection,
                            submissions: Sequence[Submission]) -> list[Submission]:
        """The collection's own label marking-definition, to be stored before the plain
        objects that now reference it (held already: reported as such, and not shown)."""
        label = collection.label
        if label is None:
            return []
        wanted = marking_id(label)
        if not any(wanted in s.obj.get("object_marking_refs", ()) for s in submissions) \
                or any(s.obj["id"] == wanted for s in submissions):
            return []
        return [Submission(stix.printed_marking(label, label.english_marking(self.schemes)),
                           label)]

    def _known_markings(self, person: Person) -> dict[str, SecurityLabel]:
        """The markings of the label classes ``person`` may read: of one they may not read,
        a reference answers as one to a label that does not exist."""
        classes = self.store.label_classes()  # read once: visible() would read them again
        out: dict[str, SecurityLabel] = {}
        for key in self._readable(classes, person, None):
            label = classes[key]
            mid = self._markings.get(key)
            if mid is None:
                mid = self._markings[key] = marking_id(label)
            out[mid] = label
        return out

    def _resolve_stored(self, person: Person, objects: Sequence[tuple[int, Mapping[str, Any]]],
                        markings: dict[str, SecurityLabel]) -> None:
        """Add to ``markings`` the label marking-definitions kept here that ``objects``
        reference and ``person`` may see (the only ones a reference may name)."""
        wanted = sorted({r for _, obj in objects for r in obj.get("object_marking_refs", ())
                         if isinstance(r, str) and r.startswith("marking-definition--")
                         and r not in markings})[:_MAX_REFS]
        if not wanted:
            return
        filters = Filters(limit=len(wanted) * 4, ids=frozenset(wanted),
                          types=frozenset({"marking-definition"}))
        page = self.store.page(Query(filters, self.visible(person), None, filters.limit))
        for row in page.rows:
            try:
                label = stix.label_from_marking(json.loads(row.content or b"{}"),
                                                self.vocabulary, where=row.id)
            except (MalformedInput, ValueError):
                continue  # a value no agreement knows any more: not a label to apply
            if marking_id(label) == row.id:
                markings[row.id] = label


_MAX_REFS = 1000  # distinct stored markings one request may name


class _RefusedToPublish(PolicyDenied):
    """:data:`REFUSED_TO_PUBLISH`, as the poster is told; ``why``, the access rule's own
    reasons, for the audit log only."""

    def __init__(self, why: Sequence[str]) -> None:
        super().__init__((REFUSED_TO_PUBLISH,))
        self.why = tuple(why)

NODE_MADE_REFUSED = (
    "refused: warnings, tracks, impact predictions, sensor reports and replays are made only "
    "by this node's own warning centre, sensor intake and replays; over TAXII a person "
    "neither posts one nor replaces one with a new version")


def _node_made_kept(current: bytes) -> str | None:
    """Why no new version may replace an item whose current version is ``current``: one the
    node's own tools made (it carries a :data:`stix.NODE_MADE` property), since a version
    without the property would take a live warning off every feed. Asked by the store in
    the batch's transaction, of items the poster may read, so no version stored meanwhile
    slips past it."""
    if b'"x_gsomia_' in current and stix.node_made(json.loads(current)) is not None:
        return NODE_MADE_REFUSED
    return None


def token_hash(token: str) -> bytes:
    """The stored form of a user token (same as ``gsomia.core.custody.token_hash``)."""
    return hashlib.sha256(b"gsomia/user-token/v1\x00" + token.encode("utf-8")).digest()


def _all_versions(filters: Filters) -> Filters:
    from dataclasses import replace

    from gsomia.core.taxii import VersionMatch
    return replace(filters, versions=VersionMatch(last=False, all=True))


_BUILT_IN: Mapping[str, Mapping[str, Any]] = {stix.IDENTITY_ID: stix.IDENTITY,
                                             stix.EXTENSION_ID: stix.EXTENSION_DEFINITION}


def _version_text(obj: Mapping[str, Any]) -> str:
    for name in ("modified", "created"):
        if isinstance(obj.get(name), str):
            return str(obj[name])
    return "unversioned"


def _envelope_objects(body: Any, media: str) -> list[Mapping[str, Any]]:
    if not isinstance(body, Mapping):
        raise MalformedInput("the body is not a JSON object", where="body",
                             expected="a TAXII envelope {\"objects\": [...]}")
    # Either shape under either media type: stix2's TAXII sink posts bundles labelled as
    # TAXII envelopes, and a bundle's extra members (type, id) carry nothing we need.
    if "type" in body and body.get("type") != "bundle":
        raise MalformedInput(f"a body of type {body.get('type')!r}", where="body.type",
                             expected="a TAXII envelope, or a STIX bundle")
    objects = body.get("objects")
    if not isinstance(objects, list) or not objects:
        raise MalformedInput("has no objects", where="body.objects",
                             expected="a non-empty list of STIX objects")
    if len(objects) > MAX_OBJECTS_PER_POST:
        raise MalformedInput(f"has {len(objects)} objects", where="body.objects",
                             expected=f"at most {MAX_OBJECTS_PER_POST} per request")
    for i, obj in enumerate(objects):
        if not isinstance(obj, Mapping) or not isinstance(obj.get("type"), str) \
                or not isinstance(obj.get("id"), str):
            raise MalformedInput("is not a STIX object", where=f"body.objects[{i}]",
                                 expected="a JSON object with type and id")
        # Bounds before anything walks an object (the STIX check, canonical JSON): the
        # only depth check of a posted object (publish_many takes it as done).
        limits.check_depth(obj, where=f"body.objects[{i}]")
    return objects


def record_accesses(uow: UnitOfWork, records: Sequence[AccessRecord]) -> None:
    """Audit reads through TAXII, granted or refused, one event each, in one commit."""
    with uow:
        for record in records:
            _append_access(uow, record)
        uow.commit()


def _append_access(uow: UnitOfWork, record: AccessRecord) -> None:
    kind = AuditKind.ACCESS_GRANTED if record.granted else AuditKind.ACCESS_DENIED
    details: dict[str, Any] = {"via": f"taxii:{record.endpoint}",
                               "clearance": record.person.clearance}
    item_id: str | None = None
    item_version: str | None = None
    if record.granted:
        if len(record.granted) == 1:
            item_id, item_version = record.granted[0]
        else:
            # Sealed (hygiene16): the leaf commits to the items read by the Merkle root of
            # salted entries, so a proof that one of them was read shows none of the others.
            salts = os.urandom(16 * len(record.granted)).hex()
            details[ENTRIES] = [{"id": i, "version": v, "salt": salts[32 * n:32 * n + 32]}
                                for n, (i, v) in enumerate(record.granted)]
    else:
        item_id = record.denied[0][0]
        reasons = record.denied[0][1]
        if record.explain is not None:
            try:
                reasons = record.explain()
            except Exception as exc:  # the refusal is logged all the same, with what failed
                reasons = [f"reasons not worked out: {type(exc).__name__}: {exc}"]
        details["reasons"] = [str(r) for r in reasons]
    uow.audit.append(kind, record.at, record.person.name, item_id=item_id,
                     item_version=item_version, details=details)
