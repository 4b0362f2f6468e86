"""The scan loop: read rows in order, score them, route each to exactly one output, checkpoint.

Rows are processed strictly in input order. After every `chunk_rows` rows the writers commit (flush +
fsync) and then the checkpoint is replaced atomically (checkpoint.py). A rerun of the same command
loads the checkpoint, cuts every output back to its committed state and continues from `rows_done`,
so a SIGKILL at any moment costs at most one chunk of work and never duplicates or loses a row. When
every row is written the outputs are finalized and the report is built from the outputs themselves.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from reftguard.clients.client import ClientConfig
from reftguard.clients.scan.checkpoint import Checkpoint, fingerprint, input_identity
from reftguard.clients.scan.digest import MultisetHash, row_digest
from reftguard.clients.scan.formats import detect_format
from reftguard.clients.scan.records import prepare
from reftguard.clients.scan.rows import OUTPUTS, decided, failed

PROGRESS_EVERY = 64  # rows between progress callbacks


@dataclass
class ScanConfig:
    input: str
    out: str
    target: str | None = None  # HOST:PORT of the guard service (remote mode)
    bundle: str | None = None  # guard bundle folder (in-process mode); exclusive with target
    client: ClientConfig | None = None  # token/TLS/timeouts for the remote mode (target taken from here if set)
    format: str | None = None  # jsonl|csv|parquet|hf; detected from the path when None
    split: str | None = None  # split of an HF DatasetDict
    text_field: str | None = None  # plain-prompt field; None: auto-detect messages/conversations/text/prompt
    source_field: str = "source"  # field used for the per-source flag rate in the report
    threshold: float | None = None
    source: str = ""  # source tag sent to the service (metrics label)
    truncation: str | None = None  # window|error|left|right; None: the server's default (in-process: window)
    flag_refusal_examples: bool = False  # flag harmful requests answered by a refusal (default: allowed as safety data)
    policy: str = ""  # in-process only: a policy file (reftguard/policy.py); its section for `source` applies
    engine: str = "auto"  # in-process only: as `reftguard serve --engine` (auto: what a server here would run)
    precision: str = "auto"  # in-process only: as `reftguard serve --precision`
    threads: int = 0  # in-process only: compute threads (0: OMP_NUM_THREADS, else every core); 1 beside a server
    score_cache_entries: int = 100_000  # in-process only: repeated turns scored once (0: off)
    batch_size: int = 32  # items per ScoreStream request
    in_flight: int = 8  # unanswered requests on the stream
    chunk_rows: int = 1000  # rows per checkpoint commit
    restart: bool = False  # discard an existing checkpoint in `out` instead of resuming
    extra: dict[str, Any] = field(default_factory=dict)


# ScanConfig's in-process-only settings and their defaults: a remote scan refuses any other value
LOCAL_DEFAULTS = {f.name: f.default for f in fields(ScanConfig) if f.name in ("engine", "precision", "threads", "score_cache_entries")}


def scan_engine(*, target: str | None = None, bundle: str | None = None, client: ClientConfig | None = None, threshold: float | None = None,
                source: str = "", truncation: str | None = None, batch_size: int = 32, in_flight: int = 8, batch_rows: int = 512,
                flag_refusal_examples: bool = False, policy: str = "", **local):
    """A RemoteEngine (target / client config) or a LocalEngine (bundle); shared by scan, hf and ray. `local`:
    LocalEngine's engine, precision, threads and score_cache_entries (in-process only)."""
    from reftguard.clients.scan.engines import LocalEngine, RemoteEngine

    if bundle and (target or client):
        raise ValueError("give either a target (remote service) or a bundle (in-process), not both")
    if bundle:
        return LocalEngine(bundle, threshold=threshold, truncation=truncation, batch_rows=batch_rows, flag_refusal_examples=flag_refusal_examples,
                           policy=policy, source=source, **local)
    if policy:
        raise ValueError("--policy applies to in-process scans (--bundle); a service applies its own (reftguard serve --policy)")
    if set_local := [k for k, v in local.items() if v != LOCAL_DEFAULTS[k]]:
        raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in set_local)} apply to in-process scans (--bundle); "
                         "a service runs its own engine (reftguard serve)")
    if not (target or client):
        raise ValueError("give a target (HOST:PORT of the guard service) or a bundle folder")
    cfg = client or ClientConfig(target=target)
    if target:
        cfg.target = target
    return RemoteEngine(cfg, batch_size=batch_size, in_flight=in_flight, threshold=threshold, source=source, truncation=truncation,
                        flag_refusal_examples=flag_refusal_examples)


class Scan:
    """One scan of one input into one output folder (see module doc)."""

    def __init__(self, cfg: ScanConfig, engine=None):
        self.cfg = cfg
        self.input, self.out = Path(cfg.input), Path(cfg.out)
        self.fmt = detect_format(self.input, cfg.format)
        self.reader = self.fmt.reader(self.input, cfg.split)
        self.engine = engine or scan_engine(target=cfg.target, bundle=cfg.bundle, client=cfg.client, threshold=cfg.threshold, source=cfg.source,
                                            truncation=cfg.truncation, batch_size=cfg.batch_size, in_flight=cfg.in_flight, batch_rows=cfg.chunk_rows,
                                            flag_refusal_examples=cfg.flag_refusal_examples, policy=cfg.policy,
                                            **{k: getattr(cfg, k) for k in LOCAL_DEFAULTS})
        policy = getattr(self.engine, "policy", None)
        # an in-process scan resumed on another engine or precision would mix two sets of scores
        label = getattr(self.engine, "engine_label", None)
        self.fingerprint = fingerprint(input=input_identity(self.input), format=self.fmt.name, split=cfg.split, text_field=cfg.text_field,
                                       bundle_id=self.engine.bundle_id, threshold=self.engine.threshold, truncation=cfg.truncation,
                                       chunk_rows=cfg.chunk_rows, flag_refusal_examples=cfg.flag_refusal_examples, outputs=OUTPUTS,
                                       **({"policy": policy.sha256, "source": cfg.source} if policy else {}),
                                       **({"engine": label} if label else {}))

    def _checkpoint(self) -> Checkpoint:
        old = Checkpoint.load(self.out)
        if old is not None and old.fingerprint != self.fingerprint and not self.cfg.restart:
            raise ValueError(f"{self.out} holds a scan of a different input, bundle or settings; pass --restart to discard it, "
                             "or choose another --out")
        if old is None or self.cfg.restart:
            return Checkpoint(self.fingerprint, outputs={n: None for n in OUTPUTS}, counts={n: 0 for n in OUTPUTS})
        return old

    def run(self, on_rows: Callable[[int, dict[str, int]], None] | None = None) -> dict[str, Any]:
        from reftguard.clients.scan.report import build_report, write_report

        self.out.mkdir(parents=True, exist_ok=True)
        ck = self._checkpoint()
        if ck.done:  # the same command again after it finished: nothing to do
            return json.loads((self.out / "report.json").read_text())
        writers = {n: self.fmt.writer(self.out, n, self.reader) for n in OUTPUTS}
        for n, w in writers.items():
            w.restore(ck.outputs.get(n))
        try:
            if not ck.scanned:
                self._scan(ck, writers, on_rows)
            paths = {n: w.finalize() for n, w in writers.items()}
        finally:
            for w in writers.values():
                w.close()
        report = build_report(self, ck, paths)
        write_report(self.out, report, self.engine.card)
        if not report["exactly_once"]:
            raise RuntimeError(f"exactly-once check failed: outputs hold {report['rows']['output']} rows for {report['rows']['input']} "
                               f"input rows or their content differs (see {self.out / 'report.json'}); the outputs cannot be trusted")
        ck.done = True
        ck.commit(self.out)
        return report

    def _scan(self, ck: Checkpoint, writers, on_rows) -> None:
        cfg, bundle_id = self.cfg, self.engine.bundle_id
        h = MultisetHash.from_hex(ck.input_hash, ck.rows_done)
        buffers: dict[str, list] = {n: [] for n in OUTPUTS}
        last = time.monotonic()

        def commit(final: bool = False) -> None:
            # outputs first (flushed, fsynced), then the checkpoint that describes them
            nonlocal last
            for n, w in writers.items():
                w.write(buffers[n])
                ck.counts[n] += len(buffers[n])
                buffers[n] = []
                ck.outputs[n] = w.commit()
            now = time.monotonic()
            ck.rows_done, ck.input_hash, ck.scanned = h.count, h.hex, final
            ck.elapsed_s, last = ck.elapsed_s + (now - last), now
            ck.commit(self.out)

        rows = (prepare(r, cfg.text_field, self.engine.max_chars) for r in self.reader.rows(ck.rows_done))
        pending = 0
        for row, outcome in self.engine.decide(rows):
            if row.index != h.count:
                raise RuntimeError(f"row {row.index} arrived where row {h.count} was expected")
            h.add(row_digest(row.record, row.raw))
            if outcome is None:
                buffers["errors"].append(failed(row))
            else:
                buffers[outcome.output].append(decided(row, outcome, bundle_id))
            pending += 1
            if pending == cfg.chunk_rows:
                commit()
                pending = 0
            if on_rows and (pending % PROGRESS_EVERY == 0):
                on_rows(h.count, {n: ck.counts[n] + len(buffers[n]) for n in OUTPUTS})
        commit(final=True)
        if on_rows:
            on_rows(h.count, dict(ck.counts))

    def close(self) -> None:
        self.engine.close()


def run_scan(cfg: ScanConfig, on_rows=None) -> dict[str, Any]:
    """Scan `cfg.input` into `cfg.out` (resuming if a checkpoint is there) and return the report."""
    scan = Scan(cfg)
    try:
        return scan.run(on_rows)
    finally:
        scan.close()


