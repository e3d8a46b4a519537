"""The model-level choices of `convbench tune`: decisions that made the model slower go back;
the memory format is changed only where that is significantly faster in every mode."""

from __future__ import annotations

from convbench.measure.endtoend import EndToEnd
from convbench.runner.tune import (
    TORCH_CL,
    TUNED,
    TUNED_CL,
    _apply_variant,
    choose_variant,
    revert_if_slower,
)


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


def timed(mode: str, variant: str, ms: float, spread: float = 0.02) -> EndToEnd:
    """A variant's comparison whose samples sit around ``ms`` (the original at 10 ms)."""
    samples = tuple(ms * (1 + spread * ((i * 7) % 11 - 5) / 5) for i in range(20))
    return EndToEnd(mode, 10.0, ms, 10.0 / ms, 0, 0, 0.01, 0, 20, variant, samples)


def results(**by_mode: dict[str, float]) -> dict:
    return {m: {v: timed(m, v, ms) for v, ms in times.items()} for m, times in by_mode.items()}


def test_a_layout_is_kept_only_if_significantly_faster_in_every_mode():
    faster = results(inference={TUNED: 9.0, TUNED_CL: 7.5, TORCH_CL: 8.0})
    name, why = choose_variant(faster, alpha=0.05)
    assert name == TUNED_CL  # both beat the contiguous model; the larger gain is kept
    assert why.startswith(f"{TUNED_CL} significantly faster") and "1.200× the contiguous" in why
    mixed = results(inference={TUNED: 9.0, TUNED_CL: 7.5}, train={TUNED: 30.0, TUNED_CL: 31.0})
    name, why = choose_variant(mixed, alpha=0.05)
    assert name == TUNED and why.startswith("no channels_last variant")
    tie = results(inference={TUNED: 9.0, TUNED_CL: 9.0})
    assert choose_variant(tie, alpha=0.05)[0] == TUNED
    assert choose_variant(results(inference={TUNED: 9.0}), alpha=0.05) == (
        TUNED,
        "no channels_last variant significantly faster in every mode",
    )


def test_the_layout_alone_sends_every_decision_back_to_torch_saying_why():
    table = entries()
    layout = _apply_variant(TORCH_CL, table, "faster", "cpu")
    assert layout["memory_format"] == "channels_last" and layout["variant"] == TORCH_CL
    assert layout["device"] == "cpu" and layout["context"]["threads"] >= 1
    assert {e["backend"] for e in table} == {"torch"}
    assert table[0]["reverted_from"] == "winograd" and table[0]["reason"] == "layout: faster"
    assert "reverted_from" not in table[1]
    kept = entries()
    assert _apply_variant(TUNED, kept, "no", "cpu")["memory_format"] == "contiguous"
    assert _apply_variant(TUNED_CL, kept, "yes", "cpu")["memory_format"] == "channels_last"
    assert kept == entries()


def test_the_printed_variant_says_which_the_model_keeps_and_what_the_guard_did():
    from convbench.report.tables import variant_text

    assert variant_text({"variant": TUNED_CL, "chosen": True}) == f"{TUNED_CL} (kept)"
    assert variant_text({"variant": TORCH_CL, "chosen": False}) == TORCH_CL
    reverted = {"variant": TUNED, "chosen": True, "reverted": True}
    assert variant_text(reverted) == "tuned (slower: reverted to torch)"
    assert variant_text({}) == "tuned (kept)"  # a record from before the variants


def test_a_kept_model_slower_than_the_original_is_reverted_and_timed_again(monkeypatch):
    import torch
    from torch import nn

    import convbench.runner.tune as tune_module
    from convbench.store.decisions import DecisionTable

    calls = []

    def fake(original, variants, x, mode, config):
        calls.append(list(variants))
        if list(variants) == [tune_module.GUARDED]:  # the model as finally decided
            return {tune_module.GUARDED: timed(mode, tune_module.GUARDED, 10.0)}
        times = {TUNED: 11.0, TUNED_CL: 11.5, TORCH_CL: 11.0}  # no layout beats "tuned"
        return {name: timed(mode, name, times[name]) for name in variants}

    monkeypatch.setattr(tune_module, "compare_variants", fake)
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    from convbench.runner.envinfo import decision_context

    rows = [
        dict(e, problem=f"p{i}", dtype="float32", device="cpu", context=decision_context("cpu"))
        for i, e in enumerate(entries())
    ]
    table = DecisionTable("<t>", rows)
    said = []
    e2e, layout, every, records = tune_module._end_to_end(
        model, table, torch.zeros(1, 3, 8, 8), ("inference",), None, 0.05, "cpu", said.append
    )
    assert calls == [[TUNED, TUNED_CL, TORCH_CL], [tune_module.GUARDED]]
    assert said[0].startswith("layout: tuned (no channels_last") and "back to torch" in said[1]
    assert [e.variant for e in e2e] == [tune_module.GUARDED]
    assert table.entries[0]["backend"] == "torch" and layout["memory_format"] == "contiguous"
    marks = {r["variant"]: (r["chosen"], r["reverted"]) for r in records}
    assert marks[TUNED] == (False, True) and marks[tune_module.GUARDED] == (True, False)
    assert marks[TUNED_CL] == (False, False) and len(every) == 4
