"""Three real node processes on loopback (``gsomia federation up``): delivery, relays under
consent, refusals of forged, replayed, tampered and misaddressed envelopes, a partner that
stops and comes back, and every node's audit log intact afterwards."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gsomia import bootstrap
from gsomia.core import crypto
from gsomia.core.audit import AuditKind
from gsomia.core.labels import SecurityLabel
from gsomia.service import handlers
from gsomia.shell import exchange, federation
from gsomia.shell.commands import federation as federation_commands
from gsomia.shell.node import Node
from starting import WAIT_S

pytestmark = [pytest.mark.timeout(170), pytest.mark.slow]

WAIT = WAIT_S  # a hang guard (starting.py)


def cli() -> click.Group:
    group = click.Group()
    federation_commands.register(group)
    return group


class Federation:
    def __init__(self, folder: Path, topology: str) -> None:
        self.folder = folder
        self.topology = topology
        self.base = federation.free_base_port()
        self.nodes: dict[str, Node] = {}

    def up(self, first_base: int | None = None) -> dict[str, Any]:
        """Start the nodes not running: the first time on free ports (from ``first_base``,
        if given), then on the same ones."""
        if self.nodes:
            doc = federation.up(self.folder, self.topology, self.base)
        else:
            doc = federation.up_on_free_ports(self.folder, self.topology,
                                              first_base=first_base)
            self.base = doc["base_port"]
        for code in ("JPN", "KOR", "USA"):
            if code not in self.nodes:
                self.nodes[code] = bootstrap.open_node(self.folder / code)
        return doc

    def down(self) -> dict[str, str]:
        return federation.down(self.folder)

    @classmethod
    @contextmanager
    def running(cls, folder: Path, topology: str,
                prepare: Callable[[Federation], None] | None = None,
                first_base: int | None = None) -> Iterator[Federation]:
        """Up for the block, then down and closed whatever happened in it. ``prepare``: a
        change to the node folders, made once they exist and before the nodes start."""
        fed = cls(folder, topology)
        try:
            if prepare is not None:
                federation.configure(folder, topology, fed.base)
                prepare(fed)
            fed.up(first_base)
            yield fed
        finally:
            fed.down()
            fed.close()

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()
        self.nodes.clear()


PLANTED = "import pathlib\npathlib.Path(__file__).with_name('ran').touch()\nraise SystemExit(3)\n"


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    fed = Federation(tmp_path_factory.mktemp("direct"), "direct")
    # Started from a folder in which someone planted a ``gsomia`` package: the nodes must
    # run the installed one (test_nodes_run_the_installed_gsomia_not_one_planted_beside).
    planted = fed.folder.parent / "planted"
    (planted / "gsomia").mkdir(parents=True)
    (planted / "gsomia" / "__init__.py").write_text(PLANTED, encoding="utf-8")
    here = os.getcwd()
    try:
        os.chdir(planted)
        try:
            fed.up()
        finally:
            os.chdir(here)
        yield fed
    finally:
        fed.down()
        fed.close()


def test_nodes_run_the_installed_gsomia_not_one_planted_beside(direct: Federation) -> None:
    """`federation up` run from a folder others may write: the nodes run the installed
    gsomia with the node's keys, never a package planted in that folder (``python -m`` puts
    the working folder first on the module path; ``-P`` does not)."""
    planted = direct.folder.parent / "planted" / "gsomia"
    assert planted.is_dir()
    assert not (planted / "ran").exists()
    assert all(federation.running_pid(direct.folder / code) for code in direct.nodes)


def indicator(n: int | None = None) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
            "name": f"launch preparation {n if n is not None else ''}".strip(),
            "pattern": "[ipv4-addr:value = '10.0.0.1']", "pattern_type": "stix",
            "valid_from": "2026-11-01T00:00:00Z"}


def publish(node: Node, obj: dict[str, Any], level: str, rel_to: tuple[str, ...],
            caveats: frozenset[str] = frozenset()) -> str:
    exchange.publish(node, entries=[(obj, handlers.LabelRequest(level, rel_to,
                                                                "dprk-missile", caveats))])
    return str(obj["id"])


def custody(node: Node, item_id: str) -> list[Any]:
    with node.store.repository() as repo:
        return [r for item in repo.item_versions(item_id)
                for r in repo.custody_of(item.item_id, item.version)]


def held(node: Node, item_id: str) -> bool:
    with node.store.repository() as repo:
        return repo.get_item(item_id) is not None


def drained(*nodes: Node) -> bool:
    return all(exchange.pending(n) == 0 for n in nodes)


def deliveries_of(node: Node, item_id: str | None = None) -> list[dict[str, Any]]:
    """What ``node``'s outbox says of its deliveries (of ``item_id``; else of those
    pending): what a wait for them shows when it ends (``starting.waited``)."""
    return [{k: r.get(k) for k in ("item_id", "recipient", "status", "attempts", "last_error")}
            for r in exchange.outbox_rows(node)
            if (r["item_id"] == item_id if item_id is not None
                else r["status"] == exchange.PENDING)]


def events(node: Node, kind: AuditKind) -> list[dict[str, Any]]:
    with node.store.reader() as reader:
        return [dict(r) for r in reader.rows() if r["kind"] == kind.value]


# ---- direct ---------------------------------------------------------------------------------


def test_direct_delivery_is_remarked_and_receipted(direct: Federation) -> None:
    kor, jpn, usa = direct.nodes["KOR"], direct.nodes["JPN"], direct.nodes["USA"]
    item = publish(kor, indicator(), "군사II급비밀", ("KOR", "JPN"))
    assert exchange.wait_until(lambda: held(jpn, item), WAIT)
    record = custody(jpn, item)
    assert [r.event for r in record] == ["received"]
    assert record[0].national_label.level == "極秘"
    assert record[0].provider == "KOR" and record[0].agreement == "jpn-kor-gsomia-2016"
    assert exchange.wait_until(lambda: drained(kor), WAIT)
    with kor.store.repository() as repo:
        receipts = repo.receipts_for(item)
    assert [(r.peer, r.direction) for r in receipts] == [("JPN", "obtained")]
    crypto.verify_receipt(crypto.Receipt.from_json(receipts[0].document),
                          jpn.keys.public_signing_key())
    # USA is not in REL TO: nothing was even queued for it.
    assert not held(usa, item)
    assert {r["recipient"] for r in exchange.outbox_rows(kor) if r["item_id"] == item} \
        == {"JPN"}


def test_items_show_the_releases_and_receipts_of_an_item(direct: Federation,
                                                         gsomia: Any) -> None:
    """``items --json`` at the originator: created, released to each partner the policy
    permits, and each partner's signed receipt; at a recipient: received, receipt given."""
    import json

    kor, jpn = direct.nodes["KOR"], direct.nodes["JPN"]
    item = publish(kor, indicator(), "군사II급비밀", ("KOR", "JPN", "USA"))
    assert exchange.wait_until(lambda: drained(kor), WAIT)

    def trail(node: Node) -> list[dict[str, Any]]:
        out = gsomia("items", "--node", str(node.folder), "--json")
        assert out.returncode == 0, out.stderr
        found = [i for i in json.loads(out.stdout)["items"] if i["id"] == item]
        assert len(found) == 1
        return list(found[0]["custody"])

    at_kor = trail(kor)
    assert [c["event"] for c in at_kor] == ["created", "released", "released", "receipt",
                                            "receipt"]
    assert {c["recipient"] for c in at_kor if c["event"] == "released"} == {"JPN", "USA"}
    assert all(c["delivery"] == "delivered" for c in at_kor if c["event"] == "released")
    assert {(c["direction"], c["from"]) for c in at_kor if c["event"] == "receipt"} \
        == {("obtained", "JPN"), ("obtained", "USA")}
    at_jpn = trail(jpn)
    assert [(c["event"], c.get("provider"), c.get("to")) for c in at_jpn] \
        == [("received", "KOR", None), ("receipt", None, "KOR")]


def _client(node: Node) -> Any:
    return exchange.peer_client(node.folder)


def _envelope(sender: Node, recipient: Node, obj: dict[str, Any], label: SecurityLabel,
              *, key: Any = None, to: str | None = None) -> crypto.Envelope:
    binding = crypto.bind(label.to_json(), obj, sender.keys.signing_key())
    payload = {"object": obj, "label": label.to_json(), "binding": binding.to_json(),
               "consents": []}
    return crypto.seal_envelope(
        sender=sender.party, recipient=to or recipient.party, item_id=obj["id"],
        version=obj["modified"], nonce=os.urandom(16), sent_at=datetime.now(UTC),
        payload=payload, sender_key=key or sender.keys.signing_key(),
        recipient_public=recipient.keys.envelope_key().public_key())


def _flip(text: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_bad_envelopes_are_refused_and_audited(direct: Federation) -> None:
    kor, jpn = direct.nodes["KOR"], direct.nodes["JPN"]
    url = direct.up()["nodes"]["JPN"]["url"] + "/peer/v1/envelopes/"
    now = datetime.now(UTC)
    label = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "JPN"}), "dprk-missile",
                          frozenset(), created=now)
    before = len(events(jpn, AuditKind.ENVELOPE_REFUSED))
    good = _envelope(kor, jpn, indicator(), label)
    with _client(kor) as client:
        first = client.post(url, content=json.dumps(good.to_json()))
        assert first.status_code == 202, first.text
        crypto.verify_receipt(crypto.Receipt.from_json(first.json()), jpn.keys
                              .public_signing_key(), envelope=good)
        replayed = client.post(url, content=json.dumps(good.to_json()))
        assert replayed.status_code == 409 and "replayed" in replayed.text
        tampered = _envelope(kor, jpn, indicator(), label).to_json()
        tampered["ciphertext"] = _flip(tampered["ciphertext"])
        forged = _envelope(kor, jpn, indicator(), label, key=crypto.new_signing_key())
        usa = direct.nodes["USA"]
        misaddressed = _envelope(kor, usa, indicator(), label)
        not_rel_to = _envelope(kor, jpn, indicator(), SecurityLabel(
            "KOR", "군사II급비밀", frozenset({"KOR", "USA"}), "dprk-missile", frozenset(),
            created=now))
        for doc in (tampered, forged.to_json(), misaddressed.to_json(),
                    not_rel_to.to_json()):
            answer = client.post(url, content=json.dumps(doc))
            assert 400 <= answer.status_code < 500, answer.text
            assert "json" in answer.headers["content-type"]
            assert answer.json()["http_status"] == str(answer.status_code)
    # Another party's certificate cannot send in KOR's name.
    with _client(direct.nodes["USA"]) as client:
        answer = client.post(url, content=json.dumps(_envelope(kor, jpn, indicator(),
                                                               label).to_json()))
        assert answer.status_code == 403
    refused = events(jpn, AuditKind.ENVELOPE_REFUSED)[before:]
    assert len(refused) >= 5
    reasons = " ".join(json.dumps(e["details"], ensure_ascii=False) for e in refused)
    for word in ("replayed", "does not verify", "addressed to USA", "REL TO"):
        assert word in reasons, word
    assert not held(jpn, not_rel_to.item_id)


@pytest.mark.parametrize(("change", "field"), [
    ({"rel_to": frozenset({"KOR", "JPN", "XYZ"})}, "rel_to"),
    ({"purpose": "no-such-purpose"}, "purpose"),
    ({"category": "gossip"}, "category"),
    ({"policy": "no-such-agreement"}, "policy"),
])
def test_a_partner_label_with_an_unknown_value_is_422_and_not_stored(
        direct: Federation, change: dict[str, Any], field: str) -> None:
    """Issue 10, finding 8, partner path: KOR's own signed and bound label that names a
    party or purpose no agreement knows is bad input at JPN, not an item it holds."""
    import dataclasses

    kor, jpn = direct.nodes["KOR"], direct.nodes["JPN"]
    url = direct.up()["nodes"]["JPN"]["url"] + "/peer/v1/envelopes/"
    label = dataclasses.replace(SecurityLabel(
        "KOR", "군사II급비밀", frozenset({"KOR", "JPN"}), "dprk-missile",
        created=datetime.now(UTC)), **change)
    envelope = _envelope(kor, jpn, indicator(), label)
    with _client(kor) as client:
        answer = client.post(url, content=json.dumps(envelope.to_json()))
    assert answer.status_code == 422, answer.text
    assert "json" in answer.headers["content-type"]
    assert f"envelope payload.label.{field}" in answer.json()["description"]
    assert not held(jpn, envelope.item_id)
    refused = events(jpn, AuditKind.ENVELOPE_REFUSED)
    assert any(e["item_id"] == envelope.item_id for e in refused)


def test_a_consent_request_for_an_unknown_party_is_bad_input(direct: Federation) -> None:
    """Issue 10, finding 8, consents: a request to release to XYZ was sent to the originator
    and recorded there; it is bad input at the holder's command line and at the peer API."""
    import subprocess
    import sys

    kor, jpn = direct.nodes["KOR"], direct.nodes["JPN"]
    item = publish(kor, indicator(), "군사II급비밀", ("KOR", "JPN"))
    assert exchange.wait_until(lambda: held(jpn, item), WAIT)
    done = subprocess.run(
        [sys.executable, "-m", "gsomia", "consent", "request", "--node",
         str(direct.folder / "JPN"), "--item", item, "--to", "XYZ"],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, (done.stdout, done.stderr)
    (line,) = done.stderr.strip().splitlines()
    assert "--to: 'XYZ' is not a party this node knows" in line and "JPN, KOR, USA" in line
    url = direct.up()["nodes"]["KOR"]["url"] + "/peer/v1/consents/requests/"
    with _client(jpn) as client:
        answer = client.post(url, content=json.dumps(
            {"item_id": item, "recipient": "XYZ", "reason": "test"}))
    assert answer.status_code == 422, answer.text
    assert answer.json()["details"]["where"] == "recipient"
    assert not [r for r in exchange.consent_rows(kor) if r["recipient"] == "XYZ"]


def test_stopped_partner_receives_everything_exactly_once(direct: Federation) -> None:
    kor, jpn = direct.nodes["KOR"], direct.nodes["JPN"]
    ids = [publish(kor, indicator(i), "군사III급비밀", ("KOR", "JPN")) for i in range(5)]
    assert federation.stop_node(direct.folder / "JPN") == "stopped"
    ids += [publish(kor, indicator(i), "군사III급비밀", ("KOR", "JPN")) for i in range(5, 30)]
    assert exchange.wait_until(
        lambda: any(r["attempts"] > 0 and r["last_error"] for r in exchange.outbox_rows(kor)
                    if r["item_id"] in ids[5:]), WAIT)
    direct.up()
    assert exchange.wait_until(lambda: all(held(jpn, i) for i in ids), WAIT * 2)
    assert exchange.wait_until(lambda: drained(kor), WAIT)
    received = [e["item_id"] for e in events(jpn, AuditKind.RECEIVED) if e["item_id"] in ids]
    assert sorted(received) == sorted(ids)
    for item in ids:
        assert [r.event for r in custody(jpn, item)] == ["received"]


def test_a_receipt_does_not_wait_for_the_head_copy(direct: Federation) -> None:
    """JPN signs its receipt once its database holds the item (one disk sync), not after the
    tree head's copy beside it is written too: with that copy held up (its folder's lock
    taken here, as a slow disk would), KOR's items still arrive and are receipted. JPN killed
    before the copy is written loses none of them and starts again; the copy then catches up
    with JPN's log."""
    import fcntl

    from gsomia.shell.store import read_external_head

    kor, jpn = direct.nodes["KOR"], direct.nodes["JPN"]
    head_file = direct.folder / "JPN" / "tree-head.json"
    folder = os.open(direct.folder / "JPN", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        before = read_external_head(head_file)
        ids = [publish(kor, indicator(i), "군사III급비밀", ("KOR", "JPN")) for i in range(3)]
        assert exchange.wait_until(lambda: drained(kor), WAIT), \
            "JPN's receipts waited for the head's copy"
        assert all(held(jpn, i) for i in ids)
        assert read_external_head(head_file) == before  # still held up
        # JPN killed now, between its commits and their copy: nothing is lost, and a copy
        # behind the database is no rollback: the node starts again.
        pid = federation.running_pid(direct.folder / "JPN")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert exchange.wait_until(
            lambda: federation.running_pid(direct.folder / "JPN") is None, WAIT)
    finally:
        os.close(folder)  # and with it the lock
    assert read_external_head(head_file) == before
    direct.up()
    more = publish(kor, indicator(3), "군사III급비밀", ("KOR", "JPN"))
    assert exchange.wait_until(lambda: held(jpn, more) and drained(kor), WAIT)
    assert all(held(jpn, i) for i in ids)
    with jpn.store.reader() as reader:
        latest = reader.latest_head()
    assert latest is not None and (before is None or latest.size > before.size)
    # The newest commit may be one that waits for no disk sync (JPN recording KOR's tree head,
    # or settling KOR's receipts for what JPN sent): its head is copied by JPN's copier once
    # the log is synced, within a second, with no later commit needed (it once waited for
    # one, and under load none came within the wait).
    copied = exchange.wait_until(
        lambda: (head := read_external_head(head_file)) is not None and
        head.size >= latest.size, WAIT)
    if not copied:
        head = read_external_head(head_file)
        with jpn.store.reader() as reader:
            behind = [e["kind"] for n in range(-1 if head is None else head.size,
                                               latest.size + 1)
                      if (e := reader.event(n)) is not None]
        raise AssertionError(f"the head's copy did not catch up once it could be: the copy "
                             f"at {head and head.size}, the log at {latest.size}; the "
                             f"events past the copy: {behind}")
    from gsomia.shell.commands import node as node_commands

    group = click.Group()
    node_commands.register(group)
    verified = CliRunner().invoke(group, ["audit", "verify", "--node", str(direct.folder / "JPN")])
    assert verified.exit_code == 0 and "intact" in verified.output, verified.output


def test_a_delivery_whose_commit_signal_is_lost_goes_by_the_fallback_pass(
        direct: Federation, monkeypatch: pytest.MonkeyPatch) -> None:
    """KOR's sender sleeps until a commit is signalled or a queued row is due, and passes
    anyway every ``FALLBACK_S`` seconds: an item stored at KOR whose commit signal never
    arrived (this process's signals to KOR's database sent nowhere, as a lost datagram)
    still reaches JPN, and is receipted."""
    from gsomia.shell import store as node_store

    kor, jpn = direct.nodes["KOR"], direct.nodes["JPN"]
    monkeypatch.setitem(node_store._signal._SIGNAL, str(kor.store.engine.url), "")
    item = publish(kor, indicator(), "군사III급비밀", ("KOR", "JPN"))
    assert exchange.wait_until(lambda: held(jpn, item) and drained(kor),
                               exchange.FALLBACK_S + WAIT)
    assert [r.event for r in custody(jpn, item)] == ["received"]


def test_a_partner_slow_to_answer_holds_up_no_other_link(direct: Federation) -> None:
    """Each partner link has its own courier loop: with USA's node frozen (SIGSTOP: its
    socket takes the connection and never answers, as a partner slow to answer), KOR's
    reports for JPN still reach JPN and are receipted while KOR's request to USA goes
    unanswered: KOR records JPN's receipt before it records that request's failure (its
    timeout, 10 s), which a courier waiting for USA's answer first could not do. The order
    of the records is the claim, not a time. Once USA answers again it receives what was
    held for it, exactly once."""
    kor, jpn, usa = direct.nodes["KOR"], direct.nodes["JPN"], direct.nodes["USA"]
    pid = federation.running_pid(direct.folder / "USA")
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        # USA's batch is in flight, and unanswered, before JPN's report is committed.
        to_all = publish(kor, indicator(), "군사III급비밀", ("KOR", "JPN", "USA"))
        assert exchange.wait_until(lambda: held(jpn, to_all), WAIT)
        report = publish(kor, indicator(), "군사III급비밀", ("KOR", "JPN"))
        to_usa: list[dict[str, Any]] = []

        def receipted() -> bool:
            # One read of KOR's outbox: USA's row as it stood when JPN's receipt was on record.
            rows = exchange.outbox_rows(kor)
            mine = [r for r in rows if r["item_id"] == report]
            if not mine or any(r["status"] != exchange.DELIVERED for r in mine):
                return False
            to_usa[:] = [r for r in rows if (r["item_id"], r["recipient"]) == (to_all, "USA")]
            return True

        assert exchange.wait_until(receipted, WAIT), "JPN's receipt of the report is not on record"
        [row] = to_usa
        assert (row["status"], row["attempts"], row["last_error"]) == \
            (exchange.PENDING, 0, None), f"JPN's receipt waited for USA's request to fail: {row}"
        assert held(jpn, report)
        assert not held(usa, to_all)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert exchange.wait_until(lambda: held(usa, to_all) and drained(kor), WAIT * 2)
    assert [r.event for r in custody(usa, to_all)] == ["received"]


def test_a_publish_by_the_command_line_is_queued_in_its_own_commit(
        direct: Federation, tmp_path: Path,
        gsomia: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """Whoever publishes, the delivery is queued in the publish's commit: with KOR's node
    stopped (no sender, so no outbox scan), ``gsomia publish`` leaves the delivery to JPN
    queued and on record; KOR's node started again delivers it."""
    kor, jpn = direct.nodes["KOR"], direct.nodes["JPN"]
    assert federation.stop_node(direct.folder / "KOR") == "stopped"
    try:
        item = indicator()
        source = tmp_path / "item.json"
        source.write_text(json.dumps(item), "utf-8")
        done = gsomia("publish", "--node", str(direct.folder / "KOR"), "--file", str(source),
                      "--level", "군사III급비밀", "--rel-to", "KOR,JPN",
                      "--purpose", "dprk-missile", "--json")
        assert done.returncode == 0, done.stderr
        [row] = [r for r in exchange.outbox_rows(kor) if r["item_id"] == item["id"]]
        assert (row["recipient"], row["status"]) == ("JPN", exchange.PENDING)
        queued = {e["seq"]: e for e in events(kor, AuditKind.DELIVERIES_QUEUED)}
        assert row["seq"] in queued
        stored = json.loads(done.stdout)["seq"]
        with kor.store.reader() as reader:
            heads = reader.head_sizes()
        # One commit, one signed head: none was signed between storing and queueing.
        assert row["seq"] > stored
        assert not [size for size in heads if stored < size <= row["seq"]]
    finally:
        direct.up()
    assert exchange.wait_until(lambda: held(jpn, item["id"]) and drained(kor), WAIT)


_LEVELS = ("군사I급비밀", "군사II급비밀", "군사III급비밀")

# What KOR may release to each partner at each level, read off GSOMIA.md, not computed by
# the release policy under test: the Japan–ROK GSOMIA (2016) covers 군사II급비밀 (SECRET) and
# 군사III급비밀 (CONFIDENTIAL) but not Korea's top level; the USA–ROK GSOMIA (1987) equates
# all three with TOP SECRET, SECRET and CONFIDENTIAL.
_COVERED = {("군사I급비밀", "JPN"): False, ("군사II급비밀", "JPN"): True,
            ("군사III급비밀", "JPN"): True, ("군사I급비밀", "USA"): True,
            ("군사II급비밀", "USA"): True, ("군사III급비밀", "USA"): True}


def expected_release(level: str, rel_to: set[str], noforn: bool, partner: str) -> bool:
    """A partner receives an item iff the label releases it to them, no caveat forbids
    foreign release, and an agreement between KOR and them covers its level."""
    return partner in rel_to and not noforn and _COVERED[(level, partner)]


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(level=st.sampled_from(_LEVELS),
       rel_to=st.sets(st.sampled_from(("JPN", "USA"))),
       noforn=st.booleans())
def test_a_party_never_receives_what_the_policy_denies(direct: Federation, level: str,
                                                       rel_to: set[str], noforn: bool) -> None:
    kor = direct.nodes["KOR"]
    caveats = frozenset({"NOFORN"}) if noforn else frozenset()
    obj = indicator()
    item = publish(kor, obj, level, ("KOR", *sorted(rel_to)), caveats)
    expected = {p: expected_release(level, rel_to, noforn, p) for p in ("JPN", "USA")}
    assert exchange.wait_until(lambda: drained(kor), WAIT)
    assert exchange.wait_until(
        lambda: all(held(direct.nodes[p], item) for p, ok in expected.items() if ok), WAIT)
    for p, ok in expected.items():
        assert held(direct.nodes[p], item) == ok, (p, level, rel_to, noforn)


def test_audit_verify_on_every_node_after_down(tmp_path: Path) -> None:
    """Its own federation, so that it holds whatever order the tests run in: every node's
    log verifies after an exchange and a stop.

    Its start meets another server on JPN's port, as any start on free ports may (another
    process takes a port between ``free_base_port()`` and the node's bind; ``scenario run
    --federation`` and ``demo`` start so): the federation starts on other ports."""
    with socket.create_server(("127.0.0.1", 0)) as taken, Federation.running(
            tmp_path / "verify", "direct", first_base=taken.getsockname()[1]) as fed:
        held_port = taken.getsockname()[1]
        assert fed.base != held_port
        assert federation.load_federation(fed.folder)["base_port"] == fed.base
        assert "address already in use" in (fed.folder / "JPN" / "node.log").read_text(
            "utf-8", "replace")
        assert all(node["answers"] for node in federation.status(fed.folder)["nodes"].values())
        kor, jpn, usa = fed.nodes["KOR"], fed.nodes["JPN"], fed.nodes["USA"]
        item = publish(kor, indicator(), "군사III급비밀", ("KOR", "JPN", "USA"))
        assert exchange.wait_until(lambda: held(jpn, item) and held(usa, item), WAIT)
        assert exchange.wait_until(lambda: drained(kor), WAIT)
        assert set(fed.down().values()) <= {"stopped", "not running"}
        from gsomia.shell.store import read_external_head

        for code in ("JPN", "KOR", "USA"):
            # A node copies its heads behind its commits, and all of them before it stops.
            with fed.nodes[code].store.reader() as reader:
                copied = read_external_head(fed.folder / code / "tree-head.json")
                assert copied is not None and copied == reader.latest_head(), code
        runner = CliRunner()
        from gsomia.shell.commands import node as node_commands

        group = click.Group()
        node_commands.register(group)
        for code in ("JPN", "KOR", "USA"):
            result = runner.invoke(group, ["audit", "verify", "--node",
                                           str(fed.folder / code)])
            assert result.exit_code == 0, result.output
            assert "intact" in result.output


# ---- hub --------------------------------------------------------------------------------------


def test_hub_relays_through_usa_only_with_consent(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "hub", "hub")
    runner = CliRunner()
    group = cli()
    try:
        status = fed.up()
        assert status["nodes"]["KOR"]["deliver_to"] == ["USA"]
        kor, jpn, usa = fed.nodes["KOR"], fed.nodes["JPN"], fed.nodes["USA"]
        item = publish(kor, indicator(), "군사II급비밀", ("KOR", "JPN", "USA"))
        usa_only = publish(kor, indicator(), "군사II급비밀", ("KOR", "USA"))
        assert exchange.wait_until(lambda: held(usa, item) and held(usa, usa_only), WAIT)
        assert exchange.wait_until(lambda: drained(kor, usa), WAIT)
        # Without KOR's consent USA may not pass it on (third-party rule).
        assert not held(jpn, item)
        asked = {}
        for wanted in (item, usa_only):
            result = runner.invoke(group, ["consent", "request", "--node",
                                           str(fed.folder / "USA"), "--item", wanted,
                                           "--to", "JPN", "--json"])
            assert result.exit_code == 0, result.output
            asked[wanted] = json.loads(result.output)["request"]
        listed = runner.invoke(group, ["consent", "list", "--node", str(fed.folder / "KOR"),
                                       "--json"])
        assert {r["id"] for r in json.loads(listed.output)["requests"]
                if r["status"] == "pending"} == set(asked.values())
        for wanted in (item, usa_only):
            result = runner.invoke(group, ["consent", "grant", "--node",
                                           str(fed.folder / "KOR"), "--request",
                                           asked[wanted], "--json"])
            assert result.exit_code == 0, result.output
        assert exchange.wait_until(lambda: held(jpn, item), WAIT)
        record = custody(jpn, item)
        assert record[0].provider == "USA" and record[0].agreement == "tisa-2014"
        assert record[0].national_label.level == "極秘"
        assert exchange.wait_until(lambda: drained(kor, usa), WAIT)
        # Consent does not override REL TO: JPN never gets what is not marked for it.
        assert not held(jpn, usa_only)
        requests = json.loads(runner.invoke(group, ["consent", "list", "--node",
                                                    str(fed.folder / "USA"),
                                                    "--json"]).output)["requests"]
        assert {r["status"] for r in requests} == {"granted"}
        # A request for an item of its own is refused before anything is sent.
        own = runner.invoke(group, ["consent", "request", "--node", str(fed.folder / "KOR"),
                                    "--item", item, "--to", "JPN"])
        assert own.exit_code != 0
    finally:
        stopped = fed.down()
        fed.close()
    assert set(stopped.values()) <= {"stopped"}
    from gsomia.shell.commands import node as node_commands

    verify = click.Group()
    node_commands.register(verify)
    for code in ("JPN", "KOR", "USA"):
        result = runner.invoke(verify, ["audit", "verify", "--node", str(fed.folder / code)])
        assert result.exit_code == 0, result.output
