"""Which engine and precision to run a bundle at, and which calibration goes with it.

Pure functions over a `Platform` (CPU flags, whether a CUDA GPU and openvino are there) and the bundle's
manifest, so tests inject any machine (AMX, avx512_bf16, neither, a GPU) without having one.

Rules (`choose`):
- `auto` engine and precision: the CUDA EP when a GPU is visible (fp16 when the bundle has an fp16 graph
  *and* an fp16 calibration, else fp32); else OpenVINO bf16 when the CPU has AMX or avx512_bf16, openvino
  is installed and the bundle has a bf16 calibration; else onnxruntime fp32 on CPU. On the CPU, OpenVINO
  int8 (the bundle's NNCF-quantized graph, exporter/int8.py) goes before bf16 where it pays: the bundle
  has an int8 graph and an int8 calibration, and the graph's record says that on a CPU of this model
  int8 was measured faster, batch invariant, and within 0.002 AUROC of fp32 on guard-dev and on each
  role's turns (`int8_pays`). `auto`
  only ever picks a calibrated precision, so it never refuses.
- An explicit engine or precision is honoured or refused with a message that says what is missing; it
  never silently runs something else (e.g. bf16 on a CPU without bf16 units would run in fp32 in
  OpenVINO: refused).
- A precision the manifest has no calibration for is refused (UncalibratedPrecision) unless
  `allow_uncalibrated` is set; then it is served at the fp32 threshold (and the server warns).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

ENGINES = ("auto", "ort", "openvino")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
DEVICES = ("auto", "cpu", "cuda")
# What each engine can run, per device.
SUPPORTED = {("ort", "cpu"): ("fp32", "fp16"), ("ort", "cuda"): ("fp32", "fp16"), ("openvino", "cpu"): ("fp32", "bf16", "int8")}
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
FP16_MODEL = "model.fp16.onnx"
INT8_MODEL = "model.int8.xml"  # OpenVINO IR, weights in model.int8.bin
INT8_AUROC_TOLERANCE = 0.002  # the largest AUROC loss vs fp32 (guard-dev, each role) at which auto may pick int8


class EngineError(ValueError):
    """The requested engine/precision/device cannot run here or on this bundle."""


class UncalibratedPrecision(EngineError):
    """The bundle has no calibration for the precision asked for."""


@dataclass(frozen=True)
class Platform:
    cpu_flags: frozenset
    has_cuda: bool
    has_openvino: bool
    cpu_model: str = ""  # /proc/cpuinfo "model name": where an int8 speed measurement holds

    @property
    def cpu_bf16(self) -> bool:
        return has_bf16_units(self.cpu_flags)


def has_bf16_units(cpu_flags) -> bool:
    """Whether a CPU with these flags runs bf16 natively (AMX or avx512_bf16)."""
    return any(f in cpu_flags for f in BF16_CPU_FLAGS)


@dataclass(frozen=True)
class Choice:
    engine: str  # ort | openvino
    precision: str  # fp32 | bf16 | fp16
    device: str  # cpu | cuda
    calibrated: bool  # False only under allow_uncalibrated
    reason: str

    @property
    def label(self) -> str:
        """`engine/precision/device`, e.g. openvino/bf16/cpu (logs, Info, reftguard_bundle_info)."""
        return f"{self.engine}/{self.precision}/{self.device}"


def _cpuinfo(key: str, path: str = "/proc/cpuinfo") -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def read_cpu_flags(path: str = "/proc/cpuinfo") -> frozenset:
    """The CPU's feature flags (Linux); empty elsewhere, which makes `auto` fall back to fp32."""
    return frozenset((_cpuinfo("flags", path) or "").split())


def read_cpu_model(path: str = "/proc/cpuinfo") -> str:
    return _cpuinfo("model name", path) or ""


def detect_platform(cpu_flags=None) -> Platform:
    """This machine, with `cpu_flags` (an iterable of flag names) overriding /proc/cpuinfo."""
    has_cuda = False
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    flags = read_cpu_flags() if cpu_flags is None else frozenset(cpu_flags)
    return Platform(flags, has_cuda, importlib.util.find_spec("openvino") is not None, read_cpu_model())


# --- the manifest side -------------------------------------------------------------------------

def calibrations(manifest: dict) -> dict[str, dict]:
    """{precision: entry} of every calibration the bundle carries. An entry holds `threshold` and
    `calibration` (and, when written by `reftguard calibrate`, `engine`, `parity_vs_fp32` and
    `batch_invariance`). The top-level threshold/calibration is fp32's (bundles from before
    per-precision calibration have only that)."""
    out = {p: dict(e) for p, e in (manifest.get("precisions") or {}).items()}
    fp32 = {"threshold": manifest["threshold"], "calibration": manifest.get("calibration") or {}}
    if manifest.get("roles"):  # assistant/system thresholds (whole-record scoring), fp32's at the top level too
        fp32["roles"] = manifest["roles"]
    if manifest.get("review"):  # the user turns' review band, fp32's at the top level too
        fp32["review"] = manifest["review"]
    out.setdefault("fp32", fp32)
    return out


def calibration_for(manifest: dict, precision: str) -> dict | None:
    return calibrations(manifest).get(precision)


def has_fp16_graph(manifest: dict) -> bool:
    return FP16_MODEL in (manifest.get("files") or {})


def has_int8_graph(manifest: dict) -> bool:
    return INT8_MODEL in (manifest.get("files") or {})


def int8_pays(manifest: dict, platform: Platform) -> tuple[bool, str]:
    """(whether auto should serve int8 here, why): the int8 graph's record (exporter/int8.py) must show it
    faster, on a CPU of this model, than what auto serves otherwise, batch invariant, and its guard-dev
    AUROC (and each role's roles-dev AUROC, where the bundle has role features) within INT8_AUROC_TOLERANCE of fp32."""
    rec = manifest.get("int8") or {}
    if not (has_int8_graph(manifest) and "int8" in calibrations(manifest) and platform.has_openvino):
        return False, "int8 needs the bundle's int8 graph, an int8 calibration and openvino"
    speed, auroc = rec.get("speed") or {}, rec.get("auroc") or {}
    if speed.get("cpu_model") != platform.cpu_model or not platform.cpu_model:
        return False, f"int8 was timed on {speed.get('cpu_model')!r}, not on this CPU ({platform.cpu_model!r})"
    if not speed.get("int8_speedup", 0) > 1.0:
        return False, f"int8 was not faster than {speed.get('baseline')} on this CPU ({speed.get('int8_speedup')}x)"
    # guard-dev user turns, then each role the bundle reads with a feature of its own (whole records)
    rankings = {"guard-dev": auroc, **{f"{role} turns": a for role, a in (rec.get("auroc_by_role") or {}).items()}}
    for where, a in rankings.items():
        loss = a.get("fp32", 1) - a.get("int8", 0)
        if not loss <= INT8_AUROC_TOLERANCE:
            return False, f"int8 loses {loss:.3f} AUROC on {where} (more than {INT8_AUROC_TOLERANCE})"
    if rec.get("batch_invariance_max_abs") != 0:
        return False, "int8 scores depend on the batch"
    return True, (f"int8 measured {speed['int8_speedup']:.2f}x {speed['baseline']} on this CPU, guard-dev AUROC {auroc['int8']:.4f} "
                  f"vs fp32 {auroc['fp32']:.4f}")


# --- the choice ----------------------------------------------------------------------------------

def choose(manifest: dict, platform: Platform, engine: str = "auto", precision: str = "auto", device: str = "auto",
           allow_uncalibrated: bool = False) -> Choice:
    for name, v, allowed in (("engine", engine, ENGINES), ("precision", precision, PRECISIONS), ("device", device, DEVICES)):
        if v not in allowed:
            raise EngineError(f"{name} must be one of {allowed}, got {v!r}")
    cal = calibrations(manifest)
    fp16_ready = has_fp16_graph(manifest) and "fp16" in cal

    # 1. device
    if device == "cuda" and not platform.has_cuda:
        raise EngineError("device 'cuda' requested but onnxruntime sees no CUDA GPU (install reftguard[gpu] on a GPU machine)")
    if engine == "openvino" or precision in ("bf16", "int8"):
        if device == "cuda":
            raise EngineError("OpenVINO, bf16 and int8 run on the CPU here; use --device cpu or auto (the GPU path is ort fp16/fp32)")
        dev = "cpu"
    elif device == "auto":
        dev = "cuda" if platform.has_cuda else "cpu"
    else:
        dev = device

    # 2. engine and precision
    if engine == "auto" and precision == "auto":
        if dev == "cuda":
            eng, prec, why = "ort", ("fp16" if fp16_ready else "fp32"), "a CUDA GPU is visible" + ("" if fp16_ready else "; the bundle has no calibrated fp16 graph")
        elif (int8 := int8_pays(manifest, platform))[0]:
            eng, prec, why = "openvino", "int8", int8[1]
        elif platform.cpu_bf16 and platform.has_openvino and "bf16" in cal:
            eng, prec, why = "openvino", "bf16", "the CPU has " + "/".join(f for f in BF16_CPU_FLAGS if f in platform.cpu_flags) + ", openvino is installed and the bundle has a bf16 calibration"
        else:
            missing = [m for m, ok in (("AMX/avx512_bf16 on the CPU", platform.cpu_bf16), ("openvino", platform.has_openvino),
                                       ("a bf16 calibration in the bundle", "bf16" in cal)) if not ok]
            eng, prec, why = "ort", "fp32", "no GPU; bf16 needs " + ", ".join(missing)
    elif precision == "auto":
        eng = engine
        if eng == "openvino" and (int8 := int8_pays(manifest, platform))[0]:
            prec, why = "int8", int8[1]
        elif eng == "openvino":
            ok = platform.cpu_bf16 and "bf16" in cal
            prec, why = ("bf16", "bf16 CPU and a bf16 calibration") if ok else ("fp32", "no bf16 units or no bf16 calibration")
        else:
            ok = dev == "cuda" and fp16_ready
            prec, why = ("fp16", "CUDA and a calibrated fp16 graph") if ok else ("fp32", "fp32 is the reference precision")
    elif engine == "auto":
        prec = precision
        eng = "openvino" if prec in ("bf16", "int8") else "ort"
        why = f"{prec} runs on {eng}"
    else:
        eng, prec, why = engine, precision, "as requested"

    # 3. can it run here?
    if eng == "openvino" and not platform.has_openvino:
        raise EngineError("engine 'openvino' needs the openvino package (pip install 'reftguard[server]' or openvino)")
    if prec not in SUPPORTED[(eng, dev)]:
        raise EngineError(f"{eng} on {dev} runs {' or '.join(SUPPORTED[(eng, dev)])}, not {prec}")
    if prec == "bf16" and not platform.cpu_bf16:
        raise EngineError("precision bf16 needs a CPU with AMX or avx512_bf16 (this one has neither; OpenVINO would silently run fp32)")
    if prec == "int8" and not has_int8_graph(manifest):
        raise EngineError(f"precision int8 needs the bundle's int8 graph ({INT8_MODEL}); add it with `reftguard export --int8` "
                          "or reftguard.exporter.int8.add_int8_graph(bundle)")
    if prec == "fp16" and not has_fp16_graph(manifest):
        raise EngineError(f"precision fp16 needs the bundle's fp16 graph ({FP16_MODEL}); add it with `reftguard export --fp16` "
                          "or reftguard.exporter.fp16.add_fp16_graph(bundle)")

    # 4. calibrated?
    calibrated = prec in cal
    if not calibrated and not allow_uncalibrated:
        raise UncalibratedPrecision(
            f"the bundle has no {prec} calibration (it has: {', '.join(sorted(cal))}); a {prec} engine shifts scores, so the "
            f"fp32 threshold does not hold there. Run `reftguard calibrate --precision {prec} ...` on this bundle, or serve "
            f"with --allow-uncalibrated-precision to use the fp32 threshold anyway")
    return Choice(eng, prec, dev, calibrated, why)
