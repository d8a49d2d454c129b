"""Issue 10, findings 2 and 3, against a real KOR node process (`gsomia node serve`, HTTPS on
loopback, real tokens): a person cleared to 군사III급비밀 cannot replace a 군사II급비밀 item,
and learns nothing about items they may not see, from a POST status, a GET (body, headers,
audit trail) or a ``next`` cursor. The cursor is also resumed by a second process of the
same node. A batch whose signing process dies is refused whole (issue 11, part 7)."""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_taxii_interop import free_port, start_node, wait_ready

from gsomia import bootstrap
from gsomia.bootstrap import collection_id
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Person, decide_access
from gsomia.core.stix import label_marking
from gsomia.core.taxii import TAXII_MEDIA
from gsomia.service import handlers
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import init_node, new_token
from gsomia.shell.store import audit_events, items
from starting import WAIT_S

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

CATALOGUE = load_catalogue()
OBJECTS = f"gsomia/collections/{collection_id('KOR')}/objects/"
II = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "JPN"}), "dprk-missile")
III = SecurityLabel("KOR", "군사III급비밀", frozenset({"KOR", "JPN"}), "dprk-missile")
T1, T2, T3 = ("2024-03-01T08:00:00.000Z", "2024-03-01T09:00:00.000Z",
              "2024-03-01T10:00:00.000Z")


@dataclass
class Served:
    url: str
    folder: Path
    tokens: dict[str, str]

    @property
    def ca(self) -> str:
        return str(self.folder / "tls" / "ca.crt")

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}", "Accept": TAXII_MEDIA}

    def get(self, who: str, path: str, url: str | None = None, **params: Any
            ) -> requests.Response:
        return requests.get((url or self.url) + path, headers=self.headers(who),
                            params=params, verify=self.ca, timeout=20)

    def post(self, who: str, label: SecurityLabel, objs: list[dict[str, Any]]
             ) -> dict[str, Any]:
        m = label_marking(label, label.english_marking(CATALOGUE.schemes),
                          created=datetime(2024, 3, 1, tzinfo=UTC))
        body = {"objects": [m, *({**o, "object_marking_refs": [m["id"]]} for o in objs)]}
        r = requests.post(self.url + OBJECTS, data=json.dumps(body, ensure_ascii=False),
                          headers={**self.headers(who), "Content-Type": TAXII_MEDIA},
                          verify=self.ca, timeout=20)
        assert r.status_code == 202, r.text
        return dict(r.json())


def _stop(process: Any) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except Exception:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def kor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("oracles") / "kor"
    made = init_node(folder, "KOR", catalogue=CATALOGUE, now=datetime.now(UTC))
    tokens = {}
    for name, clearance in (("kim", "군사II급비밀"), ("lee", "군사III급비밀")):
        tokens[name] = new_token()
        handlers.add_user(made.uow(), keys=made.keys, schemes=CATALOGUE.schemes, name=name,
                          clearance=clearance, need_to_know=["dprk-missile"],
                          token=tokens[name], now=datetime.now(UTC))
    made.close()
    port = free_port()
    process = start_node(folder, port)
    url = f"https://127.0.0.1:{port}/"
    try:
        wait_ready(url, str(folder / "tls" / "ca.crt"), process)
        yield Served(url, folder, tokens)
    finally:
        _stop(process)


def indicator(n: int | None = None, modified: str = T1) -> dict[str, Any]:
    oid = uuid.UUID(int=n, version=4) if n is not None else uuid.uuid4()
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{oid}",
            "created": T1, "modified": modified, "name": "TEL movement at Sinpo",
            "pattern": "[x-dprk-site:name = 'Sinpo']", "pattern_type": "stix",
            "valid_from": "2024-03-01T08:00:00Z"}


def failures(status: dict[str, Any]) -> list[dict[str, str]]:
    """The failures of a status, with the id and version each names taken out."""
    return [{k: v for k, v in f.items() if k not in ("id", "version")}
            for f in status["failures"]]


def shape(status: dict[str, Any]) -> dict[str, Any]:
    """What a status says of the items beyond their id and time: counts and outcomes. The
    label marking sent along is judged on its own label, which the poster chose."""
    items = {k: [o for o in status[k] if not o["id"].startswith("marking-definition--")]
             for k in ("successes", "failures")}
    return {"counts": [len(items["successes"]) + len(items["failures"]),
                       len(items["successes"]), len(items["failures"]),
                       status["pending_count"]],
            "successes": [s.get("message") for s in items["successes"]],
            "failures": failures(items)}


def events(served: Served, kind: str) -> list[Any]:
    engine = sa.create_engine(f"sqlite:///{served.folder / 'node.db'}")
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(audit_events).where(audit_events.c.kind == kind)
                                .order_by(audit_events.c.seq)).all()
    finally:
        engine.dispose()


# ---- finding 2: replacing a classified item ---------------------------------------------------


def test_a_low_cleared_person_cannot_replace_a_classified_item(kor: Served) -> None:
    item = indicator()
    assert kor.post("kim", II, [item])["success_count"] == 2
    # lee (군사III급비밀) posts the same id, a later version, marked CONFIDENTIAL
    attempt = kor.post("lee", III, [{**item, "modified": T2, "name": "nothing to see"}])
    assert attempt["success_count"] == 1 and attempt["failure_count"] == 1  # the marking
    assert failures(attempt) == [{"message": handlers.REFUSED_TO_PUBLISH}]
    # SECRET readers still see kim's version, the only one held
    got = kor.get("kim", f"{OBJECTS}{item['id']}/").json()["objects"]
    assert [(o["modified"], o["name"]) for o in got] == [(T1, item["name"])]
    assert kor.get("kim", f"{OBJECTS}{item['id']}/versions/").json()["versions"] == [T1]
    # and the versions endpoint does not answer lee
    assert kor.get("lee", f"{OBJECTS}{item['id']}/versions/").status_code == 404
    # kim may read it, but not change its label by publishing a version: only the
    # originator's classification-change procedure re-marks an item
    relabel = kor.post("kim", III, [{**item, "modified": T3}])
    assert failures(relabel) == [{"message": handlers.REFUSED_TO_PUBLISH}]
    same_label = kor.post("kim", II, [{**item, "modified": T3}])
    assert same_label["failure_count"] == 0
    assert kor.get("kim", f"{OBJECTS}{item['id']}/versions/").json()["versions"] == [T1, T3]


# ---- finding 3a: the POST status of an id one may not see -------------------------------------


def test_posting_an_invisible_id_answers_as_any_refused_object(kor: Served) -> None:
    hidden = indicator()
    kor.post("kim", II, [hidden])
    same_version = kor.post("lee", III, [hidden])
    new_version = kor.post("lee", III, [{**hidden, "modified": T2}])
    above_clearance = kor.post("lee", II, [indicator()])  # a fresh id lee may not publish
    assert shape(same_version) == shape(new_version) == shape(above_clearance)
    # (the III marking lee sent along may be "already held": lee may see that label)
    assert "already held" not in json.dumps(shape(same_version), ensure_ascii=False)
    assert shape(same_version)["failures"] == [{"message": handlers.REFUSED_TO_PUBLISH}]


# ---- finding 3b: a refused GET costs and says what an absent one does --------------------------


def test_absent_and_invisible_reads_answer_and_are_audited_alike(kor: Served) -> None:
    hidden, absent = indicator(), indicator()
    kor.post("kim", II, [hidden])
    before = len(events(kor, "access-denied"))
    for suffix in ("", "versions/"):
        a = kor.get("lee", f"{OBJECTS}{hidden['id']}/{suffix}")
        b = kor.get("lee", f"{OBJECTS}{absent['id']}/{suffix}")
        assert a.status_code == b.status_code == 404
        assert a.content == b.content
        assert {k: v for k, v in a.headers.items() if k.lower() != "date"} == \
            {k: v for k, v in b.headers.items() if k.lower() != "date"}
    deadline = time.monotonic() + WAIT_S  # a hang guard: logged off the request path
    while len(events(kor, "access-denied")) < before + 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = events(kor, "access-denied")[before:]
    assert len(logged) == 4  # both refusals of each, absent ones included
    by_item = {(e.item_id, json.loads(e.details)["via"]): e for e in logged}
    for via in ("taxii:object", "taxii:versions"):
        one, other = by_item[(hidden["id"], via)], by_item[(absent["id"], via)]
        assert one.actor == other.actor == "lee"
        assert sorted(json.loads(one.details)) == sorted(json.loads(other.details))
        assert any("below" in r for r in json.loads(one.details)["reasons"])
        assert json.loads(other.details)["reasons"] == [f"{absent['id']} is not held here"]


# ---- finding 3c: opaque cursors -----------------------------------------------------------------


def test_cursors_are_opaque_refused_when_changed_and_resumed_by_another_process(
        kor: Served) -> None:
    for _ in range(4):  # kim adds visible and hidden items in between lee's
        kor.post("kim", III, [indicator()])
        kor.post("kim", II, [indicator()])
    first = kor.get("lee", OBJECTS, limit=1)
    assert first.status_code == 200 and first.json()["more"] is True
    token = first.json()["next"]
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    second = kor.get("lee", OBJECTS, limit=1, next=token).json()["next"]
    # nothing to read: not the old signed form (JSON position, ".", signature), no JSON text
    # (any byte may occur in a ciphertext, so the test is that it does not parse), and one
    # size for every cursor
    assert "." not in token
    with pytest.raises(ValueError):
        json.loads(raw)
    assert len(second) == len(token)
    for char in range(0, len(token), 7):
        changed = token[:char] + ("A" if token[char] != "A" else "B") + token[char + 1:]
        r = kor.get("lee", OBJECTS, limit=1, next=changed)
        assert r.status_code == 400 and r.json()["details"]["where"] == "next"
    assert kor.get("kim", OBJECTS, limit=1, next=token).status_code == 400  # another caller
    # a second process of the same node (same key material) resumes the page
    port = free_port()
    process = start_node(kor.folder, port)
    other = f"https://127.0.0.1:{port}/"
    try:
        wait_ready(other, kor.ca, process)
        here = kor.get("lee", OBJECTS, limit=1, next=token)
        there = kor.get("lee", OBJECTS, url=other, limit=1, next=token)
        assert there.status_code == 200 and there.json() == here.json()
    finally:
        _stop(process)


# ---- properties over people and labels ---------------------------------------------------------

_LEVELS = ("군사I급비밀", "군사II급비밀", "군사III급비밀")
_PURPOSES = ("dprk-missile", "regional-security")
_people = iter(range(10**6))


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(clearance=st.sampled_from(_LEVELS),
       need_to_know=st.sets(st.sampled_from(_PURPOSES), min_size=1),
       level=st.sampled_from(_LEVELS), purpose=st.sampled_from(_PURPOSES),
       noforn=st.booleans())
def test_an_item_one_may_not_see_answers_as_an_absent_one(
        kor: Served, clearance: str, need_to_know: set[str], level: str, purpose: str,
        noforn: bool) -> None:
    name = f"p{next(_people)}"
    node = bootstrap.open_node(kor.folder)
    try:
        token = new_token()
        handlers.add_user(node.uow(), keys=node.keys, schemes=CATALOGUE.schemes, name=name,
                          clearance=clearance, need_to_know=sorted(need_to_know), token=token,
                          now=datetime.now(UTC))
        kor.tokens[name] = token
        item = indicator()
        caveats = ("NOFORN",) if noforn else ()
        handlers.publish(node.uow(), keys=node.keys, catalogue=CATALOGUE, obj=item,
                         label=handlers.LabelRequest(level, ("KOR", "JPN"), purpose,
                                                     frozenset(caveats)),
                         now=datetime.now(UTC))
    finally:
        node.close()
    label = SecurityLabel("KOR", level, frozenset({"KOR", "JPN"}), purpose, frozenset(caveats))
    person = Person(name, "KOR", clearance, frozenset(need_to_know))
    absent = indicator()
    for suffix in ("", "versions/"):
        seen = kor.get(name, f"{OBJECTS}{item['id']}/{suffix}")
        if decide_access(person, label, CATALOGUE.schemes).permit:
            assert seen.status_code == 200
            continue
        missing = kor.get(name, f"{OBJECTS}{absent['id']}/{suffix}")
        assert (seen.status_code, seen.content) == (missing.status_code, missing.content)
        assert seen.headers["content-type"] == missing.headers["content-type"]
    if not decide_access(person, label, CATALOGUE.schemes).permit:
        # posting its id, same or later version, under any label the person may read, is
        # refused in the words of any other refusal, and changes nothing
        own = SecurityLabel("KOR", clearance, frozenset({"KOR", "JPN"}),
                            sorted(need_to_know)[0])
        for version in (T1, T2):
            status = kor.post(name, own, [{**item, "modified": version}])
            assert failures(status) == [{"message": handlers.REFUSED_TO_PUBLISH}]
        node = bootstrap.open_node(kor.folder)
        try:
            with node.store.repository() as repo:
                assert [v.version for v in repo.item_versions(item["id"])] == [T1]
        finally:
            node.close()



def _signing_process(folder: Path) -> int:
    """The pid of the process signing this node's bindings (its command line names the
    node's key file, a path no other node has)."""
    key = str(folder / "keys" / "signing.key")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"gsomia.shell.binding_signer" in argv and key.encode() in argv:
                return int(entry.name)
    raise AssertionError("no signing process")


def _unread(pid: int) -> int:
    """Bytes written to the process's input pipe that it has not read."""
    import fcntl
    import struct
    import termios

    fd = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NONBLOCK)
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0])
    finally:
        os.close(fd)


def test_posts_of_objects_held_already_do_not_stall_the_signing_process(kor: Served) -> None:
    """A batch that stores nothing (every object held already: a client's retry) takes no
    signatures. Their answers, left unread in the signing process's pipe, once filled it:
    the process stopped reading and the next post hung for ever, every later one behind
    it. Each retry is answered, and a new batch after them is stored."""
    batch = [indicator() for _ in range(300)]
    assert kor.post("kim", II, batch)["success_count"] == 301
    for _ in range(16):  # 301 signatures a retry: ~11 filled both pipes
        again = kor.post("kim", II, batch)
        assert again["success_count"] == 301 and again["failure_count"] == 0, again
    fresh = kor.post("kim", II, [indicator() for _ in range(3)])
    assert fresh["success_count"] == 4 and fresh["failure_count"] == 0, fresh


def test_a_batch_whose_signing_process_dies_is_refused_whole_and_the_next_is_signed(
        kor: Served) -> None:
    """The bindings are signed on a process of the server's (``binding_signer``). Killed
    while a batch waits on it: that batch is a 503, nothing of it stored or logged; the next
    batch starts a new process and is stored."""
    assert kor.post("kim", II, [indicator()])["success_count"] == 2  # the process is up
    pid = _signing_process(kor.folder)
    batch = [indicator() for _ in range(60)]
    m = label_marking(II, II.english_marking(CATALOGUE.schemes),
                      created=datetime(2024, 3, 1, tzinfo=UTC))
    body = json.dumps({"objects": [m, *({**o, "object_marking_refs": [m["id"]]}
                                        for o in batch)]})
    engine = sa.create_engine(f"sqlite:///{kor.folder / 'node.db'}")
    with engine.connect() as conn:
        events_before = conn.execute(sa.select(sa.func.count())
                                     .select_from(audit_events)).scalar_one()
    answer: list[requests.Response] = []
    os.kill(pid, signal.SIGSTOP)  # it takes the batch's digests, and signs none of them
    try:
        poster = threading.Thread(target=lambda: answer.append(requests.post(
            kor.url + OBJECTS, data=body, verify=kor.ca, timeout=60,
            headers={**kor.headers("kim"), "Content-Type": TAXII_MEDIA})))
        poster.start()
        deadline = time.monotonic() + WAIT_S  # a hang guard
        # 61 objects (the marking, held, is checked with the rest): frames of 5, 25, 25
        # and 6 digests wait in its pipe, each a 4-byte count and 32 bytes a digest.
        while _unread(pid) < 4 * 4 + 61 * 32 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _unread(pid) == 4 * 4 + 61 * 32
    finally:
        os.kill(pid, signal.SIGKILL)
    poster.join(60)
    assert answer and answer[0].status_code == 503, answer and answer[0].text
    assert "signing process" in answer[0].json()["description"]
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(items).where(
                items.c.id.in_([o["id"] for o in batch]))).scalar_one()
            events_after = conn.execute(sa.select(sa.func.count())
                                        .select_from(audit_events)).scalar_one()
        assert stored == 0
        assert events_after == events_before  # no leaf of the refused batch
        for o in batch[:3]:
            assert kor.get("kim", f"{OBJECTS}{o['id']}/").status_code == 404
        status = kor.post("kim", II, batch)
        assert status["success_count"] == 61 and status["failure_count"] == 0, status
        assert _signing_process(kor.folder) != pid
    finally:
        engine.dispose()
