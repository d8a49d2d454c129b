"""One launch through a regime's real three-node federation (``scenario run --federation``).

The regime's federation is started on loopback (``federation up``, node folders in a
temporary directory), every party's radars and pre-launch indicators are played into its own
node at ``speed`` times real time (``gsomia sensors run``'s playlist, as the node's operator
on its host), the nodes track, share and warn by themselves (each ``node run``'s warning
centre, the outbox, the exchange), and the figures of the model's JSON are read back from
what each node holds: times are the flight seconds each node's centre stamped its own
outputs with (its measurements' clock); a partner's report, track or prediction counts from
when the node stored it (wall-clock time since lift-off times ``speed``), or when it was
made if later. ``links`` gives, per sender and recipient, how many items were
delivered and the measured latency from the publish at the sender to the signed receipt
recorded there (p50/p99, wall-clock milliseconds). Under ``hub`` KOR and JPN each grant USA
a standing consent to pass their items to the other before lift-off (the machine relay of
TISA: no operator answers per item), and ``relays`` gives, per originator, hub and final
recipient, the latency from the publish at the originator to the receipt the hub obtained
from the final recipient.
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gsomia.core.errors import MalformedInput

if TYPE_CHECKING:
    from gsomia.core.tracking.launches import Launch
    from gsomia.shell.node import Node

__all__ = ["evaluate_federated", "launch_key", "run_federated"]

PARTIES = ("JPN", "KOR", "USA")
TOPOLOGIES = ("none", "direct", "trilateral", "hub")
HUB = "USA"
# How long the hub may take to hold both standing consents before the flight starts.
CONSENT_TIMEOUT_S = 60.0


def _settle(nodes: dict[str, Any], quiet_s: float = 3.0, timeout: float = 120.0) -> None:
    """Until no node has stored anything for ``quiet_s``."""
    end = time.monotonic() + timeout
    last: tuple[int, ...] = ()
    since = time.monotonic()
    while time.monotonic() < end:
        counts = []
        for node in nodes.values():
            with node.store.repository() as repo:
                counts.append(int(repo.count_items()))
        if tuple(counts) != last:
            last, since = tuple(counts), time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return
        time.sleep(0.2)


def _held(node: Any, began: float, speed: float
          ) -> list[tuple[str, dict[str, Any], float]]:
    """(originator, object, when it was stored in flight seconds) of every note held."""
    import sqlalchemy as sa

    from gsomia.shell.store import items

    with node.store.engine.connect() as conn:
        rows = conn.execute(sa.select(items.c.originator, items.c.content, items.c.added_at)
                            .where(items.c.type == "note").order_by(items.c.seq)).all()
    return [(str(r.originator), json.loads(bytes(r.content)),
             (r.added_at.timestamp() - began) * speed) for r in rows]


def _party_figures(party: str, held: list[tuple[str, dict[str, Any], float]], epoch: Any,
                   truth: tuple[float, float], cued: bool) -> dict[str, Any]:
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
        error = round(float(earth.great_circle_m(
            math.radians(first_impact["impact_lat"]), math.radians(first_impact["impact_lon"]),
            math.radians(truth[0]), math.radians(truth[1]))) / 1e3, 1)
    return {"cued": cued, "first_detection_s": first(detections), "first_track_s": first(tracks),
            "first_ipp_s": first(ipps),
            "first_warning_s": first([float(w["at_s"]) for w in issued]),
            "ipp_error_km": error,
            "warnings": [{k: w[k] for k in ("action", "at_s", "track", "level", "regions",
                                            "impact_lat", "impact_lon", "time_to_impact_s",
                                            "reason", "active")} for w in warnings]}


def _latencies(nodes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(links, relays): per ``sender->recipient``, the delivered items the sender originated;
    per ``originator->hub->recipient``, those it passed on for another party; each from the
    publish at the originator to the receipt recorded at the sender."""
    import numpy as np
    import sqlalchemy as sa

    from gsomia.shell.store import items, outbox

    published: dict[str, Any] = {}
    for code, node in nodes.items():
        with node.store.engine.connect() as conn:
            published.update({r.id: (code, r.added_at) for r in conn.execute(
                sa.select(items.c.id, items.c.added_at).where(items.c.originator == code))})
    by: dict[str, list[float]] = {}
    for code, node in nodes.items():
        with node.store.engine.connect() as conn:
            rows = conn.execute(sa.select(outbox.c.item_id, outbox.c.recipient,
                                          outbox.c.delivered_at)
                                .where(outbox.c.status == "delivered")).all()
        for r in rows:
            if r.item_id not in published or r.delivered_at is None:
                continue
            origin, at = published[r.item_id]
            path = f"{code}->{r.recipient}" if origin == code else \
                f"{origin}->{code}->{r.recipient}"
            by.setdefault(path, []).append((r.delivered_at - at).total_seconds() * 1000.0)
    links: dict[str, Any] = {}
    relays: dict[str, Any] = {}
    for path, ms in sorted(by.items()):
        a = np.asarray(ms)
        (relays if path.count("->") == 2 else links)[path] = {
            "items": len(ms), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1)}
    return links, relays


def run_federated(day: str, index: int | None, regime_name: str, seed: int,
                  speed: float, open_node: Callable[[Path], Node]) -> dict[str, Any]:
    from gsomia.core.tracking.trajectory import fit
    from gsomia.core.types import instant
    from gsomia.shell import federation, feeds
    from gsomia.shell.federated_replay import grant_standing
    from gsomia.shell.sensor_player import Target, cueing, play, playlist

    if regime_name not in TOPOLOGIES:
        raise MalformedInput(f"regime {regime_name!r} is not run through a federation",
                             where="--regime", expected=", ".join(TOPOLOGIES))
    launch = feeds.find_launch(day, index)
    trajectory = fit(launch.flight_request())
    plays = {p: playlist(day, index, p, seed) for p in PARTIES}
    with tempfile.TemporaryDirectory(prefix="gsomia-federation-") as tmp:
        folder = Path(tmp) / "fed"
        federation.up(folder, regime_name, federation.free_base_port())
        nodes: dict[str, Any] = {}
        try:
            for p in PARTIES:
                nodes[p] = open_node(folder / p)
            # The hub relays only with each originator's consent: standing ones, granted
            # before lift-off, so that no relay waits for a person.
            consents = grant_standing(nodes, CONSENT_TIMEOUT_S) \
                if regime_name == "hub" else None
            failures: list[BaseException] = []

            def feed(party: str) -> None:
                target = Target(str(folder / party), None, None, open_node)
                try:
                    play(target, *plays[party], speed)
                except BaseException as exc:  # shown once every party is done
                    failures.append(exc)
                finally:
                    target.close()

            threads = [threading.Thread(target=feed, args=(p,), name=f"sensors-{p}")
                       for p in PARTIES]
            began = time.time()   # lift-off, as the players' clocks count
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if failures:
                raise failures[0]
            _settle(nodes)
            epoch = instant(next(line["epoch"] for p in PARTIES for _, line in plays[p][1]))
            truth = (trajectory.impact_lat_deg, trajectory.impact_lon_deg)
            parties = {p: _party_figures(p, _held(nodes[p], began, speed), epoch, truth,
                                         cueing(launch, p, seed)[1]) for p in PARTIES}
            links, relays = _latencies(nodes)
        finally:
            for node in nodes.values():
                node.close()
            federation.down(folder)
    return {"launch": launch.to_json(), "regime": regime_name, "seed": seed,
            "through": "federation", "speed": speed,
            "truth": {"flight_time_s": round(trajectory.flight_time_s, 1),
                      "apogee_km": round(trajectory.apogee_km, 1),
                      "range_km": round(trajectory.range_km, 1),
                      "impact_lat": round(trajectory.impact_lat_deg, 3),
                      "impact_lon": round(trajectory.impact_lon_deg, 3)},
            "parties": parties, "links": links,
            **({"relays": relays, "consents": consents} if consents is not None else {})}


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
