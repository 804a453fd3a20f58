"""The response cache's own rules: an answer serves only the version it was built under, within a budget, and
callers that miss together share one build."""

from __future__ import annotations

import asyncio

from model_manager.service.cache import ResponseCache


def test_an_answer_serves_only_its_own_version() -> None:
    cache = ResponseCache()
    cache.put("k", (5,), b"v5")
    assert cache.get("k", (5,)) == b"v5"
    assert cache.get("k", (6,)) is None  # that model was written: its answer is built again
    cache.put("k", (6,), b"v6")
    assert cache.get("k", (6,)) == b"v6" and cache.get("k", (5,)) is None
    cache.put("other", (5,), b"o")  # other keys keep their own versions
    assert cache.get("k", (6,)) == b"v6" and cache.get("other", (5,)) == b"o"


def test_least_recently_used_answers_go_first_within_the_budget() -> None:
    cache = ResponseCache(max_bytes=400)
    for key in "abcd":
        cache.put(key, 1, b"x" * 100)
    assert cache.get("a", 1) == b"x" * 100  # "a" is now the most recently used
    cache.put("e", 1, b"y" * 100)
    assert cache.get("b", 1) is None and cache.get("a", 1) is not None and cache.get("e", 1) is not None
    cache.put("huge", 1, b"z" * 101)  # more than a quarter of the budget: not kept at all
    assert cache.get("huge", 1) is None and cache.get("e", 1) is not None


async def test_callers_that_miss_together_share_one_build() -> None:
    cache = ResponseCache()
    builds = 0
    gate = asyncio.Event()

    async def build() -> bytes:
        nonlocal builds
        builds += 1
        await gate.wait()
        return b"answer"

    callers = [asyncio.create_task(cache.answer("k", 1, build)) for _ in range(50)]
    await asyncio.sleep(0.01)
    callers[0].cancel()  # one caller gives up: the others still get the answer
    gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert builds == 1
    assert isinstance(results[0], asyncio.CancelledError) and results[1:] == [b"answer"] * 49
    assert await cache.answer("k", 1, build) == b"answer" and builds == 1  # kept
    assert await cache.answer("k", 2, build) == b"answer" and builds == 2  # another version: built again
