"""Scoring engines: the remote gRPC service or an in-process engine, with identical decisions.

Both take rows in input order and yield `(row, outcome)` in the same order, exactly once per row;
`outcome` is None for a row that cannot be scored (its `error` says why). The in-process engine decides
items with the server's own scoring core (`reftguard.scoring.decide`: every turn against its role's
threshold, the whole-record reasons) under the server's default policy, on the engine and precision a
server would choose here (`reftguard.engines.make_engine`, auto by default: bf16 where the CPU and the
bundle have it), so the two modes agree up to the engine's batch-shape float noise.
"""
from __future__ import annotations

import itertools
import json
import math
import struct
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator

import grpc

from reftguard.card import render_card  # stdlib only: the client install stays light
from reftguard.clients.client import ClientConfig
from reftguard.clients.scan.records import DEFAULT_MAX_CHARS
from reftguard.clients.scan.rows import Outcome, Row
from reftguard.clients.scan.stream import LoopClient
from reftguard.v1 import guard_pb2 as pb

Decided = Iterator[tuple[Row, "Outcome | None"]]


def _check_threshold(threshold: float | None) -> None:
    if threshold is not None and not (math.isfinite(threshold) and -1.0 <= threshold <= 1.0):
        raise ValueError(f"threshold {threshold!r} is not a number in [-1, 1]")


def item_turns(item: dict) -> list[tuple[int, str, str]]:
    """(turn index, text, role) of every non-empty turn of an item (roles normalised by
    records.to_item); -1 for a plain text item."""
    if "messages" in item:
        return [(t, m["content"], m["role"]) for t, m in enumerate(item["messages"]) if m["content"]]
    return [(-1, item["text"], "user")]


def outcome(d: pb.Decision) -> Outcome:
    return Outcome(float(d.score), d.verdict == pb.FLAG, int(d.turn), bool(d.truncated), d.role or "user", d.reason, d.verdict == pb.REVIEW)


class RemoteEngine:
    """Scores through one long-lived ScoreStream with at most `in_flight` unanswered requests."""

    mode = "remote"

    def __init__(self, cfg: ClientConfig, *, batch_size: int = 32, in_flight: int = 8, threshold: float | None = None,
                 source: str = "", truncation: str | None = None, flag_refusal_examples: bool = False):
        _check_threshold(threshold)
        self.cfg, self.batch_size, self.in_flight = cfg, batch_size, in_flight
        self.kw = {"threshold": threshold, "source": source, "truncation": truncation, "flag_refusal_examples": flag_refusal_examples,
                   "accept_review": True}
        self.client = LoopClient(cfg)
        info = self.client.info()
        self.bundle_id = info.bundle_id
        self.threshold = float(info.threshold if threshold is None else threshold)
        self.max_chars = int(info.limits.max_chars) or DEFAULT_MAX_CHARS
        if info.limits.max_client_batch:  # a bigger request would be rejected whole
            self.batch_size = min(self.batch_size, int(info.limits.max_client_batch))
        self.manifest = json.loads(info.manifest_json or "{}")
        self.where = cfg.target

    @property
    def card(self) -> str:
        # The card file stays on the server; render the same card from the manifest it sent.
        try:
            return render_card(self.manifest)
        except (KeyError, TypeError, AttributeError):
            return json.dumps(self.manifest, indent=2, sort_keys=True)

    def decide(self, rows: Iterable[Row]) -> Decided:
        rows = iter(rows)
        pending: deque[Row] = deque()  # pulled from `rows`, not yet yielded; appended by the client's loop thread

        def feed():
            for row in rows:
                pending.append(row)
                if row.item is not None:
                    yield row.item

        while True:
            try:
                for d in self.client.score_stream(feed(), handoff=self.batch_size, batch_size=self.batch_size, max_in_flight=self.in_flight, **self.kw):
                    while pending[0].item is None:
                        yield pending.popleft(), None
                    row = pending.popleft()
                    if d.id != row.item["id"]:
                        raise RuntimeError(f"decision for item {d.id} arrived where item {row.item['id']} was expected")
                    yield row, outcome(d)
                while pending:  # unscorable rows after the last scored one
                    yield pending.popleft(), None
                return
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                # Rows are checked before sending, so this is a rule only the server can apply (e.g.
                # truncation 'error' on a prompt over max_tokens). The stream is gone; score what it
                # left unanswered one by one to find the culprit, then stream the rest.
                yield from self._isolate(pending)

    def _isolate(self, pending: deque[Row]) -> Decided:
        while pending:
            row = pending.popleft()
            if row.item is not None:
                try:
                    (d,) = self.client.score([row.item], **self.kw)
                    yield row, outcome(d)
                    continue
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.INVALID_ARGUMENT:
                        raise
                    row.error, row.item = f"rejected: {err.details()}", None
            yield row, None

    def close(self) -> None:
        self.client.close()


class LocalEngine:
    """Scores in this process (`BundleScorer` on the engine `make_engine` picks), in groups of `batch_rows` rows."""

    mode = "in-process"

    def __init__(self, bundle: str | Path, *, threshold: float | None = None, truncation: str | None = None, batch_rows: int = 512,
                 flag_refusal_examples: bool = False, policy: str = "", source: str = "", score_cache_entries: int = 100_000,
                 engine: str = "auto", precision: str = "auto", threads: int = 0):
        from reftguard.bundle import GuardBundle  # lazy: the in-process mode needs onnxruntime + tokenizers
        from reftguard.encoding import DEFAULT_TRUNCATION
        from reftguard.engines import make_engine
        from reftguard.score_cache import ScoreCache
        from reftguard.scoring import BundleScorer

        _check_threshold(threshold)
        self.bundle = GuardBundle.load(bundle)
        backend = make_engine(self.bundle, engine=engine, precision=precision, threads=threads)
        self.engine_label = backend.label
        # the server's default window overlap and max_windows; repeated turns (a dataset's shared system prompt)
        # scored once, as the server does
        self.scorer = BundleScorer(self.bundle, backend=backend, cache=ScoreCache(score_cache_entries) if score_cache_entries else None)
        self.bundle_id = self.bundle.bundle_id
        # An override travels to the server as a proto float32; round it the same way so both modes
        # compare scores against the identical number.
        self.threshold = float(self.bundle.threshold) if threshold is None else struct.unpack("f", struct.pack("f", threshold))[0]
        # The server's whole-record decision: every role the bundle is calibrated for, a threshold
        # override on user turns only.
        # A policy's section for this scan's source first (as the server does for a request), then the override.
        self.policy = self.source_policy = None
        base = self.scorer.thresholds
        if policy:
            from reftguard.policy import load_policy

            self.policy = load_policy(policy)
            self.source_policy = self.policy.for_source(source)
        if self.source_policy:
            base = self.source_policy.thresholds(base, self.bundle.fpr_curves)
        self.thresholds = base.with_user(None if threshold is None else self.threshold, flag_refusal_examples)
        self.truncation = truncation or DEFAULT_TRUNCATION  # what a server does when the request names none
        self.batch_rows = batch_rows
        self.max_chars = DEFAULT_MAX_CHARS
        self.manifest = self.bundle.manifest
        self.where = str(self.bundle.root)

    @property
    def card(self) -> str:
        p = self.bundle.root / "CARD.md"
        return p.read_text(encoding="utf-8") if p.is_file() else ""

    def decide(self, rows: Iterable[Row]) -> Decided:
        # Groups are aligned to absolute row positions (and the scan passes its checkpoint chunk size),
        # so a resumed scan scores exactly the same groups and writes bit-identical scores.
        for _, group in itertools.groupby(rows, key=lambda r: r.index // self.batch_rows):
            yield from self._decide_batch(list(group))

    def _decide_batch(self, batch: list[Row]) -> Decided:
        from reftguard.encoding import PromptRejected
        from reftguard.scoring import Turn

        live = [r for r in batch if r.item is not None]
        while True:
            turns = [Turn(k, t, text, role) for k, r in enumerate(live) for t, text, role in item_turns(r.item)
                     if self.thresholds.scores(role)]
            try:
                scored = self.scorer.score_turns(turns, self.truncation, self.thresholds)
                if self.source_policy:
                    scored = [self.source_policy.verdict(s) for s in scored]
                break
            except PromptRejected as exc:  # 'error' on a long prompt, or over max_windows: an errors row
                bad = live[turns[exc.index].item]
                bad.error, bad.item = f"rejected: prompt too long: {exc}", None
                live = [r for r in live if r is not bad]
        outcomes = {id(r): s for r, s in zip(live, scored)}
        for r in batch:
            s = outcomes.get(id(r))
            yield r, (Outcome(s.score, s.flag, s.turn, s.truncated, s.role, s.reason, s.review) if s is not None else None)

    def close(self) -> None:
        pass
