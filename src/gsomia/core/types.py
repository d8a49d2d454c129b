"""Party codes, identifiers and instants shared by the whole core."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time

from gsomia.core.errors import MalformedInput

Party = str
"""An ISO 3166 alpha-3 code as used in REL TO markings (``JPN``, ``KOR``, ``USA``)."""

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
    if not _RFC3339.match(text):
        raise MalformedInput(
            f"{value!r} is not a date", where=where,
            expected="an ISO 8601 date or date-time such as 2019-11-23 or 2019-11-23T12:00:00Z",
        )
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0, 0), tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedInput(
            f"{value!r} is not a date", where=where,
            expected="an ISO 8601 date or date-time such as 2019-11-23 or 2019-11-23T12:00:00Z",
        ) from None
    return instant(parsed)


def iso(at: datetime) -> str:
    """Render an instant as RFC 3339 UTC with a trailing Z."""
    # Milliseconds or nothing: 1-999 µs must give "Z", or the text would not read back to
    # the instant it was made from and a bound label would change on its way round.
    ms = at.microsecond // 1000
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms:03d}Z" if ms else "Z")
