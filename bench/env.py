"""What the benchmark runs on, and how it times and measures: device facts, timers, peak memory, matmul rate.

Everything here is device-agnostic: the same code times a CPU and a GPU, synchronising the GPU
around each timed call so that a number is the wall time of finished work, never of a queued launch.
"""
import os
import platform
import re
import resource
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import torch

from glide import precision

REPO_ROOT = Path(__file__).resolve().parents[1]

# CPU features that decide whether half-precision matmuls have hardware support. Without
# avx512_bf16 / amx_bf16, oneDNN emulates bf16 and it is far slower than float32.
# ---------------------------------------------------------------------------------------------- device facts
def resolve_device(name: Optional[str]) -> torch.device:
    """The device to benchmark: `name` if given, else cuda when available, else cpu."""
    if name:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit(f"--device {name}: CUDA is not available in this torch build/machine")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _cpu_info() -> Dict:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    flags = precision.cpu_flags()
    return {"cpu_model": precision.cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": affinity,
            "cpu_flags": sorted(f for f in precision.SPEED_FLAGS if f in flags),
            "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def device_info(device: torch.device) -> Dict:
    """A description of the device precise enough to compare runs: model, threads or GPU, versions."""
    info = {"type": device.type, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), **_cpu_info(),
            # What the pipeline's dtype="auto" picks here, and why (glide.precision).
            "auto_dtype": precision.choose_precision("auto", device).describe()}
    try:
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)  # a busy machine makes every number slower
    except OSError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, gpu_memory_gb=round(props.total_memory / 2 ** 30, 1),
                    capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(),
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32)
    else:
        info["name"] = f"CPU {info['cpu_model']} ({info['torch_threads']} threads)"
    return info


def device_slug(info: Dict) -> str:
    """A file-name-safe device name: 'nvidia-h100-80gb-hbm3', 'cpu-amd-epyc-2t'."""
    if info["type"] == "cuda":
        raw = info["name"]
    else:
        raw = f"cpu-{info['cpu_model']}-{info['torch_threads']}t"
    return re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# ---------------------------------------------------------------------------------------------- timing
def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable, device: torch.device) -> float:
    """Seconds for one call of fn, with the device's queue drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def benchmark(fn: Callable, device: torch.device, *, warmup: int, max_repeats: int, budget_s: float,
              min_repeats: int = 1) -> Dict:
    """Time fn: `warmup` untimed calls, then as many timed calls as fit in `budget_s` (within the bounds).

    The repeat count follows from the last warm-up call's duration, so a 20 s CPU forward is timed
    once or twice and a 5 ms GPU forward a few hundred times' worth of budget, capped at max_repeats.
    Returns the median (what we report; robust to a straggler on a shared machine), all samples,
    and the first call's time (a torch.compile run pays its compilation there).
    """
    first = None
    last = 0.0
    for _ in range(max(1, warmup)):
        last = time_call(fn, device)
        first = last if first is None else first
    repeats = int(min(max_repeats, max(min_repeats, budget_s // max(last, 1e-9))))
    samples = [time_call(fn, device) for _ in range(repeats)]
    return {"median_s": statistics.median(samples), "samples_s": samples, "first_call_s": first,
            "repeats": repeats, "warmup": max(1, warmup)}


# ---------------------------------------------------------------------------------------------- memory
class PeakMemory:
    """Peak memory of a code region: GPU allocator peak, or the process's peak resident set on the CPU.

    CPU methods, best first: Linux's VmHWM after resetting it through /proc/self/clear_refs (exact,
    kernel-tracked, per region); psutil polling every 5 ms (misses short spikes); ru_maxrss (the
    peak of the whole process so far, so it cannot go down between regions: reported as such).
    tracemalloc is not an option: torch's allocations bypass Python's allocator.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.method = None
        self.peak_bytes = None
        self._stop = None

    def __enter__(self):
        if self.device.type == "cuda":
            self.method = "torch.cuda.max_memory_allocated"
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif _reset_hwm():
            self.method = "VmHWM (reset via /proc/self/clear_refs)"
        elif _psutil() is not None:
            self.method = "psutil RSS polled every 5 ms"
            self._start_polling()
        else:
            self.method = "ru_maxrss (peak of the whole process so far)"
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self.method.startswith("VmHWM"):
            self.peak_bytes = _read_hwm()
        elif self._stop is not None:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = self._peak
        else:
            # Linux reports ru_maxrss in KiB, macOS in bytes.
            scale = 1 if platform.system() == "Darwin" else 1024
            self.peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        return False

    def _start_polling(self):
        proc = _psutil().Process()
        self._peak = proc.memory_info().rss
        self._stop = threading.Event()

        def poll():
            while not self._stop.wait(0.005):
                self._peak = max(self._peak, proc.memory_info().rss)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()

    def as_dict(self) -> Dict:
        mb = None if self.peak_bytes is None else round(self.peak_bytes / 2 ** 20, 1)
        return {"peak_mem_mb": mb, "mem_method": self.method}


def _psutil():
    try:
        import psutil
        return psutil
    except ImportError:
        return None


def _read_hwm() -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS counter for this process (Linux >= 4.0); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _read_hwm() is not None
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- matmul rate
def matmul_rate(device: torch.device, dtype: torch.dtype, *, target_s: float, max_n: int, budget_s: float,
                max_repeats: int) -> Dict:
    """The device's dense matmul rate for `dtype`: FLOP/s of an N x N x N product, median of repeats.

    N doubles from 256 until one product (after an untimed one) takes `target_s` or N reaches `max_n`,
    so a fast GPU gets a large enough problem to saturate it and an emulated-bf16 CPU is not stuck for
    minutes on one call. (Timing the first product instead stopped the 2026-11-27 H200 run's bf16 and
    fp16 rows at N = 256, a thousand times below the card's rate, which made their MFU meaningless.)
    This is the denominator of every MFU figure, measured in the same run as the model.
    """
    gen = torch.Generator(device=device).manual_seed(0)
    n = 256
    while True:
        a = torch.randn(n, n, device=device, dtype=torch.float32, generator=gen).to(dtype)
        b = torch.randn(n, n, device=device, dtype=torch.float32, generator=gen).to(dtype)
        time_call(lambda: a @ b, device)  # untimed: a dtype's first product pays for library set-up
        t = time_call(lambda: a @ b, device)
        if t >= target_s or n >= max_n:
            break
        n *= 2
    stats = benchmark(lambda: a @ b, device, warmup=1, max_repeats=max_repeats, budget_s=budget_s)
    flop = 2.0 * n ** 3
    return {"n": n, "ms": stats["median_s"] * 1e3, "repeats": stats["repeats"],
            "gflop_per_s": flop / stats["median_s"] / 1e9}


def median(xs) -> float:
    return statistics.median(xs)
