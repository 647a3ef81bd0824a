"""Sliding-window limits: N events per key in a window, then 429 with Retry-After.

Failed logins use one per app (built in `create_app`), keyed by client address and shared by
the API's bearer check and the console's login form, so guessing through either path counts
against the same address. The chat uses one keyed by token.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

MAX_ADDRESSES = 10_000  # keys remembered; the least recently used are forgotten first


class SlidingLimit:
    """At most `limit` events per key in `window` seconds; 0 = off."""

    def __init__(
        self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )

    def _recent(self, address: str) -> collections.deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        cutoff = self.clock() - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def retry_after(self, address: str) -> int:
        """Seconds until `address` may act again; 0 when it may now."""
        if not self.limit:
            return 0
        times = self._recent(address)
        if times is None or len(times) < self.limit:
            return 0
        return max(1, math.ceil(times[-self.limit] + self.window - self.clock()))

    def record(self, address: str) -> None:
        if not self.limit:
            return
        times = self._recent(address) or collections.deque(maxlen=self.limit)
        times.append(self.clock())
        self._failures[address] = times
        self._failures.move_to_end(address)
        while len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)
