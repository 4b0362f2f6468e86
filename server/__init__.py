"""The guard service: transport (servicer) -> batcher (one owner task) -> backend (ORT session).

Imports numpy, onnxruntime, tokenizers, grpc and prometheus-client only: never torch or transformers.
"""
