"""The guessing defences' invariants, with a clock the test moves (the real server's
behaviour is in tests/e2e/test_auth_defences.py): no source gets more checked guesses than
its bucket allows; a source that has not failed is never refused, whatever others do to the
account (no lock-out); the audit loses no failure and writes a bounded number of events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.service.handlers import FailedAuthentications
from gsomia.shell.guard import FailureAudit, Throttle

ATTEMPT = st.tuples(st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
                    st.sampled_from(["mika", "ren", None]),
                    st.floats(min_value=0, max_value=2))   # seconds since the previous one


@settings(max_examples=200)
@given(st.lists(ATTEMPT, max_size=300))
def test_checked_guesses_are_bounded_and_a_clean_source_is_never_refused(
        attempts: Sequence[tuple[str, str | None, float]]) -> None:
    now = [0.0]
    throttle = Throttle(clock=lambda: now[0])
    checked: dict[str, int] = {}
    for source, account, gap in attempts:
        now[0] += gap
        if throttle.retry_after(source, account) == 0:
            checked[source] = checked.get(source, 0) + 1
            throttle.failed(source, account)
        # The owner, from an address that never failed, may always try.
        assert throttle.retry_after("192.0.2.99", account) == 0
    for n in checked.values():
        assert n <= 10 + 0.5 * now[0] + 1


def test_an_account_under_attack_from_many_addresses_is_slowed_for_them() -> None:
    now = [0.0]
    throttle = Throttle(clock=lambda: now[0])
    for i in range(10):   # ten addresses, one guess each, after one failure of their own
        throttle.failed(f"10.0.1.{i}", None)
        throttle.failed(f"10.0.1.{i}", "mika")
    assert throttle.retry_after("10.0.1.99", "mika") == 0       # a clean address: yes
    throttle.failed("10.0.1.50", None)
    assert throttle.retry_after("10.0.1.50", "mika") > 0        # a failing one: wait
    now[0] += 30
    assert throttle.retry_after("10.0.1.50", "mika") == 0       # and the wait ends


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 80), st.booleans()), max_size=400))
def test_the_audit_loses_no_failure_and_writes_a_bounded_number_of_events(
        failures: Sequence[tuple[int, bool]]) -> None:
    written: list[FailedAuthentications] = []
    audit = FailureAudit(written.extend, window_s=3600, max_keys=50,
                         clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    for source, throttled in failures:
        audit.record(f"10.0.2.{source}", "mika", "taxii", throttled=throttled)
    audit.close()
    assert sum(w.failures for w in written) == sum(1 for _, t in failures if not t)
    assert sum(w.throttled for w in written) == sum(1 for _, t in failures if t)
    assert len(written) <= 2 * 51   # first failure and final count of 50 keys + the rest
