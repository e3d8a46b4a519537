"""`convbench calibrate --gate`: the regression gate's false-alarm and detection rates, measured
on this machine.

Under each condition (quiet, then beside the standard bursty neighbour of
`convbench.measure.load`) the suite's forward tasks are run ``pairs + 1`` times, each time as
`convbench run` runs them (fresh worker, interleaved rounds, the end-of-run re-measure pass),
with the case's anchor (the vendor backend), ``torch`` and the slowed ``torch`` backends
(`convbench.backends.slowed`) in the same rounds. Consecutive runs make the ``pairs``:

* **A/A**: every backend of the earlier run against itself in the later one (same code):
  a ``regression`` here is a false alarm;
* **injected p%**: ``torch`` of the earlier run against ``torch_slowed{p}`` of the later one,
  as if a change had made torch p% slower: ``regression`` is a detection, ``pass`` a miss.

Each case comparison is judged by `convbench.analysis.gate` exactly as
`convbench compare --fail-on-regression` judges it. Pure counting over a store, plus the
runs that fill it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from convbench.analysis import gate
from convbench.analysis.compare import KEYS, compare_runs
from convbench.backends.slowed import SLOWED
from convbench.measure.load import BurstLoad
from convbench.problem.files import load_suite
from convbench.runner.session import RunPlan, execute, new_run_id
from convbench.store import Store
from convbench.store.frames import load

CONDITIONS = ("quiet", "burst load")
#: The backends every run measures besides the slowed ones: the anchor and the one slowed.
MEASURED = ("onednn", "torch")
#: What the field reports for its own gates, beside which calibrate prints its table.
ANCHOR_FIGURES = (
    ("Mozilla Perfherder (t-test alerts)", "12.5% of alert groups", "6.8% of alert groups"),
    ("TorchBench (30% threshold)", "0.8% of pure noise past it", "—"),
    ("pyperf", "a 'significant' 1% change, one commit two days apart", "—"),
)


@dataclass(frozen=True)
class Tally:
    """The gate outcomes of one condition × injected slowdown (0: A/A)."""

    condition: str
    injected: int
    outcomes: dict[str, int]

    @property
    def n(self) -> int:
        return sum(self.outcomes.values())

    def share(self, outcome: str) -> float:
        return self.outcomes.get(outcome, 0) / self.n if self.n else float("nan")


#: The thresholds `GateCalibration.sweep` judges the same runs at.
THRESHOLDS = (0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.10)
#: What a threshold must give to be recommended: at most this share of false alarms in A/A,
#: and for torch +`DETECT`%, at least `DETECTED` regression and no pass, in every condition.
MAX_FALSE_ALARMS, DETECT, DETECTED = 0.01, 10, 0.90


@dataclass
class GateCalibration:
    suite: str
    pairs: int
    threshold: float
    db: str
    runs: dict[str, list[str]] = field(default_factory=dict)
    tallies: list[Tally] = field(default_factory=list)
    #: Each condition's comparisons (`compare_pairs`), to judge again at other thresholds.
    compared: dict[str, dict[int, list[pd.DataFrame]]] = field(default_factory=dict, repr=False)

    def tally(self, condition: str, injected: int) -> Tally:
        return next(t for t in self.tallies if (t.condition, t.injected) == (condition, injected))

    def sweep(self, thresholds: Sequence[float] = THRESHOLDS) -> dict[float, list[Tally]]:
        """The same pairs judged at each of ``thresholds`` (nothing measured again)."""
        return {
            t: [x for c, found in self.compared.items() for x in tally(found, c, t)]
            for t in thresholds
        }

    @staticmethod
    def meets(tallies: Sequence[Tally]) -> bool:
        """Do ``tallies`` (one threshold's) give few enough false alarms and catch
        `DETECT`% (module constants) in every condition?"""
        for t in tallies:
            if t.injected == 0 and t.share("regression") > MAX_FALSE_ALARMS:
                return False
            if t.injected == DETECT and (t.outcomes["pass"] or t.share("regression") < DETECTED):
                return False
        return True


def _injected(old: pd.DataFrame, new: pd.DataFrame, injected: int) -> tuple:
    """The two runs as if a change had slowed ``torch`` by ``injected``%: ``old`` without
    that slowed backend, ``new`` with it in place of ``torch``, each row keyed by its problem
    and backend so that `compare_runs` matches them across runs; the other backends stay,
    the anchors among them."""
    slowed = SLOWED[injected]
    old = old[old["backend"] != slowed]
    new = new[new["backend"] != "torch"]
    new = new.assign(backend=new["backend"].replace({slowed: "torch"}))
    return tuple(
        f.assign(result_key=f[list(KEYS)].astype(str).agg("/".join, axis=1) + "/" + f["backend"])
        for f in (old, new)
    )


def compare_pair(old: pd.DataFrame, new: pd.DataFrame, injected: int) -> pd.DataFrame:
    """One pair's comparison with its anchored figures (`convbench.analysis.gate.anchor`):
    A/A (``injected`` 0) over every backend measured in both runs, or ``torch`` of ``old``
    against ``torch_slowed{injected}`` of ``new`` (`_injected`). Nothing in it depends on
    the threshold but the verdict, which the gate does not read."""
    if injected:
        old, new = _injected(old, new, injected)
    cmp = gate.anchor(compare_runs(old, new), old, new)
    return cmp if not injected else cmp[cmp["backend"] == "torch"]


def compare_pairs(runs: Sequence[pd.DataFrame]) -> dict[int, list[pd.DataFrame]]:
    """Consecutive pairs of ``runs`` (frames with raw samples) compared, per injected
    slowdown (0 first)."""
    pairs = list(zip(runs, runs[1:], strict=False))
    return {p: [compare_pair(old, new, p) for old, new in pairs] for p in (0, *SLOWED)}


def tally(compared: dict[int, list[pd.DataFrame]], condition: str, threshold: float) -> list[Tally]:
    """The gate's outcomes over ``compared`` (`compare_pairs`) at ``threshold``."""
    found = []
    for injected, comparisons in compared.items():
        outcomes = dict.fromkeys(gate.OUTCOMES, 0)
        for cmp in comparisons:
            for outcome in gate.gate(cmp, threshold)["gate"]:
                outcomes[outcome] += 1
        found.append(Tally(condition, injected, outcomes))
    return found


def check_arguments(pairs: int, conditions: Sequence[str]) -> None:
    """A ValueError naming the argument (``pairs``, ``conditions``) that `calibrate_gate`
    cannot take, before anything is measured."""
    if pairs < 1:
        raise ValueError(f"pairs: expected at least 1, got {pairs}")
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"conditions: unknown {unknown[0]!r}; known: {', '.join(CONDITIONS)}")


def calibrate_gate(
    db: str,
    suite: str = "smoke",
    pairs: int = 10,
    threshold: float = 0.05,
    threads: int | None = None,
    conditions: Sequence[str] = CONDITIONS,
    on_run: Callable[[str, int], None] | None = None,
) -> GateCalibration:
    """Measure (see the module doc) into the store ``db`` and count the gate's outcomes."""
    check_arguments(pairs, conditions)
    backends = [*MEASURED, *SLOWED.values()]
    filters = {"backends": backends, "directions": ["forward"]}
    plan = RunPlan(load_suite(suite), filters, threads=threads)
    result = GateCalibration(suite, pairs, threshold, db)
    with Store(db) as store:
        for condition in conditions:
            ids = result.runs.setdefault(condition, [])
            with BurstLoad() if condition == "burst load" else contextlib.nullcontext():
                for i in range(pairs + 1):
                    if on_run:
                        on_run(condition, i)
                    run_id = new_run_id()
                    command = f"convbench calibrate --gate ({condition}, run {i + 1})"
                    done = execute(store, plan, run_id, command=command, progress=False)
                    if done is None or done.interrupted:
                        raise KeyboardInterrupt
                    ids.append(run_id)
            compared = compare_pairs([load(store, run_id, samples=True) for run_id in ids])
            result.compared[condition] = compared
            result.tallies += tally(compared, condition, threshold)
    return result
