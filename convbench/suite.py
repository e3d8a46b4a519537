"""Kept for the import path version 1 documented (``convbench.suite.suite_to_toml``); the
suite code lives in `convbench.problem`."""

from convbench.problem import (  # noqa: F401
    DIRECTIONS,
    DTYPES,
    Axes,
    ConvCase,
    Suite,
    SuiteError,
    SuiteInfo,
    Task,
    find_suite,
    list_suites,
    load_suite,
    parse_suite,
    suite_dirs,
    suite_to_toml,
)
