"""ReFT teacher training: SFT (refuse harmful, keep benign replies) plus a refusal-feature regulariser at
layer l, with R_l re-estimated from the current model during training.

Recipe, top to bottom (one file on purpose, in the nanoGPT / torchtune style):
  1. load the starting causal LM, derive the serving prompt format, split the training file into a fit
     split and a held-back split (never dev data);
  2. choose the layer (fixed, or by the zero-training table on the fit probe vs the held split);
  3. build SFT pairs: harmful -> one of a varied set of refusals; benign -> the record's reply, else the
     starting model's greedy reply (generated once, cached in the output directory);
  4. wrap the model in LoRA (peft) or train it fully; AdamW with a linear warm-up;
  5. every step: a balanced, length-bucketed batch for the regulariser (forward through layers[:l] only)
     and one for SFT (full model, loss on reply tokens only);
  6. every K steps: re-estimate R_l and the centre from the current model on a fixed probe subset
     (no gradient flows into R_l; optional EMA) and log the drift;
  7. every N steps: log losses, mean cosines and AUROC on the held-back split; checkpoint;
  8. save the teacher directory (adapter, R_l from the final model, log, plot) for `reftguard export`.

Stage 2 (`--init-teacher DIR`, optional): the guard reads layers[:l] only, the teacher's replies come from
all layers. Starting from a trained teacher, its adapter is loaded and frozen on layers[:l], its R_l and
centre are kept, and new LoRA on layers l.. is trained with SFT (and the retain term) alone. The teacher's
replies change (e.g. it stops refusing benign questions about itself) while its layer-l states, and so
every guard score of its bundle, stay exactly those of the stage-1 teacher.

The regulariser. With R = R_l (a constant between refreshes) and c the centre, s = cos(h_l - c, R) is
exactly the score the exported guard computes. The loss is a logistic loss on the scaled cosine,
    L_reg = BCE(sigmoid(scale * (s - t - margin * (2y - 1))), y),
where t is the midpoint of the harmful and benign mean scores on the probe at the last refresh. It
raises s on harmful and lowers it on benign prompts. We prefer it to a hinge because every example keeps
a (shrinking) gradient, so the tails that decide recall at 1% FPR keep being pushed after the bulk is
separated; `scale` sets how soft the decision is and `margin` shifts the targets apart.

Reproducibility: every random choice at step s is drawn from a generator seeded by (seed, s, rank), the
learning rate is a function of s, and checkpoints carry the trainable weights, the optimizer and the
R_l state, so a resumed run equals an uninterrupted one.

Multi-GPU: `accelerate launch -m reftguard.cli train-teacher ...` works because we use accelerate
thinly: `Accelerator` gives the device and rank, each rank draws its own batches, and gradients of the
trainable parameters are averaged with `accelerator.reduce` (we do not wrap the model in DDP because the
regulariser runs submodules of it directly).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from reftguard import evaluation
from reftguard.config import option, portable
from reftguard.training.common import (LoraOptions, OptimOptions, RunLog, RunOptions, accelerator, checkpoint_and_stop, compact_tokenizer,
                                       config_key, log_step, lr_at, optimizer_step, plot, progress, resume_checkpoint, save_trainable,
                                       setup_model, step_rng)
from reftguard.data import data_hash, holdout_split, load_labeled
from reftguard.encoding import PromptEncoder, pad_batch
from reftguard.features import CENTERS, cosine_scores, refusal_feature
from reftguard.prompt import PromptFormat

log = logging.getLogger("reftguard.teacher_train")

LOG_FILE = "train_log.jsonl"
STAGE1_LOG_FILE = "stage1_train_log.jsonl"
PLOT_FILE = "train_curves.png"
CHECKPOINT = "checkpoint.pt"
REPLY_CACHE = "benign_replies.jsonl"


@dataclass
class TrainConfig(OptimOptions, LoraOptions, RunOptions):
    model: str = option("packaged:smollm2", "Starting causal LM: local directory, hub id, .gguf file, or packaged:smollm2.")
    data: list = option([], "Labeled training JSONL file(s). Never pass dev data: it is for evaluation only.")
    out: str = option("teacher", "Teacher directory to write (adapter, R_l, log, plot, checkpoint).")
    layer: int = option(16, "Layer l of the refusal feature; 0 picks it by the zero-training table (held-out AUROC).")
    max_layer: int = option(20, "With --layer 0: consider layers 1..max_layer (lower layers train and serve faster).")
    center: str = option("midpoint", "Centre subtracted before the cosine: 'midpoint' of the class means or 'none'.", choices=CENTERS)
    steps: int = option(120, "Optimizer steps.")
    lora_all_layers: bool = option(False, "Put LoRA on every decoder layer; by default only on layers below l, which is all the guard reads and keeps the adapter small.")
    reg_weight: float = option(1.0, "Weight of the refusal-feature regulariser (0 = SFT only).")
    reg_scale: float = option(10.0, "Scale of the cosine inside the logistic regulariser (higher = harder decision).")
    reg_margin: float = option(0.0, "Push harmful scores above t+margin and benign below t-margin.")
    reg_per_class: int = option(8, "Harmful and benign prompts per regulariser batch (each).")
    hard_negative_share: float = option(0.0, "Share of every benign draw (regulariser batches, R_l probe, SFT pool) taken from benign prompts of kind 'hard_negative': safe prompts that sound unsafe are rare in the data but decide the false-positive rate on them.")
    sft_weight: float = option(0.5, "Weight of the SFT loss on replies (0 = regulariser only).")
    sft_per_class: int = option(1, "Harmful and benign pairs per SFT batch (each).")
    sft_benign_ratio: int = option(1, "Benign SFT pairs per step = this x sft_per_class: more helpful pairs keep the teacher from refusing benign prompts.")
    sft_written_per_step: int = option(0, "SFT pairs per step drawn from the records that carry a written reply (e.g. the persona set), on top of the benign ones; they get no retain term, since their written reply, not the starting model's, is the target. 0 = they are drawn with the other benign pairs (and retained).")
    retain_weight: float = option(0.0, "Weight of a KL term on benign SFT pairs that keeps the teacher's next-token distribution equal to the starting model's (LoRA switched off): the teacher keeps answering what the starting model answered, rather than refusing benign prompts that resemble harmful ones. LoRA only.")
    drop_refused_replies: bool = option(False, "Leave out benign SFT pairs whose starting-model reply is a refusal (it would teach the teacher to refuse benign prompts).")
    sft_pool: int = option(64, "Benign prompts that get an SFT reply (greedy replies cost generation time once).")
    reply_tokens: int = option(32, "Longest reply in tokens, for SFT targets and generated benign replies.")
    sft_max_tokens: int = option(256, "Longest SFT prompt in tokens (template included); longer ones are cut.")
    reply_cache: str = option("", "Benign-reply cache file (default: OUT/benign_replies.jsonl); share it between runs of the same model.")
    refresh_every: int = option(20, "Re-estimate R_l and the centre every K steps from the current model.")
    ema: float = option(0.0, "EMA weight of the previous R_l at a refresh (0 = replace it with the new estimate).")
    probe_size: int = option(160, "Fixed, balanced probe subset of the fit split used to re-estimate R_l.")
    holdout: float = option(0.15, "Fraction of the training file held back for the AUROC log (and the layer choice).")
    eval_size: int = option(200, "At most this many held-back prompts are scored at each evaluation.")
    eval_every: int = option(40, "Score the held-back split every this many steps (and at the end).")
    log_every: int = option(10, "Write a log row (losses, mean cosines) every this many steps.")
    final_size: int = option(600, "The saved R_l is estimated on this many fit-split prompts (balanced; more = less noise, slower).")
    max_tokens: int = option(512, "Longest prompt for the regulariser and the saved teacher (template included).")
    batch_size: int = option(32, "Prompts per no-grad forward batch (refreshes, evaluation).")
    seed: int = option(0, "Seed of the split, the probe, the batches and the LoRA initialisation.")
    reply_data: list = option([], "Labeled role-turn JSONL file(s) (e.g. roles-train.jsonl) whose assistant turns join the regulariser, read as served (the reply's content as a user turn): harmful replies pushed towards R_l, benign replies and refusals away. They are not SFT pairs and do not move the R_l probe. Never pass dev data.")
    reply_per_class: int = option(4, "With --reply-data: harmful and benign replies added to every regulariser batch (each; half of the benign ones refusals).")
    init_teacher: str = option("", "Stage 2: start from this trained LoRA teacher, keep its adapter (frozen) on the layers below l and its R_l, and train new LoRA on layers l and above with SFT and --retain-weight only (needs --reg-weight 0). Changes the teacher's replies, not its guard scores.")


QUICK = dict(steps=40, lr=5e-4, reg_per_class=6, sft_per_class=2, sft_pool=48, reply_tokens=32, sft_max_tokens=160, probe_size=128,
             eval_size=200, eval_every=30, refresh_every=15, final_size=128, checkpoint_every=0, max_tokens=256)


# ---------------------------------------------------------------------------------------------- data


class BalancedLengthSampler:
    """Per step: a fixed number of rows from each stratum (harmful, benign, ...), all of similar length.

    Each stratum is sorted by length; a step draws one quantile q and samples every stratum from a window
    of its sorted rows around q. Batches are then short or long as a whole, which keeps padding (and the
    step time) low, while all strata cover all lengths over the run. `counts` maps stratum -> rows per
    batch; by default the strata are the labels and each gives `per_class` rows.
    """

    def __init__(self, lengths: list[int], labels: list[int], per_class: int, window: int = 48, counts: dict[int, int] | None = None):
        counts = dict(counts or {1: per_class, 0: per_class})
        self.window = window
        self.sorted = {y: sorted((i for i, v in enumerate(labels) if v == y), key=lambda i: lengths[i]) for y in counts}
        if not self.sorted.get(1) or not any(self.sorted[y] for y in counts if y != 1):
            raise ValueError("training data needs both harmful and benign prompts")
        for y in (0, HARD):  # a benign stratum with no rows hands its share to the other one
            other = HARD if y == 0 else 0
            if counts.get(y) and not self.sorted[y] and other in counts:
                counts[other] += counts.pop(y)
        self.counts = counts

    def batch(self, rng: np.random.Generator) -> list[int]:
        q = rng.random()
        rows: list[int] = []
        for y, n in self.counts.items():
            pool = self.sorted[y]
            if not pool or n <= 0:
                continue
            w = min(len(pool), max(self.window, n))
            start = min(int(q * len(pool)), len(pool) - w)
            pick = rng.choice(w, size=min(n, w), replace=False)
            rows += [pool[start + int(j)] for j in pick]
        return rows


HARD = 2  # stratum of benign hard negatives (labels are 1 harmful, 0 benign)
WRITTEN = 3  # SFT stratum of benign pairs whose target is a written reply (--sft-written-per-step)


def strata(prompts, y: np.ndarray) -> np.ndarray:
    """Label per row, with benign prompts of kind 'hard_negative' put in their own stratum HARD."""
    return np.array([HARD if (y[i] == 0 and p.kind == "hard_negative") else int(y[i]) for i, p in enumerate(prompts)])


def split_counts(per_class: int, share: float, benign_per_class: int | None = None) -> dict[int, int]:
    """Rows per stratum: per_class harmful; the benign rows split between hard negatives and the rest."""
    ben = per_class if benign_per_class is None else benign_per_class
    hard = int(round(ben * share))
    return {1: per_class, 0: ben - hard, HARD: hard}


def subset(pool: list[int], size: int, seed: int, stream: int) -> list[int]:
    """A fixed random subset of `pool` (sorted), the same for every run with this seed."""
    rng = np.random.default_rng([seed, stream])
    return sorted(rng.choice(pool, size=min(size, len(pool)), replace=False).tolist())


def balanced_subset(idx: list[int], labels: np.ndarray, size: int, seed: int, hard: np.ndarray | None = None, share: float = 0.0) -> list[int]:
    """Up to size/2 harmful and size/2 benign rows of `idx`, fixed by the seed; with `hard` (the strata of
    `strata()`) and `share` > 0, that share of the benign half is hard negatives."""
    if hard is None or share <= 0:
        return [i for y in (1, 0) for i in subset([i for i in idx if labels[i] == y], size // 2, seed, 7 + y)]
    counts = split_counts(size // 2, share)
    return sorted(i for y, n in counts.items() for i in subset([i for i in idx if hard[i] == y], n, seed, 7 + y))


# ------------------------------------------------------------------------------------- the regulariser


def regulariser_loss(scores, labels, threshold: float, scale: float, margin: float):
    """Logistic loss on scale * (cos - t), with the targets pushed `margin` apart (see module docstring)."""
    import torch.nn.functional as F

    y = labels.float()
    return F.binary_cross_entropy_with_logits(scale * (scores - threshold - margin * (2 * y - 1)), y)


@dataclass
class FeatureState:
    """R_l, the centre and the decision midpoint t; refreshed from the model, never trained by gradient."""

    r: np.ndarray
    c: np.ndarray
    t: float
    refreshes: int = 0
    last_drift: float = 1.0

    def to_dict(self) -> dict:
        return {"r": self.r.tolist(), "c": self.c.tolist(), "t": self.t, "refreshes": self.refreshes, "last_drift": self.last_drift}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureState":
        return cls(np.asarray(d["r"], np.float32), np.asarray(d["c"], np.float32), float(d["t"]), int(d["refreshes"]), float(d["last_drift"]))


def layer_states(lm, ids: list[list[int]], layer: int, batch_size: int, pad_id: int) -> np.ndarray:
    """[n, hidden] last-token states after `layer` layers, in eval mode and without gradient."""
    from reftguard.training.fit import collect_states

    was_training = lm.training
    lm.eval()
    try:
        return collect_states(lm, ids, layer, batch_size, pad_id)[:, layer - 1]
    finally:
        lm.train(was_training)


def class_cosines(h: np.ndarray, y: np.ndarray, r: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    """(harmful, benign) mean guard score of the states `h` against R_l = r, centre c."""
    s = cosine_scores(h, r, c)
    return float(s[y == 1].mean()), float(s[y == 0].mean())


def refresh(state: FeatureState | None, h: np.ndarray, y: np.ndarray, center: str, ema: float) -> tuple[FeatureState, dict]:
    r, c = refusal_feature(h, y, center)
    drift = 1.0
    if state is not None:
        drift = float(np.dot(state.r, r) / max(np.linalg.norm(state.r) * np.linalg.norm(r), 1e-12))
        r = ema * state.r + (1.0 - ema) * r
        c = ema * state.c + (1.0 - ema) * c
    mh, mb = class_cosines(h, y, r, c)
    new = FeatureState(r.astype(np.float32), c.astype(np.float32), (mh + mb) / 2.0, (state.refreshes + 1) if state else 0, drift)
    # The first estimate has no predecessor: its drift is logged as null, not as a perfect 1.
    return new, {"refresh": new.refreshes, "drift": drift if state is not None else None, "probe_harmful_cos": mh, "probe_benign_cos": mb}


def held_metrics(h: np.ndarray, y: np.ndarray, state: FeatureState) -> dict:
    s = cosine_scores(h, state.r, state.c)
    return {"held_auroc": evaluation.auroc(s, y), "held_recall_at_1pct_fpr": evaluation.recall_at_fpr(s, y, 0.01)}


# ------------------------------------------------------------------------------------------- the loop


@dataclass
class TeacherData:
    """The training file encoded as served, and its fixed row subsets (indices into `prompts`)."""

    prompts: list
    y: np.ndarray  # 1 harmful, 0 benign
    hard: np.ndarray  # strata(): benign hard negatives in their own stratum
    ids: list[list[int]]
    fmt: PromptFormat
    pad: int
    fit_idx: list[int]
    held_idx: list[int]  # held back: the AUROC log and the layer choice, never trained on
    probe_idx: list[int]  # fixed, balanced subset of fit_idx that R_l is re-estimated on
    eval_idx: list[int]  # balanced subset of held_idx scored at each evaluation
    reply_ids: list[list[int]]  # --reply-data: assistant turns encoded as a user turn (the served reading)
    reply_y: np.ndarray
    reply_strata: np.ndarray  # 1 harmful, 0 benign reply, HARD refusal
    reply_hash: str | None

    @classmethod
    def load(cls, cfg: TrainConfig, out: Path, tok) -> "TeacherData":
        from reftguard.training.fit import encode_texts

        tok.save_pretrained(out / "tokenizer")
        compact_tokenizer(out / "tokenizer")
        fmt = PromptFormat.from_hf_tokenizer(tok)
        prompts = load_labeled(cfg.data)
        y = np.array([p.label for p in prompts])
        ids = encode_texts(out / "tokenizer", fmt, cfg.max_tokens, [p.text for p in prompts])
        fit_idx, held_idx = holdout_split(prompts, cfg.holdout, cfg.seed)
        hard = strata(prompts, y)
        probe_idx = balanced_subset(fit_idx, y, cfg.probe_size, cfg.seed, hard, cfg.hard_negative_share)
        eval_idx = balanced_subset(held_idx, y, cfg.eval_size, cfg.seed)
        replies = [p for p in load_labeled(cfg.reply_data) if p.role == "assistant"] if cfg.reply_data else []
        if cfg.reply_data and len({p.label for p in replies}) < 2:
            raise ValueError("--reply-data needs harmful and benign assistant turns")
        reply_y = np.array([p.label for p in replies], dtype=np.int64)
        reply_strata = np.array([HARD if p.kind == "refusal_example" else int(p.label) for p in replies], dtype=np.int64)
        reply_ids = encode_texts(out / "tokenizer", fmt, cfg.max_tokens, [p.text for p in replies]) if replies else []
        return cls(prompts, y, hard, ids, fmt, tok.pad_token_id, fit_idx, held_idx, probe_idx, eval_idx,
                   reply_ids, reply_y, reply_strata, data_hash(replies) if replies else None)

    def rows(self, idx: list[int]) -> list[list[int]]:
        return [self.ids[i] for i in idx]


def choose_layer(cfg: TrainConfig, lm, d: TeacherData) -> tuple[int, list | None]:
    """cfg.layer, or (with --layer 0) the best layer of the zero-training table: fit on the probe,
    scored on the held-back eval subset."""
    from reftguard.training.fit import collect_states, layer_table

    n_layers = int(lm.config.num_hidden_layers)
    layer, table = cfg.layer, None
    if layer == 0:
        top = min(cfg.max_layer or n_layers, n_layers)
        st = np.concatenate([collect_states(lm, d.rows(d.probe_idx), top, cfg.batch_size, d.pad),
                             collect_states(lm, d.rows(d.eval_idx), top, cfg.batch_size, d.pad)])
        ysel = np.concatenate([d.y[d.probe_idx], d.y[d.eval_idx]])
        table = layer_table(st, ysel, list(range(len(d.probe_idx))), list(range(len(d.probe_idx), len(ysel))), cfg.center)
        layer = max(table, key=lambda r: (r["auroc"] or 0.0, r["recall_at_1pct_fpr"] or 0.0))["layer"]
        log.info("layer %d chosen by the zero-training table (held AUROC %.4f)", layer, table[layer - 1]["auroc"])
    if not 1 <= layer <= n_layers:
        raise ValueError(f"layer {layer} is out of range 1..{n_layers}")
    return layer, table


def build_sft_pairs(cfg: TrainConfig, out: Path, lm, tok, d: TeacherData) -> tuple[list, list[int]]:
    """(pairs, labels): every harmful fit prompt -> a refusal; a benign pool -> its own or the starting
    model's greedy reply (refusals optionally left out). Every benign fit record that carries a written
    reply joins the pool on top of the drawn sample: a written reply is SFT data by intent (e.g. the
    persona set, whose questions the starting model answers with refusals)."""
    from reftguard.training import sft
    from reftguard.training.generation import record_replies

    enc_sft = PromptEncoder(out / "tokenizer" / "tokenizer.json", d.fmt, cfg.sft_max_tokens)
    harm = [i for i in d.fit_idx if d.y[i] == 1]
    ben = [i for i in balanced_subset(d.fit_idx, d.y, 2 * cfg.sft_pool, cfg.seed + 11, d.hard, cfg.hard_negative_share) if d.y[i] == 0]
    own = record_replies(cfg.data)
    drawn = set(ben)
    ben += [i for i in d.fit_idx if d.y[i] == 0 and d.prompts[i].id in own and i not in drawn]
    ben_replies = _benign_replies(cfg, out, lm, tok, enc_sft, d.prompts, ben, own)
    if cfg.drop_refused_replies:
        from reftguard.training.judge import is_refusal

        keep = [k for k, r in enumerate(ben_replies) if not is_refusal(r)]
        log.info("benign SFT pool: %d of %d starting-model replies are refusals and are left out", len(ben) - len(keep), len(ben))
        ben, ben_replies = [ben[k] for k in keep], [ben_replies[k] for k in keep]
    texts = [d.prompts[i].text for i in harm + ben]
    replies = [sft.refusal_for(d.prompts[i].id, cfg.seed) for i in harm] + ben_replies
    written = WRITTEN if cfg.sft_written_per_step > 0 else 0
    labels = [1] * len(harm) + [written if d.prompts[i].id in own else 0 for i in ben]
    return sft.encode_pairs(enc_sft, texts, replies, sft.turn_end(tok), cfg.reply_tokens), labels


def make_sft_sampler(cfg: TrainConfig, pairs: list, labels: list[int]) -> BalancedLengthSampler:
    """Per SFT step: sft_per_class refusals, sft_per_class x sft_benign_ratio benign pairs and, when the
    written-reply pairs have their own stratum, sft_written_per_step of those."""
    counts = {1: cfg.sft_per_class, 0: cfg.sft_per_class * cfg.sft_benign_ratio}
    if WRITTEN in labels:
        counts[WRITTEN] = cfg.sft_written_per_step
    return BalancedLengthSampler([len(p.ids) for p in pairs], labels, cfg.sft_per_class, counts=counts)


def regulariser_step(decoder, ids: list[list[int]], y: np.ndarray, pad: int, state: FeatureState, cfg: TrainConfig, run: RunLog):
    """L_reg on one batch of encoded rows `ids` with labels `y`: the guard's cosine at layer l (through
    `decoder`, the LoRA-wrapped layers[:l]) against the current R_l, centre and midpoint."""
    import torch

    from reftguard.modeling.guard import cosine, gather_last

    dev = next(decoder.parameters()).device
    input_ids, mask = (torch.from_numpy(a).to(dev) for a in pad_batch(ids, pad))
    h = gather_last(decoder(input_ids, mask), mask)
    yb = torch.from_numpy(y).to(dev)
    s = cosine(h, torch.from_numpy(state.r).to(dev), torch.from_numpy(state.c).to(dev))
    reg = regulariser_loss(s, yb, state.t, cfg.reg_scale, cfg.reg_margin)
    run.add(reg_loss=reg.item(), batch_harmful_cos=s[yb == 1].mean().item(), batch_benign_cos=s[yb == 0].mean().item())
    return reg


def fit_sampler(d: TeacherData, per_class: int, share: float) -> BalancedLengthSampler:
    """Regulariser rows of the fit split (indices into `d.fit_idx`): per_class harmful, as many benign,
    `share` of those hard negatives."""
    return BalancedLengthSampler([len(d.ids[i]) for i in d.fit_idx], [int(d.hard[i]) for i in d.fit_idx], per_class,
                                 counts=split_counts(per_class, share))


def reply_sampler(d: TeacherData, per_class: int) -> BalancedLengthSampler | None:
    """--reply-data rows per regulariser batch: per_class harmful replies, as many benign, half of them refusals
    (a refusal names the harm it refuses, so it is the reply's hard negative)."""
    if not d.reply_ids or per_class <= 0:
        return None
    return BalancedLengthSampler([len(r) for r in d.reply_ids], d.reply_strata.tolist(), per_class, counts=split_counts(per_class, 0.5))


def retain_loss(t, logits, input_ids, mask, labels, rows):
    """KL(starting model || teacher) of the next-token distributions at the reply positions of the batch
    rows `rows` (a bool mask: the benign pairs). `logits` are the teacher's at every reply position of the
    batch (the SFT loss's, in `sft.reply_logits` row-major order), so only the starting model runs here: it
    is the same network with its LoRA adapters switched off, one no-grad forward, no second copy of the weights."""
    import torch
    import torch.nn.functional as F

    from reftguard.training import sft

    with torch.no_grad(), t.model.disable_adapter():
        ref, _ = sft.reply_logits(t.base, input_ids[rows], mask[rows], labels[rows])
    row_of = (labels[:, 1:] != sft.IGNORE).nonzero()[:, 0]  # batch row of each reply position, row-major
    return F.kl_div(F.log_softmax(logits[rows[row_of]], -1), F.log_softmax(ref, -1), log_target=True, reduction="batchmean")


def _config_key(cfg: TrainConfig) -> dict:
    """Fields that must match for a checkpoint to be resumed (the run length and logging may change)."""
    return config_key(cfg, {"steps", "stop_at", "resume", "progress", "out", "eval_every", "log_every", "checkpoint_every", "reply_cache", "final_size"})


def _benign_replies(cfg, out, lm, tok, encoder, prompts, benign_idx, own) -> list[str]:
    from reftguard.training.generation import ReplyCache, greedy_replies

    cache = ReplyCache(cfg.reply_cache or out / REPLY_CACHE, generator=f"{cfg.model}|greedy|{cfg.reply_tokens}")
    items = [(prompts[i].id, prompts[i].text) for i in benign_idx if prompts[i].id not in own]
    todo = cache.missing(items)
    if todo:
        log.info("generating greedy replies for %d benign prompts (cached in %s)", len(todo), cache.path)
        was = lm.training
        lm.eval()
        for k in range(0, len(todo), 16):  # add chunk by chunk: an interrupted run keeps what it generated
            chunk = [items[j] for j in todo[k : k + 16]]
            ids = encoder.encode([text for _, text in chunk], truncation="right").ids
            cache.add(chunk, greedy_replies(lm, tok, ids, cfg.reply_tokens))
        lm.train(was)
    return [own.get(prompts[i].id) or cache.get(prompts[i].id, prompts[i].text) for i in benign_idx]


def train(cfg: TrainConfig, command: str = ""):
    import torch

    from reftguard.modeling.guard import TruncatedDecoder
    from reftguard.modeling.loading import load_causal_lm
    from reftguard.training import sft

    if not cfg.data:
        raise ValueError("no training data: pass --data TRAIN.jsonl (labeled harmful/benign prompts)")
    if cfg.sft_weight <= 0 and cfg.reg_weight <= 0:
        raise ValueError("sft_weight and reg_weight are both 0: nothing to train")
    if cfg.retain_weight > 0 and (cfg.full_finetune or cfg.sft_weight <= 0):
        raise ValueError("--retain-weight needs LoRA (the starting model is the network with its adapters off) and SFT pairs (--sft-weight > 0)")
    init = stage1_teacher(cfg)
    acc = accelerator()
    dev, rank = acc.device, acc.process_index
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    run = RunLog(out / LOG_FILE, acc.is_main_process)

    # 1-2. model, prompt format, data split, layer
    torch.manual_seed(cfg.seed)
    lm, tok = load_causal_lm(cfg.model)
    d = TeacherData.load(cfg, out, tok)
    layer, table = (init.layer, None) if init else choose_layer(cfg, lm, d)
    states = lambda model, idx: layer_states(model, d.rows(idx), layer, cfg.batch_size, d.pad)  # noqa: E731

    # 3. SFT pairs (built before LoRA so benign replies come from the starting model)
    pairs, pair_labels = build_sft_pairs(cfg, out, lm, tok, d) if cfg.sft_weight > 0 else ([], [])

    # 4. trainable model, optimizer, samplers
    t = setup_model(lm, cfg, cfg.seed, None if (cfg.lora_all_layers or init) else list(range(layer)), dev)
    if init:
        freeze_stage1(t, init, cfg)
    decoder = TruncatedDecoder(t.base, layer)  # shares the (LoRA-wrapped) layers: the regulariser's cheap forward
    reg_sampler = fit_sampler(d, cfg.reg_per_class, cfg.hard_negative_share)
    rep_sampler = reply_sampler(d, cfg.reply_per_class)
    sft_sampler = make_sft_sampler(cfg, pairs, pair_labels) if pairs else None

    # resume, or start from the starting model's R_l
    ck, match = out / CHECKPOINT, {"config_key": _config_key(cfg), "layer": layer}
    blob = resume_checkpoint(ck, t, run, match) if cfg.resume else None
    if blob is None:
        run.path.unlink(missing_ok=True)
        if init:  # layers[:l] are frozen: the stage-1 R_l stays exact, nothing to re-estimate
            state, info = FeatureState(init.refusal_feature, init.center, 0.0), {}
        else:
            state, info = refresh(None, states(t.base, d.probe_idx), d.y[d.probe_idx], cfg.center, cfg.ema)
        run.append({"step": 0, **info, **held_metrics(states(t.base, d.eval_idx), d.y[d.eval_idx], state)})
    start, state = (blob["step"], FeatureState.from_dict(blob["feature"])) if blob else (0, state)

    # 5-7. the loop
    bar = progress(start, cfg.steps, cfg.progress and acc.is_main_process, "train-teacher")
    for step in bar:
        loss = torch.zeros((), device=dev)
        if cfg.reg_weight > 0:
            rows = [d.fit_idx[j] for j in reg_sampler.batch(step_rng(cfg.seed, step, rank, 0))]
            ids, y = d.rows(rows), d.y[rows]
            if rep_sampler is not None:
                extra = rep_sampler.batch(step_rng(cfg.seed, step, rank, 2))
                ids, y = ids + [d.reply_ids[j] for j in extra], np.concatenate([y, d.reply_y[extra]])
            loss = loss + cfg.reg_weight * regulariser_step(decoder, ids, y, d.pad, state, cfg, run)
        if cfg.sft_weight > 0:
            pick = sft_sampler.batch(step_rng(cfg.seed, step, rank, 1))
            input_ids, mask, labels = (torch.from_numpy(a).to(dev) for a in sft.collate([pairs[j] for j in pick], d.pad))
            logits, target = sft.reply_logits(t.base, input_ids, mask, labels)
            sl = torch.nn.functional.cross_entropy(logits, target)
            loss = loss + cfg.sft_weight * sl
            run.add(sft_loss=sl.item())
            if cfg.retain_weight > 0:
                benign = torch.tensor([pair_labels[j] == 0 for j in pick], device=dev)  # not WRITTEN: their target is not the starting model's
                rl = retain_loss(t, logits, input_ids, mask, labels, benign)
                loss = loss + cfg.retain_weight * rl
                run.add(retain_loss=rl.item())
        optimizer_step(t, loss, acc, cfg, step)
        run.add(loss=loss.item())
        done, info = step + 1, {}
        if done % cfg.refresh_every == 0 and not init:
            state, info = refresh(state, states(t.base, d.probe_idx), d.y[d.probe_idx], cfg.center, cfg.ema)
        if done % cfg.eval_every == 0 or done == cfg.steps:
            info |= held_metrics(states(t.base, d.eval_idx), d.y[d.eval_idx], state)
        if info or done % cfg.log_every == 0:
            log_step(run, done, lr_at(cfg, step), tail=info, bar=bar, show=("reg_loss", "sft_loss", "held_auroc"))
        if checkpoint_and_stop(cfg, done, ck, t, run, match, feature=state.to_dict()):
            return None
    bar.close()

    # 8. the teacher directory
    return save_teacher(cfg, command, out, t, d, layer, table, state, run, len(pairs), init) if acc.is_main_process else None


def stage1_teacher(cfg: TrainConfig):
    """The --init-teacher to build on (None without one), after checking that stage 2 can keep its guard."""
    if not cfg.init_teacher:
        return None
    from reftguard.modeling.teacher import Teacher

    init = Teacher.load(Path(cfg.init_teacher))
    if cfg.full_finetune or not init.adapter:
        raise ValueError("--init-teacher needs a LoRA teacher and LoRA training (its adapter is frozen below layer l)")
    if cfg.reg_weight > 0 or cfg.sft_weight <= 0:
        raise ValueError("--init-teacher trains layers l.. with SFT only: pass --reg-weight 0 and --sft-weight > 0 "
                         "(the regulariser acts below layer l, which stays frozen)")
    same = {"--model": (init.model, cfg.model), "--max-tokens": (init.max_tokens, cfg.max_tokens), "--center": (init.center_kind, cfg.center)}
    for flag, (theirs, ours) in same.items():
        if theirs != ours:  # the guard must read exactly what the stage-1 teacher read
            raise ValueError(f"--init-teacher was trained with {flag} {theirs!r}, this run has {ours!r}")
    return init


def freeze_stage1(t, init, cfg: TrainConfig) -> None:
    """Load the stage-1 adapter into the LoRA of layers[:l] and freeze it; only layers l.. stay trainable."""
    import json
    import re

    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adir = init.root / init.adapter
    meta = json.loads((adir / "adapter_config.json").read_text())
    if (meta["r"], float(meta["lora_alpha"]), sorted(meta["target_modules"])) != (cfg.lora_rank, float(cfg.lora_alpha), sorted(cfg.lora_targets)):
        raise ValueError(f"--init-teacher's LoRA (r={meta['r']}, alpha={meta['lora_alpha']}, targets={sorted(meta['target_modules'])}) "
                         "differs from this run's --lora-rank/--lora-alpha/--lora-targets")
    weights = {k: v.float() for k, v in load_file(str(adir / "adapter_model.safetensors")).items()}
    result = set_peft_model_state_dict(t.model, weights)
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"--init-teacher's adapter does not fit this model: {result.unexpected_keys[:3]}")
    lower = re.compile(rf"\.layers\.({'|'.join(str(i) for i in range(init.layer))})\.")
    for name, p in t.model.named_parameters():
        if p.requires_grad and lower.search(name):
            p.requires_grad_(False)
    t.params = [p for p in t.model.parameters() if p.requires_grad]
    t.opt = torch.optim.AdamW(t.params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def final_states(model, d: TeacherData, cfg: TrainConfig, layer: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Layer-l states and labels of the balanced fit-split subset (cfg.final_size prompts) that a finished
    teacher's R_l and centre are estimated on."""
    idx = balanced_subset(d.fit_idx, d.y, cfg.final_size, cfg.seed, d.hard, cfg.hard_negative_share)
    return layer_states(model, d.rows(idx), layer, batch_size, d.pad), d.y[idx]


def save_teacher(cfg: TrainConfig, command: str, out: Path, t, d: TeacherData, layer: int, table, state: FeatureState, run: RunLog,
                 n_sft_pairs: int, init=None):
    """Adapter (or model), R_l re-estimated on the shipped weights (stage 2: the stage-1 R_l, whose
    layers it did not touch), log, plot, teacher.json; drops the checkpoint."""
    from reftguard.modeling.teacher import Teacher

    model_ref, adapter = save_trainable(t, cfg, out, cfg.model)  # R_l below is measured on exactly the shipped weights
    h_final, y_final = final_states(t.base, d, cfg, layer, cfg.batch_size)
    r, c = (init.refusal_feature, init.center) if init else refusal_feature(h_final, y_final, cfg.center)
    stats = dict(zip(("harmful_cos", "benign_cos"), class_cosines(h_final, y_final, r, c)))
    final_state = FeatureState(r, c, 0.0, state.refreshes, state.last_drift)
    h_eval, y_eval = layer_states(t.base, d.rows(d.eval_idx), layer, cfg.batch_size, d.pad), d.y[d.eval_idx]
    held_scores = cosine_scores(h_eval, r, c)
    held = evaluation.summarize(held_scores, y_eval, evaluation.threshold_for_recall(held_scores, y_eval, 0.95))
    seconds = run.seconds()
    run.append({"step": cfg.steps, "final": True, **held_metrics(h_eval, y_eval, final_state), **stats, "seconds": seconds})
    plot(run.rows, PANELS, out / PLOT_FILE)
    record = {
        "method": "ReFT teacher: SFT + refusal-feature regulariser with R_l re-estimated during training",
        "command": command,
        "data": portable([str(x) for x in cfg.data]),
        "data_hash": data_hash(d.prompts),
        "reply_data_hash": d.reply_hash,
        "n": len(d.prompts),
        "n_harmful": int(d.y.sum()),
        "holdout_fraction": cfg.holdout,
        "config": {k: portable(v) for k, v in asdict(cfg).items()} | {"layer": layer},
        "layer_table": table,
        "chosen_layer": layer,
        "refreshes": state.refreshes,
        "n_sft_pairs": n_sft_pairs,
        "holdout_at_layer": held,
        "final_feature_on": f"{len(y_final)} fit-split prompts" if not init else "the stage-1 teacher (layers below l frozen)",
        "seconds": seconds,
        "log": LOG_FILE,
        "plot": PLOT_FILE,
    }
    if init:
        record["stage1"] = {"command": init.record.get("command", ""), "data_hash": init.record.get("data_hash"), "seconds": init.record.get("seconds"),
                            "holdout_at_layer": init.record.get("holdout_at_layer"), "refreshes": init.record.get("refreshes")}
        if init.record.get("members"):  # a soup-teacher stage 1: the runs it averages reproduce it
            record["stage1"]["members"] = init.record["members"]
        if (init.root / LOG_FILE).is_file():  # the guard's own training curve lives in stage 1's log
            (out / STAGE1_LOG_FILE).write_text((init.root / LOG_FILE).read_text())
            record["stage1"]["log"] = STAGE1_LOG_FILE
    teacher = Teacher(
        model=model_ref, layer=layer, hidden_size=int(t.base.config.hidden_size), num_layers=int(t.base.config.num_hidden_layers),
        prompt_format=d.fmt, max_tokens=cfg.max_tokens, refusal_feature=r, center=c, center_kind=cfg.center, kind="reft", adapter=adapter,
        record=record,
    )
    teacher.save(out)
    (out / CHECKPOINT).unlink(missing_ok=True)  # finished: the checkpoint would only be resumed into a no-op
    log.info("teacher written to %s in %.0fs: layer %d, held AUROC %.4f, recall@1%%FPR %.4f", out, seconds, layer,
             held["auroc"] or 0, held["recall_at_1pct_fpr"] or 0)
    return teacher


PANELS = (("losses", ("reg_loss", "sft_loss", "retain_loss")), ("mean cosine (batch)", ("batch_harmful_cos", "batch_benign_cos")),
          ("held-back split", ("held_auroc", "held_recall_at_1pct_fpr")), ("R_l drift (cos to previous)", ("drift",)))
