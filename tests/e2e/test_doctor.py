"""``gsomia doctor`` says what works and what to fix, for the machine and a node folder."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

Run = Callable[..., CompletedProcess[str]]


def test_doctor_on_a_healthy_node_then_on_broken_ones(gsomia: Run, tmp_path: Path) -> None:
    node = tmp_path / "kor"
    assert gsomia("node", "init", "--party", "KOR", "--dir", str(node)).returncode == 0
    out = gsomia("doctor", "--node", str(node), "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] is True
    names = {c["check"] for c in doc["checks"]}
    assert {"python", "agreements", "node configuration", "database and audit log"} <= names

    signing = node / "keys" / "signing.key"
    signing.chmod(0o644)
    out = gsomia("doctor", "--node", str(node))
    assert out.returncode == 1
    assert f"chmod 600 {signing}" in out.stdout
    signing.chmod(0o600)

    with sqlite3.connect(node / "node.db") as db:
        db.execute("DELETE FROM audit_events WHERE position = (SELECT MAX(position) "
                   "FROM audit_events)")
    out = gsomia("doctor", "--node", str(node))
    assert out.returncode == 1 and "[FAIL] database and audit log" in out.stdout
    assert "Art. 17" in out.stdout

    # A stix2validator without the schemas and tables publish checks objects against (first
    # on the path here): publish could not check anything, so the doctor fails it.
    (tmp_path / "site" / "stix2validator").mkdir(parents=True)
    (tmp_path / "site" / "stix2validator" / "__init__.py").write_text("", "utf-8")
    path = os.pathsep.join(p for p in (str(tmp_path / "site"), os.environ.get("PYTHONPATH"))
                           if p)
    out = gsomia("doctor", "--node", str(tmp_path / "missing"), env={"PYTHONPATH": path})
    assert out.returncode == 1 and "gsomia node init" in out.stdout
    assert "[FAIL] module stix2validator" in out.stdout, out.stdout


def test_doctor_fails_a_partner_ca_file_that_is_not_the_pinned_one(gsomia: Run,
                                                                    tmp_path: Path) -> None:
    from gsomia.shell import federation

    federation.configure(tmp_path, "direct", federation.free_base_port())
    jpn = tmp_path / "JPN"
    out = gsomia("doctor", "--node", str(jpn), "--json")
    checks = {c["check"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["partner CAs pinned"]["ok"] is True, checks["partner CAs pinned"]
    # KOR's CA planted as USA's: certificates KOR issues must not pass as USA's.
    (jpn / "tls" / "partners" / "USA.crt").write_bytes((tmp_path / "KOR" / "tls" / "ca.crt")
                                                      .read_bytes())
    out = gsomia("doctor", "--node", str(jpn))
    assert out.returncode == 1
    assert "[FAIL] partner CAs pinned: USA:" in out.stdout and "node info" in out.stdout
