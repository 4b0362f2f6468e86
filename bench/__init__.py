"""Maintained benchmarks, run from the repository root as modules (`python -m bench.soak`, `python -m
bench.serve_vs_ort`, ...); their committed results are in bench/results/ and docs/results.md is rendered from
them (`python -m bench.render_results`). Not installed. One-off experiments live in research/."""
