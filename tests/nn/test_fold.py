"""Folding an eval-mode BatchNorm into the tuned convolution before it: which pairs fold,
exactness, unfolding in ``train()`` and with autograd on, the state dict untouched."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from convbench.errors import UserError
from convbench.nn import optimize
from convbench.nn.fold import FoldedBatchNorm2d, foldable
from convbench.store.decisions import DecisionTable

X = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))


def _bn(channels: int) -> nn.BatchNorm2d:
    """A BatchNorm with running statistics and an affine map far from the identity."""
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    return bn


class Pairs(nn.Module):
    """Four convolutions followed by a BatchNorm, of which only the first two may fold: the
    third's output is also read by a residual, the fourth's goes through an in-place ReLU."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.bn_a = nn.Conv2d(3, 8, 3, padding=1, bias=False), _bn(8)
        self.b, self.bn_b = nn.Conv2d(8, 8, 3, padding=1), _bn(8)
        self.c, self.bn_c = nn.Conv2d(8, 8, 3, padding=1), _bn(8)
        self.d, self.bn_d = nn.Conv2d(8, 8, 1), _bn(8)

    def forward(self, x):
        y = torch.relu(self.bn_b(self.b(torch.relu(self.bn_a(self.a(x))))))
        z = self.c(y)
        z = self.bn_c(z) + z
        return self.bn_d(torch.relu_(self.d(z)))


def test_only_a_batchnorm_that_alone_reads_a_convolution_folds():
    assert foldable(Pairs(), X) == [("a", "bn_a"), ("b", "bn_b")]


@pytest.fixture
def folded(decisions_for):
    model = Pairs()
    decisions = decisions_for(model, X, forward={"a": "winograd", "b": "im2col"})
    layout = {"memory_format": "contiguous", "device": "cpu", "folds": foldable(model, X),
              "context": decisions.entries[0]["context"]}  # fmt: skip
    table = DecisionTable("<test>", decisions.entries, layout=layout)
    return model, optimize(copy.deepcopy(model), table), decisions


def test_folding_is_exact_at_inference_and_undone_in_training(folded):
    model, tuned, _ = folded
    assert type(tuned.bn_a) is FoldedBatchNorm2d and type(tuned.bn_c) is nn.BatchNorm2d
    model.eval(), tuned.eval()
    with torch.no_grad():
        assert torch.allclose(tuned(X), model(X), rtol=1e-5, atol=1e-5)
        plans = tuned.a._convbench.plans.entries
        assert [index[-2] for index in plans] == [True]  # prepared from the folded weights
    with torch.enable_grad():  # eval, autograd on: the BatchNorm runs itself
        assert torch.allclose(tuned(X), model(X), rtol=1e-5, atol=1e-5)
    model.train(), tuned.train()
    assert torch.allclose(tuned(X), model(X), rtol=1e-4, atol=1e-5)
    assert torch.allclose(tuned.bn_a.running_mean, model.bn_a.running_mean, atol=1e-6)


def test_the_state_dict_is_untouched_and_loads_into_the_original(folded):
    model, tuned, decisions = folded
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned.eval()
    with torch.no_grad():
        tuned(X)
    state = tuned.state_dict()
    assert list(state) == list(before)
    assert all(torch.equal(state[k], before[k]) for k in before)
    fresh = Pairs()
    fresh.load_state_dict(state)
    buffer = io.BytesIO()
    torch.save(tuned, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False).eval()
    with torch.no_grad():
        assert torch.allclose(loaded(X), fresh.eval()(X), rtol=1e-5, atol=1e-5)
    optimize(tuned, decisions)  # optimised again without folds: the BatchNorms are back
    assert type(tuned.bn_a) is nn.BatchNorm2d and tuned.a._convbench.bn is None


def test_a_fold_the_model_does_not_hold_is_one_line(decisions_for):
    model = Pairs()
    decisions = decisions_for(model, X, forward="im2col")
    layout = {"memory_format": "contiguous", "device": "cpu", "folds": [["a", "bn_x"]],
              "context": decisions.entries[0]["context"]}  # fmt: skip
    with pytest.raises(UserError, match=r"d.json: layout: fold 'a' → 'bn_x': not in the model"):
        optimize(model, DecisionTable("d.json", decisions.entries, layout=layout))
