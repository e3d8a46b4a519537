"""The one constructor of a task's result (`new_result`), used by the worker for every row it
returns and by the parent for the rows of tasks that never came back
(`convbench.runner.recorder.Recorder.failed`)."""

from __future__ import annotations

import json
import platform
import socket

import torch

from convbench.problem.axes import flop_factor
from convbench.problem.suite import Task
from convbench.store.record import Result


def node_info() -> dict:
    """Where a result was measured: enough to tell machines of a mixed fleet apart."""
    info = {"hostname": socket.gethostname(), "cpu": platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def new_result(task: Task, **fields) -> Result:
    """The one constructor of a task's result: what the task itself says (case, backend,
    problem, flops), then ``fields``. The parent completes it (`convbench.runner.recorder`)."""
    p = task.problem
    return Result(
        result_key=task.key,
        case_id=task.case.case_id,
        case_name=task.case.name,
        count=task.case.count,
        backend=task.backend,
        device=task.device,
        dtype=task.dtype,
        direction=task.direction,
        layout=task.layout,
        problem_json=json.dumps(p.to_dict()),
        nd=p.nd,
        batch=p.batch,
        flops=float(p.flops * flop_factor(task.direction)),
        **fields,
    )
