"""Why does alignment distillation (d) lose to hard-label SFT (c) on harmfulness (#37)? Diagnose first.

On the alignment data the distillation reads (`reftguard make-data`: harmful prompts with written refusals,
benign prompts with the starting model's replies), teacher-forced on those replies, per teacher:
- how much of a refusal the soft labels carry: the probability of the refusal's first token, the mean
  per-token probability of the whole refusal, and the share of refusal tokens that are the teacher's top-1,
  at T = 1 and at the distillation's T (2);
- the loss the student starts from: T^2 * KL(teacher || student) over the reply tokens with the
  distillation's top-k pooling, on harmful and on benign pairs;
- free-running: the share of the harmful alignment prompts the teacher itself refuses (greedy, judge).
Hard-label SFT's target is probability 1 on every refusal token; the student (the starting model) is the
other end. Where the teacher sits between them says how hard distillation can pull towards refusing.

    OMP_NUM_THREADS=1 python -m research.distill_diagnosis --teacher shipped=reftguard/data/default_teacher
"""
from __future__ import annotations

import argparse
import json
import logging
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path

import numpy as np

from reftguard.encoding import PromptEncoder
from reftguard.modeling.loading import load_causal_lm
from reftguard.modeling.teacher import Teacher
from reftguard.prompt import PromptFormat
from reftguard.training import kd, sft
from reftguard.training.distill import load_pairs
from reftguard.training.generation import greedy_replies
from reftguard.training.judge import is_refusal
from reftguard.training.pipeline_data import DataConfig, make_data

log = logging.getLogger("research.distill_diagnosis")


def reply_logits(lm, pairs, pad: int, batch: int = 8):
    """Per pair: (logits [n_reply, vocab], target ids [n_reply]) under teacher forcing."""
    import torch

    out = []
    with torch.no_grad():
        for k in range(0, len(pairs), batch):
            chunk = pairs[k : k + batch]
            ids, mask, labels = (torch.from_numpy(a) for a in sft.collate(chunk, pad))
            logits, target = sft.reply_logits(lm, ids, mask, labels)
            off = 0
            for p in chunk:
                n = len(p.ids) - p.n_prompt
                out.append((logits[off : off + n].float(), target[off : off + n]))
                off += n
    return out


def refusal_mass(per_pair, temperature: float) -> dict:
    import torch

    first, mean_p, top1 = [], [], []
    for logits, target in per_pair:
        p = torch.softmax(logits / temperature, -1)
        pt = p.gather(1, target[:, None])[:, 0]
        first.append(float(pt[0]))
        mean_p.append(float(pt.mean()))
        top1.append(float((logits.argmax(-1) == target).float().mean()))
    return {"first_token_p": float(np.mean(first)), "mean_token_p": float(np.mean(mean_p)), "top1_share": float(np.mean(top1))}


def start_kl(teacher, student, temperature: float, topk: int) -> float:
    import torch

    losses = [float(kd.kd_loss(s_logits, kd.teacher_targets(t_logits, temperature, topk), temperature))
              for (t_logits, _), (s_logits, _) in zip(teacher, student)]
    return float(torch.tensor(losses).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", action="append", default=[], help="NAME=DIR (repeatable).")
    ap.add_argument("--data-dir", default="runs/distill-diag/data")
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--topk", type=int, default=64)
    ap.add_argument("--reply-tokens", type=int, default=48)
    ap.add_argument("--out", default="research/results/distill_diagnosis.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    align = Path(args.data_dir) / "align.jsonl"
    if not align.is_file():  # the pipeline's own alignment data (seed 0); general instructions are not needed here
        make_data(DataConfig(data_dir=args.data_dir, n_general=0, n_benign_eval=2))
    ids, prompts, replies = load_pairs(align)
    labels = [json.loads(line)["label"] for line in align.read_text().splitlines()]
    student, tok = load_causal_lm("packaged:smollm2")
    tok_dir = Path(args.data_dir).parent / "tokenizer"
    tok.save_pretrained(tok_dir)
    enc = PromptEncoder(tok_dir / "tokenizer.json", PromptFormat.from_hf_tokenizer(tok), 256)
    pairs = sft.encode_pairs(enc, prompts, replies, sft.turn_end(tok), args.reply_tokens)
    harm = [i for i, lab in enumerate(labels) if lab == "harmful"]
    ben = [i for i, lab in enumerate(labels) if lab == "benign"]
    pad = tok.pad_token_id
    s_out = reply_logits(student, pairs, pad)
    models = {"student (starting model)": (student, s_out)}
    for spec in args.teacher:
        name, _, d = spec.partition("=")
        lm, _ = Teacher.load(Path(d)).load_model()
        models[name] = (lm, reply_logits(lm, pairs, pad))
    result = {"n_harmful": len(harm), "n_benign": len(ben), "temperature": args.temperature, "topk": args.topk, "models": {}}
    harmful_prompts = [enc.encode([prompts[i]], truncation="right").ids[0] for i in harm]
    for name, (lm, out) in models.items():
        row = {f"refusal_T{t:g}": refusal_mass([out[i] for i in harm], t) for t in (1.0, args.temperature)}
        if out is not s_out:
            row["start_kl_harmful"] = start_kl([out[i] for i in harm], [s_out[i] for i in harm], args.temperature, args.topk)
            row["start_kl_benign"] = start_kl([out[i] for i in ben], [s_out[i] for i in ben], args.temperature, args.topk)
        greedy = greedy_replies(lm, tok, harmful_prompts, args.reply_tokens)
        row["greedy_refusal_rate_harmful"] = float(np.mean([is_refusal(r) for r in greedy]))
        result["models"][name] = row
        log.info("%s: %s", name, json.dumps(row))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
