"""The guard bundle: reading, verifying and (re)sealing the contract between exporter and server.

A bundle is a directory with `model.onnx`, tokenizer files, `refusal_feature.npy`, `CARD.md` and the
`guard.json` manifest. The manifest lists the sha256 of every other file, and `bundle_id` is a hash of
the manifest itself (minus `bundle_id` and `created`), so the id changes with the weights, the
threshold or anything else that changes decisions, and is identical for identical inputs.

This is the one module that the server, the in-process scan, calibration and the exporter's validator
use to read bundles. Nothing in a bundle is unpickled (`np.load(allow_pickle=False)`).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from reftguard import bundle_io
from reftguard.card import render_card, review_bands_of
from reftguard.features import cosine_scores
from reftguard.prompt import PromptFormat

FORMAT_VERSION = 1
MANIFEST = "guard.json"
CARD = "CARD.md"
MODEL = "model.onnx"
FEATURE = "refusal_feature.npy"
TOKENIZER = "tokenizer.json"
REQUIRED_FILES = (MODEL, FEATURE, TOKENIZER, CARD)
_VOLATILE = ("bundle_id", "created")


class BundleError(ValueError):
    """The bundle is missing, malformed or does not match its manifest."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_bundle_id(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k not in _VOLATILE}
    return "rg-" + hashlib.sha256(canonical_json(body)).hexdigest()[:20]


class FlagGate(NamedTuple):
    """A cosine reading a FLAGged request must also pass (reftguard/gate_fit.py): cos(output - centre, direction) > threshold;
    and, with a review edge, one a request in the review band must pass to be REVIEWed rather than ALLOWed."""

    direction: np.ndarray
    centre: np.ndarray
    threshold: float
    input: str  # the graph output it reads (reftguard.bundle_io)
    review_threshold: float = float("-inf")  # `fit-gate --review-keep`; -inf: the band is the score's alone

    def notes(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row of `states` (its `input` output): whether it passes the gate, and whether a request in the review
        band may be REVIEWed (else it is ALLOWed); one reading, and the one place the gate's rules are written."""
        reading = cosine_scores(states, self.direction, self.centre)
        return reading > self.threshold, reading > self.review_threshold

    def bands(self, states: np.ndarray) -> np.ndarray:
        return self.notes(states)[1]


def _bundle_files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MANIFEST
    )


def seal(root: str | Path, manifest: dict, card: Callable[[dict], str] | None = None) -> dict:
    """Hash every file, set `files` and `bundle_id`, and write guard.json (and CARD.md if `card`).

    The card is rendered from the manifest before hashing, so it is covered by the hashes too.
    """
    root = Path(root)
    manifest = dict(manifest)
    manifest["format_version"] = FORMAT_VERSION
    if card is not None:
        (root / CARD).write_text(card(manifest))
    manifest["files"] = {name: sha256_file(root / name) for name in _bundle_files(root)}
    manifest["bundle_id"] = compute_bundle_id(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return manifest


@contextmanager
def staged(out: str | Path):
    """Yield a fresh directory beside `out`; on success it replaces `out` whole, on error it is removed,
    so a reader never sees a half-written bundle."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    work.chmod(0o755)  # mkdtemp makes it private; a bundle is read by other users (the server container)
    try:
        yield work
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


@dataclass
class GuardBundle:
    root: Path
    manifest: dict

    @property
    def bundle_id(self) -> str:
        return self.manifest["bundle_id"]

    @property
    def layer(self) -> int:
        return int(self.manifest["layer"])

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"])

    @property
    def role_thresholds(self) -> dict[str, float]:
        """fp32 thresholds of the roles calibrated besides user turns (`reftguard calibrate
        --target-fpr-role`); empty for a bundle that scores user turns only."""
        return {role: float(v["threshold"]) for role, v in (self.manifest.get("roles") or {}).items()}

    @property
    def review_thresholds(self) -> dict[str, float]:
        """fp32 review thresholds per role, user included (`reftguard calibrate --review-recall`); empty
        for a bundle without a review band."""
        return review_thresholds_of({"review": self.manifest.get("review"), "roles": self.manifest.get("roles")})

    @property
    def fpr_curves(self) -> dict[str, list]:
        """fp32 calibration curves per role (reftguard.calibration.fpr_curve)."""
        return fpr_curves_of({"calibration": self.manifest.get("calibration"), "roles": self.manifest.get("roles")})

    def category_head(self):
        """The harm-category head (reftguard.category_head.CategoryHead), or None without one."""
        spec = self.manifest.get("categories")
        if not spec:
            return None
        from reftguard.category_head import CategoryHead

        return replace(CategoryHead.load(self.root / spec["file"]), input=spec.get("input", bundle_io.STATE))

    @property
    def expected_fpr(self) -> float | None:
        cal = self.manifest.get("calibration") or {}
        v = (cal.get("at_threshold") or {}).get("fpr")
        return None if v is None else float(v)

    @property
    def max_tokens(self) -> int:
        return int(self.manifest["max_tokens"])

    @property
    def pad_token_id(self) -> int:
        return int(self.manifest.get("pad_token_id", 0))

    @property
    def prompt_format(self) -> PromptFormat:
        return PromptFormat.from_dict(self.manifest["prompt_format"])

    @property
    def model_path(self) -> Path:
        return self.root / MODEL

    @property
    def tokenizer_path(self) -> Path:
        return self.root / TOKENIZER

    @property
    def backbone(self) -> str:
        return str(self.manifest.get("source_model", {}).get("name", "unknown"))

    def reseal(self, manifest: dict) -> "GuardBundle":
        """Seal this bundle's directory in place under `manifest` (files added or changed are hashed, the card
        re-rendered, a new bundle_id) and load it again."""
        seal(self.root, manifest, card=render_card)
        return GuardBundle.load(self.root)

    def refusal_feature(self) -> np.ndarray:
        return np.load(self.root / FEATURE, allow_pickle=False)

    def flag_gate(self) -> "FlagGate | None":
        """The gate a FLAGged request must also pass (`reftguard fit-gate`); None without one."""
        spec = self.manifest.get("flag_gate")
        if not spec:
            return None
        arr = np.load(self.root / spec["file"], allow_pickle=False)
        return FlagGate(arr[0], arr[1], float(spec["threshold"]), spec.get("input", bundle_io.TAIL),
                        float(spec.get("review_threshold", float("-inf"))))

    def role_features(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{role: (R_role, c_role)} fitted on that role's own turns (`reftguard fit-roles`); empty when the
        bundle has none, and then every turn is scored against R_l."""
        spec = self.manifest.get("role_features")
        if not spec:
            return {}
        arr = np.load(self.root / spec["file"], allow_pickle=False)  # [roles, 2 (feature, centre), hidden]
        return {role: (arr[k, 0], arr[k, 1]) for k, role in enumerate(spec["roles"])}

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> "GuardBundle":
        root = Path(path)
        if root.is_file() and tarfile.is_tarfile(root):
            root = _untar(root)
        if not root.is_dir():
            raise BundleError(f"bundle not found: {path} is not a directory (or a .tar of one)")
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise BundleError(f"{root} is not a guard bundle: {MANIFEST} is missing")
        try:
            manifest = json.loads(mpath.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{mpath} is not valid JSON: {exc}") from exc
        if not isinstance(manifest, dict):
            raise BundleError(f"{mpath} must hold a JSON object")
        bundle = cls(root=root, manifest=manifest)
        if verify:
            bundle.verify()
        return bundle

    def verify(self) -> None:
        """Check format, required keys, every file hash and the bundle id; raise BundleError on any mismatch."""
        m = self.manifest
        if m.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"bundle format_version {m.get('format_version')!r} is not supported (this reftguard reads {FORMAT_VERSION})"
            )
        for key in ("bundle_id", "files", "layer", "hidden_size", "prompt_format", "max_tokens", "threshold"):
            if key not in m:
                raise BundleError(f"{MANIFEST} lacks required key {key!r}")
        files = m["files"]
        for name in REQUIRED_FILES:
            if name not in files:
                raise BundleError(f"{MANIFEST} does not list required file {name}")
        for name, digest in sorted(files.items()):
            p = self.root / name
            if not p.is_file():
                raise BundleError(f"bundle file {name} is missing from {self.root}")
            actual = sha256_file(p)
            if actual != digest:
                raise BundleError(
                    f"bundle file {name} was modified: sha256 {actual[:16]}… does not match the manifest's {digest[:16]}…; "
                    "refusing to load a tampered bundle (re-export it, or re-seal with `reftguard calibrate`)"
                )
        unlisted = sorted(set(_bundle_files(self.root)) - set(files))
        if unlisted:
            raise BundleError(f"bundle has files that the manifest does not list: {unlisted}")
        expected = compute_bundle_id(m)
        if expected != m["bundle_id"]:
            raise BundleError(
                f"{MANIFEST} was edited after sealing: bundle_id {m['bundle_id']} does not match its content ({expected}); "
                "change thresholds with `reftguard calibrate`, not by hand"
            )
        thr = m["threshold"]
        if not isinstance(thr, (int, float)) or not -1.0 <= float(thr) <= 1.0:
            raise BundleError(f"threshold {thr!r} in {MANIFEST} is not a number in [-1, 1]")


def fpr_curves_of(entry: dict) -> dict[str, list]:
    """{role: [(FPR, threshold), ...]} of one calibration entry (what a policy's flag_fpr maps through)."""
    out = {"user": (entry.get("calibration") or {}).get("fpr_curve")}
    out |= {role: (v.get("calibration") or {}).get("fpr_curve") for role, v in (entry.get("roles") or {}).items()}
    return {k: v for k, v in out.items() if v}


def review_thresholds_of(entry: dict) -> dict[str, float]:
    """{role: review threshold} of one calibration entry."""
    return {role: float(band["threshold"]) for role, band in review_bands_of(entry).items()}


def _untar(path: Path) -> Path:
    out = Path(tempfile.mkdtemp(prefix="reftguard-bundle-"))
    with tarfile.open(path) as tar:
        tar.extractall(out, filter="data")
    entries = [p for p in out.iterdir()]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else out
