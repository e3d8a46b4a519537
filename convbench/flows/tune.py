"""`convbench tune`: from a model to the fastest accurate backend for every layer and pass, and
the model measured end to end with them.

1. **trace** the model's convolutions (as `convbench suite from-model`: one forward pass,
   hooks on every `nn.Conv1d`/`nn.Conv2d`, meta device where the model allows);
2. **measure** every candidate backend on each distinct problem and pass through the ordinary
   run session (`convbench.runner.session`: worker process, progress bar, failure rows,
   ``--resume``, the store). The run id is a function of the model, shape, dtype, device,
   passes, candidates, threads and environment, so a second tune of the same model finds its
   run and measures only what is missing;
3. **decide** (`convbench.analysis.decisions`: within tolerance and significantly faster than
   ``torch``, else ``torch``) and write the decisions file (`convbench.store.decisions`);
4. **measure the model end to end**: the original against `convbench.optimize`'s version, in
   interleaved rounds (`convbench.measure.endtoend`), for inference and, when asked, one
   training step, with the process's C allocator in the state the workers keep theirs
   (`convbench.measure.malloc.steady_state`, fixed when tune starts); the record goes into
   the store for the report's "Tuned model" section.
5. **choose at the model level** in the same rounds (`convbench.flows.variants`): the
   memory format (contiguous, or ``channels_last`` with the decisions or with torch
   throughout, kept only if significantly faster in every mode); the decisions back to
   torch where the model came out slower; and the model as it was wherever the end-to-end
   evidence is flagged (disturbed, too few undisturbed samples, unsteady, off pace).

Flags the per-layer results the decisions rest on carry are counted in `TuneResult.flagged`.
A `convbench` folder that shadows this package on the import path is refused up front: the
measuring worker would import it instead (`check_not_shadowed`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.machinery
import json
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch

from convbench.analysis.decisions import BASELINE, PASSES, Decision, decide
from convbench.analysis.flags import is_flagged
from convbench.errors import UserError
from convbench.flows import variants
from convbench.flows.plan import headroom_line, per_layer_plan, predicted_line
from convbench.flows.replay import replay_plan
from convbench.measure.config import TimingConfig
from convbench.measure.endtoend import DEFAULT_TIMING, EndToEnd, compare_variants
from convbench.measure.envinfo import decision_context
from convbench.measure.malloc import steady_state
from convbench.measure.options import DEFAULTS, measure_options
from convbench.problem.axes import DTYPES, LAYOUTS
from convbench.problem.trace import load_factory, suite_from_trace, trace_convs
from convbench.runner.session import RunPlan, execute
from convbench.runner.worker import Prelaunched
from convbench.store import Store
from convbench.store.decisions import DecisionTable, write
from convbench.store.frames import load


@dataclass
class TuneResult:
    run_id: str
    decisions: list[Decision]
    entries: list[dict]
    path: Path | None
    end_to_end: list[EndToEnd] = field(default_factory=list)
    interrupted: bool = False
    layout: dict | None = None
    variants: list[EndToEnd] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)  # the variants as stored, marked
    #: The per-layer results the decisions rest on that were flagged (`flagged_results`).
    flagged: list[dict] = field(default_factory=list)


def _layers_by_problem(trace) -> dict[str, list[str]]:
    layers: dict[str, list[str]] = {}
    for call in trace.recorded:
        layers.setdefault(call.problem.key, [])
        if call.path not in layers[call.problem.key]:
            layers[call.problem.key].append(call.path)
    return layers


#: Every candidate and torch get at least this many undisturbed samples, past `--max-time`
#: if need be (up to 10 × it): a layer slower than the cap would otherwise get one or two,
#: and no rank test can call a difference significant on those (p ≥ 1/3 with 2 a side).
FLOOR_SAMPLES = 6


def run_id_for(
    spec: str, shape, dtype, device, passes, candidates, threads, options: dict | None = None
) -> str:
    """The run of a tune: the same model, shape, settings (the timing options included) and
    environment give the same id, so a second tune resumes it (measuring only what is
    missing)."""
    context = decision_context(device)
    blob = json.dumps(
        [spec, list(shape), dtype, device, list(passes), sorted(candidates), threads, context]
        + ([options] if options else []),
        sort_keys=True,
    )
    return "tune-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def _entries(decisions: list[Decision], trace, device: str) -> list[dict]:
    from convbench.nn import device_name

    layers = _layers_by_problem(trace)
    shapes = {call.problem.key: call.problem.to_dict() for call in trace.recorded}
    context = decision_context(device)
    entries = []
    for d in decisions:
        entry = d.to_dict()
        entry.update(
            device=device_name(device),
            layers=layers.get(d.problem, []),
            shape=shapes.get(d.problem, {}),
            context=context,
            speedup_ci=list(d.speedup_ci) if d.speedup_ci else None,
        )
        entries.append(entry)
    return entries


def check_not_shadowed() -> None:
    """`UserError` naming the folder where ``import convbench`` would not find this package:
    a plain folder named ``convbench`` on ``sys.path`` (PYTHONPATH, or the current directory
    that tune adds) becomes a namespace package ahead of an editable install's finder — in
    this process, or in the worker process that measures, which inherits ``sys.path``."""
    here = Path(__file__).resolve().parents[1]
    module = sys.modules.get("convbench")
    found = [] if getattr(module, "__file__", None) else list(getattr(module, "__path__", []))
    spec = importlib.machinery.PathFinder.find_spec("convbench", sys.path)
    if spec is not None and spec.origin is None:  # a namespace package: folders only
        found += list(spec.submodule_search_locations or [])
    elif spec is not None and Path(spec.origin).resolve().parent != here:
        found.append(str(Path(spec.origin).parent))
    if found:
        folder = Path(found[0])
        raise UserError(
            f"{folder} shadows the convbench package ({here}): `import convbench` finds that "
            f"folder; rename it, or take {folder.parent} off PYTHONPATH (or run elsewhere)"
        )


def _model_and_input(factory, spec: str, input_shape, dtype: str, device: str):
    """The model as the factory builds it, on ``device`` in ``dtype``, and a seeded input."""
    original = factory()
    if not isinstance(original, torch.nn.Module):
        raise UserError(f"{spec}: the factory returned a {type(original).__name__}")
    original = original.to(device=device, dtype=getattr(torch, dtype))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(tuple(input_shape), generator=gen, dtype=torch.float64)
    return original, x.to(device=device, dtype=getattr(torch, dtype))


def _compare(store: Store, device: str, threads: int | None):
    """`compare_variants` with the machine's usual pace (from the store's CPU results, as the
    per-layer rows are judged), where known."""
    usual = None
    if torch.device(device).type == "cpu":
        threads = threads or torch.get_num_threads()
        usual = store.usual_pace_us(socket.gethostname(), threads)
    return functools.partial(compare_variants, usual_pace_us=usual)


def flagged_results(frame: pd.DataFrame, decisions: Sequence[Decision]) -> list[dict]:
    """The per-layer results the ``decisions`` rest on — each decision's backend and torch —
    that their measurement flagged (``disturbed``), with the flag's reason (pure)."""
    rested = {(d.case, d.dtype, d.device, d.pass_, b) for d in decisions
              for b in (d.backend, BASELINE)}  # fmt: skip
    found = []
    for row in frame.to_dict("records"):
        key = (row["case"], row["dtype"], row["device"], row["direction"], row["backend"])
        if key in rested and is_flagged(row):
            found.append(dict(case=row["case"], backend=row["backend"], direction=key[3],
                              reason=row.get("reason") or "flagged"))  # fmt: skip
    return found


@dataclass(frozen=True)
class Target:
    """What the model is tuned for: its dtype and device, the passes (``train``: the
    backward passes too, and a training step end to end), the candidate backends (default:
    every registered) and the CPU threads."""

    dtype: str = "float32"
    device: str = "cpu"
    train: bool = False
    backends: Sequence[str] | None = None
    threads: int | None = None


@dataclass(frozen=True)
class Rules:
    """How decisions are made: the error a candidate may have (``max_rel_err``, default the
    dtype's tolerance), the significance level, the per-layer sampling cap, how the whole
    model is timed (``end_to_end``, default `DEFAULT_TIMING`; it too gets at least
    `FLOOR_SAMPLES` undisturbed samples), the pace a result (per layer or end to end) may be
    off by before it is flagged, whether the compiled variants are timed
    (`convbench.flows.build`), and how many times in all the end-to-end rounds are made where
    the evidence they gave was flagged (`convbench.flows.variants.end_to_end`)."""

    max_rel_err: float | None = None
    alpha: float = 0.05
    max_time_s: float = DEFAULTS["max_time_s"]
    end_to_end: TimingConfig | None = None
    max_pace: float = DEFAULTS["max_pace"]
    compiled: bool = True
    e2e_attempts: int = 2


@dataclass(frozen=True)
class Output:
    """Where tune talks: the progress bar, its console, the command recorded with the run,
    and ``say`` for its lines."""

    progress: bool = True
    console: object = None
    command: str = "convbench tune"
    say: Callable[[str], None] = print


def tune(
    spec: str,
    input_shape: Sequence[int],
    target: Target = Target(),
    rules: Rules = Rules(),
    *,
    db: str | Path | None = None,
    out: str | Path | None = None,
    output: Output = Output(),
) -> TuneResult:
    """Tune ``spec`` (``PACKAGE.MODULE:FACTORY``) at ``input_shape``; see the module doc."""
    dtype, device, train, threads = target.dtype, target.device, target.train, target.threads
    say = output.say
    from convbench.backends import backend_names

    if dtype not in DTYPES:
        raise UserError(f"--dtype: unknown dtype {dtype!r} (expected one of {', '.join(DTYPES)})")
    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads: expected a positive int, got {threads}")
        torch.set_num_threads(threads)  # the end-to-end timing and the decisions' context
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the current directory imports
    check_not_shadowed()
    steady_state()  # the allocator the models are timed in, as the workers keep theirs
    with contextlib.ExitStack() as stack:
        # the worker's start-up overlaps loading and tracing the model
        workers = stack.enter_context(Prelaunched(threads))
        factory = load_factory(spec)
        trace = trace_convs(factory, input_shape, label=spec)
        name = spec.rpartition(":")[2].lower()
        passes = PASSES if train else ("forward",)
        candidates = list(target.backends) if target.backends else backend_names()
        if "torch" not in candidates:
            candidates.append("torch")  # the baseline every decision is made against
        suite = suite_from_trace(trace, name, dtype, source=f"{spec} at {list(input_shape)}")
        filters = {"backends": candidates, "dtypes": [dtype], "devices": [device]}
        filters["directions"] = list(passes)
        # inference: every layer in both layouts, for the per-layer plan (`convbench.flows.plan`)
        filters["layouts"] = ["contiguous"] if train else list(LAYOUTS)
        options = measure_options(
            max_time_s=rules.max_time_s, max_pace=rules.max_pace, floor_samples=FLOOR_SAMPLES
        )
        plan = RunPlan(suite, filters, options, threads=threads)
        run_id = run_id_for(
            spec, input_shape, dtype, device, passes, candidates, threads, options.to_dict()
        )
        store = stack.enter_context(Store(db))
        resume = run_id in store.run_ids()
        if resume:
            say(f"{run_id}: measured before; measuring only what is missing")
        result = execute(
            store, plan, run_id, command=output.command, resume=resume, console=output.console,
            progress=output.progress, workers=workers,
        )  # fmt: skip
        if result is None or result.interrupted:
            return TuneResult(run_id, [], [], None, interrupted=True)
        frame = load(store, run_id, samples=True)
        decisions = decide(
            frame, alpha=rules.alpha, max_rel_err=rules.max_rel_err, weight_changes=train
        )
        entries = _entries([d for d in decisions if d.layout == "contiguous"], trace, device)
        path = write(out, entries, model=spec, input_shape=input_shape) if out else None
        original, x = _model_and_input(factory, spec, input_shape, dtype, device)
        modes = ("inference", "train") if train else ("inference",)
        planned = None if train else per_layer_plan(
            trace, original, x, decisions, frame, options.timing, say
        )  # fmt: skip
        table = DecisionTable(str(path or "<tune>"), entries, spec, plan=planned)
        if planned is not None:
            say(replay_plan(original, table, x))
        config = replace(rules.end_to_end or DEFAULT_TIMING, max_pace=rules.max_pace)
        config = replace(config, floor_samples=max(config.floor_samples, FLOOR_SAMPLES))
        e2e, layout, every, records = variants.end_to_end(
            original, table, x, modes, config, rules.alpha, device, say,
            compare=_compare(store, device, threads), compiled=rules.compiled,
            attempts=rules.e2e_attempts,
        )  # fmt: skip
        if path is not None:
            e2e_dicts = [e.to_dict() for e in e2e]
            layout_record = dict(layout, variants=[e.to_dict() for e in every])
            path = write(out, entries, model=spec, input_shape=input_shape,
                         end_to_end=e2e_dicts, layout=layout_record, plan=planned)  # fmt: skip
        if planned is not None:
            say(predicted_line(planned, every))
            say(headroom_line(planned, every))
        store.add_tune(
            run_id, run_id, model=spec, input_shape=input_shape, decisions_path=path,
            decisions=entries, end_to_end=records, plan=planned,
        )  # fmt: skip
        return TuneResult(
            run_id, decisions, entries, path, e2e, layout=layout, variants=every,
            records=records, flagged=flagged_results(frame, decisions),
        )  # fmt: skip
