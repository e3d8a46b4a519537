"""Suites from a model: the convolution problems an `nn.Module` actually runs.

    from convbench.problem.trace import suite_from_model
    suite = suite_from_model(my_model_factory, (1, 3, 224, 224), name="mynet")

How: build the model, register a forward pre-hook on every `nn.Conv1d`/`nn.Conv2d`, run one
forward pass under `torch.no_grad()` with an input of ``input_shape``, and record each call's
problem from the input that conv actually receives (so strides, pooling and reshapes upstream
are accounted for, and a module called twice counts twice). Equal problems are merged into one
case whose ``count`` is the number of calls that share it, named after the first layer's module
path (``layer1.0.conv2``); a module path that runs two different problems names the second
``PATH#2``.

Where it runs: on the **meta device** when the model allows, so that neither weights nor
activations take memory. A factory is called under ``torch.device("meta")``; a model instance
is run through `torch.func.functional_call` with meta stand-ins for its parameters and buffers
(the model itself is not touched). A model that cannot run on meta (data-dependent control
flow, tensors created on an explicit device) is run for real instead: a factory is built on
the CPU, an instance on its own device, its buffers cloned so batch-norm statistics are not
updated. `ModelTrace.device` says which was used and `fallback_reason` why.

What is recorded: ``padding`` as the module holds it, with ``'same'``/``'valid'`` written as
explicit numbers when the padding is symmetric (so equal problems merge); ``padding_mode``
other than ``'zeros'`` pads the input (reflect, replicate, circular) before a convolution
with padding 0, and that convolution is what is recorded, with a note. Transposed
convolutions are not `nn.Conv1d`/`nn.Conv2d` and are not recorded; neither are 3-D ones.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from convbench.errors import UserError
from convbench.problem.axes import DTYPES, Axes
from convbench.problem.shapes import ProblemError, resolve_padding
from convbench.problem.spec import ConvProblem
from convbench.problem.suite import ConvCase, Suite

ModelOrFactory = nn.Module | Callable[[], nn.Module]


@dataclass(frozen=True)
class ConvCall:
    """One call of a conv module in the traced forward pass.

    ``problem`` is None when the call could not be described (``note`` says why); otherwise
    ``note`` is None or says how the problem was derived (e.g. a reflect padding).
    """

    path: str
    problem: ConvProblem | None
    note: str | None = None


@dataclass(frozen=True)
class ModelTrace:
    """What one forward pass ran: every conv call in order, and where the pass ran."""

    calls: tuple[ConvCall, ...]
    device: str
    fallback_reason: str | None = None

    @property
    def recorded(self) -> list[ConvCall]:
        return [c for c in self.calls if c.problem is not None]

    @property
    def skipped(self) -> list[ConvCall]:
        return [c for c in self.calls if c.problem is None]

    @property
    def notes(self) -> list[str]:
        """One line per skipped call or noted derivation, for the CLI and the suite header."""
        return [f"{c.path}: {c.note}" for c in self.calls if c.note]


# ---------------------------------------------------------------------------------------------
# Loading a factory


def load_factory(spec: str) -> Callable[[], nn.Module]:
    """Resolve ``PACKAGE.MODULE:ATTR`` (``ATTR`` may be dotted) to a callable.

    Every failure is a `UserError` naming the spec and the cause in one line.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(
            f"{spec}: expected PACKAGE.MODULE:FACTORY, e.g. torchvision.models:resnet50"
        )
    try:
        obj = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module raising while it is imported
        raise UserError(f"{spec}: cannot import module {module_name!r}: {_one_line(exc)}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"{spec}: {getattr(obj, '__name__', obj)!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserError(f"{spec}: {attr} is a {type(obj).__name__}, not a callable model factory")
    return obj


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Recording conv calls


def _padding_value(module: nn.Conv1d | nn.Conv2d, nd: int) -> tuple[object, tuple]:
    """The module's padding as a ConvProblem accepts it, and its explicit (lo, hi) pairs."""
    kernel = tuple(module.kernel_size)
    pads = resolve_padding(module.padding, nd, kernel, tuple(module.stride), tuple(module.dilation))
    if all(lo == hi for lo, hi in pads):
        return tuple(lo for lo, _ in pads), pads
    return module.padding, pads  # asymmetric 'same' stays 'same'


def describe_call(path: str, module: nn.Conv1d | nn.Conv2d, input_shape: Sequence[int]) -> ConvCall:
    """The problem a conv module solves for an input of ``input_shape`` (pure: shapes only)."""
    nd = 1 if isinstance(module, nn.Conv1d) else 2
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == nd + 1:
        batch, spatial = 1, shape[1:]
    elif len(shape) == nd + 2:
        batch, spatial = shape[0], shape[2:]
    else:
        return ConvCall(path, None, f"skipped: {len(shape)}-D input to a {nd}-D convolution")
    padding, pads = _padding_value(module, nd)
    note = None
    if module.padding_mode != "zeros":
        spatial = tuple(s + lo + hi for s, (lo, hi) in zip(spatial, pads, strict=True))
        padding = 0
        note = (
            f"padding_mode {module.padding_mode!r}: recorded as the convolution (padding 0) of "
            "the already padded input; the padding itself is not timed"
        )
    try:
        problem = ConvProblem(
            batch=batch,
            in_channels=module.in_channels,
            out_channels=module.out_channels,
            spatial=spatial,
            kernel=tuple(module.kernel_size),
            stride=tuple(module.stride),
            padding=padding,
            dilation=tuple(module.dilation),
            groups=module.groups,
            bias=module.bias is not None,
        )
    except ProblemError as exc:
        return ConvCall(path, None, f"skipped: {exc}")
    return ConvCall(path, problem, note)


def layer_names(model: nn.Module) -> dict[nn.Module, str]:
    """Each conv module and the name its layer gets: its module path, or where the path is
    only indexes (an ``nn.Sequential``'s ``"0"``, ``"2"``, ``"3.1"``), ``conv1``, ``conv2`` …
    in model order, followed by the path: ``conv2@2``."""
    found: dict[nn.Module, str] = {}
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d) and module not in found:
            if not path:
                name = type(module).__name__.lower()
            elif not any(ch.isalpha() for ch in path):
                name = f"conv{len(found) + 1}@{path}"
            else:
                name = path
            found[module] = name
    return found


def _run_hooked(model: nn.Module, forward: Callable[[], object]) -> tuple[ConvCall, ...]:
    """Run ``forward()`` with a pre-hook on every conv of ``model``; the calls in order."""
    calls: list[ConvCall] = []
    handles = []
    for module, path in layer_names(model).items():

        def hook(mod, args, kwargs, path=path):
            x = args[0] if args else kwargs.get("input")
            calls.append(describe_call(path, mod, tuple(x.shape)))

        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    training = {m: m.training for m in model.modules()}
    model.eval()  # batch-norm on batch 1 needs eval; shapes do not depend on the mode
    try:
        with torch.no_grad():
            forward()
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in training.items():
            module.training = mode
    return tuple(calls)


def _check_module(obj: object, label: str) -> nn.Module:
    if not isinstance(obj, nn.Module):
        raise UserError(f"{label}: the factory returned a {type(obj).__name__}, not an nn.Module")
    return obj


def _float_dtype(model: nn.Module) -> torch.dtype:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


def _model_device(model: nn.Module) -> torch.device:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _trace_meta(target: ModelOrFactory, shape: tuple[int, ...], label: str) -> tuple:
    if isinstance(target, nn.Module):
        model = target
        state = {
            name: torch.empty_like(t, device="meta")
            # tied parameters appear once; functional_call ties the other names to them
            for name, t in itertools.chain(model.named_parameters(), model.named_buffers())
        }
    else:
        with torch.device("meta"):
            model = _check_module(target(), label)
        state = None
    x = torch.empty(shape, device="meta", dtype=_float_dtype(model))
    if state is None:
        return _run_hooked(model, lambda: model(x))
    return _run_hooked(model, lambda: torch.func.functional_call(model, state, (x,)))


def _trace_eager(target: ModelOrFactory, shape: tuple[int, ...], label: str) -> tuple:
    if isinstance(target, nn.Module):
        model = target
    else:
        try:
            model = _check_module(target(), label)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"{label}: building the model failed: {_one_line(exc)}") from None
    device = _model_device(model)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).to(device=device, dtype=_float_dtype(model))
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    calls = _run_hooked(model, lambda: torch.func.functional_call(model, buffers, (x,)))
    return calls, str(device)


def trace_convs(
    model_or_factory: ModelOrFactory,
    input_shape: Sequence[int],
    *,
    meta: bool = True,
    label: str | None = None,
) -> ModelTrace:
    """Run one forward pass and record every conv call (meta device first, see module doc).

    ``meta=False`` skips the meta attempt. A factory that does not return an `nn.Module`, or a
    model whose forward pass fails for real, raises a `UserError` naming the cause.
    """
    label = label or _label(model_or_factory)
    shape = _check_shape(input_shape)
    if not isinstance(model_or_factory, nn.Module) and not callable(model_or_factory):
        raise UserError(f"{label}: expected an nn.Module or a callable that returns one")
    fallback = None
    if meta:
        try:
            return ModelTrace(_trace_meta(model_or_factory, shape, label), "meta")
        except UserError:
            raise
        except Exception as exc:
            fallback = f"the model does not run on the meta device ({_one_line(exc)})"
    try:
        calls, device = _trace_eager(model_or_factory, shape, label)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"{label}: forward pass with input shape {list(shape)} failed: {_one_line(exc)}"
        ) from None
    return ModelTrace(calls, device, fallback)


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if not shape or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise UserError(f"input shape: expected positive integers, got {input_shape!r}")
    return shape


def _label(model_or_factory: object) -> str:
    if isinstance(model_or_factory, nn.Module):
        return type(model_or_factory).__name__
    return getattr(model_or_factory, "__qualname__", None) or repr(model_or_factory)


# ---------------------------------------------------------------------------------------------
# Calls to cases to a suite


def cases_from_calls(calls: Sequence[ConvCall]) -> list[ConvCase]:
    """Merge equal problems into cases, in order of first call; ``count`` = calls sharing it,
    the name = the first call's module path (``PATH#2``, ``PATH#3`` if a path repeats)."""
    names: dict[ConvProblem, str] = {}
    counts: dict[ConvProblem, int] = {}
    used: dict[str, int] = {}
    for call in calls:
        if call.problem is None:
            continue
        if call.problem not in names:
            used[call.path] = used.get(call.path, 0) + 1
            suffix = f"#{used[call.path]}" if used[call.path] > 1 else ""
            names[call.problem] = call.path + suffix
        counts[call.problem] = counts.get(call.problem, 0) + 1
    return [ConvCase(names[p], p, counts[p]) for p in names]


def suite_from_trace(
    trace: ModelTrace,
    name: str,
    dtype: str = "float32",
    *,
    description: str | None = None,
    source: str = "",
) -> Suite:
    """The suite of a trace; its axes sweep ``dtype`` on the CPU, forward (CLI flags override)."""
    if dtype not in DTYPES:
        raise UserError(f"--dtype: unknown dtype {dtype!r} (expected one of {', '.join(DTYPES)})")
    if not name.strip():
        raise UserError("--name: must not be empty")
    cases = cases_from_calls(trace.calls)
    if not cases:
        why = f" ({len(trace.skipped)} skipped)" if trace.skipped else ""
        raise UserError(f"{name}: the forward pass ran no nn.Conv1d/nn.Conv2d layer{why}")
    layers = sum(case.count for case in cases)
    description = description or (
        f"{layers} conv layer calls, {len(cases)} distinct problems (traced on {trace.device})"
    )
    return Suite(name, description, source, None, tuple(cases), Axes(dtypes=(dtype,)))


def suite_from_model(
    model_or_factory: ModelOrFactory,
    input_shape: Sequence[int],
    dtype: str = "float32",
    name: str | None = None,
    *,
    meta: bool = True,
) -> Suite:
    """The suite of every `nn.Conv1d`/`nn.Conv2d` call of one forward pass at ``input_shape``.

    ``model_or_factory``: an `nn.Module`, or a callable returning one (preferred: it can be
    built on the meta device, costing no memory). ``dtype`` sets the suite's dtype axis; the
    trace itself runs in the model's own dtype (shapes do not depend on it). ``name`` defaults
    to the model's (or factory's) name. Write it with `convbench.problem.suite_to_toml`.
    """
    label = _label(model_or_factory)
    trace = trace_convs(model_or_factory, input_shape, meta=meta, label=label)
    default = label.rsplit(".", 1)[-1].lower()
    return suite_from_trace(trace, name or default, dtype, source=f"{label} at {list(input_shape)}")
