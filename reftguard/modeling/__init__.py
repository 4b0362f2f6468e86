"""Torch modeling shared by the exporter and training (docs/design.md §8); they import it and never each other.

    families.py  per-architecture export configs: decoder access, IO spec, dummy inputs, atol, limits
    guard.py     the guard module (truncated decoder, last-token gather, the one torch cosine head)
    loading.py   loading causal LMs (directory, hub id, GGUF, packaged SmolLM2) and the LoRA merge
    teacher.py   the teacher directory written by fit / train-teacher and read by export and distill

Needs the `train` extra (torch, transformers, peft). Imports the reftguard core only, never server/,
clients/, exporter/ or training/. Nothing is imported here, so `import reftguard.modeling` stays cheap.
"""
