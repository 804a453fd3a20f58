"""The memory budget of uploads: a fixed number of part buffers shared by every upload of one store.

A slot is taken in one place (`PartBudget.take`) and given back in one place (`Slot.release`, also run on leaving
a slot's `with` block). A part's slot travels with it from the reader to the task that sends it
(`release_when_done`), so the block that read the part does not give it back while the part is still being sent,
and a send task cancelled before it started still gives it back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType


class Slot:
    def __init__(self, release: Callable[[], None] | None) -> None:
        self._release = release

    def hand_over(self) -> Slot:
        """A new holder of this slot; this one no longer releases it."""
        release, self._release = self._release, None
        return Slot(release)

    def release(self) -> None:
        """Give the slot back (once; later calls do nothing)."""
        release, self._release = self._release, None
        if release is not None:
            release()

    def release_when_done(self, task: asyncio.Task[object]) -> None:
        """Hand the slot to `task`: given back when it ends, even if it is cancelled before it ever runs."""
        held = self.hand_over()
        task.add_done_callback(lambda _: held.release())

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


class PartBudget:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.in_use = 0
        self._free = asyncio.Semaphore(slots)

    async def take(self) -> Slot:
        await self._free.acquire()
        self.in_use += 1
        return Slot(self._give_back)

    def _give_back(self) -> None:
        self.in_use -= 1
        self._free.release()
