"""One writer of instants (``core.types.utc_text``) and one table of parties and levels."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsomia.core import types
from gsomia.core.errors import MalformedInput
from gsomia.core.types import PARTIES, SECRET_LEVELS, instant, iso, utc_text
from gsomia.shell.catalogue import load_catalogue

SRC = Path(types.__file__).resolve().parents[1]

_instants = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 1, 1),
                         timezones=st.sampled_from([UTC, timezone(timedelta(hours=9)),
                                                    timezone(timedelta(hours=-5))]))


@given(_instants)
def test_utc_text_writes_what_strftime_writes_in_utc(at: datetime) -> None:
    utc = at.astimezone(UTC)
    assert utc_text(at) == utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert utc_text(at, 3) == utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert utc_text(at, 6) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@given(_instants)
def test_an_instant_written_to_the_microsecond_reads_back_as_itself(at: datetime) -> None:
    assert instant(utc_text(at, 6)) == at
    # iso: milliseconds or nothing, and it reads back to the millisecond
    assert instant(iso(at)) == at.replace(microsecond=at.microsecond // 1000 * 1000)


@pytest.mark.parametrize("digits", [1, 2, 4, 9])
def test_other_precisions_are_refused(digits: int) -> None:
    with pytest.raises(ValueError, match="0, 3 or 6"):
        utc_text(datetime(2026, 1, 1, tzinfo=UTC), digits)


def test_no_instant_is_formatted_by_hand_elsewhere() -> None:
    """Issue 11: instant formatting was written out in about eight places."""
    by_hand = re.compile(r"""strftime\(\s*f?["']%Y-%m-%dT""")
    found = [f"{p.relative_to(SRC).as_posix()}:{n}"
             for p in sorted(SRC.rglob("*.py"))
             if p.relative_to(SRC).as_posix() != "core/types.py"
             for n, line in enumerate(p.read_text("utf-8").splitlines(), 1)
             if by_hand.search(line)]
    assert found == []


def test_the_table_of_levels_names_each_party_and_a_level_of_its_scheme() -> None:
    shipped = load_catalogue(())
    assert set(SECRET_LEVELS) == set(PARTIES) == set(shipped.schemes)
    for party, level in SECRET_LEVELS.items():
        assert shipped.schemes[party].level(level).english == "SECRET", party


def test_the_table_of_levels_is_written_once() -> None:
    """Issue 11: the party → level table was written out five times."""
    table = re.compile(r"""["'](KOR|JPN|USA)["']\s*:\s*["'](군사II급비밀|極秘|SECRET)["']""")
    found = [f"{p.relative_to(SRC).as_posix()}:{n}"
             for p in sorted(SRC.rglob("*.py")) if p.relative_to(SRC).as_posix() != "core/types.py"
             for n, line in enumerate(p.read_text("utf-8").splitlines(), 1)
             if table.search(line)]
    assert found == []


@given(_instants)
def test_every_stix_form_of_a_version_reads_back_as_that_version(at: datetime) -> None:
    """``match[version]`` compares stored text with these forms: each must be the instant
    itself, in UTC, and one must be there for each count of fraction digits STIX allows."""
    from gsomia.shell.taxii_store import version_forms

    forms = version_forms(at)
    assert all(instant(form) == at for form in forms), forms
    assert all(form.endswith("Z") and form[:19] == utc_text(at)[:19] for form in forms)
    digits = {len(form[20:-1]) for form in forms if "." in form}
    fraction = f"{at.microsecond:06d}".rstrip("0")
    assert digits == set(range(max(len(fraction), 1), 10))
    assert (utc_text(at) in forms) == (not fraction)


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1, 1, 2))
       | st.datetimes(min_value=datetime(9999, 12, 30), max_value=datetime(9999, 12, 31, 23, 59)),
       st.integers(-23, 23))
def test_an_instant_at_the_edge_of_the_calendar_is_read_or_refused(at: datetime,
                                                                    hours: int) -> None:
    """``0001-01-01T00:00:00+01:00`` is in year 0 in UTC: it raised OverflowError out of
    ``instant`` (a sensor line's epoch, a TAXII filter), not MalformedInput."""
    text = at.isoformat() + f"{'+' if hours >= 0 else '-'}{abs(hours):02d}:00"
    try:
        read = instant(text)
    except MalformedInput:
        return
    assert read == at.replace(tzinfo=timezone(timedelta(hours=hours)))
