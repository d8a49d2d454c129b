"""Notices between three real node processes (``gsomia federation up``): an incident report
travels back to the originator, a reclassification reaches every holder and is re-marked in
the holder's scheme, tree heads are exchanged with consistency proofs, and forged, unsigned
or misaddressed notices are refused (4xx JSON) and audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from test_federation import Federation, custody, drained, events, held, indicator, publish

from gsomia.core.audit import AuditKind
from gsomia.core.custody import sign_classification_notice
from gsomia.service import handlers
from gsomia.shell import consents, exchange, notices
from gsomia.shell.commands import notices as notice_commands
from gsomia.shell.node import Node
from gsomia.shell.store import now_utc
from starting import WAIT_S

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

WAIT = WAIT_S  # a hang guard (starting.py)


def cli() -> click.Group:
    group = click.Group()
    notice_commands.register(group)
    return group


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli(), list(args))
    return result


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with Federation.running(tmp_path_factory.mktemp("notices"), "direct") as federation:
        yield federation


@pytest.fixture(scope="module")
def shared(fed: Federation) -> str:
    """A KOR item delivered to JPN (not to USA) and receipted at KOR."""
    kor, jpn = fed.nodes["KOR"], fed.nodes["JPN"]
    item = publish(kor, indicator(), "군사II급비밀", ("KOR", "JPN"))
    assert exchange.wait_until(lambda: held(jpn, item) and drained(kor), WAIT)
    return item


def _url(fed: Federation, code: str, path: str) -> str:
    return str(fed.up()["nodes"][code]["url"]) + path


def _delivered(node: Node, kind: str) -> bool:
    rows = [r for r in notices.notice_rows(node) if r["kind"] == kind]
    return bool(rows) and all(r["status"] == "delivered" for r in rows)


def test_incident_at_jpn_reaches_kor_and_its_audit(fed: Federation, shared: str) -> None:
    kor, jpn = fed.nodes["KOR"], fed.nodes["JPN"]
    result = invoke("incident", "report", "--node", str(fed.folder / "JPN"), shared,
                    "--kind", "possible-compromise", "--description",
                    "a laptop holding it was left on a train", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["queued_to"] == ["KOR"] and doc["notify"] == "KOR"
    assert exchange.wait_until(lambda: _delivered(jpn, notices.INCIDENT), WAIT)
    received = [r for r in notices.incident_rows(kor) if r["direction"] == "received"]
    assert len(received) == 1
    assert received[0]["item_id"] == shared and received[0]["reported_by"] == "JPN"
    assert "laptop" in received[0]["description"]
    assert doc["reference"] in received[0]["description"]
    audited = [e for e in events(kor, AuditKind.INCIDENT) if e["item_id"] == shared]
    assert [e["actor"] for e in audited] == ["JPN"]
    listed = json.loads(invoke("incident", "list", "--node", str(fed.folder / "JPN"),
                               "--json").output)["incidents"]
    assert [(r["direction"], r["sent"][0]["status"]) for r in listed] == [
        ("reported", "delivered")]
    # A retry of the same report (its answer lost) is a duplicate, not a second incident.
    body = next(r for r in notices.notice_rows(jpn) if r["kind"] == notices.INCIDENT)["body"]
    with exchange.peer_client(jpn.folder) as client:
        again = client.post(_url(fed, "KOR", "/peer/v1/incidents/"), content=json.dumps(body))
    assert again.status_code == 202, again.text
    assert len([r for r in notices.incident_rows(kor) if r["direction"] == "received"]) == 1


def test_reclassification_at_kor_is_remarked_at_jpn(fed: Federation, shared: str) -> None:
    jpn = fed.nodes["JPN"]
    assert custody(jpn, shared)[-1].national_label.level == "極秘"
    result = invoke("item", "reclassify", "--node", str(fed.folder / "KOR"), shared,
                    "--level", "군사III급비밀", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["queued_to"] == ["JPN"]
    assert (doc["old_level"], doc["new_level"]) == ("군사II급비밀", "군사III급비밀")
    assert exchange.wait_until(
        lambda: custody(jpn, shared)[-1].national_label.level == "秘", WAIT)
    last = custody(jpn, shared)[-1]
    assert last.event == "remarked" and last.holder == "JPN"
    changed = [e for e in events(jpn, AuditKind.CLASSIFICATION_CHANGED)
               if e["item_id"] == shared]
    assert len(changed) == 1 and changed[0]["actor"] == "KOR"
    assert changed[0]["details"]["national_levels"] == ["秘"]
    # A holder may not reclassify what it did not originate.
    denied = invoke("item", "reclassify", "--node", str(fed.folder / "JPN"), shared,
                    "--level", "秘")
    assert denied.exit_code != 0


def test_bad_notices_are_refused_and_audited(fed: Federation, shared: str) -> None:
    kor, jpn, usa = fed.nodes["KOR"], fed.nodes["JPN"], fed.nodes["USA"]
    before_jpn = len(events(jpn, AuditKind.NOTICE_REFUSED))
    before_kor = len(events(kor, AuditKind.NOTICE_REFUSED))
    # Whatever level the file's earlier tests left it at (alone: as shared; after the
    # reclassification test: 秘), the notices below ask for the other one, so a notice
    # wrongly applied would show.
    level = custody(jpn, shared)[-1].national_label.level
    old = custody(kor, shared)[-1].national_label.level
    new = "군사II급비밀" if old == "군사III급비밀" else "군사III급비밀"
    notice_url = _url(fed, "JPN", "/peer/v1/classification-notices/")
    # Forged: KOR's channel, KOR named as originator, but signed by another key.
    forged = sign_classification_notice(item_id=shared, originator="KOR",
                                        old_level=old, new_level=new,
                                        issued_at=now_utc(), key=usa.keys.signing_key())
    unsigned = {k: v for k, v in sign_classification_notice(
        item_id=shared, originator="KOR", old_level=old, new_level=new,
        issued_at=now_utc(), key=kor.keys.signing_key()).to_json().items()
        if k != "signature"}
    genuine = sign_classification_notice(item_id=shared, originator="KOR",
                                         old_level=old, new_level=new,
                                         issued_at=now_utc(), key=kor.keys.signing_key())
    answers = []
    with exchange.peer_client(kor.folder) as client:
        answers.append(client.post(notice_url, content=json.dumps(forged.to_json())))
        answers.append(client.post(notice_url, content=json.dumps(unsigned)))
    # Misaddressed: a genuine KOR notice, but from USA, which never provided the item to
    # JPN; and an incident to USA about an item USA never provided to JPN.
    with exchange.peer_client(usa.folder) as client:
        answers.append(client.post(notice_url, content=json.dumps(genuine.to_json())))
    with exchange.peer_client(jpn.folder) as client:
        answers.append(client.post(_url(fed, "USA", "/peer/v1/incidents/"), content=json.dumps(
            {"kind": "loss", "item_id": shared, "description": "lost"})))
        # KOR does not take a notice about its own item from a holder.
        answers.append(client.post(_url(fed, "KOR", "/peer/v1/classification-notices/"),
                                   content=json.dumps(genuine.to_json())))
    assert [a.status_code for a in answers] == [403, 422, 403, 403, 403], \
        [a.text for a in answers]
    for answer in answers:
        assert "json" in answer.headers["content-type"]
        assert answer.json()["http_status"] == str(answer.status_code)
    refused = events(jpn, AuditKind.NOTICE_REFUSED)[before_jpn:]
    assert [e["actor"] for e in refused] == ["KOR", "KOR", "USA"]
    assert "key" in json.dumps(refused[0]["details"])
    assert len(events(kor, AuditKind.NOTICE_REFUSED)) == before_kor + 1
    assert [e["actor"] for e in events(usa, AuditKind.NOTICE_REFUSED)] == ["JPN"]
    # Nothing was re-marked by the refused notices.
    assert custody(jpn, shared)[-1].national_label.level == level
    assert all(a.status_code != 202 for a in answers)


def test_tree_heads_are_exchanged_and_consistent_everywhere(fed: Federation) -> None:
    def partners_of(code: str) -> dict[str, Any]:
        result = invoke("audit", "partners", "--node", str(fed.folder / code), "--json")
        assert result.exit_code == 0, result.output
        return {r["partner"]: r for r in json.loads(result.output)["partners"]}

    others = {"JPN": {"KOR", "USA"}, "KOR": {"JPN", "USA"}, "USA": {"JPN", "KOR"}}

    def settled() -> bool:
        return all({p for p, r in partners_of(code).items() if r["consistent"]} >= want
                   for code, want in others.items())

    assert exchange.wait_until(settled, WAIT, interval=0.5)
    # After more activity, heads grow and still extend the ones recorded (proofs from > 0).
    kor = fed.nodes["KOR"]
    before = partners_of("JPN")["KOR"]["checked_size"]
    publish(kor, indicator(), "군사II급비밀", ("KOR", "JPN"))
    assert exchange.wait_until(
        lambda: (partners_of("JPN")["KOR"].get("checked_size") or 0) > before, WAIT,
        interval=0.5)
    checked = [e for e in events(fed.nodes["JPN"], AuditKind.TREE_HEAD_EXCHANGED)
               if e["details"].get("consistent") and e["details"]["partner"] == "KOR"]
    assert checked[-1]["details"]["from_size"] > 0
    for code in others:
        node = fed.nodes[code]
        assert not events(node, AuditKind.PARTNER_LOG_INCONSISTENT)
        with node.store.reader() as reader:  # the new kinds keep the log verifiable
            verdict = handlers.verify_audit(reader, public_key=node.keys.public_signing_key())
        assert verdict.ok, verdict.problems[:3]
    text = invoke("audit", "partners", "--node", str(fed.folder / "USA"))
    assert text.exit_code == 0 and text.output.count("consistent") == 2


def test_hub_notices_follow_the_custody_chain(tmp_path: Path) -> None:
    """Under TISA, JPN holds KOR's item through USA: the incident goes JPN → USA → KOR and
    the reclassification KOR → USA → JPN, never directly between JPN and KOR."""
    hub = Federation(tmp_path / "hub", "hub")
    try:
        hub.up()
        kor, jpn, usa = hub.nodes["KOR"], hub.nodes["JPN"], hub.nodes["USA"]
        item = publish(kor, indicator(), "군사II급비밀", ("KOR", "JPN", "USA"))
        assert exchange.wait_until(lambda: held(usa, item) and drained(kor), WAIT)
        asked = consents.consent_request(usa, item, "JPN", "TISA warning")
        consents.answer_consent(kor, asked["request"], True, "")
        assert exchange.wait_until(lambda: held(jpn, item) and drained(usa), WAIT)

        report, queued = notices.report_incident(jpn, item_id=item, kind="loss",
                                                 description="a copy is missing")
        assert queued == ["USA"]
        assert exchange.wait_until(
            lambda: any(r["direction"] == "received" for r in notices.incident_rows(kor)),
            WAIT)
        at_kor = [r for r in notices.incident_rows(kor) if r["direction"] == "received"]
        assert at_kor[0]["reported_by"] == "USA"
        assert "reported by JPN" in at_kor[0]["description"]
        assert report.reference in at_kor[0]["description"]

        result = invoke("item", "reclassify", "--node", str(hub.folder / "KOR"), item,
                        "--level", "군사III급비밀", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["queued_to"] == ["USA"]
        assert exchange.wait_until(
            lambda: custody(jpn, item)[-1].national_label.level == "秘", WAIT)
        assert custody(usa, item)[-1].national_label.level == "CONFIDENTIAL"
        # Nothing passed directly between JPN and KOR.
        for node, other in ((jpn, "KOR"), (kor, "JPN")):
            assert all(r["recipient"] != other for r in notices.notice_rows(node))
    finally:
        hub.down()
        hub.close()
