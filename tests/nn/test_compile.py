"""An optimized model inside `torch.compile` and `torch.export`: one operator per tuned layer,
no graph break, no recompilation, and the ``compile`` argument of `optimize`."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

from convbench.nn import compile_in_place, optimize
from convbench.store.decisions import DecisionTable


class Block(nn.Module):
    """Conv → BatchNorm → ReLU, a strided conv with a residual, and a 1×1 conv left to torch:
    a tuned layer beside a torch one, in a graph with pointwise ops around them."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = torch.relu(self.bn(self.a(x)))
        return self.c(torch.relu(self.b(y)) + y)


X = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
CONVBENCH_CONV = torch.ops.convbench.conv  # as Dynamo's graph names it; export's, .default


@pytest.fixture
def tuned_block(decisions_for):
    model = Block()
    decisions = decisions_for(
        model, X, forward={"a": "winograd", "b": "im2col"}, backward_data={"a": "fft"},
        backward_weight={"b": "winograd"},
    )  # fmt: skip
    return model, optimize(copy.deepcopy(model), decisions, compile=False), decisions


def targets(gm) -> list:
    return [node.target for node in gm.graph.nodes if node.op == "call_function"]


@pytest.mark.slow
def test_fullgraph_compiles_inference_and_training_without_recompiling(tuned_block):
    model, tuned, _ = tuned_block
    counter = CompileCounterWithBackend("inductor")  # frames compiled, graphs made
    compiled = torch.compile(tuned, fullgraph=True, backend=counter)
    model.eval(), tuned.eval()
    with torch.no_grad():
        expected = model(X)
        for _ in range(3):
            assert torch.allclose(compiled(X), expected, rtol=1e-4, atol=1e-5)
    assert counter.frame_count == 1
    (graph,) = counter.graphs
    found = targets(graph)
    assert found.count(CONVBENCH_CONV) == 2  # a and b: one node each
    assert torch.conv2d in found  # c stays on torch, for Inductor to optimise as its own
    model.train(), tuned.train()
    opt_a = torch.optim.SGD(model.parameters(), lr=0.05)
    opt_b = torch.optim.SGD(tuned.parameters(), lr=0.05)
    for _ in range(3):  # the plans follow the weights an optimizer step changes
        for m, opt in ((model, opt_a), (compiled, opt_b)):
            opt.zero_grad()
            m(X).square().mean().backward()
            opt.step()
    for (name, p), q in zip(model.named_parameters(), tuned.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-6), name
    assert counter.frame_count == 2  # one graph per mode, none after the first call
    assert not torch._dynamo.utils.counters["graph_break"]


def test_the_compile_argument(tuned_block, decisions_for):
    model, _, decisions = tuned_block
    keys = list(model.state_dict())
    plain = optimize(copy.deepcopy(model), decisions)  # the file says nothing: not compiled
    assert plain._compiled_call_impl is None
    assert optimize(copy.deepcopy(model), decisions, compile=True)._compiled_call_impl
    layout = {"memory_format": "contiguous", "device": "cpu", "compile": {"dynamic": False},
              "context": decisions.entries[0]["context"]}  # fmt: skip
    said = DecisionTable("<test>", decisions.entries, layout=layout)
    same = copy.deepcopy(model)
    compiled = optimize(same, said)  # None: as the file says, in place
    assert compiled is same and compiled._compiled_call_impl is not None
    assert list(compiled.state_dict()) == keys
    assert optimize(copy.deepcopy(model), said, compile=False)._compiled_call_impl is None


def test_export_runs_the_operators_and_survives_save_and_load(tuned_block):
    model, tuned, _ = tuned_block
    model.eval(), tuned.eval()
    program = torch.export.export(tuned, (X,))
    assert targets(program.graph_module).count(CONVBENCH_CONV.default) == 2
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    buffer.seek(0)
    loaded = torch.export.load(buffer).module()
    del tuned, program  # the plans behind the operators go with their layers: the loaded
    with torch.no_grad():  # program prepares its own
        assert torch.allclose(loaded(X), model(X), rtol=1e-4, atol=1e-5)


def test_double_backward_is_refused_naming_the_backends(tuned_block):
    _, tuned, _ = tuned_block
    x = X.clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match="im2col/torch/winograd: double backward"):
        torch.autograd.grad(tuned(x).square().sum(), x, create_graph=True)


def test_static_shapes_compile_each_tuned_input_shape_once(tuned_block):
    """A tuned layer's decision is a constant of the graph for a static input shape: each
    batch size compiles once, the tuned one through the operators, another on torch (with the
    layer's one warning); calling either again compiles nothing."""
    model, tuned, _ = tuned_block
    counter = CompileCounterWithBackend("inductor")
    compiled = torch.compile(tuned, fullgraph=True, dynamic=False, backend=counter)
    model.eval(), tuned.eval()
    with torch.no_grad(), pytest.warns(UserWarning, match="no decision for input shape"):
        for batch in (2, 3, 2, 3):
            x = torch.randn(batch, 3, 12, 12)
            assert torch.allclose(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    assert counter.frame_count == 2
    assert [targets(g).count(CONVBENCH_CONV) for g in counter.graphs] == [2, 0]


def test_compiling_in_place_traces_a_sequential_whole(decisions_for):
    """`nn.Module.compile` compiles nothing of an `nn.Sequential`'s own (Dynamo skips
    torch.nn's frames at the top), and each tuned layer's Python would become a frame of its
    own, recompiled per layer; `compile_in_place` traces the model whole, in one frame."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    tuned = optimize(copy.deepcopy(model), decisions_for(model, X, forward="im2col"))
    counter = CompileCounterWithBackend("eager")
    compile_in_place(tuned, backend=counter, fullgraph=True)
    with torch.no_grad():
        for _ in range(2):
            assert torch.allclose(tuned(X), model(X), rtol=1e-4, atol=1e-5)
    assert counter.frame_count == 1
    assert targets(counter.graphs[0]).count(CONVBENCH_CONV) == 2


def test_compiling_many_models_in_place_never_runs_out_of_dynamo_s_budget():
    """Dynamo keeps up to 8 graphs per code object; each model compiled in place has its own."""
    counter = CompileCounterWithBackend("eager")
    with torch.no_grad():
        for _ in range(10):
            model = compile_in_place(nn.Sequential(nn.Conv2d(3, 4, 3)).eval(), backend=counter)
            model(X)
    assert counter.frame_count == 10
