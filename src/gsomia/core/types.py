"""Party codes, identifiers and instants shared by the whole core."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from functools import lru_cache

from gsomia.core.errors import MalformedInput

__all__ = ["PARTIES", "SECRET_LEVELS", "Party", "instant", "iso", "party", "utc_text"]

Party = str
"""An ISO 3166 alpha-3 code as used in REL TO markings (``JPN``, ``KOR``, ``USA``)."""

PARTIES: tuple[Party, ...] = ("JPN", "KOR", "USA")
"""The parties of the shipped agreements, in the order every table and report lists them."""

SECRET_LEVELS: dict[Party, str] = {"JPN": "極秘", "KOR": "군사II급비밀", "USA": "SECRET"}
"""Each party's national level equivalent to SECRET (Art. 4): the level the scenario model,
the demo and the dashboard mark what a party originates with, and clear its analysts to."""

_PARTY = re.compile(r"^[A-Z]{3}$")
# RFC 3339 only: datetime.fromisoformat would take any character between date and time, so
# two different strings could name the same instant and a tampered label still parse equal.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?$")


def party(code: str, *, where: str = "party") -> Party:
    """Return ``code`` if it is a well-formed trigraph, else raise MalformedInput."""
    if not isinstance(code, str) or not _PARTY.match(code):
        raise MalformedInput(
            f"{code!r} is not a party code", where=where,
            expected="an ISO 3166 alpha-3 trigraph such as JPN, KOR or USA",
        )
    return code


def instant(value: str | date | datetime, *, where: str = "at") -> datetime:
    """Parse an ISO 8601 date or date-time into an aware UTC datetime.

    A bare date means its first instant in UTC; a naive date-time is taken as UTC.
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0, 0), tzinfo=UTC)
    if not isinstance(value, str):
        raise MalformedInput(f"{value!r} is not a date", where=where,
                             expected="an ISO 8601 date or date-time such as 2019-11-23")
    text = value.strip()
    # A batch's envelopes, labels and receipts repeat the same few instants: each text is
    # parsed once (only texts as short as an instant is are kept).
    parsed = _parsed(text) if len(text) <= _LONGEST_INSTANT else _parse(text)
    if parsed is None:
        raise MalformedInput(
            f"{value!r} is not a date", where=where,
            expected="an ISO 8601 date or date-time such as 2019-11-23 or 2019-11-23T12:00:00Z",
        )
    return parsed


_LONGEST_INSTANT = 40  # 2019-11-23T12:00:00.123456789+09:00 is 35


def _parse(text: str) -> datetime | None:
    """The UTC instant ``text`` names, or None if it is not RFC 3339."""
    if not _RFC3339.match(text):
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0, 0), tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        # 0001-01-01T00:00+01:00 is in year 0 in UTC: OverflowError, not a date
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


_parsed = lru_cache(maxsize=4096)(_parse)


@lru_cache(maxsize=4096)  # a batch stamps its items with a few instants, many times each
def utc_text(at: datetime, digits: int = 0) -> str:
    """The one way gsomia writes an instant: RFC 3339 in UTC with a trailing Z and
    ``digits`` (0, 3 or 6) fraction digits, truncated (``2026-01-01T00:00:00.000Z``)."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    # Formatted by hand: strftime costs five times as much, and custody stamps every item.
    text = (f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:"
            f"{at.second:02d}")
    if digits == 0:
        return text + "Z"
    if digits == 3:
        return f"{text}.{at.microsecond // 1000:03d}Z"
    if digits == 6:
        return f"{text}.{at.microsecond:06d}Z"
    raise ValueError(f"{digits} fraction digits: an instant is written with 0, 3 or 6")


def iso(at: datetime) -> str:
    """Render an instant as RFC 3339 UTC with a trailing Z."""
    # Milliseconds or nothing: 1-999 µs must give "Z", or the text would not read back to
    # the instant it was made from and a bound label would change on its way round.
    return utc_text(at, 3 if at.microsecond // 1000 else 0)
