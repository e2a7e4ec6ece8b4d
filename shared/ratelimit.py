"""Per-caller rate limit of one service process: a token bucket per caller, in memory.

A caller is the token's subject, or the client address when the request carries no valid
token. Each replica limits on its own, so a caller spread over N replicas may reach N times
the rate; the limit guards a process against one runaway client, not a cluster-wide quota.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import RateLimitedError

# Generous: a teacher's browser or a school's journal upload never comes near it, nor do
# the benches (a few hundred requests per second from one token).
DEFAULT_RATE_PER_SECOND = 1000.0
DEFAULT_BURST = 2000
# Callers remembered at once; the least recently seen is forgotten first (its bucket is
# usually full again by then).
MAX_CALLERS = 10_000


@dataclass
class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` per second; a request takes one."""

    rate: float
    burst: int
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = MAX_CALLERS,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate, self.burst = rate, burst
        self._clock = clock
        self._max_callers = max_callers
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, caller: str) -> None:
        """Take one request of the caller's allowance, or raise RateLimitedError."""
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, float(self.burst), now)
            self._buckets[caller] = bucket
            if len(self._buckets) > self._max_callers:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(caller)
        wait = bucket.take(now)
        if wait > 0:
            # Retry-After takes whole seconds; rounding up means the retry finds a token.
            raise RateLimitedError(max(1, math.ceil(wait)))


def rate_limit_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """The nameko config entries (PUMPURS_RATE_LIMIT_PER_SECOND=0 switches the limit off)."""
    return {
        "RATE_LIMIT_PER_SECOND": float(
            environ.get("PUMPURS_RATE_LIMIT_PER_SECOND", DEFAULT_RATE_PER_SECOND)
        ),
        "RATE_LIMIT_BURST": int(environ.get("PUMPURS_RATE_LIMIT_BURST", DEFAULT_BURST)),
    }


def limiter_for(container: Any) -> RateLimiter | None:
    """The container's limiter, made on first use from its config (None when switched off)."""
    if not hasattr(container, "pumpurs_limiter"):
        config = container.config
        rate = float(config.get("RATE_LIMIT_PER_SECOND", DEFAULT_RATE_PER_SECOND))
        burst = int(config.get("RATE_LIMIT_BURST", DEFAULT_BURST))
        container.pumpurs_limiter = RateLimiter(rate, burst) if rate > 0 else None
    limiter: RateLimiter | None = container.pumpurs_limiter
    return limiter
