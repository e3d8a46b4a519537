"""`loss.backward()` through a backend's own passes: a `torch.autograd.Function` whose
forward is the plan's forward (keeping what its backward reuses) and whose backward is the
plan's ``backward`` — so a model running a from-scratch backend trains with that backend's
data- and weight-gradient algorithms, not with autograd replaying its forward ops.

Double backward (a gradient of a gradient, ``create_graph=True``) is not supported by these
passes: it raises a `RuntimeError` naming the backend. The vendor backends (`onednn`,
`cudnn`) are differentiated by PyTorch itself and support it.
"""

from __future__ import annotations

import torch


class BackendConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, plan):
        y, saved = plan.forward_train(x.detach())
        ctx.plan, ctx.saved = plan, saved
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        plan = ctx.plan
        if torch.is_grad_enabled():
            raise RuntimeError(
                f"{plan.backend}: double backward (create_graph=True) is not supported by this "
                "backend's own gradient passes; use onednn/cudnn (differentiated by PyTorch) "
                "for higher-order gradients"
            )
        (x,) = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dx, dw, db = plan.backward(x, grad_output.contiguous(), ctx.saved, need_x, need_w or need_b)
        ctx.saved = None  # free the kept spectra/tiles as soon as they are used
        return (dx if need_x else None), (dw if need_w else None), (db if need_b else None), None
