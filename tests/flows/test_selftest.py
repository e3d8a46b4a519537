"""`convbench selftest`: every check runs, a crash in one fails it and the others go on."""

from __future__ import annotations

import pytest
import torch

from convbench.cli import main
from convbench.flows import selftest as mod


def test_selftest_on_the_cpu_passes_end_to_end(tmp_path, capsys, monkeypatch, warm_workers):
    from convbench.measure import options

    # the sweep's samples capped at 0.05 s per task instead of 0.2: every backend, pass and
    # check still runs (what is tested), in a third of the time
    real = options.measure_options
    monkeypatch.setattr(
        options, "measure_options", lambda **kw: real(**(kw | {"max_time_s": 0.05}))
    )
    assert main(["selftest", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("device", "conformance", "timing", "telemetry", "sweep", "report"):
        assert f"PASS {name}:" in out or f"SKIP {name}:" in out, name
    assert "selftest passed: " in out
    assert (tmp_path / "selftest.html").stat().st_size > 10_000
    assert "0 wrong" not in out and "refused with a reason" in out


def test_a_failing_check_fails_the_selftest_and_the_rest_still_run(tmp_path, monkeypatch):
    def broken(device):
        raise RuntimeError("graph capture exploded")

    monkeypatch.setattr(mod, "check_timing", broken)
    monkeypatch.setattr(mod, "check_sweep", lambda device, workdir: ())
    checks = mod.selftest("cpu", tmp_path)
    by = {c.name: c for c in checks}
    assert by["timing"].status == mod.FAIL and "graph capture exploded" in by["timing"].detail
    assert by["conformance"].status == mod.PASS and by["telemetry"].status in (mod.PASS, mod.SKIP)
    assert not mod.passed(checks)


def test_a_missing_gpu_fails_at_the_device_check(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    checks = mod.selftest("cuda", tmp_path)
    assert [c.name for c in checks] == ["device"] and checks[0].status == mod.FAIL
    assert "is_available() is False" in checks[0].detail


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_selftest_on_the_gpu(tmp_path, capsys):
    code = main(["selftest", "--device", "cuda", "--dir", str(tmp_path)])
    assert code == 0, capsys.readouterr().out
