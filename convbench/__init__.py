"""convbench: benchmark and profile convolution algorithms on PyTorch.

The public API for backends::

    import convbench
    convbench.backend_names()          # ['naive', 'im2col', 'fft', 'winograd', 'onednn', 'cudnn']
    y = convbench.get_backend("winograd").conv(x, w, b, padding=1)   # like F.conv2d

A backend raises `convbench.Unsupported` for a configuration it cannot compute.
"""

from convbench.backends import Backend, Plan, backend_names, get_backend
from convbench.errors import Unsupported, UserError
from convbench.spec import ConvArgs, ConvProblem, ProblemError

__version__ = "0.1.0"

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
]
