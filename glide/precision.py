"""Device and precision chosen for the machine at run time: `device="auto"` and `dtype="auto"`.

Machines differ too much for a fixed choice: bf16 runs a GLIDE forward about twice as fast as float32
on a CPU with bf16 units (avx512_bf16, AMX) and 80-150x slower on one without, where it is emulated.
So the choice is made per machine:

- device "auto": cuda, then mps, then cpu;
- dtype "auto": on CUDA, float16 in the reference's `convert_to_fp16` layout (the precision the
  released checkpoints were trained in); on MPS, float16; on a CPU, bfloat16 when the CPU has bf16
  units (its capability flags) *and* a one-off probe of about 100 ms measures bf16 faster there, else
  float32. The probe's result is cached per machine (CPU model, flags, threads, torch version) in the
  cache directory, so later processes start without it.

dtype "int8" is asked for, never chosen by "auto": on a CPU the diffusion U-Nets run W8A8 through OpenVINO
(`glide.int8`), everything else in float32; on any other device it is an error, and device "auto" is the CPU.

A `Precision` says what was chosen and why; the CLI prints it, the demo shows it, and every image's
settings record it.
"""
import json
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, FrozenSet, Optional, Union

import torch

from .download import default_cache_dir
from .errors import UserError
from .fileio import write_text_atomic

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
INT8 = "int8"   # not a torch dtype the models run in: the U-Nets' OpenVINO int8 (glide.int8)
DTYPE_CHOICES = ("auto", *DTYPES, INT8)
DEVICE_AUTO = "auto"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")   # native bf16 arithmetic: x86 AVX-512 and AMX, Arm
# bf16 must beat float32 by this factor in the probe: a tie is not worth bf16's lost precision.
PROBE_MIN_SPEEDUP = 1.2
PROBE_VERSION = 1   # bump when the probe's workload changes, so cached results are measured again


@dataclass(frozen=True)
class Precision:
    """The dtype a pipeline runs its diffusion models in, and why."""

    dtype: str       # "float32", "bfloat16", "float16" or "int8"
    reason: str      # one line for people: "auto: CPU has avx512_bf16; probe: bf16 1.9x faster"
    auto: bool       # chosen by "auto" rather than asked for

    def describe(self) -> str:
        return f"{self.dtype} ({self.reason})"


# ---------------------------------------------------------------------------------------------- device
def resolve_device(device: Union[str, torch.device, None] = DEVICE_AUTO, dtype: str = "auto") -> torch.device:
    """`device` as a torch.device this machine has; "auto" (or None) is cuda, then mps, then cpu, or the cpu
    for dtype "int8", which runs nowhere else (checked first: the error names int8, not a missing GPU)."""
    if dtype == INT8:
        if device is None or str(device) == DEVICE_AUTO:
            return torch.device("cpu")
        _check_int8_device(_parsed(device))
    if device is None or str(device) == DEVICE_AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = _parsed(device)
    # Checked up front because torch's own failure comes late, from deep inside model loading.
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device} was asked for but no CUDA GPU is available to torch")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device {device} was asked for but torch sees {torch.cuda.device_count()} GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {device} was asked for but this machine has no Apple MPS device")
    return device


def _parsed(device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"bad device {device!r}: {exc}") from None


def _check_int8_device(device: torch.device):
    if device.type != "cpu":
        raise UserError(f"dtype int8 runs on the CPU only (its U-Nets through OpenVINO), not on {device}: on a GPU "
                        "use dtype auto, float16 or bfloat16; for int8 use device cpu (or auto)")


# ---------------------------------------------------------------------------------------------- the CPU
def cpu_model() -> str:
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if match:
            return match.group(1).strip()
    except OSError:   # not Linux: platform has less detail, but something
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> FrozenSet[str]:
    """The CPU's capability flags (Linux /proc/cpuinfo: x86 `flags`, Arm `Features`); empty elsewhere."""
    try:
        match = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        return frozenset(match.group(1).split()) if match else frozenset()
    except OSError:
        return frozenset()


# The flags that decide matmul speed and the precision `auto` picks, and the int8 instructions (VNNI, AMX) that
# decide dtype int8's: what a speed figure records beside it.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "avx512_vnni", "avx_vnni",
               "amx_int8")


def cpu_description() -> str:
    """The CPU as a report records it beside a speed figure: "AMD EPYC (avx2, avx512_bf16, avx512f, fma)"."""
    flags = cpu_flags()
    return f"{cpu_model()} ({', '.join(sorted(f for f in SPEED_FLAGS if f in flags)) or 'no speed flags known'})"


def native_bf16_flags(flags: FrozenSet[str]) -> list:
    """The flags that say the CPU computes bf16 natively."""
    return [f for f in BF16_CPU_FLAGS if f in flags]


def probe_bf16_speedup(size: int = 256, repeats: int = 3) -> float:
    """float32 time / bfloat16 time of a GLIDE-like workload (a 3x3 convolution and a matmul): ~100 ms.

    Only run where the flags promise bf16 units: emulated bf16 would take seconds here.
    """
    x = torch.randn(2, 128, 32, 32)
    w = torch.randn(128, 128, 3, 3)
    a, b = torch.randn(size, size), torch.randn(size, size)

    def best_of(dtype) -> float:
        xs, ws, as_, bs = (t.to(dtype) for t in (x, w, a, b))
        torch.nn.functional.conv2d(xs, ws, padding=1), as_ @ bs   # warm-up: oneDNN picks its kernels
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.nn.functional.conv2d(xs, ws, padding=1)
            for _ in range(4):
                as_ @ bs
            times.append(time.perf_counter() - start)
        return min(times)

    with torch.no_grad():
        return best_of(torch.float32) / best_of(torch.bfloat16)


def _probe_cache_file() -> Path:
    """Beside the checkpoints ($GLIDE_CACHE_DIR, else ~/.cache/glide)."""
    return default_cache_dir() / "precision-probe.json"


def _machine_key() -> str:
    return (f"v{PROBE_VERSION} | {cpu_model()} | {' '.join(sorted(native_bf16_flags(cpu_flags())))} | "
            f"threads {torch.get_num_threads()} | torch {torch.__version__}")


def cached_bf16_speedup(probe: Callable[[], float] = probe_bf16_speedup) -> float:
    """The probe's result for this machine, measured once and kept in the cache directory."""
    path, key = _probe_cache_file(), _machine_key()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if isinstance(cached, dict) and isinstance(cached.get(key), (int, float)):
        return float(cached[key])
    speedup = probe()
    cached = cached if isinstance(cached, dict) else {}
    cached[key] = round(speedup, 3)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(cached, indent=1))
    except OSError:   # a read-only cache costs the probe again next time, nothing more
        pass
    return speedup


# ---------------------------------------------------------------------------------------------- the choice
def choose_precision(dtype: str, device: torch.device, *, flags: Optional[FrozenSet[str]] = None,
                     speedup: Optional[Callable[[], float]] = None) -> Precision:
    """The dtype to run in on `device`: `dtype` itself unless it is "auto" (module docstring).

    `flags` and `speedup` stand in for the CPU's flags and the cached probe (tests fake both).
    """
    if dtype not in DTYPE_CHOICES:
        raise UserError(f"dtype must be one of {list(DTYPE_CHOICES)}, got {dtype!r}")
    if dtype == INT8:
        _check_int8_device(device)
        return Precision(INT8, "asked for: the U-Nets W8A8 through OpenVINO, text encoder and CLIP float32", auto=False)
    if dtype != "auto":
        return Precision(dtype, "asked for", auto=False)
    if device.type == "cuda":
        return Precision("float16", "auto: CUDA, the reference's fp16 layout", auto=True)
    if device.type == "mps":
        return Precision("float16", "auto: Apple MPS", auto=True)
    if device.type != "cpu":
        return Precision("float32", f"auto: {device.type}", auto=True)
    native = native_bf16_flags(cpu_flags() if flags is None else flags)
    if not native:
        return Precision("float32", "auto: this CPU has no bf16 units (bf16 would be emulated, far slower)",
                         auto=True)
    measured = (speedup or cached_bf16_speedup)()
    if measured < PROBE_MIN_SPEEDUP:
        return Precision("float32", f"auto: CPU has {native[0]} but bf16 measured only {measured:.2f}x "
                                    "float32's speed here", auto=True)
    return Precision("bfloat16", f"auto: CPU has {native[0]}; bf16 measured {measured:.1f}x float32's speed",
                     auto=True)
