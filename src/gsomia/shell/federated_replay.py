"""The demo's launch through the real system, once per regime (``gsomia demo``).

Each regime runs through its own federation of three node processes in the regime's
topology (:mod:`gsomia.shell.federation`): what each party's model produced (pre-launch
indicators, sensor reports, flight paths, impact predictions, warnings) is published at its
node at its time in the flight, ``speed`` times faster; the release policy and the exchange
decide what crosses. Measured: which link each item crossed, when each node held it, and
every node's audit log. The command (``shell/commands/demo.py``) parses and prints.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from gsomia.core.sharing import REGIMES
from gsomia.core.types import PARTIES, SECRET_LEVELS, iso, utc_text

if TYPE_CHECKING:
    from concurrent.futures import Future

    from gsomia.core.scenario import Result
    from gsomia.service.handlers import LabelRequest
    from gsomia.shell.federation import Started
    from gsomia.shell.node import Node
    from gsomia.shell.scenarios import ModelRuns

__all__ = ["DEFAULT_SPEED", "HUB_CONSENTS", "PARTY_ORDER", "REGIME_ORDER", "Federations",
           "HubConsent", "federation_stories", "serve_federation"]


REGIME_ORDER = tuple(REGIMES)
PARTY_ORDER = PARTIES


# ---- the launch through the real system, once per regime ----------------------------------
#
# What each party's model produced is published as items at its node, at its time in the
# flight (``speed`` times faster); the federation's topology is the regime's, and the release
# policy and the exchange decide what crosses. Measured times are the model's time of an item
# plus what the real system took from the moment the item was due to be published until the
# node held it (publishing, release, delivery, relay with consent).

REPORT_WINDOW_S = 120.0  # one sensor report item per sensor and two minutes of flight
IPP_EVERY_S = 30.0       # at most one impact prediction item per track and 30 s
DEFAULT_SPEED = 100.0
DRAIN_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Planned:
    """One item to publish: when in the flight (s after lift-off), where, what, how marked."""

    at_s: float
    origin: str
    category: str
    obj: dict[str, Any]
    label: LabelRequest


def _own_picture(memo: Mapping[tuple[Any, ...], Any], launch_id: str, seed: int, party: str,
                 cued: bool) -> Any:
    # The model memoises each party's own picture under ("own", launch, seed, party, cued, …).
    for key, value in memo.items():
        if key[:5] == ("own", launch_id, seed, party, cued):
            return value
    return None


def plan_items(res: Result, memo: Mapping[tuple[Any, ...], Any],
               label_policy: str | None = None) -> list[Planned]:
    """The items each party's model produced in one regime's run, in flight order: pre-launch
    indicators about the launch site, sensor reports (by pseudonymous sensor: a sensor's
    identity and site stay with its owner) until the pictures settle, flight paths, impact
    predictions (of its own and fused pictures, not those it received) and warnings.
    ``label_policy`` pins every label to an agreement."""
    import math
    import uuid

    import numpy as np

    from gsomia.core.tracking.indicators import default_label, generate
    from gsomia.service.handlers import LabelRequest

    s = res.scenario
    launch = s.launch
    start = launch.launched_at or datetime.combine(launch.date, datetime.min.time(), UTC)
    tag = {"launch": launch.id, "regime": s.regime.name, "seed": s.seed}
    authors = {p: f"identity--{uuid.uuid5(uuid.NAMESPACE_URL, f'gsomia/{p}')}"
               for p in PARTY_ORDER}
    out: list[Planned] = []

    def add(at_s: float, origin: str, category: str, abstract: str, data: dict[str, Any],
            level: str, rel_to: Sequence[str], caveats: frozenset[str] = frozenset()) -> None:
        when = start + timedelta(seconds=at_s)
        stamp = utc_text(when, 3)
        t = f"T{'+' if at_s >= 0 else '−'}{abs(at_s):.0f} s"
        obj = {"type": "note", "spec_version": "2.1", "id": f"note--{uuid.uuid4()}",
               "created": stamp, "modified": stamp, "abstract": abstract,
               "content": f"{abstract} ({launch.missile.name} {launch.local_date}, {t})",
               "object_refs": [authors[origin]],
               "x_gsomia_replay": {**tag, "at_s": round(at_s, 3), "category": category,
                                   "data": data}}
        label = LabelRequest(level, tuple(sorted(rel_to)), "dprk-missile", caveats,
                             policy=label_policy, category=category)
        out.append(Planned(at_s, origin, category, obj, label))

    for ind in generate(launch.facility.id, start, s.seed, s.other_facilities):
        if ind.facility != launch.facility.id:
            continue   # the model's reports on other sites (its false leads) stay out
        doc = default_label(ind)
        add((ind.observed_at - start).total_seconds(), ind.originator, "pre-launch-indicator",
            f"{ind.originator} {ind.kind}: {ind.claim} at {ind.facility}",
            {"kind": ind.kind, "claim": ind.claim, "facility": ind.facility,
             "reliability": ind.reliability, "credibility": ind.credibility,
             "confidence": ind.confidence},
            str(doc["level"]), list(doc["rel_to"]))

    # The model's pictures stop once their predictions settle; reports after that feed
    # nothing, so the replay stops there too.
    settled = max((at for preds in res.predictions.values() for at, _, _ in preds),
                  default=float(s.trajectory.flight_time_s))
    sensors = {x.id: x for x in s.sensors}
    handles: dict[str, int] = {}
    for sid, m in sorted(res.measurements.items()):
        if len(m) == 0 or m.owner not in PARTY_ORDER:
            continue
        handles[m.owner] = handles.get(m.owner, 0) + 1
        handle = f"{m.owner} sensor {handles[m.owner]}"
        rl = sensors[sid].report_label
        window = np.floor(m.report_times / REPORT_WINDOW_S).astype(int)
        for w in sorted(set(window.tolist())):
            idx = np.nonzero((window == w) & (m.report_times <= settled))[0]
            if len(idx) == 0:
                continue
            values = [[None if math.isnan(float(v)) else round(float(v), 6) for v in m.values[i]]
                      for i in idx]
            add(float(m.report_times[idx[-1]]), m.owner, "sensor-report",
                f"{handle}: {len(idx)} {'radar' if m.kind == 'rae' else 'infrared'} "
                f"detections", {"sensor": handle, "kind": m.kind,
                                "times_s": [round(float(m.times[i]), 3) for i in idx],
                                "values": values},
                rl.level, sorted(rl.rel_to), rl.caveats)

    lats, lons = s.trajectory.ground_track(48)
    points = [[round(float(a), 4), round(float(o), 4)] for a, o in zip(lats, lons, strict=True)]
    for p in PARTY_ORDER:
        outcome = res.parties[p]
        own = _own_picture(memo, launch.id, s.seed, p, outcome.cued)
        if own is not None and own.initiated_s:
            add(float(own.initiated_s[0]), p, "flight-path",
                f"{p} flight path from {launch.facility.name}", {"points": points},
                SECRET_LEVELS[p], PARTY_ORDER)
        last: dict[str, float] = {}
        for at, track, g in res.predictions.get(p, []):
            if "@" in track or (track in last and at - last[track] < IPP_EVERY_S):
                continue   # received from a partner, or too soon after the last one
            last[track] = at
            add(float(at), p, "impact-prediction", f"{p} impact prediction ({track})",
                {"track": track, **g.as_dict()}, SECRET_LEVELS[p], PARTY_ORDER)
        for warning in outcome.warnings:
            add(float(warning.at_s), p, "warning",
                f"{p} warning {warning.action}: {', '.join(warning.regions) or 'no region'}",
                warning.to_json(), SECRET_LEVELS[p], PARTY_ORDER)
    out.sort(key=lambda x: x.at_s)
    return out


@dataclass(frozen=True)
class Held:
    """An item a node received: from whom (``provider``), whose (``origin``), when."""

    item_id: str
    holder: str
    provider: str
    origin: str
    category: str
    agreement: str | None
    at: datetime


def _received_since(node: Node, last_row: int) -> tuple[list[Held], int]:
    import sqlalchemy as sa

    from gsomia.shell.store import custody

    c = custody.c
    with node.store.engine.connect() as conn:
        rows = conn.execute(sa.select(c.row, c.item_id, c.holder, c.provider, c.agreement,
                                      c.original_label, c.at)
                            .where(c.row > last_row, c.event == "received")
                            .order_by(c.row)).all()
    out = []
    for r in rows:
        label = json.loads(bytes(r.original_label))
        out.append(Held(r.item_id, r.holder, r.provider or "", str(label.get("originator", "")),
                        str(label.get("category") or ""), r.agreement, r.at))
    return out, (rows[-1].row if rows else last_row)


HUB_CONSENTS = ("per-item", "standing")


@dataclass(frozen=True)
class HubConsent:
    """How the TISA hub obtains the originator's consent in the demo's hub federation.

    ``per-item`` (the strict mode): USA's operator asks for each item and the originator's
    operator answers after ``desk_delay_s`` seconds of flight time (``--desk-delay``; 0
    answers at once, so the measured relay is the machine's part alone). ``standing``: before
    the flight each originator grants USA a standing consent to pass its items of every
    category, for dprk-missile, to the other party (``consent standing grant``); the hub then
    relays with no request and no desk."""

    mode: str = "per-item"
    desk_delay_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "desk_delay_s": self.desk_delay_s}


class ConsentDesk:
    """The hub's operators (TISA): for each item the USA node received from KOR or JPN, USA's
    operator asks the originator's consent to pass it to the other party, and the originator's
    operator grants it, over the peer API (``consent request`` / ``consent grant``). People do
    this under TISA; the demo scripts them to answer ``delay`` seconds (wall clock) after
    the request, 0 by default, so the measured relay is then the machine's part of it."""

    def __init__(self, nodes: Mapping[str, Node], workers: int = 4,
                 delay: float = 0.0) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from gsomia.shell.exchange import peer_client

        self.nodes = nodes
        self.hub = nodes["USA"]
        self.clients = {p: peer_client(n.folder) for p, n in nodes.items()}
        self.delay = delay
        # With a delay every request waits at the desk at once, as it would with a person
        # per partner desk: the answers must not queue behind each other's delay.
        self.pool = ThreadPoolExecutor(max_workers=workers if delay <= 0 else 64,
                                       thread_name_prefix="consent")
        self.lock = threading.Lock()
        self.outstanding = 0
        self.requested = 0
        self.granted = 0
        self.failures: list[str] = []

    def take(self, received: Sequence[Held], rel_to: Mapping[str, Sequence[str]]) -> None:
        for held in received:
            if held.origin in ("", "USA"):
                continue
            for recipient in rel_to.get(held.item_id, ()):
                if recipient in ("USA", held.origin):
                    continue
                with self.lock:
                    self.outstanding += 1
                self.pool.submit(self._round, held.item_id, held.origin, recipient)

    def _round(self, item_id: str, origin: str, recipient: str) -> None:
        from gsomia.shell import consents

        try:
            asked = consents.consent_request(self.hub, item_id, recipient, "TISA relay",
                                               client=self.clients["USA"])
            with self.lock:
                self.requested += 1
            if self.delay > 0:
                time.sleep(self.delay)
            consents.consent_decide(self.nodes[origin], asked["request"], True,
                                      "TISA: North Korean missile information",
                                      client=self.clients[origin])
            with self.lock:
                self.granted += 1
        except Exception as exc:  # reported with the regime; the relay then does not happen
            with self.lock:
                self.failures.append(f"{item_id} → {recipient}: {exc}")
        finally:
            with self.lock:
                self.outstanding -= 1

    def idle(self) -> bool:
        with self.lock:
            return self.outstanding == 0

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for client in self.clients.values():
            client.close()

    def to_json(self) -> dict[str, Any]:
        return {"requested": self.requested, "granted": self.granted,
                "failures": self.failures[:5], "failed": len(self.failures)}


class Timeline:
    """What the replay shows while it runs: a live panel on a terminal, a few plain lines
    otherwise (milestones: the first item each node holds from each party), nothing with
    ``--json``."""

    def __init__(self, console: Console | None) -> None:
        self.console = console
        self.live_ok = console is not None and console.is_terminal
        self.live: Any = None
        self.events: list[str] = []
        self.counts: dict[str, dict[str, int]] = {}
        self.name = ""
        self.t_s = 0.0
        self.horizon_s = 1.0
        self.published = 0
        self.total = 0
        self.phase = ""
        self.seen: set[tuple[str, str, str]] = set()

    def begin(self, name: str, description: str, total: int, horizon_s: float,
              speed: float) -> None:
        self.name, self.total, self.horizon_s = name, total, max(horizon_s, 1.0)
        self.published, self.t_s, self.events, self.seen = 0, 0.0, [], set()
        self.counts = {p: {"published": 0, "held": 0, "via": 0} for p in PARTY_ORDER}
        self.phase = "starting the JPN, KOR and USA nodes"
        if self.console is None:
            return
        self.console.print(f"\n[bold]{name}[/bold] — {description}: {total} items, "
                           f"replayed {speed:g}× faster than the flight", highlight=False)
        if self.live_ok:
            from rich.live import Live

            self.live = Live(get_renderable=self._render, console=self.console,
                             refresh_per_second=8, transient=False)
            self.live.start()

    def set_phase(self, phase: str) -> None:
        self.phase = phase

    def tick(self, t_s: float) -> None:
        self.t_s = max(t_s, 0.0)

    def publish(self, origin: str, n: int) -> None:
        self.published += n
        self.counts[origin]["published"] += n

    def hold(self, held: Held, t_s: float, latency_s: float) -> None:
        c = self.counts.get(held.holder)
        if c is None:
            return
        c["held"] += 1
        if held.provider != held.origin:
            c["via"] += 1
        key = (held.holder, held.origin, held.category)
        if key in self.seen or held.category not in ("flight-path", "impact-prediction",
                                                     "warning", "sensor-report"):
            return
        self.seen.add(key)
        route = "directly" if held.provider == held.origin else f"via {held.provider}"
        line = (f"T+{t_s:5.0f} s  {held.holder} holds {held.origin}'s first {held.category}, "
                f"{route} ({latency_s * 1e3:.0f} ms)")
        self.events.append(line)
        if self.console is not None and not self.live_ok:
            self.console.print("   " + line, highlight=False)

    def end(self, summary: str) -> None:
        if self.live is not None:
            self.phase = "done"
            self.live.stop()
            self.live = None
        if self.console is not None:
            self.console.print("   " + summary, highlight=False)

    def _render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.text import Text

        table = Table(box=None, pad_edge=False, show_edge=False)
        table.add_column("node")
        table.add_column("published", justify="right")
        table.add_column("held from partners", justify="right")
        table.add_column("of which relayed", justify="right")
        for p, c in self.counts.items():
            table.add_row(p, str(c["published"]), str(c["held"]), str(c["via"]))
        done = min(self.t_s, self.horizon_s)
        return Group(
            Text(f"{self.name}: {self.phase} · T+{self.t_s:.0f} s · "
                 f"published {self.published}/{self.total}"),
            ProgressBar(total=self.horizon_s, completed=done, width=60),
            table, Text("\n".join(self.events[-6:]) or " "))


class Federations:
    """The demo's federations, one folder per regime under ``root``, each started on a
    thread ahead of its turn: the first while the model runs, the next one once the current
    one is measured (its processes then start while the current one stops and its audit is
    verified, never while a replay is measured). :meth:`close` stops whatever still runs."""

    def __init__(self, root: Path, regimes: Sequence[str],
                 open_node: Callable[[Path], Node]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.root = root
        self.open_node = open_node
        self.order = list(regimes)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="federation-up")
        self.started: dict[str, Future[Started]] = {}
        self.start_next()

    def start_next(self) -> None:
        from gsomia.shell import federation

        for name in self.order:
            if name not in self.started:
                self.started[name] = self.pool.submit(
                    federation.up, self.root / name, name, federation.free_base_port())
                return

    def wait(self, name: str) -> Started:
        """The regime's federation, up (its status document)."""
        if name not in self.started:
            self.start_next()
        return self.started[name].result()

    def stop(self, name: str) -> dict[str, str] | None:
        from gsomia.shell import federation

        folder = self.root / name
        if not (folder / federation.FEDERATION_FILE).exists():
            return None
        return federation.down(folder)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for name in self.started:
            self.stop(name)


def grant_standing(nodes: Mapping[str, Node], timeout: float) -> dict[str, Any]:
    """Each originator's standing consent to USA passing its items to the other party
    (every category, dprk-missile, for a day), and the wait until USA holds them all."""
    from gsomia.shell import consents, exchange

    until = iso(datetime.now(UTC) + timedelta(days=1))
    granted: list[str] = []
    for origin, other in (("KOR", "JPN"), ("JPN", "KOR")):
        node = nodes[origin]
        doc = consents.standing_grant(
            node, to=other, categories=sorted(node.catalogue.vocabulary.categories),
            purpose="dprk-missile", until=until, actor="replay")
        granted.append(doc["id"])
    held = exchange.wait_until(lambda: set(granted) <= {
        c["id"] for c in consents.standing_list(nodes["USA"]) if c["state"] == "in force"},
        timeout)
    return {"standing": granted, "held_at_hub": held, "requested": 0, "granted": 0,
            "failures": [] if held else ["the hub did not obtain the standing consents"],
            "failed": 0 if held else 1}


def replay_regime(name: str, res: Result, memo: Mapping[tuple[Any, ...], Any],
                  feds: Federations, speed: float, view: Timeline,
                  hub: HubConsent = HubConsent()) -> dict[str, Any]:
    """Publish the regime's items at three real nodes in the regime's topology, let the
    exchange deliver, measure what each node held and when, verify every node's audit log
    and stop the nodes."""
    from gsomia.shell import exchange, federation

    folder = feds.root / name
    plan = plan_items(res, memo, federation.LABEL_POLICIES.get(name))
    by_id = {str(x.obj["id"]): x for x in plan}
    rel_to = {i: x.label.rel_to for i, x in by_id.items()}
    horizon = max((x.at_s for x in plan), default=0.0)
    view.begin(name, REGIMES[name].description, len(plan), horizon, speed)
    began = time.monotonic()
    out: dict[str, Any] = {"regime": name, "topology": name, "folder": str(folder),
                           "speed": speed,
                           "label_policy": federation.LABEL_POLICIES.get(name)}
    nodes: dict[str, Node] = {}
    desk: ConsentDesk | None = None
    held: list[Held] = []
    last = dict.fromkeys(PARTY_ORDER, 0)
    due: dict[str, datetime] = {}
    published: dict[str, datetime] = {}
    zero = datetime.now(UTC)
    phases: dict[str, float] = {}

    def t_now() -> float:
        return (datetime.now(UTC) - zero).total_seconds() * speed

    def poll() -> None:
        for p, node in nodes.items():
            got, last[p] = _received_since(node, last[p])
            for h in got:
                held.append(h)
                x = by_id.get(h.item_id)
                if x is not None and h.item_id in published:
                    view.hold(h, x.at_s + (h.at - due[h.item_id]).total_seconds(),
                              (h.at - published[h.item_id]).total_seconds())
            if desk is not None and p == "USA" and got:
                desk.take(got, rel_to)
        view.tick(t_now())

    try:
        out["base_port"] = feds.wait(name)["base_port"]
        nodes = {p: feds.open_node(folder / p) for p in PARTY_ORDER}
        if name == "hub":
            out["hub_consent"] = hub.to_json()
            if hub.mode == "standing":
                out["consents"] = grant_standing(nodes, DRAIN_TIMEOUT_S)
            else:
                desk = ConsentDesk(nodes, delay=hub.desk_delay_s / speed)
        phases["up"] = time.monotonic() - began

        def publish(ready: Sequence[Planned], due_at: datetime | None) -> None:
            for origin in PARTY_ORDER:
                mine = [x for x in ready if x.origin == origin]
                if not mine:
                    continue
                at = datetime.now(UTC)
                exchange.publish(nodes[origin], entries=[(x.obj, x.label) for x in mine],
                                 now=at, actor="replay")
                for x in mine:
                    item_id = str(x.obj["id"])
                    due[item_id] = due_at or zero + timedelta(seconds=x.at_s / speed)
                    published[item_id] = at.replace(microsecond=at.microsecond // 1000 * 1000)
                view.publish(origin, len(mine))
            poll()

        def drained() -> bool:
            poll()
            return (desk is None or desk.idle()) and all(
                exchange.pending(n) == 0 for n in nodes.values())

        # Before lift-off: the pre-launch indicators (days to hours ahead, so their delivery
        # and any consents are settled before the flight's clock starts).
        view.set_phase("before lift-off: pre-launch indicators")
        before = [x for x in plan if x.at_s < 0]
        zero = datetime.now(UTC)
        publish(before, zero)
        # Twice in a row: a relay is queued only after its consent comes back.
        settled = exchange.wait_until(lambda: drained() and drained(), DRAIN_TIMEOUT_S,
                                      interval=0.05)
        phases["before"] = time.monotonic() - began - phases["up"]
        view.set_phase("in flight")
        zero = datetime.now(UTC) + timedelta(seconds=0.1)
        queue = [x for x in plan if x.at_s >= 0]
        while queue:
            t = (datetime.now(UTC) - zero).total_seconds() * speed
            ready = [x for x in queue if x.at_s <= t]
            if not ready:
                poll()
                nxt = zero + timedelta(seconds=queue[0].at_s / speed)
                time.sleep(max(0.0, min(0.1, (nxt - datetime.now(UTC)).total_seconds())))
                continue
            queue = queue[len(ready):]
            publish(ready, None)
        phases["flight"] = time.monotonic() - began - sum(phases.values())
        view.set_phase("delivering what is still queued")
        out["delivered"] = settled and exchange.wait_until(
            lambda: drained() and drained(), DRAIN_TIMEOUT_S, interval=0.05)
        poll()
        phases["drain"] = time.monotonic() - began - sum(phases.values())
        if desk is not None:
            desk.close()
            out["consents"] = desk.to_json()
            desk = None
        out["released"] = {p: _released(n) for p, n in nodes.items()}
        view.set_phase("stopping the nodes")
        feds.start_next()
    finally:
        if desk is not None:
            desk.close()
        try:
            out["stopped"] = feds.stop(name)
        finally:
            if nodes:
                out["audit"] = _verify(nodes)
            for node in nodes.values():
                node.close()
    phases["down_and_verify"] = time.monotonic() - began - sum(phases.values())
    out["phases_s"] = {k: round(v, 2) for k, v in phases.items()}
    out.update(measure(name, res, plan, held, due, published))
    out["seconds"] = round(time.monotonic() - began, 2)
    crossed = sum(link["items"] for link in out["links"])
    audit = "intact on all three nodes" if all(a["ok"] for a in out["audit"].values()) \
        else "TAMPERED"
    view.end(f"{len(plan)} items published, {crossed} deliveries crossed between nodes; "
             f"audit {audit}; {out['seconds']:.0f} s")
    return out


def _released(node: Node) -> dict[str, dict[str, int]]:
    """What this node's release policy queued for each partner, by outcome."""
    from gsomia.shell import exchange

    out: dict[str, dict[str, int]] = {}
    for row in exchange.outbox_rows(node):
        by = out.setdefault(str(row["recipient"]), {})
        by[str(row["status"])] = by.get(str(row["status"]), 0) + 1
    return out


def _verify(nodes: Mapping[str, Node]) -> dict[str, dict[str, Any]]:
    from gsomia.service import handlers

    audits = {}
    for p, node in nodes.items():
        with node.store.reader() as reader:
            verdict = handlers.verify_audit(reader, public_key=node.keys.public_signing_key())
        audits[p] = {"ok": verdict.ok, "events": verdict.size}
    return audits


def measure(name: str, res: Result, plan: Sequence[Planned], held: Sequence[Held],
            due: Mapping[str, datetime], published: Mapping[str, datetime]) -> dict[str, Any]:
    """Per link, what crossed and how long it took; per party, when its node held a warning
    and its first impact prediction, in seconds after lift-off (the model's time of the item
    plus what the real system took from when it was due)."""
    import statistics

    by_id = {str(x.obj["id"]): x for x in plan}

    def t_of(item_id: str, at: datetime) -> float:
        return by_id[item_id].at_s + (at - due[item_id]).total_seconds()

    links: dict[tuple[str, str], dict[str, Any]] = {}
    for h in held:
        if h.item_id not in published:
            continue
        link = links.setdefault((h.provider, h.holder), {
            "from": h.provider, "to": h.holder, "items": 0, "relayed": 0,
            "categories": {}, "agreements": {}, "latencies": [], "relay_latencies": []})
        link["items"] += 1
        link["relayed"] += h.provider != h.origin
        link["categories"][h.category] = link["categories"].get(h.category, 0) + 1
        if h.agreement:
            link["agreements"][h.agreement] = link["agreements"].get(h.agreement, 0) + 1
        link["latencies"].append((h.at - published[h.item_id]).total_seconds())
        if h.provider != h.origin:
            link["relay_latencies"].append(link["latencies"][-1])
    link_rows = []
    for (_, _), link in sorted(links.items()):
        lat = sorted(link.pop("latencies"))
        link["latency_ms"] = {"p50": round(statistics.median(lat) * 1e3, 1),
                              "max": round(lat[-1] * 1e3, 1)}
        relay = sorted(link.pop("relay_latencies"))
        if relay:
            # The hub's cost: from the originator's publish to the third party holding it,
            # consent included (a desk's delay, or none under a standing consent).
            link["relay_latency_ms"] = {"p50": round(statistics.median(relay) * 1e3, 1),
                                        "max": round(relay[-1] * 1e3, 1)}
        link_rows.append(link)

    parties: dict[str, Any] = {}
    for p in PARTY_ORDER:
        outcome = res.parties[p]
        # What the node holds: its own items from when they were published, partners' from
        # when they arrived.
        holding: list[tuple[float, Planned, str]] = [
            (t_of(i, published[i]), x, "own") for i, x in by_id.items()
            if x.origin == p and i in published]
        holding += [(t_of(h.item_id, h.at), by_id[h.item_id],
                     h.origin if h.provider == h.origin else f"{h.origin} via {h.provider}")
                    for h in held if h.holder == p and h.item_id in by_id
                    and h.item_id in published]
        holding.sort(key=lambda e: e[0])
        warning = next(((t, src, str(x.obj["abstract"])) for t, x, src in holding
                        if x.category == "warning"
                        and x.obj["x_gsomia_replay"]["data"].get("action") == "issued"),
                       None)
        ipp = next(((t, src) for t, x, src in holding if x.category == "impact-prediction"),
                   None)
        from_partners: dict[str, int] = {}
        for h in held:
            if h.holder == p:
                from_partners[h.origin] = from_partners.get(h.origin, 0) + 1
        parties[p] = {
            "model_first_warning_s": None if outcome.first_warning_s is None
            else round(outcome.first_warning_s, 1),
            "warning_held_s": None if warning is None else round(warning[0], 1),
            "warning_from": None if warning is None else warning[1],
            "warning": None if warning is None else warning[2],
            "first_ipp_held_s": None if ipp is None else round(ipp[0], 1),
            "first_ipp_from": None if ipp is None else ipp[1],
            "published": sum(1 for x in plan if x.origin == p),
            "held_from": dict(sorted(from_partners.items())),
        }
    published_by: dict[str, dict[str, int]] = {}
    for x in plan:
        by = published_by.setdefault(x.origin, {})
        by[x.category] = by.get(x.category, 0) + 1
    lag = [(published[i] - due[i]).total_seconds() for i in published]
    return {"items": len(plan), "published": published_by, "links": link_rows,
            "crossed": sum(link["items"] for link in link_rows), "parties": parties,
            "publish_lag_ms": {"p50": round(statistics.median(lag) * 1e3, 1) if lag else None,
                               "max": round(max(lag) * 1e3, 1) if lag else None}}


def federation_stories(runs: ModelRuns, feds: Federations, console: Console | None,
                       speed: float, hub: HubConsent = HubConsent()) -> dict[str, Any]:
    """Every regime of ``runs`` through its own federation, one after another."""
    view = Timeline(console)
    if console is not None:
        console.print(f"\nThe launch through the real system: three node processes per regime "
                      f"on 127.0.0.1, node folders in {feds.root} (removed at the end "
                      "unless --keep)", highlight=False)
    return {name: replay_regime(name, res, runs.memo, feds, speed, view, hub)
            for name, res in runs.results.items()}


def serve_federation(folder: Path, regime_name: str,
                     open_node: Callable[[Path], Node]) -> dict[str, Any]:
    """Start the regime's federation again (its nodes keep what they hold) with a demo user
    per node; the addresses and logins."""
    from gsomia.service import handlers
    from gsomia.shell import federation
    from gsomia.shell.node import new_token

    home = folder / regime_name
    federation.up(home, regime_name, federation.free_base_port())
    try:
        users = {}
        for p in PARTY_ORDER:
            with open_node(home / p) as node:
                token = new_token()
                handlers.add_user(node.uow(), keys=node.keys, schemes=node.catalogue.schemes,
                                  name="analyst", clearance=SECRET_LEVELS[p],
                                  need_to_know=["dprk-missile"], token=token,
                                  now=datetime.now(UTC),
                                  purposes=node.catalogue.vocabulary.purposes)
                users[p] = token
        return {"regime": regime_name, "folder": str(home),
                "serving": {p: {"url": n["url"], "user": "analyst", "token": users[p]}
                            for p, n in federation.status(home)["nodes"].items()}}
    except BaseException:
        federation.down(home)
        raise
