"""Issue 10, findings 5 and 6 through the real command line, each command its own process:
a node refuses to start with a private key others may read; a malformed ``x_gsomia_ipp``
is refused at publish (exit 2, the field named); ``user revoke`` and ``user list``; and
``user add --role`` (issue 14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_dashboard import free_port
from test_node_cli import gsomia, ok

NOTE = {"type": "note", "spec_version": "2.1",
        "id": "note--6b1c0a52-3e44-4a1b-9c51-0d3e7c2f9a10",
        "created": "2017-08-28T21:00:00.000Z", "modified": "2017-08-28T21:00:00.000Z",
        "abstract": "JPN impact prediction", "content": "impact prediction",
        "object_refs": ["identity--0b7a2a4e-8d5c-4b59-8a55-2c9a1f0e6d21"],
        "x_gsomia_ipp": {"at_s": 122.7, "track": "USA-1@USA", "launch": "2017-08-28#115",
                         "regime": "direct", "seed": 0}}   # no point, no ellipse


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("authcli") / "jpn"
    ok("node", "init", "--party", "JPN", "--dir", str(path), "--json")
    return path


@pytest.mark.parametrize("command", [["node", "serve"], ["node", "run"]])
@pytest.mark.parametrize("key", ["keys/signing.key", "tls/server.key"])
def test_a_node_does_not_start_with_a_private_key_others_may_read(
        folder: Path, command: list[str], key: str) -> None:
    path = folder / key
    path.chmod(0o644)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "gsomia", *command, "--dir", str(folder), "--host",
             "127.0.0.1", "--port", str(free_port())],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            pytest.fail(f"`gsomia {' '.join(command)}` started with {key} mode 0644")
        assert process.returncode == 2, err
        assert str(path) in err and f"chmod 600 {path}" in err and "0o644" in err
        if command == ["node", "serve"]:    # doctor says the same, by the same check
            doctor = gsomia("doctor", "--node", str(folder))
            assert doctor.returncode != 0 and f"chmod 600 {path}" in doctor.stdout + doctor.stderr
    finally:
        path.chmod(0o600)


def test_a_malformed_ipp_is_refused_at_publish_naming_the_field(folder: Path,
                                                                tmp_path: Path) -> None:
    source = tmp_path / "note.json"
    source.write_text(json.dumps(NOTE), encoding="utf-8")
    done = gsomia("publish", "--node", str(folder), "--file", str(source), "--level", "極秘",
                  "--rel-to", "JPN,KOR", "--purpose", "dprk-missile")
    assert done.returncode == 2, done.stdout
    assert "x_gsomia_ipp.ellipse" in done.stderr and "missing" in done.stderr
    assert "Traceback" not in done.stderr
    items: Any = ok("items", "--node", str(folder), "--json")
    assert NOTE["id"] not in json.dumps(items)


def test_revoke_marks_the_user_revoked_once_and_is_audited(folder: Path) -> None:
    for name in ("ami", "ren"):
        ok("user", "add", "--node", str(folder), "--name", name, "--clearance", "極秘",
           "--need-to-know", "dprk-missile", "--json")
    done: Any = ok("user", "revoke", "--node", str(folder), "--name", "ami", "--json")
    assert done["name"] == "ami" and done["state"] == "revoked"
    listed: Any = ok("user", "list", "--node", str(folder), "--json")
    states = {u["name"]: u["state"] for u in listed["users"]}
    assert states["ami"] == "revoked" and states["ren"] == "active"
    assert "revoked" in ok("user", "list", "--node", str(folder))
    again = gsomia("user", "revoke", "--node", str(folder), "--name", "ami")
    assert again.returncode == 2 and "already revoked" in again.stderr
    nobody = gsomia("user", "revoke", "--node", str(folder), "--name", "nobody")
    assert nobody.returncode == 2 and "--name" in nobody.stderr
    verified = gsomia("audit", "verify", "--node", str(folder))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_user_add_takes_a_role_and_user_list_shows_it(folder: Path) -> None:
    """Issue 14: roles for the dashboard's desk; reader unless told, an unknown role is bad
    input (exit 2) and adds nobody."""
    added: Any = ok("user", "add", "--node", str(folder), "--name", "oda", "--clearance",
                    "極秘", "--need-to-know", "dprk-missile", "--role", "operator", "--json")
    assert added["role"] == "operator"
    ok("user", "add", "--node", str(folder), "--name", "mori", "--clearance", "秘",
       "--need-to-know", "dprk-missile", "--json")
    bad = gsomia("user", "add", "--node", str(folder), "--name", "goto", "--clearance", "秘",
                 "--need-to-know", "dprk-missile", "--role", "root")
    assert bad.returncode == 2 and "--role" in bad.stderr
    listed: Any = ok("user", "list", "--node", str(folder), "--json")
    roles = {u["name"]: u["role"] for u in listed["users"]}
    assert roles["oda"] == "operator" and roles["mori"] == "reader" and "goto" not in roles
    assert "operator" in ok("user", "list", "--node", str(folder))
    verified = gsomia("audit", "verify", "--node", str(folder))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_deleting_a_revocation_behind_the_log_s_back_is_caught(tmp_path: Path) -> None:
    """Deleting the row would let the token in again: ``audit verify`` names it."""
    import sqlite3

    folder = tmp_path / "kor"
    ok("node", "init", "--party", "KOR", "--dir", str(folder), "--json")
    ok("user", "add", "--node", str(folder), "--name", "kim", "--clearance", "군사II급비밀",
       "--need-to-know", "dprk-missile", "--json")
    ok("user", "revoke", "--node", str(folder), "--name", "kim")
    with sqlite3.connect(folder / "node.db") as db:
        db.execute("DELETE FROM revocations WHERE name = 'kim'")
    verified = gsomia("audit", "verify", "--node", str(folder))
    assert verified.returncode == 1
    assert "revocations" in verified.stdout + verified.stderr
