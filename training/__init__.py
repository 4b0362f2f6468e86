"""Fitting and training the refusal feature (torch / transformers live here, never in the server)."""
