"""Validation of an exported guard graph, the way optimum's `validate_model_outputs` checks its exports.

The reference is the *original* HF model, not the exporter's own truncated module: its forward with
`output_hidden_states=True` gives `hidden_states[l]`, whose last-real-token rows go through the same
cosine (same R_l, same centre) as the graph's head. The exported graph runs in onnxruntime on:
  - the parity prompts, encoded exactly as the server encodes them (template, max_tokens), and
  - the family's dummy inputs (seeded random tokens, mixed lengths, one row of length 1),
each batch right-padded (as served) and left-padded (the graph must not care where the padding is).
The HF reference gets position ids from the mask, as `generate` does, so every real token sits at
0..n-1 whatever the padding side. Each case's max |Δscore| must stay within the family's `atol`.

Two details of transformers: for l = num_layers, `hidden_states[l]` has the final norm applied and the
guard reads the state before it, so there the reference is the last decoder layer's output (captured by
a forward hook); and a padded query row is garbage in both, which is why only last-real-token rows count.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from reftguard.bundle import GuardBundle

PARITY_PROMPTS = (
    "hi",
    "How do I bake sourdough bread at home?",
    "Write a Python function that merges two sorted lists and explain its complexity in detail.",
    "Explain how to kill a zombie process on Linux.",
    "Give step-by-step instructions for picking a lock on a neighbour's front door without being noticed.",
    "Summarise the following passage in two sentences: " + "The committee met on Tuesday to review the budget. " * 6,
    "¿Cuál es la capital de Francia? 日本語のテキストも少し。 emoji 🚀",
    "x" * 3,
)
REFERENCE = "HF model, output_hidden_states=True: hidden_states[l] at the last real token (before the final norm)"

Scorer = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, ...]]  # (score, feature_norm[, state[, topic_state, tail_state]])


class ParityError(RuntimeError):
    """The exported graph's scores differ from the reference by more than atol."""


def left_padded(input_ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same rows with their padding moved to the left."""
    ids, m = np.zeros_like(input_ids), np.zeros_like(mask)
    width = mask.shape[1]
    for i, n in enumerate(mask.sum(1)):
        ids[i, width - n :], m[i, width - n :] = input_ids[i, :n], 1
    return ids, m


def hf_reference(causal_lm: Any, layer: int, refusal_feature, center, topic_layer: int = 0, tail_tokens: int = 32) -> Scorer:
    """(input_ids, mask) -> (score, feature_norm, state[, topic_state, tail_state]) from the original HF forward at
    layer `layer` (and the mean of `hidden_states[topic_layer]` over all real tokens and over the last `tail_tokens`)."""
    import torch

    from reftguard.modeling.families import family_for
    from reftguard.modeling.guard import cosine, gather_last, masked_mean, tail_mask

    decoder = family_for(causal_lm.config).decoder(causal_lm)
    r = torch.as_tensor(refusal_feature, dtype=torch.float32)
    c = torch.as_tensor(center, dtype=torch.float32)
    last = layer == int(causal_lm.config.num_hidden_layers)

    @torch.no_grad()
    def run(input_ids: np.ndarray, mask: np.ndarray):
        ids, m = torch.from_numpy(input_ids), torch.from_numpy(mask)
        positions = (m.cumsum(-1) - 1).clamp(min=0)
        captured = {}
        hook = decoder.layers[layer - 1].register_forward_hook(lambda _m, _i, out: captured.update(h=out[0] if isinstance(out, tuple) else out)) if last else None
        try:
            out = decoder(input_ids=ids, attention_mask=m, position_ids=positions, output_hidden_states=True, use_cache=False)
        finally:
            if hook is not None:
                hook.remove()
        h = gather_last(captured["h"] if last else out.hidden_states[layer], m).float()
        top = captured["h"] if last and topic_layer == layer else out.hidden_states[topic_layer]  # the last layer's entry is normed
        topic = (masked_mean(top, m).numpy(), masked_mean(top, tail_mask(m, tail_tokens)).numpy()) if topic_layer else ()
        return cosine(h, r, c).numpy(), torch.linalg.vector_norm(h, dim=-1).numpy(), h.numpy(), *topic

    return run


def _batches(bundle: GuardBundle, texts, dummy, left: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from reftguard.encoding import PromptEncoder, pad_batch

    enc = PromptEncoder(bundle.tokenizer_path, bundle.prompt_format, bundle.max_tokens).encode(list(texts), "right")
    cases = {"prompts_right": pad_batch(enc.ids, bundle.pad_token_id)}
    if dummy is not None:
        cases["dummy_right"] = dummy
    for name in list(cases) if left else ():
        cases[name.replace("right", "left")] = left_padded(*cases[name])
    return cases


def compare(bundle: GuardBundle, reference: Scorer, texts=PARITY_PROMPTS, dummy=None, left: bool = True, engine=None) -> dict:
    """Max |Δscore| of `bundle` (ORT fp32 on CPU, or `engine`) vs `reference` per case (see module
    docstring), the overall max, the feature-norm and state relative errors (the state where both give it:
    per-role features are scored on it), and batch invariance (each prompt alone vs in the batch)."""
    from reftguard.encoding import pad_batch
    from reftguard.engines.ort import OrtEngine

    backend = engine or OrtEngine(bundle, device="cpu")
    cases, norm_err, state_err, topic_err = {}, 0.0, None, None
    for name, (input_ids, mask) in _batches(bundle, texts, dummy, left).items():
        out, ref = backend.run(input_ids, mask), reference(input_ids, mask)
        (scores, norms), (ref_scores, ref_norms) = out[:2], ref[:2]
        cases[name] = float(np.max(np.abs(scores - ref_scores)))
        norm_err = max(norm_err, float(np.max(np.abs(norms - ref_norms) / np.maximum(ref_norms, 1e-6))))
        if len(out) > 2 and len(ref) > 2:
            rel = np.linalg.norm(out[2] - ref[2], axis=-1) / np.maximum(np.linalg.norm(ref[2], axis=-1), 1e-6)
            state_err = max(state_err or 0.0, float(rel.max()))
        for k in range(3, min(len(out), len(ref))):  # topic_state, tail_state
            rel = np.linalg.norm(out[k] - ref[k], axis=-1) / np.maximum(np.linalg.norm(ref[k], axis=-1), 1e-6)
            topic_err = max(topic_err or 0.0, float(rel.max()))
        if name == "prompts_right":
            batched = scores
            alone = np.array([backend.run(*pad_batch([row[m.astype(bool)].tolist()], bundle.pad_token_id))[0][0] for row, m in zip(input_ids, mask)])
    return {
        "parity_max_abs_diff": max(cases.values()),
        "parity_cases": cases,
        "feature_norm_max_rel_diff": norm_err,
        **({"state_max_rel_diff": state_err} if state_err is not None else {}),
        **({"topic_state_max_rel_diff": topic_err} if topic_err is not None else {}),
        "batch_invariance_max_abs_diff": float(np.max(np.abs(alone - batched))),
        "n": len(texts),
    }


def validate_model_outputs(bundle: GuardBundle, causal_lm: Any, layer: int, refusal_feature, center, atol: float,
                           texts=PARITY_PROMPTS, topic_layer: int = 0, tail_tokens: int = 32) -> dict:
    """Parity of the exported graph against the original HF model; raises ParityError over `atol`."""
    from reftguard.modeling.families import family_for

    fam = family_for(causal_lm.config)
    dummy = fam.dummy_inputs(int(causal_lm.config.vocab_size))
    report = compare(bundle, hf_reference(causal_lm, layer, refusal_feature, center, topic_layer, tail_tokens), texts, dummy)
    report |= {"parity_reference": REFERENCE, "atol": atol}
    worst = max(report["parity_cases"], key=report["parity_cases"].get)
    if report["parity_max_abs_diff"] > atol:
        raise ParityError(
            f"export parity failed ({fam.name}, layer {layer}): max |ORT score - HF hidden_states[{layer}] score| = "
            f"{report['parity_max_abs_diff']:.2e} on {worst} > atol {atol:.0e}; per case: "
            + ", ".join(f"{k} {v:.1e}" for k, v in report["parity_cases"].items())
        )
    return report


def validate_against(bundle: GuardBundle, reference_bundle: GuardBundle, texts=PARITY_PROMPTS) -> dict:
    """Parity of a derived bundle (e.g. int8) against the bundle it came from (both in ORT), on the
    prompts as served (right-padded): the graphs are the same but for the weights."""
    from reftguard.engines.ort import OrtEngine

    return compare(bundle, OrtEngine(reference_bundle, device="cpu").run, texts, left=False)
