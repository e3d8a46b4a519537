"""Groups of tasks measured together, and the one rule for a group that fails.

The backends of one case (same dtype, device and pass) are measured together in interleaved
rounds (`group_key`, `task_groups`). A group that fails as a whole (a timeout, a dead worker
or node, an exception while interleaved) is measured again task by task (`each_alone`), so
that only the culprit gets the failure's row; each task that then succeeds says so in its
reason (`alone_note`). The local sweep, the Ray executor and the worker's own interleaved
timing all follow this rule through these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


def group_key(task) -> tuple:
    """Tasks measured together in interleaved rounds: the backends of one case, dtype, device
    and direction, in every layout (so that the layouts of a layer compare in one set of
    rounds, as the per-layer plan of `convbench tune` compares them)."""
    return (task.case.case_id, task.dtype, task.device, task.direction)


def task_groups(items: Iterable[tuple[int, object]], interleave: bool) -> list[list]:
    """Consecutive (index, task) items with the same `group_key` (a suite lists the backends
    of a case side by side); each item alone when ``interleave`` is off."""
    groups: list[list] = []
    for item in items:
        if interleave and groups and group_key(groups[-1][-1][1]) == group_key(item[1]):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def alone_note(size: int, failure: str) -> str:
    """The reason an ok result measured alone after its group failed carries."""
    return f"measured alone: its group of {size} failed ({failure})"


def each_alone(group: Sequence[T], measure: Callable[[Sequence[T]], None]) -> None:
    """Measure each member of a failed group by itself, in order."""
    for member in group:
        measure([member])
