"""The response cache's own rules: answers live for one catalogue version, never an older one, within a budget."""

from __future__ import annotations

from model_manager.service.cache import ResponseCache


def test_an_answer_lives_until_the_version_moves() -> None:
    cache = ResponseCache()
    cache.put(5, "k", b"v5")
    assert cache.get(5, "k") == b"v5"
    assert cache.get(6, "k") is None  # a write happened: everything older is gone
    cache.put(6, "k", b"v6")
    assert cache.get(6, "k") == b"v6"


def test_a_request_holding_an_older_version_neither_reads_nor_writes() -> None:
    cache = ResponseCache()
    cache.put(7, "k", b"new")
    cache.put(6, "k", b"old")  # built by a request that read the version before the last write
    assert cache.get(6, "k") is None
    assert cache.get(7, "k") == b"new"


def test_least_recently_used_answers_go_first_within_the_budget() -> None:
    cache = ResponseCache(max_bytes=400)
    for key in "abcd":
        cache.put(1, key, b"x" * 100)
    assert cache.get(1, "a") == b"x" * 100  # "a" is now the most recently used
    cache.put(1, "e", b"y" * 100)
    assert cache.get(1, "b") is None and cache.get(1, "a") is not None and cache.get(1, "e") is not None
    cache.put(1, "huge", b"z" * 101)  # more than a quarter of the budget: not kept at all
    assert cache.get(1, "huge") is None and cache.get(1, "e") is not None
