"""pytest-benchmark tests parametrised from a convbench suite (see test_suite.py).

Options (or environment variables, for CI and the README's test):

    --convbench-suite NAME|PATH     CONVBENCH_SUITE       default: smoke
    --convbench-backends a,b        CONVBENCH_BACKENDS    default: the suite's axis, else every
                                                          registered backend but cudnn on a
                                                          machine without CUDA
    --convbench-dtypes / --convbench-devices / --convbench-directions / --convbench-batch-sizes
                                    default: the suite's axes, but forward only

This directory is outside `testpaths`, so the project's default `pytest` run does not collect
it; run it with ``python -m pytest benchmarks/ --benchmark-only``.
"""

from __future__ import annotations

import os

import pytest

OPTIONS = ("suite", "backends", "dtypes", "devices", "directions", "batch_sizes")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("convbench suite benchmarks")
    for name in OPTIONS:
        flag = "--convbench-" + name.replace("_", "-")
        env = "CONVBENCH_" + name.upper()
        group.addoption(
            flag,
            dest=f"convbench_{name}",
            default=os.environ.get(env),
            help=f"(env {env}) "
            + (
                "suite name or path (default: smoke)"
                if name == "suite"
                else f"comma-separated {name.replace('_', ' ')}"
            ),
        )


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def selected_tasks(config: pytest.Config):
    """The suite's tasks under the options: what test_suite.py is parametrised with."""
    import torch

    from convbench.backends import backend_names
    from convbench.problem import load_suite

    suite = load_suite(config.getoption("convbench_suite") or "smoke")
    get = {name: _csv(config.getoption(f"convbench_{name}")) for name in OPTIONS[1:]}
    backends = get["backends"] or (
        None
        if suite.axes.backends is not None
        else [b for b in backend_names() if b != "cudnn" or torch.cuda.is_available()]
    )
    batch_sizes = [int(b) for b in get["batch_sizes"]] if get["batch_sizes"] else None
    return suite, suite.tasks(
        registered=backend_names(),
        backends=backends,
        dtypes=get["dtypes"],
        devices=get["devices"],
        directions=get["directions"] or ["forward"],
        batch_sizes=batch_sizes,
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conv_task" not in metafunc.fixturenames:
        return
    suite, tasks = selected_tasks(metafunc.config)
    metafunc.parametrize(
        "conv_task",
        tasks,
        ids=[f"{t.case.name}-{t.backend}-{t.dtype}-{t.device}-{t.direction}" for t in tasks],
    )
