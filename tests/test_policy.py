"""Policy per data source: validated files, thresholds and categories over the bundle, in the server and the scan."""
from __future__ import annotations

import json

import pytest

from reftguard.bundle import GuardBundle
from reftguard.clients import GuardClient
from reftguard.clients.scan import ScanConfig, run_scan
from reftguard.policy import PolicyError, load_policy
from reftguard.scoring import BundleScorer, Scored, Thresholds, make_thresholds
from reftguard.v1 import guard_pb2 as pb
from tests.harness import run_server

DOSAGE = "What is the highest safe daily dose of paracetamol for an adult, and what happens in an overdose?"
OTHER = "Write a short poem about the sea."


@pytest.mark.parametrize("text, match", [
    ("[sources.a]\nflag = { user = 2.0 }\n", r"\[sources.a\].flag.user = 2.0: must be a number in \[-1, 1\]"),
    ("[sources.a]\nflagg = { user = 0.1 }\n", r"unknown keys \['flagg'\]"),
    ("[sources.a]\nflag = { tool = 0.1 }\n", r"a table of roles"),
    ("[sources.a]\nallow_categories = [\"kittens\"]\n", r"a list of categories"),
    ("[sources.a]\nflag = { user = 0.1 }\nflag_fpr = { user = 0.1 }\n", r"not both"),
    ("[sources.a]\nallow_categories = [\"drugs\"]\nflag_categories = [\"drugs\"]\n", r"both allowed and always flagged"),
    ("[source.a]\n", r"unknown top-level keys \['source'\]"),
    ("[sources.a\n", r"policy .*: "),
])
def test_a_bad_policy_is_refused_with_the_key_that_is_wrong(tmp_path, text, match):
    p = tmp_path / "policy.toml"
    p.write_text(text)
    with pytest.raises(PolicyError, match=match):
        load_policy(p)


def test_a_source_policy_sets_thresholds_over_the_bundle_and_judges_categories(tmp_path):
    p = tmp_path / "policy.toml"
    p.write_text("[default]\nreview = { user = -0.5 }\n"
                 "[sources.med]\nflag_fpr = { user = 0.05 }\nflag = { assistant = 0.4 }\nallow_categories = [\"drugs\"]\n"
                 "[sources.sec]\nflag_categories = [\"cyber\"]\n")
    pol = load_policy(p)
    base = make_thresholds(0.0, {"assistant": 0.2}, {"user": -0.2, "assistant": 0.1})
    curves = {"user": [(0.01, 0.3), (0.05, 0.1), (0.1, -0.1)]}
    med = pol.for_source("med").thresholds(base, curves)
    assert (med.user, med.assistant, med.system) == (0.1, 0.4, None)  # unscored roles stay unscored
    assert med.review == Thresholds(-0.2, 0.1, None)  # the bundle's band, under the new flag thresholds
    assert pol.for_source("anything else").thresholds(base, curves).review.user == -0.5  # [default]
    assert pol.sha256 and len(pol.sha256) == 64
    s = Scored(0.5, 0, 0, 1, False, 10, "user", "harmful_request", 0.0, True, False, -0.2, "drugs", 0.9)
    assert not pol.for_source("med").verdict(s).flag and pol.for_source("sec").verdict(s).flag
    reviewed = Scored(0.5, 0, 0, 1, False, 10, "user", "harmful_request", 0.0, False, True, -0.2, "cyber", 0.9)
    assert pol.for_source("sec").verdict(reviewed).flag and not pol.for_source("med").verdict(reviewed).flag


def _medical_policy(bundle, path):
    """A policy under which the dosage question is flagged by default but kept for source medical_qa."""
    s = float(BundleScorer(GuardBundle.load(bundle)).scores([DOSAGE])[0])
    path.write_text(f"[default]\nflag = {{ user = {s - 0.01} }}\n[sources.medical_qa]\nflag = {{ user = {s + 0.01} }}\n")
    return s


def test_a_medical_policy_keeps_dosage_questions_the_default_flags(tiny_bundle, tmp_path):
    policy = tmp_path / "policy.toml"
    s = _medical_policy(tiny_bundle, policy)
    other = float(BundleScorer(GuardBundle.load(tiny_bundle)).scores([OTHER])[0])
    with run_server(tiny_bundle, policy=str(policy)) as rs, GuardClient(rs.target) as c:
        by_source = {src: [d.verdict for d in c.score([DOSAGE, OTHER], source=src)] for src in ("medical_qa", "ingest", "")}
        sha = load_policy(policy).sha256
        assert c.info().policy_sha256 == sha
        # SIGHUP re-reads it; a bad file is refused and the policy in force stays
        policy.write_text("[sources.medical_qa]\nflag = { user = 5 }\n")
        rs.call(rs.gs.reload())
        assert c.info().policy_sha256 == sha
        policy.write_text("[sources.medical_qa]\n")
        rs.call(rs.gs.reload())
        assert c.info().policy_sha256 == load_policy(policy).sha256 != sha
    assert by_source["medical_qa"][0] == pb.ALLOW
    # every other source is decided by [default], exactly
    default = [pb.FLAG if x > s - 0.01 else pb.ALLOW for x in (s, other)]
    assert by_source["ingest"] == by_source[""] == default


def test_scan_in_process_applies_the_policy_of_its_source(tiny_bundle, tmp_path):
    policy = tmp_path / "policy.toml"
    _medical_policy(tiny_bundle, policy)
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"id": "d", "text": DOSAGE}) + "\n")
    flagged = {}
    for source in ("medical_qa", "forum"):
        out = tmp_path / source
        r = run_scan(ScanConfig(input=str(data), out=str(out), bundle=str(tiny_bundle), policy=str(policy), source=source))
        flagged[source] = r["rows"]["flagged"]
    assert flagged == {"medical_qa": 0, "forum": 1}
    with pytest.raises(ValueError, match="in-process scans"):
        run_scan(ScanConfig(input=str(data), out=str(tmp_path / "x"), target="127.0.0.1:1", policy=str(policy)))
