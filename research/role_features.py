"""Does a refusal feature fitted on each role's own turns read replies and system prompts better than R_l?

R_l was fitted (and the teacher trained) on requests. The method's definition applied per role:
R_role = mean(layer-l state of harmful `role` turns) - mean(of benign ones), fitted on roles-train only,
with the same midpoint centre. Turns are read as content (their text in the user-turn format), as served.

Rule, written before the numbers: adopt per-role features if, on the calib half of roles-dev, the mean over
the two questions below of recall at FPR 2% rises by >= 0.10 over R_l (and AUROC does not fall); then
report both on the report half.
  assistant: innocent_harmful_reply (harmful) against benign_exchange + refusal_example (benign);
  system:    obedient_persona (harmful) against benign_system (benign).

    OMP_NUM_THREADS=2 python -m research.role_features [--out research/results/role_features.json]
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reftguard import evaluation
from reftguard.data import packaged, split_of_key
from reftguard.features import cosine_scores, refusal_feature
from research.cli import parser


def load_shipped_teacher():
    """The packaged teacher, with torch's threads set as the product sets them."""
    from reftguard.default_bundle import shipped_teacher
    from reftguard.modeling.loading import torch_threads
    from reftguard.modeling.teacher import Teacher

    torch_threads()
    return Teacher.load(shipped_teacher())


def decoder_batches(teacher, texts: list[str], num_layers: int):
    """(rows, [layer states for layers 1..num_layers], mask, hidden size) per length-sorted batch of `texts`,
    each in the user-turn format cut on the right, from one torch pass of the teacher."""
    import torch

    from reftguard.encoding import PromptEncoder, length_sorted_batches
    from reftguard.modeling.guard import TruncatedDecoder

    model, _ = teacher.load_model()
    enc = PromptEncoder(teacher.tokenizer_dir / "tokenizer.json", teacher.prompt_format, teacher.max_tokens)
    ids = enc.encode(texts, truncation="right").ids
    dec = TruncatedDecoder(model, num_layers).eval()
    with torch.no_grad():
        for rows, input_ids, mask in length_sorted_batches(ids, 16, 16 * 512):
            mm = torch.from_numpy(mask)
            yield rows, dec(torch.from_numpy(input_ids), mm, collect=True), mm, model.config.hidden_size


def cached(cache: Path, n: int) -> np.ndarray | None:
    """The array saved at `cache` if it holds `n` rows; None when absent or stale (the data file grew)."""
    return np.load(cache) if cache.is_file() and len(np.load(cache, mmap_mode="r")) == n else None


def states(teacher, texts: list[str], cache: Path) -> np.ndarray:
    if (hit := cached(cache, len(texts))) is not None:
        return hit
    from reftguard.modeling.guard import gather_last

    out = None
    for rows, layers, mask, hidden in decoder_batches(teacher, texts, teacher.layer):
        out = np.zeros((len(texts), hidden), dtype=np.float32) if out is None else out
        out[rows] = gather_last(layers[-1], mask).float().numpy()
    np.save(cache, out)
    return out


def main(argv=None) -> int:
    args = parser(__doc__, "research/results/role_features.json", "runs/rf", bundle=False).parse_args(argv)
    teacher = load_shipped_teacher()
    rows = {name: [json.loads(line) for line in packaged(f"{name}.jsonl").read_text().splitlines() if line.strip()]
            for name in ("roles-train", "roles-dev")}
    h = {name: states(teacher, [r["text"] for r in rs], Path(args.cache) / f"{name}.npy") for name, rs in rows.items()}
    r_l, c_l = teacher.refusal_feature, teacher.center
    result: dict = {"rule": __doc__.split("Rule, written before the numbers: ")[1].split("\n\n")[0]}
    for role in ("assistant", "system"):
        tr = [i for i, r in enumerate(rows["roles-train"]) if r["role"] == role]
        y_tr = np.array([rows["roles-train"][i]["label"] == "harmful" for i in tr], dtype=np.int64)
        r_role, c_role = refusal_feature(h["roles-train"][tr], y_tr, "midpoint")
        result[role] = {"cos_r_l": float(r_role @ r_l / np.linalg.norm(r_role) / np.linalg.norm(r_l))}
        for half in ("calib", "report"):
            dv = [i for i, r in enumerate(rows["roles-dev"]) if r["role"] == role and split_of_key(r.get("group") or r["id"]) == half]
            y = np.array([rows["roles-dev"][i]["label"] == "harmful" for i in dv], dtype=np.int64)
            x = h["roles-dev"][dv]
            out = {"n_pos": int(y.sum()), "n_neg": int((1 - y).sum())}
            for name, (r, c) in (("r_l", (r_l, c_l)), ("r_role", (r_role, c_role))):
                s = cosine_scores(x, r, c)
                out[name] = {"auroc": evaluation.auroc(s, y), "recall_at_2pct_fpr": evaluation.recall_at_fpr(s, y, 0.02)}
            result[role][half] = out
    gain = np.mean([result[k]["calib"]["r_role"]["recall_at_2pct_fpr"] - result[k]["calib"]["r_l"]["recall_at_2pct_fpr"] for k in ("assistant", "system")])
    result["calib_mean_recall_gain"] = float(gain)
    result["adopt"] = bool(gain >= 0.10 and all(result[k]["calib"]["r_role"]["auroc"] >= result[k]["calib"]["r_l"]["auroc"] for k in ("assistant", "system")))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
