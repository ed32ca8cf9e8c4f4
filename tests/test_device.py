"""Device choice (CUDA, then Apple's MPS, then CPU) and bf16 only where the device has it; GPUs
are faked by patching torch's availability checks."""

from __future__ import annotations

import pytest
import torch

from gptcls import device as dev
from gptcls.device import autocast, device_for, resolve_precision
from gptcls.errors import GptclsError


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """Set what torch reports: fake(cuda=..., mps=..., macos14=..., cuda_bf16=..., cpu_bf16=...)."""
    def fake(cuda: bool = False, mps: bool = False, macos14: bool = False,
             cuda_bf16: bool = True, cpu_bf16: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer",
                            lambda major, minor: macos14 and (major, minor) <= (14, 0))
        monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                            lambda including_emulation=True: cuda_bf16)
        monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: cpu_bf16)
    return fake


@pytest.mark.parametrize(("cuda", "mps", "expected"), [
    (True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_picks_cuda_then_mps_then_cpu(machine, cuda: bool, mps: bool, expected: str) -> None:
    machine(cuda=cuda, mps=mps)
    assert device_for("auto") == torch.device(expected)
    assert device_for() == torch.device(expected)


def test_named_devices_must_exist(machine) -> None:
    machine(cuda=False, mps=False)
    assert device_for("cpu") == torch.device("cpu")
    with pytest.raises(GptclsError, match="--device mps: no Apple GPU here") as err:
        device_for("mps")
    assert "\n" not in str(err.value)
    with pytest.raises(GptclsError, match="--device cuda: torch sees no CUDA GPU"):
        device_for("cuda")
    with pytest.raises(GptclsError, match="unknown device 'tpu7'"):
        device_for("tpu7")
    machine(cuda=False, mps=True)
    assert device_for("mps") == torch.device("mps")


def test_mps_precision_is_fp32_unless_torch_reports_bf16(machine) -> None:
    mps = torch.device("mps")
    machine(mps=True, macos14=False)
    assert resolve_precision("auto", mps) == "fp32"
    assert resolve_precision("fp32", mps) == "fp32"
    with pytest.raises(GptclsError, match="--precision bf16: this Apple GPU has no bf16"):
        resolve_precision("bf16", mps)
    machine(mps=True, macos14=True)
    assert resolve_precision("auto", mps) == "bf16"
    assert resolve_precision("bf16", mps) == "bf16"


def test_cuda_and_cpu_precision_follow_native_bf16(machine) -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    machine(cuda=True, cuda_bf16=True)
    assert resolve_precision("auto", cuda) == "bf16"
    machine(cuda=True, cuda_bf16=False)  # e.g. a V100 or T4: bf16 would be emulated
    assert resolve_precision("auto", cuda) == "fp32"
    machine(cpu_bf16=True)
    assert resolve_precision("auto", cpu) == "bf16"
    machine(cpu_bf16=False)
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"  # asked for: emulated, but allowed
    with pytest.raises(GptclsError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", cpu)


def test_autocast_is_enabled_only_for_bf16(machine) -> None:
    machine(mps=True, macos14=False, cpu_bf16=False)
    for device in (torch.device("mps"), torch.device("cpu")):
        with autocast(device, "auto"):
            assert not torch.is_autocast_enabled(device.type)
    machine(mps=True, macos14=True)
    with autocast(torch.device("mps"), "auto"):
        assert torch.is_autocast_enabled("mps")
        assert torch.get_autocast_dtype("mps") == torch.bfloat16
    with autocast(torch.device("cpu"), "bf16"):
        assert torch.is_autocast_enabled("cpu")


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """A CPU that reports AVX512-BF16, whose measured bf16/fp32 speed the test sets; the
    measurement is remembered in a cache folder of the test's own."""
    monkeypatch.setenv("GPTCLS_CACHE", str(tmp_path))
    monkeypatch.delenv("GPTCLS_BF16", raising=False)  # the suite's own setting (conftest)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    calls = []

    def set_speed(fp32_s: float, bf16_s: float) -> list:
        def seconds(dtype, *args, **kwargs):
            calls.append(dtype)
            return bf16_s if dtype == torch.bfloat16 else fp32_s
        monkeypatch.setattr(dev, "_gemm_seconds", seconds)
        dev.cpu_has_native_bf16.cache_clear()
        return calls
    yield set_speed
    dev.cpu_has_native_bf16.cache_clear()


def test_a_bf16_flag_with_slow_bf16_products_stays_fp32(bf16_cpu) -> None:
    bf16_cpu(fp32_s=1.0, bf16_s=1.8)  # as measured on a 2-core Intel Xeon: 0.53x
    assert not dev.cpu_has_native_bf16()
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"


def test_a_bf16_flag_with_fast_bf16_products_uses_bf16(bf16_cpu) -> None:
    bf16_cpu(fp32_s=1.0, bf16_s=0.4)  # as measured on a 2-core AMD EPYC: about 2.5x
    assert dev.cpu_has_native_bf16()
    assert resolve_precision("auto", torch.device("cpu")) == "bf16"


def test_the_bf16_measurement_is_made_once_per_machine(bf16_cpu, tmp_path) -> None:
    calls = bf16_cpu(fp32_s=1.0, bf16_s=0.4)
    assert dev.bf16_speedup() == pytest.approx(2.5)
    assert len(calls) == 2 and (tmp_path / "cpu-bf16.json").is_file()
    bf16_cpu(fp32_s=1.0, bf16_s=2.0)  # a later, noisier measurement would disagree: not taken
    assert dev.bf16_speedup() == pytest.approx(2.5) and len(calls) == 2


@pytest.mark.parametrize("value", ["0", "1"])
def test_gptcls_bf16_in_the_environment_settles_auto_without_measuring(bf16_cpu, monkeypatch,
                                                                       value) -> None:
    calls = bf16_cpu(fp32_s=1.0, bf16_s=0.4)  # fast bf16, were it measured
    monkeypatch.setenv("GPTCLS_BF16", value)
    assert dev.cpu_has_native_bf16() is (value == "1")
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if value == "1" else "fp32")
    assert calls == []
