"""JPN's first reports of KOR, with JPN's warning centre made where it is made in this tree
against where another tree makes it (warm27: at KOR's pre-launch indicators, before the
first report; before it, at the first report), alternated run by run. Not a test, not part
of ``python -m bench``:

    PYTHONPATH=src:. python bench/centre_ready_ab.py --against OTHER_TREE [PAIRS] [--save]

One run is ``bench_sensors.report_to_partner`` cut to the first ``UNTIL_S`` of KOR's view,
one round (its indicators, then its radar lines at ``REPORT_SPEED`` times real time: the first
line 14 s after the indicators): per report, in KOR's stamp order, from KOR's stamp until
KOR recorded JPN's answer (ms), the first ten of them, their max and median, and JPN's node
process CPU (s) when the federation answered, at the indicators' send and at the first
line's (what JPN spent between the two is its centre getting ready, or not), and at the end.
``--save``: the runs and their summary go to bench/results/latest.json under
``centre_ready27_ab``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

UNTIL_S = 160.0
LATEST = Path(__file__).parent / "results" / "latest.json"
HERE = Path(__file__).resolve().parent.parent


def _jpn_cpu(folder: Path) -> float | None:
    from gsomia.shell import federation

    pid = federation.running_pid(folder / "JPN")
    return None if pid is None else federation.process_cpu_s(pid)


def one() -> dict[str, Any]:
    from bench import bench_sensors as b
    from gsomia.shell.sensor_player import play, playlist

    indicators, lines = playlist("2017-08-29", None, "KOR", 0, UNTIL_S)
    with b._federation("direct", "KOR", "kim", "군사II급비밀") as (folder, url, token):
        at_up = _jpn_cpu(folder)
        target = b._logged_target(url, token, str(folder / "KOR" / "tls" / "ca.crt"))
        at_sends: list[float | None] = []
        plain = target.send

        def send(docs: list[dict[str, Any]]) -> None:
            if len(at_sends) < 2:  # the indicators' batch, then the first line's
                at_sends.append(_jpn_cpu(folder))
            plain(docs)

        target.send = send
        try:
            play(target, indicators, lines, b.REPORT_SPEED)
        finally:
            target.close()
        time.sleep(3.0)
        at_end = _jpn_cpu(folder)
        stored = {code: {r.id: r.added_at.timestamp() for r in b._stored(folder / code)
                         if b"x_gsomia_sensor_report" in bytes(r.content)}
                  for code in ("KOR", "JPN")}
        # By position: the other tree's bench_sensors may answer (id, queued, answered)
        # without the recorded instant this tree's adds (fcc0f10).
        answered = {r[0]: r[2] for r in b._answered(folder / "KOR", "JPN")}
    kor, jpn = stored["KOR"], stored["JPN"]
    ms = [round((answered[i] - at) * 1000.0, 1)
          for at, i in sorted((kor[i], i) for i in kor if i in jpn and i in answered)]
    return {"reports": len(ms), "first10_ms": ms[:10], "max_ms": max(ms),
            "p50_ms": statistics.median(ms),
            "jpn_cpu_s": {"up": at_up, "indicators_sent": at_sends[0],
                          "first_line_sent": at_sends[1], "end": at_end}}


def _run(tree: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=f"{tree / 'src'}{os.pathsep}{tree}")
    # This file, run on the other tree's code (its gsomia and its bench_sensors).
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one"],
                          env=env, capture_output=True, text=True, timeout=900, check=True,
                          cwd=tree)
    return dict(json.loads(done.stdout.splitlines()[-1]), load=os.getloadavg()[0])


def main(argv: list[str]) -> int:
    if "--one" in argv:
        print(json.dumps(one()))
        return 0
    other = Path(argv[argv.index("--against") + 1]).resolve()
    pairs = next((int(a) for a in argv if a.isdigit()), 2)
    runs: dict[str, list[dict[str, Any]]] = {"this": [], "other": []}
    for _ in range(pairs):
        for side, tree in (("other", other), ("this", HERE)):
            runs[side].append(_run(tree))
            print(side, json.dumps(runs[side][-1]), flush=True)
    ratios = [{"first10_mean": round(statistics.mean(t["first10_ms"])
                                     / statistics.mean(o["first10_ms"]), 2),
               "max": round(t["max_ms"] / o["max_ms"], 2)}
              for t, o in zip(runs["this"], runs["other"], strict=True)]
    print("this / other, pair by pair:", json.dumps(ratios))
    if "--save" in argv:
        latest = json.loads(LATEST.read_text("utf-8"))
        latest["centre_ready27_ab"] = {
            "command": f"PYTHONPATH=src:. python bench/centre_ready_ab.py --against TREE "
                       f"{pairs} --save",
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "until_s": UNTIL_S, "runs": runs, "ratios": ratios}
        LATEST.write_text(json.dumps(latest, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
