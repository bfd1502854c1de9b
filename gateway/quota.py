"""Per-key request quotas over a sliding window, with an injectable clock.

Admission is check-and-reserve with no await in between, so on the single
event loop a burst of concurrent requests can never admit more than the limit.
The window is rebuilt from the database at start, so a restart resets nobody.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from .errors import QuotaExceeded


@dataclass(frozen=True, slots=True)
class Admission:
    """The quota state after a request was admitted, for the x-ratelimit-* headers."""

    limit: int
    remaining: int
    reset_s: int  # seconds until the oldest admission in the window expires

    def headers(self) -> dict[str, str]:
        """The OpenAI-style rate-limit headers."""
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": f"{self.reset_s}s",
        }


class SlidingWindowQuota:
    """At most `limit` admissions per key within any `window_s` seconds."""

    def __init__(self, *, window_s: float, clock: Callable[[], float] = time.time) -> None:
        self.window_s = window_s
        self.clock = clock
        self._admitted: dict[str, deque[float]] = {}
        self.rejections = 0

    def seed(self, timestamps: Mapping[str, Iterable[float]]) -> None:
        """Load past admissions (from the database) so a restart keeps everyone's count."""
        horizon = self.clock() - self.window_s
        for key, stamps in timestamps.items():
            window = self._admitted.setdefault(key, deque())
            window.extend(sorted(t for t in stamps if t > horizon))

    def admit(self, key: str, limit: int) -> Admission:
        """Reserve one request for `key`, or raise QuotaExceeded with Retry-After."""
        now = self.clock()
        window = self._admitted.get(key)
        if window is None:
            window = self._admitted[key] = deque()
        horizon = now - self.window_s
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= limit:
            self.rejections += 1
            retry_after = max(1, math.ceil(window[0] + self.window_s - now))
            state = Admission(limit=limit, remaining=0, reset_s=retry_after)
            raise QuotaExceeded(
                f"Quota exceeded: {limit} requests per {int(self.window_s)} s for this key. "
                f"Retry in {retry_after} s.",
                retry_after=retry_after,
                extra_headers=state.headers(),
            )
        window.append(now)
        reset = math.ceil(window[0] + self.window_s - now)
        return Admission(limit=limit, remaining=limit - len(window), reset_s=max(0, reset))

    def used(self, key: str) -> int:
        """Admissions of `key` within the current window."""
        window = self._admitted.get(key)
        if not window:
            return 0
        horizon = self.clock() - self.window_s
        return sum(1 for t in window if t > horizon)
