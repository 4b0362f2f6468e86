"""The teacher directory: what `fit` and `train-teacher` write and `export` reads.

    teacher.json           model reference, layer, centre, prompt format, fit/training record
    refusal_feature.npy    R_l (float32 [hidden])
    center.npy             the centre c subtracted before the cosine (zeros for the plain cosine)
    tokenizer/             the tokenizer as saved by transformers (tokenizer.json is what serving uses)
    adapter/               optional LoRA adapter (peft), merged into the model at export
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reftguard.prompt import PromptFormat

META = "teacher.json"


@dataclass
class Teacher:
    model: str  # reference loadable by reftguard.modeling.loading.load_causal_lm
    layer: int
    hidden_size: int
    num_layers: int
    prompt_format: PromptFormat
    max_tokens: int
    refusal_feature: np.ndarray
    center: np.ndarray
    center_kind: str = "none"
    kind: str = "zero-training"
    adapter: str | None = None  # relative path of a peft adapter inside the teacher dir
    record: dict = field(default_factory=dict)  # fit table, training log summary, data hashes
    root: Path | None = None

    def save(self, root: str | Path) -> Path:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        np.save(root / "refusal_feature.npy", self.refusal_feature.astype(np.float32), allow_pickle=False)
        np.save(root / "center.npy", self.center.astype(np.float32), allow_pickle=False)
        meta = {k: v for k, v in asdict(self).items() if k not in ("refusal_feature", "center", "root")}
        meta["prompt_format"] = self.prompt_format.to_dict()
        (root / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        self.root = root
        return root

    @classmethod
    def load(cls, root: str | Path) -> "Teacher":
        root = Path(root)
        if not (root / META).is_file():
            raise FileNotFoundError(f"{root} is not a teacher directory ({META} missing); create one with `reftguard fit`")
        meta: dict[str, Any] = json.loads((root / META).read_text())
        meta["prompt_format"] = PromptFormat.from_dict(meta["prompt_format"])
        return cls(
            **meta,
            refusal_feature=np.load(root / "refusal_feature.npy", allow_pickle=False),
            center=np.load(root / "center.npy", allow_pickle=False),
            root=root,
        )

    @property
    def tokenizer_dir(self) -> Path:
        assert self.root is not None
        return self.root / "tokenizer"

    def load_model(self):
        """(model, tokenizer) with the LoRA adapter merged if there is one."""
        from reftguard.modeling.loading import load_merged

        assert self.root is not None or not self.adapter
        return load_merged(self.model, self.root / self.adapter if self.adapter else None)
