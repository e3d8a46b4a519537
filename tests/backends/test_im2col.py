"""im2col's memory blocking: batch blocks and output-row blocks give the same answer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import convbench
from convbench.backends import im2col


@pytest.mark.parametrize("budget", [1, 3000, 20000, 10**9])
@pytest.mark.parametrize(
    "kw",
    [
        dict(stride=1, padding=1, dilation=1),
        dict(stride=2, padding=(2, 0), dilation=(2, 1)),
        dict(stride=(3, 1), padding="valid", dilation=1),
    ],
)
def test_blocking_is_exact(monkeypatch, budget, kw):
    monkeypatch.setattr(im2col, "COLUMN_BUDGET_BYTES", budget)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 13, 11, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    backend = convbench.get_backend("im2col")
    plan = backend.prepare(w, b, groups=2, **kw, input=x)
    y = plan(x)
    ref = F.conv2d(x, w, b, groups=2, **kw)
    assert torch.allclose(y, ref, atol=1e-12)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(y, (x, w), g)
    want = torch.autograd.grad(ref, (x, w), g)
    for a, r in zip(got, want, strict=True):
        assert torch.allclose(a, r, atol=1e-10)
    if budget == 1:
        assert plan.prepared == {"batch_block": 1, "row_block": 1}


def test_pointwise_needs_no_column_copy():
    backend = convbench.get_backend("im2col")
    args = convbench.ConvProblem(
        batch=2, in_channels=8, out_channels=4, spatial=(5, 5), kernel=1
    ).args()
    assert backend.workspace_bytes(args) == 0
    x, w = torch.randn(2, 8, 5, 5), torch.randn(4, 8, 1, 1)
    assert torch.allclose(backend.conv(x, w), F.conv2d(x, w), atol=1e-5)
