"""The agreement commands as a user runs them: output, JSON shapes and exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

Run = Callable[..., CompletedProcess[str]]


@pytest.mark.parametrize(("day", "state", "terminates_on"), [
    ("2016-11-22", "pending", None),
    ("2017-05-01", "in-force", None),
    ("2019-10-01", "notice-given", "2019-11-23"),
    ("2019-11-24", "in-force", None),
    ("2023-04-01", "in-force", None),
])
def test_agreement_status(gsomia: Run, day: str, state: str, terminates_on: str | None) -> None:
    out = gsomia("agreement", "status", "jpn-kor-gsomia-2016", "--at", day, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["state"] == state and doc["terminates_on"] == terminates_on


@pytest.mark.parametrize(("level", "expected"), [
    ("秘", "군사III급비밀"), ("極秘", "군사II급비밀"), ("特定秘密", "군사II급비밀"),
])
def test_classify_jpn_to_kor(gsomia: Run, level: str, expected: str) -> None:
    out = gsomia("classify", "--agreement", "jpn-kor-gsomia-2016", "--from", "JPN",
                 "--to", "KOR", "--level", level)
    assert out.returncode == 0 and out.stdout.strip() == expected


def test_classify_top_level_exits_3(gsomia: Run) -> None:
    out = gsomia("classify", "--agreement", "jpn-kor-gsomia-2016", "--from", "KOR",
                 "--to", "JPN", "--level", "군사I급비밀")
    assert out.returncode == 3
    assert "no JPN equivalent" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [
    ("classify", "--agreement", "jpn-kor-gsomia-2016", "--from", "XX", "--to", "KOR",
     "--level", "秘"),
    ("classify", "--agreement", "jpn-kor-gsomia-2016", "--from", "USA", "--to", "KOR",
     "--level", "SECRET"),
    ("classify", "--agreement", "jpn-kor-gsomia-2016", "--from", "JPN", "--to", "KOR",
     "--level", "ひみつ"),
    ("classify", "--agreement", "no-such", "--from", "JPN", "--to", "KOR", "--level", "秘"),
    ("agreement", "status", "jpn-kor-gsomia-2016", "--at", "2019-02-30"),
    ("agreement", "show", "nope"),
    ("release-check", "--json", "/nonexistent.json"),
    ("evaluate", "--regimes", "direct,bogus", "--out", "/nonexistent/out"),
    ("evaluate", "--regimes", ",", "--out", "/nonexistent/out"),
    ("evaluate", "--regimes", "direct", "--limit", "-1", "--out", "/nonexistent/out"),
])
def test_bad_input_is_one_line_and_exit_2(gsomia: Run, args: tuple[str, ...]) -> None:
    out = gsomia(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_release_check_permit_and_deny(gsomia: Run) -> None:
    request = {"item_id": "indicator--7", "label": {"originator": "KOR", "level": "군사II급비밀",
               "rel_to": ["KOR", "JPN"], "purpose": "dprk-missile", "caveats": []},
               "sender": "KOR", "recipient": "JPN", "at": "2017-03-01T00:00:00Z", "consents": []}
    out = gsomia("release-check", "--json", "-", stdin=json.dumps(request))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["permit"] is True and doc["agreement"] == "jpn-kor-gsomia-2016"
    assert doc["recipient_level"] == "極秘" and doc["reasons"]
    request["at"] = "2016-01-01"
    out = gsomia("release-check", "--json", "-", stdin=json.dumps(request))
    assert out.returncode == 1
    assert json.loads(out.stdout)["permit"] is False


GOOD_REQUEST = {"item_id": "indicator--7", "sender": "KOR", "recipient": "JPN",
                "at": "2017-03-01T00:00:00Z",
                "label": {"originator": "KOR", "level": "군사II급비밀", "rel_to": ["KOR", "JPN"],
                          "purpose": "dprk-missile"}}


@pytest.mark.parametrize(("change", "where", "expected"), [
    ({"recipient": "XYZ"}, "recipient", "one of JPN, KOR, USA"),
    ({"sender": "XYZ"}, "sender", "one of JPN, KOR, USA"),
    ({"label": {**GOOD_REQUEST["label"], "rel_to": ["KOR", "XYZ"]}}, "label.rel_to",
     "one of JPN, KOR, USA"),
    ({"label": {**GOOD_REQUEST["label"], "originator": "XYZ"}}, "label.originator",
     "one of JPN, KOR, USA"),
    ({"label": {**GOOD_REQUEST["label"], "purpose": "no-such-purpose"}}, "label.purpose",
     "one of dprk-missile, regional-security"),
    ({"label": {**GOOD_REQUEST["label"], "caveats": ["EYES ONLY"]}}, "label.caveats",
     "one of NOFORN, ORCON"),
    ({"label": {**GOOD_REQUEST["label"], "category": "gossip"}}, "label.category",
     "impact-prediction"),
    ({"label": {**GOOD_REQUEST["label"], "policy": "no-such"}}, "label.policy",
     "jpn-kor-gsomia-2016"),
    ({"label": {**GOOD_REQUEST["label"], "scheme": "XYZ"}}, "label.scheme",
     "one of JPN, KOR, USA"),
    ({"label": {**GOOD_REQUEST["label"], "level": "極秘"}}, "label.level", "군사II급비밀"),
    ({"consents": [{"item_id": "indicator--7", "originator": "KOR", "recipient": "XYZ"}]},
     "consents[0].recipient", "one of JPN, KOR, USA"),
])
def test_release_check_with_an_unknown_value_is_bad_input_not_a_denial(
        gsomia: Run, change: dict[str, object], where: str, expected: str) -> None:
    """Issue 10, finding 8: a recipient XYZ was answered with a denial (exit 1)."""
    out = gsomia("release-check", "--json", "-", stdin=json.dumps({**GOOD_REQUEST, **change}))
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stdout == "" and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert f"{where}: " in line and expected in line


def test_release_check_invalid_json(gsomia: Run) -> None:
    out = gsomia("release-check", "--json", "-", stdin="{not json")
    assert out.returncode == 2 and "invalid JSON" in out.stderr and "-:1:2" in out.stderr
    out = gsomia("release-check", "--json", "-", stdin='{"item_id": "x"}')
    assert out.returncode == 2 and "missing" in out.stderr


def test_agreement_list_and_show_json(gsomia: Run) -> None:
    out = gsomia("agreement", "list", "--at", "2019-10-01", "--json")
    rows = {r["id"]: r for r in json.loads(out.stdout)["agreements"]}
    assert len(rows) == 5 and rows["jpn-kor-gsomia-2016"]["state"] == "notice-given"
    shown = json.loads(gsomia("agreement", "show", "tisa-2014", "--json").stdout)
    assert shown["topology"] == "hub" and shown["hub"] == "USA"
    assert shown["legally_binding"] is False


def test_user_agreement_folder_via_option_and_environment(gsomia: Run, tmp_path: Path) -> None:
    src = Path(__file__).parents[2] / "src/gsomia/data/agreements/jpn-kor-gsomia-2016.yaml"
    (tmp_path / "mine.yaml").write_text(
        src.read_text("utf-8").replace("jpn-kor-gsomia-2016", "jpn-kor-copy"), "utf-8")
    out = gsomia("agreement", "show", "jpn-kor-copy", "--agreements", str(tmp_path), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["id"] == "jpn-kor-copy"
    out = gsomia("agreement", "list", "--json", env={"GSOMIA_AGREEMENTS": str(tmp_path)})
    assert "jpn-kor-copy" in out.stdout


def test_every_command_has_help(gsomia: Run) -> None:
    top = gsomia("--help")
    assert top.returncode == 0
    for args in (("agreement", "list"), ("agreement", "show"), ("agreement", "status"),
                 ("classify",), ("release-check",)):
        out = gsomia(*args, "--help")
        assert out.returncode == 0 and "Usage:" in out.stdout
