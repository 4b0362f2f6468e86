"""reftguard: a streaming data guard for LLM finetuning pipelines (ReFT refusal-feature scoring)."""

__version__ = "0.1.0"
