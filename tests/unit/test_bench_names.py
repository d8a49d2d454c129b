"""`python -m bench` names what it runs, or says why it cannot, before anything runs."""

from __future__ import annotations

import pytest
from bench import known, unknown
from bench.__main__ import main


def test_help_is_the_usage_and_runs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "python -m bench" in capsys.readouterr().out


@pytest.mark.parametrize(("name", "said"), [
    ("nope", "no benchmark 'nope'; known: "),
    ("sensors:nope", "its parts: salvo, measurement_to_warning, report_to_partner"),
    ("policy:whole", "'policy' has no part 'whole'; it runs only whole"),
])
def test_a_name_that_is_no_benchmark_is_refused_with_what_would_be(
        name: str, said: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([name]) == 2
    assert said in capsys.readouterr().err
    # Side by side too, before a reference tree is checked out.
    assert main(["--against", "HEAD", "--pairs", "1", name]) == 2


def test_every_module_and_listed_part_is_a_name() -> None:
    assert {"sensors", "exchange", "taxii"} <= set(known())
    assert all(unknown(n) is None for n in known())
    assert unknown("sensors:report_to_partner") is None
