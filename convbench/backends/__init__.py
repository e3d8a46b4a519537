"""The backend registry: one module per algorithm in this package, found by name.

The contract every backend follows is `convbench.backends.base`. Built-in backends live one
per module in this package and register with `@register`. Other packages add backends through
the entry-point group ``convbench.backends``; an entry point may name a `Backend` subclass, an
instance, or a zero-argument factory.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from convbench.backends.base import Backend, Passes, Plan
from convbench.backends.ops import add_bias, pad_input
from convbench.errors import UnknownBackend, Unsupported

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "convbench.backends"
BUILTIN_MODULES = (
    "naive",
    "im2col",
    "fft",
    "winograd",
    "torch",
    "onednn",
    "onednn_packed",
    "cudnn",
    "slowed",
)
#: Module of each built-in backend (one per algorithm); ``torch`` lives in ``pytorch.py`` so
#: that the package never shadows torch itself.
MODULE_OF = {"torch": "pytorch"}

#: Each built-in module's place in `BUILTIN_MODULES`, by module name (`_canonical_place`).
_PLACES = {f"{__name__}.{MODULE_OF.get(n, n)}": i for i, n in enumerate(BUILTIN_MODULES)}

_REGISTRY: dict[str, Backend] = {}
_loaded = False


# -- the registry ------------------------------------------------------------------------
def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: register one instance under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY:
        raise ValueError(f"backend {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{MODULE_OF.get(name, name)}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            backend = obj() if callable(obj) and not isinstance(obj, Backend) else obj
            if not isinstance(backend, Backend):
                raise TypeError(f"{ep.value} is not a convbench Backend")
            if not backend.name:
                backend.name = ep.name
        except Exception as exc:  # a broken plugin must not take the built-ins down
            log.warning("convbench: could not load backend entry point %r: %s", ep.name, exc)
            continue
        if backend.name in _REGISTRY:
            log.warning("convbench: entry point %r shadows nothing; name taken", ep.name)
            continue
        _REGISTRY[backend.name] = backend


def backend_names(unlisted: bool = False) -> list[str]:
    """Names of the registered backends, built-ins first in their canonical order: those a
    suite runs when it names none; with ``unlisted``, also the test backends that run only
    when named (``Backend.listed = False``, as `convbench.backends.slowed`)."""
    _load()
    ordered = sorted(_REGISTRY.items(), key=_canonical_place)  # stable within a module
    return [name for name, b in ordered if unlisted or b.listed]


def _canonical_place(item: tuple[str, Backend]) -> int:
    """A backend's place: its built-in module's in `BUILTIN_MODULES` (so the order does not
    depend on which module was imported first), after them for any other."""
    return _PLACES.get(type(item[1]).__module__, len(_PLACES))


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``; an unknown name lists the known ones."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownBackend(
            f"unknown backend {name!r}; known backends: {', '.join(backend_names())}"
        ) from None


__all__ = [
    "Backend",
    "Passes",
    "Plan",
    "Unsupported",
    "add_bias",
    "backend_names",
    "get_backend",
    "pad_input",
    "register",
]
