"""Where and how tensors compute: device choice, CPU threads, precision."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from gptcls.errors import GptclsError
from gptcls.options import PRECISIONS


def device_for(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
    """bf16 autocast on CUDA always; on CPU when `precision` resolves to bf16 (fp32 is the
    exact, tested path). Matrix products run in bf16; norms and the residual stream stay fp32."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    enabled = resolve_precision(precision, device) == "bf16"
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


@functools.cache  # asked on every batch by autocast; the CPU does not change
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matrix products run 2-3x faster than fp32 there (measured on
    a 2-core AMD EPYC: 416 vs 125-187 GFLOP/s); elsewhere bf16 is emulated and slower."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" -> "bf16" or "fp32" for this device; other values are checked and kept."""
    if precision not in PRECISIONS:
        raise GptclsError(f"unknown precision {precision!r}; choose one of: "
                          f"{', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "fp32"
