"""Measuring one task: cold inputs by rotation."""

from __future__ import annotations


def test_rotating_inputs_cycle_through_copies_that_fill_twice_the_cache():
    import torch

    from convbench.backends import get_backend
    from convbench.measure.flush import flush_size_bytes
    from convbench.measure.task import MAX_ROTATING_COPIES, _rotating

    x, w = torch.randn(2, 4, 8, 8), torch.randn(6, 4, 3, 3)
    fn, note = _rotating(get_backend("im2col"), "forward", x, w, None, None, {"padding": 1})
    want = torch.nn.functional.conv2d(x, w, padding=1)
    for _ in range(3):
        out = fn()
        out = out[0] if isinstance(out, tuple) else out
        assert torch.allclose(out, want, atol=1e-5)
    per_copy = x.numel() * 4
    assert f"{MAX_ROTATING_COPIES} rotating copies" in note  # tiny inputs: the cap
    assert MAX_ROTATING_COPIES * per_copy < flush_size_bytes("cpu") and "some stay cached" in note


def test_the_backends_of_one_problem_compute_on_the_same_tensors():
    """Two backends that run one kernel must not differ by where their copies of the inputs
    landed in memory: the tasks of one case and pass share one set of inputs."""
    from convbench.backends import backend_names
    from convbench.measure.task import _inputs
    from convbench.problem.files import load_suite

    tasks = load_suite("smoke").tasks(
        registered=backend_names(), backends=["torch", "onednn"], directions=["forward"]
    )
    torch_task, onednn_task = tasks[0], tasks[1]
    assert torch_task.case == onednn_task.case and torch_task.backend != onednn_task.backend
    shared = _inputs(torch_task)
    assert all(a is b for a, b in zip(shared, _inputs(onednn_task), strict=True))
    assert shared[3] is None  # no upstream gradient for the forward
    other = next(t for t in tasks if t.case != torch_task.case)
    assert _inputs(other)[0] is not shared[0]
