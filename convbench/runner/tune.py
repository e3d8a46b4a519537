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
   training step; the record goes into the store for the report's "Tuned model" section.
5. **choose the model's memory format** in the same rounds (`choose_variant`): for a model
   with 2-D convolutions, the tuned model is also timed in ``channels_last`` — with the
   decisions, and with torch throughout — and a variant replaces the contiguous one only if it
   is significantly faster than it in every mode timed. The layout is a whole-model decision:
   converting around each layer costs more than any layer gains, so it is never per layer.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from convbench.analysis import stats
from convbench.analysis.decisions import PASSES, Decision, decide
from convbench.errors import UserError
from convbench.measure.config import TimingConfig
from convbench.measure.endtoend import EndToEnd, compare_variants
from convbench.measure.options import measure_options
from convbench.problem.axes import DTYPES
from convbench.runner.envinfo import decision_context
from convbench.runner.from_model import load_factory, suite_from_trace, trace_convs
from convbench.runner.session import RunPlan, execute
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


def slower(e: EndToEnd, alpha: float) -> bool:
    """Was the optimized model significantly slower than the original?"""
    return e.speedup < 1 and e.p_value < alpha


def revert_if_slower(entries: list[dict], e2e: Sequence[EndToEnd], alpha: float) -> str | None:
    """The model-level guard: where the optimized model came out significantly slower end to
    end than the original (Mann–Whitney p < ``alpha``), the decisions that mode uses go back
    to ``torch`` — the forward passes for ``inference``, every pass for ``train`` — each with
    the reason and the backend it had (``reverted_from``). Returns the line saying so, or None.

    Per-layer wins need not add up: layers timed alone can lose end to end (caches shared
    with the neighbours, threads, memory traffic between layers); a tuned model must never be
    a loss."""
    lines = []
    for e in e2e:
        if not slower(e, alpha):
            continue
        figure = f"{e.speedup:.3f}× [{e.ci_low:.3f}–{e.ci_high:.3f}], p={e.p_value:.2g}"
        passes = ("forward",) if e.mode == "inference" else PASSES
        n = 0
        for entry in entries:
            if entry["pass"] in passes and entry["backend"] != "torch":
                entry["reverted_from"] = entry["backend"]
                entry["backend"], entry["options"] = "torch", {}
                entry["reason"] = f"reverted: the optimized model's {e.mode} was {figure}"
                n += 1
        if n:
            lines.append(f"{e.mode} {figure}: {n} decision(s) of {'/'.join(passes)} reverted")
    if not lines:
        return None
    return "optimized model slower end to end; back to torch: " + "; ".join(lines)


#: The end-to-end variants: the decisions as they are; the decisions in channels_last; torch
#: throughout in channels_last (the layout alone). The first is the default.
TUNED, TUNED_CL, TORCH_CL = "tuned", "tuned, channels_last", "torch, channels_last"
#: The model as decided after the guard sent decisions back to torch, timed again.
GUARDED = "after the guard"


def _variants(original: torch.nn.Module, table: DecisionTable) -> dict[str, torch.nn.Module]:
    from convbench.nn import optimize

    def build(decisions, memory_format):
        return optimize(copy.deepcopy(original), decisions, memory_format=memory_format)

    variants = {TUNED: build(table, "contiguous")}
    if any(isinstance(m, torch.nn.Conv2d) for m in original.modules()):
        variants[TUNED_CL] = build(table, "channels_last")
        if any(e["backend"] != "torch" for e in table.entries):
            entries = [dict(e, backend="torch", options={}) for e in table.entries]
            torch_only = DecisionTable(table.path, entries, table.model)
            variants[TORCH_CL] = build(torch_only, "channels_last")
    return variants


def choose_variant(results: dict[str, dict[str, EndToEnd]], alpha: float) -> tuple[str, str]:
    """The variant the model keeps, and why: ``results`` maps each mode timed to its
    variants' comparisons (all from the same rounds). A variant replaces `TUNED` only if it is
    significantly faster than it (Mann–Whitney p < ``alpha`` on their samples) in every mode;
    of those, the one with the largest geometric-mean gain over it."""
    best, best_gain, figures = TUNED, 1.0, []
    names = [n for n in next(iter(results.values())) if n != TUNED]
    for name in names:
        gains, wins = [], True
        for mode, by_name in results.items():
            base, other = by_name[TUNED], by_name[name]
            gain = base.optimized_ms / other.optimized_ms
            p = stats.mannwhitney_p(base.samples_ms, other.samples_ms)
            wins = wins and gain > 1 and p < alpha
            gains.append(gain)
            figures.append(f"{name} {gain:.3f}× the contiguous {mode} (p={p:.2g})")
        gain = stats.geometric_mean(gains)
        if wins and gain > best_gain:
            best, best_gain = name, gain
    if best == TUNED:
        why = "no channels_last variant significantly faster in every mode"
    else:
        why = f"{best} significantly faster than the contiguous model in every mode"
    return best, (f"{why}: " + "; ".join(figures)) if figures else why


def _apply_variant(name: str, entries: list[dict], reason: str, device: str) -> dict:
    """The layout record for variant ``name``; for `TORCH_CL`, every decision goes back to
    torch, saying why."""
    if name == TORCH_CL:
        for entry in entries:
            if entry["backend"] != "torch":
                entry["reverted_from"] = entry["backend"]
                entry["backend"], entry["options"] = "torch", {}
                entry["reason"] = f"layout: {reason}"
    from convbench.nn import device_name

    memory_format = "contiguous" if name == TUNED else "channels_last"
    context = decision_context(device)
    return dict(memory_format=memory_format, device=device_name(device), context=context,
                variant=name, reason=reason)  # fmt: skip


def _end_to_end(original, table: DecisionTable, x, modes, config, alpha, device, say):
    """Steps 4 and 5 of the module docstring, then the guard: the variants timed against the
    original, the one kept chosen, its decisions (``table.entries``, edited in place) reverted
    where it was slower — and then the model as finally decided timed again, so that the
    figures kept are the kept model's. Returns its comparisons, the layout record, every
    comparison made, and their records as stored (marked ``chosen`` / ``reverted``)."""
    from convbench.nn import optimize

    variants = _variants(original, table)
    results = {m: compare_variants(original, variants, x, m, config) for m in modes}
    chosen, why = choose_variant(results, alpha)
    say(f"layout: {chosen} ({why})")
    entries = table.entries
    layout = _apply_variant(chosen, entries, why, device)
    picked = [results[m][chosen] for m in modes]
    every = [e for by_name in results.values() for e in by_name.values()]
    e2e = picked
    if any(slower(e, alpha) for e in picked):
        line = revert_if_slower(entries, picked, alpha) or "optimized model slower end to end"
        say(line)
        layout.update(memory_format="contiguous", reason=f"{layout['reason']}; {line}")
        final = optimize(copy.deepcopy(original), table, memory_format="contiguous")
        e2e = [compare_variants(original, {GUARDED: final}, x, m, config)[GUARDED] for m in modes]
        every += e2e
    records = [
        dict(
            e.to_dict(),
            chosen=any(e is c for c in e2e),
            reverted=any(e is c for c in picked) and slower(e, alpha),
        )  # fmt: skip
        for e in every
    ]
    return e2e, layout, every, records


def tune(
    spec: str,
    input_shape: Sequence[int],
    *,
    dtype: str = "float32",
    device: str = "cpu",
    train: bool = False,
    backends: Sequence[str] | None = None,
    db: str | Path | None = None,
    out: str | Path | None = None,
    threads: int | None = None,
    max_rel_err: float | None = None,
    alpha: float = 0.05,
    max_time_s: float = 1.0,
    end_to_end: TimingConfig | None = None,
    progress: bool = True,
    console=None,
    command: str = "convbench tune",
    say: Callable[[str], None] = print,
) -> TuneResult:
    """Tune ``spec`` (``PACKAGE.MODULE:FACTORY``) at ``input_shape``; see the module doc.
    ``train``: tune the backward passes too and time a training step end to end."""
    from convbench.backends import backend_names

    if dtype not in DTYPES:
        raise UserError(f"--dtype: unknown dtype {dtype!r} (expected one of {', '.join(DTYPES)})")
    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads: expected a positive int, got {threads}")
        torch.set_num_threads(threads)  # the end-to-end timing and the decisions' context
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the current directory imports
    factory = load_factory(spec)
    trace = trace_convs(factory, input_shape, label=spec)
    name = spec.rpartition(":")[2].lower()
    passes = PASSES if train else ("forward",)
    candidates = list(backends) if backends else backend_names()
    if "torch" not in candidates:
        candidates.append("torch")  # the baseline every decision is made against
    suite = suite_from_trace(trace, name, dtype, source=f"{spec} at {list(input_shape)}")
    filters = {"backends": candidates, "dtypes": [dtype], "devices": [device]}
    filters["directions"] = list(passes)
    options = measure_options(max_time_s=max_time_s, floor_samples=FLOOR_SAMPLES)
    plan = RunPlan(suite, filters, options, threads=threads)
    run_id = run_id_for(
        spec, input_shape, dtype, device, passes, candidates, threads, options.to_dict()
    )
    store = Store(db)
    try:
        resume = run_id in store.run_ids()
        if resume:
            say(f"{run_id}: measured before; measuring only what is missing")
        result = execute(
            store, plan, run_id, command=command, resume=resume, console=console,
            progress=progress,
        )  # fmt: skip
        if result is None or result.interrupted:
            return TuneResult(run_id, [], [], None, interrupted=True)
        frame = load(store, run_id, samples=True)
        decisions = decide(frame, alpha=alpha, max_rel_err=max_rel_err, weight_changes=train)
        entries = _entries(decisions, trace, device)
        path = write(out, entries, model=spec, input_shape=input_shape) if out else None
        original = factory()
        if not isinstance(original, torch.nn.Module):
            raise UserError(f"{spec}: the factory returned a {type(original).__name__}")
        original = original.to(device=device, dtype=getattr(torch, dtype))
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(tuple(input_shape), generator=gen, dtype=torch.float64)
        x = x.to(device=device, dtype=getattr(torch, dtype))
        modes = ("inference", "train") if train else ("inference",)
        table = DecisionTable(str(path or "<tune>"), entries, spec)
        e2e, layout, every, records = _end_to_end(
            original, table, x, modes, end_to_end, alpha, device, say
        )
        if path is not None:
            e2e_dicts = [e.to_dict() for e in e2e]
            path = write(out, entries, model=spec, input_shape=input_shape, end_to_end=e2e_dicts,
                         layout=dict(layout, variants=[e.to_dict() for e in every]))  # fmt: skip
        store.add_tune(
            run_id, run_id, model=spec, input_shape=input_shape, decisions_path=path,
            decisions=entries, end_to_end=records,
        )  # fmt: skip
        return TuneResult(
            run_id, decisions, entries, path, e2e, layout=layout, variants=every, records=records
        )
    finally:
        store.close()
