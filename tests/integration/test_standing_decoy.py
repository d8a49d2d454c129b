"""A partner's own revocation naming another originator's standing consent revokes nothing
(the policy reads a revocation by the consent's originator only): a relay under that
consent is still taken, against the store as a node holds it."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gsomia.core import crypto
from gsomia.core.labels import SecurityLabel
from gsomia.service import exchange as exchange_handlers
from gsomia.service import standing
from gsomia.shell import exchange
from gsomia.shell.node import Node


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
        revoked=exchange._revoked_standing(jpn))
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
        revoked=exchange._revoked_standing(jpn))
    assert refused.receipt is None and refused.reasons
