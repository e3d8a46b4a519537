"""Keep CPU timing alone: nothing else of a run computes on the CPU while a CPU task is timed.

A sweep over several devices runs one worker per device at once. A CUDA task's worker is
mostly idle on the host, but not always: it computes its float64 reference on the CPU, builds
tensors, launches kernels. Timed beside it, a CPU task's samples would measure the contention.

`Isolation` is a readers–writer lock keyed by device: a CPU task holds it exclusively, tasks
on accelerators share it among themselves (two GPUs do not disturb each other's clocks).
Writers are preferred — a waiting CPU task blocks new accelerator tasks — so CPU work is not
starved by a stream of GPU tasks. Each hold records which other devices held the lock at any
moment during it: the result row's ``beside`` column (empty for a CPU task, by construction).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


def is_host(device: str) -> bool:
    """Devices whose timing the host's other work disturbs."""
    return device.split(":")[0] == "cpu"


@dataclass
class Hold:
    device: str
    beside: set[str] = field(default_factory=set)

    @property
    def beside_text(self) -> str | None:
        """What ran beside the hold, for the ``beside`` column (None: nothing)."""
        return ",".join(sorted(self.beside)) or None


class Isolation:
    """The readers–writer lock of the module doc."""

    def __init__(self):
        self._cond = threading.Condition()
        self._holds: list[Hold] = []
        self._writers_waiting = 0
        #: Threads blocked in `hold` right now (observable, for tests and progress).
        self.waiting = 0

    @contextmanager
    def hold(self, device: str) -> Iterator[Hold]:
        me = Hold(device)
        exclusive = is_host(device)

        def free() -> bool:
            if exclusive:
                return not self._holds
            return not self._writers_waiting and not any(is_host(h.device) for h in self._holds)

        with self._cond:
            self._writers_waiting += exclusive
            self.waiting += 1
            try:
                self._cond.wait_for(free)
            finally:
                self._writers_waiting -= exclusive
                self.waiting -= 1
            for other in self._holds:
                other.beside.add(device)
                me.beside.add(other.device)
            self._holds.append(me)
        try:
            yield me
        finally:
            with self._cond:
                self._holds.remove(me)
                self._cond.notify_all()
