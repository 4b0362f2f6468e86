"""Greedy replies of the packaged *starting* model (SmolLM2-135M-Instruct, no adapter) to a seeded
sample of packaged prompts: the raw material of the whole-record data (scripts/build_record_data.py).

That model complies with most harmful requests, so its replies to them are realistic "the assistant did
what was asked" turns; its replies to benign prompts are ordinary helpful turns. Train prompts come only
from training files and dev prompts only from dev files, so every record built from them inherits its
prompt's side of the split (and, for dev, its calib/report half).

Resumable: rows already in --out are kept and skipped. Run it in the background with one thread:
    OMP_NUM_THREADS=1 python scripts/generate_replies.py --out scripts/data/replies-smollm2.jsonl
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

# (file, label, kinds, how many): the sample per side. Seeded by id hash, so it is stable across runs.
PLAN = {
    "train": [
        # 260 and 220 at first; raised so the reply feature has more hand-read harmful replies to fit on
        ("guard-train.jsonl", "harmful", ("direct", "rephrased"), 560),
        ("guard-train-extra.jsonl", "harmful", ("direct", "disguised"), 300),
        ("guard-train.jsonl", "benign", ("chat", "task", "instruction", "hard_negative"), 120),
        ("guard-train-extra.jsonl", "benign", ("instruction", "hard_negative"), 260),
    ],
    "dev": [
        ("guard-dev.jsonl", "harmful", ("direct", "rephrased"), 200),
        ("handwritten-dev.jsonl", "harmful", ("disguised",), 30),
        ("guard-dev.jsonl", "benign", ("chat", "task", "instruction", "hard_negative"), 80),
        ("handwritten-dev.jsonl", "benign", ("instruction", "hard_negative"), 120),
    ],
}


def _rank(pid: str) -> str:
    return hashlib.sha256(f"replies:{pid}".encode()).hexdigest()


def sample(plan=PLAN) -> list[dict]:
    from reftguard.data import packaged

    rows = []
    for side, entries in plan.items():
        for name, label, kinds, n in entries:
            recs = [json.loads(l) for l in packaged(name).read_text(encoding="utf-8").splitlines() if l.strip()]
            pool = sorted((r for r in recs if r["label"] == label and r.get("kind") in kinds), key=lambda r: _rank(r["id"]))
            for r in pool[:n]:
                rows.append({"id": r["id"], "file": name, "side": side, "label": label, "kind": r.get("kind", ""),
                             "category": r.get("category", ""), "text": r["text"]})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSONL to append replies to (resumable)")
    ap.add_argument("--max-new-tokens", type=int, default=96, help="reply length cap, in tokens")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--limit", type=int, default=0, help="only the first N missing prompts (a smoke run)")
    args = ap.parse_args(argv)

    import torch

    from reftguard.modeling.loading import PACKAGED, load_causal_lm
    from reftguard.training.generation import greedy_replies

    out = Path(args.out)
    done = set()
    if out.is_file():
        done = {json.loads(l)["id"] for l in out.read_text(encoding="utf-8").splitlines() if l.strip()}
    todo = [r for r in sample() if r["id"] not in done]
    if args.limit:
        todo = todo[: args.limit]
    print(f"{len(done)} done, {len(todo)} to generate", file=sys.stderr)
    if not todo:
        return 0
    torch.manual_seed(0)
    model, tok = load_causal_lm(PACKAGED)
    chunk = args.batch_size * 4  # write often, so a killed run loses little
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        texts = [tok.apply_chat_template([{"role": "user", "content": r["text"]}], tokenize=False, add_generation_prompt=True) for r in part]
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        replies = greedy_replies(model, tok, ids, args.max_new_tokens, args.batch_size)
        with open(out, "a", encoding="utf-8") as f:
            for r, reply in zip(part, replies):
                f.write(json.dumps({**r, "reply": reply, "generator": "smollm2-135m-instruct-q4_1:greedy"}, ensure_ascii=False) + "\n")
        print(f"{start + len(part)}/{len(todo)}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
