"""The HTML report: written, self-contained (nothing fetched), and it names what happened."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsomia.core.agreements import Catalogue
from gsomia.service.stories import agreement_story
from gsomia.shell.commands.report import register
from gsomia.shell.report import Projection, custody_paths, render, write_report


@pytest.fixture(scope="module")
def story(shipped: Catalogue) -> dict[str, Any]:
    return agreement_story(shipped)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``gsomia report`` as a user runs it (one replay under every regime)."""
    cli = click.Group()
    register(cli)
    out = tmp_path_factory.mktemp("report") / "out"
    cli.main(["report", "--launch", "2017-08-29", "--out", str(out)], standalone_mode=False)
    path = out / "index.html"
    assert path.is_file()
    return path.read_text(encoding="utf-8")


def test_report_is_self_contained(page: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "@import" not in page
    assert page.count("<svg") >= 2          # the map and the timeline, inline


def test_report_names_the_warnings_and_agreements(page: str, story: dict[str, Any]) -> None:
    assert "Hokkaido" in page
    assert "Hwasong-12" in page
    for agreement in story["states"]:
        assert agreement in page
    for regime in ("none", "hub", "direct", "trilateral"):
        assert f'data-regime="{regime}"' in page
    assert page.count("<ellipse") > 4       # impact ellipses over time
    assert "notice-given" in page           # the 2019 notice of termination


def test_custody_is_re_marked_at_each_hop(shipped: Catalogue) -> None:
    paths = custody_paths(shipped)
    hub = next(c for c in paths if c["regime"] == "hub" and c["origin"] == "KOR"
               and c["recipient"] == "JPN" and c["kind"] == "impact-prediction")
    assert hub["via"] == "USA"
    assert [h["holder"] for h in hub["hops"]] == ["KOR", "USA", "JPN"]
    assert hub["hops"][0]["marking"].startswith("군사II급비밀")
    assert hub["hops"][1]["marking"].startswith("SECRET")
    assert hub["hops"][2]["marking"].startswith("極秘")
    direct = next(c for c in paths if c["regime"] == "direct" and c["origin"] == "KOR"
                  and c["recipient"] == "JPN" and c["kind"] == "impact-prediction")
    assert direct["via"] is None and [h["holder"] for h in direct["hops"]] == ["KOR", "JPN"]
    alone = [c for c in paths if c["regime"] == "none"]
    assert alone and not any(c["delivered"] for c in alone)


@given(st.text(max_size=40))
def test_story_text_is_escaped(text: str) -> None:
    doc = render({"states": {"x": {"2017-01-01": {"state": text, "terminates_on": None}}},
                  "decisions": []})
    assert f"<td>{html.escape(text, quote=True)}</td>" in doc
    body = doc.split("<body>", 1)[1]
    assert body.count("<script") == 2       # the story data and the regime selector only


def test_report_of_a_story_without_a_launch(tmp_path: Path, story: dict[str, Any]) -> None:
    path = write_report(story, tmp_path / "plain")
    text = path.read_text(encoding="utf-8")
    assert "jpn-kor-gsomia-2016" in text and "Custody of items" in text
    assert "<svg" not in text               # no launch, no map


@given(st.floats(30, 47), st.floats(120, 152))
def test_projection_keeps_points_in_frame(lat: float, lon: float) -> None:
    p = Projection()
    x, y = p.xy(lat, lon)
    assert -1e-6 <= x <= p.width + 1e-6 and -1e-6 <= y <= p.height + 1e-6
