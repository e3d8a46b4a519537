"""`Isolation`: a CPU task is timed with nothing else of the run computing beside it."""

from __future__ import annotations

import threading
import time

from convbench.runner.isolation import Isolation, is_host


def _until(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def _holder(iso, device, acquired, release, out):
    def run():
        with iso.hold(device) as hold:
            acquired.set()
            release.wait()
        out[device] = hold.beside_text

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_is_host():
    assert is_host("cpu") and is_host("cpu:0") and not is_host("cuda:1") and not is_host("mps")


def test_cpu_waits_for_gpus_and_blocks_new_ones_then_runs_alone():
    iso, out = Isolation(), {}
    events = {d: (threading.Event(), threading.Event()) for d in ("cuda:0", "cuda:1", "cpu")}
    gpu0 = _holder(iso, "cuda:0", *events["cuda:0"], out)
    events["cuda:0"][0].wait(5)
    cpu = _holder(iso, "cpu", *events["cpu"], out)
    _until(lambda: iso.waiting == 1, "the CPU task waits for the GPU task")
    gpu1 = _holder(iso, "cuda:1", *events["cuda:1"], out)
    # a waiting CPU task holds back new GPU work (no starvation)
    _until(lambda: iso.waiting == 2, "the new GPU task waits behind the CPU task")
    assert not events["cpu"][0].is_set() and not events["cuda:1"][0].is_set()
    events["cuda:0"][1].set()
    gpu0.join(5)
    events["cpu"][0].wait(5)
    assert iso.waiting == 1 and not events["cuda:1"][0].is_set()  # the CPU task is alone
    events["cpu"][1].set()
    cpu.join(5)
    events["cuda:1"][0].wait(5)
    events["cuda:1"][1].set()
    gpu1.join(5)
    assert out == {"cuda:0": None, "cpu": None, "cuda:1": None}


def test_gpus_share_and_record_each_other():
    iso, out = Isolation(), {}
    events = {d: (threading.Event(), threading.Event()) for d in ("cuda:0", "cuda:1")}
    threads = [_holder(iso, d, *events[d], out) for d in events]
    for acquired, _ in events.values():
        acquired.wait(5)
    for _, release in events.values():
        release.set()
    for thread in threads:
        thread.join(5)
    assert out == {"cuda:0": "cuda:1", "cuda:1": "cuda:0"}
