"""Loading progress: counts bytes and files and says where a load stands in words a person reads."""

from __future__ import annotations

import time
from collections.abc import Callable

from model_manager.units import human_bytes, human_seconds


class Progress:
    def __init__(self, total_bytes: int, total_files: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total_bytes = total_bytes
        self.total_files = total_files
        self.done_bytes = 0
        self.done_files = 0
        self._clock = clock
        self._start = clock()

    def add_bytes(self, n: int) -> None:
        self.done_bytes += n

    def file_done(self) -> None:
        self.done_files += 1

    def restart_file(self, transferred: int) -> None:
        """A file is being retried from its start: its bytes so far no longer count."""
        self.done_bytes -= transferred

    def message(self) -> str:
        elapsed = max(self._clock() - self._start, 1e-6)
        rate = self.done_bytes / elapsed
        text = (
            f"downloaded {human_bytes(self.done_bytes)} of {human_bytes(self.total_bytes)} "
            f"({self.done_files}/{self.total_files} files), {human_bytes(rate)}/s"
        )
        if rate > 0 and self.total_bytes > self.done_bytes:
            text += f", about {human_seconds((self.total_bytes - self.done_bytes) / rate)} left"
        return text
