"""convbench: benchmark and profile convolution algorithms on PyTorch.

The public API for backends::

    import convbench
    convbench.backend_names()          # ['naive', 'im2col', 'fft', 'winograd', 'onednn', 'cudnn']
    y = convbench.get_backend("winograd").conv(x, w, b, padding=1)   # like F.conv2d

A backend raises `convbench.Unsupported` for a configuration it cannot compute.

For notebooks (each loaded on first use, so ``import convbench`` stays light)::

    df = convbench.run("smoke", backends=["im2col", "winograd"])   # results as a DataFrame
    convbench.results.load("results/convbench.sqlite")             # stored results
    suite = convbench.suite_from_model(model_factory, (1, 3, 224, 224))
    convbench.modeltime.model_totals(df)                           # whole-model conv time
"""

from convbench.backends import Backend, Plan, backend_names, get_backend
from convbench.errors import Unsupported, UserError
from convbench.spec import ConvArgs, ConvProblem, ProblemError

__version__ = "0.1.0"

# name -> (module, attribute or None for the module itself), imported on first access
_LAZY = {
    "run": ("convbench.api", "run"),
    "suite_from_model": ("convbench.from_model", "suite_from_model"),
    "results": ("convbench.results", None),
    "modeltime": ("convbench.modeltime", None),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'convbench' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)


__all__ = [
    "Backend",
    "ConvArgs",
    "ConvProblem",
    "Plan",
    "ProblemError",
    "Unsupported",
    "UserError",
    "backend_names",
    "get_backend",
    "modeltime",
    "results",
    "run",
    "suite_from_model",
]
