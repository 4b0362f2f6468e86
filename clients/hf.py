"""`filter_dataset`: split a `datasets.Dataset` into (allowed, flagged) with the guard.

    from reftguard.clients.hf import filter_dataset
    allowed, flagged = filter_dataset(ds, target="guard:50051")          # the service
    allowed, flagged = filter_dataset(ds, bundle="/models/guard-bundle")  # in-process ORT

Scoring runs as one batched `Dataset.map` that adds `reftguard_score`, `reftguard_verdict`,
`reftguard_turn` and `reftguard_bundle_id`, then two filters on the verdict. Record shapes are those
of `reftguard scan` (text field, OpenAI `messages`, ShareGPT `conversations`). `datasets` is imported
by the caller; this module needs only the client.
"""
from __future__ import annotations

from typing import Any

from reftguard.clients.scan.columns import BatchScorer, engine_settings
from reftguard.clients.scan.rows import VERDICT


class _MapFn:
    """The batched map function (picklable, so num_proc > 1 works: each process opens its own engine)."""

    def __init__(self, scorer: BatchScorer):
        self.scorer = scorer

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        keys = list(batch)
        records = [dict(zip(keys, values)) for values in zip(*(batch[k] for k in keys))]
        # one call per batch: row positions are the dataset indices, so errors name the real row
        return self.scorer.columns(records, start=indices[0] if indices else 0)


def filter_dataset(ds, *, target: str | None = None, bundle: str | None = None, client: Any = None, text_field: str | None = None,
                   threshold: float | None = None, source: str = "", truncation: str | None = None, batch_size: int = 256,
                   in_flight: int = 8, errors: str = "raise", num_proc: int | None = None):
    """Return (allowed, flagged) Datasets with the decision columns added.

    Exactly one of `target` (HOST:PORT), `client` (a ClientConfig, for token/TLS) or `bundle` (folder)
    selects the scorer. Rows that cannot be scored raise ValueError with the row index, unless
    errors='flag', which puts them into `flagged` with verdict 'error' and a `reftguard_error` reason.
    """
    scorer = BatchScorer(engine_settings(target=target, bundle=bundle, client=client, threshold=threshold, source=source,
                                         truncation=truncation, in_flight=in_flight), text_field, errors)
    try:
        scored = ds.map(_MapFn(scorer), batched=True, batch_size=batch_size, with_indices=True, num_proc=num_proc,
                        desc="reftguard scoring")
    finally:
        scorer.close()
    allowed = scored.filter(lambda vs: [v == "allow" for v in vs], input_columns=[VERDICT], batched=True)
    flagged = scored.filter(lambda vs: [v != "allow" for v in vs], input_columns=[VERDICT], batched=True)
    return allowed, flagged
