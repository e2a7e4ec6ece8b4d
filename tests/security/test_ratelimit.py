"""The per-caller token bucket, on a clock the test moves."""

from __future__ import annotations

import pytest

from shared.errors import RateLimitedError, error_body, http_status
from shared.ratelimit import DEFAULT_RATE_PER_SECOND, RateLimiter, rate_limit_config

pytestmark = pytest.mark.store_free  # opens no store: run with the first store only


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def refused(limiter: RateLimiter, caller: str) -> RateLimitedError:
    with pytest.raises(RateLimitedError) as caught:
        limiter.check(caller)
    return caught.value


def test_a_caller_gets_the_burst_then_429_with_whole_seconds_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=0.5, burst=3, clock=clock)
    for _ in range(3):
        limiter.check("sub:teacher-1")
    error = refused(limiter, "sub:teacher-1")
    assert http_status(error) == 429
    assert error.retry_after == 2  # one token every 2 s
    assert error_body(error)["error"] == {
        "code": "rate_limited",
        "message": "too many requests",
        "details": {"retry_after_seconds": 2},
    }


def test_waiting_retry_after_is_enough_and_a_refusal_costs_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=4, burst=1, clock=clock)
    limiter.check("a")
    wait = refused(limiter, "a").retry_after
    assert wait == 1  # 0.25 s rounds up to a whole second
    refused(limiter, "a")
    clock.now += wait
    limiter.check("a")
    # A second later the bucket holds at most its burst, not the four tokens of that second.
    clock.now += 1
    limiter.check("a")
    refused(limiter, "a")


def test_callers_have_buckets_of_their_own() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock)
    limiter.check("sub:teacher-1")
    refused(limiter, "sub:teacher-1")
    limiter.check("sub:teacher-2")
    limiter.check("address:127.0.0.1")


def test_callers_remembered_are_bounded_and_the_least_recent_is_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock, max_callers=2)
    limiter.check("a")
    limiter.check("b")
    refused(limiter, "a")  # a is now the most recently seen
    limiter.check("c")  # forgets b
    refused(limiter, "a")
    limiter.check("b")  # a fresh bucket


def test_config_has_a_generous_default_and_zero_switches_it_off() -> None:
    assert rate_limit_config({})["RATE_LIMIT_PER_SECOND"] == DEFAULT_RATE_PER_SECOND
    config = rate_limit_config(
        {"PUMPURS_RATE_LIMIT_PER_SECOND": "2.5", "PUMPURS_RATE_LIMIT_BURST": "4"}
    )
    assert config == {"RATE_LIMIT_PER_SECOND": 2.5, "RATE_LIMIT_BURST": 4}
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)
