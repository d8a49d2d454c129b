"""Reads audited in the request (``--audit-reads sync``, the default) against a real node
process (`gsomia node serve`, HTTPS on loopback, real tokens): readers paging at the same
time share durable audit commits, and each page is on record before its body arrives."""

from __future__ import annotations

import json
import threading

import pytest
import requests
import sqlalchemy as sa
from test_taxii_oracles import II, OBJECTS, Served, indicator, kor

from gsomia.shell.store import audit_events, tree_heads

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

__all__ = ["kor"]  # test_taxii_oracles' fixture: this module gets a KOR node process of its own
HELD = 40
READERS, PAGES, PAGE = 8, 6, 5


def _granted(engine: sa.Engine) -> list[set[str]]:
    """The objects named by each access-granted event of a TAXII objects read."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_events.c.item_id, audit_events.c.details)
                            .where(audit_events.c.kind == "access-granted")).all()
    out = []
    for item_id, details in rows:
        found = json.loads(details)
        if found.get("via") == "taxii:objects":
            out.append({e["id"] for e in found["entries"]} if "entries" in found
                       else {item_id})
    return out


def _events(engine: sa.Engine, kind: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(audit_events)
                                .where(audit_events.c.kind == kind)).scalar_one())


def _heads(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(tree_heads)).scalar_one())


def test_concurrent_readers_share_commits_and_each_page_is_on_record_when_it_arrives(
        kor: Served) -> None:
    status = kor.post("kim", II, [indicator(n) for n in range(1000, 1000 + HELD)])
    assert status["success_count"] == HELD + 1, status
    engine = sa.create_engine(f"sqlite:///{kor.folder / 'node.db'}")
    try:
        heads_before, granted_before = _heads(engine), len(_granted(engine))
        start = threading.Barrier(READERS)
        problems: list[str] = []
        pages: list[set[str]] = []
        lock = threading.Lock()

        def reader(n: int) -> None:
            session = requests.Session()
            start.wait()
            for page in range(PAGES):
                r = session.get(kor.url + OBJECTS, headers=kor.headers("kim"), verify=kor.ca,
                                params={"limit": PAGE, "added_after": "2000-01-01T00:00:00Z"}
                                if page % 2 else {"limit": PAGE}, timeout=30)
                if r.status_code != 200:
                    problems.append(f"reader {n} page {page}: {r.status_code} {r.text}")
                    continue
                given = {o["id"] for o in r.json()["objects"]}
                # The body has arrived: the read that gave it must already be on record.
                if not any(given <= logged for logged in _granted(engine)):
                    problems.append(f"reader {n} page {page}: served before it was audited")
                with lock:
                    pages.append(given)

        threads = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert problems == []
        reads = READERS * PAGES
        assert len(pages) == reads and all(len(p) == PAGE for p in pages)
        assert len(_granted(engine)) - granted_before == reads  # one event per read
        commits = _heads(engine) - heads_before  # each audit commit signs one tree head
        # Readers waiting at once share a commit and its disk sync; one commit per read
        # (each request committing alone on the event loop) fails this.
        assert 0 < commits < reads, commits
    finally:
        engine.dispose()


def test_a_lone_read_whose_audit_commit_fails_is_not_served(kor: Served) -> None:
    """A reader alone on the server has its audit commit made on the event loop (no other
    request could share it): when that commit fails (here a trigger put into the database
    on the host refuses access events), neither the object nor the page is served, and
    nothing is on record; once the log can be written again, both are served, on record."""
    status = kor.post("kim", II, [indicator(n) for n in range(2000, 2003)])
    assert status["success_count"] == 4, status
    item = indicator(2000)["id"]
    engine = sa.create_engine(f"sqlite:///{kor.folder / 'node.db'}")
    session = requests.Session()
    reads = ((OBJECTS + f"{item}/", {}), (OBJECTS, {"limit": 2}))

    def get(path: str, params: dict[str, int]) -> requests.Response:
        return session.get(kor.url + path, headers=kor.headers("kim"), params=params,
                           verify=kor.ca, timeout=30)

    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_reads BEFORE INSERT ON audit_events "
                "WHEN NEW.kind = 'access-granted' BEGIN SELECT RAISE(ABORT, 'disk refused'); "
                "END")
        granted = _events(engine, "access-granted")
        for path, params in reads:
            r = get(path, params)
            assert r.status_code == 503, (path, r.status_code, r.text[:300])
            assert "objects" not in r.json() and r.json()["title"] == "Audit log unavailable"
        assert _events(engine, "access-granted") == granted, "a refused read is on record"
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse_reads")
        for path, params in reads:
            r = get(path, params)
            assert r.status_code == 200 and r.json()["objects"], (path, r.text[:300])
            granted += 1
            assert _events(engine, "access-granted") == granted, "a read served unrecorded"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS refuse_reads")
        engine.dispose()
