"""Retry policy: a small pure object that decides; the transfer loop only applies the decision."""

from __future__ import annotations

import random
from dataclasses import dataclass

from model_manager.loader.errors import TransientError


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
