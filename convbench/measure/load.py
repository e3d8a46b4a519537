"""A standard disturbance, to measure how a machine's timing survives a busy neighbour.

`BurstLoad` runs, in a separate process, a loop that keeps one core busy for a random
20–200 ms, then sleeps a random 20–200 ms, and so on (seeded, so every machine gets the same
pattern): the kind of neighbour a shared workstation or CI runner has — a compiler, a browser
tab, another job's data loader. `convbench calibrate --interference` times a suite with and
without it.
"""

from __future__ import annotations

import os
import subprocess
import sys

_LOOP = """
import random, sys, time
seed, lo_busy, hi_busy, lo_idle, hi_idle = int(sys.argv[1]), *map(float, sys.argv[2:6])
rng = random.Random(seed)
while True:
    end = time.perf_counter() + rng.uniform(lo_busy, hi_busy)
    while time.perf_counter() < end:
        pass
    time.sleep(rng.uniform(lo_idle, hi_idle))
"""


class BurstLoad:
    """The disturbance of the module doc, as a context manager (one busy core by default)."""

    def __init__(
        self,
        cores: int = 1,
        busy_s: tuple[float, float] = (0.02, 0.2),
        idle_s: tuple[float, float] = (0.02, 0.2),
        seed: int = 0,
        pin: int | None = None,
    ):
        if cores < 1:
            raise ValueError(f"cores: expected >= 1, got {cores}")
        self.cores, self.busy_s, self.idle_s, self.seed = cores, busy_s, idle_s, seed
        self.pin = pin  # run the load on this CPU only (default: where the scheduler puts it)
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> BurstLoad:
        for k in range(self.cores):
            args = [self.seed + k, *self.busy_s, *self.idle_s]
            proc = subprocess.Popen([sys.executable, "-c", _LOOP, *map(str, args)])
            if self.pin is not None:
                os.sched_setaffinity(proc.pid, {self.pin})
            self.procs.append(proc)
        return self

    def running(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs)

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
        self.procs = []

    def describe(self) -> str:
        return (
            f"{self.cores} core{'s' if self.cores > 1 else ''} busy in random "
            f"{self.busy_s[0] * 1e3:.0f}–{self.busy_s[1] * 1e3:.0f} ms bursts, "
            f"{self.idle_s[0] * 1e3:.0f}–{self.idle_s[1] * 1e3:.0f} ms apart"
        )
