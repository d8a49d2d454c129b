"""A partner going down during a flight (issue 12): under ``direct``, KOR's node process is
stopped while both parties' radars are being played into their nodes. JPN's node goes on
warning from its own sensors; KOR's sensors go on into KOR's folder, whose outbox queues
the reports for JPN; when KOR's node is started again JPN catches up with every one of
them, each received once (custody) and delivered once (KOR's outbox). JPN's radars are played
by ``gsomia replay``, which prints the warnings JPN's own centre issued. Apart from the other
sensor files so that it runs on its own worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_federation import Federation
from test_sensor_feeds import LAUNCH, first_warning_s, notes, settled

from gsomia.shell import exchange, federation
from gsomia.shell.node import Node
from gsomia.shell.store import custody, items, outbox
from starting import WAIT_S, wait_started, waited

pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]

SPEED = "25"


def held_from(node: Node, origin: str) -> set[str]:
    with node.store.engine.connect() as conn:
        return {str(r.id) for r in conn.execute(
            sa.select(items.c.id).where(items.c.originator == origin))}


def waiting_for(node: Node, recipient: str) -> set[str]:
    """The items of ``node``'s deliveries to ``recipient`` still pending."""
    with node.store.engine.connect() as conn:
        return {str(r.item_id) for r in conn.execute(
            sa.select(outbox.c.item_id).where(outbox.c.recipient == recipient,
                                              outbox.c.kind == "delivery",
                                              outbox.c.status == "pending"))}


def ended(player: subprocess.Popen[str]) -> str:
    """What a player wrote to its stderr, once it has ended (a live one's pipe would block)."""
    if player.poll() is None or player.stderr is None:
        return "(still playing)"
    return player.stderr.read()[-3000:]


def own_warnings(node: Node) -> list[dict[str, object]]:
    return [w for w in notes(node, "x_gsomia_warning") if w["originator"] == node.party]


def test_jpn_warns_alone_while_kor_is_down_and_catches_up_once_when_it_returns(
        tmp_path: Path) -> None:
    with Federation.running(tmp_path / "fed", "direct") as fed:
        jpn, kor = fed.nodes["JPN"], fed.nodes["KOR"]
        # Into the node folders, as each party's operator on its host: KOR's sensors keep
        # feeding its store while its node process is down.
        # JPN's through `gsomia replay`, the operator's command for the node's own sensors.
        players = {code: subprocess.Popen(
            [sys.executable, "-m", "gsomia", *command, "--launch", LAUNCH, "--node",
             str(fed.folder / code), "--speed", SPEED, "--until", "640", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for code, command in (("KOR", ("sensors", "run", "--party", "KOR")),
                                  ("JPN", ("replay",)))}
        printed: dict[str, str] = {}
        try:
            # KOR's reports flow to JPN, then KOR's node stops mid-flight: while KOR's
            # sensors still play, however long the load makes their start (the playlist
            # alone took 48 s of wall time at a load of 22) and the first deliveries take.
            # Stuck: the player took a minute of CPU first; too late: it ended first (the
            # stop would not be mid-flight).
            wait_started(lambda: len(held_from(jpn, "KOR")) >= 3, players["KOR"],
                         lambda: "KOR's sensors, before JPN held 3 of KOR's reports:\n"
                                 + ended(players["KOR"]), hang_s=240)
            assert federation.stop_node(fed.folder / "KOR") != "not running"
            at_stop = held_from(jpn, "KOR")
            warned_before = len(own_warnings(jpn))
            for code, player in players.items():
                printed[code], err = player.communicate(timeout=240)
                assert player.returncode == 0, (code, err)
        finally:
            for player in players.values():
                if player.poll() is None:
                    player.kill()
        settled(jpn)
        # JPN went on warning from its own radars while KOR was down.
        assert first_warning_s(jpn) is not None
        assert len(own_warnings(jpn)) > warned_before
        assert held_from(jpn, "KOR") == at_stop, "JPN held KOR's reports while KOR was down"
        # What `gsomia replay` printed is what JPN's own centre issued, at the flight second
        # the centre stamped each warning with.
        replayed = json.loads(printed["JPN"])
        assert replayed["counts"]["accepted"] > 0
        held = {w["id"]: w for w in own_warnings(jpn)}
        assert replayed["warnings"] and {w["id"] for w in replayed["warnings"]} <= set(held)
        for w in replayed["warnings"]:
            assert w["after_launch_s"] == pytest.approx(held[w["id"]]["at_s"], abs=0.06)
            assert (w["action"], w["regions"]) == (held[w["id"]]["action"],
                                                   held[w["id"]]["regions"])
        issued = [w["after_launch_s"] for w in replayed["warnings"] if w["action"] == "issued"]
        assert min(issued) == pytest.approx(first_warning_s(jpn), abs=0.06)
        # A batch JPN answered and KOR did not record (a node killed at its stop) is both
        # held at JPN and pending at KOR: its rows go again and JPN answers them once more.
        queued = waiting_for(kor, "JPN")
        assert queued - at_stop, "KOR's sensors went on and its outbox queued them for JPN"

        fed.up()   # KOR's node, the same folder, started again
        waited(lambda: exchange.pending(kor, "JPN") == 0, "KOR's outbox for JPN drained",
               lambda: f"{exchange.pending(kor, 'JPN')} rows pending", timeout=WAIT_S)
        settled(jpn)
        with kor.store.engine.connect() as conn:
            delivered = [str(r.item_id) for r in conn.execute(
                sa.select(outbox.c.item_id).where(outbox.c.recipient == "JPN",
                                                  outbox.c.kind == "delivery",
                                                  outbox.c.status == "delivered"))]
        caught_up = held_from(jpn, "KOR")
        assert caught_up >= at_stop | queued
        assert caught_up == set(delivered) and len(delivered) == len(set(delivered))
        # Each of KOR's items was received at JPN once: one custody record per version.
        with jpn.store.engine.connect() as conn:
            received = conn.execute(
                sa.select(custody.c.item_id, custody.c.version, sa.func.count())
                .where(custody.c.event == "received", custody.c.provider == "KOR")
                .group_by(custody.c.item_id, custody.c.version)).all()
        assert {str(r[0]) for r in received} == caught_up
        assert all(int(r[2]) == 1 for r in received), "an item of KOR's was received twice"
