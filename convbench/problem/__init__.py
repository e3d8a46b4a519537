"""What is measured: convolution problems, the suites that list them, and how they shard.

* `spec` — `ConvProblem` (a suite entry) and `ConvArgs` (the normalised call a backend sees);
  `shapes` — padding, output size and FLOP arithmetic they share.
* `axes` — dtypes with their accuracy tolerances, directions with their FLOP factors, devices.
* `suite` — `ConvCase`, `Task` and `Suite`, with stable ids; `parse`, `files` and `write`
  read, find and write suite TOML files.
* `shard` — deterministic, balanced shards of a sweep for job arrays.
"""

from convbench.problem.axes import (
    DIRECTIONS,
    DTYPES,
    TOLERANCE,
    Axes,
    flop_factor,
    tolerance,
    within_tolerance,
)
from convbench.problem.files import find_suite, list_suites, load_suite, suite_dirs
from convbench.problem.parse import parse_suite
from convbench.problem.shapes import ProblemError
from convbench.problem.spec import ConvArgs, ConvProblem
from convbench.problem.suite import ConvCase, Suite, SuiteError, SuiteInfo, Task
from convbench.problem.write import suite_to_toml

__all__ = [
    "DIRECTIONS",
    "DTYPES",
    "TOLERANCE",
    "Axes",
    "ConvArgs",
    "ConvCase",
    "ConvProblem",
    "ProblemError",
    "Suite",
    "SuiteError",
    "SuiteInfo",
    "Task",
    "find_suite",
    "flop_factor",
    "list_suites",
    "load_suite",
    "parse_suite",
    "suite_dirs",
    "suite_to_toml",
    "tolerance",
    "within_tolerance",
]
