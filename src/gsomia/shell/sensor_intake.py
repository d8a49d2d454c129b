"""Sensor feeds into a node: ``POST /sensors/v1/measurements`` and ``gsomia sensors run``.

A node takes measurements only from sensors registered at it: the shipped sensor catalogue's
sensors its party owns, or, when ``node.toml`` has a ``[sensors]`` table, those of them its
``registered`` list names. Each is published as the sensor's owner labels its reports
(``report_label``), through the same publish handler as every other item, so the outbox
releases them to partners as the policy allows; the sensor's identity and site stay here
(a report names it by pseudonym and measures from a public point,
:mod:`gsomia.core.sensor_feed`).

Over HTTPS the caller is a node user holding the ``operator`` role (bearer token or HTTP
basic, as TAXII): anyone else is answered as TAXII answers them (401), a reader 403. An
operator publishes only what they may read themselves (as at the desk and over TAXII): a
sensor's lines whose label their clearance, nationality or need-to-know does not admit
are answered as an unregistered sensor's (``unknown-sensor``), an indicator so labelled is
refused (``refused-label``), and nothing of them is published. The body
is newline-delimited JSON (``application/x-ndjson``) of at most :data:`SENSOR_BODY` bytes,
refused with 413 before it is read. The answer (200) names each refused line with its reason
and counts them; a refused line never stops the others.
"""

from __future__ import annotations

import threading
import tomllib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gsomia.core.errors import MalformedInput
from gsomia.core.policy import Person
from gsomia.core.roles import Action
from gsomia.core.sensor_feed import Intake, Registered, read_lines, reference_report
from gsomia.core.tracking.indicators import default_label, indicator_from
from gsomia.core.types import Party, utc_text
from gsomia.service import access

__all__ = ["NDJSON", "PATH", "SENSOR_BODY", "SensorIntake", "author_of", "feeding",
           "label_policy", "publish_items", "registered_sensors", "routes"]

PATH = "/sensors/v1/measurements"
NDJSON = "application/x-ndjson"
SENSOR_BODY = 1024 * 1024      # a second of a salvo seen by every sensor is far less
WINDOW_S = 10.0                # how far a measurement may come behind its sensor's latest


_FEEDING: dict[str, threading.Event] = {}
_FEEDING_LOCK = threading.Lock()


def feeding(folder: Path | str) -> threading.Event:
    """Set once the node in ``folder`` has taken a batch from its sensors in this process:
    its warning centre (:mod:`gsomia.shell.warning_centre`) then gets ready to track."""
    key = str(Path(folder).resolve())
    with _FEEDING_LOCK:
        return _FEEDING.setdefault(key, threading.Event())


def author_of(party: Party) -> str:
    return f"identity--{uuid.uuid5(uuid.NAMESPACE_URL, f'gsomia/{party}')}"


def label_policy(folder: Path) -> str | None:
    """The agreement a federation's node pins its labels to (trilateral), else None."""
    from gsomia.core.sharing import REGIMES
    from gsomia.shell.exchange import Partners

    partners = Partners.load(folder)
    found = None if partners is None else REGIMES.get(partners.topology)
    return None if found is None else found.label_policy


def registered_sensors(node: Any) -> dict[str, Registered]:
    """The sensors this node takes measurements from, by id."""
    from gsomia.shell import feeds

    path = Path(node.folder) / "node.toml"
    wanted: set[str] | None = None
    try:
        table = tomllib.loads(path.read_text("utf-8")).get("sensors")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MalformedInput(f"cannot read {path}: {exc}", where=str(path)) from None
    if table is not None:
        listed = table.get("registered") if isinstance(table, dict) else None
        if not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
            raise MalformedInput("[sensors] registered is not a list of sensor ids",
                                 where=f"{path}: sensors.registered",
                                 expected='registered = ["kor-greenpine-jincheon", ...]')
        wanted = set(listed)
    own = sorted((s for s in feeds.load_sensors() if s.owner == node.party),
                 key=lambda s: s.id)
    if wanted is not None and wanted - {s.id for s in own}:
        unknown = sorted(wanted - {s.id for s in own})[0]
        raise MalformedInput(f"{unknown!r} is not a sensor {node.party} owns",
                             where=f"{path}: sensors.registered",
                             expected="ids of the sensor catalogue owned by " + node.party)
    return {s.id: Registered(s.id, f"{node.party}-{'radar' if s.kind == 'radar' else 'ir'}-"
                                   f"{i + 1}", "rae" if s.kind == "radar" else "los",
                             s.lat_deg, s.lon_deg, s.height_m)
            for i, s in enumerate(own) if wanted is None or s.id in wanted}


def publish_items(node: Any, entries: Sequence[tuple[dict[str, Any], Any]],
                  now: datetime, actor: str) -> None:
    """Publish through the node's one publish handler: a federation's node queues the
    deliveries in the same commit and wakes its sender."""
    from gsomia.service import handlers
    from gsomia.shell import exchange

    if not entries:
        return
    if exchange.Partners.load(Path(node.folder)) is not None:
        exchange.publish(node, entries=entries, now=now, actor=actor)
    else:
        handlers.publish_many(node.uow(), keys=node.keys, catalogue=node.catalogue,
                              entries=entries, now=now.replace(
                                  microsecond=now.microsecond // 1000 * 1000),
                              actor=actor)


class SensorIntake:
    """One node's intake: its registered sensors, each sensor's latest instant taken, and
    the counts of what it took and refused since the node started."""

    def __init__(self, node: Any) -> None:
        from gsomia.shell import feeds

        self.node = node
        self.registered = registered_sensors(node)
        self.labels = {s.id: s.report_label for s in feeds.load_sensors()
                       if s.id in self.registered}
        self.policy = label_policy(Path(node.folder))
        self.latest: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.fed = feeding(node.folder)

    def take(self, lines: Sequence[bytes], now: datetime, actor: str = "operator",
             person: Person | None = None) -> Intake:
        """Judge and publish one batch: one report item per sensor, one per indicator.
        ``person``: the user posting it over HTTPS, who publishes only what they may read;
        None: the node's operator on its host (``gsomia sensors run``, replays)."""
        from gsomia.core.labels import SecurityLabel
        from gsomia.service.handlers import LabelRequest

        def unreadable(label: SecurityLabel) -> bool:
            return person is not None and not access.may_read(
                person, label, self.node.catalogue.schemes)

        # Said without the label: what the person may not read, they are not told of.
        refused = (f"{person.name if person else ''} may not read what it would publish "
                   "(its label's level, REL TO or purpose)")
        # A sensor whose reports the person may not read is, to them, one the node has not
        # registered: its lines are answered exactly as an unknown sensor's, so the answer
        # tells neither that it exists, nor its kind (the line's checks), nor the instant of
        # its latest measurement (an out-of-order line's reason), and its window stays.
        known = {sid: reg for sid, reg in self.registered.items()
                 if not unreadable(self.labels[sid])}
        with self.lock:  # one batch at a time: the order window is per sensor
            latest = {sid: at for sid, at in self.latest.items() if sid in known}
            intake = read_lines(lines, known, latest, WINDOW_S, now.timestamp())
            entries: list[tuple[dict[str, Any], Any]] = []
            for sid, taken in intake.accepted.items():
                sensor, rl = self.registered[sid], self.labels[sid]
                data = reference_report(sensor, taken)
                made = taken[-1].epoch + timedelta(seconds=taken[-1].t)
                entries.append((self._note(made, f"{sensor.pseudonym}: {len(taken)} radar "
                                                 f"measurements", data),
                                LabelRequest(rl.level, tuple(sorted(rl.rel_to)), rl.purpose,
                                             rl.caveats, policy=self.policy,
                                             category="sensor-report")))
            for n, doc in enumerate(intake.indicators):
                try:
                    ind = indicator_from(doc)
                    if ind.originator != self.node.party:
                        raise MalformedInput(f"an indicator of {ind.originator}",
                                             where="indicator.originator",
                                             expected=f"{self.node.party}'s own indicators")
                    label = default_label(ind)
                    if unreadable(SecurityLabel.from_stored(label)):
                        intake.refuse(0, f"indicator {n + 1}: {refused}", "refused-label")
                        continue
                except (MalformedInput, TypeError, ValueError) as exc:
                    intake.refuse(0, f"indicator {n + 1}: {exc}", "malformed")
                    continue
                obj = self._note(ind.observed_at, f"{ind.originator} {ind.kind}: {ind.claim} "
                                                  f"at {ind.facility}", None)
                entries.append((obj, LabelRequest(str(label["level"]),
                                                  tuple(sorted(label["rel_to"])),
                                                  str(label["purpose"]), policy=self.policy,
                                                  category="pre-launch-indicator")))
            publish_items(self.node, entries, now, actor)
            # Only once what it admitted is stored; the windows of sensors the person was
            # not shown are kept as they were.
            self.latest = {**self.latest, **latest}
            if entries:
                self.fed.set()
            intake.counts["accepted"] = sum(len(v) for v in intake.accepted.values())
            for name, n in intake.counts.items():
                self.counts[name] = self.counts.get(name, 0) + n
            return intake

    def _note(self, made: datetime, abstract: str, report: dict[str, Any] | None
              ) -> dict[str, Any]:
        stamp = utc_text(made, 3)
        obj: dict[str, Any] = {
            "type": "note", "spec_version": "2.1", "id": f"note--{uuid.uuid4()}",
            "created": stamp, "modified": stamp, "abstract": abstract, "content": abstract,
            "object_refs": [author_of(self.node.party)]}
        if report is not None:
            obj["x_gsomia_sensor_report"] = report
        return obj


def routes(intake: SensorIntake, person_of: Callable[[Request], Person],
           guarded: Callable[[Callable[[Request], Awaitable[Response]]],
                             Callable[[Request], Awaitable[Response]]],
           clock: Callable[[], datetime]) -> list[Route]:
    def role_of(person: Person) -> str:
        with intake.node.store.repository() as repo:
            user = repo.user_named(person.name)
        return "" if user is None else str(user.role)

    async def measurements(request: Request) -> Response:
        person = person_of(request)     # first: a stranger learns nothing, not even a 400
        allowed = access.acting(await run_in_threadpool(role_of, person), Action.PUBLISH)
        if not allowed.permit:
            return _answer({"title": "Forbidden", "description": allowed.reason}, 403)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in (NDJSON, "application/jsonl", "application/json-seq"):
            raise MalformedInput(f"content type {media or 'none'!r}", where="Content-Type",
                                 expected=NDJSON)
        body = await request.body()
        intake_ = await run_in_threadpool(intake.take, body.split(b"\n"), clock(), person.name,
                                          person)
        return _answer(intake_.to_json(), 200)

    return [Route(PATH, guarded(measurements), methods=["POST"])]


def _answer(doc: dict[str, Any], status: int) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")



