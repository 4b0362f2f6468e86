"""ServedModel: one verified bundle with everything needed to score with it, immutable once built.

The bundle, its encoder (prompt format, max_tokens, windows), its engine, pad id, threshold and
bundle_id travel together. Every queued job holds the model it was admitted under, so a batch is run
by the engine whose encoder tokenized it and a response is decided with that bundle's threshold and
id. A reload builds a complete new ServedModel (verified, warmed up) and swaps one reference; nothing
in an existing model changes. An old model is released (engine and session freed) when the last
job, response or task holding it is done: nothing keeps a registry of models.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from reftguard.bundle import GuardBundle
from reftguard.encoding import PromptEncoder, pad_batch
from reftguard.engines import Engine
from reftguard.scoring import NO_NOTES, Thresholds, engine_thresholds, make_thresholds, row_notes, row_scores

log = logging.getLogger("reftguard.model")
WARMUP_TEXTS = ("warmup: how do I bake bread?", "warmup")


class ModelRefused(ValueError):
    """A bundle that failed to load, verify or warm up; the model being served stays."""


@dataclass(frozen=True, eq=False)
class ServedModel:
    bundle: GuardBundle
    encoder: PromptEncoder
    engine: Engine
    provider: str  # engine and device (and precision, where the engine names it)
    threshold: float  # the bundle's, or the engine's own calibration for its precision
    expected_fpr: float | None  # calibrated FPR at that threshold (None: the manifest has none)
    role_thresholds: dict = dataclasses.field(default_factory=dict)  # assistant/system thresholds at this precision
    role_features: dict = dataclasses.field(default_factory=dict)  # {role: (R, c)}: GuardBundle.role_features()
    review_thresholds: dict = dataclasses.field(default_factory=dict)  # {role: review threshold} at this precision
    category_head: object = None  # reftguard.category_head.CategoryHead, or None
    fpr_curves: dict = dataclasses.field(default_factory=dict)  # {role: [(FPR, threshold)]} at this precision (policies)
    flag_gate: tuple | None = None  # GuardBundle.flag_gate(): a FLAGged request must pass it too

    @functools.cached_property  # read for every request; the model never changes
    def thresholds(self) -> Thresholds:
        """What whole records are decided with; a role without a threshold is not scored."""
        return make_thresholds(self.threshold, self.role_thresholds, self.review_thresholds)

    @property
    def bundle_id(self) -> str:
        return self.bundle.bundle_id

    @property
    def pad_id(self) -> int:
        return self.bundle.pad_token_id

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray):
        return self.engine.run(input_ids, attention_mask)

    def row_scores(self, outputs, roles) -> np.ndarray:
        """Each row's score under its role's feature (reftguard.scoring.row_scores)."""
        return row_scores(outputs, roles, self.role_features)

    @property
    def notes_rows(self) -> bool:
        """Whether rows carry notes (category, gate): reftguard.scoring.row_notes."""
        return self.category_head is not None or self.flag_gate is not None

    def row_notes(self, outputs) -> list | None:
        return row_notes(outputs, self.category_head, self.flag_gate)

    def notes_of(self, results) -> list | None:
        """The per-row notes `decide` takes, from batcher results (PromptResult.category)."""
        return [r.category or NO_NOTES for r in results] if self.notes_rows else None

    def with_engine(self, engine: Engine) -> "ServedModel":
        """The same bundle and encoder on another engine (tests inject faults this way); a new model."""
        return track(dataclasses.replace(self, engine=engine))

    def warm_up(self) -> None:
        """Run one batch through the engine and check its shape and range: a model that cannot score
        is refused before it serves anything."""
        ids, mask = pad_batch(self.encoder.encode(list(WARMUP_TEXTS), "right").ids, self.pad_id)
        scores = np.asarray(self.run(ids, mask)[0])
        if scores.shape != (len(WARMUP_TEXTS),) or not all(math.isfinite(s) and -1.0001 <= s <= 1.0001 for s in scores.tolist()):
            raise ModelRefused(f"bundle {self.bundle_id}: warm-up batch gave {scores!r}, not {len(WARMUP_TEXTS)} scores in [-1, 1]")


# Models alive in this process (served, shadow, or retired but still finishing jobs); a gauge reads it.
_alive_count = [0]


def alive_models() -> int:
    return _alive_count[0]


def track(model: ServedModel) -> ServedModel:
    _alive_count[0] += 1
    bid = model.bundle_id
    weakref.finalize(model, _released, bid)
    return model


def _released(bundle_id: str) -> None:
    _alive_count[0] -= 1
    log.info("released model %s (its last job is done)", bundle_id)


def load_model(bundle: GuardBundle | str | Path, build_engine: Callable[[GuardBundle], Engine], *,
               window_overlap: int = -1, max_windows: int, window_tail: int = -1) -> ServedModel:
    """Load and verify a bundle, build its engine and encoder, warm it up. Blocking (run it in an
    executor). A path is resolved first (a symlink flipped later does not change what was verified),
    and every failure is a ModelRefused naming the bundle."""
    try:
        if not isinstance(bundle, GuardBundle):
            bundle = GuardBundle.load(Path(bundle).resolve(strict=True))
        engine = build_engine(bundle)
        encoder = PromptEncoder(bundle.tokenizer_path, bundle.prompt_format, bundle.max_tokens,
                                window_overlap=window_overlap, max_windows=max_windows, window_tail=window_tail)
        provider = getattr(engine, "label", None) or getattr(engine, "provider", "unknown")
        t = engine_thresholds(engine, bundle)
        model = ServedModel(bundle, encoder, engine, provider, t.user, getattr(engine, "expected_fpr", bundle.expected_fpr),
                            {r: v for r, v in (("assistant", t.assistant), ("system", t.system)) if v is not None},
                            bundle.role_features(),
                            t.bands(),
                            bundle.category_head(), getattr(engine, "fpr_curves", None) or bundle.fpr_curves, bundle.flag_gate())
        if not model.role_thresholds:
            log.warning("bundle %s has no assistant or system calibration: only user turns are scored, as before whole-record "
                        "scoring (calibrate roles with `reftguard calibrate --target-fpr-role assistant=0.01 ...`)", bundle.bundle_id)
        model.warm_up()
    except ModelRefused:
        raise
    except Exception as exc:  # missing, half-copied, tampered, unreadable, engine cannot load it
        raise ModelRefused(f"{bundle if isinstance(bundle, (str, Path)) else bundle.root}: {type(exc).__name__}: {exc}") from exc
    return track(model)
