"""The node's warning centre, beside the sender in ``gsomia node run``.

It reads what the node holds in the order the node stored it (the ``items`` table's audit
sequence): its own sensors' reports and the partners' reports and impact predictions it was
given (held under their labels: nothing else is in the store), feeds them to the core's
:class:`gsomia.core.node_centre.NodeCentre`, and publishes what that answers (impact
predictions, flight paths, warnings) through the same publish handler as every other item,
so the outbox releases them to partners under the policy.

Restart-safe: an output's STIX id is derived from the centre's epoch and the output's key
(keyed with a secret of the node's signing key, so no partner can take it first), and the
centre's outputs depend only on the sequence it was fed. A node started again (after
a crash or SIGKILL) feeds the centre its holdings from the start and publishes only the
outputs it does not hold yet: each warning once.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gsomia.core.errors import GsomiaError, MalformedInput
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import narrowed_derived
from gsomia.core.sensor_feed import AHEAD_S
from gsomia.core.stix import extension_property_problem
from gsomia.core.types import PARTIES, SECRET_LEVELS, Party, instant, utc_text
from gsomia.shell.sensor_intake import author_of, label_policy, publish_items
from gsomia.shell.store import Changes, StoreError

if TYPE_CHECKING:
    from gsomia.core.node_centre import NodeCentre, Output
    from gsomia.shell.exchange import CourierProgress

__all__ = ["HEAD_START_S", "PROGRESS_FILE", "CentreWorker", "centre_caught_up", "centre_elsewhere",
           "centre_running", "ensure_centre", "id_secret", "output_id", "rehearse",
           "start_centre"]

log = logging.getLogger(__name__)
AHEAD_SAID_EVERY_S = 60.0  # a partner's clock ahead is logged at most once a minute
POLL_S = 0.5     # a full pass at least this often (another database: every pass)
WAKE_S = 0.005
# A centre that took nothing for ACTIVE_S looks for commits every IDLE_WAKE_S and passes
# every IDLE_POLL_S: an idle node (dozens run at once in the tests) wakes 10 times a second
# instead of 200. Nothing it answers waits on this: a flight's first report only starts
# the centre's lag (8 s of flight), and from then on it looks every WAKE_S again.
ACTIVE_S = 10.0
IDLE_WAKE_S = 0.1
IDLE_POLL_S = 5.0
BATCH = 500
# A pass that has notes to read while couriers run beside the centre (``node run``) starts
# once each link owed a post by the commits seen has written it, or gave up on it for now
# (:class:`gsomia.shell.exchange.CourierProgress`): the couriers claim, seal and post that
# commit's report first (3-12 ms after it at the sensors bench's load) instead of sharing the
# GIL with the centre's read, steps and publish (centrepass28: its pass overlapped 86 % of
# KOR's reports on their way to JPN). At most this long: a courier stuck on a partner that
# does not answer yet never holds a warning longer (the aim from measurement to warning is
# 100 ms); a fixed wait of this length was what the centre gave them before headstart29.
HEAD_START_S = 0.015
# What the centre rehearses on when it is made (:func:`rehearse`): JPN's radars on the
# 2017-08-29 Hwasong-12 to just past its first impact prediction (208.8 s).
REHEARSAL_LAUNCH, REHEARSAL_UNTIL_S = "2017-08-29", 215.0
# The seq of the last note the centre took, in the node's folder, for whoever waits in another
# process for the centre to be done with what the node holds (``sensor_player.settle``):
# a quiet store alone does not say it, as a centre slowed by a loaded machine (its first
# report loads the tracker: seconds of wall time at a load of 15) stores nothing meanwhile.
PROGRESS_FILE = "centre-progress"
PROGRESS_EVERY_S = 0.2


def id_secret(node: Any) -> bytes:
    """The key of the centre's output ids, derived from the node's signing key: the same for
    every start of the node, and no partner can compute it."""
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    raw = node.keys.signing_key().private_bytes(Encoding.Raw, PrivateFormat.Raw,
                                                NoEncryption())
    return hmac.new(raw, b"gsomia/warning-centre-ids/v1", hashlib.sha256).digest()


def output_id(secret: bytes, centre: NodeCentre, output: Output) -> str:
    """The STIX id of an output: the same for the same place in the centre's history, and
    unpredictable to partners (one who could compute it could deliver a note of that id
    first and so keep the centre from publishing that warning)."""
    epoch = "" if centre.epoch is None else centre.epoch.isoformat()
    digest = hmac.new(secret, f"{epoch}/{output.key}".encode(), hashlib.sha256).digest()
    return f"note--{uuid.UUID(bytes=digest[:16], version=4)}"


class CentreWorker:
    """Feeds the node's holdings to its centre and publishes what it answers."""

    def __init__(self, node: Any, centre: NodeCentre | None = None, *,
                 couriers: CourierProgress | None = None) -> None:
        self.node = node
        # The progress of the couriers in this process (None: none runs beside the centre,
        # and its passes wait for nothing).
        self.couriers = couriers
        self.party: Party = node.party
        self._centre = centre
        self.policy = label_policy(Path(node.folder))
        self.secret = id_secret(node)
        self.mark = 0
        self.due: list[Output] = []  # answers not yet published (a pass failed)
        self.published = 0
        self.skipped = 0             # outputs already held (published before a restart)
        self.unusable = 0            # items whose properties do not make measurements
        self.rehearsed: set[str] = set()  # what the warm-up's throwaway centre made
        self._told = -1                   # the mark last written to PROGRESS_FILE
        # Every note up to this seq was read (the mark, or past it where only other items
        # were stored since): a commit that stored no item past it costs no query.
        self._read_to = 0
        self._changes: Any = None         # the commit watch of :meth:`run`, while it runs
        self._ready_failed = False        # get_ready raised: left to the reports
        # Per originator: when its clock ahead was last said, and the count then.
        self._ahead_said: dict[str, tuple[float, int]] = {}
        # What the centre publishes under (its kind apart), and per originator how many
        # notes it left out because that label would be wider than theirs.
        self.output_label = SecurityLabel(self.party, SECRET_LEVELS[self.party],
                                          frozenset(PARTIES), "dprk-missile",
                                          policy=self.policy)
        self.withheld: dict[str, int] = {}
        # Outputs not published because a source fed was re-marked beyond any label of this
        # node's (:meth:`label_now`).
        self.unpublishable = 0

    @property
    def centre(self) -> NodeCentre:
        """The tracker and warning logic, made when the first report or prediction comes:
        a node that never holds one (most nodes in most runs) never loads the tracker, which
        costs 0.7 s of CPU at every start."""
        if self._centre is None:
            # scipy.optimize (the tracker's assignment) too, now: imported where the tracker
            # first needs it, its 0.5 s fell on a step with outputs due, mid-flight (the one
            # warning of the sensors bench took 1.03 s from measurement to stored), while
            # the first report's steps wait out the centre's lag anyway.
            import scipy.optimize  # noqa: F401

            from gsomia.core.node_centre import NodeCentre
            from gsomia.shell import feeds

            atlas = feeds.load_geography()
            self.rehearsed = rehearse(self.party, atlas)
            self._centre = NodeCentre(self.party, atlas)
            # The tracker, its kernels and the geography are ~70,000 objects more that live
            # as long as the process (``bootstrap.settle_heap`` froze what came before): left
            # to the collector, each full collection walked them, 50-60 ms in which every
            # thread stood still, once a minute or two in flight (a report on its way then
            # waited it out). Collected first, so that no garbage is frozen for good (in a
            # process that makes centres again, the tests', the nodes and engines of earlier
            # ones): the one pause falls where the centre's making takes seconds anyway.
            gc.collect()
            gc.freeze()
        return self._centre

    def get_ready(self) -> None:
        """Make and rehearse the centre now, if it is not yet: what its first report would
        otherwise wait for. A failure is said and leaves it to that report (a rehearsal's
        own failure is already said and kept out of the centre)."""
        if self._centre is not None or self._ready_failed:
            return
        try:
            _ = self.centre
        except Exception:
            # Once: not again at every turn of the loop while the sensors are on.
            self._ready_failed = True
            log.exception("warning centre: getting ready failed; each report will try")

    def run(self, stop: threading.Event) -> None:
        presence = _present(Path(self.node.folder))
        if presence is None:
            log.warning("warning centre: another process of this node runs its centre; "
                        "this one does not start")
            return
        # Read only after a commit (SQLite's data_version: microseconds, no lock), so that
        # a measurement is taken within milliseconds without a query every millisecond.
        changes = self._changes = Changes(self.node.store.engine)
        try:
            self._tell_progress()  # a mark left by an earlier run of the node is not this one's
            self._loop(stop, changes)
        finally:
            self._changes = None
            changes.close()
            presence.close()

    def _loop(self, stop: threading.Event, changes: Any) -> None:
        from gsomia.shell.sensor_intake import feeding

        fed = feeding(self.node.folder)
        now = time.monotonic()
        passed, took, more = now, now - ACTIVE_S, True
        while not stop.is_set():
            if self._centre is None and fed.is_set():
                # The node's sensors are on (their indicators come hours before lift-off):
                # ready now, not at the first step, whose output would wait for it.
                self.get_ready()
            idle = time.monotonic() - took >= ACTIVE_S
            if not more and not changes() and \
                    time.monotonic() - passed < (IDLE_POLL_S if idle else POLL_S):
                stop.wait(IDLE_WAKE_S if idle else WAKE_S)
                continue
            if not more:
                self.give_way()
            passed = time.monotonic()
            try:
                more = self.pass_once()
                if more:
                    took = time.monotonic()
            except (GsomiaError, StoreError) as exc:
                # The store busy or a publish refused: nothing of that publish is stored (one
                # commit), and what it held is published on the next pass.
                log.warning("warning centre: %s", exc)
                more = False
                stop.wait(POLL_S)
            except Exception:
                # The centre never stops the node, nor stops on one bad pass.
                log.exception("warning centre: pass failed")
                more = False
                stop.wait(POLL_S)

    def close(self) -> None:
        pass

    def _newest(self) -> int | None:
        """The newest item's seq (None: it cannot be told, and the pass reads)."""
        return None if self._changes is None else self._changes.newest_seq()

    def give_way(self) -> float:
        """Before a pass that has items to read, wait for the couriers beside the centre to
        post what the commits seen so far queued (at most :data:`HEAD_START_S`); the
        seconds waited. No wait if nothing was stored past what the centre read, or no
        link owes a post (no partners, none concerned, the partner's link backing off)."""
        if self.couriers is None:
            return 0.0
        newest = self._newest()
        if newest is None or newest <= self._read_to:
            return 0.0
        return self.couriers.wait(HEAD_START_S)

    def pass_once(self) -> bool:
        """Read the items stored since the last pass; True if there were any."""
        newest = self._newest()
        if newest is not None and newest <= self._read_to:
            # Nothing stored past what was read: the commit that woke the pass settled a
            # delivery or queued one (most of a sensor run's commits), no query.
            self.publish_due()
            self._tell_progress()
            return False
        with self.node.store.repository() as repo:
            rows = repo.contents_stored_after(self.mark, stix_type="note", limit=BATCH)
        # Read to the newest seen before the query, if the query took every note after
        # the mark (it saw at least what that look saw); else to the last note taken.
        read_to = newest if newest is not None and len(rows) < BATCH else 0
        self.publish_due()  # what a failed pass left, before anything new
        for seq, originator, content, added_at, label in rows:
            if self._centre is None and str(originator) != self.party:
                # The notes partners release to a node are their sensors' reports, their
                # centres' outputs and, first, their pre-launch indicators, which come before
                # lift-off (hours in a real launch, seconds in the sensors bench). Ready at
                # the first, then, not at the first report: a node without sensors of its own
                # made and rehearsed its centre there, a second or two of CPU (far more on a
                # cold numba cache) while that report's receive and the next ones waited for
                # the GIL in the same process. A node restarted holding such notes gets ready
                # at its first pass, as it starts; another note of a partner's costs one
                # rehearsal it did not need.
                self.get_ready()
            # Fed once: the centre's answers depend on the sequence it was fed.
            self.due += self.feed(str(originator), bytes(content), added_at, label=label)
            self.mark = int(seq)
            self.publish_due()
        self._read_to = max(self.mark, read_to)
        self._tell_progress()
        return bool(rows)

    # When the mark was last written, and whether the last write failed (said once, until
    # one succeeds: not at every pass of a node whose folder went read-only).
    _told_at = float("-inf")
    _telling_failed = False

    def _tell_progress(self) -> None:
        """Write the mark to :data:`PROGRESS_FILE` when it moved (atomically: a reader sees
        the old mark or the new), at most every :data:`PROGRESS_EVERY_S`: a write and
        rename cost 0.15-0.5 ms of CPU (notnow20), at every pass of a sensor run. One held
        back is written by a later pass: one runs at least every ``POLL_S`` for
        ``ACTIVE_S`` after the last rows, well within the quiet a ``settle`` waits for. A
        folder that cannot be written stops only this."""
        if self.mark == self._told or self.due or \
                time.monotonic() - self._told_at < PROGRESS_EVERY_S:
            return
        folder = Path(self.node.folder)
        try:
            tmp = folder / f".{PROGRESS_FILE}.tmp"
            tmp.write_text(str(self.mark), encoding="ascii")
            tmp.replace(folder / PROGRESS_FILE)
            self._told, self._told_at, self._telling_failed = self.mark, time.monotonic(), False
        except OSError as exc:
            if not self._telling_failed:
                log.warning("warning centre: cannot write %s: %s", PROGRESS_FILE, exc)
            self._told_at, self._telling_failed = time.monotonic(), True

    def feed(self, originator: str, content: bytes, held_at: datetime | None = None, *,
             label: bytes) -> list[Output]:
        """Feed one note held, marked ``label`` (as stored): a report or prediction its
        outputs' label would widen is left out (:meth:`withheld_reason`)."""
        try:
            obj = json.loads(content)
        except ValueError:
            self.unusable += 1
            return []
        report = obj.get("x_gsomia_sensor_report")
        ipp = obj.get("x_gsomia_ipp")
        if (report is not None or (ipp is not None and originator != self.party)) \
                and (why := self.withheld_reason(label)) is not None:
            self.withheld[originator] = self.withheld.get(originator, 0) + 1
            if self.withheld[originator] == 1:  # then counted: not a line per report
                log.warning("warning centre: a note of %s left out: its label is narrower "
                            "than what the centre publishes (%s)", originator, why)
            return []
        try:
            if report is not None:
                if extension_property_problem("x_gsomia_sensor_report", report) is not None:
                    self.unusable += 1
                    return []
                late = self.centre.late.get(originator, 0)
                out = self.centre.report(originator, report, held_at)
                if self.centre.late.get(originator, 0) > late:
                    # The tracker cannot go back: said, so that a slow link is seen.
                    log.warning("warning centre: %d measurements of a report of %s came "
                                "after the centre had stepped past them (%d so far), left "
                                "out", self.centre.late[originator] - late, originator,
                                self.centre.late[originator])
                self._say_ahead(originator)
                return out
            if ipp is not None and originator != self.party:
                if extension_property_problem("x_gsomia_ipp", ipp) is not None:
                    self.unusable += 1
                    return []
                made = instant(str(obj.get("created", "")), where="created")
                return self.centre.prediction(originator, ipp, made)
        except Exception as exc:  # whatever a partner sent, the centre goes on
            # A partner's numbers that make no measurement stop nothing: counted, left out.
            log.info("warning centre: unusable item: %s", exc)
            self.unusable += 1
        return []

    def withheld_reason(self, label: bytes) -> str | None:
        """Why what the centre would make from an item marked ``label`` may not go out under
        its outputs' label, or None if it may: its outputs go to every party REL TO, at
        the party's SECRET level, so a source released to fewer, classified higher, with a
        caveat or another purpose would leave under a wider label than its originator's
        (review28: KOR's reports REL TO KOR, JPN made JPN publish tracks and warnings REL
        TO USA). A label that does not read is withheld too."""
        from gsomia.service.access import deriving

        try:
            source = SecurityLabel.from_stored(json.loads(label))
        except (MalformedInput, ValueError, TypeError) as exc:
            return f"its label does not read: {exc}"
        decision = deriving(source, self.output_label, self.node.catalogue.schemes)
        return None if decision.permit else "; ".join(decision.reasons)

    def label_now(self, remarked: Sequence[tuple[str, bytes, Sequence[SecurityLabel]]]
                  ) -> SecurityLabel | None:
        """What the centre publishes under now: :attr:`output_label`, narrowed to no wider
        than each note it was fed that a classification notice has since re-marked
        (``remarked``: id, label as stored, labels now; withdraw29). It fed a note whose
        stored label that label did not widen, and the tracker keeps what it fused, so
        every output from then on is made from it. None: no label of this node's would do."""
        label: SecurityLabel | None = self.output_label
        schemes = self.node.catalogue.schemes
        for _, stored, now_marked in remarked:
            if self.withheld_reason(stored) is not None:
                continue  # never fed
            for source in now_marked:
                label = narrowed_derived(source, label, schemes) if label else None
        return label

    def _say_ahead(self, originator: str, every_s: float = AHEAD_SAID_EVERY_S) -> None:
        """One line per originator and minute at most while its measurements come stamped
        ahead: left out, they would otherwise leave no trace (``gsomia doctor`` says it too,
        from what is stored)."""
        count = self.centre.ahead.get(originator, 0)
        said_at, said = self._ahead_said.get(originator, (-float("inf"), 0))
        now = time.monotonic()
        if count > said and now - said_at >= every_s:
            self._ahead_said[originator] = (now, count)
            log.warning("warning centre: %d measurements of %s stamped more than %.0f s "
                        "after they were held, left out: its clock runs %.0f s ahead or "
                        "more (%d so far)", count - said, originator, AHEAD_S,
                        self.centre.ahead_s.get(originator, 0.0), count)

    def publish_due(self) -> None:
        if self.due:
            self.publish(self.due)
            self.due = []

    def publish(self, outputs: Sequence[Output]) -> None:
        from gsomia.service.handlers import LabelRequest

        if not outputs:
            return
        wanted = [(output_id(self.secret, self.centre, o), o) for o in outputs]
        with self.node.store.repository() as repo:
            found = {i: repo.get_item(i) for i, _ in wanted}
            out = self.label_now(repo.reclassified_up_to(self.mark, stix_type="note"))
        held = {i for i, item in found.items() if item is not None}
        if any(item is not None and item.originator != self.party for item in found.values()):
            # Only this node makes these ids: another's item under one is an attack.
            raise MalformedInput("an item of another party holds an id of this node's "
                                 "warning centre", where="warning centre",
                                 expected="ids only this node's centre makes")
        if out is None:
            # A source fed is now marked so that no label of this node's would do: nothing
            # more is published until the centre no longer holds it (a restart withholds it).
            self.unpublishable += len(outputs)
            return
        entries = []
        for item_id, o in wanted:
            if item_id in held:
                self.skipped += 1
                continue
            made = self.centre.instant_of(o.at_s) or datetime.now(UTC)
            stamp = utc_text(made, 3)
            abstract = _abstract(self.party, o)
            obj = {"type": "note", "spec_version": "2.1", "id": item_id, "created": stamp,
                   "modified": stamp, "abstract": abstract, "content": abstract,
                   "object_refs": [author_of(self.party)], o.prop: o.data}
            entries.append((obj, LabelRequest(out.level, tuple(sorted(out.rel_to)),
                                              out.purpose, out.caveats, policy=out.policy,
                                              category=o.category)))
        publish_items(self.node, entries, datetime.now(UTC), "warning-centre")
        self.published += len(entries)


def rehearse(party: Party, atlas: Any) -> set[str]:
    """Run a throwaway centre through the first minute of a shipped launch's radar reports,
    up to its first impact prediction and warning, and say which outputs it made.

    The first step of a centre loads the tracker's compiled kernels from numba's cache and
    the first warning lays a corridor over the map for the first time: about a second of
    CPU, paid by whichever measurement first made the real centre step (the sensors bench's
    one warning took 1.0 s from measurement to stored). Paid here, before any report is
    tracked, it is off the path. Nothing of it reaches the real centre: its outputs depend
    only on what the node feeds it."""
    from gsomia.core.node_centre import NodeCentre
    from gsomia.core.sensor_feed import Registered, read_lines, reference_report
    from gsomia.shell import feeds
    from gsomia.shell.sensor_player import playlist

    made: set[str] = set()
    try:
        _, lines = playlist(REHEARSAL_LAUNCH, None, "JPN", 0, REHEARSAL_UNTIL_S)
        sensors = {s.id: Registered(s.id, f"rehearsal-{i}", "rae", s.lat_deg, s.lon_deg,
                                    s.height_m)
                   for i, s in enumerate(feeds.load_sensors()) if s.kind == "radar"}
        centre = NodeCentre(party, atlas)
        by_second: dict[int, list[bytes]] = {}
        for at, line in lines:
            by_second.setdefault(int(at), []).append(json.dumps(line).encode())
        latest: dict[str, float] = {}
        for second in sorted(by_second):
            taken = read_lines(by_second[second], sensors, latest, 60.0).accepted
            for sid, measured in taken.items():
                made.update(o.category for o in centre.report("JPN", reference_report(
                    sensors[sid], measured)))
            if {"impact-prediction", "warning"} <= made:
                break
    except Exception:  # a warm-up only: the real centre loads what it needs when it needs it
        log.exception("warning centre: rehearsal failed")
    return made


def _abstract(party: Party, o: Output) -> str:
    if o.category == "warning":
        d = o.data
        return (f"{party} warning {d['action']}: {', '.join(d['regions']) or 'no region'} "
                f"(T+{o.at_s:.0f} s)")
    return f"{party} {o.category} (T+{o.at_s:.0f} s)"


# The node folders whose centre runs in this process, or in another worker of the same node
# (``node run --workers``: worker 0's): one centre per node.
_RUNNING: set[Path] = set()
_RUNNING_LOCK = threading.RLock()


def _presence_address(folder: Path) -> str:
    """The abstract Unix socket a node's running centre holds (Linux; no file is made): the
    kernel frees it when the process ends, however it ends."""
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:40]
    return f"\0gsomia-centre-{digest}"


def _present(folder: Path) -> Any:
    """Hold the centre's presence for ``folder``: the socket, or None if another process of
    the node holds it (its centre runs). Where there are no abstract sockets, a stand-in."""
    import socket

    if not sys.platform.startswith("linux"):
        return _NoPresence()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(_presence_address(folder))
    except OSError:
        sock.close()
        return None
    return sock


class _NoPresence:
    def close(self) -> None:
        pass


def centre_running(folder: Path) -> bool | None:
    """Whether the warning centre of the node in ``folder`` runs (in any process: ``node
    run``, or ``node serve`` once its dashboard played a launch); None where it cannot be
    told (not Linux)."""
    import socket

    if not sys.platform.startswith("linux"):
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(_presence_address(Path(folder)))
        except OSError:
            return False
    return True


def centre_caught_up(node: Any) -> bool:
    """Whether the centre of ``node`` (running in any process) has taken every note the node
    holds and published what it answered: False while it has not written its progress."""
    try:
        # Bounded: a seq is under 20 digits, and the folder's disk is not trusted.
        with (Path(node.folder) / PROGRESS_FILE).open("rb") as f:
            mark = int(f.read(32).decode("ascii"))
    except (OSError, ValueError):
        return False
    with node.store.repository() as repo:
        return not repo.contents_stored_after(mark, stix_type="note", limit=1)


def start_centre(node: Any, couriers: CourierProgress | None = None
                 ) -> tuple[threading.Thread, threading.Event]:
    """The warning centre on a daemon thread (``gsomia node run``), giving way to the
    couriers that tell ``couriers`` their progress."""
    from gsomia.shell.exchange import in_background

    with _RUNNING_LOCK:
        _RUNNING.add(Path(node.folder).resolve())
    return in_background(CentreWorker(node, couriers=couriers), "gsomia-warning-centre")


def centre_elsewhere(folder: Path) -> None:
    """The node's centre runs in another process of the node (``node run``'s worker 0)."""
    with _RUNNING_LOCK:
        _RUNNING.add(Path(folder).resolve())


def ensure_centre(node: Any) -> bool:
    """Start the node's centre unless it runs already (a node served by ``node serve`` has
    none until its dashboard plays a launch's sensors into it); True if it started one."""
    with _RUNNING_LOCK:
        if Path(node.folder).resolve() in _RUNNING:
            return False
        start_centre(node)
        return True
