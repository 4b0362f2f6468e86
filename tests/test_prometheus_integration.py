"""A real Prometheus scraping a real `reftguard serve` (tiny bundle), both on loopback: the recording
rules must reproduce the flag, false-positive and miss rates of traffic whose decisions the test
knows, and the alerts must fire when they should.

The first test loads deploy/prometheus/rules unchanged. The spike test cannot wait an hour for a
baseline, so it loads the same rule files with every range and `for` duration divided by 30
(5m -> 10s, 1h -> 120s, for 2m -> 4s); the expressions are otherwise the shipped ones.
"""
from __future__ import annotations

import json
import math
import random
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml

from reftguard.clients import GuardClient
from reftguard.data import packaged
from reftguard.v1 import guard_pb2 as pb
from tests.deploy_support import RULE_FILES, GuardServer, Prometheus, settle, wait_for

CLASSES = {("benign", "allow"): "TN", ("benign", "flag"): "FP", ("harmful", "flag"): "TP", ("harmful", "allow"): "FN"}


@pytest.fixture(scope="module")
def low_fpr_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """The tiny bundle recalibrated to a 5% FPR on the dev set. At its 90%-recall calibration the tiny
    model's expected FPR is about 0.8, and an FP budget of 2x that can never be exceeded."""
    from reftguard.calibration import CalibrateConfig, calibrate

    out = tmp_path_factory.mktemp("low-fpr") / "bundle"
    shutil.copytree(tiny_bundle, out)
    for p in [out, *out.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    calibrate(CalibrateConfig(bundle=str(out), data=[str(packaged("guard-dev.jsonl"))], target_fpr=0.05))
    return out


@pytest.fixture(scope="module")
def guard(low_fpr_bundle, tmp_path_factory):
    server = GuardServer.for_bundle(low_fpr_bundle, tmp_path_factory.mktemp("guard") / "serve.log")
    try:
        yield server.start()
    finally:
        server.close()


def verdict(d: pb.Decision) -> str:
    return {pb.ALLOW: "allow", pb.FLAG: "flag"}[d.verdict]


@pytest.fixture(scope="module")
def exemplars(guard) -> dict[str, str]:
    """One text per confusion class (TN, FP, TP, FN) for this bundle, found by scoring the packaged
    dev set without labels (unlabeled traffic leaves the labeled/feedback counters alone)."""
    rows = [json.loads(l) for l in packaged("guard-dev.jsonl").read_text().splitlines()]
    found: dict[str, str] = {}
    with GuardClient(guard.target) as client:
        for i in range(0, len(rows), 128):
            chunk = rows[i:i + 128]
            decisions = client.score([{"id": r["id"], "text": r["text"]} for r in chunk], source="scan")
            for r, d in zip(chunk, decisions):
                found.setdefault(CLASSES[(r["label"], verdict(d))], r["text"])
    assert {"TN", "FP", "TP"} <= set(found), f"the tiny bundle should make every kind of decision on the dev set: {sorted(found)}"
    return found


def send(client: GuardClient, texts_by_class: list[tuple[str, str]], source: str, batch: int = 16) -> dict[str, int]:
    """Score labeled items; count the decisions by class as the server returned them."""
    counts = {c: 0 for c in CLASSES.values()}
    items = [{"id": f"{source}-{i}", "text": text, "label": "benign" if cls in ("TN", "FP") else "harmful"}
             for i, (cls, text) in enumerate(texts_by_class)]
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        for item, d in zip(chunk, client.score(chunk, source=source)):
            counts[CLASSES[(item["label"], verdict(d))]] += 1
    return counts


def server_total(guard: GuardServer, family: str, **labels: str) -> float:
    """Sum of a counter family's samples on the server's /metrics matching `labels`."""
    total = 0.0
    for m in re.finditer(rf"^{family}\{{([^}}]*)\}} (\S+)$", guard.metrics(), re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def wait_scraped(prom: Prometheus, guard: GuardServer, timeout: float = 30.0) -> None:
    """Until Prometheus holds the server's current labeled and ingest-decision totals."""
    want = {
        "sum(reftguard_labeled_total)": server_total(guard, "reftguard_labeled_total"),
        'sum(reftguard_decisions_total{source="ingest"})': server_total(guard, "reftguard_decisions_total", source="ingest"),
    }
    wait_for(lambda: all(prom.scalar(q) == v for q, v in want.items()), timeout, what=f"Prometheus to scrape {want}")


def test_recording_rules_match_sent_traffic(guard, exemplars, tmp_path):
    from reftguard.bundle import GuardBundle

    prom = Prometheus(tmp_path, f"127.0.0.1:{guard.metrics_port}", RULE_FILES).start()
    try:
        wait_for(lambda: prom.scalar('up{job="reftguard"}') == 1, 30, what="the guard target to be up")
        with GuardClient(guard.target) as client:
            # The server creates every bounded series at zero on start-up, so once Prometheus has
            # scraped those zeros, rate() sees every increment of the measured traffic.
            wait_scraped(prom, guard)
            before = {c: prom.scalar(f'sum(reftguard_labeled_total{{label="{l}", verdict="{v}"}})')
                      for (l, v), c in CLASSES.items() if c in exemplars}
            assert set(before.values()) == {0.0}, before

            # The measured traffic: 60 benign with enough false positives to break the FP budget
            # (2 x the calibrated FPR + 1 point) by 10 points, 30 harmful (6 missed where the bundle
            # misses any).
            expected_fpr = GuardBundle.load(guard.env["REFTGUARD_BUNDLE"]).expected_fpr
            assert expected_fpr is not None and expected_fpr < 0.3, expected_fpr
            budget = 2 * expected_fpr + 0.01
            n_fp = math.ceil((budget + 0.1) * 60)
            n_fn = 6 if "FN" in exemplars else 0
            plan = {"TN": 60 - n_fp, "FP": n_fp, "TP": 30 - n_fn, "FN": n_fn}
            traffic = [(c, exemplars[c]) for c, n in plan.items() for _ in range(n)]
            random.Random(0).shuffle(traffic)
            got = send(client, traffic, "ingest")
        assert got == plan, f"decisions are deterministic per text: sent {plan}, served {got}"
        wait_scraped(prom, guard)

        # Raw counters in Prometheus grew by exactly what the client was served.
        for (l, v), c in CLASSES.items():
            if c in exemplars:
                assert prom.scalar(f'sum(reftguard_labeled_total{{label="{l}", verdict="{v}"}})') - before[c] == plan[c], c

        flags, total = plan["FP"] + plan["TP"], sum(plan.values())
        want = {
            'reftguard:flag_rate:ratio_rate5m{source="ingest"}': flags / total,
            'reftguard:flag_rate:ratio_rate1h{source="ingest"}': flags / total,
            "reftguard:false_positive_rate:ratio_rate5m": plan["FP"] / (plan["FP"] + plan["TN"]),
            "reftguard:false_positive_rate:ratio_rate1h": plan["FP"] / (plan["FP"] + plan["TN"]),
            "reftguard:miss_rate:ratio_rate5m": plan["FN"] / (plan["FN"] + plan["TP"]),
            "reftguard:miss_rate:ratio_rate1h": plan["FN"] / (plan["FN"] + plan["TP"]),
        }
        last: dict[str, float | None] = {}

        def rules_agree() -> bool:
            last.update({q: prom.scalar(q) for q in want})
            return all(v is not None and abs(v - want[q]) < 0.005 for q, v in last.items())

        settle(rules_agree, 30)
        for q, v in want.items():
            assert last[q] is not None and last[q] == pytest.approx(v, abs=0.005), f"{q}: Prometheus {last[q]}, sent {v:.4f} ({plan})"

        # Over budget on both windows with > 50 benign items: the FP-budget alert (for: 15m) is pending.
        assert want["reftguard:false_positive_rate:ratio_rate1h"] > budget + 0.09
        # (The alert group evaluates apart from the recording groups, so its value may lag one round.)
        fpr = want["reftguard:false_positive_rate:ratio_rate1h"]
        alerts: list[dict] = []

        def alert_current() -> bool:
            alerts[:] = prom.alerts("ReftguardFalsePositiveRateOverBudget")
            return bool(alerts) and abs(float(alerts[0]["value"]) - fpr) < 0.005

        settle(alert_current, 15)
        assert len(alerts) == 1 and alerts[0]["state"] == "pending", alerts
        assert float(alerts[0]["value"]) == pytest.approx(fpr, abs=0.005)
        assert prom.alerts("ReftguardDown") == [] and prom.scalar("reftguard_serving") == 1
    finally:
        prom.close()


def scaled_rule_files(out: Path, factor: int = 30) -> list[Path]:
    """The shipped rule files with every range selector and `for` divided by `factor`."""
    seconds = {"s": 1, "m": 60, "h": 3600}

    def scale(d: str) -> str:
        n = int(d[:-1]) * seconds[d[-1]]
        assert n % factor == 0, f"{d} does not scale by {factor}"
        return f"{n // factor}s"

    paths = []
    for f in RULE_FILES:
        doc = yaml.safe_load(f.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                rule["expr"] = re.sub(r"\[(\d+[smh])\]", lambda m: f"[{scale(m.group(1))}]", rule["expr"])
                if "for" in rule:
                    rule["for"] = scale(rule["for"])
        paths.append(out / f.name)
        paths[-1].write_text(yaml.safe_dump(doc, sort_keys=False))
    return paths


def test_flag_rate_spike_alert_fires_on_a_harmful_burst(guard, exemplars, tmp_path):
    prom = Prometheus(tmp_path, f"127.0.0.1:{guard.metrics_port}", scaled_rule_files(tmp_path)).start()
    try:
        wait_for(lambda: prom.scalar('up{job="reftguard"}') == 1, 30, what="the guard target to be up")

        def spike_alerts() -> list[dict]:
            return [a for a in prom.alerts("ReftguardFlagRateSpike") if a["labels"].get("source") == "api"]

        with GuardClient(guard.target) as client:
            # Baseline: 30 s at a 10% flag rate (9 benign allowed, 1 harmful flagged per batch).
            baseline = [("TN", exemplars["TN"])] * 9 + [("TP", exemplars["TP"])]
            served = {c: 0 for c in CLASSES.values()}
            end = time.monotonic() + 30
            while time.monotonic() < end:
                for c, n in send(client, baseline, "api").items():
                    served[c] += n
                time.sleep(0.5)
            assert served["TP"] * 9 == served["TN"] and served["FP"] == served["FN"] == 0, served
            assert spike_alerts() == [], "a steady 10% flag rate must not look like a spike"
            # The burst: a poisoned upload, every prompt harmful and flagged, until the alert fires.
            burst = [("TP", exemplars["TP"])] * 10
            deadline = time.monotonic() + 60
            firing: list[dict] = []
            while time.monotonic() < deadline and not firing:
                assert send(client, burst, "api")["TP"] == len(burst)
                firing = [a for a in spike_alerts() if a["state"] == "firing"]
                time.sleep(0.5)
        assert firing, f"ReftguardFlagRateSpike did not fire within 60 s of the burst: {spike_alerts()}"
        assert firing[0]["labels"]["severity"] == "page"
        assert float(firing[0]["value"]) > 0.5  # the 5m (here 10 s) flag rate the alert reports
    finally:
        prom.close()


def test_guard_down_alert_fires_when_the_server_stops(low_fpr_bundle, tmp_path):
    server = GuardServer.for_bundle(low_fpr_bundle, tmp_path / "serve.log")
    prom = None
    try:
        server.start()
        prom = Prometheus(tmp_path, f"127.0.0.1:{server.metrics_port}", scaled_rule_files(tmp_path)).start()
        wait_for(lambda: prom.scalar('up{job="reftguard"}') == 1 and prom.scalar("reftguard_serving") == 1, 30,
                 what="the guard to be scraped as up and serving")
        assert prom.alerts("ReftguardDown") == []
        assert server.terminate(timeout=30) == 0, server.log_tail()
        # for: 1m scaled to 2 s: firing within a few scrapes of the target going away.
        firing = wait_for(lambda: [a for a in prom.alerts("ReftguardDown") if a["state"] == "firing"], 30,
                          what="ReftguardDown to fire")
        assert firing[0]["labels"]["job"] == "reftguard" and firing[0]["labels"]["severity"] == "page"
    finally:
        server.close()
        if prom is not None:
            prom.close()
