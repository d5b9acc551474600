"""When requests go out: retry backoff, the run-wide rate limit, and the adaptive poll schedule.

Kept apart from the HTTP code because each is a small piece of timing logic with its own tests,
and the poll schedule is what keeps requests (and client CPU) per prediction low.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; `Retry-After` wins when the host sends one."""

    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 300.0

    def delay(self, retry_number: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            wait = min(max(retry_after, 0.0), self.retry_after_max_s)
            # never earlier than asked; a little later, so clients told the same second spread out
            return wait + rng.uniform(0.0, min(1.0, 0.1 * wait + 0.05))
        cap = min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry_number - 1))
        return cap / 2 + rng.uniform(0.0, cap / 2)


class RateLimiter:
    """Spaces requests at most `rate` per second across every task of a run."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self._next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class PollScheduler:
    """When to poll: an online estimate of a quantile of the host's run time.

    Warm-up (no prediction of this run has finished yet): the first `scouts` predictions poll every
    `interval_s`; the others wait until a scout finishes (or, as a fallback, poll at growing
    intervals), so a first wave of hundreds does not poll the host every interval.

    Once the first prediction finishes its run time becomes the estimate, and each later one nudges
    it (a Robbins–Monro quantile estimator): up by `share × interval_s` when it was still running at
    the estimate, down by `(1 − share) × interval_s` when it was already done. The estimate settles
    where `share` of the predictions are done at their first poll, so a steady host costs about
    1 / share polls per prediction, and a host that speeds up or slows down is followed. Every
    prediction still polls every `interval_s` after its first poll.
    """

    def __init__(self, interval_s: float, share: float = 0.8, scouts: int = 4):
        self.interval_s = interval_s
        self.share = share
        self.estimate_s: float | None = None
        self._scouts_left = scouts
        self._learned = asyncio.Event()

    def first_delay(self) -> float:
        if self.estimate_s is None:
            return self.interval_s
        return max(self.interval_s, self.estimate_s)

    def role(self) -> str:
        """`planned` (the estimate is known), `scout` or `follower` (warm-up) for a new prediction."""
        if self.estimate_s is not None:
            return "planned"
        if self._scouts_left > 0:
            self._scouts_left -= 1
            return "scout"
        return "follower"

    async def sleep_until_poll(
        self, role: str, started: float, last_poll: float | None, polls: int, deadline: float
    ) -> None:
        """Sleep until the next poll of a fresh prediction (monotonic times)."""
        if role == "follower" and self.estimate_s is None:
            fallback = (last_poll or started) + self.interval_s * min(8, 2 ** (polls + 1))
            try:
                await asyncio.wait_for(
                    self._learned.wait(), max(0.0, min(fallback, deadline) - time.monotonic())
                )
            except TimeoutError:
                return
        if last_poll is None:
            wake = started + self.first_delay()
        else:
            wake = last_poll + self.interval_s
        if role == "follower" and last_poll is not None:
            wake = max(wake, started + self.first_delay())
        wait = min(wake, deadline) - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    def observe(self, running_until_s: float | None, done_by_s: float) -> None:
        """A prediction was last seen running at `running_until_s` (None: never) and seen done at
        `done_by_s`, both in seconds since its create answer."""
        if self.estimate_s is None:
            self.estimate_s = done_by_s
            self._learned.set()
            return
        if done_by_s <= self.estimate_s:
            finished_by_estimate = True
        elif running_until_s is None:
            return  # done at a first poll later than the estimate: says nothing about it
        elif running_until_s >= self.estimate_s:
            finished_by_estimate = False
        else:  # the bracket straddles the estimate: go by its middle
            finished_by_estimate = (running_until_s + done_by_s) / 2 <= self.estimate_s
        if finished_by_estimate:
            self.estimate_s = max(0.0, self.estimate_s - (1.0 - self.share) * self.interval_s)
        else:
            self.estimate_s += self.share * self.interval_s
