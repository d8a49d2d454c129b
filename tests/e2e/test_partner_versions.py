"""Issue 10, finding 2 across partners, on three real node processes (``federation up``,
direct topology): a version that a KOR person may not publish never reaches JPN, and JPN
itself refuses, over the peer API with real certificates, a partner's new version of an
item that changes its label or comes from another originator. The originator's
classification-change procedure, then a version under the new level, goes through."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from test_federation import (
    WAIT,
    Federation,
    _client,
    _envelope,
    custody,
    deliveries_of,
    drained,
    held,
    indicator,
    publish,
)

from gsomia.bootstrap import collection_id
from gsomia.core.labels import SecurityLabel
from gsomia.core.stix import label_marking
from gsomia.core.taxii import TAXII_MEDIA
from gsomia.service import handlers
from gsomia.shell import exchange, notices
from gsomia.shell.node import Node, new_token
from starting import waited

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

T2 = "2026-11-02T00:00:00.000Z"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with Federation.running(tmp_path_factory.mktemp("versions"), "direct") as federation:
        yield federation


def versions_at(node: Node, item_id: str) -> list[tuple[str, str]]:
    """(version, national level) of every version ``node`` holds of ``item_id``."""
    with node.store.repository() as repo:
        return [(item.version, repo.custody_of(item.item_id, item.version)[-1]
                 .national_label.level) for item in repo.item_versions(item_id)]


def settled(fed: Federation) -> None:
    """Everything KOR queued has been answered: a marker item published after the rest
    reached JPN and KOR's outbox is empty."""
    kor, jpn = fed.nodes["KOR"], fed.nodes["JPN"]
    marker = publish(kor, indicator(), "군사III급비밀", ("KOR", "JPN"))
    waited(lambda: held(jpn, marker), f"KOR's marker {marker} at JPN",
           lambda: deliveries_of(kor, marker), timeout=WAIT)
    waited(lambda: drained(kor), "KOR's outbox drained", lambda: deliveries_of(kor),
           timeout=WAIT)


def test_a_version_a_kor_person_may_not_publish_never_reaches_jpn(fed: Federation) -> None:
    kor, jpn = fed.nodes["KOR"], fed.nodes["JPN"]
    token = new_token()
    handlers.add_user(kor.uow(), keys=kor.keys, schemes=kor.catalogue.schemes, name="lee",
                      clearance="군사III급비밀", need_to_know=["dprk-missile"], token=token,
                      now=datetime.now(UTC))
    item = indicator()
    publish(kor, item, "군사II급비밀", ("KOR", "JPN"))
    waited(lambda: held(jpn, item["id"]), f"{item['id']} at JPN",
           lambda: deliveries_of(kor, item["id"]), timeout=WAIT)
    low = SecurityLabel("KOR", "군사III급비밀", frozenset({"KOR", "JPN"}), "dprk-missile")
    mark = label_marking(low, low.english_marking(kor.catalogue.schemes),
                         created=datetime.now(UTC))
    body = {"objects": [mark, {**item, "modified": T2, "object_marking_refs": [mark["id"]]}]}
    url = fed.up()["nodes"]["KOR"]["url"]
    r = requests.post(f"{url}/gsomia/collections/{collection_id('KOR')}/objects/",
                      data=json.dumps(body, ensure_ascii=False),
                      headers={"Authorization": f"Bearer {token}", "Accept": TAXII_MEDIA,
                               "Content-Type": TAXII_MEDIA},
                      verify=str(fed.folder / "KOR" / "tls" / "ca.crt"), timeout=20)
    assert r.status_code == 202, r.text
    assert [f["message"] for f in r.json()["failures"]] == [handlers.REFUSED_TO_PUBLISH]
    settled(fed)
    assert versions_at(kor, item["id"]) == [(item["modified"], "군사II급비밀")]
    assert versions_at(jpn, item["id"]) == [(item["modified"], "極秘")]


def _deliver(fed: Federation, sender: str, obj: dict[str, Any], label: SecurityLabel) -> Any:
    url = fed.up()["nodes"]["JPN"]["url"] + "/peer/v1/envelopes/"
    envelope = _envelope(fed.nodes[sender], fed.nodes["JPN"], obj, label)
    with _client(fed.nodes[sender]) as client:
        return client.post(url, content=json.dumps(envelope.to_json()))


def test_jpn_refuses_a_partners_version_that_changes_the_label_or_the_originator(
        fed: Federation) -> None:
    kor, jpn = fed.nodes["KOR"], fed.nodes["JPN"]
    item = indicator()
    publish(kor, item, "군사II급비밀", ("KOR", "JPN"))
    waited(lambda: held(jpn, item["id"]), f"{item['id']} at JPN",
           lambda: deliveries_of(kor, item["id"]), timeout=WAIT)
    now = datetime.now(UTC)
    # KOR, its originator, lowers it by sending a version instead of a classification notice
    lowered = _deliver(fed, "KOR", {**item, "modified": T2}, SecurityLabel(
        "KOR", "군사III급비밀", frozenset({"KOR", "JPN"}), "dprk-missile", created=now))
    assert lowered.status_code == 403
    assert lowered.json()["details"]["reasons"] == [handlers.NOT_A_NEW_VERSION]
    # USA binds a version of KOR's item as its own
    claimed = _deliver(fed, "USA", {**item, "modified": T2}, SecurityLabel(
        "USA", "SECRET", frozenset({"USA", "JPN", "KOR"}), "dprk-missile", created=now))
    assert claimed.status_code == 403  # in the same words: USA learns nothing of KOR
    assert claimed.json() == lowered.json()
    assert versions_at(jpn, item["id"]) == [(item["modified"], "極秘")]
    # a new version under the same label is an ordinary update
    same = _deliver(fed, "KOR", {**item, "modified": T2}, SecurityLabel(
        "KOR", "군사II급비밀", frozenset({"KOR", "JPN"}), "dprk-missile", created=now))
    assert same.status_code == 202, same.text
    assert versions_at(jpn, item["id"]) == [(item["modified"], "極秘"), (T2, "極秘")]


def test_the_originators_classification_change_then_a_new_version_goes_through(
        fed: Federation) -> None:
    kor, jpn = fed.nodes["KOR"], fed.nodes["JPN"]
    item = indicator()
    publish(kor, item, "군사II급비밀", ("KOR", "JPN"))
    # JPN is a holder for KOR once KOR holds its receipt (JPN stores it a moment before).
    waited(lambda: held(jpn, item["id"]) and drained(kor),
           f"{item['id']} at JPN and its receipt at KOR", lambda: deliveries_of(kor),
           timeout=WAIT)
    notices.reclassify(kor, item_id=item["id"], level="군사III급비밀")
    waited(lambda: custody(jpn, item["id"])[-1].national_label.level == "秘",
           "JPN's custody of it under 秘",
           lambda: [r.national_label.level for r in custody(jpn, item["id"])], timeout=WAIT)
    later = {**item, "modified": T2}
    exchange.publish(kor, entries=[(later, handlers.LabelRequest(
        "군사III급비밀", ("KOR", "JPN"), "dprk-missile"))])
    waited(lambda: len(versions_at(jpn, item["id"])) == 2, "the second version at JPN",
           lambda: (versions_at(jpn, item["id"]), deliveries_of(kor, item["id"])),
           timeout=WAIT)
    assert versions_at(jpn, item["id"]) == [(item["modified"], "秘"), (T2, "秘")]
    assert versions_at(kor, item["id"]) == [(item["modified"], "군사III급비밀"),
                                            (T2, "군사III급비밀")]


def test_zz_every_log_verifies(fed: Federation) -> None:
    fed.down()
    for code in ("JPN", "KOR", "USA"):
        with fed.nodes[code].store.reader() as reader:
            verdict = handlers.verify_audit(
                reader, public_key=fed.nodes[code].keys.public_signing_key())
        assert verdict.ok, verdict.to_json()
