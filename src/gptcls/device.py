"""Where and how tensors compute: device choice, CPU threads, precision."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import torch

from gptcls.errors import GptclsError
from gptcls.options import PRECISIONS


def device_for(name: str = "auto") -> torch.device:
    """"auto": a CUDA GPU, else an Apple GPU (MPS), else the CPU. A device named explicitly
    must exist here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GptclsError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "mps" and not mps_available():
        raise GptclsError("--device mps: no Apple GPU here (torch.backends.mps.is_available() is "
                          "False: it needs Apple silicon, macOS 12.3+ and a torch built with "
                          "MPS); use --device auto or cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GptclsError(f"--device {name}: torch sees no CUDA GPU here; use --device auto or cpu")
    return device


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def physical_cores() -> int:
    """Cores this process may use, counting hyper-threads once (matrix products gain nothing
    from a core's second thread and lose time to contention)."""
    import os

    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    logical = len(allowed) if allowed else (os.cpu_count() or 1)
    try:
        cores = count_cores(Path("/proc/cpuinfo").read_text(), allowed)
    except (OSError, ValueError):
        return logical
    return max(1, min(cores, logical)) if cores else logical


def count_cores(cpuinfo: str, allowed: set[int] | None = None) -> int:
    """Distinct (physical id, core id) pairs among the allowed processors of /proc/cpuinfo."""
    cores: set[tuple[str, str]] = set()
    cpu, phys = -1, "0"
    for line in cpuinfo.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor":
            cpu, phys = int(value), "0"
        elif key == "physical id":
            phys = value
        elif key == "core id" and (allowed is None or cpu in allowed):
            cores.add((phys, value))
    return len(cores)


def configure_threads() -> int:
    """torch's CPU threads = physical cores, unless OMP_NUM_THREADS or GPTCLS_THREADS says."""
    import os

    wanted = os.environ.get("GPTCLS_THREADS") or os.environ.get("OMP_NUM_THREADS")
    n = int(wanted) if wanted and wanted.isdigit() and int(wanted) > 0 else physical_cores()
    torch.set_num_threads(n)
    return n


def autocast(device: torch.device, precision: str = "fp32"):
    """bf16 autocast on CUDA always (where the GPU has bf16); on CPU and MPS when `precision`
    resolves to bf16 (fp32 is the exact, tested path). Matrix products run in bf16; norms and
    the residual stream stay fp32."""
    if device.type not in ("cuda", "cpu", "mps"):
        return contextlib.nullcontext()
    enabled = effective_precision(precision, device) == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def effective_precision(precision: str, device: torch.device) -> str:
    """The precision `autocast` computes in: on CUDA bf16 wherever the GPU has it natively
    (whatever `precision` says), elsewhere `resolve_precision`'s answer."""
    if device.type == "cuda":
        return "bf16" if has_native_bf16(device) else "fp32"
    if device.type not in ("cpu", "mps"):
        return "fp32"
    return resolve_precision(precision, device)  # "int8": modules swapped, autocast off


@functools.cache  # asked on every batch by autocast; the CPU does not change
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX, and bf16 matrix products measured faster than fp32 here. The flag
    alone is not enough: a 2-core AMD EPYC multiplies bf16 at 416 vs 125-187 GFLOP/s (fp32),
    but a 2-core Intel Xeon that reports AVX512-BF16 did 175 vs 315 GFLOP/s (bf16 slower).
    GPTCLS_BF16=0 (or 1) in the environment settles it without looking: "auto" then means
    the same on every machine (the test suite sets 0: its parity checks are fp32's)."""
    forced = os.environ.get("GPTCLS_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    if not any(bool(getattr(cpu, name, lambda: False)()) for name in checks):
        return False
    return bf16_speedup() >= BF16_MIN_SPEEDUP


BF16_MIN_SPEEDUP = 1.25  # below this, bf16's rounding is not worth it


def bf16_speedup() -> float:
    """bf16 / fp32 matrix-product throughput on this CPU with the current thread count,
    measured once (about 0.1 s) and remembered in the cache folder per CPU model, torch
    version and thread count, so that every run on a machine makes the same choice."""
    import json
    import platform

    from gptcls.files import atomic_write_text, cache_dir

    key = f"{_cpu_model() or platform.processor()}|torch {torch.__version__}|" \
          f"{torch.get_num_threads()} threads"
    path = cache_dir() / "cpu-bf16.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = round(_gemm_seconds(torch.float32) / _gemm_seconds(torch.bfloat16), 3)
        try:
            atomic_write_text(path, json.dumps(known, indent=1) + "\n")
        except OSError:
            pass  # a read-only cache: measure again next time
    return float(known[key])


def _gemm_seconds(dtype: torch.dtype, n: int = 1024, reps: int = 5) -> float:
    """The fastest of `reps` (n x n) @ (n x n) products in `dtype`, after a warm-up."""
    import time

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return best


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return ""


def has_native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 in hardware (or, for MPS, whether torch says it can)."""
    if device.type == "cuda":
        try:  # emulated bf16 (pre-Ampere GPUs) is slower than fp32
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # torch before 2.3 has no including_emulation
            return bool(torch.cuda.is_bf16_supported())
    if device.type == "mps":
        return mps_has_bf16()
    return device.type == "cpu" and cpu_has_native_bf16()


def mps_has_bf16() -> bool:
    """Conservative: bf16 on Apple GPUs needs macOS 14; without torch's word for it, fp32."""
    check = getattr(torch.backends.mps, "is_macos_or_newer", None)
    return bool(check is not None and mps_available() and check(14, 0))


def check_int8_device(device: torch.device) -> None:
    """int8 dynamic quantization has kernels on the CPU only (fbgemm/x86, qnnpack)."""
    if device.type != "cpu":
        raise GptclsError(f"--precision int8 is a CPU path (dynamic int8 quantization); on "
                          f"{device.type} use --precision auto, bf16 or fp32, or --device cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" -> "bf16" where `device` has native bf16, else "fp32"; other values are checked
    and kept ("bf16" on an Apple GPU without bf16 is an error: MPS cannot emulate it)."""
    if precision not in PRECISIONS:
        raise GptclsError(f"unknown precision {precision!r}; choose one of: "
                          f"{', '.join(PRECISIONS)}")
    if precision == "int8":
        check_int8_device(device)
    if precision == "bf16" and device.type == "mps" and not mps_has_bf16():
        raise GptclsError("--precision bf16: this Apple GPU has no bf16 in torch (it needs "
                          "macOS 14+); use --precision fp32 or auto")
    if precision != "auto":
        return precision
    return "bf16" if has_native_bf16(device) else "fp32"
