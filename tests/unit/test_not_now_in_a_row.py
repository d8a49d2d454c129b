"""README ("Bounds") and SECURITY.md say a partner's "not now" (429) is asked again no sooner
than 60 s "doubled with each 'not now' in a row". ``next_try`` doubles with every try the
row ever had, whatever the answer: a row whose earlier tries were lost to a partner that
was down a few seconds waits an hour at its first "not now" (review20, of outbox20)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gsomia.core.outbox import AT_BOUND_S, backoff, next_try

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_a_first_not_now_after_an_outage_waits_the_bound_not_an_hour() -> None:
    # Six tries lost to a partner down for about 11 s (0.1 + 0.2 + ... + 3.2 s of backoff),
    # then its first "not now", without a Retry-After: none of those six was a "not now".
    lost = 6
    assert sum(backoff(n) for n in range(lost)) < 12
    assert next_try(lost, NOW, 429) == NOW + timedelta(seconds=AT_BOUND_S)
