"""README ("Bounds") and SECURITY.md say a partner's "not now" (429) is asked again no sooner
than 60 s "doubled with each 'not now' in a row". ``next_try`` doubles with every try the
row ever had, whatever the answer: a row whose earlier tries were lost to a partner that
was down a few seconds waits an hour at its first "not now" (review20, of outbox20)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from gsomia.core.outbox import (
    AT_BOUND_S,
    MAX_BACKOFF,
    NOT_NOW_CAP_S,
    backoff,
    next_try,
    not_now_after,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_a_first_not_now_after_an_outage_waits_the_bound_not_an_hour() -> None:
    # Six tries lost to a partner down for about 11 s (0.1 + 0.2 + ... + 3.2 s of backoff),
    # then its first "not now", without a Retry-After: none of those six was a "not now".
    lost = 6
    assert sum(backoff(n) for n in range(lost)) < 12
    assert next_try(lost, NOW, 429) == NOW + timedelta(seconds=AT_BOUND_S)


@given(st.lists(st.sampled_from([0, 429, 429, 503, 500, 408]), max_size=40))
def test_a_not_now_waits_the_bound_doubled_only_along_429s_in_a_row(
        outcomes: list[int]) -> None:
    """Whatever a row met before (the network, a 503, "not now"s), the wait after a 429 is
    at least the bound, at most the cap, and twice the one before only when that one was a
    429 too (or the cap)."""
    not_now, before = 0, None
    for attempts, status in enumerate(outcomes):
        wait = (next_try(attempts, NOW, status, not_now=not_now) - NOW).total_seconds()
        if status == 429:
            assert AT_BOUND_S <= wait <= NOT_NOW_CAP_S
            assert wait == (min(2 * before, NOT_NOW_CAP_S) if before is not None
                            else AT_BOUND_S)
            before = wait
        else:
            assert wait == backoff(attempts) <= MAX_BACKOFF
            before = None
        not_now = not_now_after(not_now, status)


@given(st.integers(min_value=-(10**6), max_value=10**30), st.integers(0, 10**6),
       st.sampled_from([0, 429, 503]))
def test_any_count_held_in_a_row_waits_within_the_bounds(not_now: int, attempts: int,
                                                         status: int) -> None:
    """Whatever the outbox holds (an operator's edit, a count far past any cap), a "not
    now" waits between the bound and the cap, and anything else no more than the backoff;
    the next count is never negative."""
    wait = (next_try(attempts, NOW, status, not_now=not_now) - NOW).total_seconds()
    if status == 429:
        assert AT_BOUND_S <= wait <= NOT_NOW_CAP_S
    else:
        assert wait <= MAX_BACKOFF
    assert not_now_after(not_now, status) >= 0
