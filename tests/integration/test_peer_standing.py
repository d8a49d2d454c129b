"""Whom each peer route answers, by the agreements between the caller's party and the node
(peerpolicy28): nothing new from a party with no agreement in force (GSOMIA Art. 21: what
was provided stays protected after termination, nothing more is provided), what is owed
about items exchanged under an agreement that ended, and consents across a hub from any
pinned party. Any other caller is answered exactly as a stranger."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route
from starlette.testclient import TestClient

from federating import certificate_holders
from gsomia.bootstrap import app_for_node
from gsomia.core.agreements import Catalogue
from gsomia.core.audit import AuditKind
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import Node

HOLDERS = ("JPN", "KOR", "XYZ", None)  # JPN's own CA, KOR (pinned), nobody's CA, none
# The JPN-KOR agreement as the catalogue JPN knows has it, at the app's clock (now):
# in force (the shipped 2016 GSOMIA), ended (the same without the 2019 suspension: it ended
# 2019-11-23) or never (no agreement between the two).
STATES = ("in force", "ended", "never")
# What each route needs of the caller's party, by the rules (SECURITY.md): new items an
# agreement in force; what is owed about items exchanged (receipts, Art. 17 reports, the
# originator's re-marking, the logs' tree heads) one that has been in force; consents (an
# originator's word on its own items, across a hub too) a pinned party.
NEEDS = {
    ("POST", "/peer/v1/envelopes/"): {"in force"},
    ("POST", "/peer/v1/consents/standing/"): set(STATES),
    ("POST", "/peer/v1/receipts/"): {"in force", "ended"},
    ("POST", "/peer/v1/incidents/"): {"in force", "ended"},
    ("POST", "/peer/v1/classification-notices/"): {"in force", "ended"},
    ("GET", "/peer/v1/tree-heads/"): {"in force", "ended"},
    ("POST", "/peer/v1/tree-heads/"): {"in force", "ended"},
    ("GET", "/peer/v1/tree-heads/held/"): {"in force", "ended"},
    ("POST", "/peer/v1/consents/requests/"): set(STATES),
    ("POST", "/peer/v1/consents/replies/"): set(STATES),
    ("POST", "/peer/v1/consents/standing/revocations/"): set(STATES),
}


def _catalogues(shipped: Catalogue, tmp_path: Path) -> dict[str, Catalogue]:
    source = Path(__file__).parents[2] / "src/gsomia/data/agreements/jpn-kor-gsomia-2016.yaml"
    kept = [line for line in source.read_text("utf-8").splitlines()
            if "suspension-of-notice" not in line and "withdrawal-of-notice" not in line]
    (tmp_path / "ended").mkdir()
    (tmp_path / "ended" / "x.yaml").write_text(
        "\n".join(kept).replace("jpn-kor-gsomia-2016", "jpn-kor-ended"), "utf-8")
    ended = load_catalogue([tmp_path / "ended"]).get("jpn-kor-ended")
    others = [a for i, a in shipped.agreements.items() if "JPN" not in a.parties
              or "KOR" not in a.parties]
    return {"in force": shipped,
            "ended": Catalogue.of([*others, ended], shipped.schemes),
            "never": Catalogue.of(others, shipped.schemes)}


@pytest.fixture
def jpn_apis(node_factory: Callable[..., Node], tmp_path: Path, now: datetime,
             shipped: Catalogue) -> Iterator[tuple[Node, Any, list[tuple[str, str]]]]:
    """JPN's real app for each state of its agreement with KOR (KOR pinned in each), its
    peer identity the real pins (certificates checked at ``now``), and a client holding
    each of HOLDERS' certificates; the peer routes as the app lists them."""
    jpn, kor = node_factory("JPN"), node_factory("KOR")
    ders, holding, identity = certificate_holders(jpn, kor, tmp_path, now)

    apps = {}
    for state, catalogue in _catalogues(shipped, tmp_path).items():
        jpn.catalogue = catalogue
        apps[state] = app_for_node(jpn, peer_identity=identity)
    routes = sorted((m, r.path) for r in apps["in force"].routes if isinstance(r, Route)
                    and r.path.startswith("/peer/v1/") for m in (r.methods or ()) if m != "HEAD")
    clients = {state: TestClient(app, base_url="https://jpn.test") for state, app in apps.items()}

    def ask(state: str, holder: str | None, method: str, path: str) -> Any:
        holding["der"] = ders[holder] if holder is not None else None
        return clients[state].request(
            method, path, content=b"{}" if method == "POST" else None,
            headers={"content-type": "application/json"} if method == "POST" else None)

    yield jpn, ask, routes
    for app in apps.values():
        app.state.peer_inbox.close()


def test_a_party_with_no_agreement_in_force_delivers_nothing_new(jpn_apis: Any) -> None:
    """peerpolicy28: with no JPN-KOR agreement in force, or none ever, KOR's certificate
    passed the peer API's identity on every route: ``GET /peer/v1/tree-heads/`` answered 200
    with JPN's signed head (size 62) to a party that never had an agreement with JPN, and
    ``POST /peer/v1/envelopes/`` 422 (its handler checking the envelope's signature), never
    the stranger's 403. Now new items are refused as a stranger's once the agreement ended,
    and tree heads too when there never was one; each refusal on record under KOR, with
    why."""
    jpn, ask, routes = jpn_apis
    assert set(routes) == set(NEEDS)  # a new route says whom it answers
    for state in ("ended", "never"):
        answer = ask(state, "KOR", "POST", "/peer/v1/envelopes/")
        stranger = ask(state, "XYZ", "POST", "/peer/v1/envelopes/")
        assert (answer.status_code, answer.json()) == (403, stranger.json()), state
    answer = ask("never", "KOR", "GET", "/peer/v1/tree-heads/")
    assert (answer.status_code, answer.json()) == \
        (403, ask("never", "XYZ", "GET", "/peer/v1/tree-heads/").json())
    with jpn.store.reader() as reader:
        notes = [r["details"].get("note") for r in reader.rows()
                 if r["kind"] == AuditKind.PEER_REFUSED.value and r["actor"] == "KOR"]
    assert notes.count("no agreement with this node is in force") == 2
    assert notes.count("no agreement with this node has been in force") == 1


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_each_peer_route_answers_a_party_by_its_agreements_with_the_node(
        jpn_apis: Any, data: st.DataObject) -> None:
    """Over the JPN-KOR agreement's states, holders and the app's peer routes: the identity
    passes KOR's certificate exactly where the route's rules allow that state (the handler
    then answers its empty body, never as a stranger), and no other holder's (401 without a
    certificate, the stranger's 403 for JPN's own and XYZ's)."""
    _, ask, routes = jpn_apis
    state = data.draw(st.sampled_from(STATES), label="state")
    holder = data.draw(st.sampled_from(HOLDERS), label="holder")
    method, path = data.draw(st.sampled_from(routes), label="route")
    answer = ask(state, holder, method, path)
    if holder is None:
        assert answer.status_code == 401
        return
    stranger = ask(state, "XYZ", method, path).json()
    refused = answer.status_code == 403 and answer.json() == stranger
    passes = holder == "KOR" and state in NEEDS[(method, path)]
    assert refused == (not passes), (state, holder, method, path, answer.text)
