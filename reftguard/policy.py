"""Policy per data source: thresholds and harm categories a curator sets for one source, over the bundle.

A TOML file, read by the server at start and on SIGHUP (`serve --policy`) and by `scan --policy`; the
request's `source` picks its section, any other source gets `[default]` (absent: the bundle as calibrated):

    [sources.medical_qa]
    flag = { user = -0.05 }             # flag thresholds per role (user, assistant, system)
    review = { user = -0.40 }           # review thresholds per role (the band's lower edge)
    flag_fpr = { user = 0.10 }          # or an FPR target, through the bundle's calibration curve
    allow_categories = ["drugs"]        # a FLAG or REVIEW of these categories is ALLOWed
    flag_categories = ["weapons"]       # a REVIEW of these categories is FLAGged

Every key is checked when the file is read (unknown keys, roles or categories, thresholds outside [-1, 1])
and a bad file is refused whole: the policy in force stays. Its sha256 is reported by Info.
"""
from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from reftguard.prompt import ROLES
from reftguard.scoring import Scored, Thresholds, make_thresholds
from reftguard.taxonomy import CATEGORIES

KEYS = {"flag", "review", "flag_fpr", "allow_categories", "flag_categories"}


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file, the section and the key."""


@dataclass(frozen=True)
class SourcePolicy:
    flag: dict = field(default_factory=dict)  # {role: threshold}
    review: dict = field(default_factory=dict)
    flag_fpr: dict = field(default_factory=dict)  # {role: FPR target}, mapped through the calibration curve
    allow_categories: frozenset = frozenset()
    flag_categories: frozenset = frozenset()

    def thresholds(self, base: Thresholds, curves: dict) -> Thresholds:
        """`base` with this source's thresholds. `curves`: {role: [(fpr, threshold), ...]} of the bundle."""
        flag = {r: base.of(r) for r in ROLES}
        for role, fpr in self.flag_fpr.items():
            if flag[role] is not None:
                flag[role] = threshold_at_fpr(curves.get(role), fpr, role)
        for role, t in self.flag.items():
            if flag[role] is not None:  # a role the bundle does not score stays unscored
                flag[role] = t
        scored = make_thresholds(flag["user"], {r: t for r, t in flag.items() if r != "user" and t is not None}, base.bands() | self.review)
        return replace(scored, flag_refusal_examples=base.flag_refusal_examples)

    def verdict(self, s: Scored) -> Scored:
        """A decision after the category rules (flag and review only: the head names harm, not its absence)."""
        if (s.flag or s.review) and s.category in self.allow_categories:
            return replace(s, flag=False, review=False)
        if s.review and s.category in self.flag_categories:
            return replace(s, flag=True, review=False)
        return s


@dataclass(frozen=True)
class Policy:
    sources: dict  # {source: SourcePolicy}
    default: SourcePolicy | None
    sha256: str
    path: str = ""

    def for_source(self, source: str) -> SourcePolicy | None:
        return self.sources.get(source, self.default)


def threshold_at_fpr(curve, fpr: float, role: str) -> float:
    """The lowest threshold whose benign FPR on the calibration data is at most `fpr`."""
    if not curve:
        raise PolicyError(f"flag_fpr for {role}: the bundle has no calibration curve for {role} turns (recalibrate it)")
    ok = [t for f, t in curve if f <= fpr]
    return min(ok) if ok else max(t for _, t in curve)


def _source(raw: dict, where: str) -> SourcePolicy:
    unknown = set(raw) - KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(KEYS)})")
    out = {}
    for key in ("flag", "review", "flag_fpr"):
        table = raw.get(key, {})
        if not isinstance(table, dict) or set(table) - set(ROLES):
            raise PolicyError(f"{where}.{key}: a table of roles ({', '.join(ROLES)}) to numbers")
        lo, hi = (0.0, 1.0) if key == "flag_fpr" else (-1.0, 1.0)
        for role, v in table.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise PolicyError(f"{where}.{key}.{role} = {v!r}: must be a number in [{lo:g}, {hi:g}]")
        out[key] = {r: float(v) for r, v in table.items()}
    for key in ("allow_categories", "flag_categories"):
        cats = raw.get(key, [])
        if not isinstance(cats, list) or set(cats) - set(CATEGORIES):
            raise PolicyError(f"{where}.{key}: a list of categories from {', '.join(CATEGORIES)}")
        out[key] = frozenset(cats)
    if set(out["flag"]) & set(out["flag_fpr"]):
        raise PolicyError(f"{where}: give a role `flag` or `flag_fpr`, not both")
    if out["allow_categories"] & out["flag_categories"]:
        raise PolicyError(f"{where}: a category cannot be both allowed and always flagged")
    return SourcePolicy(**out)


def load_policy(path: str | Path) -> Policy:
    p = Path(path)
    try:
        data = p.read_bytes()
        raw = tomllib.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"policy {p}: {exc}") from exc
    unknown = set(raw) - {"default", "sources"}
    if unknown:
        raise PolicyError(f"policy {p}: unknown top-level keys {sorted(unknown)} (use [default] and [sources.NAME])")
    sources = raw.get("sources", {})
    if not isinstance(sources, dict):
        raise PolicyError(f"policy {p}: [sources] must hold one table per source")
    return Policy({name: _source(v, f"policy {p} [sources.{name}]") for name, v in sources.items()},
                  _source(raw["default"], f"policy {p} [default]") if "default" in raw else None,
                  hashlib.sha256(data).hexdigest(), str(p))
