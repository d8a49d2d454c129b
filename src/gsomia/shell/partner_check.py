"""Catching a node rolled back in full: ask partners for the newest head of it they hold.

Every 2 s partners exchange signed tree heads (:mod:`gsomia.shell.notices`), so each keeps
heads this node signed. A database restored from an older copy together with its
``tree-head.json`` verifies locally (nothing in the folder remembers the newer log), but a
partner's copy of a newer head, signed with this node's own key, proves the roll-back.
``gsomia audit verify --partners`` and the start of ``node serve``/``node run`` ask each
partner over the peer API (``GET /peer/v1/tree-heads/held/``) and judge the answer with
:func:`gsomia.core.partner_heads.judge_held_head`.

Served side: :func:`held_head_of` picks, among the partner's heads this node recorded (sent
to it or obtained from it, consistent or not), the largest that verifies with the partner's
key, and returns it exactly as the partner signed it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gsomia.core.audit import TreeHead, consistency_proof
from gsomia.core.errors import MalformedInput, ProofInvalid, RolledBack
from gsomia.core.partner_heads import OwnHeadVerdict, judge_held_head
from gsomia.core.types import Party

if TYPE_CHECKING:
    from gsomia.shell.node import Node

HELD_PATH = "/peer/v1/tree-heads/held/"
START_TIMEOUT = 3.0  # seconds per partner at start: a partner down must not hold it up


def held_head_of(node: Node, partner: Party, partner_public: Ed25519PublicKey
                 ) -> TreeHead | None:
    """The largest head of ``partner`` this node recorded that the partner signed (the
    newest of equals). Read largest first by index, so an answer reads the partner's few
    largest records, not every head in the log (it did, and grew with the log). A record
    with a repeated key would be sorted by its first (SQLite's ``json_extract``, in
    ``_HEADS_BY_SIZE``) and read here by its last (``json.loads``): the node never writes
    one, and the head read is what counts, its partner and signature checked again."""
    from gsomia.core.audit import verify_tree_head

    best: TreeHead | None = None
    with node.store.repository() as repo:
        for size, row in repo.partner_heads_by_size(partner):
            if best is not None and type(size) is int and size < best.size:
                break  # the rest are smaller still: none can be the answer
            head = _partner_head(row.details, partner)
            if head is None or (best is not None and head.size <= best.size):
                continue
            try:
                verify_tree_head(head, partner_public)
            except ProofInvalid:
                continue  # not the partner's statement: proves nothing about it
            best = head
    return best


def _partner_head(details: str, partner: Party) -> TreeHead | None:
    """The head a record names if it names ``partner`` and parses; None otherwise (a
    record of someone else, or one that cannot be read, proves nothing)."""
    try:
        doc = json.loads(details)
        if doc.get("partner") != partner:
            return None
        return TreeHead.from_json(doc["head"])
    except (ValueError, KeyError, TypeError, AttributeError, MalformedInput):
        return None


@dataclass(frozen=True, slots=True)
class PartnerView:
    """One partner's answer: the head of this node it holds and what it says."""

    partner: Party
    status: str  # an OwnHeadVerdict status, or "unreachable"
    reason: str
    head: TreeHead | None = None

    @property
    def failed(self) -> bool:
        return self.status in ("rolled-back", "forked")

    def to_json(self) -> dict[str, Any]:
        return {"partner": self.partner, "status": self.status, "reason": self.reason,
                "failed": self.failed,
                "head": self.head.to_json() if self.head is not None else None}


def judge(node: Node, held: TreeHead | None) -> OwnHeadVerdict:
    """``held`` against this node's own log (its latest signed head and its leaves)."""
    with node.store.reader() as reader:
        latest = reader.latest_head()
        proof = None
        if held is not None and latest is not None and held.size <= latest.size:
            leaves = reader.leaf_hashes()
            if len(leaves) >= latest.size:
                proof = consistency_proof(leaves, held.size, latest.size)
    return judge_held_head(held, latest, proof, node.keys.public_signing_key())


def ask_partners(node: Node, *, timeout: float = 10.0) -> list[PartnerView]:
    """Ask every partner in ``partners.json`` for the newest head of this node it holds."""
    from gsomia.shell.exchange import Partners, peer_client

    partners = Partners.load(node.folder)
    if partners is None:
        return []
    views: list[PartnerView] = []
    with peer_client(node.folder, timeout=timeout) as client:
        for code, peer in sorted(partners.peers.items()):
            if code == node.party:
                continue
            try:
                response = client.get(peer.url.rstrip("/") + HELD_PATH,
                                      headers={"connection": "close"})
                if response.status_code != 200:
                    raise OSError(f"HTTP {response.status_code}: {response.text[:200]}")
                doc = response.json()
                raw = doc.get("head") if isinstance(doc, dict) else None
                held = TreeHead.from_json(raw) if raw is not None else None
            except Exception as exc:  # down, TLS refused, an old node without the route
                views.append(PartnerView(code, "unreachable", str(exc)[:300]))
                continue
            verdict = judge(node, held)
            views.append(PartnerView(code, verdict.status, verdict.reason, held))
    return views


def check_at_start(node: Node, *, timeout: float = START_TIMEOUT) -> list[PartnerView]:
    """Refuse to start a node whose head file is missing or that partners prove rolled back
    (raise :class:`RolledBack`, exit 1); a partner that does not answer within ``timeout``
    is named on stderr and skipped, so a partner down never holds the start up."""
    kept = node.store.head_file
    if kept is not None and not kept.exists():
        with node.store.reader() as reader:
            signed = reader.latest_head() is not None
        if signed:
            raise RolledBack(f"refusing to start: {kept} is missing, so a database restored "
                             "from an older copy would not show. Check the log with the "
                             "partners (gsomia audit verify --partners --node DIR), then run "
                             "gsomia audit accept-head --node DIR --checked-with-partners")
    views = ask_partners(node, timeout=timeout)
    bad = [v for v in views if v.failed]
    for view in views:
        if view.status == "unreachable":
            print(f"gsomia {node.party}: partner {view.partner} did not answer the roll-back "
                  f"check at start ({view.reason}); starting without it", file=sys.stderr,
                  flush=True)
    if bad:
        raise RolledBack(
            "refusing to start: " + "; ".join(f"{v.partner}: {v.reason}" for v in bad)
            + ". Restore the newest copy of the database and tree-head.json, then run "
              "gsomia audit verify --partners --node DIR")
    return views
