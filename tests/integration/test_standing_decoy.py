"""A partner's own revocation naming another originator's standing consent revokes nothing
(the policy reads a revocation by the consent's originator only): a relay under that
consent is still taken, against the store as a node holds it."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gsomia.core import crypto, outbox
from gsomia.core.audit import AuditKind
from gsomia.core.errors import MalformedInput, PolicyDenied
from gsomia.core.labels import SecurityLabel
from gsomia.service import exchange as exchange_handlers
from gsomia.service import standing
from gsomia.shell import exchange
from gsomia.shell.node import Node
from gsomia.shell.peer_inbox import NodeInbox


def test_a_decoy_revocation_does_not_refuse_a_relay_under_the_originators_consent(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        now: datetime) -> None:
    jpn = node_factory("JPN")
    kor, usa = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    consent = crypto.grant_standing_consent(
        consent_id="standing-consent--1", originator="KOR", recipient="JPN",
        categories=["sensor-report"], purpose="dprk-missile", not_before=now,
        not_after=now + timedelta(days=1), granted_at=now, key=kor)
    decoy = crypto.revoke_standing_consent(consent_id=consent.id, originator="USA",
                                           revoked_at=now, key=usa)
    assert standing.record_standing_revocation(jpn.uow(), revocation=decoy, sender="USA",
                                               originator_public=usa.public_key(), now=now)
    # KOR's report, relayed by the hub (USA) to JPN: not the originator, USA needs a consent.
    label = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "USA", "JPN"}), "dprk-missile",
                          category="sensor-report", created=now)
    obj = make_indicator(1)
    binding = crypto.bind(label.to_json(), obj, kor)
    envelope = crypto.seal_envelope(
        sender="USA", recipient="JPN", item_id=obj["id"], version=obj["modified"],
        nonce=os.urandom(16), sent_at=now,
        payload={"object": obj, "label": label.to_json(), "binding": binding.to_json(),
                 "consents": [], "standing_consents": [consent.to_json()]},
        sender_key=usa, recipient_public=jpn.keys.envelope_key().public_key())
    [got] = exchange_handlers.receive(
        jpn.uow(), keys=jpn.keys, catalogue=jpn.catalogue,
        signing_keys={"KOR": kor.public_key(), "USA": usa.public_key()},
        envelopes=[envelope], sender="USA", seen=set(), now=now,
        revoked=lambda named: exchange._receiving._revoked_standing(jpn, named))
    assert got.receipt is not None, got.reasons
    # KOR's own revocation does refuse the next relay under it.
    genuine = crypto.revoke_standing_consent(consent_id=consent.id, originator="KOR",
                                             revoked_at=now, key=kor)
    assert standing.record_standing_revocation(jpn.uow(), revocation=genuine, sender="KOR",
                                               originator_public=kor.public_key(), now=now)
    obj2 = make_indicator(2)
    envelope2 = crypto.seal_envelope(
        sender="USA", recipient="JPN", item_id=obj2["id"], version=obj2["modified"],
        nonce=os.urandom(16), sent_at=now,
        payload={"object": obj2, "label": label.to_json(),
                 "binding": crypto.bind(label.to_json(), obj2, kor).to_json(),
                 "consents": [], "standing_consents": [consent.to_json()]},
        sender_key=usa, recipient_public=jpn.keys.envelope_key().public_key())
    [refused] = exchange_handlers.receive(
        jpn.uow(), keys=jpn.keys, catalogue=jpn.catalogue,
        signing_keys={"KOR": kor.public_key(), "USA": usa.public_key()},
        envelopes=[envelope2], sender="USA", seen=set(), now=now,
        revoked=lambda named: exchange._receiving._revoked_standing(jpn, named))
    assert refused.receipt is None and refused.reasons


def test_a_revocation_by_a_party_outside_the_federation_is_refused_not_retried(
        node_factory: Callable[..., Node], now: datetime) -> None:
    """A partner passes on a revocation signed by a party this node's federation does not
    list: the node checks nothing that party signs (so takes no relay under its consents),
    and no retry can change that. A refusal (403: the sender marks the notice refused),
    where a 503 had the sender retry it for ever."""
    jpn = node_factory("JPN")
    usa, kor = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    exchange.Partners("JPN", "hub", {"USA": exchange.Peer(
        "USA", "https://usa.invalid", usa.public_key(), X25519PrivateKey.generate().public_key(),
        None)}, ("USA",)).write(jpn.folder)
    revocation = crypto.revoke_standing_consent(consent_id="standing-consent--1",
                                                originator="KOR", revoked_at=now, key=kor)
    inbox = NodeInbox(jpn)
    with pytest.raises(PolicyDenied):
        inbox.standing_revocation(revocation, "USA", now)
    assert not outbox.definitive(503) and outbox.definitive(403)
    assert exchange._receiving._revoked_standing(jpn, {("standing-consent--1", "KOR")}) == set()
    # The originator listed (the federation knows its key): kept as before.
    exchange.Partners("JPN", "hub", {
        "USA": exchange.Peer("USA", "https://usa.invalid", usa.public_key(),
                             X25519PrivateKey.generate().public_key(), None),
        "KOR": exchange.Peer("KOR", "https://kor.invalid", kor.public_key(),
                             X25519PrivateKey.generate().public_key(), None)},
        ("USA",)).write(jpn.folder)
    assert inbox.standing_revocation(revocation, "USA", now)
    assert exchange._receiving._revoked_standing(jpn, {("standing-consent--1", "KOR")}) == \
        {("standing-consent--1", "KOR")}


def test_the_bound_on_a_partners_revocations_is_read_from_node_toml_and_answered_as_429(
        node_factory: Callable[..., Node], now: datetime) -> None:
    """``[limits]`` in node.toml sets the bound; the peer API answers the revocation past
    it "not now": 429 with Retry-After, details naming the limit and the bound (bounds19:
    it was 403, which the sender takes as final, so a genuine revocation at the bound was
    lost for good; now the sender retries it), and stores nothing."""
    import dataclasses
    import json
    import warnings

    from gsomia.bootstrap import app_for_node
    from gsomia.shell.node import CONFIG, NodeConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    jpn = node_factory("JPN")
    usa = Ed25519PrivateKey.generate()
    exchange.Partners("JPN", "direct", {"USA": exchange.Peer(
        "USA", "https://usa.invalid", usa.public_key(), X25519PrivateKey.generate().public_key(),
        None)}, ("USA",)).write(jpn.folder)
    path = jpn.folder / CONFIG
    path.write_text(path.read_text("utf-8") + "\n[limits]\nstanding_revocations_per_partner = 2\n"
                    "revocation_window_hours = 48\n", "utf-8")
    jpn.config = NodeConfig.load(jpn.folder)
    assert jpn.config.partner_rows["standing_revocations_per_partner"] == 2
    assert jpn.config.partner_rows["revocation_window_hours"] == 48
    assert "standing_revocations_per_partner = 2" in dataclasses.replace(jpn.config).to_toml()
    app = app_for_node(jpn, peer_identity=lambda scope: "USA")
    client = TestClient(app)
    answers = []
    for n in range(3):
        made_up = crypto.revoke_standing_consent(consent_id=f"standing-consent--x{n}",
                                                 originator="USA", revoked_at=now, key=usa)
        answers.append(client.post("/peer/v1/consents/standing/revocations/",
                                   content=json.dumps(made_up.to_json()),
                                   headers={"Content-Type": "application/json"}))
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert int(answers[2].headers["Retry-After"]) > 0
    details = answers[2].json()["details"]
    assert details["limit"] == "standing_revocations_per_partner" and details["bound"] == 2
    assert not outbox.definitive(answers[2].status_code)  # the sender tries it again later
    assert exchange._receiving._revoked_standing(
        jpn, {(f"standing-consent--x{n}", "USA") for n in range(3)}) == \
        {(f"standing-consent--x{n}", "USA") for n in range(2)}
    # A partner flooding at its bound: each refusal on record as the refused notices are,
    # the first 10 of a minute one by one naming the limit, the rest counted in a summary
    # (consent18: before, none was, and the operator could not see the flood).
    for n in range(3, 15):
        made_up = crypto.revoke_standing_consent(consent_id=f"standing-consent--x{n}",
                                                 originator="USA", revoked_at=now, key=usa)
        assert client.post("/peer/v1/consents/standing/revocations/",
                           content=json.dumps(made_up.to_json())).status_code == 429
    app.state.peer_inbox.close()  # the node stops

    def refused() -> list[dict[str, object]]:
        with jpn.store.reader() as reader:
            return [json.loads(r["details"]) if isinstance(r["details"], str)
                    else r["details"] for r in reader.rows()
                    if r["kind"] == AuditKind.NOTICE_REFUSED.value]

    one_by_one = [d for d in refused() if not d.get("summary")]
    assert len(one_by_one) == 10 and all(
        d["limit"] == "standing_revocations_per_partner" and d["bound"] == 2
        and d["notice"] == "standing-revocation" for d in one_by_one)
    [summary] = [d for d in refused() if d.get("summary")]
    assert summary["refused"] == 13 - 10
    # `gsomia doctor` names the partner, all 13 counted, and the bound it is refused at.
    from gsomia import bootstrap
    from gsomia.shell.doctor import refusal_checks

    [check] = refusal_checks(jpn.folder, bootstrap.catalogue)
    assert not check.ok and not check.required
    assert check.detail == "last day: USA 13 (at standing_revocations_per_partner)"
    # Past the bound, a revocation shown with the signed consent it revokes (as a hub passes
    # it on) is kept: it withdraws a real consent, and decoys must not crowd it out.
    consent = crypto.grant_standing_consent(
        consent_id="standing-consent--real", originator="USA", recipient="KOR",
        categories=["sensor-report"], purpose="dprk-missile", not_before=now,
        not_after=now + timedelta(days=1), granted_at=now, key=usa)
    genuine = crypto.revoke_standing_consent(consent_id=consent.id, originator="USA",
                                             revoked_at=now, key=usa)
    shown = client.post("/peer/v1/consents/standing/revocations/",
                        content=json.dumps({**genuine.to_json(), "consent": consent.to_json()}),
                        headers={"Content-Type": "application/json"})
    assert shown.status_code == 202 and shown.json()["new"] is True
    assert ("standing-consent--real", "USA") in exchange._receiving._revoked_standing(
        jpn, {("standing-consent--real", "USA")})
    with jpn.store.repository() as repo:
        assert not standing.in_force(repo.standing_consents())  # no grant kept
    other = client.post("/peer/v1/consents/standing/revocations/",
                        content=json.dumps({**genuine.to_json(), "consent": "not a consent"}),
                        headers={"Content-Type": "application/json"})
    assert other.status_code == 422
    path.write_text(path.read_text("utf-8").replace("= 2", "= 0"), "utf-8")
    with pytest.raises(MalformedInput, match="positive integer"):
        NodeConfig.load(jpn.folder)
