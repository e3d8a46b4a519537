"""Run a sweep's tasks on a Ray cluster (``pip install 'convbench[ray]'``).

The unit sent to Ray is a group (`convbench.measure.groups.task_groups`: the backends of one
case, interleaved; or one task with ``--no-interleave``), run by
`convbench.measure.task.measure_tasks` on the node the driver chose for it. The driver places
groups itself (`Placement`, then Ray's ``NodeAffinitySchedulingStrategy``) so that CPU timing
is never disturbed by the run's own work:

* by default a CPU group has its node to itself: no other group of the run is in flight
  there while it is timed (Ray alone would pack one CPU task per CPU onto a node, and they
  would time each other's contention);
* with ``pack=True`` (``--pack``) a node takes ``CPUs // cpus_per_task`` CPU groups at once,
  each pinned (``sched_setaffinity``) to its own disjoint cores;
* a CUDA group takes one whole GPU, and never runs beside a CPU group on the same node.

Each row's ``beside`` lists what was in flight on its node while it ran (empty when nothing).

Failures: a group whose worker or node dies (``WorkerCrashedError``, ``NodeDiedError``,
``ActorDiedError`` …) is resubmitted up to ``retries`` times; a group past its time limit
(``timeout_s`` per task) is cancelled (force-killing its worker). A failed group of several
tasks is then measured task by task, so only the culprit is recorded as ``error`` (with Ray's
reason) or ``timeout``. The number of groups in flight is bounded by the placement, so the
driver's timeouts measure running time, not queueing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from convbench.errors import UserError
from convbench.runner.isolation import is_host


def _measure_remote(tasks, options, threads, cores):
    if cores:  # positions among the cores this process may use (a cgroup may restrict them)
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, [allowed[i % len(allowed)] for i in cores])
    import torch

    if threads:
        torch.set_num_threads(threads)
    from convbench.measure.task import measure_tasks

    return measure_tasks(tasks, options)


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError(
            "--executor ray needs the ray package: pip install 'convbench[ray]'"
        ) from None
    return ray


@dataclass
class Node:
    """A node as the driver sees it: its id, CPUs and GPUs, and what it has in flight."""

    node_id: str
    cpus: int
    gpus: int
    cpu_slots: list[str | None] = field(default_factory=list)  # unit label per core slot
    gpu_units: set[str] = field(default_factory=set)


@dataclass
class Slot:
    """Where a unit runs: the node, and for a packed CPU unit its cores."""

    node: Node
    cores: tuple[int, ...] = ()
    slot: int | None = None


class Placement:
    """Decides which node takes the next unit (see the module doc); pure bookkeeping, so the
    rules are tested without a cluster."""

    def __init__(self, nodes: list[Node], cpus_per_task: int, pack: bool):
        self.nodes = nodes
        self.cpus_per_task = max(1, cpus_per_task)
        self.pack = pack
        for node in nodes:
            slots = max(1, node.cpus // self.cpus_per_task) if pack else 1
            node.cpu_slots = [None] * slots
        self.beside: dict[str, set[str]] = {}

    def _busy(self, node: Node) -> list[str]:
        return [u for u in node.cpu_slots if u] + sorted(node.gpu_units)

    def place(self, label: str, device: str) -> Slot | None:
        """A slot for the unit now, or None if it has to wait."""
        for node in self.nodes:
            cpu_units = [u for u in node.cpu_slots if u]
            if is_host(device):
                if node.cpus < 1:
                    continue
                if node.gpu_units or (cpu_units and not self.pack):
                    continue
                if None not in node.cpu_slots:
                    continue
                k = node.cpu_slots.index(None)
                cores = ()
                if self.pack and len(node.cpu_slots) > 1:
                    first = k * self.cpus_per_task
                    cores = tuple(range(first, first + self.cpus_per_task))
                return self._take(label, node, Slot(node, cores, k))
            if cpu_units or len(node.gpu_units) >= node.gpus:
                continue
            return self._take(label, node, Slot(node))
        return None

    def _take(self, label: str, node: Node, slot: Slot) -> Slot:
        others = self._busy(node)
        self.beside[label] = set(others)
        for other in others:
            self.beside[other].add(label)
        if slot.slot is not None:
            node.cpu_slots[slot.slot] = label
        else:
            node.gpu_units.add(label)
        return slot

    def release(self, label: str, slot: Slot) -> str | None:
        """Free the slot; returns what ran beside the unit (None: nothing)."""
        if slot.slot is not None:
            slot.node.cpu_slots[slot.slot] = None
        else:
            slot.node.gpu_units.discard(label)
        beside = self.beside.pop(label, set())
        return ",".join(sorted(beside)) or None

    def fits_anywhere(self, device: str) -> bool:
        if is_host(device):
            return any(n.cpus >= 1 for n in self.nodes)
        return any(n.gpus >= 1 for n in self.nodes)


def _nodes(ray) -> list[Node]:
    nodes = []
    for info in ray.nodes():
        if not info.get("Alive", info.get("alive", False)):
            continue
        res = info.get("Resources", {})
        nodes.append(Node(info["NodeID"], int(res.get("CPU", 0)), int(res.get("GPU", 0))))
    return nodes


def run_on_ray(
    pending, options, execution, timeout_s, recorder, *, on_start=None, retries: int = 1
) -> None:
    """Measure ``pending`` (index, task) on the cluster at ``execution.address`` (or a local
    one started here); ``execution.cpus_per_task`` (default: its threads) and ``pack`` place
    the CPU groups."""
    address = execution.address
    cpus_per_task = execution.cpus_per_task or execution.threads
    ray = _ray()
    started_here = False
    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        if address:
            kwargs["address"] = address
        ray.init(**kwargs)
        started_here = True
    try:
        placement = Placement(_nodes(ray), cpus_per_task or 1, execution.pack)
        _drive(ray, pending, options, timeout_s, recorder, on_start, placement, retries)
    finally:
        if started_here:
            ray.shutdown()


@dataclass
class _Unit:
    items: list  # (index, task)
    attempt: int = 0

    @property
    def device(self) -> str:
        return self.items[0][1].device

    @property
    def label(self) -> str:
        task = self.items[0][1]
        return f"{task.device}:{task.case.name}" + (
            f"×{len(self.items)}" if len(self.items) > 1 else ""
        )


def _drive(ray, pending, options, timeout_s, recorder, on_start, placement, retries):
    from ray import exceptions as rex
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from convbench.measure.groups import alone_note, task_groups
    from convbench.runner.sweep import format_seconds

    lost = tuple(
        getattr(rex, name)
        for name in (
            "WorkerCrashedError",
            "NodeDiedError",
            "ActorDiedError",
            "OwnerDiedError",
            "ObjectLostError",
            "LocalRayletDiedError",
            "RaySystemError",
        )
        if hasattr(rex, name)
    )
    remote = ray.remote(max_retries=0)(_measure_remote)
    queue = [_Unit(g) for g in task_groups(pending, options.interleave)]
    in_flight: dict = {}  # ref -> (unit, slot, label, started)
    serial = 0

    def record(unit, found, beside, note=None):
        for (index, task), (row, samples) in zip(unit.items, found, strict=True):
            recorder.record(index, task, row, samples, beside=beside, note=note)

    def failed(unit, status, reason, note_for):
        """A unit that failed for good: a row, or each task again alone."""
        if len(unit.items) == 1:
            index, task = unit.items[0]
            recorder.record(index, task, recorder.failed(task, options.timing.mode, status, reason))
            return
        for item in reversed(unit.items):  # each alone, in order, next (`measure.groups`)
            queue.insert(0, _Unit([item]))
            note_for[item[1].key] = alone_note(len(unit.items), reason)

    notes: dict[str, str] = {}
    for unit in queue:
        if not placement.fits_anywhere(unit.device):
            raise UserError(f"ray: no node of the cluster has a {unit.device.split(':')[0]} device")

    while queue or in_flight:
        waiting = []
        while queue:
            unit = queue.pop(0)
            serial += 1
            label = f"{unit.label}#{serial}"
            slot = placement.place(label, unit.device)
            if slot is None:
                waiting.append(unit)
                continue
            tasks = [task for _, task in unit.items]
            if unit.attempt == 0 and on_start:
                for index, task in unit.items:
                    on_start(index, task)
            if is_host(unit.device):
                opts = dict(num_cpus=min(slot.node.cpus, placement.cpus_per_task))
                threads = placement.cpus_per_task
            else:
                opts = dict(num_gpus=1, num_cpus=1)
                threads = None
            strategy = NodeAffinitySchedulingStrategy(slot.node.node_id, soft=False)
            ref = remote.options(scheduling_strategy=strategy, **opts).remote(
                tasks, options, threads, slot.cores
            )
            in_flight[ref] = (unit, slot, label, time.time())
        queue[:0] = waiting
        if not in_flight:
            continue
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.25)
        for ref in ready:
            unit, slot, label, started = in_flight.pop(ref)
            beside = placement.release(label, slot)
            try:
                found = ray.get(ref)
            except lost as exc:
                if unit.attempt < retries:
                    unit.attempt += 1
                    queue.insert(0, unit)
                    continue
                reason = (
                    f"ray: {type(exc).__name__} after {unit.attempt + 1} attempts: "
                    + (str(exc).strip().splitlines() or [""])[-1][:300]
                )
                failed(unit, "error", reason, notes)
                continue
            except rex.TaskCancelledError:
                continue  # recorded as timeout when cancelled
            except rex.RayTaskError as exc:
                failed(unit, "error", f"ray: {exc}"[:500], notes)
                continue
            note = notes.pop(unit.items[0][1].key, None) if len(unit.items) == 1 else None
            record(unit, found, beside, note)
        now = time.time()
        for ref, (unit, slot, label, started) in list(in_flight.items()):
            limit = timeout_s * len(unit.items)
            if now - started > limit:
                ray.cancel(ref, force=True)
                del in_flight[ref]
                placement.release(label, slot)
                reason = f"no result within {format_seconds(limit)}; ray task cancelled"
                failed(unit, "timeout", reason, notes)
