"""A short soak in CI: concurrent streams and unary callers under tight queue bounds, exactly once,
with the halfway reload and a shadow bundle; and a caller whose retries run out is a result, not a crash."""
import asyncio
import shutil

from bench import soak as _soak


def load_soak():
    return _soak


def test_short_soak_exactly_once_through_a_reload_with_a_shadow(tiny_bundle, tmp_path):
    soak = load_soak()
    shadow = tmp_path / "shadow"
    shutil.copytree(tiny_bundle, shadow)
    res = soak.run(str(tiny_bundle), streams=4, prompts=2000, unary=2, duration=120, shadow_bundle=str(shadow), sample_s=0.5,
                   server_args=["--max-queue-items", "32", "--max-batch-size", "16"])
    assert (res["lost"], res["duplicated"], res["misordered"]) == (0, 0, 0)
    assert res["stream_decisions"] == 2000 and res["decisions"] >= 2000
    assert res["server_exit_code"] == 0
    assert res["metrics"], "final metrics were scraped"
    assert res["reloads_ok"] == 1 and {"unary_start", "reload", "streams_done"} <= set(res["events"])
    assert res["unary_latency_ms"]["n"] > 0 and res["unary_latency_ms"]["p99"] > 0
    assert res["unary_failed"] == 0, res["failure_codes"]
    assert res["timeline"] and all("rss_mb" in p and "queue_depth" in p for p in res["timeline"][1:])
    # the shadow is the same model: it may be dropped under load, but it never disagrees
    assert sum(v for k, v in res["metrics"].items() if k.startswith("reftguard_shadow_disagreements_total")) == 0


def test_a_caller_whose_retries_run_out_is_counted_not_fatal():
    soak = load_soak()
    s = soak.Soak("127.0.0.1:1", streams=2, prompts=20, unary=1, duration=30, texts=["hello"], max_retries=0)
    s.unary_go.set()  # unary callers start at once
    out = asyncio.run(s.run())  # nothing listens on port 1: every call fails
    assert out["stream_failed"] == 2 and out["lost"] == 20
    assert sum(out["failure_codes"].values()) == out["stream_failed"] + out["unary_failed"]
