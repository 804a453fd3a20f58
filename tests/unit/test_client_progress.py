"""LoadView: the rate and time left a person watching a load reads, from the numbers WatchModel streams."""

from __future__ import annotations

import io
from typing import Any

from model_manager.client.progress import LoadView

MIB = 1 << 20


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _model(done: int, total: int = 100 * MIB, files: tuple[int, int] = (0, 2), **kw: Any) -> dict[str, Any]:
    progress = {"bytes_done": done, "bytes_total": total, "files_done": files[0], "files_total": files[1]}
    return {"id": "org/m", "loading_status": "MODEL_LOADING_STATUS_LOADING", "loading_progress": progress, **kw}


def test_rate_and_time_left_come_from_the_bytes_between_events() -> None:
    out, clock = io.StringIO(), Clock()
    view = LoadView(out, clock)
    view.show(_model(0))
    clock.now += 5
    view.show(_model(50 * MIB, files=(1, 2)))
    lines = out.getvalue().splitlines()
    assert lines[0] == "org/m: loading 0 B of 100.0 MiB (0%), 0/2 files"
    assert lines[1] == "org/m: loading 50.0 MiB of 100.0 MiB (50%), 10.0 MiB/s, about 5 s left, 1/2 files"


def test_a_retry_that_starts_over_starts_the_rate_over() -> None:
    out, clock = io.StringIO(), Clock()
    view = LoadView(out, clock)
    for done in (0, 40 * MIB, 80 * MIB):
        view.show(_model(done))
        clock.now += 1
    view.show(_model(0))  # the next attempt, from nothing: no rate until it moves again
    clock.now += 2
    view.show(_model(10 * MIB))
    last = out.getvalue().splitlines()[-2:]
    assert last[0] == "org/m: loading 0 B of 100.0 MiB (0%), 0/2 files"
    assert "5.0 MiB/s, about 18 s left" in last[1]


def test_without_numbers_the_status_and_message_show_and_repeats_are_not_written() -> None:
    out = io.StringIO()
    view = LoadView(out)
    requested = {"id": "org/m", "loading_status": "MODEL_LOADING_STATUS_REQUESTED"}
    view.show(requested)
    view.show(requested)  # a heartbeat: nothing new to say
    view.show({**requested, "loading_status": "MODEL_LOADING_STATUS_LOADING", "loading_status_message": "listing"})
    assert out.getvalue() == "org/m: requested\norg/m: loading: listing\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_bar_is_redrawn_in_place_and_replaced_at_the_end(monkeypatch: Any) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out, clock = Terminal(), Clock()
    view = LoadView(out, clock)
    view.show({"id": "org/m", "loading_status": "MODEL_LOADING_STATUS_LOADING"})
    view.show(_model(25 * MIB))
    clock.now += 1
    view.show(_model(50 * MIB))
    view.finish("org-m: loaded")
    text = out.getvalue()
    # The status line stays; the bar is drawn under it, redrawn in place, then replaced by the closing line.
    assert text.startswith("\r\x1b[Korg/m: loading\n\r\x1b[K 25% ▕")
    bar, second = text.split("\r\x1b[K")[2:4]
    assert bar.endswith("▏ 25.0 MiB/100.0 MiB  0/2 files")
    assert second.endswith("▏ 50.0 MiB/100.0 MiB  25.0 MiB/s  2 s left  0/2 files")
    assert len(bar) == len(second.split("▏ ")[0]) + len("▏ 25.0 MiB/100.0 MiB  0/2 files")  # the bar keeps its width
    inside = bar[bar.index("▕") + 1 : bar.index("▏")]
    assert len(bar) <= 80 and inside.count("█") == int(len(inside) * 0.25)
    assert text.endswith("\r\x1b[Korg-m: loaded\n")


def test_a_requested_model_that_knows_its_size_shows_its_status_not_a_bar() -> None:
    out = io.StringIO()
    view = LoadView(out)
    view.show(_model(0, loading_status="MODEL_LOADING_STATUS_REQUESTED", loading_status_message="found at the source"))
    assert out.getvalue() == "org/m: requested: found at the source\n"
