"""Where the per-layer plan takes each convolution's input to arrive from
(`convbench.flows.plan.layer_layouts`, `arrivals`): following the layout of the call before
it where the ops between keep it, in the layout the ops impose where they do not."""

from __future__ import annotations

import torch
from torch import nn

from convbench.flows.plan import Traced, arrivals, layer_layouts

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
    traced = layer_layouts(model, X)
    assert [t.follows for t in traced] == [None, True]
    assert arrivals(traced) == ["contiguous", None]


def test_a_permuting_norm_and_a_residual_sum_impose_their_layout():
    model = nn.Sequential(nn.Conv2d(8, 8, 1), LayerNorm2d(8), Block(), Block()).eval()
    traced = layer_layouts(model, X)
    # the norm hands channels-last strides on whatever the first convolution returned;
    # each block's sum keeps the layout its MLP branch comes back in
    assert [t.source for t in traced] == ["contiguous", "channels_last", "channels_last"]
    assert [t.follows for t in traced] == [None, False, False]
    assert arrivals(traced) == ["contiguous", "channels_last", "channels_last"]


def test_without_the_probe_the_layouts_seen_decide():
    traced = [Traced("a", "contiguous", "channels_last"), Traced("b", "channels_last", "x")]
    traced.append(Traced("c", "channels_last", "contiguous"))
    assert arrivals(traced) == ["contiguous", None, "channels_last"]


def test_a_forward_that_fails_flipped_falls_back_to_the_layouts_seen():
    traced = layer_layouts(Viewed(), X)
    assert [t.follows for t in traced] == [None, None]
    assert arrivals(traced) == ["contiguous", None]
