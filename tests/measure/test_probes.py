"""Probes: peak memory (CPU for real, CUDA through fakes), NVML with a scripted fake pynvml,
CPU utilisation, and accuracy against the float64 reference."""

from __future__ import annotations

import math
import sys
import time
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from convbench.measure.probes import (
    Accuracy,
    CpuSampler,
    MemoryResult,
    NvmlSampler,
    Telemetry,
    accuracy,
    decode_throttle_reasons,
    measure_peak_memory,
)
from convbench.measure.probes import cpu as cpu_probe
from convbench.measure.probes import memory as memory_probe
from convbench.measure.probes import nvml as nvml_probe
from convbench.measure.probes.nvml import NvmlSample, summarise
from convbench.measure.reference import reference_conv
from convbench.problem.axes import TOLERANCE, tolerance

MB = 1_000_000


def empty_bytes(n: int) -> torch.Tensor:
    return torch.empty(n, dtype=torch.uint8)


# ---------------------------------------------------------------- memory: pure core


def test_peak_from_deltas():
    assert memory_probe.peak_from_deltas([]) == (0, 0)
    assert memory_probe.peak_from_deltas([4, 2, -4, 1, -2, -1]) == (6, 0)
    assert memory_probe.peak_from_deltas([5, -5, 3]) == (5, 3)
    assert memory_probe.peak_from_deltas([-8, 2]) == (0, -6)  # frees below start: peak is 0


# ---------------------------------------------------------------- memory: real CPU measurement


def test_cpu_single_tensor_allocated_and_freed_counts():
    def fn():
        t = empty_bytes(8 * MB)
        del t

    result = measure_peak_memory(fn, "cpu")
    assert result.method == memory_probe.METHOD_CPU
    assert 8 * MB <= result.peak_mem_bytes <= 8 * MB + 4096
    assert result.retained_bytes == 0
    assert result.note is None


def test_cpu_two_live_tensors_sum():
    def fn():
        a = empty_bytes(3 * MB)
        b = empty_bytes(5 * MB)
        del a, b

    result = measure_peak_memory(fn, torch.device("cpu"))
    assert 8 * MB <= result.peak_mem_bytes <= 8 * MB + 4096


def test_cpu_sequential_tensors_max_not_sum():
    def fn():
        a = empty_bytes(3 * MB)
        del a
        b = empty_bytes(5 * MB)
        del b

    assert 5 * MB <= measure_peak_memory(fn, "cpu").peak_mem_bytes <= 5 * MB + 4096


def test_cpu_nothing_allocated_is_zero():
    assert measure_peak_memory(lambda: None, "cpu") == MemoryResult(
        0, memory_probe.METHOD_CPU, retained_bytes=0
    )
    x = torch.ones(250_000)
    result = measure_peak_memory(lambda: x.add_(1), "cpu")  # in place: only the scalar 1
    assert result.peak_mem_bytes < 64
    assert result.retained_bytes == 0


def test_cpu_returned_tensor_is_retained():
    def fn():
        scratch = empty_bytes(2 * MB)
        del scratch
        return empty_bytes(MB)

    result = measure_peak_memory(fn, "cpu")
    assert 2 * MB <= result.peak_mem_bytes <= 2 * MB + 4096  # scratch freed before the output
    assert result.retained_bytes == MB


def test_cpu_im2col_conv_peak_covers_its_column_buffer():
    x = torch.randn(2, 16, 32, 32)
    w = torch.randn(32, 16, 3, 3)
    col_bytes = 2 * 16 * 9 * 32 * 32 * 4
    out_bytes = 2 * 32 * 32 * 32 * 4

    def im2col():
        cols = F.unfold(x, 3, padding=1)  # (N, C*9, H*W)
        return (w.reshape(32, -1) @ cols).reshape(2, 32, 32, 32)

    result = measure_peak_memory(im2col, "cpu")
    assert result.peak_mem_bytes >= col_bytes + out_bytes
    assert result.retained_bytes == out_bytes
    # and the library conv is measured too (oneDNN buffers go through torch's allocator)
    lib = measure_peak_memory(lambda: F.conv2d(x, w, padding=1), "cpu")
    assert lib.peak_mem_bytes >= out_bytes


def test_cpu_exception_propagates_and_profiler_is_stopped():
    def boom():
        empty_bytes(MB)
        raise KeyError("from fn")

    with pytest.raises(KeyError, match="from fn"):
        measure_peak_memory(boom, "cpu")
    assert not torch.autograd._profiler_enabled()
    assert measure_peak_memory(lambda: empty_bytes(MB), "cpu").peak_mem_bytes >= MB


def test_cpu_under_another_profiler_reports_none_and_does_not_call():
    calls = []
    with torch.autograd.profiler.profile(use_cpu=True):
        result = measure_peak_memory(lambda: calls.append(1), "cpu")
    assert result.peak_mem_bytes is None
    assert "already active" in result.note
    assert calls == []


def test_unsupported_device_type():
    result = measure_peak_memory(lambda: None, "meta")
    assert result == MemoryResult(None, "none", note="no memory probe for device type 'meta'")


# ---------------------------------------------------------------- memory: CUDA through fakes


class FakeCudaAllocator:
    """torch.cuda's allocator counters, with a call log."""

    def __init__(self, allocated: int = 1000):
        self.allocated = allocated
        self.peak = allocated
        self.log: list[str] = []

    def alloc(self, n: int) -> None:
        self.allocated += n
        self.peak = max(self.peak, self.allocated)

    def free(self, n: int) -> None:
        self.allocated -= n

    def install(self, monkeypatch) -> None:
        cuda = torch.cuda
        monkeypatch.setattr(cuda, "is_available", lambda: True)
        monkeypatch.setattr(cuda, "current_device", lambda: 0)
        monkeypatch.setattr(cuda, "synchronize", lambda device=None: self.log.append("sync"))
        monkeypatch.setattr(cuda, "memory_allocated", lambda device=None: self.allocated)
        monkeypatch.setattr(cuda, "max_memory_allocated", lambda device=None: self.peak)

        def reset(device=None):
            self.log.append("reset")
            self.peak = self.allocated

        monkeypatch.setattr(cuda, "reset_peak_memory_stats", reset)


def test_cuda_peak_above_baseline_with_fake_allocator(monkeypatch):
    fake = FakeCudaAllocator(allocated=1000)
    fake.peak = 10**9  # an old peak from earlier work must be reset away
    fake.install(monkeypatch)

    def fn():
        fake.log.append("fn")
        fake.alloc(300)  # workspace
        fake.alloc(200)  # output
        fake.free(300)

    result = measure_peak_memory(fn, "cuda:0")
    assert result == MemoryResult(500, memory_probe.METHOD_CUDA, retained_bytes=200)
    assert fake.log == ["sync", "reset", "fn", "sync"]


def test_cuda_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    calls = []
    result = measure_peak_memory(lambda: calls.append(1), "cuda")
    assert result.peak_mem_bytes is None and result.note == "CUDA is not available"
    assert calls == []


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_real_allocation():
    def fn():
        t = torch.empty(8 * MB, dtype=torch.uint8, device="cuda")
        del t

    result = measure_peak_memory(fn, "cuda")
    assert 8 * MB <= result.peak_mem_bytes <= 8 * MB + 2 * 1024 * 1024  # allocator rounding


# ---------------------------------------------------------------- NVML: a scripted fake pynvml


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


class NVMLError_Unknown(NVMLError):
    pass


class FakeNvml:
    """A pynvml stand-in. Each metric plays its script in order and then repeats its last
    entry; an exception instance in a script is raised instead of returned."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound

    def __init__(self, init_error=None, **scripts):
        self.init_error = init_error
        self.scripts = {
            "util": [(50, 20), (70, 40)],
            "power_mw": [100_000, 300_000],
            "clock": [1500, 1700],
            "temp": [60, 65],
            "reasons": [0x1, 0x4 | 0x20],
            "energy_mj": [1_000_000, 1_012_500],
        }
        self.scripts.update(scripts)
        self.calls: dict[str, int] = {}
        self.handles_asked: list[tuple[str, object]] = []
        self.init_count = self.shutdown_count = 0

    def _next(self, name):
        script = self.scripts[name]
        i = self.calls.get(name, 0)
        self.calls[name] = i + 1
        value = script[min(i, len(script) - 1)]
        if isinstance(value, BaseException):
            raise value
        return value

    def nvmlInit(self):
        self.init_count += 1
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self):
        self.shutdown_count += 1

    def nvmlDeviceGetHandleByPciBusId(self, bus_id):
        self.handles_asked.append(("pci", bus_id))
        return "handle"

    def nvmlDeviceGetHandleByIndex(self, index):
        self.handles_asked.append(("index", index))
        return "handle"

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self.handles_asked.append(("uuid", uuid))
        return "handle"

    def nvmlDeviceGetUtilizationRates(self, handle):
        gpu, memory = self._next("util")
        return SimpleNamespace(gpu=gpu, memory=memory)

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._next("power_mw")

    def nvmlDeviceGetClockInfo(self, handle, clock_type):
        assert clock_type == 1  # NVML_CLOCK_SM
        return self._next("clock")

    def nvmlDeviceGetTemperature(self, handle, sensor):
        assert sensor == 0  # NVML_TEMPERATURE_GPU
        return self._next("temp")

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return self._next("reasons")

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return self._next("energy_mj")


def two_samples(fake, device="cuda:0") -> Telemetry:
    """Entry and exit samples only: the thread's first wake-up is an hour away."""
    with NvmlSampler(device, interval_s=3600, nvml=fake) as sampler:
        pass
    return sampler.telemetry


def test_nvml_all_fields_aggregated():
    fake = FakeNvml()
    t = two_samples(fake)
    assert t.n_samples == 2
    assert t.gpu_util_pct == 60.0 and t.mem_util_pct == 30.0
    assert t.power_w == pytest.approx(200.0)  # mW -> W, mean
    assert t.sm_clock_mhz == 1600.0
    assert t.temp_c == 65.0  # max
    assert t.throttle_reasons == ("GpuIdle", "SwPowerCap", "SwThermalSlowdown")  # union
    assert t.energy_j == pytest.approx(12.5)  # (end - start) mJ -> J
    assert t.note is None
    assert t.duration_s is not None and t.duration_s >= 0
    assert fake.init_count == fake.shutdown_count == 1


def test_nvml_background_thread_samples_during_window():
    fake = FakeNvml()
    with NvmlSampler(0, interval_s=0.001, nvml=fake) as sampler:
        time.sleep(0.1)
    assert sampler.telemetry.n_samples > 2
    assert len(sampler.samples) == sampler.telemetry.n_samples
    assert sampler.stop() is sampler.telemetry  # idempotent


def test_nvml_energy_not_supported_others_filled():
    fake = FakeNvml(energy_mj=[NVMLError_NotSupported()])
    t = two_samples(fake)
    assert t.energy_j is None
    assert t.power_w == pytest.approx(200.0) and t.gpu_util_pct == 60.0
    assert "energy: not supported" in t.note
    assert fake.calls["energy_mj"] == 1  # not asked again once unsupported


def test_nvml_unsupported_metric_is_dropped_after_first_try():
    fake = FakeNvml(temp=[NVMLError_NotSupported()])
    with NvmlSampler(0, interval_s=0.001, nvml=fake):
        time.sleep(0.05)
    assert fake.calls["temp"] == 1


def test_nvml_error_mid_sampling_keeps_other_samples():
    fake = FakeNvml(power_mw=[100_000, NVMLError_Unknown("GPU is lost")])
    t = two_samples(fake)
    assert t.n_samples == 2
    assert t.power_w == pytest.approx(100.0)  # the failed sample's power is None, not 0
    assert t.gpu_util_pct == 60.0
    assert "power: NVMLError_Unknown: GPU is lost" in t.note


def test_nvml_unexpected_exception_stops_sampling_without_raising():
    fake = FakeNvml(util=[(50, 20), RuntimeError("binding bug")])
    t = two_samples(fake)
    assert t.n_samples == 1
    assert t.gpu_util_pct == 50.0
    assert t.note.count("sampling stopped: RuntimeError: binding bug") == 1
    assert fake.shutdown_count == 1


def test_nvml_throttle_falls_back_to_old_binding_name():
    class OldNvml(FakeNvml):
        nvmlDeviceGetCurrentClocksEventReasons = None

        def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle):
            return 0x8

    assert two_samples(OldNvml()).throttle_reasons == ("HwSlowdown",)


def test_nvml_missing_library():
    fake = FakeNvml(init_error=NVMLError_LibraryNotFound())
    t = two_samples(fake)
    assert t == Telemetry(n_samples=0, duration_s=t.duration_s, note=t.note)
    assert "NVML library not found" in t.note
    assert fake.shutdown_count == 0


def test_nvml_missing_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    with NvmlSampler(0) as sampler:
        pass
    t = sampler.telemetry
    assert t.power_w is None and t.energy_j is None and t.n_samples == 0
    assert "pynvml is not installed" in t.note


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "meta"])
def test_nvml_non_cuda_device(device):
    fake = FakeNvml()
    t = two_samples(fake, device)
    assert t.n_samples == 0 and t.gpu_util_pct is None
    assert "no GPU telemetry" in t.note
    assert fake.init_count == 0


def test_nvml_no_device_for_index():
    class NoGpu(FakeNvml):
        def nvmlDeviceGetHandleByIndex(self, index):
            raise NVMLError("Invalid Argument")

    fake = NoGpu()
    t = two_samples(fake, "cuda:3")
    assert "no NVML device for cuda:3" in t.note
    assert fake.init_count == fake.shutdown_count == 1


def test_nvml_with_real_pynvml_never_raises():
    with NvmlSampler(0, interval_s=0.005) as sampler:
        time.sleep(0.02)
    t = sampler.telemetry
    if t.n_samples == 0:
        assert t.note  # says why (no library, no driver, no GPU)
    else:
        assert t.gpu_util_pct is not None


def test_nvml_handle_uses_pci_bus_id(monkeypatch):
    monkeypatch.setattr(nvml_probe, "cuda_pci_bus_id", lambda i: f"00000000:{0x3B + i:02x}:00.0")
    fake = FakeNvml()
    two_samples(fake, "cuda:1")
    assert fake.handles_asked == [("pci", "00000000:3c:00.0")]


def test_nvml_handle_from_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(nvml_probe, "cuda_pci_bus_id", lambda i: None)
    fake = FakeNvml()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    nvml_probe.nvml_handle(fake, 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-abc,GPU-def")
    nvml_probe.nvml_handle(fake, 0)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    nvml_probe.nvml_handle(fake, 2)
    assert fake.handles_asked == [("index", 3), ("uuid", b"GPU-abc"), ("index", 2)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(ValueError, match="not in CUDA_VISIBLE_DEVICES"):
        nvml_probe.nvml_handle(fake, 1)


def test_cuda_pci_bus_id(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    props = SimpleNamespace(pci_domain_id=1, pci_bus_id=0xDC, pci_device_id=2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    assert nvml_probe.cuda_pci_bus_id(0) == "00000001:dc:02.0"
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace())
    assert nvml_probe.cuda_pci_bus_id(0) is None  # torch too old to expose the PCI ids


def test_decode_throttle_reasons():
    assert decode_throttle_reasons(0) == ()
    assert decode_throttle_reasons(0x4 | 0x40) == ("SwPowerCap", "HwThermalSlowdown")
    assert decode_throttle_reasons(0x1 | 0x10000) == ("GpuIdle", "0x10000")


def test_throttle_table_matches_pynvml():
    pynvml = pytest.importorskip("pynvml")
    for bit, name in nvml_probe.THROTTLE_REASONS.items():
        value = getattr(pynvml, f"nvmlClocksThrottleReason{name}", None)
        if value is None:
            value = getattr(pynvml, f"nvmlClocksEventReason{name}")
        assert value == bit, name


def test_summarise_pure():
    samples = [
        NvmlSample(0.0, gpu_util_pct=10, power_w=50, temp_c=40, throttle_mask=0),
        NvmlSample(0.1, gpu_util_pct=30, power_w=None, temp_c=45, throttle_mask=0x4),
    ]
    t = summarise(samples, 2000, 5000, duration_s=0.2, notes=["a", "b"])
    assert (t.gpu_util_pct, t.power_w, t.temp_c) == (20.0, 50.0, 45.0)
    assert t.mem_util_pct is None and t.sm_clock_mhz is None
    assert t.throttle_reasons == ("SwPowerCap",)
    assert t.energy_j == 3.0 and t.n_samples == 2 and t.note == "a; b"
    assert summarise([]) == Telemetry()


# ---------------------------------------------------------------- CPU utilisation


def test_cpu_sampler_on_torch_work():
    a = torch.randn(256, 256)
    with CpuSampler(interval_s=0.01) as sampler:
        deadline = time.perf_counter() + 0.3
        while time.perf_counter() < deadline:
            a = (a @ a).tanh_()
    usage = sampler.usage
    assert usage.cpu_util_pct > 0
    assert usage.threads >= 1
    assert usage.torch_threads == torch.get_num_threads()
    assert usage.cpu_util_norm_pct == pytest.approx(usage.cpu_util_pct / usage.n_cores)
    assert usage.note is None


class FakeProcess:
    def __init__(self, cpu_s, threads):
        self.cpu_s = list(cpu_s)
        self.threads = list(threads)

    def cpu_times(self):
        return SimpleNamespace(user=self.cpu_s.pop(0), system=0.5)

    def num_threads(self):
        return self.threads.pop(0) if len(self.threads) > 1 else self.threads[0]


def test_cpu_sampler_exact_with_fakes(monkeypatch):
    monkeypatch.setattr(cpu_probe, "usable_cores", lambda: 4)
    clock = iter([10.0, 12.0])
    process = FakeProcess(cpu_s=[1.0, 6.0], threads=[3, 9])
    with CpuSampler(interval_s=None, process=process, clock=lambda: next(clock)) as sampler:
        pass
    usage = sampler.usage
    assert usage.cpu_util_pct == pytest.approx(250.0)  # 5 s of CPU in 2 s of wall
    assert usage.cpu_util_norm_pct == pytest.approx(62.5)
    assert usage.threads == 9 and usage.cpu_time_s == 5.0 and usage.wall_s == 2.0


def test_cpu_sampler_without_psutil(monkeypatch):
    monkeypatch.setitem(sys.modules, "psutil", None)
    with CpuSampler() as sampler:
        pass
    usage = sampler.usage
    assert usage.cpu_util_pct is None and usage.threads is None
    assert usage.note == "psutil is not installed"
    assert usage.torch_threads == torch.get_num_threads()


def test_cpu_usage_empty_window():
    usage = cpu_probe.cpu_usage(0.0, 0.0, [2], 1, 4)
    assert usage.cpu_util_pct is None and usage.threads == 2 and "empty window" in usage.note


# ---------------------------------------------------------------- accuracy


def test_accuracy_numbers():
    acc = accuracy(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.5, -4.0]))
    assert acc == Accuracy(max_abs_err=7.0, rel_err=7.0 / 4.0)
    acc = accuracy(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    assert acc == Accuracy(0.0, 0.0)


def test_accuracy_computed_in_float64():
    ref = torch.tensor([1.0, 1.0 + 2**-40], dtype=torch.float64)
    out = torch.tensor([1.0, 1.0], dtype=torch.float64)
    assert accuracy(out, ref).max_abs_err == pytest.approx(2**-40)
    half = accuracy(torch.tensor([1.0], dtype=torch.float16), torch.tensor([1.0009765625]))
    assert half.max_abs_err == pytest.approx(2**-10)


def test_accuracy_zero_reference_and_nan():
    zeros = torch.zeros(3)
    assert accuracy(zeros, zeros) == Accuracy(0.0, 0.0)
    assert accuracy(torch.tensor([0.0, 0.5, 0.0]), zeros) == Accuracy(0.5, math.inf)
    nan = accuracy(torch.tensor([float("nan"), 1.0]), torch.tensor([1.0, 1.0]))
    assert math.isnan(nan.max_abs_err) and math.isnan(nan.rel_err)
    assert not nan.within(torch.float64)
    assert accuracy(torch.empty(0), torch.empty(0)) == Accuracy(0.0, 0.0)


def test_accuracy_shape_mismatch():
    with pytest.raises(ValueError, match=r"output shape \(2,\) does not match reference"):
        accuracy(torch.zeros(2), torch.zeros(3))


def test_tolerances():
    assert TOLERANCE["float32"] == 1e-4 and TOLERANCE["bfloat16"] == 5e-2
    assert set(TOLERANCE) == {"float64", "float32", "float16", "bfloat16"}
    assert tolerance(torch.float16) == tolerance("float16") == 1e-2
    with pytest.raises(ValueError, match="no accuracy tolerance for dtype int8"):
        tolerance(torch.int8)
    assert Accuracy(0.1, 9e-5).within(torch.float32)
    assert not Accuracy(0.1, 2e-4).within(torch.float32)
    with pytest.raises(TypeError):
        TOLERANCE["float32"] = 1.0  # read-only: shared by every caller


def test_reference_conv_float64_cpu_from_same_values():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 9, 9, generator=gen).to(torch.bfloat16)
    w = torch.randn(6, 2, 3, 3, generator=gen).to(torch.bfloat16)
    b = torch.randn(6, generator=gen).to(torch.bfloat16)
    ref = reference_conv(x, w, b, stride=2, padding=1, dilation=1, groups=2)
    assert ref.dtype == torch.float64 and ref.device.type == "cpu"
    expected = F.conv2d(x.double(), w.double(), b.double(), stride=2, padding=1, groups=2)
    assert torch.equal(ref, expected)
    assert ref.shape == (2, 6, 5, 5)


def test_reference_conv_1d_unbatched_and_same_padding():
    x = torch.randn(3, 10)
    w = torch.randn(5, 3, 4)
    ref = reference_conv(x, w, padding="same", dilation=2)
    assert ref.shape == (5, 10) and ref.dtype == torch.float64
    with pytest.raises(ValueError, match="3-D or 4-D weight"):
        reference_conv(x, torch.randn(5, 3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_torch_conv_is_within_its_dtype_tolerance(dtype):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 12, 12, generator=gen, dtype=torch.float64).to(dtype)
    w = torch.randn(8, 16, 3, 3, generator=gen, dtype=torch.float64).to(dtype)
    acc = accuracy(F.conv2d(x, w, padding=1), reference_conv(x, w, padding=1))
    assert acc.within(dtype), acc


# ---------------------------------------------------------------- window sampler -> row fields


def test_window_sampler_cuda_fills_gpu_columns():
    from convbench.measure.probes import TELEMETRY_FIELDS, telemetry_sampler

    with telemetry_sampler("cuda:0", interval_s=3600, nvml=FakeNvml()) as sampler:
        pass
    row = sampler.result_fields()
    assert set(row) == set(TELEMETRY_FIELDS)
    assert row["power_w"] == pytest.approx(200.0) and row["energy_j"] == pytest.approx(12.5)
    assert row["throttle_reasons"] == "GpuIdle,SwPowerCap,SwThermalSlowdown"
    assert row["cpu_util_pct"] is None and row["telemetry_note"] is None
    assert row["torch_threads"] == torch.get_num_threads()


def test_window_sampler_cpu_fills_cpu_columns():
    from convbench.measure.probes import telemetry_sampler

    with telemetry_sampler("cpu") as sampler:
        torch.randn(200, 200) @ torch.randn(200, 200)
    row = sampler.result_fields()
    assert row["gpu_util_pct"] is None and row["throttle_reasons"] is None
    assert row["threads"] >= 1 and row["torch_threads"] == torch.get_num_threads()


def test_result_fields_pure():
    from convbench.measure.probes import CpuUsage, result_fields

    row = result_fields(
        Telemetry(power_w=3.0, throttle_reasons=(), note="energy: not supported"),
        CpuUsage(120.0, 60.0, 5, 2, note=None),
        note="x",
    )
    assert row["throttle_reasons"] == ""  # read, and none seen
    assert row["telemetry_note"] == "x; energy: not supported"
    assert (row["power_w"], row["cpu_util_pct"], row["threads"], row["torch_threads"]) == (
        3.0,
        120.0,
        5,
        2,
    )
    assert result_fields(note="no telemetry for a meta device")["telemetry_note"] == (
        "no telemetry for a meta device"
    )


# --- clock-aware samples and per-function telemetry ----------------------------------------


class ClockedNvml(FakeNvml):
    """FakeNvml with the default and maximum SM clocks a real GPU reports."""

    def __init__(self, default=1980, maximum=1980, **scripts):
        super().__init__(**scripts)
        self.default, self.maximum = default, maximum

    def nvmlDeviceGetDefaultApplicationsClock(self, handle, clock_type):
        if self.default is None:
            raise NVMLError_NotSupported("no applications clocks")
        return self.default

    def nvmlDeviceGetMaxClockInfo(self, handle, clock_type):
        return self.maximum


def test_sm_clock_probe_sets_throttled_samples_apart():
    from convbench.measure.clocks import FakeClock
    from convbench.measure.config import TimingConfig
    from convbench.measure.disturbance import SmClockProbe
    from convbench.measure.engine import measure

    # before/after readings per sample: full speed, one sample throttled to 1200 < 0.75 × 1980
    fake = ClockedNvml(clock=[1980, 1950] * 3 + [1200, 1900] + [1980, 1980] * 20)
    probe = SmClockProbe(fake, "handle")
    assert probe.default_mhz == 1980 and "75% of the default SM clock (1980 MHz)" in probe.rule
    config = TimingConfig(warmup_s=0, min_samples=10, max_time_s=1.0)
    m = measure(lambda: None, config, FakeClock(1000), probe=probe)
    assert m.n_discarded == 1 and not m.disturbed
    assert 1950 < probe.mean_clock_mhz <= 1980  # over the samples kept
    # no applications clocks: the maximum is the default
    assert SmClockProbe(ClockedNvml(default=None, maximum=1755), "h").default_mhz == 1755


def test_telemetry_for_keeps_the_polls_taken_during_a_functions_windows():
    from convbench.measure.probes.nvml import NvmlSample

    fake = FakeNvml()
    with NvmlSampler("cuda:0", interval_s=3600, nvml=fake) as sampler:
        pass
    assert all(s.t_host_ns is not None for s in sampler.samples)
    # polls every 10 ms (slack 5 ms): at 0, 10, 20 and 30 ms, drawing 100, 200, 300, 400 W
    sampler.interval_s = 0.01
    sampler.samples = [
        NvmlSample(t_s=k / 100, power_w=100.0 * (k + 1), sm_clock_mhz=1900.0, t_host_ns=10 * k * MS)
        for k in range(4)
    ]
    a = sampler.telemetry_for([(0, 2 * MS), (8 * MS, 9 * MS)])  # near the 0 and 10 ms polls
    assert a.n_samples == 2 and a.power_w == pytest.approx(150.0)
    assert a.energy_j == pytest.approx(150.0 * 3e-3)  # mean power × 3 ms of windows
    b = sampler.telemetry_for([(26 * MS, 31 * MS)])
    assert b.n_samples == 1 and b.power_w == pytest.approx(400.0)
    assert sampler.telemetry_for([]).energy_j == pytest.approx(12.5)  # the whole window


MS = 1_000_000
