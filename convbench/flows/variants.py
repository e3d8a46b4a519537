"""The model-level choices of `convbench tune`, made on the whole model timed end to end
(`convbench.measure.endtoend`), after the per-layer decisions:

* **the variant** (`choose_variant`): the tuned model is timed beside its variants
  (`convbench.flows.build`): in ``channels_last`` — with the decisions, and with torch
  throughout —, with the per-layer plan's backends and layouts (`convbench.flows.plan`:
  conversions only where the plan switches), with the BatchNorms after tuned layers folded
  into them, and compiled, beside ``torch.compile`` of the original — the plan compiled
  also without each of its backends, since a layer's eager win may not hold inside the
  compiled graph (`build.without`). A variant replaces the contiguous tuned model only if
  it is significantly faster than it in every mode it was timed in;
* **the evidence** (`evidence_flags`): a choice that changes the model rests on rounds
  convbench would not flag (disturbed, too few undisturbed samples, unsteady, off pace —
  `convbench.measure.flags`). Where they are flagged, the modes they rest on are timed
  again, a bounded number of times (tune's ``--e2e-attempts``), since the host may have
  calmed; still flagged, the model stays as it was: every decision back to torch,
  contiguous (`keep_as_is`), and tune says why;
* **the guard** (`revert_if_slower`): where the kept model came out significantly slower
  than the original, the decisions of that mode go back to torch, and the model as finally
  decided is timed again, so that the figures kept are the kept model's.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence

from convbench.analysis import stats
from convbench.analysis.decisions import BASELINE, PASSES
from convbench.flows import build
from convbench.flows.build import COMPILED, TUNED
from convbench.measure.endtoend import EndToEnd, compare_variants
from convbench.store.decisions import DecisionTable

#: The model as decided after the guard sent decisions back to torch, timed again.
GUARDED = "after the guard"


def _to_torch(entry: dict, reason: str) -> bool:
    """Send one decision back to torch, keeping the backend it had; False if it was there."""
    if entry["backend"] == BASELINE:
        return False
    entry["reverted_from"] = entry["backend"]
    entry["backend"], entry["options"] = BASELINE, {}
    entry["reason"] = reason
    return True


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
        reason = f"reverted: the optimized model's {e.mode} was {figure}"
        n = sum(_to_torch(entry, reason) for entry in entries if entry["pass"] in passes)
        if n:
            lines.append(f"{e.mode} {figure}: {n} decision(s) of {'/'.join(passes)} reverted")
    if not lines:
        return None
    return "optimized model slower end to end; back to torch: " + "; ".join(lines)


def evidence_flags(results: dict[str, dict[str, EndToEnd]], chosen: str) -> list[str]:
    """The flags of the comparisons the choice of ``chosen`` rests on (``results``: each
    mode's comparisons, by variant): the chosen variant's against the original in every mode,
    and where a channels_last variant was chosen, the contiguous model's it beat. Each once,
    prefixed with its mode; empty when the evidence is clean."""
    names = [chosen] if chosen == TUNED else [chosen, TUNED]
    flags: list[str] = []
    for mode, by_name in results.items():
        for name in (n for n in names if n in by_name):
            flags += [f for f in (f"{mode}: {flag}" for flag in by_name[name].flags)
                      if f not in flags]  # fmt: skip
    return flags


def keep_as_is(entries: list[dict], flags: Sequence[str]) -> str:
    """The model as it was, where the end-to-end evidence is flagged: every decision back to
    torch, saying why (the layout stays contiguous). Returns the line that says so."""
    why = f"end-to-end evidence flagged ({'; '.join(flags)})"
    n = sum(_to_torch(entry, f"not kept: {why}") for entry in entries)
    kept = "kept contiguous" + (f", {n} decision(s) back to torch" if n else " and on torch")
    return f"layout: {kept} — {why}; rerun on a quieter host"


def choose_variant(results: dict[str, dict[str, EndToEnd]], alpha: float) -> tuple[str, str]:
    """The variant the model keeps, and why: ``results`` maps each mode timed to its
    variants' comparisons (all from the same rounds). A variant replaces `TUNED` only if it is
    significantly faster than it (Mann–Whitney p < ``alpha`` on their samples) in every mode
    it was timed in; of those, the one with the largest geometric-mean gain over it."""
    best, best_gain, figures = TUNED, 1.0, []
    names = list(dict.fromkeys(n for by_name in results.values() for n in by_name if n != TUNED))
    for name in names:
        gains, wins = [], True
        for mode, by_name in results.items():
            if name not in by_name:
                continue
            base, other = by_name[TUNED], by_name[name]
            gain = base.optimized_ms / other.optimized_ms
            p = stats.mannwhitney_p(base.samples_ms, other.samples_ms)
            wins = wins and gain > 1 and p < alpha
            gains.append(gain)
            figures.append(f"{name} {gain:.3f}× the tuned model's {mode} (p={p:.2g})")
        gain = stats.geometric_mean(gains)
        if wins and gain > best_gain:
            best, best_gain = name, gain
    if best == TUNED:
        why = "no variant significantly faster than the tuned model in every mode"
    else:
        why = f"{best} significantly faster than the tuned model in every mode"
    return best, (f"{why}: " + "; ".join(figures)) if figures else why


def _apply_variant(variant, table: DecisionTable, reason: str, device: str, **how) -> dict:
    """The layout record of ``variant`` (``how``: the folds and compile options it was built
    with); a variant of torch throughout sends every decision back, and the plan without a
    backend sends that backend's planned layers back (`build.revert`), each saying why."""
    if not variant.tuned:  # each entry names the variant; the layout record says why
        for entry in table.entries:
            _to_torch(entry, f"the model keeps {variant.name}, which runs torch here")
    if variant.without:
        why = f"the model keeps {variant.name}: {variant.without} did not pay compiled"
        build.revert(table.plan, variant.without, why)
    return build.layout_record(variant, reason, device, **how)


def _records(every: list[EndToEnd], kept: list[EndToEnd], reverted: list[EndToEnd]) -> list:
    """The comparisons as stored, marked ``chosen`` (the model keeps it) and ``reverted``
    (the guard sent its decisions back)."""
    return [
        dict(
            e.to_dict(), chosen=any(e is k for k in kept), reverted=any(e is r for r in reverted)
        )  # fmt: skip
        for e in every
    ]


Compare = Callable[..., dict[str, EndToEnd]]


def end_to_end(
    original, table: DecisionTable, x, modes, config, alpha, device, say,
    compare: Compare = compare_variants, compiled: bool = True, attempts: int = 1,
):  # fmt: skip
    """The model-level choices of the module docstring: the variants timed against the
    original (by ``compare``, `compare_variants` or a stand-in; the compiled ones only where
    ``compiled`` and Inductor runs), the one kept chosen and its evidence checked — flagged,
    the modes it rests on are timed again, up to ``attempts`` times in all, and still
    flagged, the model stays as it was —, its decisions (``table.entries``, edited in place)
    reverted where it was slower, and then the model as finally decided timed again. Returns
    the kept model's comparisons, the layout record, every comparison the choice rests on,
    and their records as stored (`_records`)."""
    from convbench.nn import optimize
    from convbench.nn.fold import foldable

    any_off = off_torch(table) or off_torch(table, per_layer=True)
    pairs = foldable(original, x) if any_off else []  # one forward, for every variant's folds
    how = dict(folds=folds_in(pairs, table), compile_kwargs=build.compile_options(modes))
    variants = _Variants.built(original, table, pairs, device, say, compiled, how)
    results = {mode: variants.timed(mode, x, config, compare) for mode in modes}
    chosen, why = choose_variant(results, alpha)
    for attempt in range(2, attempts + 1):
        if not (flags := evidence_flags(results, chosen)):
            break
        again = [m for m in modes if any(f.startswith(f"{m}: ") for f in flags)]
        say(f"end-to-end evidence flagged ({'; '.join(flags)}); timing {', '.join(again)} "
            f"again (attempt {attempt} of {attempts})")  # fmt: skip
        results.update({mode: variants.timed(mode, x, config, compare) for mode in again})
        chosen, why = choose_variant(results, alpha)
    every = [e for by_name in results.values() for e in by_name.values()]
    entries = table.entries
    if flags := evidence_flags(results, chosen):
        line = keep_as_is(entries, flags)
        say(line)
        layout = build.layout_record(None, line, device, flags=flags)
        return [], layout, every, _records(every, [], [])
    say(f"layout: {chosen} ({why})")
    layout = _apply_variant(variants.kind(chosen), table, why, device, **variants.how[chosen])
    picked = [results[m][chosen] for m in modes if chosen in results[m]]
    e2e, reverted = picked, []
    if any(slower(e, alpha) for e in picked):
        line = revert_if_slower(entries, picked, alpha) or "optimized model slower end to end"
        say(line)
        reason = f"{layout['reason']}; {line}"
        layout.update(
            memory_format="contiguous", folds=[], compile=None, per_layer=False, reason=reason
        )
        final = optimize(copy.deepcopy(original), table, memory_format="contiguous")
        e2e = [compare(original, {GUARDED: final}, x, m, config)[GUARDED] for m in modes]
        reverted = [e for e in picked if slower(e, alpha)]
        every += e2e
    return e2e, layout, every, _records(every, e2e, reverted)


def off_torch(table: DecisionTable, per_layer: bool = False) -> set[str]:
    """The layers a variant takes off torch in inference: the decisions' forward layers, or
    with ``per_layer`` the plan's, where it covers a layer (the decisions' elsewhere)."""
    tuned = {layer for e in table.entries if e["pass"] == "forward" and e["backend"] != BASELINE
             for layer in e.get("layers") or []}  # fmt: skip
    if per_layer:
        steps = {s["layer"]: s["backend"] for s in (table.plan or {}).get("layers", [])}
        tuned = {layer for layer in tuned if layer not in steps}
        tuned |= {layer for layer, backend in steps.items() if backend != BASELINE}
    return tuned


def folds_in(pairs, table: DecisionTable, per_layer: bool = False) -> list[tuple[str, str]]:
    """Of the foldable (convolution, BatchNorm) ``pairs`` (`convbench.nn.fold.foldable`),
    those into a layer the decisions, or with ``per_layer`` the per-layer plan, take off
    torch (`off_torch`): a layer left on torch runs PyTorch's own convolution, its BatchNorm
    after it as in the original."""
    tuned = off_torch(table, per_layer)
    return [pair for pair in pairs if pair[0] in tuned]


def folds_of(original, table: DecisionTable, x, per_layer: bool = False) -> list[tuple[str, str]]:
    """`folds_in` the pairs ``original`` has on ``x`` (no forward where no layer leaves torch)."""
    from convbench.nn.fold import foldable

    if not off_torch(table, per_layer):
        return []
    return folds_in(foldable(original, x), table, per_layer)


@dataclasses.dataclass
class _Variants:
    """The applicable variants (`build.applicable`), built once, each with how it was built
    (its folds and compile options), and their compile times by mode: a compiled variant's
    is its first call in that mode, and one Inductor cannot compile is left out, with one
    line saying why."""

    original: object
    kinds: list
    models: dict
    how: dict
    say: Callable[[str], None]
    compile_s: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def built(cls, original, table, pairs, device, say, compiled, how) -> _Variants:
        if compiled and (why := build.inductor_unavailable(device)):
            say(f"compiled variants skipped: {why}")
            compiled = False
        kinds = build.applicable(original, table, how["folds"], compiled)
        hows = {v.name: how for v in kinds}
        for v in (v for v in kinds if v.per_layer):  # the plan's folds, as the plan has them
            part = build.restricted(table, v.without) if v.without else table
            hows[v.name] = dict(how, folds=folds_in(pairs, part, per_layer=True))
        models = {v.name: build.build(original, table, v, device, **hows[v.name]) for v in kinds}
        return cls(original, kinds, models, hows, say)

    def kind(self, name: str) -> build.Variant:
        return next(v for v in self.kinds if v.name == name)

    def _compiled(self, x, mode: str) -> dict[str, float]:
        """The compile times of ``mode``, compiling on the first time it is timed."""
        if mode in self.compile_s:
            return self.compile_s[mode]
        times = self.compile_s[mode] = {}
        for v in self.kinds:
            if v.compiled and v.name in self.models:
                try:
                    times[v.name] = build.first_call_s(self.models[v.name], x, mode)
                except Exception as exc:  # noqa: BLE001 — a failed compile is one line, not a crash
                    self.say(f"{v.name}: skipped — compiling it failed: {str(exc).splitlines()[0]}")
                    del self.models[v.name]
        return times

    def timed(self, mode: str, x, config, compare: Compare) -> dict[str, EndToEnd]:
        """``mode``'s comparisons of the variants with the original, by name, in one set of
        interleaved rounds; each with its compile time and its ratio to the compiled
        original's."""
        compile_s = self._compiled(x, mode)
        timed = {v.name: self.models[v.name] for v in self.kinds if v.name in self.models
                 and not (v.inference_only and mode != "inference")}  # fmt: skip
        compared = compare(self.original, timed, x, mode, config)
        return {
            name: dataclasses.replace(
                e, compile_s=compile_s.get(name), vs_compiled=_vs(compared.get(COMPILED), e)
            )
            for name, e in compared.items()
        }


def _vs(compiled: EndToEnd | None, e: EndToEnd) -> tuple[float, float, float] | None:
    """``e`` against the compiled original, from their samples in the same rounds."""
    if compiled is None or not compiled.samples_ms or not e.samples_ms:
        return None
    r = stats.ratio_ci(compiled.samples_ms, e.samples_ms)
    return (r.ratio, r.ci_low, r.ci_high)
