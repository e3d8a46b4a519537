"""Every task of a convbench suite (case × backend × dtype × device × direction) as one
pytest-benchmark benchmark, grouped by problem so the backends of a case compare side by side.

    python -m pytest benchmarks/ --benchmark-only                       # smoke suite
    python -m pytest benchmarks/ --benchmark-only --convbench-suite resnet50 \\
        --convbench-backends im2col,winograd,onednn --benchmark-autosave
"""

import pytest
import torch


def test_conv(conv_benchmark, conv_task):
    task = conv_task
    if task.device.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x, w, b = task.problem.make_tensors(task.torch_dtype, task.device)
    conv_benchmark.extra_info.update(
        suite_case=task.case.name, case_id=task.case.case_id, count=task.case.count
    )
    conv_benchmark(
        task.backend,
        x,
        w,
        b,
        **task.problem.conv_kwargs(),
        direction=task.direction,
        group=f"{task.case.name} · {task.dtype} · {task.device} · {task.direction}",
    )
