"""Standing consents through a real hub federation (``gsomia federation up --topology hub``):
KOR consents in advance to USA relaying its sensor reports to JPN; USA relays them with no
per-item request, and stops when the consent is revoked or has expired, or for an item of
another category or purpose. A consent in KOR's name signed with another party's key is
refused at the hub and, carried in a relay, at the recipient."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import pytest
from click.testing import CliRunner
from test_federation import (
    WAIT,
    Federation,
    _client,
    drained,
    events,
    held,
    indicator,
)

from commandline import run_gsomia
from gsomia.core import crypto
from gsomia.core.audit import AuditKind
from gsomia.core.labels import SecurityLabel
from gsomia.core.types import iso
from gsomia.service import handlers
from gsomia.shell import consents, exchange
from gsomia.shell.commands import node as node_commands
from gsomia.shell.exchange import consent_rows

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

KOR_II = "군사II급비밀"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with Federation.running(tmp_path_factory.mktemp("hub"), "hub") as fed:
        yield fed
    runner = CliRunner()
    verify = click.Group()
    node_commands.register(verify)
    for code in ("JPN", "KOR", "USA"):
        result = runner.invoke(verify, ["audit", "verify", "--node", str(fed.folder / code)])
        assert result.exit_code == 0, result.output


def invoke(*args: str) -> Any:
    """The real command line, in a child process; ``output`` is what the user reads."""
    done = run_gsomia(*args)
    done.output = done.stdout + done.stderr  # type: ignore[attr-defined]
    done.exit_code = done.returncode  # type: ignore[attr-defined]
    return done


def grant(fed: Federation, category: str, *, until: datetime,
          purpose: str = "dprk-missile") -> dict[str, Any]:
    result = invoke("consent", "standing", "grant", "--node", str(fed.folder / "KOR"),
                    "--to", "JPN", "--category", category, "--purpose", purpose,
                    "--until", iso(until), "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


def listed(fed: Federation, code: str) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in consents.standing_list(fed.nodes[code])}


def publish(fed: Federation, category: str | None, purpose: str = "dprk-missile") -> str:
    obj = indicator()
    exchange.publish(fed.nodes["KOR"], entries=[(obj, handlers.LabelRequest(
        KOR_II, ("KOR", "JPN", "USA"), purpose, category=category))])
    return str(obj["id"])


def revoked_at(node: Any, consent_id: str) -> bool:
    from gsomia.service.standing import revoked_ids

    with node.store.repository() as repo:
        return consent_id in revoked_ids(repo.standing_consents())


def requests(fed: Federation, code: str) -> list[dict[str, Any]]:
    return consent_rows(fed.nodes[code])


def test_the_hub_relays_under_a_standing_consent_until_it_is_revoked(hub: Federation) -> None:
    kor, jpn, usa = hub.nodes["KOR"], hub.nodes["JPN"], hub.nodes["USA"]
    before_requests = len(requests(hub, "USA"))
    # Held at USA before the consent: relayed once the consent arrives.
    early = publish(hub, "sensor-report")
    assert exchange.wait_until(lambda: held(usa, early), WAIT)
    consent = grant(hub, "sensor-report", until=datetime.now(UTC) + timedelta(days=1))
    assert consent["sent_to"] == ["USA"]
    assert exchange.wait_until(lambda: consent["id"] in listed(hub, "USA"), WAIT)
    at_hub = listed(hub, "USA")[consent["id"]]
    assert (at_hub["direction"], at_hub["state"], at_hub["originator"]) == \
        ("obtained", "in force", "KOR")
    covered = publish(hub, "sensor-report")
    other_category = publish(hub, "warning")
    other_purpose = publish(hub, "sensor-report", purpose="regional-security")
    uncategorised = publish(hub, None)
    assert exchange.wait_until(lambda: held(jpn, covered) and held(jpn, early), WAIT)
    assert exchange.wait_until(lambda: drained(kor, usa), WAIT)
    with usa.store.repository() as repo:
        record = repo.custody_of(covered, "2026-11-01T00:00:00.000Z")
    assert record[0].holder == "USA"
    with jpn.store.repository() as repo:
        trail = repo.custody_of(covered, "2026-11-01T00:00:00.000Z")
    assert trail[0].provider == "USA" and trail[0].agreement == "tisa-2014"
    for item in (other_category, other_purpose, uncategorised):
        assert held(usa, item) and not held(jpn, item), item
    # No per-item request was needed: the hub asked nothing.
    assert len(requests(hub, "USA")) == before_requests
    # Revoked: the hub stops relaying as soon as it knows.
    result = invoke("consent", "standing", "revoke", "--node", str(hub.folder / "KOR"),
                    "--id", consent["id"], "--json")
    assert result.exit_code == 0, result.output
    assert exchange.wait_until(
        lambda: listed(hub, "USA")[consent["id"]]["state"] == "revoked", WAIT)
    # And JPN, the recipient behind the hub (not KOR's partner), holds it too: the hub
    # passed it on, so JPN refuses a relay under it from any hub that still sent one.
    assert exchange.wait_until(lambda: revoked_at(jpn, consent["id"]), WAIT)
    after = publish(hub, "sensor-report")
    assert exchange.wait_until(lambda: held(usa, after), WAIT)
    assert exchange.wait_until(lambda: drained(kor, usa), WAIT)
    time.sleep(1.0)
    assert not held(jpn, after)
    again = invoke("consent", "standing", "revoke", "--node", str(hub.folder / "KOR"),
                   "--id", consent["id"])
    assert again.exit_code == 2 and "already revoked" in again.output


def _hub_delivery(usa: Any, item: str) -> tuple[str, str | None] | None:
    import sqlalchemy as sa

    from gsomia.shell.store import outbox

    with usa.store.engine.connect() as conn:
        row = conn.execute(sa.select(outbox.c.status, outbox.c.last_error).where(
            outbox.c.item_id == item, outbox.c.recipient == "JPN")).first()
    return None if row is None else (str(row.status), row.last_error)


def test_a_relay_queued_before_a_revocation_does_not_leave_the_hub(hub: Federation) -> None:
    """JPN is down, so the hub's relay waits in its outbox; KOR revokes meanwhile. When JPN
    is back the hub checks the relay again as it leaves, and it does not leave."""
    from gsomia.shell import federation

    jpn, usa = hub.nodes["JPN"], hub.nodes["USA"]
    consent = grant(hub, "pre-launch-indicator", until=datetime.now(UTC) + timedelta(days=1))
    assert exchange.wait_until(lambda: consent["id"] in listed(hub, "USA"), WAIT)
    refused_at_jpn = len(events(jpn, AuditKind.ENVELOPE_REFUSED))
    federation.stop_node(hub.folder / "JPN")
    try:
        item = publish(hub, "pre-launch-indicator")
        assert exchange.wait_until(lambda: _hub_delivery(usa, item) is not None, WAIT)
        assert _hub_delivery(usa, item)[0] == "pending"  # type: ignore[index]
        result = invoke("consent", "standing", "revoke", "--node", str(hub.folder / "KOR"),
                        "--id", consent["id"])
        assert result.exit_code == 0, result.output
        assert exchange.wait_until(
            lambda: listed(hub, "USA")[consent["id"]]["state"] == "revoked", WAIT)
    finally:
        hub.up()
    assert exchange.wait_until(lambda: _hub_delivery(usa, item)[0] != "pending",  # type: ignore[index]
                               WAIT)
    status, error = _hub_delivery(usa, item)  # type: ignore[misc]
    # The release policy asked again as the relay is sealed (sealcheck23): its reasons.
    assert status == "refused" and str(error).startswith("not released to JPN as it was "
                                                         "sealed") and \
        "third-party rule" in str(error), error
    assert not held(jpn, item)
    # Refused by the hub itself: no envelope reached JPN to be refused there.
    assert len(events(jpn, AuditKind.ENVELOPE_REFUSED)) == refused_at_jpn


def test_an_expired_standing_consent_relays_nothing(hub: Federation) -> None:
    kor, jpn, usa = hub.nodes["KOR"], hub.nodes["JPN"], hub.nodes["USA"]
    # Granted in this process, not by the command line: a validity of a few seconds must not
    # be over before a command started on a loaded machine has even read it.
    consent = consents.standing_grant(
        kor, to="JPN", categories=["launch-point"], purpose="dprk-missile",
        until=iso(datetime.now(UTC) + timedelta(seconds=5)), actor="test")
    assert exchange.wait_until(lambda: consent["id"] in listed(hub, "USA"), WAIT)
    time.sleep(max(0.0, (datetime.fromisoformat(consent["not_after"]) -
                         datetime.now(UTC)).total_seconds()) + 0.2)
    late = publish(hub, "launch-point")
    assert exchange.wait_until(lambda: held(usa, late), WAIT)
    assert exchange.wait_until(lambda: drained(kor, usa), WAIT)
    time.sleep(1.0)
    assert not held(jpn, late)
    assert listed(hub, "USA")[consent["id"]]["state"] == "expired"
    # A validity already over is bad input, not a consent.
    past = invoke("consent", "standing", "grant", "--node", str(hub.folder / "KOR"),
                  "--to", "JPN", "--category", "launch-point", "--purpose", "dprk-missile",
                  "--until", "2020-01-01T00:00:00Z")
    assert past.exit_code == 2 and "--until" in past.output


def _forged(originator: str, key: Any, *, category: str = "flight-path") -> crypto.StandingConsent:
    now = datetime.now(UTC)
    return crypto.grant_standing_consent(
        consent_id=f"standing-consent--{uuid.uuid4()}", originator=originator,
        recipient="JPN", categories=[category], purpose="dprk-missile", not_before=now,
        not_after=now + timedelta(days=1), granted_at=now, key=key)


def test_a_standing_consent_signed_by_another_partner_is_refused_at_the_hub(
        hub: Federation) -> None:
    kor, jpn, usa = hub.nodes["KOR"], hub.nodes["JPN"], hub.nodes["USA"]
    url = hub.up()["nodes"]["USA"]["url"] + "/peer/v1/consents/standing/"
    before = set(listed(hub, "USA"))
    # KOR's name, JPN's key, posted by KOR: the signature is not KOR's.
    with _client(kor) as client:
        answer = client.post(url, content=json.dumps(
            _forged("KOR", jpn.keys.signing_key()).to_json()))
        assert 400 <= answer.status_code < 500, answer.text
        assert "json" in answer.headers["content-type"]
    # KOR's name, posted by JPN with JPN's key: JPN cannot consent for KOR.
    with _client(jpn) as client:
        answer = client.post(url, content=json.dumps(
            _forged("KOR", jpn.keys.signing_key()).to_json()))
        assert answer.status_code == 403, answer.text
    assert set(listed(hub, "USA")) == before
    item = publish(hub, "flight-path")
    assert exchange.wait_until(lambda: held(usa, item), WAIT)
    assert exchange.wait_until(lambda: drained(kor, usa), WAIT)
    time.sleep(1.0)
    assert not held(jpn, item)


def _relay(usa: Any, kor: Any, jpn: Any, standing: list[dict[str, Any]]) -> crypto.Envelope:
    """USA relaying a KOR item to JPN, bound by KOR, carrying ``standing`` consents."""
    obj = indicator()
    label = SecurityLabel("KOR", KOR_II, frozenset({"KOR", "JPN", "USA"}), "dprk-missile",
                          category="flight-path", created=datetime.now(UTC))
    binding = crypto.bind(label.to_json(), obj, kor.keys.signing_key())
    payload = {"object": obj, "label": label.to_json(), "binding": binding.to_json(),
               "consents": [], "standing_consents": standing}
    return crypto.seal_envelope(
        sender="USA", recipient="JPN", item_id=obj["id"], version=obj["modified"],
        nonce=os.urandom(16), sent_at=datetime.now(UTC), payload=payload,
        sender_key=usa.keys.signing_key(),
        recipient_public=jpn.keys.envelope_key().public_key())


def test_the_recipient_checks_the_standing_consent_a_relay_carries(hub: Federation) -> None:
    kor, jpn, usa = hub.nodes["KOR"], hub.nodes["JPN"], hub.nodes["USA"]
    url = hub.up()["nodes"]["JPN"]["url"] + "/peer/v1/envelopes/"
    before = len(events(jpn, AuditKind.ENVELOPE_REFUSED))
    genuine = _forged("KOR", kor.keys.signing_key())
    by_usa = _forged("KOR", usa.keys.signing_key())
    wrong_category = _forged("KOR", kor.keys.signing_key(), category="warning")
    with _client(usa) as client:
        for doc in (by_usa.to_json(), wrong_category.to_json()):
            envelope = _relay(usa, kor, jpn, [doc])
            answer = client.post(url, content=json.dumps(envelope.to_json()))
            assert answer.status_code == 403, answer.text
            assert not held(jpn, envelope.item_id)
        none = _relay(usa, kor, jpn, [])
        assert client.post(url, content=json.dumps(none.to_json())).status_code == 403
        good = _relay(usa, kor, jpn, [genuine.to_json()])
        answer = client.post(url, content=json.dumps(good.to_json()))
        assert answer.status_code == 202, answer.text
    assert held(jpn, good.item_id)
    reasons = " ".join(json.dumps(e["details"], ensure_ascii=False)
                       for e in events(jpn, AuditKind.ENVELOPE_REFUSED)[before:])
    assert "standing consent" in reasons and "third-party rule" in reasons
