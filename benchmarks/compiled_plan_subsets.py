"""Which of a per-layer plan's backends pay inside ``torch.compile``: the plan compiled as tune
compiles it (`convbench.flows.build`: BatchNorm folds, Inductor with freezing, static shapes),
and again with only some of its backends kept (every other planned layer back to torch, in
the same layout), all against ``torch.compile(original)`` in one set of interleaved rounds.

Around a custom op the compiler can no longer fuse a layer's epilogue or its layout changes, so
a layer that saves time in eager may cost time compiled; this shows which backends do.

    python benchmarks/compiled_plan_subsets.py examples.models:resnet50 \\
        results/resnet50.decisions.json --input-shape 8,3,224,224 \\
        --keep winograd --keep winograd,onednn_packed [--threads 2] [--time 60]

Each ``--keep`` is one variant (a comma list of backends); the whole plan is always timed.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from compiled_profile import tuned_table

from convbench.analysis import stats
from convbench.flows import build
from convbench.flows.variants import folds_of
from convbench.measure.endtoend import compare_variants, timing_for
from convbench.problem.trace import load_factory
from convbench.store.decisions import DecisionTable


def kept_only(table: DecisionTable, keep: set[str] | None) -> DecisionTable:
    """``table`` (`tuned_table`) with the plan's layers on backends outside ``keep`` back on
    torch, as tune builds its plan without a backend (`build.without`); None keeps them all."""
    for backend in [b for b in build.plan_backends(table) if keep is not None and b not in keep]:
        table = build.restricted(table, backend)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("factory")
    parser.add_argument("decisions")
    parser.add_argument("--input-shape", required=True)
    parser.add_argument("--keep", action="append", default=[], help="backends, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--time", type=float, default=60.0, help="seconds of interleaved rounds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, os.getcwd())
    original = load_factory(args.factory)().eval()
    x = torch.randn([int(v) for v in args.input_shape.split(",")])
    table = tuned_table(args.decisions)
    if not table.plan:
        parser.error(f"{args.decisions}: no per-layer plan (tune it for inference)")
    compile_kwargs = build.compile_options(("inference",))
    subsets = {"whole plan": None} | {f"plan, {k}": set(k.split(",")) for k in args.keep}
    compiled = build.VARIANTS[build.COMPILED]
    models = {build.COMPILED: build.build(original, table, compiled, "cpu", (), compile_kwargs)}
    for name, keep in subsets.items():
        part = kept_only(table, keep)
        folds = folds_of(original, part, x, per_layer=True)  # as tune folds a plan
        variant = build.VARIANTS[build.PLANNED_COMPILED]
        models[name] = build.build(original, part, variant, "cpu", folds, compile_kwargs)
    with torch.no_grad():
        for model in models.values():
            model(x)  # compiles
    timed = compare_variants(original, models, x, "inference", timing_for(args.time))
    base = timed[build.COMPILED]
    print(f"{'variant':32} {'ms':>8}  vs torch.compile(original) [95% CI]  samples  flags")
    for name, e in timed.items():
        r = stats.ratio_ci(base.samples_ms, e.samples_ms)
        print(f"{name:32} {e.optimized_ms:8.1f}  {r.ratio:.3f}× [{r.ci_low:.3f}–{r.ci_high:.3f}]"
              f"{'':14} {e.n_samples:7}  {'; '.join(e.flags) or '—'}")  # fmt: skip


if __name__ == "__main__":
    main()
