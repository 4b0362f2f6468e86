"""Prometheus metrics of the guard (docs/design.md §5): fixed buckets, bounded labels, own registry.

Sliding-window rates (flag rate, false-positive rate, miss rate) are computed at scrape time from
time-bucketed counts, so they answer "what fraction over the last N seconds" without Prometheus-side
math, and show NaN (no data) rather than a misleading 0 when the window is empty.
"""
from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from reftguard.prompt import ROLES
from reftguard.scoring import REASONS
from reftguard.taxonomy import CATEGORIES as HARM_CATEGORIES

SCORE_BUCKETS = tuple(round(-1.0 + 0.05 * i, 2) for i in range(1, 41))  # -0.95 .. 1.0
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
BATCH_TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
RATIO_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
DELTA_BUCKETS = (-1.0, -0.5, -0.2, -0.1, -0.05, -0.02, -0.01, -0.005, 0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
VERDICTS = ("allow", "flag")  # of Feedback and shadow series: what a reviewer or a candidate says
DECISION_VERDICTS = VERDICTS + ("review",)
CATEGORIES = HARM_CATEGORIES + ("none",)
LABELS = ("benign", "harmful")


class SlidingRate:
    """numerator/denominator over the last `window_s` seconds, in `slots` time buckets. Thread-safe."""

    def __init__(self, window_s: float, slots: int = 60, clock=time.monotonic):
        self.width = window_s / slots
        self.window_s = window_s
        self.clock = clock
        self._buckets: deque[list[float]] = deque()  # [start, num, den]
        self._lock = threading.Lock()

    def add(self, num: float, den: float = 1.0) -> None:
        now = self.clock()
        start = now - (now % self.width)
        with self._lock:
            if self._buckets and self._buckets[-1][0] == start:
                self._buckets[-1][1] += num
                self._buckets[-1][2] += den
            else:
                self._buckets.append([start, num, den])
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] <= now - self.window_s - self.width:
            self._buckets.popleft()

    def value(self) -> float:
        now = self.clock()
        with self._lock:
            self._trim(now)
            num = sum(b[1] for b in self._buckets if b[0] > now - self.window_s - self.width)
            den = sum(b[2] for b in self._buckets if b[0] > now - self.window_s - self.width)
        return num / den if den else float("nan")


class GuardMetrics:
    def __init__(self, sources: list[str], window_s: float = 300.0, registry: CollectorRegistry | None = None):
        disable_created_metrics()  # *_created series double the exposition and no dashboard uses them
        self.registry = registry or CollectorRegistry()
        self.sources = set(sources) | {"other"}
        self.window_s = window_s
        r = self.registry
        self.decisions = Counter("reftguard_decisions", "Decisions served.", ["verdict", "source"], registry=r)
        # Fixed label sets (reftguard.scoring.REASONS + "none", reftguard.prompt.ROLES), pre-created so
        # dashboards see zeros rather than missing series.
        self.by_reason = Counter("reftguard_decisions_by_reason", "Decisions by reason and the deciding turn's role (reason 'none': no turn over its threshold).",
                                 ["reason", "role"], registry=r)
        for reason in REASONS + ("none",):
            for role in ROLES:
                self.by_reason.labels(reason=reason, role=role)
        self.by_category = Counter("reftguard_decisions_by_category", "FLAG and REVIEW decisions by the deciding row's harm category (the bundle's category head; 'none' without one) and source.",
                                   ["category", "verdict", "source"], registry=r)
        self.cache_rows = Counter("reftguard_score_cache_rows", "Rows of Score requests by how they were answered: 'scored' by the engine, 'reused' from the score cache or from a copy in the same request.",
                                  ["result"], registry=r)
        for result in ("scored", "reused"):
            self.cache_rows.labels(result=result)
        self.flag_rate_gauge = Gauge("reftguard_flag_rate", "Fraction of decisions flagged over the sliding window.", ["source"], registry=r)
        self.score = Histogram("reftguard_score", "Distribution of guard scores (cosine with R_l).", buckets=SCORE_BUCKETS, registry=r)
        self.feedback = Counter("reftguard_feedback", "Human review verdicts.", ["served", "reviewed"], registry=r)
        self.labeled = Counter("reftguard_labeled", "Decisions on traffic that carried a label.", ["verdict", "label"], registry=r)
        self.labels_ignored = Counter("reftguard_labels_ignored", "Item labels dropped because the caller lacks the reviewer credential (they never move the FP and miss rates).", registry=r)
        fpr = Gauge("reftguard_false_positive_rate", "Flagged benign / benign over the sliding window (labeled traffic and reviews).", registry=r)
        miss = Gauge("reftguard_miss_rate", "Allowed harmful / harmful over the sliding window (labeled traffic and reviews).", registry=r)
        self.expected_fpr = Gauge("reftguard_expected_fpr", "Calibrated FPR at the active threshold (from the bundle manifest).", registry=r)
        self.phase = Histogram("reftguard_phase_seconds", "Time per phase of a request.", ["phase"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("reftguard_batch_size", "Prompts per inference batch.", buckets=BATCH_SIZE_BUCKETS, registry=r)
        self.batch_tokens = Histogram("reftguard_batch_tokens", "Padded tokens per inference batch.", buckets=BATCH_TOKEN_BUCKETS, registry=r)
        self.batch_padding = Histogram("reftguard_batch_padding_ratio", "Fraction of padded tokens in a batch.", buckets=RATIO_BUCKETS, registry=r)
        # Triton's compute_infer_duration: rate() of busy seconds is the engine's utilisation (1 = never idle), and
        # rate(tokens) / rate(busy) its speed while busy; together they say whether a slow service is short of
        # work (the clients, tokenizing, queueing) or of compute.
        self.engine_busy = Counter("reftguard_engine_busy_seconds", "Seconds the engine spent running the service's batches.", registry=r)
        self.engine_tokens = Counter("reftguard_engine_tokens", "Tokens (padding excluded) the engine ran for the service's batches.", registry=r)
        self.queue_depth = Gauge("reftguard_queue_depth", "Prompts waiting for inference.", registry=r)
        self.queue_tokens = Gauge("reftguard_queue_tokens", "Tokens waiting for inference.", registry=r)
        self.truncated = Counter("reftguard_truncated", "Prompts truncated to max_tokens.", registry=r)
        self.errors = Counter("reftguard_errors", "RPCs that ended in an error, by gRPC status (CANCELLED and DEADLINE_EXCEEDED: gRPC cancelled the call).", ["code"], registry=r)
        self.requests = Counter("reftguard_requests", "RPCs received.", ["method"], registry=r)
        self.serving = Gauge("reftguard_serving", "1 while the health service reports SERVING.", registry=r)
        self.reloads = Counter("reftguard_reloads", "Bundle reload attempts (SIGHUP), by result.", ["result"], registry=r)
        self.bundle_info = Gauge("reftguard_bundle_info", "The bundle being served.", ["bundle_id", "backbone", "layer", "provider"], registry=r)
        self.models_alive = Gauge("reftguard_models_loaded", "Models in memory: active, shadow, and retired ones still finishing queued jobs.", registry=r)
        # Rollout (--shadow-bundle): a candidate scored off the response path, compared with the active bundle.
        self.shadow_info = Gauge("reftguard_shadow_bundle_info", "The shadow (candidate) bundle, when one is set.", ["bundle_id", "backbone", "layer", "provider"], registry=r)
        self.shadow_decisions = Counter("reftguard_shadow_decisions", "Items the shadow bundle decided (at its own threshold), by verdict and source.", ["verdict", "source"], registry=r)
        self.shadow_disagreements = Counter("reftguard_shadow_disagreements", "Shadow decisions whose verdict differs from the active bundle's (each at its bundle threshold).", ["active", "shadow"], registry=r)
        self.shadow_delta = Histogram("reftguard_shadow_score_delta", "Shadow score minus active score, per shadow-scored item.", buckets=DELTA_BUCKETS, registry=r)
        self.shadow_dropped = Counter("reftguard_shadow_dropped", "Items picked for shadow scoring but dropped (load, shutdown, or the shadow could not encode them).", registry=r)
        self.shadow_labeled = Counter("reftguard_shadow_labeled", "Shadow decisions on traffic that carried a label.", ["verdict", "label"], registry=r)
        self.shadow_feedback = Counter("reftguard_shadow_feedback", "Reviewer verdicts on items the shadow also decided (matched by item id).", ["shadow", "reviewed"], registry=r)
        self.shadow_flag_rate_gauge = Gauge("reftguard_shadow_flag_rate", "Fraction of shadow decisions flagged over the sliding window.", ["source"], registry=r)
        shadow_fpr = Gauge("reftguard_shadow_false_positive_rate", "Shadow: flagged benign / benign over the sliding window (labeled traffic and reviews).", registry=r)
        shadow_miss = Gauge("reftguard_shadow_miss_rate", "Shadow: allowed harmful / harmful over the sliding window (labeled traffic and reviews).", registry=r)
        self.shadow_budget = Gauge("reftguard_shadow_disagreement_budget", "Disagreement rate above which ReftguardShadowDisagreementHigh fires (--shadow-max-disagreement).", registry=r)

        self._flag_rates: dict[str, SlidingRate] = {}
        self._fpr = SlidingRate(window_s)
        self._miss = SlidingRate(window_s)
        fpr.set_function(self._fpr.value)
        miss.set_function(self._miss.value)
        self._shadow_flag_rates: dict[str, SlidingRate] = {}
        self._shadow_fpr = SlidingRate(window_s)
        self._shadow_miss = SlidingRate(window_s)
        shadow_fpr.set_function(self._shadow_fpr.value)
        shadow_miss.set_function(self._shadow_miss.value)
        # Create every bounded label combination at zero, so rate() sees the first increment too.
        for s in self.sources:
            self._flag_rate(s)
            for verdict in DECISION_VERDICTS:
                self.decisions.labels(verdict=verdict, source=s)
            for verdict in VERDICTS:
                self.shadow_decisions.labels(verdict=verdict, source=s)
            for category in CATEGORIES:
                for verdict in ("flag", "review"):
                    self.by_category.labels(category=category, verdict=verdict, source=s)
        for verdict in VERDICTS:
            for label in LABELS:
                self.labeled.labels(verdict=verdict, label=label)
                self.feedback.labels(served=verdict, reviewed=label)
                self.shadow_labeled.labels(verdict=verdict, label=label)
                self.shadow_feedback.labels(shadow=verdict, reviewed=label)
        self.shadow_disagreements.labels(active="allow", shadow="flag")
        self.shadow_disagreements.labels(active="flag", shadow="allow")
        for code in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "CANCELLED", "UNAUTHENTICATED", "PERMISSION_DENIED", "UNAVAILABLE", "INTERNAL"):
            self.errors.labels(code=code)
        for method in ("Score", "ScoreStream", "Feedback", "Info"):
            self.requests.labels(method=method)

    def source_label(self, source: str) -> str:
        if not source:
            return "default" if "default" in self.sources else "other"
        return source if source in self.sources else "other"

    def _flag_rate(self, source: str, shadow: bool = False) -> SlidingRate:
        rates, gauge = (self._shadow_flag_rates, self.shadow_flag_rate_gauge) if shadow else (self._flag_rates, self.flag_rate_gauge)
        if source not in rates:
            rate = SlidingRate(self.window_s)
            rates[source] = rate
            gauge.labels(source=source).set_function(rate.value)
        return rates[source]

    def set_bundle(self, model, shadow=None) -> None:
        """The active ServedModel and the shadow one (or None) into the info gauges."""
        for gauge, m in ((self.bundle_info, model), (self.shadow_info, shadow)):
            gauge.clear()
            if m is not None:
                b = m.bundle
                gauge.labels(bundle_id=b.bundle_id, backbone=b.backbone, layer=str(b.layer), provider=m.provider).set(1)
        self.expected_fpr.set(float("nan") if model.expected_fpr is None else model.expected_fpr)

    def record_decision(self, source: str, flagged: bool, score: float, label: str | None, reason: str = "", role: str = "user",
                        review: bool = False, category: str = "") -> None:
        verdict = "flag" if flagged else "review" if review else "allow"
        self.decisions.labels(verdict=verdict, source=source).inc()
        if flagged or review:
            self.by_category.labels(category=category if category in CATEGORIES else "none", verdict=verdict, source=source).inc()
        verdict = "flag" if flagged else "allow"  # the FP and miss rates count what is dropped
        self.by_reason.labels(reason=reason or "none", role=role).inc()
        self._flag_rate(source).add(1.0 if flagged else 0.0)
        self.score.observe(score)
        if label is not None:
            self.labeled.labels(verdict=verdict, label=label).inc()
            self._confusion(flagged, label)

    def record_feedback(self, served_flag: bool, reviewed: str) -> None:
        self.feedback.labels(served="flag" if served_flag else "allow", reviewed=reviewed).inc()
        self._confusion(served_flag, reviewed)

    def record_shadow(self, source: str, active_flag: bool, shadow_flag: bool, active_score: float, shadow_score: float,
                      label: str | None) -> None:
        """One item scored by both bundles (each verdict at its own bundle's threshold)."""
        verdict = "flag" if shadow_flag else "allow"
        self.shadow_decisions.labels(verdict=verdict, source=source).inc()
        self._flag_rate(source, shadow=True).add(1.0 if shadow_flag else 0.0)
        if active_flag != shadow_flag:
            self.shadow_disagreements.labels(active="flag" if active_flag else "allow", shadow=verdict).inc()
        self.shadow_delta.observe(shadow_score - active_score)
        if label is not None:
            self.shadow_labeled.labels(verdict=verdict, label=label).inc()
            self._confusion(shadow_flag, label, shadow=True)

    def record_shadow_feedback(self, shadow_flag: bool, reviewed: str) -> None:
        self.shadow_feedback.labels(shadow="flag" if shadow_flag else "allow", reviewed=reviewed).inc()
        self._confusion(shadow_flag, reviewed, shadow=True)

    def _confusion(self, flagged: bool, label: str, shadow: bool = False) -> None:
        fpr, miss = (self._shadow_fpr, self._shadow_miss) if shadow else (self._fpr, self._miss)
        if label == "benign":
            fpr.add(1.0 if flagged else 0.0)
        elif label == "harmful":
            miss.add(0.0 if flagged else 1.0)
