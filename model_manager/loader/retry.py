"""Retry policy: a small pure object that decides; `run_with_retries` only applies the decision."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from model_manager.loader.errors import TransientError, classify

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4  # tries in all, the first included
    base_delay: float = 0.5
    max_delay: float = 10.0
    jitter: float = 0.2

    def delay(self, attempt: int, error: BaseException, rand: float | None = None) -> float | None:
        """Seconds to wait before try `attempt + 1` after `error` ended try `attempt`; None means give up."""
        if not isinstance(error, TransientError) or attempt >= self.max_attempts:
            return None
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        r = random.random() if rand is None else rand
        return float(backoff * (1 - self.jitter + 2 * self.jitter * r))


async def run_with_retries(
    policy: RetryPolicy,
    what: str,
    attempt: Callable[[], Awaitable[T]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `attempt` until it succeeds or the policy gives up; the final error names `what`.

    The one retry loop of the loader: source listings and file transfers both go through it.
    """
    tries = 0
    while True:
        tries += 1
        try:
            return await attempt()
        except Exception as e:  # sorted into retry or fail right below
            err = classify(e)
            delay = policy.delay(tries, err)
            if delay is None:
                reason = str(err) if what in str(err) else f"{what}: {err}"
                raise type(err)(reason) from e
            log.warning("%s failed (try %d): %s; retrying in %.1fs", what, tries, err, delay)
            await sleep(delay)
