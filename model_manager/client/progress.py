"""What a person watching a load sees: a bar redrawn in place on a terminal, a line per change otherwise.

Fed the model documents WatchModel streams. The rate and time left come from the byte counts of the last events
(a sliding window), so they follow a load that speeds up or stalls, and start over when a retry starts over.
"""

from __future__ import annotations

import shutil
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from model_manager.core.units import human_bytes, human_seconds

WINDOW_SECONDS = 20.0  # the rate is measured over the events of the last this many seconds
LOADING = "MODEL_LOADING_STATUS_LOADING"
LOADED = "MODEL_LOADING_STATUS_SUCCEEDED"
FAILED = "MODEL_LOADING_STATUS_FAILED"


def short(enum_name: str, prefix: str) -> str:
    """ "MODEL_LOADING_STATUS_SUCCEEDED" -> "succeeded"."""
    return enum_name.removeprefix(prefix).lower().replace("_", "-")


def status_text(model: dict[str, Any]) -> str:
    """The status as `llma models list` shows it: the failure reason when failed, the message while loading."""
    status = short(model.get("loading_status", ""), "MODEL_LOADING_STATUS_")
    if model.get("loading_status") == FAILED and model.get("loading_failure_reason"):
        return f"{status}: {model['loading_failure_reason']}"
    if model.get("loading_status_message") and model.get("loading_status") != LOADED:
        return f"{status}: {model['loading_status_message']}"
    return status


def write_columns(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], out: TextIO) -> None:
    """A table as `llma` prints them: columns padded to their widest cell, the last one left as it is."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for r in [header, *rows]:
        out.write("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] + "\n")


class LoadView:
    def __init__(self, out: TextIO, clock: Callable[[], float] = time.monotonic, verb: str = "loading") -> None:
        self.out = out
        self.verb = verb  # what the bar's line says is happening (a push shows "pushing")
        self.tty = out.isatty()
        self.clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._last = ""
        self._bar_shown = False  # on a terminal: the line being redrawn is the bar (not a status line)
        self._start = clock()

    def show(self, model: dict[str, Any]) -> None:
        """One event of a load in progress."""
        progress = model.get("loading_progress") or {}
        done, total = int(progress.get("bytes_done", 0)), int(progress.get("bytes_total", 0))
        bar = bool(total) and model.get("loading_status") == LOADING  # a requested model may know its size already
        if bar:
            line = self._bar(done, total, progress) if self.tty else self._words(model["id"], done, total, progress)
        else:
            self._samples.clear()
            line = f"{model['id']}: {status_text(model)}"
        if line == self._last:
            return
        if not self.tty:
            self.out.write(line + "\n")
        else:
            # Like `ollama pull`: the status line ("org/name: loading") stays above the bar that is redrawn under it.
            if self._last and bar != self._bar_shown:
                self.out.write("\n")
            self.out.write(f"\r\033[K{line}")
            self._bar_shown = bar
        self.out.flush()
        self._last = line

    def finish(self, text: str | None) -> None:
        """The watch ended: `text` replaces the bar on a terminal; without one, the bar stays as it was and what
        comes next (an error on stderr) starts on a line of its own."""
        if self.tty and self._last:
            # The bar gives way to the closing line; a status line stays and the closing line goes under it.
            self.out.write("\r\033[K" if text is not None and self._bar_shown else "\n")
        if text is not None:
            self.out.write(text + "\n")
        self.out.flush()
        self._last = ""
        self._bar_shown = False

    def note(self, text: str) -> None:
        """A line about the watch itself (it was lost and is picked up again), between the bar's redraws."""
        self.finish(text)

    def elapsed(self) -> float:
        return self.clock() - self._start

    def _rate(self, done: int) -> float | None:
        now = self.clock()
        if self._samples and done < self._samples[-1][1]:
            self._samples.clear()  # a retry started from nothing
        if not self._samples or self._samples[-1][1] != done:
            self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > WINDOW_SECONDS:
            self._samples.popleft()
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 and b1 > b0 else None

    def _numbers(self, done: int, total: int, progress: dict[str, Any]) -> tuple[str, str, str]:
        rate = self._rate(done)
        speed = f"{human_bytes(rate)}/s" if rate else ""
        left = f"{human_seconds((total - done) / rate)} left" if rate and total > done else ""
        files = (
            f"{progress.get('files_done', 0)}/{progress['files_total']} files" if progress.get("files_total") else ""
        )
        return speed, left, files

    def _bar(self, done: int, total: int, progress: dict[str, Any]) -> str:
        fraction = min(1.0, done / total)
        tail = "  ".join(
            x for x in (f"{human_bytes(done)}/{human_bytes(total)}", *self._numbers(done, total, progress)) if x
        )
        # The bar keeps its width from frame to frame: room is kept for the longest numbers this load can show.
        files = progress.get("files_total", 0)
        widest = f"{human_bytes(total)}/{human_bytes(total)}  1023.9 MiB/s  59 min left  {files}/{files} files"
        head = f"{fraction:4.0%} "
        width = shutil.get_terminal_size((100, 24)).columns
        room = min(width - len(head) - len(widest) - 4, 50)
        if room < 10:  # a narrow terminal: the numbers matter more than the bar
            return f"{head} {tail}"[: max(width - 1, 20)]
        filled = int(room * fraction)
        return f"{head}▕{'█' * filled}{' ' * (room - filled)}▏ {tail}"

    def _words(self, model_id: str, done: int, total: int, progress: dict[str, Any]) -> str:
        speed, left, files = self._numbers(done, total, progress)
        parts = [
            f"{human_bytes(done)} of {human_bytes(total)} ({done / total:.0%})",
            speed,
            f"about {left}" if left else "",
            files,
        ]
        return f"{model_id}: {self.verb} " + ", ".join(p for p in parts if p)
