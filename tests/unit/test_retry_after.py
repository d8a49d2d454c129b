"""A partner's "not now": its Retry-After honoured, bounded, and a bound that never frees
asked less and less often (pure: gsomia.core.outbox)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from gsomia.core.outbox import (
    AT_BOUND_S,
    MAX_BACKOFF,
    NOT_NOW_CAP_S,
    backoff,
    next_try,
    retry_after,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_both_forms_of_retry_after_are_read() -> None:
    later = NOW + timedelta(seconds=120)
    assert retry_after("120", NOW) == 120
    assert retry_after(" 120 ", NOW) == 120
    assert retry_after("0" * 40 + "120", NOW) == 120
    assert retry_after("0", NOW) == 0
    assert retry_after(format_datetime(later, usegmt=True), NOW) == 120  # IMF-fixdate
    assert retry_after(later.strftime("%A, %d-%b-%y %H:%M:%S GMT"), NOW) == 120  # RFC 850
    assert retry_after(later.strftime("%a %b %d %H:%M:%S %Y"), NOW) == 120  # asctime
    # A date gone by: now; none, or not one of the forms: the sender's own backoff.
    assert retry_after(format_datetime(NOW - timedelta(days=1), usegmt=True), NOW) == 0
    assert retry_after(None, NOW) is None
    for junk in ("", "soon", "-5", "1.5", "١٢٠", "12O"):
        assert retry_after(junk, NOW) is None, junk


def test_a_partner_that_asks_for_a_year_parks_nothing_longer_than_the_cap() -> None:
    year = NOW + timedelta(days=365)
    assert retry_after("31536000", NOW) == NOT_NOW_CAP_S
    assert retry_after("9" * 5000, NOW) == NOT_NOW_CAP_S  # more digits than int() parses
    assert retry_after(format_datetime(year, usegmt=True), NOW) == NOT_NOW_CAP_S
    assert next_try(0, NOW, 429, retry_after("31536000", NOW)) == \
        NOW + timedelta(seconds=NOT_NOW_CAP_S)


@given(st.one_of(st.text(max_size=60), st.from_regex(r"\A[0-9]{1,40}\Z"),
                 st.datetimes(timezones=st.just(UTC)).map(
                     lambda d: format_datetime(d, usegmt=True)),
                 st.none(), st.integers(), st.binary(max_size=8)))
def test_any_retry_after_is_a_delay_within_bounds_never_an_exception(value: object) -> None:
    seconds = retry_after(value, NOW)
    assert seconds is None or 0 <= seconds <= NOT_NOW_CAP_S
    for status in (0, 429, 503):
        for attempts in (0, 3, 100):
            wait = (next_try(attempts, NOW, status, seconds, not_now=attempts)
                    - NOW).total_seconds()
            # Never sooner than the sender's own backoff, never later than the cap.
            assert backoff(attempts) <= wait <= NOT_NOW_CAP_S
            if seconds is not None:
                assert wait >= seconds


def test_the_partners_retry_after_is_honoured_above_the_senders_own_wait() -> None:
    # A partner at its bound that says 120 is asked again after 120 s, not after 60.
    assert next_try(0, NOW, 429, 120.0) == NOW + timedelta(seconds=120)
    # One that says less than the sender's own backoff waits the backoff.
    assert next_try(0, NOW, 429, 1.0) == NOW + timedelta(seconds=AT_BOUND_S)
    assert next_try(10, NOW, 503, 0.0) == NOW + timedelta(seconds=MAX_BACKOFF)
    # A 503 that says when: then, not within seconds.
    assert next_try(0, NOW, 503, 30.0) == NOW + timedelta(seconds=30)


def test_a_bound_that_never_frees_is_asked_less_and_less_often() -> None:
    """A partner whose bound never frees (its revocations of consents it does not hold
    count for good) was asked every 60 s for ever: now doubling, up to the cap."""
    waits = [(next_try(n, NOW, 429, not_now=n) - NOW).total_seconds() for n in range(12)]
    assert waits[0] == AT_BOUND_S
    assert waits[1] == 2 * AT_BOUND_S
    assert waits == sorted(waits)
    assert waits[-1] == NOT_NOW_CAP_S
    # A day of "not now" costs the partner about a try an hour, not 1,440.
    assert sum(1 for _ in _tries_within(timedelta(days=1))) < 40


def _tries_within(span: timedelta) -> list[datetime]:
    at, tries = NOW, []
    while at < NOW + span:
        tries.append(at)
        at = next_try(len(tries) - 1, at, 429, not_now=len(tries) - 1)
    return tries


@given(st.integers(min_value=0, max_value=10**30), st.integers(min_value=0, max_value=5))
def test_delay_seconds_are_read_as_the_number_they_are_up_to_the_cap(seconds: int,
                                                                      zeros: int) -> None:
    assert retry_after("0" * zeros + str(seconds), NOW) == min(seconds, NOT_NOW_CAP_S)
