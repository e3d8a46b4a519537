"""What the results say: statistics, comparisons, significance, roofline, model totals.

Pure functions of values and DataFrames (no files, no terminal):

* `stats` — median, IQR and the median's confidence interval from raw samples; Mann–Whitney;
  ratio intervals.
* `compare` — differences between two results, speedups over a baseline, run-to-run
  verdicts.
* `winners` — the winner map: per case the fastest backend within tolerance, and where it
  runs the baseline's own kernel.
* `flags` — flagged results counted and named.
* `roofline` — arithmetic intensity and share of the measured peak.
* `modeltime` — whole-model convolution time and the best per-layer mix.

The functions of `compare`, `winners` and `roofline` are also reachable here
(``analysis.speedups``), loaded on first use so that importing `convbench.analysis.stats`
stays light.
"""

from __future__ import annotations

import importlib

_SUBMODULES = ("stats", "compare", "winners", "flags", "roofline", "modeltime")
_REEXPORTED = ("compare", "winners", "roofline")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    for module_name in _REEXPORTED:
        module = importlib.import_module(f"{__name__}.{module_name}")
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
