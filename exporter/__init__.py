"""Turn a teacher (HF causal LM + R_l at layer l) into an ONNX guard bundle."""
