"""Library entry points: `hf.filter_dataset` on a datasets.Dataset and `ray.scan` on a local Ray."""
from __future__ import annotations

import os

import pytest

from reftguard.bundle import GuardBundle
from reftguard.clients.scan import ScanConfig, run_scan
from tests.scan_data import mixed_records, outputs, server, write  # noqa: F401 (server is a fixture)


@pytest.fixture(scope="module")
def records():
    return mixed_records(300)


@pytest.fixture(scope="module")
def scan_scores(records, tiny_bundle, tmp_path_factory):
    """Scores of `reftguard scan --bundle` on the same records: the reference for both entry points."""
    d = tmp_path_factory.mktemp("ref")
    run_scan(ScanConfig(input=str(write("jsonl", records, d)), out=str(d / "out"), bundle=str(tiny_bundle)))
    outs = outputs(d / "out", "jsonl")
    return {r["id"]: (r["reftguard_score"], r["reftguard_turn"], r["reftguard_verdict"]) for n in ("allowed", "flagged") for r in outs[n]}


def _check(allowed: list[dict], flagged: list[dict], ref: dict, bundle_id: str) -> None:
    assert sorted(r["id"] for r in allowed + flagged) == sorted(ref)
    assert allowed and flagged
    assert {r["reftguard_verdict"] for r in allowed} == {"allow"} and {r["reftguard_verdict"] for r in flagged} == {"flag"}
    for r in allowed + flagged:
        score, turn, verdict = ref[r["id"]]
        assert r["reftguard_score"] == pytest.approx(score, abs=1e-5)
        assert (r["reftguard_turn"], r["reftguard_bundle_id"]) == (turn, bundle_id)


def test_hf_filter_dataset_in_process_and_remote(records, scan_scores, tiny_bundle, server):
    import datasets

    from reftguard.clients.hf import filter_dataset

    ds = datasets.Dataset.from_list(records)
    bundle_id = GuardBundle.load(tiny_bundle).bundle_id
    for where in ({"bundle": str(tiny_bundle)}, {"target": server.target}):
        allowed, flagged = filter_dataset(ds, batch_size=64, **where)
        assert set(allowed.column_names) == set(ds.column_names) | {"reftguard_score", "reftguard_verdict", "reftguard_turn", "reftguard_bundle_id",
                                                                      "reftguard_role", "reftguard_reason"}
        _check(allowed.to_list(), flagged.to_list(), scan_scores, bundle_id)


def test_hf_filter_dataset_bad_rows_raise_or_are_flagged(tiny_bundle):
    import datasets

    from reftguard.clients.hf import filter_dataset

    ds = datasets.Dataset.from_list([{"id": "a", "text": "How do I bake bread?"}, {"id": "b", "text": ""}, {"id": "c", "text": "hi"}])
    with pytest.raises(ValueError, match="row 1 cannot be scored: empty text"):
        filter_dataset(ds, bundle=str(tiny_bundle))
    allowed, flagged = filter_dataset(ds, bundle=str(tiny_bundle), errors="flag", threshold=1.0)
    assert allowed["id"] == ["a", "c"]
    assert flagged.to_list()[0]["reftguard_verdict"] == "error" and flagged["reftguard_error"][0].startswith("empty text")
    with pytest.raises(ValueError, match="exactly one of"):
        filter_dataset(ds)


def test_ray_scan_local_cluster(records, scan_scores, tiny_bundle, server):
    import ray
    from reftguard.clients import ray as guard_ray

    # A raylet on a loaded 2-core machine can miss Ray's default startup window; give it longer and
    # one more try (a real startup failure still fails the test).
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
    for attempt in (1, 2):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    try:
        ds = ray.data.from_items(records, override_num_blocks=6)
        bundle_id = GuardBundle.load(tiny_bundle).bundle_id
        for where, pool in (({"bundle": str(tiny_bundle)}, {"concurrency": 1, "num_cpus": 1}),
                            ({"target": server.target}, {"concurrency": 2, "num_cpus": 0.5})):
            allowed, flagged = guard_ray.scan(ds, batch_size=64, **where, **pool)
            _check(allowed.take_all(), flagged.take_all(), scan_scores, bundle_id)
    finally:
        ray.shutdown()
