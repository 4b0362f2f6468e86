"""Shared pieces of the deployment tests: the Dockerfile as data, the metrics contract, a real
`reftguard serve` subprocess and a real Prometheus subprocess, both on loopback ports."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))

# The metrics `reftguard serve` exports on --metrics-port (server contract, docs/design.md §5), by
# family name and type. Dashboards and rules may name only these (with the histogram suffixes),
# `up`, `ALERTS` and the recording rules defined in deploy/prometheus/rules.
CONTRACT_METRICS: dict[str, str] = {
    "reftguard_decisions_total": "counter",
    "reftguard_decisions_by_reason_total": "counter",
    "reftguard_decisions_by_category_total": "counter",
    "reftguard_flag_rate": "gauge",
    "reftguard_score": "histogram",
    "reftguard_feedback_total": "counter",
    "reftguard_labeled_total": "counter",
    "reftguard_false_positive_rate": "gauge",
    "reftguard_miss_rate": "gauge",
    "reftguard_expected_fpr": "gauge",
    "reftguard_phase_seconds": "histogram",
    "reftguard_batch_size": "histogram",
    "reftguard_batch_tokens": "histogram",
    "reftguard_batch_padding_ratio": "histogram",
    "reftguard_engine_busy_seconds_total": "counter",
    "reftguard_engine_tokens_total": "counter",
    "reftguard_queue_depth": "gauge",
    "reftguard_queue_tokens": "gauge",
    "reftguard_truncated_total": "counter",
    "reftguard_errors_total": "counter",
    "reftguard_requests_total": "counter",
    "reftguard_serving": "gauge",
    "reftguard_bundle_info": "gauge",
    # rollout (--shadow-bundle)
    "reftguard_shadow_bundle_info": "gauge",
    "reftguard_shadow_decisions_total": "counter",
    "reftguard_shadow_disagreements_total": "counter",
    "reftguard_shadow_score_delta": "histogram",
    "reftguard_shadow_dropped_total": "counter",
    "reftguard_shadow_labeled_total": "counter",
    "reftguard_shadow_feedback_total": "counter",
    "reftguard_shadow_flag_rate": "gauge",
    "reftguard_shadow_false_positive_rate": "gauge",
    "reftguard_shadow_miss_rate": "gauge",
    "reftguard_shadow_disagreement_budget": "gauge",
}


def contract_series_names() -> set[str]:
    names = set()
    for name, kind in CONTRACT_METRICS.items():
        names.add(name)
        if kind == "histogram":
            names.update(name + s for s in ("_bucket", "_sum", "_count"))
    return names


# ---------------------------------------------------------------------------------------- Dockerfile

@dataclass
class Stage:
    """One build stage: its name, base (another stage or an image) and instructions in order."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [v for i, v in self.instructions if i == instruction]

    def last(self, instruction: str) -> str | None:
        vals = self.values(instruction)
        return vals[-1] if vals else None


def _exec_form(value: str) -> list[str] | None:
    """The argv of a JSON-array (exec form) instruction value, or None for shell form."""
    value = value.strip()
    if not value.startswith("["):
        return None
    argv = json.loads(value)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), value
    return argv


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: dict[str, Stage]

    @classmethod
    def parse(cls, path: Path = ROOT / "Dockerfile") -> "Dockerfile":
        from dockerfile_parse import DockerfileParser

        parser = DockerfileParser(path=str(path))
        args: dict[str, str] = {}
        stages: dict[str, Stage] = {}
        current: Stage | None = None
        for ins in parser.structure:
            kind, value = ins["instruction"], ins["value"]
            if kind == "COMMENT":
                continue
            if kind == "FROM":
                words = value.split()
                base = words[0]
                name = words[2] if len(words) == 3 and words[1].upper() == "AS" else f"stage{len(stages)}"
                current = stages[name] = Stage(name, base)
            elif current is None:
                assert kind == "ARG", f"only ARG may precede the first FROM, found {kind}"
                k, _, v = value.partition("=")
                args[k.strip()] = v.strip()
            else:
                current.instructions.append((kind, value))
        return cls(args, stages)

    @property
    def default_target(self) -> str:
        return list(self.stages)[-1]

    def base_image(self, stage: str) -> str:
        """The external image a stage ultimately builds on, with global ARGs substituted."""
        base = self.stages[stage].base
        while base in self.stages:
            base = self.stages[base].base
        return re.sub(r"\$\{(\w+)\}", lambda m: self.args[m.group(1)], base)

    def chain(self, stage: str) -> list[Stage]:
        """The stage and its ancestors inside this file, oldest first (metadata is inherited)."""
        out = [self.stages[stage]]
        while out[0].base in self.stages:
            out.insert(0, self.stages[out[0].base])
        return out

    def env(self, stage: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for st in self.chain(stage):
            for value in st.values("ENV"):
                for pair in shlex.split(value):
                    k, _, v = pair.partition("=")
                    env[k] = v
        return env

    def metadata(self, stage: str, instruction: str) -> str | None:
        for st in reversed(self.chain(stage)):
            v = st.last(instruction)
            if v is not None:
                return v
        return None

    def entrypoint(self, stage: str) -> list[str]:
        value = self.metadata(stage, "ENTRYPOINT")
        assert value is not None, f"stage {stage} has no ENTRYPOINT"
        argv = _exec_form(value)
        assert argv is not None, f"ENTRYPOINT of {stage} must be exec form (JSON), got {value!r}"
        return argv

    def cmd(self, stage: str) -> list[str]:
        value = self.metadata(stage, "CMD")
        if value is None:
            return []
        argv = _exec_form(value)
        assert argv is not None, f"CMD of {stage} must be exec form (JSON), got {value!r}"
        return argv

    def healthcheck(self, stage: str) -> tuple[dict[str, str], list[str]]:
        """HEALTHCHECK options and the CMD argv (exec form required)."""
        value = self.metadata(stage, "HEALTHCHECK")
        assert value is not None, f"stage {stage} has no HEALTHCHECK"
        opts_part, sep, cmd_part = value.partition(" CMD ")
        assert sep, f"HEALTHCHECK must use CMD: {value!r}"
        opts = dict(o.lstrip("-").split("=", 1) for o in opts_part.split())
        argv = _exec_form(cmd_part)
        assert argv is not None, f"HEALTHCHECK CMD must be exec form: {cmd_part!r}"
        return opts, argv


def expand(text: str, env: dict[str, str]) -> str:
    """Shell-style ${VAR} / $VAR expansion against `env` (unknown variables are an error)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env[m.group(1) or m.group(2)], text)


# ---------------------------------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], object], timeout: float, interval: float = 0.5, what: str = "condition"):
    """Poll `check` until it returns a truthy value (returned) or `timeout` seconds pass (AssertionError).
    An AssertionError from `check` is a verdict and ends the wait; other errors (connection refused,
    a half-started service) are retried."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, reported below
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


def settle(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll `check` until it is true or `timeout` passes; the caller asserts on what it last saw."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback URLs built by the tests
        return r.read().decode()


def venv_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment with the test interpreter's bin dir first on PATH (where `reftguard` lives)."""
    env = dict(os.environ)
    env.update(extra)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


class GuardServer:
    """`reftguard serve` (the image's entrypoint argv) as a subprocess, configured through the
    REFTGUARD_* environment the way the image configures it."""

    def __init__(self, argv: list[str], env: dict[str, str], healthcheck: list[str], log_path: Path):
        self.argv, self.env, self.healthcheck, self.log_path = argv, env, healthcheck, log_path
        self.grpc_port = int(env["REFTGUARD_PORT"])
        self.metrics_port = int(env["REFTGUARD_METRICS_PORT"])
        self.proc: subprocess.Popen | None = None

    @classmethod
    def for_bundle(cls, bundle: Path, log_path: Path, target: str | None = None,
                   extra_env: dict[str, str] | None = None) -> "GuardServer":
        """A server started exactly as image `target` (default: the default target) starts it: its
        ENTRYPOINT + CMD argv and its REFTGUARD_* environment, except for the bundle path and free
        loopback addresses instead of 0.0.0.0:50051 / :9464."""
        df = Dockerfile.parse()
        target = target or df.default_target
        env = {k: v for k, v in df.env(target).items() if k.startswith("REFTGUARD_")}
        env.update(
            REFTGUARD_BUNDLE=str(bundle), REFTGUARD_HOST="127.0.0.1", REFTGUARD_METRICS_HOST="127.0.0.1",
            REFTGUARD_PORT=str(free_port()), REFTGUARD_METRICS_PORT=str(free_port()), **(extra_env or {}),
        )
        return cls(df.entrypoint(target) + df.cmd(target), venv_env(env), df.healthcheck(target)[1], log_path)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 120.0) -> "GuardServer":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.log_path.parent)
        wait_for(self._healthy, timeout, what=f"`{' '.join(self.healthcheck)}` to pass\n{self.log_tail()}")
        return self

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode} before becoming healthy:\n{self.log_tail()}")
        return subprocess.run(self.healthcheck, env=self.env, capture_output=True, timeout=30).returncode == 0

    def metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def terminate(self, timeout: float) -> int:
        """SIGTERM (what `docker stop` and the kubelet send) and the exit status; kills after `timeout`."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"server did not exit within {timeout:.0f}s of SIGTERM:\n{self.log_tail()}")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()


class Prometheus:
    """A real Prometheus (Debian package) on a loopback port scraping one reftguard target."""

    def __init__(self, workdir: Path, metrics_target: str, rule_files: list[Path], interval: str = "1s"):
        self.workdir = workdir
        self.port = free_port()
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": "reftguard", "static_configs": [{"targets": [metrics_target]}]}],
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(json.dumps(config))  # JSON is YAML
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "Prometheus":
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed (scripts/test.sh installs the Debian package)"
        self._log = open(self.workdir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        wait_for(lambda: self.proc.poll() is None and "Ready" in http_get(self.url + "/-/ready"), timeout,
                 what=f"Prometheus to be ready\n{self.log_tail()}")
        return self

    def log_tail(self, n: int = 3000) -> str:
        try:
            return (self.workdir / "prometheus.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def api(self, path: str, **params) -> dict:
        url = f"{self.url}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        body = json.loads(http_get(url))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[tuple[dict, float]]:
        """Instant query: [(labels, value)]."""
        data = self.api("query", query=expr)
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def scalar(self, expr: str) -> float | None:
        """The single value of an instant query, or None when it returns nothing."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr} returned {len(result)} series: {result}"
        return result[0][1] if result else None

    def alerts(self, name: str) -> list[dict]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"].get("alertname") == name]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
