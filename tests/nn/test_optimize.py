"""convbench.optimize: decided backends per pass, fallback, state dict, training, devices."""

from __future__ import annotations

import copy
import io
import pickle
import warnings

import pytest
import torch
from torch import nn

import convbench
from convbench.errors import UserError
from convbench.measure.envinfo import decision_context
from convbench.nn import TunedConv1d, TunedConv2d, optimize
from convbench.store.decisions import DecisionTable, write


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False, padding_mode="reflect")
        self.c = nn.Conv1d(8, 4, 5, padding="same")

    def forward(self, x):
        y = torch.relu(self.b(torch.relu(self.a(x))))
        return self.c(y.flatten(2))


X = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))


def assert_trains_alike(model, tuned, steps: int, lr: float, loss) -> None:
    """SGD steps on both models: their parameters stay alike after every step."""
    opt_a = torch.optim.SGD(model.parameters(), lr=lr)
    opt_b = torch.optim.SGD(tuned.parameters(), lr=lr)
    for _ in range(steps):
        for m, opt in ((model, opt_a), (tuned, opt_b)):
            opt.zero_grad()
            loss(m(X)).backward()
            opt.step()
        for (name, p), q in zip(model.named_parameters(), tuned.parameters(), strict=True):
            assert torch.allclose(p, q, rtol=1e-4, atol=1e-5), name


def test_fallback_warnings_name_layers_as_tune_does_and_point_at_the_caller(decisions_for):
    """A bare Sequential's layers are named as the trace names them (``conv1@0``, the names a
    decisions file lists), and the warning points at the line that called the model."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    tuned = optimize(copy.deepcopy(model), decisions_for(model, X, forward="im2col"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuned(torch.randn(1, 3, 5, 5))
    assert [str(w.message).split(":")[1].strip() for w in caught] == [
        "layer 'conv1@0'",
        "layer 'conv2@2'",
    ]
    assert {w.filename for w in caught} == {__file__}


def test_every_conv_runs_its_decided_backend(monkeypatch, decisions_for):
    model = Net()
    reference = model(X).detach()
    tuned = optimize(copy.deepcopy(model), decisions_for(model, X, forward="winograd"))
    assert isinstance(tuned.a, TunedConv2d) and isinstance(tuned.c, TunedConv1d)
    assert isinstance(tuned.a, nn.Conv2d)  # still what it was
    used = []
    original = convbench.Plan.forward

    def spy(self, x):
        used.append(self.backend)
        return original(self, x)

    monkeypatch.setattr(convbench.Plan, "forward", spy)
    with torch.no_grad():
        out = tuned(X)
    assert used == ["winograd"] * 3
    assert torch.allclose(out, reference, rtol=1e-4, atol=1e-5)


def test_eager_inference_calls_the_operator_body_and_everything_else_the_operator(
    monkeypatch, decisions_for
):
    """Autograd off on a plain tensor: the layer calls `library.forward` itself (the
    operator's dispatch would buy nothing); with autograd on it goes through
    ``convbench::conv``, whose autograd the backward needs. The same answer either way."""
    from convbench.backends import library

    model = Net()
    tuned = optimize(copy.deepcopy(model), decisions_for(model, X, forward="winograd"))
    direct, dispatched = [], []
    body = library.forward
    monkeypatch.setattr(library, "forward", lambda *a, **k: direct.append(1) or body(*a, **k))
    op = torch.ops.convbench.conv
    monkeypatch.setattr(
        torch.ops.convbench, "conv", lambda *a, **k: dispatched.append(1) or op(*a, **k)
    )
    with torch.no_grad():
        fast = tuned(X)
    assert (len(direct), len(dispatched)) == (3, 0)
    slow = tuned(X)
    assert len(dispatched) == 3 and slow.requires_grad
    assert torch.equal(fast, slow.detach())


def test_layers_without_a_decision_fall_back_to_torch_with_one_warning(decisions_for):
    model = Net()
    tuned = optimize(copy.deepcopy(model), decisions_for(model, X, forward="im2col"))
    other = torch.randn(1, 3, 10, 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            out = tuned(other)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3  # one per layer, not one per call
    assert all("no decision for input shape" in m and "it runs torch" in m for m in messages)
    assert any("layer 'a'" in m for m in messages)
    assert torch.allclose(out, model(other), rtol=1e-5, atol=1e-6)


def test_state_dict_round_trips_with_the_untouched_model(decisions_for):
    model = Net()
    tuned = optimize(copy.deepcopy(model), decisions_for(model, X, forward="fft"))
    assert list(tuned.state_dict()) == list(model.state_dict())
    fresh = Net()
    for p in fresh.parameters():
        nn.init.normal_(p)
    fresh.load_state_dict(tuned.state_dict())
    assert torch.equal(fresh(X), model(X))
    with torch.no_grad():
        tuned(X)  # plans exist now
    tuned.load_state_dict(fresh.state_dict())  # copies into the weights: plans refresh
    buffer = io.BytesIO()
    torch.save(tuned.state_dict(), buffer)
    assert torch.allclose(tuned(X), fresh(X), rtol=1e-4, atol=1e-5)


def test_training_through_the_optimized_model_matches_the_original(decisions_for):
    model = Net()
    decisions = decisions_for(
        model, X, forward="winograd", backward_data="fft", backward_weight={"a": "im2col"}
    )
    tuned = optimize(copy.deepcopy(model), decisions)
    # the weights change: each step's plans must be refreshed
    assert_trains_alike(model, tuned, steps=3, lr=0.1, loss=lambda y: y.square().sum())


def test_no_grad_eval_train_and_to_behave_as_on_the_original(decisions_for):
    model = Net()
    tuned = optimize(copy.deepcopy(model), decisions_for(model, X, forward="winograd"))
    tuned.eval()
    with torch.no_grad():
        y = tuned(X)
    assert not y.requires_grad
    tuned.train()
    assert tuned(X).requires_grad
    double = copy.deepcopy(tuned).to(torch.float64)  # no float64 decisions: torch, warned
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = double(X.double())
    assert out.dtype == torch.float64
    assert torch.allclose(out, copy.deepcopy(model).double()(X.double()), rtol=1e-9, atol=1e-10)


def test_pickles_and_deep_copies_without_its_plans(decisions_for):
    model = Net()
    tuned = optimize(copy.deepcopy(model), decisions_for(model, X, forward="winograd"))
    with torch.no_grad():
        expected = tuned(X)
    assert tuned.a._convbench.plans.entries
    again = pickle.loads(pickle.dumps(tuned))
    assert not again.a._convbench.plans.entries
    assert again.a._convbench.key != tuned.a._convbench.key
    with torch.no_grad():
        assert torch.allclose(again(X), expected)


def test_stale_and_broken_decisions(tmp_path, decisions_for):
    model = Net()
    decisions = decisions_for(model, X, forward="im2col")
    for e in decisions.entries:
        e["context"] = {**e["context"], "torch": "0.0.1"}
    path = write(tmp_path / "d.json", decisions.entries, model="x:y", input_shape=[2, 3, 12, 12])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuned = optimize(copy.deepcopy(model), path)
        tuned(X)  # every entry was stale: all torch
    lines = [str(w.message) for w in caught]
    assert sum("ignored: made with torch '0.0.1'" in m for m in lines) == 3
    assert any("entry #1 (forward of problem" in m for m in lines)
    assert sum("no decision" in m for m in lines) == 3
    for e in decisions.entries:
        e["context"] = decision_context("cpu")
    decisions.entries[0]["backend"] = "nope"
    with pytest.raises(UserError, match=r"entry #1: field 'backend': unknown backend 'nope'"):
        optimize(copy.deepcopy(model), DecisionTable("d.json", decisions.entries))


def test_a_backend_serving_one_pass_redoes_only_that_pass_after_a_step(decisions_for):
    """Winograd only for the weight gradient: its plan prepares that pass alone, and an
    optimizer step re-prepares that pass alone (no filter transforms nobody uses)."""
    model = Net()
    tuned = optimize(
        copy.deepcopy(model),
        decisions_for(model, X, forward="torch", backward_data="torch", backward_weight="winograd"),
    )
    optimizer = torch.optim.SGD(tuned.parameters(), lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        tuned(X).square().mean().backward()
        optimizer.step()
    (backends,) = tuned.a._convbench.routes.values()
    assert backends == ("torch", "torch", "winograd")
    plans = {index[0]: entry[0] for index, entry in tuned.a._convbench.plans.entries.items()}
    assert sorted(plans) == ["torch", "winograd"]  # one plan per backend, shared by its passes
    plan = plans["winograd"]
    assert plan.passes.intent == "backward_weight"
    assert plan._ready == {"backward_weight"}
    # the gradients still match PyTorch's after the steps
    plain = copy.deepcopy(model)
    plain.load_state_dict(tuned.state_dict())
    tuned.zero_grad()
    plain.zero_grad()
    tuned(X).square().mean().backward()
    plain(X).square().mean().backward()
    assert torch.allclose(tuned.a.weight.grad, plain.a.weight.grad, rtol=1e-4, atol=1e-6)


class Maps(nn.Module):
    """Two 2-D convolutions and a 4-D output: what a channels_last layout changes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 6, 3, padding=1, bias=False)

    def forward(self, x):
        return self.b(torch.relu(self.bn(self.a(x))))


def test_a_channels_last_layout_keeps_values_keys_and_gradients(decisions_for):
    model = Maps()
    decisions = decisions_for(model, X, forward={"a": "winograd"}, backward_data="fft",
                      backward_weight={"b": "im2col"})  # fmt: skip
    tuned = optimize(copy.deepcopy(model), decisions, memory_format="channels_last")
    assert tuned.a.weight.is_contiguous(memory_format=torch.channels_last)
    assert not tuned.a.weight.is_contiguous()
    out = tuned(X)
    assert out.is_contiguous()  # back to PyTorch's default layout for the caller
    assert torch.allclose(out, model(X), rtol=1e-4, atol=1e-5)
    assert list(tuned.state_dict()) == list(model.state_dict())
    fresh = Maps()
    fresh.load_state_dict(tuned.state_dict())
    assert torch.equal(fresh(X), model(X))
    assert_trains_alike(model, tuned, steps=2, lr=0.05, loss=lambda y: y.square().mean())


def test_optimising_again_or_a_copy_never_stacks_the_layout_hooks(tmp_path, decisions_for):
    model = Maps()
    decisions = decisions_for(model, X, forward="im2col")
    tuned = optimize(copy.deepcopy(model), decisions, memory_format="channels_last")
    copied = copy.deepcopy(tuned)
    for m in (tuned, copied):
        optimize(m, decisions, memory_format="channels_last")
        assert len(m._forward_pre_hooks) == 1 and len(m._forward_hooks) == 1
    again = pickle.loads(pickle.dumps(tuned))
    assert torch.allclose(again(X), model(X), rtol=1e-4, atol=1e-5)
    optimize(tuned, decisions)  # the table holds no layout: back to contiguous
    assert not tuned._forward_pre_hooks and not tuned._forward_hooks
    assert tuned.a.weight.is_contiguous()
    user = copy.deepcopy(model).to(memory_format=torch.channels_last)
    optimize(user, decisions)  # a model the user keeps channels_last stays as it is
    assert user.a.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="memory_format"):
        optimize(copy.deepcopy(model), decisions, memory_format="nhwc")


def test_the_decisions_file_layout_is_applied_unless_stale(tmp_path, decisions_for):
    model = Maps()
    decisions = decisions_for(model, X, forward="torch")
    layout = {"memory_format": "channels_last", "device": "cpu",
              "context": decision_context("cpu"), "reason": "faster"}  # fmt: skip
    path = write(tmp_path / "d.json", decisions.entries, model="x:y", input_shape=[2, 3, 12, 12],
                 layout=layout)  # fmt: skip
    tuned = optimize(copy.deepcopy(model), path)
    assert tuned.b.weight.is_contiguous(memory_format=torch.channels_last)
    layout["context"] = {**layout["context"], "threads": 99}
    write(path, decisions.entries, model="x:y", input_shape=[2, 3, 12, 12], layout=layout)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stale = optimize(copy.deepcopy(model), path)
    assert stale.b.weight.is_contiguous() and not stale._forward_pre_hooks
    (line,) = [str(w.message) for w in caught]
    assert "layout channels_last on cpu ignored (the model stays contiguous)" in line
    assert "threads 99" in line


def test_the_weight_gradient_reuses_what_the_training_forward_kept(decisions_for):
    """Winograd for the forward and the weight gradient: the forward keeps its input tiles
    behind the operator and the backward takes them; a second forward before the backward
    replaces them, and the first call's gradient is then computed afresh — right either way."""
    model = Net()
    decisions = decisions_for(model, X, forward="winograd", backward_weight="winograd")
    tuned = optimize(copy.deepcopy(model), decisions)
    kept = tuned.a._convbench.plans.kept
    y = tuned(X)
    assert len(kept) == 1
    y.square().mean().backward()
    assert not kept  # taken by the weight gradient
    model(X).square().mean().backward()
    assert torch.allclose(tuned.a.weight.grad, model.a.weight.grad, rtol=1e-4, atol=1e-6)
    for m in (model, tuned):
        m.zero_grad()
        (m(X).square().mean() + m(2 * X).square().mean()).backward()
    assert torch.allclose(tuned.a.weight.grad, model.a.weight.grad, rtol=1e-4, atol=1e-6)
    assert not kept
