"""Run a sweep's tasks on a Ray cluster (``pip install 'convbench[ray]'``).

Each task is one Ray task that runs `convbench.measure.task.measure_task` on whichever node Ray
places it: a CUDA task asks for one whole GPU (``num_gpus=1``), a CPU task for
``cpus_per_task`` CPUs (torch then uses that many threads). Results stream back to the
driver as they finish and are committed to the driver's store one by one, with the node's
environment in each row (``node``, ``node_json``) so a mixed cluster stays distinguishable.

Failures: a task whose worker or node dies (``WorkerCrashedError``, ``NodeDiedError``,
``ActorDiedError`` …) is resubmitted up to ``retries`` times, then recorded as ``error`` with
the reason; a task past ``timeout_s`` is cancelled (force-killing its worker) and recorded as
``timeout``. The number of tasks in flight is bounded by the cluster's resources, so the
driver's timeouts measure running time, not queueing.
"""

from __future__ import annotations

import time

from convbench.errors import UserError


def _measure_remote(task, options, threads):
    import torch

    if threads:
        torch.set_num_threads(threads)
    from convbench.measure.task import measure_task

    return measure_task(task, options)


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError(
            "--executor ray needs the ray package: pip install 'convbench[ray]'"
        ) from None
    return ray


def run_on_ray(
    pending,
    options,
    timeout_s,
    recorder,
    *,
    on_start=None,
    address=None,
    cpus_per_task=None,
    retries: int = 1,
) -> None:
    ray = _ray()
    started_here = False
    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        if address:
            kwargs["address"] = address
        ray.init(**kwargs)
        started_here = True
    try:
        _drive(ray, pending, options, timeout_s, recorder, on_start, cpus_per_task or 1, retries)
    finally:
        if started_here:
            ray.shutdown()


def _capacity(ray, cpus_per_task: int) -> int:
    resources = ray.cluster_resources()
    cpu_slots = int(resources.get("CPU", 1) // cpus_per_task)
    return max(1, cpu_slots + int(resources.get("GPU", 0)))


def _drive(ray, pending, options, timeout_s, recorder, on_start, cpus_per_task, retries):
    from ray import exceptions as rex

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
    queue = list(pending)
    in_flight: dict = {}  # ref -> (index, task, attempt, started)
    limit = _capacity(ray, cpus_per_task)

    def submit(index, task, attempt):
        if task.device.startswith("cuda"):
            opts = dict(num_gpus=1, num_cpus=1)
            threads = None
        else:
            opts = dict(num_cpus=cpus_per_task)
            threads = cpus_per_task
        if on_start:
            on_start(index, task)
        ref = remote.options(**opts).remote(task, options, threads)
        in_flight[ref] = (index, task, attempt, time.time())

    while queue or in_flight:
        while queue and len(in_flight) < limit:
            index, task = queue.pop(0)
            submit(index, task, 0)
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.25)
        for ref in ready:
            index, task, attempt, started = in_flight.pop(ref)
            try:
                row, samples = ray.get(ref)
            except lost as exc:
                if attempt < retries:
                    submit(index, task, attempt + 1)
                    continue
                reason = (
                    f"ray: {type(exc).__name__} after {attempt + 1} attempts: "
                    + (str(exc).strip().splitlines() or [""])[-1][:300]
                )
                row, samples = recorder.failed(task, options, "error", reason), None
            except rex.TaskCancelledError:
                continue  # recorded as timeout when cancelled
            except rex.RayTaskError as exc:
                row = recorder.failed(task, options, "error", f"ray: {exc}"[:500])
                samples = None
            recorder.record(index, task, row, samples, started)
        now = time.time()
        for ref, (index, task, _attempt, started) in list(in_flight.items()):
            if now - started > timeout_s:
                ray.cancel(ref, force=True)
                del in_flight[ref]
                row = recorder.failed(
                    task,
                    options,
                    "timeout",
                    f"no result within {timeout_s:.0f} s; ray task cancelled",
                )
                recorder.record(index, task, row, None, started)
