"""`scan`: split a Ray Dataset into (allowed, flagged) with an actor pool of guard scorers.

    import ray
    from reftguard.clients import ray as guard_ray
    ray.init(address="ray://head:10001")                     # the Ray cluster beside the trainers
    ds = ray.data.read_parquet("s3://bucket/customer-data/")
    allowed, flagged = guard_ray.scan(ds, target="guard.internal:50051", concurrency=8)
    allowed.write_parquet("s3://bucket/clean/")

Each actor of the pool holds one scorer for its lifetime: a gRPC client of the guard service
(`target=`), or an in-process ORT session over a bundle folder (`bundle=`; the folder must be
readable at the same path on every node). Scored rows are materialized once and then split, so
nothing is scored twice. `ray` is imported lazily; the caller owns `ray.init`.
"""
from __future__ import annotations

from typing import Any

from reftguard.clients.scan.columns import BatchScorer, engine_settings
from reftguard.clients.scan.rows import VERDICT


class _ScanActor:
    def __init__(self, scorer: BatchScorer):
        self.scorer = scorer

    def __call__(self, batch):
        import pyarrow as pa

        cols = self.scorer.columns(batch.to_pylist())
        out = batch
        for name, values in cols.items():
            out = out.append_column(name, pa.array(values, type=pa.float64() if name == "reftguard_score" else None))
        return out


def scan(ds, *, target: str | None = None, bundle: str | None = None, client: Any = None, text_field: str | None = None,
         threshold: float | None = None, source: str = "", truncation: str | None = None, batch_size: int = 256,
         in_flight: int = 8, concurrency: int = 2, num_cpus: float = 1, errors: str = "raise"):
    """Return (allowed, flagged) Ray Datasets with the decision columns added.

    `concurrency` is the actor pool size; `num_cpus` what each actor reserves (an in-process actor
    runs ORT on them; a remote one mostly waits on the service, so fractions are fine there).
    """
    scorer = BatchScorer(engine_settings(target=target, bundle=bundle, client=client, threshold=threshold, source=source,
                                         truncation=truncation, in_flight=in_flight), text_field, errors)
    from ray.data import ActorPoolStrategy
    from ray.data.expressions import col

    scored = ds.map_batches(_ScanActor, fn_constructor_args=(scorer,), batch_format="pyarrow", batch_size=batch_size,
                            compute=ActorPoolStrategy(size=concurrency), num_cpus=num_cpus).materialize()
    # Predicate expressions run vectorized on Arrow, no Python per row (Ray >= 2.50; string expressions,
    # the API before that, are deprecated there). Rows without a verdict never reach here: the scorer sets one.
    allowed = scored.filter(expr=col(VERDICT) == "allow")
    flagged = scored.filter(expr=col(VERDICT) != "allow")
    return allowed, flagged
