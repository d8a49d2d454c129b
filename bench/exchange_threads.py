"""Where the CPU of a saturated ``direct`` delivery goes (deliver22): a federation started
as ``bench_exchange`` starts it, KOR publishing batches of 100 to JPN, and the CPU each
thread of each node process (and of its signature worker, and of this process, the
publisher) used from the first publish until the last receipt is recorded, per item,
kernel time apart. Threads are named by ``py-spy dump`` when py-spy is installed (its
thread names, and the gsomia frame each was in). Not a test, not part of ``python -m
bench``:

    PYTHONPATH=src:. python bench/exchange_threads.py [items]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_exchange import _cpu, _last_row, _obj, _Receipted
from gsomia import bootstrap
from gsomia.service import handlers
from gsomia.shell import exchange, federation

TICK = os.sysconf("SC_CLK_TCK")


def _threads(pid: int) -> dict[int, tuple[float, float]]:
    """(user + system, system) CPU seconds of each thread of ``pid``."""
    out: dict[int, tuple[float, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user, system = int(fields[11]) / TICK, int(fields[12]) / TICK
        out[int(task.name)] = (user + system, system)
    return out


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _names(pid: int) -> dict[int, str]:
    """Thread id: its name and the innermost gsomia frame, from ``py-spy dump``."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {}
    text = subprocess.run([spy, "dump", "-p", str(pid), "--nonblocking"],
                          capture_output=True, text=True).stdout
    names: dict[int, str] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"Thread (\d+) \((\w+)\): (.*)", line)
        if head:
            current = int(head.group(1))
            names[current] = head.group(3)
        elif current is not None and "gsomia/" in line and " | " not in names[current]:
            names[current] += " | " + line.strip()[:60]
    return names


def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="gsomia-exchange-threads-") as tmp:
        folder = Path(tmp) / "direct"
        federation.up(folder, "direct", federation.free_base_port())
        kor = bootstrap.open_node(folder / "KOR")
        label = handlers.LabelRequest("군사III급비밀", ("KOR", "JPN"), "dprk-missile")
        try:
            # A first 200, not counted: the links open, the caches fill.
            ids: list[str] = []
            for _ in range(2):
                batch = [_obj(i) for i in range(100)]
                exchange.publish(kor, entries=[(o, label) for o in batch])
                ids += [o["id"] for o in batch]
            exchange.wait_until(_Receipted(kor, "JPN", set(ids), 0), 120, interval=0.01)
            processes: dict[str, int] = {"publisher (this process)": os.getpid()}
            for code in ("KOR", "JPN"):
                pid = int((folder / code / federation.PID_FILE).read_text().strip())
                processes[code] = pid
                for child in _children(pid):
                    processes[f"{code} child {child}"] = child
            before = {k: _threads(p) for k, p in processes.items()}
            mark, ids = _last_row(kor), []
            cpu0, start = _cpu(folder), time.perf_counter()
            for b in range(0, n, 100):
                batch = [_obj(b + i) for i in range(100)]
                exchange.publish(kor, entries=[(o, label) for o in batch])
                ids += [o["id"] for o in batch]
            if not exchange.wait_until(_Receipted(kor, "JPN", set(ids), mark), 300,
                                       interval=0.01):
                raise RuntimeError("not delivered within 300 s")
            elapsed = time.perf_counter() - start
            after = {k: _threads(p) for k, p in processes.items()}
            total = (_cpu(folder) - cpu0) / n * 1000
            print(f"{n} items, {n / elapsed:.0f} items/s end to end, {total:.3f} ms CPU per "
                  f"item over all processes; load average {os.getloadavg()[0]:.1f}")
            for key, pid in processes.items():
                names = _names(pid) if pid != os.getpid() else {}
                rows = []
                for tid, (cpu, system) in after[key].items():
                    was, was_system = before[key].get(tid, (0.0, 0.0))
                    if cpu > was:
                        rows.append((cpu - was, system - was_system, tid))
                spent = sum(r[0] for r in rows)
                print(f"== {key} (pid {pid}): {spent / n * 1000:.3f} ms per item")
                for cpu, system, tid in sorted(rows, reverse=True):
                    print(f"   {cpu / n * 1000:6.3f} ms (kernel {system / n * 1000:.3f}) "
                          f"{names.get(tid, f'thread {tid}')}")
        finally:
            kor.close()
            federation.down(folder)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
