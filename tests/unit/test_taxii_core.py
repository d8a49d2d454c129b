"""TAXII 2.1 core: media types, filters, tamper-proof keyset cursors, selection and the
service's access filtering over a list-backed store (the SQL adapter is tested against the
same reference in tests/integration/test_taxii_api.py)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.errors import MalformedInput
from gsomia.core.labels import LabelVocabulary, SecurityLabel
from gsomia.core.policy import Person
from gsomia.core.taxii import (
    MAX_LIMIT,
    STIX_MEDIA,
    TAXII_MEDIA,
    Filters,
    Position,
    Row,
    VersionMatch,
    content_type_of,
    decode_cursor,
    encode_cursor,
    envelope_bytes,
    filter_digest,
    negotiate,
    parse_filters,
    select_rows,
    status,
    taxii_time,
    timestamp,
)
from gsomia.service.handlers import REFUSED_TO_PUBLISH
from gsomia.service.taxii import NotFound, TaxiiService, token_hash
from gsomia.service.taxii_ports import (
    AccessRecord,
    Outcome,
    Page,
    PostStatus,
    Query,
    RefusedPost,
    StoredVersion,
    Submission,
)
from gsomia.shell.catalogue import schemes as load_schemes

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SECRET = b"k" * 32
SCHEMES = load_schemes()


# ---- media types ----------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [
    (None, TAXII_MEDIA),
    ("", TAXII_MEDIA),
    (TAXII_MEDIA, TAXII_MEDIA),
    ("application/taxii+json", TAXII_MEDIA),
    ("application/taxii+json; version=2.1", TAXII_MEDIA),
    ("*/*", TAXII_MEDIA),
    ("application/*", TAXII_MEDIA),
    ("application/taxii+json;version=2.0", None),
    ("application/json", None),
    ("text/html", None),
    (f"{TAXII_MEDIA};q=0", None),
    (f"{STIX_MEDIA}, {TAXII_MEDIA};q=0.5", STIX_MEDIA),
    (f"{STIX_MEDIA};q=0.4, {TAXII_MEDIA};q=0.5", TAXII_MEDIA),
    ("application/stix+json", STIX_MEDIA),
    ("garbage;;;q=x,", None),
])
def test_negotiation_follows_taxii_media_types(header: str | None, expected: str | None) -> None:
    assert negotiate(header, (TAXII_MEDIA, STIX_MEDIA) if expected == STIX_MEDIA or (
        header and "stix" in header) else (TAXII_MEDIA,)) == expected


@pytest.mark.parametrize(("header", "expected"), [
    (TAXII_MEDIA, TAXII_MEDIA), ("application/taxii+json", TAXII_MEDIA),
    (STIX_MEDIA, STIX_MEDIA), ("application/stix+json;version=2.0", None),
    ("application/json", None), (None, None), ("a/b, c/d", None),
])
def test_content_type(header: str | None, expected: str | None) -> None:
    assert content_type_of(header) == expected


@given(st.text(max_size=60))
def test_negotiation_never_raises(header: str) -> None:
    assert negotiate(header, (TAXII_MEDIA,)) in (TAXII_MEDIA, None)
    assert content_type_of(header) in (TAXII_MEDIA, STIX_MEDIA, None)


# ---- filters ---------------------------------------------------------------------------------


def test_filters_parse_every_taxii_parameter() -> None:
    f = parse_filters({"added_after": ["2026-01-01T00:00:00Z"], "limit": ["5"],
                       "match[id]": ["indicator--a,indicator--b"], "match[type]": ["indicator"],
                       "match[version]": ["first,2026-01-01T00:00:00.5Z"],
                       "match[spec_version]": ["2.1"], "unknown": ["ignored"]}, "objects")
    assert f.added_after == T0 and f.limit == 5
    assert f.ids == {"indicator--a", "indicator--b"} and f.types == {"indicator"}
    assert f.versions == VersionMatch(last=False, first=True,
                                      at=frozenset({T0 + timedelta(milliseconds=500)}))
    assert parse_filters({}, "objects") == Filters()
    assert parse_filters({"limit": [str(MAX_LIMIT * 5)]}, "objects").limit == MAX_LIMIT
    # versions ignores match[id] (the id is in the path) as TAXII lets servers ignore
    assert parse_filters({"match[id]": ["x"]}, "versions").ids == frozenset()


@pytest.mark.parametrize(("params", "where"), [
    ({"limit": ["0"]}, "limit"), ({"limit": ["-1"]}, "limit"), ({"limit": ["ten"]}, "limit"),
    ({"limit": ["1", "2"]}, "limit"), ({"added_after": ["yesterday"]}, "added_after"),
    ({"added_after": ["2026-02-30T00:00:00Z"]}, "added_after"),
    ({"match[version]": ["newest"]}, "match[version]"), ({"match[type]": [""]}, "match[type]"),
    ({"match[id]": ["a,,b"]}, "match[id]"), ({"next": [""]}, "next"),
])
def test_bad_filters_name_the_parameter(params: dict[str, list[str]], where: str) -> None:
    with pytest.raises(MalformedInput) as caught:
        parse_filters(params, "objects")
    assert caught.value.where == where


@given(st.dictionaries(st.sampled_from(["added_after", "limit", "next", "match[id]",
                                        "match[type]", "match[version]",
                                        "match[spec_version]", "x"]),
                       st.lists(st.text(max_size=30), min_size=1, max_size=3)))
def test_filter_parsing_only_ever_raises_malformed_input(params: dict[str, list[str]]) -> None:
    try:
        f = parse_filters(params, "objects")
    except MalformedInput:
        return
    assert 1 <= f.limit <= MAX_LIMIT


def test_timestamps() -> None:
    assert timestamp("2026-01-01T09:00:00+09:00", where="t") == T0
    assert taxii_time(T0 + timedelta(microseconds=7)) == "2026-01-01T00:00:00.000007Z"
    with pytest.raises(MalformedInput):
        timestamp("2026-01-01", where="t")


# ---- cursors ---------------------------------------------------------------------------------

DIGEST = filter_digest("coll", "objects", Filters(), "alice")


def test_cursor_round_trip_and_refusals() -> None:
    pos = Position(T0 + timedelta(microseconds=123), "42")
    token = encode_cursor(SECRET, DIGEST, pos)
    assert decode_cursor(SECRET, DIGEST, token) == pos
    refusals = [
        (b"x" * 32, DIGEST, token),  # another node's secret
        (SECRET, filter_digest("other", "objects", Filters(), "alice"), token),
        (SECRET, filter_digest("coll", "manifest", Filters(), "alice"), token),
        (SECRET, filter_digest("coll", "objects", Filters(types=frozenset({"x"})), "alice"),
         token),
        (SECRET, filter_digest("coll", "objects", Filters(), "bob"), token),
        (SECRET, DIGEST, token + "A"), (SECRET, DIGEST, token[1:]),
        (SECRET, DIGEST, "no-dot"), (SECRET, DIGEST, "."), (SECRET, DIGEST, "@@.@@"),
    ]
    for secret, digest, text in refusals:
        with pytest.raises(MalformedInput) as caught:
            decode_cursor(secret, digest, text)
        assert caught.value.where == "next"
    # the page size is not part of what the cursor binds
    assert filter_digest("coll", "objects", Filters(limit=3), "alice") == DIGEST


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=1, max_value=255))
def test_any_changed_character_of_a_cursor_is_refused(index: int, xor: int) -> None:
    token = encode_cursor(SECRET, DIGEST, Position(T0, "key-1"))
    raw = bytearray(token.encode())
    raw[index % len(raw)] ^= xor
    with pytest.raises(MalformedInput):
        decode_cursor(SECRET, DIGEST, raw.decode("latin-1"))


_POSITIONS = st.builds(
    Position,
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9000, 1, 1),
                 timezones=st.just(UTC)),
    st.integers(min_value=1000, max_value=2**62).map(str))


@given(_POSITIONS, st.binary(min_size=16, max_size=64), st.binary(min_size=32, max_size=32),
       st.data())
def test_a_cursor_is_opaque_and_any_bit_flip_is_refused(
        position: Position, secret: bytes, digest: bytes, data: st.DataObject) -> None:
    import base64
    import struct

    token = encode_cursor(secret, digest, position)
    assert decode_cursor(secret, digest, token) == position
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    # One size for every position, and nothing of the position in it, in any encoding.
    assert len(token) == len(encode_cursor(secret, digest, Position(T0, "1")))
    micros = (position.date_added - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1)
    for plain in (position.key.encode(), str(micros).encode(), struct.pack(">q", micros),
                  struct.pack(">Q", int(position.key))):
        assert plain not in raw
    assert position.key not in token and "[" not in token and "." not in token
    bit = data.draw(st.integers(min_value=0, max_value=len(raw) * 8 - 1))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    changed = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
    with pytest.raises(MalformedInput):
        decode_cursor(secret, digest, changed)


@given(st.text(max_size=120))
def test_random_cursors_are_refused_not_crashed(text: str) -> None:
    with pytest.raises(MalformedInput):
        decode_cursor(SECRET, DIGEST, text)


# ---- shapes ----------------------------------------------------------------------------------


@given(st.lists(st.dictionaries(st.text(max_size=5), st.integers(), max_size=3), max_size=4),
       st.booleans(), st.one_of(st.none(), st.text(max_size=10)))
def test_envelope_bytes_is_the_envelope(objs: list[dict[str, int]], more: bool,
                                        token: str | None) -> None:
    body = json.loads(envelope_bytes([json.dumps(o).encode() for o in objs], more, token))
    assert body["more"] is more
    assert body.get("objects", []) == objs
    assert body.get("next") == (token if more and token else None)


def test_status_counts_add_up() -> None:
    body = status("s1", T0, [{"id": "a", "version": "v"}], [{"id": "b", "version": "v"}])
    assert body["total_count"] == 2 == body["success_count"] + body["failure_count"]
    assert body["status"] == "complete" and body["pending_count"] == 0


# ---- a list-backed store, and the service over it ------------------------------------------


def _label_key(label: SecurityLabel) -> str:
    return hashlib.sha256(json.dumps(label.to_json(), sort_keys=True).encode()).hexdigest()


@dataclass
class MemoryStore:
    """The ObjectStore port over Python lists, following ``select_rows`` exactly."""

    rows: list[tuple[Row, SecurityLabel, bytes]] = field(default_factory=list)
    users: dict[bytes, tuple[str, Person]] = field(default_factory=dict)
    accesses: list[AccessRecord] = field(default_factory=list)
    statuses: dict[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)
    refused: list[RefusedPost] = field(default_factory=list)

    def put(self, obj_id: str, version: datetime, added: datetime, label: SecurityLabel,
            content: bytes | None = None) -> None:
        row = Row(obj_id, obj_id.split("--")[0], version, added, f"{len(self.rows):08d}",
                  "2.1", _label_key(label))
        content = content or json.dumps({"id": obj_id, "modified": taxii_time(version)}).encode()
        self.rows.append((row, label, content))

    def label_classes(self) -> Mapping[str, SecurityLabel]:
        return {r.label_key: label for r, label, _ in self.rows}

    def page(self, query: Query) -> Page:
        contents = {r.key: c for r, _, c in self.rows}
        chosen, more = select_rows([r for r, _, _ in self.rows], query.filters, query.visible,
                                   after=query.after, limit=query.limit,
                                   object_id=query.object_id)
        return Page([StoredVersion(r.id, taxii_time(r.version), r.date_added, r.key,
                                   r.label_key, contents[r.key] if query.with_content else None)
                     for r in chosen], more)

    def page_by(self, query_of: Callable[[Mapping[str, SecurityLabel]], Query]) -> Page:
        return self.page(query_of(self.label_classes()))

    def labels_of(self, object_id: str) -> Sequence[SecurityLabel]:
        return [label for r, label, _ in self.rows if r.id == object_id]

    def add_objects(self, submissions: Sequence[Submission], publisher: Person,
                    now: datetime, *, status: PostStatus | None = None,
                    kept_as_is: Callable[[bytes], str | None] | None = None
                    ) -> Sequence[Outcome]:
        out = []
        for s in submissions:
            text = s.obj.get("modified", s.obj.get("created"))
            held = sorted((r.version, c) for r, _, c in self.rows if r.id == s.obj["id"])
            why = kept_as_is(held[-1][1]) if held and kept_as_is is not None else None
            if why is not None:
                out.append(Outcome(s.obj["id"], text, False, why))
                continue
            self.put(s.obj["id"], timestamp(text, where="modified"), now, s.label,
                     json.dumps(dict(s.obj)).encode())
            out.append(Outcome(s.obj["id"], text, True))
        if status is not None:
            self.statuses[status.status_id] = (status.owner, status.make(out))
        return out

    def record_access(self, record: AccessRecord) -> None:
        self.accesses.append(record)

    def record_access_now(self, record: AccessRecord, *, alone: bool) -> bool:
        self.accesses.append(record)
        return True

    def record_miss(self, record: AccessRecord) -> None:
        self.accesses.append(record)

    def record_refused(self, refused: RefusedPost) -> None:
        self.refused.append(refused)

    def save_status(self, status_id: str, owner: str, body: Mapping[str, Any],
                    now: datetime) -> None:
        self.statuses[status_id] = (owner, body)

    def status(self, status_id: str) -> tuple[str, Mapping[str, Any]] | None:
        return self.statuses.get(status_id)

    def person_by_token(self, token_hash: bytes) -> tuple[str, Person] | None:
        return self.users.get(token_hash)


SECRET_JPN = SecurityLabel("JPN", "極秘", frozenset({"JPN", "KOR"}), "dprk-missile")
CONF_JPN = SecurityLabel("JPN", "秘", frozenset({"JPN", "KOR"}), "dprk-missile")
OTHER_PURPOSE = SecurityLabel("JPN", "秘", frozenset({"JPN"}), "china-maritime")
ANALYST = Person("aiko", "JPN", "秘", frozenset({"dprk-missile"}))
SENIOR = Person("kenji", "JPN", "極秘", frozenset({"dprk-missile", "china-maritime"}))
VOCABULARY = LabelVocabulary(SCHEMES, frozenset(SCHEMES),
                             frozenset({"dprk-missile", "china-maritime"}))


def check(obj: Mapping[str, Any]) -> None:
    if "modified" not in obj and "created" not in obj:
        raise MalformedInput("no modified", where="modified")


def service(store: MemoryStore, secret: bytes = SECRET) -> TaxiiService:
    return TaxiiService(store, party="JPN", vocabulary=VOCABULARY, cursor_secret=secret,
                        collection_id="coll", check=check)


def holdings() -> MemoryStore:
    store = MemoryStore()
    for i in range(30):
        label = (SECRET_JPN, CONF_JPN, OTHER_PURPOSE)[i % 3]
        store.put(f"indicator--{i:04d}", T0 + timedelta(days=i % 4), T0 + timedelta(
            seconds=i // 2), label)
    return store


def test_a_reader_sees_only_what_art7_allows_and_every_read_is_audited() -> None:
    store = holdings()
    svc = service(store)
    seen = svc.read(ANALYST, "coll", "objects", {"match[version]": ["all"]}, T0).rows
    assert {r.label_key for r in seen} == {_label_key(CONF_JPN)}
    assert store.accesses[-1].granted == [(r.id, r.version) for r in seen]
    senior = svc.read(SENIOR, "coll", "objects", {"match[version]": ["all"]}, T0).rows
    assert len(senior) == 30
    # a hidden object and an absent one are the same NotFound, recorded the same way; the
    # reasons are worked out only when the event is written
    hidden = next(r.id for r, label, _ in store.rows if label == SECRET_JPN)
    with pytest.raises(NotFound) as a:
        svc.read(ANALYST, "coll", "object", {}, T0, object_id=hidden)
    miss_hidden = store.accesses[-1]
    with pytest.raises(NotFound) as b:
        svc.read(ANALYST, "coll", "object", {}, T0, object_id="indicator--absent")
    miss_absent = store.accesses[-1]
    assert str(a.value).replace(hidden, "X") == str(b.value).replace("indicator--absent", "X")
    assert miss_hidden.denied == [(hidden, ())]
    assert miss_absent.denied == [("indicator--absent", ())]
    assert miss_hidden.explain is not None and miss_absent.explain is not None
    assert any("below" in r for r in miss_hidden.explain())
    assert miss_absent.explain() == ("indicator--absent is not held here",)


def test_last_and_first_are_taken_among_visible_versions() -> None:
    store = MemoryStore()
    store.put("report--1", T0, T0, CONF_JPN)
    store.put("report--1", T0 + timedelta(days=1), T0 + timedelta(seconds=1), SECRET_JPN)
    svc = service(store)
    mine = svc.read(ANALYST, "coll", "object", {}, T0, object_id="report--1").rows
    assert [r.version_at for r in mine] == [T0]  # the newer SECRET version is not betrayed
    theirs = svc.read(SENIOR, "coll", "object", {}, T0, object_id="report--1").rows
    assert [r.version_at for r in theirs] == [T0 + timedelta(days=1)]


def test_unknown_tokens_and_wrong_names_do_not_authenticate() -> None:
    store = MemoryStore(users={token_hash("t0k"): ("aiko", ANALYST)})
    svc = service(store)
    assert svc.authenticate("t0k") == ANALYST
    assert svc.authenticate("t0k", "aiko") == ANALYST
    assert svc.authenticate("t0k", "kenji") is None
    assert svc.authenticate("other") is None and svc.authenticate("") is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 2),
                          st.integers(0, 6)), min_size=0, max_size=40),
       st.integers(1, 7), st.sampled_from(["last", "first", "all"]),
       st.sampled_from([None, "indicator", "report"]))
def test_paging_with_cursors_yields_each_selected_version_once(
        spec: list[tuple[int, int, int, int]], limit: int, version: str,
        kind: str | None) -> None:
    """Across two service instances (two API processes) sharing the store and the secret."""
    store = MemoryStore()
    for obj, ver, lab, added in spec:
        kind_of = "indicator" if obj % 2 else "report"
        store.put(f"{kind_of}--{obj}", T0 + timedelta(days=ver),
                  T0 + timedelta(seconds=added), (SECRET_JPN, CONF_JPN, OTHER_PURPOSE)[lab])
    params: dict[str, list[str]] = {"match[version]": [version], "limit": [str(limit)]}
    if kind:
        params["match[type]"] = [kind]
    a, b = service(store), service(store)
    expected, _ = select_rows([r for r, _, _ in store.rows],
                              parse_filters(params, "objects"), a.visible(SENIOR), after=None,
                              limit=10**6)
    got: list[str] = []
    served = a.read(SENIOR, "coll", "objects", params, T0)
    got += [r.key for r in served.rows]
    turn = 0
    while served.more:
        assert served.next is not None and len(served.rows) == limit
        turn += 1
        svc = (a, b)[turn % 2]
        served = svc.read(SENIOR, "coll", "objects", {**params, "next": [served.next]}, T0)
        got += [r.key for r in served.rows]
    assert got == [r.key for r in expected]
    assert len(set(got)) == len(got)


def test_a_cursor_from_another_node_or_reader_is_refused() -> None:
    store = holdings()
    page = service(store).read(SENIOR, "coll", "objects", {"limit": ["2"]}, T0)
    assert page.more and page.next
    with pytest.raises(MalformedInput):
        service(store, b"z" * 32).read(SENIOR, "coll", "objects",
                                       {"limit": ["2"], "next": [page.next]}, T0)
    with pytest.raises(MalformedInput):
        service(store).read(ANALYST, "coll", "objects", {"limit": ["2"], "next": [page.next]},
                            T0)


def _marking(label: SecurityLabel) -> dict[str, Any]:
    from gsomia.core.stix import label_marking
    return label_marking(label, label.english_marking(SCHEMES), created=T0)


def test_publishing_needs_a_label_this_node_originates_that_the_publisher_may_read() -> None:
    store = MemoryStore()
    svc = service(store)
    conf, secret = _marking(CONF_JPN), _marking(SECRET_JPN)
    kor = _marking(SecurityLabel("KOR", "군사III급비밀", frozenset({"KOR", "JPN"}),
                                 "dprk-missile"))

    def obj(n: int, refs: list[str]) -> dict[str, Any]:
        return {"type": "indicator", "id": f"indicator--{n}", "modified": taxii_time(T0),
                "object_marking_refs": refs}

    body = {"objects": [conf, secret, kor, obj(1, [conf["id"]]), obj(2, [secret["id"]]),
                        obj(3, []), obj(4, [kor["id"]]), obj(5, [conf["id"], secret["id"]]),
                        {"type": "indicator", "id": "indicator--6",
                         "object_marking_refs": [conf["id"]]}]}
    result = svc.add(ANALYST, "coll", body, TAXII_MEDIA, T0, "status-1")
    ok = {s["id"] for s in result["successes"]}
    bad = {f["id"]: f["message"] for f in result["failures"]}
    assert "indicator--1" in ok and conf["id"] in ok
    # a label marking is kept like any object: only by a poster cleared for it, only here
    assert bad[secret["id"]] == REFUSED_TO_PUBLISH and "originated by KOR" in bad[kor["id"]]
    assert bad["indicator--2"] == REFUSED_TO_PUBLISH
    assert "no gsomia security label" in bad["indicator--3"]
    assert "originated by KOR" in bad["indicator--4"]
    assert "more than one" in bad["indicator--5"]
    assert "no modified" in bad["indicator--6"]
    assert [r.id for r, _, _ in store.rows] == [conf["id"], "indicator--1"]
    # the refusals for her rights on record, with the rule's own reasons she is not told
    [refused] = store.refused
    assert (refused.person, refused.count) == ("aiko", 2)
    assert set(refused.item_ids) == {secret["id"], "indicator--2"}
    assert refused.reasons and REFUSED_TO_PUBLISH not in refused.reasons
    assert svc.status(ANALYST, "status-1") == result
    with pytest.raises(NotFound):
        svc.status(SENIOR, "status-1")  # another person's status is not theirs to see
    bad_body: Any
    for bad_body in ({}, [], {"objects": []}, {"objects": [1]}, {"type": "bundle"},
                     {"type": "indicator", "objects": [conf]},
                     {"objects": [{"id": "x"}]}):
        with pytest.raises(MalformedInput):
            svc.add(ANALYST, "coll", bad_body, TAXII_MEDIA, T0, "s")


def test_an_object_nested_too_deep_refuses_the_post_before_anything_walks_it() -> None:
    """The service's is the only depth check of a posted object (the API's went, and
    publish_many takes it as done): a deep one is bad input, nothing stored."""
    from gsomia.core.limits import MAX_DEPTH

    store = MemoryStore()
    svc = service(store)
    conf = _marking(CONF_JPN)
    deep: Any = "x"
    for _ in range(MAX_DEPTH):  # the object itself is one level more
        deep = [deep]
    obj = {"type": "indicator", "id": "indicator--1", "modified": taxii_time(T0),
           "object_marking_refs": [conf["id"]], "x_deep": deep}
    with pytest.raises(MalformedInput) as refused:
        svc.add(SENIOR, "coll", {"objects": [conf, obj]}, TAXII_MEDIA, T0, "deep")
    assert refused.value.where == "body.objects[1]" and store.rows == []
    obj["x_deep"] = deep[0]  # at the bound: taken
    assert svc.add(SENIOR, "coll", {"objects": [conf, obj]}, TAXII_MEDIA, T0, "ok")[
        "failure_count"] == 0


# ---- issue 14: label markings kept as objects, labelled collections ---------------------------

_JPN_LEVELS = st.sampled_from(["機密", "極秘", "秘"])
_PEOPLE = st.builds(lambda clearance, ntk: Person("p", "JPN", clearance, frozenset(ntk)),
                    _JPN_LEVELS, st.sets(st.sampled_from(["dprk-missile", "china-maritime"])))
_LABELS = st.builds(lambda level, rel_to, purpose: SecurityLabel("JPN", level, rel_to, purpose),
                    _JPN_LEVELS, st.sets(st.sampled_from(["JPN", "KOR", "USA"]), min_size=1)
                    .map(frozenset), st.sampled_from(["dprk-missile", "china-maritime"]))
TOP = Person("top", "JPN", "機密", frozenset({"dprk-missile", "china-maritime"}))


def _answer(svc: TaxiiService, person: Person, label: SecurityLabel, n: int) -> Any:
    """The status ``person`` gets for an object that references ``label``'s marking (not sent
    along), without its id and time."""
    obj = {"type": "indicator", "id": f"indicator--{n}", "modified": taxii_time(T0),
           "object_marking_refs": [_marking(label)["id"]]}
    body = svc.add(person, "coll", {"objects": [obj]}, TAXII_MEDIA, T0, f"s{n}")
    return [body["success_count"], body["failure_count"],
            [f["message"] for f in body["failures"]]]


@settings(max_examples=200, deadline=None)
@given(person=_PEOPLE, label=_LABELS, kept_as=st.sampled_from(["marking", "item"]))
def test_a_label_one_may_not_read_answers_as_one_never_held(
        person: Person, label: SecurityLabel, kept_as: str) -> None:
    """Held as a kept marking-definition or as the label of an item, a label the poster may
    not read is, to them, one that is not there; one they may read they may use."""
    store = MemoryStore()
    svc = service(store)
    before = _answer(svc, person, label, 1)
    objs = [_marking(label)] + ([{"type": "indicator", "id": "indicator--0",
                                  "modified": taxii_time(T0),
                                  "object_marking_refs": [_marking(label)["id"]]}]
                                if kept_as == "item" else [])
    assert svc.add(TOP, "coll", {"objects": objs}, TAXII_MEDIA, T0, "s0")["failure_count"] == 0
    after = _answer(svc, person, label, 2)
    if svc.visible(person):
        assert after == [1, 0, []]
    else:
        assert after == before and before[2] != [REFUSED_TO_PUBLISH]
        assert "no gsomia security label" in before[2][0]


@settings(max_examples=200, deadline=None)
@given(person=_PEOPLE, label=_LABELS)
def test_a_labelled_collection_exists_only_for_those_who_may_read_its_label(
        person: Person, label: SecurityLabel) -> None:
    from gsomia.core.policy import decide_access
    from gsomia.core.taxii import TaxiiCollection

    store = MemoryStore()
    svc = TaxiiService(store, party="JPN", vocabulary=VOCABULARY, cursor_secret=SECRET,
                       collection_id="coll", check=check,
                       collections=[TaxiiCollection("labelled", "t", "", label)])
    may = decide_access(person, label, SCHEMES).permit
    assert ("labelled" in {c.id for c in svc.collections_for(person)}) is may
    plain = {"objects": [{"type": "indicator", "id": "indicator--1",
                          "modified": taxii_time(T0)}]}
    if not may:
        for call in (lambda c: svc.collection_for(person, c),
                     lambda c: svc.read(person, c, "objects", {}, T0),
                     lambda c: svc.add(person, c, plain, TAXII_MEDIA, T0, "s")):
            for cid in ("labelled", "absent"):
                with pytest.raises(NotFound):
                    call(cid)
        # posts to either are on record alike (the same work whichever it was)
        assert [r.collection for r in store.refused] == ["labelled", "absent"]
        return
    body = svc.add(person, "labelled", plain, TAXII_MEDIA, T0, "s")
    assert body["success_count"] == 1  # the label applied, its marking kept alongside
    stored = {r.id: (lb, json.loads(c)) for r, lb, c in store.rows}
    assert stored["indicator--1"][0] == label
    assert stored["indicator--1"][1]["object_marking_refs"] == [_marking(label)["id"]]
    assert stored[_marking(label)["id"]][0] == label
    served = svc.read(person, "labelled", "objects", {}, T0).rows
    assert {r.id for r in served} == set(stored)


_ENTRY = {"name": "dprk-conf", "level": "秘", "rel_to": ["JPN", "KOR"], "purpose": "dprk-missile"}


@settings(max_examples=200)
@given(key=st.sampled_from(["level", "rel_to", "purpose", "caveats", "category", "policy",
                            "name", "colour"]),
       value=st.one_of(st.text(max_size=12), st.lists(st.text(max_size=5), max_size=3),
                       st.integers()))
def test_a_collection_with_a_value_the_agreements_do_not_know_never_parses(
        key: str, value: Any) -> None:
    from gsomia.core.taxii import collection_id, parse_collections

    entry = {**_ENTRY, key: value}
    try:
        (parsed,) = parse_collections([entry], party="JPN", vocabulary=VOCABULARY, where="t")
    except MalformedInput as exc:
        assert exc.where.startswith("t[0]")
        return
    # what parses holds only known values, and keeps its name's id
    assert parsed.id == collection_id("JPN", str(entry["name"]))
    assert parsed.label is not None and VOCABULARY.check(parsed.label) == parsed.label
    assert key != "colour"


def test_collections_keep_their_ids_and_refuse_a_second_name() -> None:
    from gsomia.core.taxii import collection_id, parse_collections

    (one,) = parse_collections([_ENTRY], party="JPN", vocabulary=VOCABULARY, where="t")
    assert one.id == collection_id("JPN", "dprk-conf") != collection_id("JPN")
    assert one.label == SecurityLabel("JPN", "秘", frozenset({"JPN", "KOR"}), "dprk-missile")
    with pytest.raises(MalformedInput, match="taken"):
        parse_collections([_ENTRY, _ENTRY], party="JPN", vocabulary=VOCABULARY, where="t")
