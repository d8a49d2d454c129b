"""What ``gsomia doctor`` checks: this machine and, optionally, a node folder; each check
says what works and what to fix. The agreements in effect are the caller's
(``agreements``: the composition root's loader), so that a broken agreement file is a
finding of its own rather than a crash."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from gsomia.core.types import instant

if TYPE_CHECKING:
    from gsomia.core.agreements import Catalogue

__all__ = ["MODULES", "Check", "clock_checks", "delivery_checks", "environment",
           "node_checks", "partner_checks", "people_refusal_checks", "pin_checks",
           "refusal_checks"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    def to_json(self) -> dict[str, object]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix,
                "required": self.required}


MODULES = (("cryptography", "the crypto core"), ("rfc8785", "canonical JSON"),
           ("sqlalchemy", "the store"), ("alembic", "store migrations"),
           ("numpy", "tracking"), ("scipy", "tracking"), ("starlette", "the HTTP API"),
           ("uvicorn", "node serve"), ("stix2validator", "publish"), ("httpx", "the exchange"),
           ("matplotlib", "evaluate"))


# The smallest object publish's STIX check accepts.
_PROBE = {"type": "identity", "spec_version": "2.1",
          "id": "identity--00000000-0000-4000-8000-000000000000", "name": "gsomia doctor",
          "created": "2017-08-29T00:00:00.000Z", "modified": "2017-08-29T00:00:00.000Z"}


def _load(module: str) -> str:
    """Load ``module`` as gsomia uses it; say how."""
    if module == "stix2validator":
        # publish checks objects against stix2-validator's schemas and tables read from its
        # files (gsomia.shell.stix_check), never importing the package: that import costs
        # 1.5 s of CPU (jsonschema's format checkers build dozens of grammars), which every
        # doctor run paid to check code that publish never runs.
        from gsomia.shell.stix_check import check_stix

        check_stix(_PROBE)
        return "its schemas and tables load"
    importlib.import_module(module)
    return "importable"


def environment(agreements: Callable[[], Catalogue],
                on_module: Callable[[str], None] | None = None) -> list[Check]:
    """The checks of this machine; ``agreements()`` loads the agreements in effect,
    ``on_module(name)`` is called before each import (some take a while)."""
    out = [Check("python", sys.version_info >= (3, 11), sys.version.split()[0],
                 "install Python 3.11 or newer")]
    for module, why in MODULES:
        if on_module is not None:
            on_module(module)
        try:
            out.append(Check(f"module {module}", True, f"{_load(module)} ({why})"))
        except Exception as exc:  # the message is the finding
            out.append(Check(f"module {module}", False, str(exc),
                             "run `make demo` or `pip install -e .`"))
    try:
        from cryptography.hazmat.primitives import hpke  # noqa: F401  (47+: RFC 9180 HPKE)

        out.append(Check("HPKE in cryptography", True, "cryptography.hazmat.primitives.hpke"))
    except ImportError:
        out.append(Check("HPKE in cryptography", False, "this cryptography has no HPKE",
                         "pip install 'cryptography>=47'"))
    try:
        cat = agreements()
        out.append(Check("agreements", True, f"{len(cat.agreements)} loaded: "
                         + ", ".join(sorted(cat.agreements))))
    except Exception as exc:  # the message is the finding
        out.append(Check("agreements", False, str(exc),
                         "fix the agreement file named in the message or unset "
                         "GSOMIA_AGREEMENTS"))
    pg = any(Path(p).is_dir() for p in ("/usr/lib/postgresql",)) or shutil.which("initdb")
    out.append(Check("PostgreSQL server (tests)", bool(pg),
                     "installed" if pg else "not installed",
                     "`sh tools/pg-test-cluster.sh install` (make test does it)", False))
    chromium = shutil.which("chromium") or Path("/usr/bin/chromium").exists()
    out.append(Check("Chromium (browser tests)", bool(chromium),
                     "installed" if chromium else "not installed",
                     "`sh tools/install-chromium.sh` (make test does it)", False))
    return out


def node_checks(folder: Path, agreements: Callable[[], Catalogue]) -> list[Check]:
    """The checks of the node folder ``folder``, under the agreements ``agreements()``."""
    from gsomia.shell.node import NodeConfig, open_node

    out: list[Check] = []
    try:
        config = NodeConfig.load(folder)
    except Exception as exc:
        return [Check("node configuration", False, str(exc),
                      f"create a node with `gsomia node init --party P --dir {folder}`")]
    out.append(Check("node configuration", True, f"party {config.party}, database "
                     f"{config.database}"))
    from gsomia.shell.keys import exposed_private_keys

    for name, rel in config.keys.items():
        path = folder / rel
        if not path.exists():
            out.append(Check(f"key {name}", False, f"{path} is missing",
                             "restore it from backup; a node cannot work without its keys"))
    names = {folder / rel: name for name, rel in config.keys.items()}
    for path, mode in exposed_private_keys(folder, config.keys):
        out.append(Check(f"key {names[path]}", False, f"{path} has mode {oct(mode)}",
                         f"chmod 600 {path}"))
    if not any(c.name.startswith("key ") for c in out):
        out.append(Check("key files", True, f"{len(config.keys)} present, private ones 0600"))
    from gsomia.shell.node import taxii_collections

    try:
        labelled = taxii_collections(folder, config, agreements())
        out.append(Check("TAXII collections", True, f"holdings and {len(labelled)} labelled"))
    except Exception as exc:
        out.append(Check("TAXII collections", False, str(exc),
                         "fix [[taxii.collections]] in node.toml: the node will not start"))
    try:
        from gsomia.service import handlers

        with open_node(folder, catalogue=agreements()) as node, \
                node.store.reader() as reader:
            verdict = handlers.verify_audit(reader, public_key=node.keys.public_signing_key())
        out.append(Check("database and audit log", verdict.ok,
                         f"{verdict.size} events, intact" if verdict.ok else
                         "; ".join(f"{p.what} at {p.where}" for p in verdict.problems[:3]),
                         "" if verdict.ok else
                         "run `gsomia audit verify --node DIR` and report the incident "
                         "to the originators (Art. 17)"))
    except Exception as exc:
        out.append(Check("database and audit log", False, str(exc),
                         "check the database URL in node.toml and that the server is up"))
    out.extend(partner_checks(folder, agreements))
    out.extend(clock_checks(folder, agreements))
    out.extend(pin_checks(folder))
    out.extend(delivery_checks(folder, agreements))
    out.extend(refusal_checks(folder, agreements))
    out.extend(people_refusal_checks(folder, agreements))
    return out


_REFUSAL_KINDS = ("notice-refused", "envelope-refused", "peer-refused")


def refusal_checks(folder: Path, agreements: Callable[[], Catalogue],
                   now: datetime | None = None) -> list[Check]:
    """What partners sent that this node refused in the last day, per partner, summaries
    counted in full; a partner refused at one of its bounds (``[limits]``) is named, as a
    partner flooding, or one whose bound is too low for its traffic."""
    from gsomia.shell.node import open_node

    since = (now or datetime.now(UTC)) - timedelta(days=1)
    try:
        with open_node(folder, catalogue=agreements()) as node, \
                node.store.repository() as repo:
            rows = repo.newest_of(_REFUSAL_KINDS, 10_000)
    except Exception:  # the database check above already says what is wrong
        return []
    counts: dict[str, int] = {}
    at_bound: dict[str, set[str]] = {}
    for _, at, actor, raw in rows:
        if instant(at) < since:
            break  # newest first
        details = json.loads(raw) if isinstance(raw, str) else raw or {}
        counts[actor] = counts.get(actor, 0) + int(details.get("refused", 1)
                                                   if details.get("summary") else 1)
        if details.get("limit"):
            at_bound.setdefault(actor, set()).add(str(details["limit"]))
    if not counts:
        return [Check("partners' refused messages", True, "none in the last day",
                      required=False)]
    detail = ", ".join(f"{who} {n}" + (f" (at {', '.join(sorted(at_bound[who]))})"
                                       if who in at_bound else "")
                       for who, n in sorted(counts.items(), key=lambda c: -c[1]))
    return [Check("partners' refused messages", not at_bound, f"last day: {detail}",
                  "" if not at_bound else "a partner sends past its bound: see the "
                  "notice-refused events in the audit log; raise [limits] in node.toml only "
                  "for traffic you expect", required=False)]


def people_refusal_checks(folder: Path, agreements: Callable[[], Catalogue],
                          now: datetime | None = None) -> list[Check]:
    """The node's people whose TAXII posts were refused for their rights in the last day,
    summaries counted in full: one past the bound (ten a minute on record one by one) is
    named, as an account probing what it may write."""
    from gsomia.service.refusals import OTHER_ACCOUNTS, OTHER_PARTNERS
    from gsomia.shell.node import open_node

    since = (now or datetime.now(UTC)) - timedelta(days=1)
    try:
        with open_node(folder, catalogue=agreements()) as node, \
                node.store.repository() as repo:
            rows = repo.newest_of(("action-refused",), 10_000)
    except Exception:  # the database check above already says what is wrong
        return []
    counts: dict[str, int] = {}
    past_bound: set[str] = set()
    for _, at, actor, raw in rows:
        if instant(at) < since:
            break  # newest first
        details = json.loads(raw) if isinstance(raw, str) else raw or {}
        if details.get("action") != "taxii-post":
            continue  # the desk's refusals: one event each, as before
        if actor in (OTHER_ACCOUNTS, OTHER_PARTNERS):
            # Accounts beyond those counted apart, together (before notnow20, under the
            # partners' label): many people, not one named so.
            actor = "accounts not counted apart"
        if details.get("summary"):
            past_bound.add(actor)
        counts[actor] = counts.get(actor, 0) + int(details.get("refused", 1)
                                                   if details.get("summary") else 1)
    if not counts:
        return [Check("people's refused TAXII posts", True, "none in the last day",
                      required=False)]
    detail = ", ".join(f"{who} {n}" + (" (past the bound)" if who in past_bound else "")
                       for who, n in sorted(counts.items(), key=lambda c: -c[1]))
    return [Check("people's refused TAXII posts", not past_bound, f"last day: {detail}",
                  "" if not past_bound else "a person posts what their rights refuse, again "
                  "and again: see the action-refused events (gsomia audit events), and "
                  "their account", required=False)]


# The sensor reports a clock check reads: those stored in the log's newest events.
CLOCK_EVENTS = 20_000


def clock_checks(folder: Path, agreements: Callable[[], Catalogue],
                 recent: int = CLOCK_EVENTS) -> list[Check]:
    """Sensor reports stored among the log's ``recent`` newest events stamped more than
    ``AHEAD_S`` after the node held them: the warning centre leaves such measurements out,
    so the originator's clock running ahead would otherwise blind it unseen."""
    import json

    from gsomia.core.sensor_feed import AHEAD_S, seconds_ahead
    from gsomia.shell.node import open_node

    ahead: dict[str, float] = {}
    try:
        with open_node(folder, catalogue=agreements()) as node, \
                node.store.repository() as repo:
            party = node.party
            newest = repo.newest_events(1)
            mark = max(0, int(newest[0][0]) - recent) if newest else 0
            while rows := repo.contents_stored_after(mark, stix_type="note", limit=500):
                for seq, originator, content, held_at, _label in rows:
                    mark = int(seq)
                    try:
                        report = json.loads(content).get("x_gsomia_sensor_report")
                        by = seconds_ahead(report, held_at) if report and held_at else None
                    except Exception:  # not a measurement: the centre counts it unusable
                        continue
                    if by is not None and by > AHEAD_S:
                        ahead[originator] = max(ahead.get(originator, by), by)
    except Exception:  # the database check above already says what is wrong
        return []
    if not ahead:
        return [Check("partner clocks", True, f"no sensor report stamped more than "
                      f"{AHEAD_S:.0f} s after it was held", required=False)]
    said = [(f"partner {p}'s" if p != party else "this node's sensors'")
            + f" clock runs {by:.0f} s ahead" for p, by in sorted(ahead.items())]
    return [Check("partner clocks", False, "; ".join(said),
                  f"measurements stamped more than {AHEAD_S:.0f} s ahead are left out of "
                  "the warning centre: ask the partner to set its clock (NTP)",
                  required=False)]


def pin_checks(folder: Path) -> list[Check]:
    """Each party in partners.json: is its TLS CA pinned, and is the CA file the pinned one?
    A party without a good pin is nobody's: its node can neither call nor answer this one."""
    from gsomia.shell.exchange import Partners
    from gsomia.shell.peer_identity import pinned_cas

    try:
        partners = Partners.load(folder)
    except Exception as exc:
        return [Check("partner CAs pinned", False, str(exc),
                      "run `gsomia federation up` again to rewrite partners.json")]
    if partners is None:
        return []
    unpinned = sorted(set(partners.peers) - set(pinned_cas(folder, partners)))
    if not unpinned:
        return [Check("partner CAs pinned", True, ", ".join(sorted(partners.peers))
                      + ": each CA file matches its pin")]
    return [Check("partner CAs pinned", False, ", ".join(unpinned) + ": no tls_ca_sha256 in "
                  "partners.json, or the CA file (tls/ca.crt, tls/partners/P.crt) is not the "
                  "pinned CA; certificates count as none of them",
                  "compare the partner's CA fingerprint (`gsomia node info`) with the pin "
                  "out of band, then run `gsomia federation up` again")]


def delivery_checks(folder: Path, agreements: Callable[[], Catalogue]) -> list[Check]:
    """Deliveries this node gave up (a partner refused them for good, or they could not be
    sent): never retried, so the operator has to hear of them."""
    from gsomia.shell.exchange import PENDING, REFUSED
    from gsomia.shell.node import open_node

    try:
        with open_node(folder, catalogue=agreements()) as node, \
                node.store.repository() as repo:
            counts = repo.deliveries_by_status()
            refused = repo.deliveries_refused(3)
            held = repo.held_back()
            unreadable = repo.unreadable_outbox()
    except Exception:  # the database check above already says what is wrong
        return []
    waiting = counts.get(PENDING, 0)
    out = [_held_back(held)] if held else []
    if unreadable:
        out.append(_unreadable(unreadable))
    if not refused:
        return [Check("deliveries", True, f"none refused, {waiting} pending",
                      required=False), *out]
    shown = "; ".join(f"{item_id} to {recipient}: {why}" for item_id, recipient, why in refused)
    return [Check("deliveries", False,
                  f"{counts.get(REFUSED, 0)} refused ({shown}), {waiting} pending",
                  "see the delivery-refused events in the audit log; an item too large "
                  "for partners must be split and published again", required=False), *out]


def _unreadable(rows: list[tuple[int, str, str, str]]) -> Check:
    """Outbox rows a value of which was written behind the node's back (the disk is not
    trusted): the courier leaves them, sends none of them, and goes on with the others."""
    said = "; ".join(f"row {row} ({kind} to {to}): {why}" for row, kind, to, why in rows[:5])
    more = f"; and {len(rows) - 5} more" if len(rows) > 5 else ""
    return Check("outbox rows the courier leaves", False,
                 f"{len(rows)} not sent: {said}{more}",
                 "the database was changed behind the node's back: run `gsomia audit "
                 "verify`, and restore the node's database from a backup")


def _held_back(held: list[tuple[str, str, int, int, int]]) -> Check:
    """Rows a partner keeps answering "not now" at one of its bounds: they are tried again,
    less and less often (at most hourly), for as long as it does; a bound that never frees
    (its revocations of consents it does not hold count for good) holds them for ever, so
    the operator has to hear of them rather than find them in the outbox."""
    said = "; ".join(f'{to}: {n} {kind} (up to {tries} tries, {in_a_row} "not now" in a row)'
                     for to, kind, n, tries, in_a_row in held)
    return Check("held back at partners' bounds", False, said,
                 "the partner is at one of its [limits] bounds: they go once it has room; "
                 "ask its operator if they stay (gsomia doctor there names the limit)",
                 required=False)


def partner_checks(folder: Path, agreements: Callable[[], Catalogue]) -> list[Check]:
    """Partners' exchanged tree heads: any that did not extend the one recorded fails."""
    from gsomia.shell.node import open_node
    from gsomia.shell.notices import partner_heads

    try:
        with open_node(folder, catalogue=agreements()) as node:
            rows = partner_heads(node)
    except Exception:  # the database check above already says what is wrong
        return []
    if not rows:
        return [Check("partner tree heads", True, "none exchanged yet (not in a federation, "
                      "or the node has not run)", required=False)]
    bad = [r for r in rows if r["consistent"] is False]
    detail = ", ".join(f"{r['partner']} size {(r['head'] or {}).get('size')} "
                       + {True: "consistent", False: "INCONSISTENT", None: "not checked"}[
                           r["consistent"]] for r in rows)
    return [Check("partner tree heads", not bad, detail,
                  "" if not bad else "a partner's log was rewritten: see `gsomia audit "
                  "partners --node DIR` and consult the partner (Art. 20)")]
