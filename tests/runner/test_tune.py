"""The model-level guard of `convbench tune`: decisions that made the model slower go back."""

from __future__ import annotations

from convbench.measure.endtoend import EndToEnd
from convbench.runner.tune import revert_if_slower


def e2e(mode: str, speedup: float, p: float) -> EndToEnd:
    return EndToEnd(mode, 10.0, 10.0 / speedup, speedup, speedup * 0.97, speedup * 1.03, p, 0, 20)


def entries() -> list[dict]:
    return [
        {"pass": "forward", "backend": "winograd", "options": {"m": [4, 4]}, "reason": "won"},
        {"pass": "forward", "backend": "torch", "options": {}, "reason": "no candidate"},
        {"pass": "backward_data", "backend": "fft", "options": {}, "reason": "won"},
    ]


def test_a_significantly_slower_inference_reverts_the_forward_decisions():
    table = entries()
    line = revert_if_slower(table, [e2e("inference", 0.9, 1e-4)], alpha=0.05)
    assert line is not None and "inference 0.900×" in line and "1 decision(s)" in line
    assert [e["backend"] for e in table] == ["torch", "torch", "fft"]
    assert table[0]["reverted_from"] == "winograd" and table[0]["options"] == {}
    assert table[0]["reason"].startswith("reverted: the optimized model's inference was 0.900×")
    assert "reverted_from" not in table[1] and "reverted_from" not in table[2]


def test_a_slower_training_step_reverts_every_pass():
    table = entries()
    line = revert_if_slower(table, [e2e("inference", 1.2, 1e-4), e2e("train", 0.8, 1e-3)], 0.05)
    assert line is not None and line.count("reverted") == 1 and "train" in line
    assert {e["backend"] for e in table} == {"torch"}


def test_faster_or_not_significantly_slower_keeps_the_decisions():
    for result in (e2e("inference", 1.3, 1e-5), e2e("inference", 0.97, 0.4)):
        table = entries()
        assert revert_if_slower(table, [result], alpha=0.05) is None
        assert table == entries()
