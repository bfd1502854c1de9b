"""The sliding-window quota against a reference model, with an injected clock (no sleeping)."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gateway.errors import QuotaExceeded
from gateway.quota import SlidingWindowQuota


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_window_slides():
    clock = Clock()
    quota = SlidingWindowQuota(window_s=3600, clock=clock)
    for _ in range(3):
        quota.admit("k", 3)
    with pytest.raises(QuotaExceeded) as refused:
        quota.admit("k", 3)
    assert refused.value.retry_after == 3600
    clock.now += 1800
    with pytest.raises(QuotaExceeded) as refused:
        quota.admit("k", 3)
    assert refused.value.retry_after == 1800
    clock.now += 1800.001
    admission = quota.admit("k", 3)
    assert admission.remaining == 2 and quota.rejections == 2  # all three first admissions expired


def test_seed_restores_a_window_and_forgets_expired_admissions():
    clock = Clock()
    quota = SlidingWindowQuota(window_s=60, clock=clock)
    quota.seed({"k": [clock.now - 120, clock.now - 30, clock.now - 10]})
    assert quota.used("k") == 2
    quota.admit("k", 3)
    with pytest.raises(QuotaExceeded):
        quota.admit("k", 3)


class QuotaMachine(RuleBasedStateMachine):
    """Any sequence of sends, clock moves and restarts never admits more than the limit in any window."""

    LIMIT, WINDOW = 5, 100.0

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.quota = SlidingWindowQuota(window_s=self.WINDOW, clock=self.clock)
        self.admitted: list[float] = []  # the reference: every admission ever, as the database keeps them

    @rule(seconds=st.floats(min_value=0, max_value=60, allow_nan=False))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def send(self) -> None:
        in_window = [t for t in self.admitted if t > self.clock.now - self.WINDOW]
        try:
            self.quota.admit("k", self.LIMIT)
        except QuotaExceeded:
            assert len(in_window) >= self.LIMIT  # refused only when the reference is full
            return
        assert len(in_window) < self.LIMIT
        self.admitted.append(self.clock.now)

    @rule()
    def restart(self) -> None:
        self.quota = SlidingWindowQuota(window_s=self.WINDOW, clock=self.clock)
        self.quota.seed({"k": list(self.admitted)})

    @invariant()
    def never_more_than_the_limit_in_any_window(self) -> None:
        for end in self.admitted:
            assert sum(1 for t in self.admitted if end - self.WINDOW < t <= end) <= self.LIMIT


QuotaMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestQuotaMachine = QuotaMachine.TestCase
