"""Alignment-distillation loss: λ · T² · KL(teacher ‖ student) on reply tokens, with optional top-k targets.

Targets. The teacher's distribution at temperature T, p_t = softmax(z_t / T), is kept either whole
(topk = 0) or as its k most likely tokens plus one "everything else" bucket holding the remaining mass.
The KL is then taken over those k + 1 outcomes, with the student's mass outside the teacher's top k
pooled the same way, so
  * it is exactly the full KL when k covers the vocabulary,
  * it is 0 iff the student matches the teacher on the top k and on the tail mass, for any k,
  * the student is still penalised for putting mass outside the teacher's top k.
Top-k targets are what makes caching affordable: 64 of 49,152 logits per reply token.

The T² factor keeps the gradient scale independent of T (Hinton et al., 2015).

The cache (safetensors) holds the targets of every alignment pair, concatenated in pair order, with
row offsets; its metadata binds it to the teacher, T, k and the exact token ids, so a stale cache is
rebuilt rather than silently reused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

TAIL_FLOOR = -80.0  # log-mass below this is treated as zero (exp(-80) ~ 1e-35); avoids 0 * -inf


@dataclass
class Targets:
    """Teacher targets for n reply tokens: logp [n, k] and idx [n, k] (idx None: full vocabulary), tail [n]."""

    logp: "torch.Tensor"
    idx: "torch.Tensor | None"
    tail: "torch.Tensor | None"

    def __len__(self) -> int:
        return int(self.logp.shape[0])


def teacher_targets(teacher_logits, temperature: float, topk: int) -> Targets:
    """Targets from raw teacher logits [n, vocab]."""
    import torch

    lt = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if topk <= 0 or topk >= lt.shape[-1]:
        return Targets(lt, None, None)
    vals, idx = lt.topk(topk, dim=-1)
    tail = lt.scatter(-1, idx, float("-inf")).logsumexp(-1)
    return Targets(vals, idx, tail)


def kd_loss(student_logits, targets: Targets, temperature: float):
    """T² · mean over tokens of KL(teacher ‖ student) (see the module docstring)."""
    import torch

    ls = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    if targets.idx is None:
        kl = (targets.logp.exp() * (targets.logp - ls)).sum(-1)
    else:
        ls_k = ls.gather(-1, targets.idx)
        ls_tail = ls.scatter(-1, targets.idx, float("-inf")).logsumexp(-1).clamp_min(TAIL_FLOOR)
        t_tail = targets.tail.clamp_min(TAIL_FLOOR)
        kl = (targets.logp.exp() * (targets.logp - ls_k)).sum(-1) + t_tail.exp() * (t_tail - ls_tail)
    return kl.mean() * temperature**2


def concat(parts: list[Targets]) -> Targets:
    import torch

    full = parts[0].idx is None
    return Targets(torch.cat([p.logp for p in parts]), None if full else torch.cat([p.idx for p in parts]),
                   None if full else torch.cat([p.tail for p in parts]))


def pairs_key(pairs) -> str:
    """Hash of the token ids and prompt lengths of the alignment pairs the cache was built for."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.n_prompt, p.ids]).encode())
    return h.hexdigest()[:24]


class LogitCache:
    """Cached top-k teacher targets per alignment pair, stored with safetensors."""

    def __init__(self, per_pair: list[Targets], meta: dict):
        self.per_pair = per_pair
        self.meta = meta

    def batch(self, rows: list[int]) -> Targets:
        return concat([self.per_pair[i] for i in rows])

    def save(self, path: str | Path) -> None:
        import torch
        from safetensors.torch import save_file

        lengths = torch.tensor([len(t) for t in self.per_pair], dtype=torch.int64)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
        allt = concat(self.per_pair)
        tensors = {"logp": allt.logp.contiguous(), "idx": allt.idx.to(torch.int32).contiguous(), "tail": allt.tail.contiguous(), "offsets": offsets}
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata={"reftguard": json.dumps(self.meta, sort_keys=True)})
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, expect: dict) -> "LogitCache | None":
        """The cache at `path` if it was built for `expect` (teacher, T, k, pairs), else None."""
        import torch
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            return None
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("reftguard", "{}"))
            if meta != expect:
                return None
            t = {k: f.get_tensor(k) for k in ("logp", "idx", "tail", "offsets")}
        off = t["offsets"].tolist()
        idx = t["idx"].to(torch.int64)
        per = [Targets(t["logp"][a:b], idx[a:b], t["tail"][a:b]) for a, b in zip(off[:-1], off[1:])]
        return cls(per, meta)
