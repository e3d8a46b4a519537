"""GPU telemetry from NVML (``import pynvml``, package nvidia-ml-py) during a timed window.

`NvmlSampler` polls the GPU from a background thread while the benchmark runs and reduces the
samples to a `Telemetry`. It never raises: without pynvml, without the NVML library or driver,
without a GPU, or for a non-CUDA device, every field is None and ``note`` says why.

How to read the numbers: NVML's utilisation counters are averages over the driver's own sample
period (1/6 s to 1 s depending on the GPU), so windows shorter than that report the last
period's value, not the window's. Power is the board's instantaneous draw. The total-energy
counter (Volta and newer) is the most faithful measure of a window's energy; it also updates on
a driver period of tens of milliseconds, so very short windows read coarsely.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import torch

from convbench.measure.probes.telemetry import (  # noqa: F401  (re-exported)
    NVML_CLOCK_SM,
    NVML_TEMPERATURE_GPU,
    THROTTLE_REASONS,
    NvmlSample,
    Telemetry,
    decode_throttle_reasons,
    summarise,
)


def open_nvml(nvml: ModuleType | Any | None = None) -> tuple[Any | None, str | None]:
    """Import pynvml (unless a module is given) and ``nvmlInit`` it.

    Returns ``(module, None)``, and the caller then owes one ``nvmlShutdown``; or
    ``(None, reason)``. Never raises.
    """
    if nvml is None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return None, "pynvml is not installed (pip install nvidia-ml-py)"
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError subclasses, or OSError from a broken library
        kind = type(exc).__name__
        if kind == "NVMLError_LibraryNotFound":
            return None, "NVML library not found (no NVIDIA driver installed)"
        if kind == "NVMLError_DriverNotLoaded":
            return None, "NVIDIA driver not loaded"
        return None, f"NVML init failed: {kind}: {exc}"
    return nvml, None


def cuda_pci_bus_id(index: int) -> str | None:
    """PCI bus id of torch's CUDA device ``index`` (honours CUDA_VISIBLE_DEVICES), or None."""
    try:
        if not torch.cuda.is_available():
            return None
        props = torch.cuda.get_device_properties(index)
        domain, bus, dev = props.pci_domain_id, props.pci_bus_id, props.pci_device_id
    except (AttributeError, RuntimeError, AssertionError):
        return None
    return f"{domain:08x}:{bus:02x}:{dev:02x}.0"


def nvml_handle(nvml: Any, cuda_index: int) -> Any:
    """The NVML handle of torch's CUDA device ``cuda_index``.

    CUDA numbers devices fastest-first and after CUDA_VISIBLE_DEVICES; NVML numbers all of
    them in PCI order. The PCI bus id from torch's device properties identifies the GPU either
    way; without it (torch cannot see the GPU) CUDA_VISIBLE_DEVICES is applied by hand.
    """
    bus_id = cuda_pci_bus_id(cuda_index)
    if bus_id is not None:
        return nvml.nvmlDeviceGetHandleByPciBusId(bus_id)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip():
        entries = [e.strip() for e in visible.split(",") if e.strip()]
        if cuda_index >= len(entries):
            raise ValueError(f"cuda:{cuda_index} is not in CUDA_VISIBLE_DEVICES={visible!r}")
        entry = entries[cuda_index]
        if entry.startswith("GPU-"):
            return nvml.nvmlDeviceGetHandleByUUID(entry.encode())
        return nvml.nvmlDeviceGetHandleByIndex(int(entry))
    return nvml.nvmlDeviceGetHandleByIndex(cuda_index)


def _cuda_index(device: int | str | torch.device) -> int | str:
    """torch CUDA index of ``device``, or a reason string when it is not a CUDA device."""
    if isinstance(device, int) and not isinstance(device, bool):
        return device
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        return f"not a device: {device!r} ({exc})"
    if dev.type != "cuda":
        return f"no GPU telemetry for a {dev.type} device"
    if dev.index is not None:
        return dev.index
    try:
        return torch.cuda.current_device() if torch.cuda.is_available() else 0
    except RuntimeError:
        return 0


class NvmlSampler:
    """Context manager sampling NVML telemetry of one GPU in a background thread.

    ::

        with NvmlSampler("cuda:0") as sampler:
            run_timed_block()
        sampler.telemetry.power_w, sampler.telemetry.energy_j

    ``device`` is a torch CUDA device (index, ``'cuda:1'``, `torch.device`); anything else
    gives an all-None `Telemetry` with a note. One sample is taken on entry and one on exit, so
    even a window shorter than ``interval_s`` has two. A metric the GPU does not support
    (NVMLError_NotSupported) is dropped after its first failure; other NVML errors leave that
    sample's field None and are reported in ``note``; any other exception stops the sampling
    and is reported in ``note``. Raw samples stay in ``samples``. ``nvml`` injects a
    pynvml-like module (tests); ``clock`` the time source for sample stamps.
    """

    def __init__(
        self,
        device: int | str | torch.device = 0,
        interval_s: float = 0.01,
        *,
        nvml: ModuleType | Any | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.device = device
        self.interval_s = interval_s
        self.samples: list[NvmlSample] = []
        self.telemetry: Telemetry | None = None
        self._nvml_arg = nvml
        self._clock = clock
        self._nvml: Any = None
        self._handle: Any = None
        self._notes: list[str] = []
        self._errors: dict[str, str] = {}
        self._disabled: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._energy_start_mj: int | None = None
        self._t0: float | None = None
        self._failed = False

    def __enter__(self) -> NvmlSampler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._t0 = self._clock()
        index = _cuda_index(self.device)
        if isinstance(index, str):
            self._notes.append(index)
            return
        nvml, reason = open_nvml(self._nvml_arg)
        if nvml is None:
            self._notes.append(reason or "NVML unavailable")
            return
        try:
            self._handle = nvml_handle(nvml, index)
        except Exception as exc:
            self._notes.append(f"no NVML device for cuda:{index}: {type(exc).__name__}: {exc}")
            _shutdown(nvml)
            return
        self._nvml = nvml
        self._energy_start_mj = self._read_energy()
        self._sample_safely()
        self._thread = threading.Thread(target=self._run, name="convbench-nvml", daemon=True)
        self._thread.start()

    def stop(self) -> Telemetry:
        """Stop sampling (idempotent) and return the `Telemetry`, also kept in ``telemetry``."""
        if self.telemetry is not None:
            return self.telemetry
        energy_end_mj = None
        if self._nvml is not None:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            if not self._failed:
                self._sample_safely()
            if self._energy_start_mj is not None:
                energy_end_mj = self._read_energy()
            _shutdown(self._nvml)
        duration_s = self._clock() - self._t0 if self._t0 is not None else None
        notes = list(self._notes)
        notes += [f"{metric}: {message}" for metric, message in self._errors.items()]
        self.telemetry = summarise(
            self.samples, self._energy_start_mj, energy_end_mj, duration_s, notes
        )
        return self.telemetry

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self._sample_safely():
                return

    def _sample_safely(self) -> bool:
        try:
            self.samples.append(self._sample())
        except Exception as exc:  # a bug or a dying driver: stop sampling, keep what we have
            self._notes.append(f"sampling stopped: {type(exc).__name__}: {exc}")
            self._failed = True
            self._stop.set()
            return False
        return True

    def _query(self, metric: str, call: Callable[[], Any]) -> Any:
        """One NVML query; None (and a remembered error) if it fails with an NVMLError."""
        if metric in self._disabled:
            return None
        try:
            return call()
        except (AttributeError, TypeError) as exc:  # the binding lacks this query
            self._disabled.add(metric)
            self._errors.setdefault(metric, f"not available in this pynvml: {exc}")
            return None
        except self._nvml.NVMLError as exc:
            if type(exc).__name__ == "NVMLError_NotSupported":
                self._disabled.add(metric)
                self._errors.setdefault(metric, "not supported on this GPU")
            else:
                self._errors.setdefault(metric, f"{type(exc).__name__}: {exc}")
            return None

    def _sample(self) -> NvmlSample:
        nvml, handle = self._nvml, self._handle
        util = self._query("util", lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        power_mw = self._query("power", lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        clock = self._query("sm_clock", lambda: nvml.nvmlDeviceGetClockInfo(handle, NVML_CLOCK_SM))
        temp = self._query(
            "temp", lambda: nvml.nvmlDeviceGetTemperature(handle, NVML_TEMPERATURE_GPU)
        )
        # ...ClocksEventReasons replaced ...ClocksThrottleReasons in NVML 12.2; older bindings
        # only have the latter.
        reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if reasons is None:
            reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        mask = self._query("throttle", lambda: reasons(handle))  # type: ignore[misc]
        return NvmlSample(
            t_s=self._clock() - (self._t0 or 0.0),
            gpu_util_pct=float(util.gpu) if util is not None else None,
            mem_util_pct=float(util.memory) if util is not None else None,
            power_w=power_mw / 1000.0 if power_mw is not None else None,
            sm_clock_mhz=float(clock) if clock is not None else None,
            temp_c=float(temp) if temp is not None else None,
            throttle_mask=int(mask) if mask is not None else None,
            t_host_ns=time.perf_counter_ns(),
        )

    def clock_probe(self):
        """A `convbench.measure.disturbance.SmClockProbe` on this sampler's GPU (None when
        NVML is not open)."""
        from convbench.measure.disturbance import SmClockProbe

        if self._nvml is None or self._handle is None:
            return None
        return SmClockProbe(self._nvml, self._handle)

    def telemetry_for(self, windows: Sequence[tuple[int, int]]) -> Telemetry:
        """Telemetry of the samples taken during ``windows`` (host ``perf_counter_ns``
        intervals: one function's timed samples, when several functions were timed in
        turns) — a poll counts if it falls within half a sampling interval of a window.
        ``energy_j`` is then the mean power × the windows' total duration. Call after
        `stop`."""
        telemetry = self.stop()
        if not windows:
            return telemetry
        slack = round(self.interval_s * 1e9 / 2)
        chosen = [
            s
            for s in self.samples
            if s.t_host_ns is not None and _inside(s.t_host_ns, windows, slack)
        ]
        duration_s = sum(end - start for start, end in windows) / 1e9
        part = summarise(chosen, None, None, duration_s, [telemetry.note] if telemetry.note else [])
        energy = part.power_w * duration_s if part.power_w is not None else None
        return Telemetry(**{**part.__dict__, "energy_j": energy})

    def _read_energy(self) -> int | None:
        handle = self._handle
        return self._query("energy", lambda: self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle))


def _inside(t_ns: int, windows: Sequence[tuple[int, int]], slack_ns: int) -> bool:
    return any(start - slack_ns <= t_ns <= end + slack_ns for start, end in windows)


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:  # shutting down a half-working library must not mask the result
        pass


__all__ = [
    "NvmlSample",
    "NvmlSampler",
    "THROTTLE_REASONS",
    "Telemetry",
    "cuda_pci_bus_id",
    "decode_throttle_reasons",
    "nvml_handle",
    "open_nvml",
    "summarise",
]
