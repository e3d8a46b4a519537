"""The yardstick: the same calls timed by ``torch.utils.benchmark.Timer.adaptive_autorange``,
PyTorch's own adaptive timer, so `convbench calibrate --interference` can put convbench's
figures beside it, measured in the same session on the same machine."""

from __future__ import annotations

from collections.abc import Sequence

from convbench.measure.options import MeasureOptions
from convbench.problem.suite import Task


def adaptive_autorange_ms(
    tasks: Sequence[Task], options: MeasureOptions, max_run_time_s: float, threads: int | None
) -> dict[str, float]:
    """Median ms per task key (tasks that cannot run are left out)."""
    import torch
    from torch.utils import benchmark

    from convbench.measure.task import prepared_call

    medians = {}
    for task in tasks:
        try:
            fn = prepared_call(task, options)
        except Exception:  # unsupported here: convbench records it, the yardstick skips it
            continue
        timer = benchmark.Timer(
            stmt="fn()", globals={"fn": fn}, num_threads=threads or torch.get_num_threads()
        )
        medians[task.key] = timer.adaptive_autorange(max_run_time=max_run_time_s).median * 1e3
    return medians
