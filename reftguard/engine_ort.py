"""Moved to reftguard.engines.ort; this name stays for callers written before there were several engines."""
from reftguard.engines.ort import OrtBackend, OrtEngine, available_cores  # noqa: F401
