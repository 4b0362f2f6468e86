"""A short soak in CI: concurrent streams and unary callers under tight queue bounds, exactly once."""
import importlib.util

from tests.conftest import ROOT


def test_short_soak_exactly_once(tiny_bundle):
    spec = importlib.util.spec_from_file_location("soak", ROOT / "bench" / "soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    res = soak.run(str(tiny_bundle), streams=4, prompts=2000, unary=2, duration=120,
                   server_args=["--max-queue-items", "32", "--max-batch-size", "16"])
    assert (res["lost"], res["duplicated"], res["misordered"]) == (0, 0, 0)
    assert res["decisions"] >= 2000
    assert res["server_exit_code"] == 0
    assert res["metrics"], "final metrics were scraped"
    assert res["unary_latency_ms"]["p99"] > 0
