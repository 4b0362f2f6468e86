"""The scoring core: turns in, one typed decision per item out.

Transport-free (no gRPC, no protobuf, no torch) so that the servicer, the in-process scan, calibration
and eval decide items with the same code: a turn is encoded into one row, or several window rows under
truncation `window`; every row is scored; a turn's score is the maximum over its rows.

A finetuning record teaches its assistant replies, so a chat item is judged whole (`decide`): every
turn is scored with its role (system, user, assistant) against that role's threshold, and the decision
names the turn that decided it and a reason:
  harmful_request     a user turn over its threshold with no reply after it;
  harmful_reply       an assistant turn over its threshold;
  complied_with_harm  a harmful user turn answered by a reply that is not a refusal (a bare
                      "Sure, here is how:" counts as compliance). A request answered by such a bare
                      opener (reftguard.refusal.is_bare_compliance) is flagged from its review
                      threshold up: the record carries nothing but the request and the order to comply
                      (the shallow-alignment attack), so the band's doubt goes against it;
  harmful_system      a system turn over its threshold;
  refusal_example     a harmful user turn answered by a refusal (reftguard.refusal.is_refusal_reply:
                      a short reply that opens with a refusal phrase): safety data, allowed unless the
                      request asks to flag it. Refusals are never judged by the reply threshold.
                      A refused request in the review band is named so too (and allowed).
A bundle with a flag gate (reftguard.gate_fit) FLAGs a user turn by its score only if the turn's tail state
passes the gate too; otherwise the item goes to REVIEW (prompts that only sound unsafe). A gate with a review
edge also keeps a user turn it reads as benign out of the review band (ALLOW, not REVIEW).
A bundle without role calibrations scores user turns only (`Thresholds.assistant`/`system` None), which
is exactly the guard from before whole-record scoring.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from reftguard import bundle_io
from reftguard.bundle import FlagGate, GuardBundle
from reftguard.encoding import DEFAULT_MAX_WINDOWS, DEFAULT_TRUNCATION, Encoded, PromptEncoder, length_sorted_batches
from reftguard.engines import Engine
from reftguard.features import cosine_scores
from reftguard.prompt import ROLES
from reftguard.refusal import is_bare_compliance, is_refusal_reply
from reftguard.score_cache import ScoreCache

REASONS = ("harmful_request", "harmful_reply", "complied_with_harm", "harmful_system", "refusal_example")
# Which flag wins when several turns of one record are over their thresholds and margins tie: what the
# model would learn (a reply) first, then the request it answered, then the setup.
_PRIORITY = {"harmful_reply": 0, "complied_with_harm": 1, "harmful_request": 2, "harmful_system": 3}


@dataclass(frozen=True)
class Turn:
    """One turn to score."""

    item: int  # index of its item in the batch
    turn: int  # index in the item's messages; -1 for a plain text item
    text: str
    role: str = "user"  # system | user | assistant (reftguard.prompt.normalize_role)


@dataclass(frozen=True)
class Scored:
    """An item's result: the row that decided it and where that row came from."""

    score: float
    turn: int  # which turn decided (-1 for text items)
    window: int  # which window of that turn won (0 when it was not windowed)
    num_windows: int  # how many windows that turn was split into (1 when it fitted)
    truncated: bool  # some turn of the item lost tokens (truncation left/right)
    num_tokens: int  # tokens in the winning row, template included
    role: str = "user"  # the deciding turn's role
    reason: str = ""  # one of REASONS, or "" when no turn is over its threshold
    threshold: float = float("nan")  # the deciding turn's role threshold (nan from `decide_items`)
    flag: bool = False  # the verdict under `decide`
    review: bool = False  # not flagged, but a turn is over its review threshold (Verdict.REVIEW)
    review_threshold: float = float("nan")  # the deciding turn's review threshold (nan: no band for its role)
    category: str = ""  # flagged or in review: the deciding row's harm category (the bundle's category head)
    category_p: float = float("nan")

    def flagged(self, threshold: float) -> bool:
        # Strict everywhere (server, scan, calibration, eval): a score equal to the threshold is allowed.
        return self.score > threshold


@dataclass(frozen=True)
class Thresholds:
    """What a whole record is decided with: one threshold per role (None: that role is not scored,
    because the bundle has no calibration for it) and whether refusal examples are flagged."""

    user: float
    assistant: float | None = None
    system: float | None = None
    flag_refusal_examples: bool = False
    review: "Thresholds | None" = None  # the review band's lower edges (each <= its flag threshold)

    def of(self, role: str) -> float | None:
        return {"user": self.user, "assistant": self.assistant, "system": self.system}[role]

    def scores(self, role: str) -> bool:
        return self.of(role) is not None

    def bands(self) -> dict[str, float]:
        """{role: review threshold} of the roles that have a review band."""
        return {} if self.review is None else {r: self.review.of(r) for r in ROLES if self.review.of(r) is not None}

    def with_user(self, threshold: float | None, flag_refusal_examples: bool = False) -> "Thresholds":
        """A request's view: its threshold override (user turns only) and its refusal-example choice."""
        review = self.review
        if review is not None:  # an override moves the band's top; its bottom never rises above it
            user = review.user if threshold is None else min(review.user, threshold)
            review = Thresholds(user, review.assistant, review.system, flag_refusal_examples)
        return Thresholds(self.user if threshold is None else threshold, self.assistant, self.system, flag_refusal_examples, review)


def make_thresholds(user: float, roles: dict, review: dict | None = None) -> Thresholds:
    """Thresholds from flag thresholds ({role: t} besides user) and review thresholds ({role: t}, user
    included); a scored role without a review threshold has no band, and a band never reaches above its
    flag threshold."""
    flag = Thresholds(user, roles.get("assistant"), roles.get("system"))
    if not review:
        return flag
    band = {r: min(review.get(r, flag.of(r)), flag.of(r)) for r in ROLES if flag.of(r) is not None}
    return Thresholds(user, flag.assistant, flag.system, review=Thresholds(band["user"], band.get("assistant"), band.get("system")))


def text_turns(texts: Sequence[str], role: str = "user") -> list[Turn]:
    """Each text is an item with one turn."""
    return [Turn(i, -1, t, role) for i, t in enumerate(texts)]


RoleFeatures = dict  # {role: (R_role, c_role)}: GuardBundle.role_features()
NO_NOTES = ("", float("nan"), True, True)  # a row's notes without a head or a gate: no category, passes, in the band


def row_notes(outputs: Sequence[np.ndarray], head, gate: FlagGate | None = None) -> list[tuple[str, float, bool, bool]] | None:
    """Per row: its most probable harm category and that probability (("", nan) without a head or the output it
    reads), whether it passes the flag gate, and whether the gate lets it into the review band (both True without
    a gate). None when neither applies."""
    k = bundle_io.OUTPUT_NAMES.index(head.input) if head is not None else len(outputs)
    top = head.top(outputs[k]) if k < len(outputs) else None
    g = bundle_io.OUTPUT_NAMES.index(gate.input) if gate is not None else len(outputs)
    if top is None and g >= len(outputs):
        return None
    n = len(outputs[0])
    passes, bands = gate.notes(outputs[g]) if g < len(outputs) else (np.ones(n, bool), np.ones(n, bool))
    top = top or [NO_NOTES[:2]] * n
    return [(c, p, bool(passes[i]), bool(bands[i])) for i, (c, p) in enumerate(top)]


def row_scores(outputs: Sequence[np.ndarray], roles: Sequence[str], features: RoleFeatures) -> np.ndarray:
    """Each row's score: cos(state - c_role, R_role) for a role the bundle has a feature of (and a graph
    that gives the state), else the graph's own score against R_l. Numpy, fp32, like the graph's head."""
    score = np.array(outputs[0], dtype=np.float32)
    if features and len(outputs) > 2:
        for role, (r, c) in features.items():
            rows = [i for i, x in enumerate(roles) if x == role]
            if rows:
                score[rows] = cosine_scores(outputs[2][rows], r, c)
    return score


def _turn_bests(scores: Sequence[float], turns: Sequence[Turn], enc: Encoded) -> tuple[list[int], list[bool]]:
    """Per turn its winning row (a strict `>` keeps the first of equal maxima), and per item whether any
    of its rows lost tokens."""
    n_items = 1 + max(t.item for t in turns) if turns else 0
    best: list[int | None] = [None] * len(turns)
    truncated = [False] * n_items
    for row, k in enumerate(enc.text):
        truncated[turns[k].item] = truncated[turns[k].item] or enc.truncated[row]
        if best[k] is None or scores[row] > scores[best[k]]:
            best[k] = row
    if None in best:
        raise ValueError(f"turn {best.index(None)} has no scored row")
    return best, truncated


def _reply(ks: list[int], turns: Sequence[Turn], pos: int) -> int | None:
    """The assistant turn answering the user turn at `pos` of an item's turns `ks` (None: no reply next)."""
    nxt = next((j for j in ks[pos + 1:] if turns[j].role != "system"), None)
    return nxt if nxt is not None and turns[nxt].role == "assistant" else None


def _judge(ks: list[int], turns: Sequence[Turn], best: dict[int, float], thresholds: Thresholds,
           gated: frozenset = frozenset()) -> tuple[int, str, bool]:
    """An item's deciding turn, reason and flag under `thresholds` (`best`: each turn's highest score); a
    user turn in `gated` (its row failed the flag gate) flags nothing by its score."""
    margin = {k: best[k] - thresholds.of(turns[k].role) for k in ks}
    flags: list[tuple[int, str]] = []  # (turn position, reason)
    refusal: int | None = None
    for pos, k in enumerate(ks):
        t = turns[k]
        if margin[k] <= 0:
            continue
        if t.role == "assistant":
            if not is_refusal_reply(t.text):  # refusals name the harm they decline: not judged by score
                flags.append((k, "harmful_reply"))
        elif t.role == "system":
            flags.append((k, "harmful_system"))
        else:
            reply = _reply(ks, turns, pos)
            if reply is not None and is_refusal_reply(turns[reply].text):
                refusal = k if refusal is None else refusal
            elif k not in gated:  # no reply: the request is what is kept; else the model learns to comply
                flags.append((k, "harmful_request" if reply is None else "complied_with_harm"))
    if refusal is not None and thresholds.flag_refusal_examples:
        flags.append((refusal, "refusal_example"))
    if flags:
        k, reason = max(flags, key=lambda f: (margin[f[0]], -_PRIORITY.get(f[1], 9), -ks.index(f[0])))
        return k, reason, True
    if refusal is not None:
        return refusal, "refusal_example", False
    # allowed: report the turn closest to its threshold (the first of equal margins)
    return max(ks, key=lambda j: (margin[j], -ks.index(j))), "", False


def decide(scores: Sequence[float], turns: Sequence[Turn], enc: Encoded, thresholds: Thresholds,
           categories: Sequence[tuple[str, float]] | None = None) -> list[Scored]:
    """One decision per item (items 0..n-1, each with a turn) from per-row scores: whole-record rules
    in the module docstring. An item not flagged is judged again at the review thresholds, if any
    (REVIEW). `categories` (per row: category, probability) name the harm of flagged and reviewed
    items; a third element False marks a row that failed the flag gate (reftguard.gate_fit): its user turn
    is not FLAGged by score, so the item goes to REVIEW; a fourth False, a row the gate keeps out of the review
    band: its user turn is not REVIEWed from the band. Turns of a role the thresholds do not score must not
    be in `turns`."""
    best, truncated = _turn_bests(scores, turns, enc)

    def failing(note: int) -> frozenset:  # user turns whose winning row fails note `note` of the gate
        return frozenset(k for k, t in enumerate(turns) if t.role == "user" and categories is not None
                         and len(categories[best[k]]) > note and not categories[best[k]][note])

    gated, unbanded = failing(2), failing(3)
    by_item: list[list[int]] = [[] for _ in truncated]
    for k, t in enumerate(turns):
        by_item[t.item].append(k)
    top = {k: float(scores[best[k]]) for k in range(len(turns))}

    out = []
    for ks in by_item:
        if not ks:
            raise ValueError(f"item {len(out)} has no turn to score")
        k, reason, flag = _judge(ks, turns, top, thresholds, gated)
        review = in_band = False
        if not flag and gated.intersection(ks):  # over its flag threshold but gated: REVIEW, with or without a band
            k2, reason2, review = _judge(ks, turns, top, thresholds)
            if review:
                k, reason = k2, reason2
        if not flag and not review and thresholds.review is not None:
            k2, reason2, review = _judge(ks, turns, top, thresholds.review, unbanded)
            if review or reason2 == "refusal_example":  # a refused request in the band is safety data too: named, allowed
                k, reason, in_band = k2, reason2, review
        reply = _reply(ks, turns, ks.index(k)) if review and reason == "complied_with_harm" else None
        bare = reply is not None and is_bare_compliance(turns[reply].text)
        if bare:
            flag, review = True, False
        judged = thresholds.review if bare and in_band else thresholds  # a bare opener flags at the edge it crossed
        r, t = best[k], turns[k]
        # A system prompt's harm is the persona it sets, not a hazard class: the head (fitted on requests) names none.
        named = categories is not None and (flag or review) and t.role != "system"
        category, p = categories[r][:2] if named else ("", float("nan"))
        band = float("nan") if thresholds.review is None else float(thresholds.review.of(t.role))
        out.append(Scored(float(scores[r]), t.turn, enc.window[r], enc.num_windows[r], truncated[t.item], len(enc.ids[r]),
                          t.role, reason, float(judged.of(t.role)), flag, review, band, category, p))
    return out


def engine_thresholds(engine, bundle: GuardBundle) -> Thresholds:
    """The thresholds an engine built by `make_engine` serves at (its precision's calibration), or the
    bundle's fp32 ones for an engine built directly."""
    roles = getattr(engine, "role_thresholds", None)
    if roles is None:
        roles = bundle.role_thresholds
    review = getattr(engine, "review_thresholds", None)
    if review is None:
        review = bundle.review_thresholds
    return make_thresholds(float(getattr(engine, "threshold", bundle.threshold)), roles, review)


UNIFORM = Thresholds(0.0, 0.0, 0.0)  # threshold-free scoring: every item takes its highest turn


class BundleScorer:
    """Encode -> length-sorted batches -> ORT -> item decisions, in this process (scan --bundle,
    calibration, eval, benches). The server runs the same encoder and `decide` behind its batcher."""

    def __init__(self, bundle: GuardBundle, backend: Engine | None = None, max_batch: int = 32, max_batch_tokens: int = 16384,
                 *, window_overlap: int = -1, max_windows: int = DEFAULT_MAX_WINDOWS, window_tail: int = -1, cache: ScoreCache | None = None):
        self.bundle = bundle
        if backend is None:
            from reftguard.engines.ort import OrtEngine  # lazy: onnxruntime only when scoring

            backend = OrtEngine(bundle)
        self.backend = backend
        self.encoder = PromptEncoder(bundle.tokenizer_path, bundle.prompt_format, bundle.max_tokens,
                                     window_overlap=window_overlap, max_windows=max_windows, window_tail=window_tail)
        self.max_batch, self.max_batch_tokens = max_batch, max_batch_tokens
        self.thresholds = engine_thresholds(self.backend, bundle)  # what `decide` serves at
        self.role_features = bundle.role_features()
        self.category_head = bundle.category_head()
        self.flag_gate = bundle.flag_gate()
        self.cache = cache  # repeated rows scored once (reftguard/score_cache.py); scores are batch-invariant

    def score_ids(self, ids: list[list[int]], roles: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and feature norms of encoded rows, in row order; `roles` (per row, default user) pick
        each row's feature."""
        scores, norms, _ = self._rows(ids, roles)
        return scores, norms

    def _rows(self, ids, roles=None) -> tuple[np.ndarray, np.ndarray, list | None]:
        """Scores, norms and (with a category head or a flag gate) each row's notes (`row_notes`)."""
        scores = np.zeros(len(ids), dtype=np.float32)
        norms = np.zeros(len(ids), dtype=np.float32)
        cats: list | None = None
        roles = roles or ["user"] * len(ids)
        for rows, input_ids, mask in length_sorted_batches(ids, self.max_batch, self.max_batch_tokens, self.bundle.pad_token_id):
            out = self.backend.run(input_ids, mask)
            scores[rows], norms[rows] = row_scores(out, [roles[i] for i in rows], self.role_features), out[1]
            top = row_notes(out, self.category_head, self.flag_gate)
            if top is not None:
                cats = cats or [NO_NOTES] * len(ids)
                for i, c in zip(rows, top):
                    cats[i] = c
        return scores, norms, cats

    def score_turns(self, turns: Sequence[Turn], truncation: str = DEFAULT_TRUNCATION, thresholds: Thresholds | None = None) -> list[Scored]:
        """One decision per item under `thresholds` (default: every role at 0, so an item's score is
        its highest turn's: what calibration thresholds); raises PromptRejected (its `index` is a
        position in `turns`)."""
        if not turns:
            return []
        enc = self.encoder.encode([t.text for t in turns], truncation)
        roles = [turns[i].role for i in enc.text]
        if self.cache is None:
            scores, _, cats = self._rows(enc.ids, roles)
        else:
            scores, cats = self._cached_rows(enc.ids, roles)
        return decide(scores, turns, enc, thresholds or UNIFORM, cats)

    def _cached_rows(self, ids, roles) -> tuple[np.ndarray, list | None]:
        """Like `_rows`, but each distinct row is scored once, and rows scored by an earlier call are looked up."""
        tag = f"{self.bundle.bundle_id}/{getattr(self.backend, 'label', type(self.backend).__name__)}"
        keys, found, todo = self.cache.lookup(tag, roles, ids)
        if todo:
            rows = [copies[0] for copies in todo.values()]
            s, _, c = self._rows([ids[i] for i in rows], [roles[i] for i in rows])
            for j, k in enumerate(todo):
                found[k] = (float(s[j]), c[j] if c is not None else None)
                self.cache.put(k, found[k])
        cats = [found[k][1] for k in keys]
        return np.array([found[k][0] for k in keys], dtype=np.float32), None if any(c is None for c in cats) else cats

    def score_texts(self, texts: Sequence[str], truncation: str = DEFAULT_TRUNCATION, role: str = "user") -> list[Scored]:
        return self.score_turns(text_turns(texts, role), truncation)

    def scores(self, texts: Sequence[str], truncation: str = DEFAULT_TRUNCATION, role: str = "user") -> np.ndarray:
        """float32 item scores of plain texts, each one turn of `role` (what calibration and eval threshold)."""
        return np.array([s.score for s in self.score_texts(texts, truncation, role)], dtype=np.float32)
