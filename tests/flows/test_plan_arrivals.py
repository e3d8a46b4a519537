"""Where the per-layer plan takes each convolution's input to arrive from
(`convbench.flows.arrivals.probe`, `arrivals`): following the layout of the call it
comes from where the ops between keep it (the call before it, or the one that began a
residual stream), in the layout the ops impose where they do not."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from convbench.analysis.decisions import Decision
from convbench.flows.arrivals import Joined, Traced, arrivals, hooked_forward, probe
from convbench.flows.plan import boundary_shapes, headroom, headroom_line, make_plan
from convbench.problem.trace import describe_call, layer_names

X = torch.randn(2, 8, 8, 8, generator=torch.Generator().manual_seed(0))


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Block(nn.Module):
    """A ConvNeXt block: depthwise convolution, an MLP on NHWC through permutes, and the
    residual sum of the block's input and the MLP's output."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.pwconv = nn.Linear(dim, dim)

    def forward(self, x):
        return x + self.pwconv(self.dwconv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Bottleneck(nn.Module):
    """A ResNet block: two convolutions, a shortcut (a convolution, or the block's input),
    the sum of the branch and the shortcut, in place as torchvision writes it."""

    def __init__(self, dim: int = 8, shortcut: bool = False):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(dim, dim, 1), nn.Conv2d(dim, dim, 3, padding=1)
        self.down = nn.Conv2d(dim, dim, 1) if shortcut else None

    def forward(self, x):
        out = self.conv2(self.conv1(x).relu())
        out += x if self.down is None else self.down(x)
        return out.relu()


class Viewed(nn.Module):
    """A model whose ``view`` needs the layout its convolution hands it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = self.a(x)
        return self.b(y.view(y.shape[0], -1).view(y.shape))


def test_a_pointwise_op_between_keeps_the_layout():
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1))
    traced = probe(model, X).calls
    assert [t.follows for t in traced] == [None, True]
    assert [t.origin for t in traced] == [None, 0]
    assert arrivals(traced) == [("contiguous", None), (None, 0)]


def test_a_permuting_norm_and_a_residual_sum_impose_their_layout():
    model = nn.Sequential(nn.Conv2d(8, 8, 1), LayerNorm2d(8), Block(), Block()).eval()
    traced = probe(model, X).calls
    # the norm hands channels-last strides on whatever the first convolution returned;
    # each block's sum keeps the layout its MLP branch comes back in
    assert [t.source for t in traced] == ["contiguous", "channels_last", "channels_last"]
    assert [t.follows for t in traced] == [None, False, False]
    assert arrivals(traced) == [("contiguous", None), ("channels_last", None),
                                ("channels_last", None)]  # fmt: skip


def test_a_residual_stream_follows_the_convolution_that_began_it():
    """A ConvNeXt stage after the first: its downsampling convolution's output is the first
    term of every block's sum, so each block's depthwise convolution gets the stream, in the
    downsampling convolution's layout, not in the layout of the depthwise call before it."""
    model = nn.Sequential(nn.Conv2d(8, 8, 2, stride=2), Block(), Block(), Block()).eval()
    traced = probe(model, X).calls
    assert [t.follows for t in traced] == [None, True, True, True]
    assert [t.origin for t in traced] == [None, 0, 0, 0]
    assert arrivals(traced)[1:] == [(None, 0)] * 3


def test_a_residual_sum_joins_the_layouts_of_its_branch_and_its_shortcut():
    model = nn.Sequential(nn.Conv2d(8, 8, 1), Bottleneck(shortcut=True), Bottleneck()).eval()
    found = probe(model, X)
    names = [t.name for t in found.calls]
    assert names == ["conv1@0", "1.conv1", "1.conv2", "1.down", "2.conv1", "2.conv2"]
    # the shortcut and the block's first convolution both take the stem's output; the next
    # block's first convolution the sum, which keeps its first term's layout: the branch's
    assert [t.origin for t in found.calls] == [None, 0, 1, 0, 2, 4]
    assert found.joins == [Joined(2, 3, tuple(X.shape)), Joined(5, 2, tuple(X.shape))]


def test_a_sum_with_an_imposed_term_joins_the_stream_and_that_layout():
    model = nn.Sequential(nn.Conv2d(8, 8, 2, stride=2), Block(), Block()).eval()
    found = probe(model, X)
    shape = (X.shape[0], 8, 4, 4)
    assert found.joins == [Joined(0, "channels_last", shape)] * 2


def test_without_the_probe_the_layouts_seen_decide():
    traced = [Traced("a", "contiguous", "channels_last"), Traced("b", "channels_last", "x")]
    traced.append(Traced("c", "channels_last", "contiguous"))
    assert arrivals(traced) == [("contiguous", None), (None, None), ("channels_last", None)]


def test_a_forward_that_fails_flipped_falls_back_to_the_layouts_seen():
    traced = probe(Viewed(), X).calls
    assert [t.follows for t in traced] == [None, None]
    assert arrivals(traced) == [("contiguous", None), (None, None)]


def test_the_plan_keeps_a_stream_s_blocks_in_the_stream_s_layout():
    """`make_plan` on a traced stage: depthwise calls faster contiguous by less than the
    conversion from the stream's channels_last stay in it; taken as a chain (each following
    the call before), the first call's conversion would have looked like the only one."""
    model = nn.Sequential(nn.Conv2d(8, 8, 2, stride=2), Block(), Block(), Block()).eval()
    names, calls = layer_names(model), []
    hooked_forward(model, X, lambda name, mod, t: calls.append(describe_call(name, mod, t.shape)))
    times = {("contiguous", 0): 5.0, ("channels_last", 0): 4.0}  # the downsampling call
    decisions = [
        Decision(c.problem.key, f"case{i}", "float32", "cpu", "forward", "torch",
                 ms, ms, 1.0, None, None, "r", "", layout=layout)
        for i, c in enumerate(calls) for layout in ("contiguous", "channels_last")
        for ms in [times.get((layout, i), 1.0 if layout == "contiguous" else 1.6)]
    ]  # fmt: skip
    convert = {("contiguous", "channels_last"): 1.0, ("channels_last", "contiguous"): 1.0}
    costs = {s: convert for s in boundary_shapes(calls)}
    traced = probe(model, X.to(memory_format=torch.channels_last)).calls  # as in a model
    plan, planned = make_plan(calls, traced, decisions, {}, costs)
    assert len(names) == len(planned) == 4
    assert [s.layout for s in plan.steps] == ["channels_last"] * 4
    assert plan.total_ms == pytest.approx(4.0 + 3 * 1.6)
    # the original runs torch in the layout each call is handed; the fastest options, with
    # no conversion, 1.8 ms less: at most 1.8 ms of a 100 ms model
    assert headroom(calls, traced, decisions) == pytest.approx((4.0 + 3 * 1.6, 4.0 + 3 * 1.0))
    record = dict(original_ms=8.8, floor_ms=7.0)
    timed = [SimpleNamespace(mode="inference", original_ms=100.0)]
    assert headroom_line(record, timed).endswith(
        ": 1.80 ms of the original's 100.00 ms, 1.018× from the convolutions alone if the "
        "saving holds inside the model (folded BatchNorms and the layout's effect on the other "
        "ops come on top)"
    )
