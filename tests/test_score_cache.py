"""No work twice: repeated turns are scored once, and cached decisions are the uncached ones exactly."""
from __future__ import annotations

import pytest

from reftguard.clients import GuardClient
from reftguard.score_cache import ScoreCache
from tests.harness import run_server

SYSTEM = "You are a helpful assistant for a cooking website. Answer briefly and politely."


def test_the_cache_is_bounded_and_keyed_by_model_role_and_tokens():
    c = ScoreCache(2)
    k = ScoreCache.key
    assert len({k("m", "user", [1, 2]), k("m", "system", [1, 2]), k("m2", "user", [1, 2]), k("m", "user", [1, 2, 0])}) == 4
    c.put(k("m", "user", [1]), "a")
    c.put(k("m", "user", [2]), "b")
    assert c.get(k("m", "user", [1])) == "a"  # now the most recent
    c.put(k("m", "user", [3]), "c")  # evicts [2], the least recently used
    assert c.get(k("m", "user", [2])) is None and c.get(k("m", "user", [1])) == "a" and len(c) == 2
    assert (c.hits, c.misses) == (2, 1)
    off = ScoreCache(0)
    off.put(b"x", 1)
    assert len(off) == 0
    with pytest.raises(ValueError):
        ScoreCache(-1)


def _records(n: int, offset: int = 0) -> list[dict]:
    return [{"id": f"r{i}", "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"How long do I boil egg number {i + offset}?"},
                                         {"role": "assistant", "content": f"About {i % 5 + 6} minutes."}]} for i in range(n)]


def test_a_shared_system_prompt_is_scored_once_and_decisions_do_not_change(role_bundle):
    records = _records(20)
    with run_server(role_bundle, score_cache_entries=0) as rs, GuardClient(rs.target) as c:
        uncached = c.score(records, accept_review=True)
    with run_server(role_bundle) as rs, GuardClient(rs.target) as c:
        first = c.score(records, accept_review=True)
        scored = rs.value("reftguard_score_cache_rows_total", result="scored")
        reused = rs.value("reftguard_score_cache_rows_total", result="reused")
        batches, busy, tokens = (rs.value(m) for m in ("reftguard_batch_size_sum", "reftguard_engine_busy_seconds_total", "reftguard_engine_tokens_total"))
        assert busy > 0 and tokens >= scored  # every scored row ran at least one real token
        again = c.score(records, accept_review=True)
        assert rs.value("reftguard_batch_size_sum") == batches, "a repeated request runs no inference"
        assert (rs.value("reftguard_engine_busy_seconds_total"), rs.value("reftguard_engine_tokens_total")) == (busy, tokens)
        assert rs.value("reftguard_score_cache_rows_total", result="reused") == reused + 60
        mixed = c.score(records[:5] + _records(5, offset=100), accept_review=True)
    # 20 records x 3 turns: the system prompt once, 20 user turns, 5 distinct replies
    assert (scored, reused) == (1 + 20 + 5, 60 - 26)
    for got in (first, again, mixed[:5]):
        assert [(d.id, d.verdict, d.score, d.reason, d.role, d.turn) for d in got] == \
               [(d.id, d.verdict, d.score, d.reason, d.role, d.turn) for d in uncached[:len(got)]]
    assert [d.id for d in mixed] == [f"r{i}" for i in range(5)] * 2


def test_the_in_process_scan_scores_a_repeated_turn_once_with_the_same_outcomes(role_bundle):
    from reftguard.clients.scan.engines import LocalEngine
    from reftguard.clients.scan.rows import Row

    def outcomes(engine):
        rows = [Row(index=i, record=r, item=r) for i, r in enumerate(_records(12))]
        return [(r.index, o) for r, o in engine.decide(rows)]

    cached, plain = LocalEngine(role_bundle, batch_rows=4), LocalEngine(role_bundle, batch_rows=4, score_cache_entries=0)
    assert outcomes(cached) == outcomes(plain) and plain.scorer.cache is None
    # 3 groups of 4 records: the system prompt is scored in the first group only, then looked up twice; of the
    # replies (5 distinct, 4 different ones per group), groups 2 and 3 find 3 and 4 scored before
    cache = cached.scorer.cache
    assert cache.hits == 2 + 3 + 4 and len(cache) == 1 + 12 + 5
    assert outcomes(cached) == outcomes(plain) and cache.hits == 9 + 3 * (1 + 4 + 4)  # every distinct row of a group, again
