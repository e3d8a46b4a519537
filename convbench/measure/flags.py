"""Why a measurement is not to be trusted: the flags a result carries, and their text.

A `convbench.measure.engine.Measurement` is flagged when

* **disturbed**: fewer than ``min_samples`` of its samples were undisturbed — the probe
  (`convbench.measure.disturbance`) set the others apart;
* **too few**: it has fewer undisturbed samples than the ``floor_samples`` a decision asks
  for (`TimingConfig.floor_samples`; 0: no floor);
* **unsteady**: its median moved by more than ``max_drift`` between stretches of it;
* **off pace**: the host ran the reference kernel off its usual pace by more than
  ``max_pace`` while it was measured (`convbench.measure.pace`).

Per-layer rows (`convbench.measure.task`) and whole models timed end to end
(`convbench.measure.endtoend`) are flagged by the same rules, so that a decision made on
either rests on evidence convbench would not flag.
"""

from __future__ import annotations

from convbench.measure.pace import off_pace_reason


def probe_rule(probe, max_lost: float) -> str:
    """What made a sample disturbed, for a reason: the probe's own rule, with the schedstat
    threshold as configured."""
    if probe is not None and probe.name == "schedstat":
        return f"that lost over {max_lost:.0%} of their CPU time to other processes"
    return getattr(probe, "rule", "disturbed")


def flag_reasons(m, rule: str, floor_samples: int = 0) -> list[str]:
    """Every flag that applies to the measurement ``m``, the probe's first; ``rule`` says
    what made a sample disturbed (`probe_rule`). Empty: nothing to flag (pure)."""
    reasons = []
    if m.disturbed:
        used = "; all of them used, nothing else there was" if not m.n_clean else ""
        total = m.n_discarded + m.n_clean
        reasons.append(f"disturbed: {m.n_discarded} of {total} samples {rule}{used}")
    elif m.n_clean < floor_samples:
        reasons.append(
            f"too few samples: {m.n_clean} undisturbed, fewer than the {floor_samples} "
            "a decision needs"
        )
    if m.unsteady:
        reasons.append(
            f"unsteady: the median moved {m.drift:.0%} between stretches of the measurement"
        )
    if m.off_pace:
        reasons.append(off_pace_reason(m.pace))
    return reasons
