"""The model-level choices of `convbench tune` (`convbench.flows.variants`): decisions that
made the model slower go back; the memory format is changed only where that is significantly
faster in every mode; and nothing about the model changes on flagged end-to-end evidence."""

from __future__ import annotations

import functools

import torch
from torch import nn

from convbench.flows import variants
from convbench.flows.build import TORCH_CL, TUNED, TUNED_CL, VARIANTS
from convbench.flows.variants import (
    GUARDED,
    _apply_variant,
    choose_variant,
    evidence_flags,
    keep_as_is,
    revert_if_slower,
)
from convbench.measure.clocks import FakeClock
from convbench.measure.config import TimingConfig
from convbench.measure.disturbance import FakeProbe
from convbench.measure.endtoend import EndToEnd, compare_variants
from convbench.measure.envinfo import decision_context
from convbench.measure.pace import FakePace
from convbench.store.decisions import DecisionTable

MS = 1_000_000


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


def timed(mode: str, variant: str, ms: float, spread: float = 0.02, flags=()) -> EndToEnd:
    """A variant's comparison whose samples sit around ``ms`` (the original at 10 ms)."""
    samples = tuple(ms * (1 + spread * ((i * 7) % 11 - 5) / 5) for i in range(20))
    return EndToEnd(mode, 10.0, ms, 10.0 / ms, 0, 0, 0.01, 0, 20, variant, samples, flags)


def results(**by_mode: dict[str, float]) -> dict:
    return {m: {v: timed(m, v, ms) for v, ms in times.items()} for m, times in by_mode.items()}


def test_a_layout_is_kept_only_if_significantly_faster_in_every_mode():
    faster = results(inference={TUNED: 9.0, TUNED_CL: 7.5, TORCH_CL: 8.0})
    name, why = choose_variant(faster, alpha=0.05)
    assert name == TUNED_CL  # both beat the contiguous model; the larger gain is kept
    assert why.startswith(f"{TUNED_CL} significantly faster") and "1.200× the tuned model's" in why
    mixed = results(inference={TUNED: 9.0, TUNED_CL: 7.5}, train={TUNED: 30.0, TUNED_CL: 31.0})
    name, why = choose_variant(mixed, alpha=0.05)
    assert name == TUNED and why.startswith("no variant significantly faster")
    tie = results(inference={TUNED: 9.0, TUNED_CL: 9.0})
    assert choose_variant(tie, alpha=0.05)[0] == TUNED
    assert choose_variant(results(inference={TUNED: 9.0}), alpha=0.05) == (
        TUNED,
        "no variant significantly faster than the tuned model in every mode",
    )


def test_the_layout_alone_sends_every_decision_back_to_torch_saying_why():
    table = entries()
    layout = _apply_variant(VARIANTS[TORCH_CL], DecisionTable("<t>", table), "faster", "cpu")
    assert layout["memory_format"] == "channels_last" and layout["variant"] == TORCH_CL
    assert layout["device"] == "cpu" and layout["context"]["threads"] >= 1
    assert {e["backend"] for e in table} == {"torch"}
    assert table[0]["reverted_from"] == "winograd"
    assert table[0]["reason"] == f"the model keeps {TORCH_CL}, which runs torch here"
    assert "reverted_from" not in table[1]
    kept = entries()
    for name, memory_format in ((TUNED, "contiguous"), (TUNED_CL, "channels_last")):
        layout = _apply_variant(VARIANTS[name], DecisionTable("<t>", kept), "no", "cpu")
        assert layout["memory_format"] == memory_format
    assert kept == entries()


def test_the_printed_variant_says_which_the_model_keeps_and_what_the_guard_did():
    from convbench.report.tables import variant_text

    assert variant_text({"variant": TUNED_CL, "chosen": True}) == f"{TUNED_CL} (kept)"
    assert variant_text({"variant": TORCH_CL, "chosen": False}) == TORCH_CL
    reverted = {"variant": TUNED, "chosen": True, "reverted": True}
    assert variant_text(reverted) == "tuned (slower: reverted to torch)"
    assert variant_text({}) == "tuned (kept)"  # a record from before the variants


def decided() -> DecisionTable:
    rows = [
        dict(e, problem=f"p{i}", dtype="float32", device="cpu", context=decision_context("cpu"))
        for i, e in enumerate(entries())
    ]
    return DecisionTable("<t>", rows)


def end_to_end_of_a_conv(table, said: list, compare):
    """`variants.end_to_end` of a one-conv model, inference only, timed by ``compare``."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    return variants.end_to_end(
        model, table, torch.zeros(1, 3, 8, 8), ("inference",), None, 0.05, "cpu", said.append,
        compare=compare, compiled=False,
    )  # fmt: skip


def test_a_kept_model_slower_than_the_original_is_reverted_and_timed_again():
    calls = []

    def fake(original, by_name, x, mode, config):
        calls.append(list(by_name))
        if list(by_name) == [GUARDED]:  # the model as finally decided
            return {GUARDED: timed(mode, GUARDED, 10.0)}
        times = {TUNED: 11.0, TUNED_CL: 11.5, TORCH_CL: 11.0}  # no layout beats "tuned"
        return {name: timed(mode, name, times[name]) for name in by_name}

    table, said = decided(), []
    e2e_, layout, every, records = end_to_end_of_a_conv(table, said, fake)
    assert calls == [[TUNED, TUNED_CL, TORCH_CL], [GUARDED]]
    assert (
        said[0].startswith("layout: tuned (no variant significantly faster")
        and "back to torch" in said[1]
    )
    assert [e.variant for e in e2e_] == [GUARDED]
    assert table.entries[0]["backend"] == "torch" and layout["memory_format"] == "contiguous"
    marks = {r["variant"]: (r["chosen"], r["reverted"]) for r in records}
    assert marks[TUNED] == (False, True) and marks[GUARDED] == (True, False)
    assert marks[TUNED_CL] == (False, False) and len(every) == 4


# --- flagged end-to-end evidence ----------------------------------------------------------

OFF_PACE = "original: off pace: the host ran the reference kernel 210% slower than usual"


def test_the_evidence_of_a_choice_is_the_chosen_variants_and_the_contiguous_models():
    clean = results(inference={TUNED: 9.0, TUNED_CL: 7.5})
    assert evidence_flags(clean, TUNED_CL) == []
    flagged = {"inference": dict(clean["inference"])}
    flagged["inference"][TUNED] = timed("inference", TUNED, 9.0, flags=(OFF_PACE,))
    assert evidence_flags(flagged, TUNED_CL) == [f"inference: {OFF_PACE}"]  # it beat TUNED
    assert evidence_flags(flagged, TUNED) == [f"inference: {OFF_PACE}"]
    other = {"inference": dict(clean["inference"])}
    other["inference"][TUNED_CL] = timed("inference", TUNED_CL, 7.5, flags=(OFF_PACE,))
    assert evidence_flags(other, TUNED) == []  # a variant not kept changes nothing


def test_keeping_the_model_as_it_is_sends_every_decision_back_saying_why():
    table = entries()
    line = keep_as_is(table, [f"inference: {OFF_PACE}"])
    assert line.startswith("layout: kept contiguous, 2 decision(s) back to torch — ")
    assert f"end-to-end evidence flagged (inference: {OFF_PACE})" in line
    assert line.endswith("rerun on a quieter host") and "\n" not in line
    assert {e["backend"] for e in table} == {"torch"}
    assert table[0]["reverted_from"] == "winograd" and table[2]["reverted_from"] == "fft"
    assert table[0]["reason"].startswith("not kept: end-to-end evidence flagged")
    assert "reverted_from" not in table[1]


def test_a_significantly_faster_layout_on_flagged_evidence_leaves_the_model_as_it_is():
    """Today's channels_last win (1.2×, p ≪ 0.05) rests on off-pace rounds: nothing of it,
    nor the decisions, is kept, the reason is printed, and the records carry the flag."""

    def fake(original, by_name, x, mode, config):
        times = {TUNED: 9.0, TUNED_CL: 7.5, TORCH_CL: 8.0}
        return {n: timed(mode, n, times[n], flags=(OFF_PACE,)) for n in by_name}

    table, said = decided(), []
    e2e_, layout, every, records = end_to_end_of_a_conv(table, said, fake)
    assert len(said) == 1 and said[0].startswith("layout: kept contiguous, 2 decision(s)")
    assert OFF_PACE in said[0] and "quieter host" in said[0]
    assert layout["memory_format"] == "contiguous" and layout["variant"] == "original"
    assert layout["flags"] == [f"inference: {OFF_PACE}"] and layout["reason"] == said[0]
    assert {e["backend"] for e in table.entries} == {"torch"} and e2e_ == []
    assert len(every) == 3 and all(r["flags"] == [OFF_PACE] for r in records)
    assert not any(r["chosen"] or r["reverted"] for r in records)


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())


FAST = TimingConfig(warmup_s=0, min_samples=5, max_samples=8, max_time_s=0.02)


def run_tune_end_to_end(table, probe, pace) -> tuple[DecisionTable, dict, list[str], list]:
    said: list[str] = []
    compare = functools.partial(compare_variants, clock=FakeClock(MS), probe=probe, pace=pace)
    _, layout, _, records = variants.end_to_end(
        tiny(), table, torch.randn(2, 3, 8, 8), ("inference",), FAST, 0.05, "cpu", said.append,
        compare=compare, compiled=False,
    )  # fmt: skip
    return table, layout, said, records


def test_clean_scripted_rounds_keep_the_decisions(im2col_decision):
    table, layout, said, records = run_tune_end_to_end(
        im2col_decision(), FakeProbe([0.0]), FakePace(1000)
    )
    assert table.entries[0]["backend"] == "im2col" and layout["variant"] == TUNED
    assert said[0].startswith("layout: tuned") and not any(r["flags"] for r in records)


def test_disturbed_scripted_rounds_leave_the_model_as_it_is(im2col_decision):
    """The acceptance test of the evidence rule: every sample disturbed (a scripted probe on a
    scripted clock) — the decision goes back to torch, contiguous, and the line says why."""
    table, layout, said, records = run_tune_end_to_end(
        im2col_decision(), FakeProbe([0.5]), FakePace(1000)
    )
    assert table.entries[0]["backend"] == "torch" and table.entries[0]["reverted_from"] == "im2col"
    assert layout["memory_format"] == "contiguous" and len(said) == 1
    assert said[0].startswith("layout: kept contiguous, 1 decision(s) back to torch")
    assert "(inference: original: disturbed: " in said[0] and "scripted as disturbed" in said[0]
    assert all(r["flags"] and not r["chosen"] for r in records)


def test_off_pace_scripted_rounds_leave_the_model_as_it_is(im2col_decision):
    table, layout, said, _ = run_tune_end_to_end(
        im2col_decision(), FakeProbe([0.0]), FakePace(3100)
    )
    assert table.entries[0]["backend"] == "torch" and layout["memory_format"] == "contiguous"
    assert "off pace: the host ran the reference kernel 210% slower than usual" in said[0]


def run_with_paces(table, readings: list[int], attempts: int) -> tuple[dict, list[str], list]:
    """End to end with ``attempts``, each set of rounds on the host pace of the next reading
    (3100 against 1000: the host 210% slow, flagged; 1000: clean)."""
    said: list[str] = []
    paces = iter(readings)

    def compare(*args):
        return compare_variants(*args, clock=FakeClock(MS), probe=FakeProbe([0.0]),
                                pace=FakePace(next(paces)))  # fmt: skip

    _, layout, every, records = variants.end_to_end(
        tiny(), table, torch.randn(2, 3, 8, 8), ("inference",), FAST, 0.05, "cpu", said.append,
        compare=compare, compiled=False, attempts=attempts,
    )  # fmt: skip
    return layout, said, records


def test_flagged_rounds_are_timed_again_and_clean_ones_then_decide(im2col_decision):
    table = im2col_decision()
    layout, said, records = run_with_paces(table, [3100, 1000], attempts=2)
    assert said[0].startswith("end-to-end evidence flagged (inference: original: off pace: ")
    assert said[0].endswith("timing inference again (attempt 2 of 2)")
    assert said[1].startswith("layout: tuned") and len(said) == 2
    assert table.entries[0]["backend"] == "im2col" and layout["variant"] == TUNED
    assert records and not any(r["flags"] for r in records)  # the clean rounds' comparisons


def test_rounds_flagged_at_every_attempt_leave_the_model_as_it_is(im2col_decision):
    table = im2col_decision()
    layout, said, _ = run_with_paces(table, [3100, 3100, 3100], attempts=3)
    assert [line.rpartition("(")[2] for line in said[:2]] == ["attempt 2 of 3)", "attempt 3 of 3)"]
    assert said[2].startswith("layout: kept contiguous, 1 decision(s) back to torch")
    assert table.entries[0]["backend"] == "torch" and layout["memory_format"] == "contiguous"


def test_one_attempt_times_the_rounds_once(im2col_decision):
    table = im2col_decision()
    _, said, _ = run_with_paces(table, [3100], attempts=1)  # a second set would raise
    assert len(said) == 1 and said[0].startswith("layout: kept contiguous")
