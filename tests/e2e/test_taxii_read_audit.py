"""Reads audited in the request (``--audit-reads sync``, the default) against a real node
process (`gsomia node serve`, HTTPS on loopback, real tokens): readers paging at the same
time share durable audit commits, and each page is on record before its body arrives."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from test_taxii_interop import free_port, start_node, wait_ready
from test_taxii_oracles import _stop

from gsomia.bootstrap import collection_id
from gsomia.core.labels import SecurityLabel
from gsomia.core.stix import label_marking
from gsomia.core.taxii import TAXII_MEDIA
from gsomia.service import handlers
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import init_node, new_token
from gsomia.shell.store import audit_events, tree_heads

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

CATALOGUE = load_catalogue()
OBJECTS = f"gsomia/collections/{collection_id('KOR')}/objects/"
LABEL = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "JPN"}), "dprk-missile")
HELD = 40
READERS, PAGES, PAGE = 8, 6, 5


@dataclass
class Served:
    url: str
    folder: Path
    token: str

    @property
    def ca(self) -> str:
        return str(self.folder / "tls" / "ca.crt")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": TAXII_MEDIA}


@pytest.fixture(scope="module")
def kor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("read-audit") / "kor"
    made = init_node(folder, "KOR", catalogue=CATALOGUE, now=datetime.now(UTC))
    token = new_token()
    handlers.add_user(made.uow(), keys=made.keys, schemes=CATALOGUE.schemes, name="kim",
                      clearance="군사II급비밀", need_to_know=["dprk-missile"], token=token,
                      now=datetime.now(UTC))
    made.close()
    port = free_port()
    process = start_node(folder, port)
    served = Served(f"https://127.0.0.1:{port}/", folder, token)
    try:
        wait_ready(served.url, served.ca, process)
        marking = label_marking(LABEL, LABEL.english_marking(CATALOGUE.schemes),
                                created=datetime(2024, 3, 1, tzinfo=UTC))
        objs = [{"type": "indicator", "spec_version": "2.1",
                 "id": f"indicator--{uuid.UUID(int=n + 1, version=4)}",
                 "created": "2024-03-01T08:00:00.000Z", "modified": "2024-03-01T08:00:00.000Z",
                 "name": f"TEL movement {n}", "pattern": f"[x-dprk-site:name = 'Sinpo-{n}']",
                 "pattern_type": "stix", "valid_from": "2024-03-01T08:00:00Z",
                 "object_marking_refs": [marking["id"]]} for n in range(HELD)]
        r = requests.post(served.url + OBJECTS, data=json.dumps({"objects": [marking, *objs]}),
                          headers={**served.headers, "Content-Type": TAXII_MEDIA},
                          verify=served.ca, timeout=30)
        assert r.status_code == 202 and r.json()["success_count"] == HELD + 1, r.text
        yield served
    finally:
        _stop(process)


def _granted(engine: sa.Engine) -> list[set[str]]:
    """The objects named by each access-granted event of a TAXII objects read."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_events.c.item_id, audit_events.c.details)
                            .where(audit_events.c.kind == "access-granted")).all()
    out = []
    for item_id, details in rows:
        found = json.loads(details)
        if found.get("via") == "taxii:objects":
            out.append({i for i, _ in found["items"]} if "items" in found else {item_id})
    return out


def _heads(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(tree_heads)).scalar_one())


def test_concurrent_readers_share_commits_and_each_page_is_on_record_when_it_arrives(
        kor: Served) -> None:
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
                r = session.get(kor.url + OBJECTS, headers=kor.headers, verify=kor.ca,
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
