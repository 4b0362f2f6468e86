from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from reftguard.data import packaged  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


# The test files that take minutes (measured with --durations on 2 cores), in the order they go out. Under
# `-n 2 --dist loadfile --no-loadscope-reorder` (scripts/test.sh) each worker starts with two files of this
# list (the 1st and 3rd, the 2nd and 4th): the paper-table smoke test (~8 min) pairs with a light file, the
# teacher tests with the default-bundle tests, and the rest fills in behind them on whichever worker is free.
HEAVY_FIRST = ("test_teacher_train.py", "test_prompt_scores.py", "test_default_bundle.py", "test_paper_table.py", "test_layers.py",
               "test_prometheus_integration.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file and test order otherwise kept


def load_file_module(name: str, path: Path):
    """Import a script that is not a package module (bench/, scripts/) under `name`. Registered in
    sys.modules first: dataclasses in the file resolve their module by name."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def small_labeled(path: Path, n_per_label: int = 40, source: str = "guard-train.jsonl") -> Path:
    """A balanced slice of a packaged labeled file (keeps tiny-model tests fast)."""
    counts = {"harmful": 0, "benign": 0}
    rows = []
    for line in packaged(source).read_text().splitlines():
        rec = json.loads(line)
        if counts[rec["label"]] < n_per_label:
            counts[rec["label"]] += 1
            rows.append(line)
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    small_labeled(d / "train.jsonl", 40, "guard-train-extra.jsonl")
    small_labeled(d / "dev.jsonl", 25, "guard-dev.jsonl")
    return d


def _texts() -> list[str]:
    return [json.loads(l)["text"] for l in packaged("guard-train.jsonl").read_text().splitlines()[:400]]


@pytest.fixture(scope="session", params=["llama", "qwen2", "gemma2"])
def tiny_model(request, tmp_path_factory) -> Path:
    from tests.tiny import build_model

    return build_model(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param, _texts())


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    from tests.tiny import build_model

    return build_model(tmp_path_factory.mktemp("tiny-llama-main"), "llama", _texts())


@pytest.fixture(scope="session")
def tiny_teacher(tiny_llama, data_dir, tmp_path_factory) -> Path:
    from reftguard.training.fit import FitConfig, fit

    out = tmp_path_factory.mktemp("teacher")
    fit(FitConfig(model=str(tiny_llama), data=[str(data_dir / "train.jsonl")], out=str(out), max_tokens=128))
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_teacher, data_dir, tmp_path_factory) -> Path:
    """A sealed, calibrated guard bundle from the tiny Llama (read-only for tests: copy before mutating)."""
    from reftguard.calibration import CalibrateConfig, calibrate
    from reftguard.exporter.export import ExportConfig, export_bundle

    out = tmp_path_factory.mktemp("bundle") / "bundle"
    export_bundle(ExportConfig(teacher=str(tiny_teacher), out=str(out)))
    calibrate(CalibrateConfig(bundle=str(out), data=[str(data_dir / "dev.jsonl")], target_recall=0.9))
    return out


@pytest.fixture(scope="session")
def default_bundle_path() -> Path:
    """The embedded default bundle (built once per machine, then cached; slow tests only)."""
    from reftguard.exporter.default_bundle import ensure_default_bundle

    return ensure_default_bundle().root


def _rows(name: str, label: str, n: int) -> list[dict]:
    out = [json.loads(line) for line in packaged(name).read_text().splitlines()]
    return [r for r in out if r["label"] == label][:n]


@pytest.fixture(scope="session")
def role_data(data_dir, tmp_path_factory):
    """The tiny bundle's own calibration rows (user turns) plus labelled assistant and system rows."""
    d = tmp_path_factory.mktemp("roles")
    rows = [json.loads(line) for line in (data_dir / "dev.jsonl").read_text().splitlines()]
    for role in ("assistant", "system"):
        rows += [{"id": f"{role}{i}", "text": r["text"], "label": r["label"], "role": role} for i, r in
                 enumerate(_rows("guard-train-extra.jsonl", "harmful", 15) + _rows("guard-train-extra.jsonl", "benign", 15))]
    path = d / "roles.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def role_train(tmp_path_factory):
    """Labelled assistant and system turns to fit per-role features on (training rows, not dev)."""
    rows = [{"id": f"{role}-t{i}", "text": r["text"], "label": r["label"], "role": role} for k, role in enumerate(("assistant", "system"))
            for i, r in enumerate(_rows("guard-train.jsonl", "harmful", 40)[20 * k:20 * k + 20] + _rows("guard-train.jsonl", "benign", 40)[20 * k:20 * k + 20])]
    path = tmp_path_factory.mktemp("role-train") / "roles-train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def role_bundle(tiny_bundle, role_data, role_train, tmp_path_factory) -> Path:
    """The tiny bundle with per-role features and assistant and system calibrations (whole-record scoring on)."""
    import shutil

    out = tmp_path_factory.mktemp("role-bundle") / "bundle"
    shutil.copytree(tiny_bundle, out)
    from reftguard.calibration import CalibrateConfig, calibrate
    from reftguard.role_fit import FitRolesConfig, fit_roles

    fit_roles(FitRolesConfig(bundle=str(out), data=[str(role_train)]))
    calibrate(CalibrateConfig(bundle=str(out), data=[str(role_data)], target_recall=0.9, target_fpr_role=["assistant=0.1,system=0.2"]))
    return out
