"""A node's life through the real command line, each command its own process."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest


def command() -> list[str]:
    return [sys.executable, "-m", "gsomia"]


def gsomia(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    env.pop("GSOMIA_TOKEN", None)
    if token is not None:
        env["GSOMIA_TOKEN"] = token
    return subprocess.run([*command(), *args], capture_output=True, text=True, env=env,
                          timeout=180, check=False)


def ok(*args: str, token: str | None = None) -> Any:
    done = gsomia(*args, token=token)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if "--json" in args else done.stdout


INDICATOR = {
    "type": "indicator", "spec_version": "2.1",
    "id": f"indicator--{uuid.UUID(int=7, version=4)}",
    "created": "2017-08-29T05:58:00.000Z", "modified": "2017-08-29T05:58:00.000Z",
    "name": "TEL activity at Sunan", "description": "Launcher out of its shelter.",
    "pattern": "[x-dprk-site:name = 'Sunan']", "pattern_type": "stix",
    "valid_from": "2017-08-29T05:58:00Z",
}
LABEL = ["--level", "군사II급비밀", "--rel-to", "KOR,JPN", "--purpose", "dprk-missile",
         "--policy", "jpn-kor-gsomia-2016"]


def stored(folder: Path) -> tuple[int, int]:
    """(audit log size, item versions held), from the node's own store: what ``node info``
    prints, read without a process of its own (the publishes around it are the commands
    under test)."""
    from gsomia.bootstrap import open_node

    with open_node(folder) as node:
        with node.store.reader() as reader:
            size = reader.size()
        with node.store.repository() as repo:
            return size, repo.count_items()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A KOR node made through the CLI, with two users and one published item."""
    base = tmp_path_factory.mktemp("cli")
    folder = base / "kor"
    made = ok("node", "init", "--party", "KOR", "--dir", str(folder), "--json")
    users = {}
    for name, clearance in (("kim", "군사II급비밀"), ("lee", "군사III급비밀")):
        users[name] = ok("user", "add", "--node", str(folder), "--name", name,
                         "--clearance", clearance, "--need-to-know", "dprk-missile", "--json")
    obj_file = base / "indicator.json"
    obj_file.write_text(json.dumps(INDICATOR), encoding="utf-8")
    published = ok("publish", "--node", str(folder), "--file", str(obj_file), *LABEL, "--json")
    return {"dir": folder, "base": base, "init": made, "users": users,
            "published": published, "file": obj_file}


def test_init_makes_a_node_and_refuses_to_overwrite_it(node: dict[str, Any]) -> None:
    made = node["init"]
    assert made["party"] == "KOR" and made["backend"] == "sqlite"
    assert set(made["fingerprints"]) == {"signing_key", "envelope_key", "ca_certificate",
                                         "server_certificate", "client_certificate"}
    assert all(len(fp) == 64 for fp in made["fingerprints"].values())
    for key in ("keys/signing.key", "keys/envelope.key", "tls/ca.key", "tls/server.key"):
        assert (node["dir"] / key).stat().st_mode & 0o777 == 0o600
    again = gsomia("node", "init", "--party", "KOR", "--dir", str(node["dir"]))
    assert again.returncode == 2
    assert "already holds a node" in again.stderr and "Traceback" not in again.stderr
    info = ok("node", "info", "--dir", str(node["dir"]), "--json")
    assert info["fingerprints"] == made["fingerprints"]
    assert info["users"] == 2 and info["items"] == 1


def test_users_get_a_token_once_and_listings_never_show_it(node: dict[str, Any]) -> None:
    kim = node["users"]["kim"]
    assert kim["token"].startswith("gs_") and len(kim["token"]) > 40
    listed = ok("user", "list", "--node", str(node["dir"]), "--json")
    assert [u["name"] for u in listed["users"]] == ["kim", "lee"]
    assert kim["token"] not in json.dumps(listed)
    assert all("token_hash" not in u for u in listed["users"])
    bad = gsomia("user", "add", "--node", str(node["dir"]), "--name", "choi",
                 "--clearance", "SECRET", "--need-to-know", "dprk-missile")
    assert bad.returncode == 2 and "not a KOR classification level" in bad.stderr


def test_publish_prints_the_id_and_items_lists_labels_and_custody(node: dict[str, Any]) -> None:
    published = node["published"]
    assert published["id"] == INDICATOR["id"]
    assert published["marking"] == "SECRET//REL TO JPN, KOR"
    held = ok("items", "--node", str(node["dir"]), "--json")
    (item,) = held["items"]
    assert item["id"] == INDICATOR["id"] and item["version"] == INDICATOR["modified"]
    assert item["marking"] == "SECRET//REL TO JPN, KOR"
    assert item["national_marking"] == "군사II급비밀//REL TO JPN, KOR"
    assert item["label"]["policy"] == "jpn-kor-gsomia-2016"
    assert [c["event"] for c in item["custody"]] == ["created"]


def test_a_bad_object_or_label_is_refused_and_nothing_is_stored(node: dict[str, Any]) -> None:
    before = ok("node", "info", "--dir", str(node["dir"]), "--json")["audit"]["size"]
    bad = node["base"] / "bad.json"
    bad.write_text(json.dumps({**INDICATOR, "id": "indicator--not-a-uuid",
                               "pattern": "not a pattern"}), encoding="utf-8")
    refused = gsomia("publish", "--node", str(node["dir"]), "--file", str(bad), *LABEL)
    assert refused.returncode == 2
    assert "not a valid STIX 2.1 object" in refused.stderr and "Traceback" not in refused.stderr
    fresh = node["base"] / "fresh.json"
    fresh.write_text(json.dumps({**INDICATOR, "id": f"indicator--{uuid.UUID(int=8, version=4)}"}),
                     encoding="utf-8")
    wrong = gsomia("publish", "--node", str(node["dir"]), "--file", str(fresh),
                   "--level", "TOP SECRET", "--rel-to", "KOR", "--purpose", "dprk-missile")
    assert wrong.returncode == 2 and "not a KOR classification level" in wrong.stderr
    after = ok("node", "info", "--dir", str(node["dir"]), "--json")
    assert after["audit"]["size"] == before and after["items"] == 1


def test_a_need_to_know_no_agreement_knows_is_bad_input(node: dict[str, Any]) -> None:
    """Issue 10, finding 8 (the same class): `user add --need-to-know dprk-misile` made a user
    whose need-to-know opens nothing, silently."""
    refused = gsomia("user", "add", "--node", str(node["dir"]), "--name", "park",
                     "--clearance", "군사III급비밀", "--need-to-know", "dprk-missile,dprk-misile")
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert refused.stdout == "" and "Traceback" not in refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert "--need-to-know: 'dprk-misile' is not a purpose of any agreement" in line
    assert "dprk-missile, regional-security" in line
    listed = ok("user", "list", "--node", str(node["dir"]), "--json")
    assert "park" not in [u["name"] for u in listed["users"]]


@pytest.mark.parametrize(("flags", "where", "expected"), [
    (["--rel-to", "KOR,XYZ", "--purpose", "dprk-missile"], "--rel-to", "one of JPN, KOR, USA"),
    (["--rel-to", "KOR,JPN", "--purpose", "no-such-purpose"], "--purpose",
     "one of dprk-missile, regional-security"),
    (["--rel-to", "KOR,JPN", "--purpose", "dprk-missile", "--category", "gossip"],
     "--category", "impact-prediction"),
    (["--rel-to", "KOR,JPN", "--purpose", "dprk-missile", "--caveat", "EYES"], "--caveat",
     "one of NOFORN, ORCON"),
    (["--rel-to", "KOR,JPN", "--purpose", "dprk-missile", "--policy", "no-such"], "--policy",
     "jpn-kor-gsomia-2016"),
    (["--rel-to", "KOR,JPN", "--purpose", "regional-security", "--policy",
      "trilateral-mwd-2023"], "--purpose", "one of dprk-missile"),
])
def test_publish_with_an_unknown_value_is_bad_input_and_stores_nothing(
        node: dict[str, Any], flags: list[str], where: str, expected: str) -> None:
    """Issue 10, finding 8: `--rel-to KOR,XYZ` was stored as "REL TO KOR, XYZ" and
    `--purpose no-such-purpose` accepted."""
    before = stored(node["dir"])
    fresh = node["base"] / "unknown-value.json"
    fresh.write_text(json.dumps({**INDICATOR, "id": f"indicator--{uuid.UUID(int=9, version=4)}"}),
                     encoding="utf-8")
    refused = gsomia("publish", "--node", str(node["dir"]), "--file", str(fresh),
                     "--level", "군사II급비밀", *flags)
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert refused.stdout == "" and "Traceback" not in refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert f"{where}: " in line and expected in line
    assert stored(node["dir"]) == before


def test_reading_an_item_goes_through_the_access_rule_and_is_audited(
        node: dict[str, Any]) -> None:
    folder = str(node["dir"])
    kim, lee = node["users"]["kim"]["token"], node["users"]["lee"]["token"]
    shown = ok("item", "show", INDICATOR["id"], "--node", folder, "--user", kim, "--json")
    assert shown["object"]["name"] == INDICATOR["name"] and shown["decision"]["permit"]
    denied = gsomia("item", "show", INDICATOR["id"], "--node", folder, token=lee)  # $GSOMIA_TOKEN
    assert denied.returncode == 1 and INDICATOR["name"] not in denied.stdout + denied.stderr
    # lee hears exactly what an id not held gets: not the level, not why (finding 3d)
    absent_id = f"indicator--{uuid.UUID(int=999, version=4)}"
    absent = gsomia("item", "show", absent_id, "--node", folder, "--user", lee)
    assert (absent.returncode, absent.stdout) == (denied.returncode, denied.stdout)
    assert absent.stderr.replace(absent_id, "ID") == denied.stderr.replace(INDICATOR["id"], "ID")
    assert "below" not in denied.stderr and "군사" not in denied.stderr
    stranger = gsomia("item", "show", INDICATOR["id"], "--node", folder, "--user", "gs_x" * 12)
    assert stranger.returncode == 1 and "no user holds this token" in stranger.stderr
    log = ok("audit", "events", "--node", folder, "--item", INDICATOR["id"], "--json")
    kinds = [(e["kind"], e["actor"]) for e in log["events"]]
    assert ("item-created", "operator") in kinds and ("label-bound", "node") in kinds
    assert ("access-granted", "kim") in kinds and ("access-denied", "lee") in kinds
    # the log, not the reader, keeps why lee was refused
    assert any("below" in r for e in log["events"] if e["actor"] == "lee"
               for r in e["details"]["reasons"])
    assert ("access-denied", "unknown") in kinds


def test_audit_verify_head_and_proofs_anyone_can_check(node: dict[str, Any]) -> None:
    folder = str(node["dir"])
    intact = gsomia("audit", "verify", "--node", folder)
    assert intact.returncode == 0 and "intact" in intact.stdout
    head = ok("audit", "head", "--node", folder, "--json")
    assert head["size"] >= 5 and len(head["signature"]) == 86
    proof = node["base"] / "proof.json"
    ok("audit", "prove", "--node", folder, "--event", str(node["published"]["seq"]),
       "--against", "3", "--out", str(proof))
    public = str(node["dir"] / "keys" / "signing.pub")
    checked = ok("audit", "check-proof", "--file", str(proof), "--public-key", public, "--json")
    assert checked["ok"] and checked["event"] == node["published"]["seq"]
    assert checked["old_size"] == 3 and checked["head_size"] == head["size"]
    doc = json.loads(proof.read_text("utf-8"))
    doc["inclusion"]["event"]["actor"] = "someone-else"
    forged = node["base"] / "forged.json"
    forged.write_text(json.dumps(doc), encoding="utf-8")
    refused = gsomia("audit", "check-proof", "--file", str(forged), "--public-key", public)
    assert refused.returncode == 1 and "does not hash" in refused.stderr


def test_audit_verify_fails_naming_the_tampered_item(node: dict[str, Any]) -> None:
    copy = node["base"] / "tampered"
    shutil.copytree(node["dir"], copy)
    db = sqlite3.connect(copy / "node.db")
    (content,) = db.execute("SELECT content FROM items").fetchone()
    flipped = bytearray(content)
    flipped[flipped.index(b"Sunan")] ^= 0x20
    db.execute("UPDATE items SET content = ?", (bytes(flipped),))
    db.commit()
    db.close()
    failed = gsomia("audit", "verify", "--node", str(copy))
    assert failed.returncode == 1
    assert f"item-modified at item {INDICATOR['id']}@{INDICATOR['modified']}" in failed.stderr
