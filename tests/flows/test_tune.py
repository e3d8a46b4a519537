"""`convbench.flows.tune` apart from the model-level choices (`tests/runner/test_variants.py`):
the per-layer results its decisions rest on that were flagged, and a folder that shadows the
package refused up front."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from convbench.analysis.decisions import Decision
from convbench.errors import UserError
from convbench.flows.tune import check_not_shadowed, flagged_results


def decision(case: str, backend: str) -> Decision:
    return Decision(f"p-{case}", case, "float32", "cpu", "forward", backend, 1.0, 1.2, 1.2,
                    None, 1e-6, "r", "won")  # fmt: skip


def row(case: str, backend: str, disturbed, reason=None) -> dict:
    return dict(case=case, dtype="float32", device="cpu", direction="forward",
                backend=backend, disturbed=disturbed, reason=reason)  # fmt: skip


def test_the_flagged_results_are_those_a_decision_rests_on():
    frame = pd.DataFrame(
        [
            row("conv1", "im2col", 1, "off pace: the host ran the reference kernel 31% slower"),
            row("conv1", "torch", 0),
            row("conv1", "fft", 1, "unsteady: the median moved 12%"),  # not chosen: no matter
            row("conv2", "torch", 1, "disturbed: 5 of 9 samples …"),  # the baseline of conv2
            row("conv2", "winograd", None),  # a store from before the flag
        ]
    )
    found = flagged_results(frame, [decision("conv1", "im2col"), decision("conv2", "torch")])
    assert [(f["case"], f["backend"], f["direction"]) for f in found] == [
        ("conv1", "im2col", "forward"),
        ("conv2", "torch", "forward"),
    ]
    assert found[0]["reason"].startswith("off pace") and found[1]["reason"].startswith("disturb")
    assert flagged_results(frame, []) == []


def without_this_package() -> list[str]:
    """``sys.path`` less the entries that hold a regular ``convbench`` package (this one, run
    from its checkout or installed): what an editable install's interpreter searches."""
    return [p for p in sys.path if not (Path(p or ".") / "convbench" / "__init__.py").exists()]


@pytest.mark.parametrize("regular", [False, True])
def test_a_convbench_folder_on_the_path_is_named(tmp_path, monkeypatch, regular):
    check_not_shadowed()  # the test process imports the real package
    (tmp_path / "convbench").mkdir()
    if regular:  # another package of that name
        (tmp_path / "convbench" / "__init__.py").write_text("")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *without_this_package()])
    with pytest.raises(UserError, match=r"shadows the convbench package") as caught:
        check_not_shadowed()
    message = str(caught.value)
    assert str(tmp_path / "convbench") in message and "\n" not in message
    assert f"take {tmp_path} off PYTHONPATH" in message
