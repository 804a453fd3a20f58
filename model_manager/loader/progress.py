"""Loading progress: counts bytes and files and says where a load stands in words a person reads."""

from __future__ import annotations

import time
from collections.abc import Callable

from model_manager.core.units import human_bytes, human_seconds


class Progress:
    def __init__(self, total_bytes: int, total_files: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total_bytes = total_bytes
        self.total_files = total_files
        self.done_bytes = 0  # stored, including what earlier attempts had stored
        self.resumed_bytes = 0  # of those, found stored (not transferred by this attempt)
        self.done_files = 0
        # Where the load writes and what it writes (base models with a known revision): every report says so.
        self.content_path = ""
        self.content_key = ""
        self._clock = clock
        self._start = clock()

    def add_bytes(self, n: int) -> None:
        self.done_bytes += n

    def file_done(self) -> None:
        self.done_files += 1

    def add_resumed(self, n: int) -> None:
        """`n` bytes found already stored by an earlier attempt."""
        self.done_bytes += n
        self.resumed_bytes += n

    def restart_file(self, transferred: int, resumed: int = 0) -> None:
        """A file is being tried again: what this try counted for it no longer does."""
        self.done_bytes -= transferred + resumed
        self.resumed_bytes -= resumed

    def message(self) -> str:
        elapsed = max(self._clock() - self._start, 1e-6)
        rate = (self.done_bytes - self.resumed_bytes) / elapsed
        resumed = f"; {human_bytes(self.resumed_bytes)} resumed" if self.resumed_bytes else ""
        text = (
            f"downloaded {human_bytes(self.done_bytes)} of {human_bytes(self.total_bytes)} "
            f"({self.done_files}/{self.total_files} files{resumed}), {human_bytes(rate)}/s"
        )
        if rate > 0 and self.total_bytes > self.done_bytes:
            text += f", about {human_seconds((self.total_bytes - self.done_bytes) / rate)} left"
        return text
