"""One launch through a regime's real three-node federation (``scenario run --federation``,
``gsomia demo``).

The regime's federation is started on loopback (``federation up``, node folders in a
temporary directory, or the demo's), every party's radars and pre-launch indicators are
played into its own node at ``speed`` times real time (``gsomia sensors run``'s playlist, as
the node's operator on its host), the nodes track, share and warn by themselves (each ``node
run``'s warning centre, the outbox, the exchange), and the figures of the model's JSON are
read back from what each node holds: times are the flight seconds each node's centre stamped
its own outputs with (its measurements' clock); a partner's report, track or prediction
counts from when the node stored it (wall-clock time since lift-off times ``speed``), or when
it was made if later. ``links`` gives, per sender and recipient, how many items were
delivered and the measured latency from the publish at the sender to the signed receipt
recorded there (p50/p99, wall-clock milliseconds); ``delivered`` whether nothing was left
queued, ``audit`` every node's verified log. Under ``hub`` KOR and JPN each grant USA a
standing consent to pass their items to the other before lift-off (the machine relay of
TISA: no operator answers per item), or, per item (:class:`HubConsent`), a scripted desk of
operators asks and grants each relay; ``relays`` gives, per originator, hub and final
recipient, the latency from the publish at the originator to the receipt the hub obtained
from the final recipient.
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gsomia.core.errors import MalformedInput

if TYPE_CHECKING:
    from gsomia.core.tracking.launches import Launch
    from gsomia.shell.node import Node

__all__ = ["HUB_CONSENTS", "ConsentDesk", "HubConsent", "Starting", "evaluate_federated",
           "grant_standing",
           "launch_key", "run_federated", "serve_federation", "through_federations"]

PARTIES = ("JPN", "KOR", "USA")
TOPOLOGIES = ("none", "direct", "trilateral", "hub")
HUB = "USA"
# A party's indicator lines, and its measurement lines with their report times.
Playlist = tuple[list[dict[str, Any]], list[tuple[float, dict[str, Any]]]]
# Making and opening node folders, one thread at a time: alembic's migration context is
# global to the process, and the demo runs federations on several threads.
_FOLDERS = threading.Lock()
# How long the hub may take to hold both standing consents before the flight starts.
CONSENT_TIMEOUT_S = 60.0


def _held(node: Any, began: float, speed: float
          ) -> list[tuple[str, dict[str, Any], float]]:
    """(originator, object, when it was stored in flight seconds) of every note held."""
    with node.store.repository() as repo:
        rows = repo.contents_held("note")
    return [(str(originator), json.loads(bytes(content)), (added_at.timestamp() - began) * speed)
            for originator, content, added_at in rows]


def _party_figures(party: str, held: list[tuple[str, dict[str, Any], float]], epoch: Any,
                   falls: list[tuple[float, float]], space_launch: bool,
                   cued: bool) -> dict[str, Any]:
    """The model's figures (:class:`gsomia.core.scenario.Outcome`) from what ``party``'s node
    holds. ``falls``: where the flight's objects truly come down, the missile first, then each
    spent stage; the first impact point a warning stated is scored against the nearest, as a
    drop error for a space launch (no single impact point), else as the impact error."""
    from gsomia.core.tracking import earth
    from gsomia.core.types import instant

    def flight_s(obj: dict[str, Any], origin: str, stored: float) -> float:
        made = float((instant(obj["created"]) - epoch).total_seconds())
        # A partner's item counts from when this node held it; its own from when it was made.
        return made if origin == party else max(made, float(stored))

    def first(values: list[float]) -> float | None:
        return round(min(values), 1) if values else None

    detections = [flight_s(o, origin, at) for origin, o, at in held
                  if "x_gsomia_sensor_report" in o]
    own = [(o, o[k]) for origin, o, _ in held if origin == party
           for k in ("x_gsomia_track", "x_gsomia_ipp", "x_gsomia_warning") if k in o]
    tracks = [flight_s(o, origin, at) for origin, o, at in held if "x_gsomia_track" in o]
    ipps = [flight_s(o, origin, at) for origin, o, at in held if "x_gsomia_ipp" in o]
    warnings = sorted((d for o, d in own if "x_gsomia_warning" in o),
                      key=lambda d: float(d["at_s"]))
    issued = [w for w in warnings if w["action"] == "issued"]
    error = None
    first_impact = next((w for w in issued if w.get("impact_lat") is not None), None)
    if first_impact is not None:
        error = round(min(float(earth.great_circle_m(
            math.radians(first_impact["impact_lat"]), math.radians(first_impact["impact_lon"]),
            math.radians(lat), math.radians(lon))) for lat, lon in falls) / 1e3, 1)
    return {"cued": cued, "first_detection_s": first(detections), "first_track_s": first(tracks),
            "first_ipp_s": first(ipps),
            "first_warning_s": first([float(w["at_s"]) for w in issued]),
            "ipp_error_km": None if space_launch else error,
            "drop_error_km": error if space_launch else None,
            "warnings": [{k: w[k] for k in ("action", "at_s", "track", "level", "regions",
                                            "impact_lat", "impact_lon", "time_to_impact_s",
                                            "reason", "active")} for w in warnings]}


def _latencies(nodes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(links, relays): per ``sender->recipient``, the delivered items the sender originated;
    per ``originator->hub->recipient``, those it passed on for another party; each from the
    publish at the originator until the recipient's answer (its signed receipt) came back to
    the sender (the outbox's ``delivered_at``; up to answerat28, when the sender recorded it)."""
    import numpy as np

    published: dict[str, Any] = {}
    for code, node in nodes.items():
        with node.store.repository() as repo:
            published.update({item_id: (code, added_at)
                              for item_id, added_at in repo.added_from(code)})
    by: dict[str, list[float]] = {}
    for code, node in nodes.items():
        with node.store.repository() as repo:
            rows = repo.delivered()
        for item_id, recipient, delivered_at in rows:
            if item_id not in published or delivered_at is None:
                continue
            origin, at = published[item_id]
            path = f"{code}->{recipient}" if origin == code else \
                f"{origin}->{code}->{recipient}"
            by.setdefault(path, []).append((delivered_at - at).total_seconds() * 1000.0)
    links: dict[str, Any] = {}
    relays: dict[str, Any] = {}
    for path, ms in sorted(by.items()):
        a = np.asarray(ms)
        (relays if path.count("->") == 2 else links)[path] = {
            "items": len(ms), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1)}
    return links, relays


HUB_CONSENTS = ("standing", "per-item")


@dataclass(frozen=True)
class HubConsent:
    """How the TISA hub obtains the originator's consent to relay (``regime hub``).

    ``standing`` (the machine relay): before lift-off each originator grants USA a standing
    consent to pass its items of every category, for dprk-missile, to the other party
    (``consent standing grant``); the hub then relays with no request and no desk.
    ``per-item`` (the strict mode): USA's operator asks for each item and the originator's
    operator answers after ``desk_delay_s`` seconds of flight time (0: at once, so that the
    measured relay is the machine's part alone)."""

    mode: str = "standing"
    desk_delay_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "desk_delay_s": self.desk_delay_s}


@dataclass(frozen=True)
class Held:
    """An item a node received: from whom (``provider``), whose (``origin``), releasable to
    whom (``rel_to``, as its originator labelled it)."""

    item_id: str
    provider: str
    origin: str
    rel_to: tuple[str, ...]


def _received_since(node: Node, last_row: int) -> tuple[list[Held], int]:
    with node.store.repository() as repo:
        rows = repo.received_since(last_row)
    out = []
    for _, item_id, provider, original_label in rows:
        label = json.loads(bytes(original_label))
        out.append(Held(item_id, provider or "", str(label.get("originator", "")),
                        tuple(str(p) for p in label.get("rel_to", ()))))
    return out, (rows[-1][0] if rows else last_row)


class ConsentDesk:
    """The hub's operators under TISA, per item: for each item the USA node received from KOR
    or JPN, USA's operator asks the originator's consent to pass it to the other party, and
    the originator's operator grants it, over the peer API (``consent request`` / ``consent
    grant``), ``delay`` seconds (wall clock) after the request. A thread watches what the hub
    receives from :meth:`start` to :meth:`close`."""

    def __init__(self, nodes: Mapping[str, Node], delay: float = 0.0, workers: int = 4) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from gsomia.shell.exchange import peer_client

        self.nodes = nodes
        self.hub = nodes[HUB]
        self.clients = {p: peer_client(n.folder) for p, n in nodes.items()}
        self.delay = delay
        # With a delay every request waits at the desk at once, as it would with a person
        # per partner desk: the answers must not queue behind each other's delay.
        self.pool = ThreadPoolExecutor(max_workers=workers if delay <= 0 else 64,
                                       thread_name_prefix="consent")
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.watcher = threading.Thread(target=self._watch, name="consent-desk", daemon=True)
        self.outstanding = 0
        self.requested = 0
        self.granted = 0
        self.failures: list[str] = []

    def start(self) -> None:
        self.watcher.start()

    def _watch(self) -> None:
        last = 0
        while not self.stop.wait(0.05):
            got, last = _received_since(self.hub, last)
            self.take(got)

    def take(self, received: Sequence[Held]) -> None:
        for held in received:
            if held.origin in ("", HUB):
                continue
            for recipient in held.rel_to:
                if recipient in (HUB, held.origin):
                    continue
                with self.lock:
                    self.outstanding += 1
                self.pool.submit(self._round, held.item_id, held.origin, recipient)

    def _round(self, item_id: str, origin: str, recipient: str) -> None:
        from gsomia.shell import consents

        try:
            asked = consents.consent_request(self.hub, item_id, recipient, "TISA relay",
                                             client=self.clients[HUB])
            with self.lock:
                self.requested += 1
            if self.delay > 0:
                time.sleep(self.delay)
            consents.answer_consent(self.nodes[origin], asked["request"], True,
                                    "TISA: North Korean missile information",
                                    client=self.clients[origin])
            with self.lock:
                self.granted += 1
        except Exception as exc:  # reported with the run; that relay then does not happen
            with self.lock:
                self.failures.append(f"{item_id} → {recipient}: {exc}")
        finally:
            with self.lock:
                self.outstanding -= 1

    def busy(self) -> bool:
        with self.lock:
            return self.outstanding > 0

    def close(self) -> None:
        self.stop.set()
        if self.watcher.is_alive():
            self.watcher.join()
        self.pool.shutdown(wait=True)
        for client in self.clients.values():
            client.close()

    def to_json(self) -> dict[str, Any]:
        return {"requested": self.requested, "granted": self.granted,
                "failures": self.failures[:5], "failed": len(self.failures)}


def _consent_requests(nodes: Mapping[str, Node]) -> int:
    """How many per-item consent requests the federation's nodes hold, all told."""
    total = 0
    for node in nodes.values():
        with node.store.repository() as repo:
            total += repo.consent_request_count()
    return total


def grant_standing(nodes: Mapping[str, Node], timeout: float) -> dict[str, Any]:
    """Each originator's standing consent to USA passing its items to the other party
    (every category, dprk-missile, for a day), and the wait until USA holds them all."""
    from gsomia.core.types import iso
    from gsomia.shell import consents, exchange

    until = iso(datetime.now(UTC) + timedelta(days=1))
    granted: list[str] = []
    for origin, other in (("KOR", "JPN"), ("JPN", "KOR")):
        node = nodes[origin]
        doc = consents.standing_grant(
            node, to=other, categories=sorted(node.catalogue.vocabulary.categories),
            purpose="dprk-missile", until=until, actor="operator")
        granted.append(doc["id"])
    held = exchange.wait_until(lambda: set(granted) <= {
        c["id"] for c in consents.standing_list(nodes[HUB]) if c["state"] == "in force"},
        timeout)
    return {"standing": granted, "held_at_hub": held}


def _verify(nodes: Mapping[str, Node]) -> dict[str, dict[str, Any]]:
    from gsomia.service import handlers

    audits = {}
    for p, node in nodes.items():
        with node.store.reader() as reader:
            verdict = handlers.verify_audit(reader, public_key=node.keys.public_signing_key())
        audits[p] = {"ok": verdict.ok, "events": verdict.size}
    return audits


def run_federated(day: str, index: int | None, regime_name: str, seed: int,
                  speed: float, open_node: Callable[[Path], Node], *,
                  folder: Path | None = None, until_s: float | None = None,
                  hub: HubConsent = HubConsent(),
                  started: Callable[[], object] | None = None,
                  keep_running: bool = False) -> dict[str, Any]:
    """The launch through the regime's federation, in ``folder`` (kept, its nodes stopped
    unless ``keep_running`` and the run succeeded) or a temporary one; sensors played until
    ``until_s`` seconds of flight (the whole flight by default). ``started``: wait for the
    federation started elsewhere (:class:`Starting`) instead of starting it."""
    from gsomia.core.tracking.trajectory import fit
    from gsomia.shell import feeds
    from gsomia.shell.sensor_player import playlist

    if regime_name not in TOPOLOGIES:
        raise MalformedInput(f"regime {regime_name!r} is not run through a federation",
                             where="--regime", expected=", ".join(TOPOLOGIES))
    launch = feeds.find_launch(day, index)
    trajectory = fit(launch.flight_request())
    plays: dict[str, Playlist] = {}
    for p in PARTIES:
        indicators, lines = playlist(day, index, p, seed)
        # Cut from the whole flight's measurements: the same draws as an uncut run.
        plays[p] = (indicators, [x for x in lines if until_s is None or x[0] <= until_s])
    if folder is not None:
        doc = _through(folder, launch, trajectory, regime_name, seed, speed, plays,
                       open_node, hub, started, keep_running)
    else:
        with tempfile.TemporaryDirectory(prefix="gsomia-federation-") as tmp:
            doc = _through(Path(tmp) / "fed", launch, trajectory, regime_name, seed, speed,
                           plays, open_node, hub, started)
    return {"launch": launch.to_json(), "regime": regime_name, "seed": seed,
            "through": "federation", "speed": speed,
            "truth": {"flight_time_s": round(trajectory.flight_time_s, 1),
                      "apogee_km": round(trajectory.apogee_km, 1),
                      "range_km": round(trajectory.range_km, 1),
                      "impact_lat": round(trajectory.impact_lat_deg, 3),
                      "impact_lon": round(trajectory.impact_lon_deg, 3)},
            **({} if until_s is None else {"played_until_s": until_s}), **doc}


def _through(folder: Path, launch: Launch, trajectory: Any, regime_name: str, seed: int,
             speed: float, plays: Mapping[str, Playlist], open_node: Callable[[Path], Node],
             hub: HubConsent, started: Callable[[], object] | None,
             keep_running: bool = False) -> dict[str, Any]:
    from gsomia.core.tracking.stages import spent_stages
    from gsomia.core.types import instant
    from gsomia.shell import exchange, federation
    from gsomia.shell.sensor_player import Target, cueing, play, settle

    def opened(home: Path) -> Node:
        with _FOLDERS:
            return open_node(home)

    nodes: dict[str, Any] = {}
    desk: ConsentDesk | None = None
    out: dict[str, Any] = {}
    try:
        if started is None:
            _up(folder, regime_name)
        else:
            started()
        for p in PARTIES:
            nodes[p] = opened(folder / p)
        if regime_name == "hub":
            out["hub_consent"] = hub.to_json()
            if hub.mode == "standing":
                # Granted before lift-off, so that no relay waits for a person.
                out["consents"] = grant_standing(nodes, CONSENT_TIMEOUT_S)
            else:
                desk = ConsentDesk(nodes, delay=hub.desk_delay_s / speed)
                desk.start()
        failures: list[BaseException] = []
        # One lift-off for every player and for the figures read back, once every party's
        # node is open and its indicators are in: each player used to start its own clock
        # after opening its node and sending its indicators, one after another (the folders'
        # lock), and the figures counted from before all that, so on a loaded machine a
        # partner's report counted seconds of wall time (x speed) late: at 40x KOR's first
        # report reached JPN at 120.3 s of flight instead of about 80.
        liftoff: dict[str, float] = {}
        ready = threading.Barrier(len(PARTIES), action=lambda: liftoff.update(
            monotonic=time.monotonic(), wall=time.time()))

        def feed(party: str) -> None:
            target: Target | None = None
            try:
                target = Target(str(folder / party), None, None, opened)
                indicators, lines = plays[party]
                if indicators:
                    target.send(indicators)
                ready.wait()
                play(target, [], lines, speed, liftoff["monotonic"])
            except threading.BrokenBarrierError:
                pass  # another party's player failed: its failure is the one shown
            except BaseException as exc:  # shown once every party is done
                failures.append(exc)
                ready.abort()
            finally:
                if target is not None:
                    target.close()

        threads = [threading.Thread(target=feed, args=(p,), name=f"sensors-{p}")
                   for p in PARTIES]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise failures[0]
        began = liftoff["wall"]   # lift-off, as the players' clocks count

        def busy() -> bool:
            return (desk is not None and desk.busy()) or any(
                exchange.pending(n) > 0 for n in nodes.values())

        out["settled"] = settle(nodes, busy)
        out["delivered"] = not busy()
        if desk is not None:
            desk.close()
            out["consents"] = desk.to_json()
            desk = None
        elif "consents" in out:
            # Measured, not assumed: under standing consents no node should have been asked
            # for one per item.
            out["consents"]["requested"] = _consent_requests(nodes)
        epoch = instant(next(line["epoch"] for p in PARTIES for _, line in plays[p][1]))
        falls = [(trajectory.impact_lat_deg, trajectory.impact_lon_deg)] + [
            (d.lat_deg, d.lon_deg) for d, _ in spent_stages(trajectory)]
        held = {p: _held(nodes[p], began, speed) for p in PARTIES}
        out["parties"] = {p: _party_figures(p, held[p], epoch, falls,
                                            trajectory.missile_class == "SLV",
                                            cueing(launch, p, seed)[1]) for p in PARTIES}
        out["held_from"] = {p: _count_by_origin(p, held[p]) for p in PARTIES}
        out["links"], relays = _latencies(nodes)
        if regime_name == "hub":
            out["relays"] = relays
    finally:
        if desk is not None:
            desk.close()
        try:
            # A federation kept running (``demo --serve``'s) is stopped only if its run
            # failed; its audit is verified live (the reader's snapshot is made for that).
            if (folder / federation.FEDERATION_FILE).exists() and \
                    not (keep_running and "parties" in out):
                out["stopped"] = federation.down(folder)
        finally:
            if "parties" in out:
                out["audit"] = _verify(nodes)
            for node in nodes.values():
                node.close()
    return out


def _count_by_origin(party: str, held: Sequence[tuple[str, dict[str, Any], float]]
                     ) -> dict[str, int]:
    """How many items ``party``'s node holds from each partner."""
    counts: dict[str, int] = {}
    for origin, _, _ in held:
        if origin != party:
            counts[origin] = counts.get(origin, 0) + 1
    return dict(sorted(counts.items()))


def _up(folder: Path, regime_name: str) -> None:
    from gsomia.shell import federation

    with _FOLDERS:
        federation.up_on_free_ports(folder, regime_name)


class Starting:
    """The demo's federations (``root/REGIME``), started one after another on a thread:
    the first ``ahead`` at once (while the model runs), the others when their run asks (an
    idle node still costs CPU: a twentieth of a core); :meth:`close` stops whatever still
    runs (a run that failed or never came)."""

    def __init__(self, root: Path, regimes: Sequence[str], ahead: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.root = root
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="federation-up")
        self.lock = threading.Lock()
        self.futures = {name: self.pool.submit(_up, root / name, name)
                        for name in regimes[:ahead]}

    def wait(self, name: str) -> None:
        with self.lock:
            if name not in self.futures:
                self.futures[name] = self.pool.submit(_up, self.root / name, name)
            future = self.futures[name]
        future.result()

    def close(self, keep: str | None = None) -> None:
        """``keep``: the regime whose federation goes on running (``demo --serve``)."""
        from gsomia.shell import federation

        with self.lock:
            for future in self.futures.values():
                future.cancel()
        self.pool.shutdown(wait=True)
        for name in self.futures:
            if name != keep and (self.root / name / federation.FEDERATION_FILE).exists():
                federation.down(self.root / name)


def through_federations(day: str, seed: int, regimes: Sequence[str], speed: float,
                        open_node: Callable[[Path], Node], starting: Starting, *,
                        until_s: float | None, hub: HubConsent, at_once: int,
                        on_done: Callable[[str, dict[str, Any]], None] = lambda n, d: None,
                        keep: str | None = None) -> dict[str, dict[str, Any]]:
    """``gsomia demo``: the launch through each regime's federation (:func:`run_federated`,
    in ``starting``'s folders), ``at_once`` federations at a time; in the order of
    ``regimes``. ``keep``: the regime whose federation is left running when its run
    succeeds (``demo --serve`` serves it: three node starts fewer)."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="federation") as pool:
        running = {pool.submit(run_federated, day, None, name, seed, speed, open_node,
                               folder=starting.root / name, until_s=until_s,
                               hub=hub if name == "hub" else HubConsent(),
                               started=partial(starting.wait, name),
                               keep_running=name == keep): name
                   for name in regimes}
        done: dict[str, dict[str, Any]] = {}
        for future in as_completed(running):
            name = running[future]
            done[name] = future.result()
            on_done(name, done[name])
    return {name: done[name] for name in regimes}


def serve_federation(folder: Path, regime_name: str,
                     open_node: Callable[[Path], Node]) -> dict[str, Any]:
    """The regime's federation in ``folder``, still running or started again (its nodes
    keep what they hold), with a demo user per node; the addresses and logins."""
    from gsomia.core.types import SECRET_LEVELS
    from gsomia.service import handlers
    from gsomia.shell import federation
    from gsomia.shell.node import new_token

    kept = (folder / federation.FEDERATION_FILE).exists() and any(
        federation.running_pid(Path(n["dir"])) is not None
        for n in federation.load_federation(folder)["nodes"].values())
    if kept:  # on its ports; a node of it that stopped starts again there
        federation.up(folder, regime_name, federation.load_federation(folder)["base_port"])
    else:
        federation.up_on_free_ports(folder, regime_name)
    try:
        users = {}
        for p in PARTIES:
            with open_node(folder / p) as node:
                token = new_token()
                handlers.add_user(node.uow(), keys=node.keys, schemes=node.catalogue.schemes,
                                  name="analyst", clearance=SECRET_LEVELS[p],
                                  need_to_know=["dprk-missile"], token=token,
                                  now=datetime.now(UTC),
                                  purposes=node.catalogue.vocabulary.purposes,
                                  role="operator")   # so that the dashboard may replay
                users[p] = token
        return {"regime": regime_name, "folder": str(folder),
                "serving": {p: {"url": n["url"], "user": "analyst", "token": users[p]}
                            for p, n in federation.status(folder)["nodes"].items()}}
    except BaseException:
        federation.down(folder)
        raise


def launch_key(launch: Launch) -> tuple[str, int]:
    """The ``--launch DATE --index N`` that name ``launch``."""
    from gsomia.core.tracking.launches import on_date
    from gsomia.shell import feeds

    return (launch.local_date.isoformat(),
            list(on_date(feeds.load_launches(), launch.local_date)).index(launch))


def evaluate_federated(launches: Sequence[Launch], regimes: Sequence[str],
                       seeds: Sequence[int], speed: float, open_node: Callable[[Path], Node],
                       on_run: Callable[[], None] = lambda: None
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``evaluate --federation``: each launch, seed and regime through the regime's real
    federation (:func:`run_federated`, one after another: each is three node processes),
    as rows of ``results.csv`` (``"through": "federation"``) and, per run, the delivery
    latencies measured on its links and relays."""
    from gsomia.core import measures
    from gsomia.core.alerting import warning_of
    from gsomia.core.tracking.trajectory import fit
    from gsomia.shell import feeds
    from gsomia.shell.scenarios import evaluation_row

    atlas = feeds.load_geography()
    land = measures.land_names(atlas)
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for launch in launches:
        try:
            trajectory = fit(launch.flight_request())
        except MalformedInput as exc:
            rows.append({"launch": launch.id, "error": str(exc)})
            continue
        truths = {p: measures.truth(trajectory, atlas, p) for p in PARTIES}
        day, index = launch_key(launch)
        for seed in seeds:
            for name in regimes:
                doc = run_federated(day, index, name, seed, speed, open_node)
                for p, figures in doc["parties"].items():
                    warnings = [warning_of({**w, "party": p}) for w in figures["warnings"]]
                    rows.append({**evaluation_row(launch, trajectory, name, p, seed,
                                                  bool(figures["cued"]), figures, warnings,
                                                  truths[p], land),
                                 "through": "federation"})
                runs.append({"launch": launch.id, "regime": name, "seed": seed,
                             "links": doc["links"],
                             **({"relays": doc["relays"]} if "relays" in doc else {})})
                on_run()
    return rows, runs
