"""convbench: benchmark and profile convolution algorithms on PyTorch.

The public API for backends::

    import convbench
    convbench.backend_names()  # ['naive', 'im2col', 'fft', 'winograd', 'torch', 'onednn', 'cudnn']
    y = convbench.get_backend("winograd").conv(x, w, b, padding=1)   # like F.conv2d

A backend raises `convbench.Unsupported` for a configuration it cannot compute.

For notebooks::

    df = convbench.run("smoke", backends=["im2col", "winograd"])   # results as a DataFrame
    convbench.results.load("results/convbench.sqlite")             # stored results
    suite = convbench.suite_from_model(model_factory, (1, 3, 224, 224))
    convbench.analysis.modeltime.model_totals(df)                  # whole-model conv time
    model = convbench.optimize(model, "results/net.decisions.json")  # after `convbench tune`

Every name but the version and the two exceptions is imported on first use, so ``import
convbench`` (and `convbench --help`) loads neither torch nor pandas.
"""

from convbench._version import __version__
from convbench.errors import Unsupported, UserError

# name -> (module, attribute or None for the module itself), imported on first access
_LAZY = {
    "Backend": ("convbench.backends", "Backend"),
    "Plan": ("convbench.backends", "Plan"),
    "backend_names": ("convbench.backends", "backend_names"),
    "get_backend": ("convbench.backends", "get_backend"),
    "ConvArgs": ("convbench.problem", "ConvArgs"),
    "ConvProblem": ("convbench.problem", "ConvProblem"),
    "ProblemError": ("convbench.problem", "ProblemError"),
    "run": ("convbench.flows.api", "run"),
    "suite_from_model": ("convbench.problem.trace", "suite_from_model"),
    "results": ("convbench.results", None),
    "analysis": ("convbench.analysis", None),
    "optimize": ("convbench.nn", "optimize"),
    "load_decisions": ("convbench.nn", "load_decisions"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'convbench' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)


__all__ = [
    "__version__",
    "analysis",
    "Backend",
    "ConvArgs",
    "ConvProblem",
    "Plan",
    "ProblemError",
    "Unsupported",
    "UserError",
    "backend_names",
    "get_backend",
    "load_decisions",
    "optimize",
    "results",
    "run",
    "suite_from_model",
]
