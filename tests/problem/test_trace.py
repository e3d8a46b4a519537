"""Suites from a model: shapes and counts checked against the models' own layers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from convbench.errors import UserError
from convbench.problem import parse_suite, suite_to_toml
from convbench.problem.trace import (
    cases_from_calls,
    describe_call,
    load_factory,
    suite_from_model,
    trace_convs,
)

# -- models ---------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class SmallResNet(nn.Module):
    """ResNet-18-shaped CNN, narrow: stem 7x7/2, maxpool, two stages of two blocks."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 8, 1))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2), BasicBlock(16, 16, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(x.mean((2, 3)))


class SpeechEncoder(nn.Module):
    """wav2vec2-like: a strided Conv1d feature stack, then a grouped positional conv and
    three identical residual conv blocks (padding 'same')."""

    def __init__(self, c=16):
        super().__init__()
        spec = [(1, 10, 5), (c, 3, 2), (c, 3, 2), (c, 2, 2)]
        self.feature = nn.ModuleList(
            nn.Sequential(nn.Conv1d(cin, c, k, stride=s, bias=False), nn.GELU())
            for cin, k, s in spec
        )
        self.norm = nn.GroupNorm(c, c)
        self.pos_conv = nn.Conv1d(c, c, 8, padding=4, groups=4)
        self.blocks = nn.ModuleList(nn.Conv1d(c, c, 5, padding="same") for _ in range(3))

    def forward(self, wav):
        x = wav
        for i, layer in enumerate(self.feature):
            x = layer(x)
            if i == 0:
                x = self.norm(x)
        x = x + self.pos_conv(x)[..., :-1]
        for block in self.blocks:
            x = x + block(x)
        return x


class MobileBlock(nn.Module):
    def __init__(self, c, expand=4, stride=1):
        super().__init__()
        h = c * expand
        self.expand = nn.Conv2d(c, h, 1, bias=False)
        self.depthwise = nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False)
        self.project = nn.Conv2d(h, c, 1, bias=False)

    def forward(self, x):
        y = self.project(self.depthwise(self.expand(x)))
        return y if y.shape == x.shape else y


class GroupedNet(nn.Module):
    """Depthwise-separable (MobileNet) blocks and a grouped (ResNeXt) conv."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.blocks = nn.Sequential(MobileBlock(8), MobileBlock(8), MobileBlock(8, stride=2))
        self.grouped = nn.Conv2d(8, 16, 3, padding=1, groups=4)

    def forward(self, x):
        return self.grouped(self.blocks(self.stem(x)))


def real_conv_calls(model: nn.Module, shape) -> list[tuple[str, tuple, tuple]]:
    """(path, input shape, output shape) of every conv call, from a real CPU forward."""
    names = {m: n for n, m in model.named_modules()}
    seen = []
    hooks = [
        m.register_forward_hook(
            lambda mod, args, out: seen.append((names[mod], tuple(args[0].shape), tuple(out.shape)))
        )
        for m in model.modules()
        if isinstance(m, nn.Conv1d | nn.Conv2d)
    ]
    model.eval()
    with torch.no_grad():
        model(torch.randn(shape))
    for h in hooks:
        h.remove()
    return seen


def check_against_model(model_cls, shape):
    """Every case's problem reproduces the real layers' shapes; counts add up per problem."""
    suite = suite_from_model(model_cls, shape)
    calls = real_conv_calls(model_cls(), shape)
    assert suite.layer_count == len(calls)
    by_name = {c.name: c for c in suite.cases}
    modules = dict(model_cls().named_modules())
    matched = 0
    for case in suite.cases:
        same = [
            c
            for c in calls
            if c[1] == case.problem.input_shape
            and c[2] == case.problem.output_shape
            and _same_layer(modules[c[0]], modules[case.name])
        ]
        assert len(same) == case.count, case.name
        matched += case.count
        module = modules[case.name]
        assert case.problem.weight_shape == tuple(module.weight.shape)
        assert case.problem.bias == (module.bias is not None)
    assert matched == len(calls)
    return suite, by_name


def _same_layer(a: nn.Module, b: nn.Module) -> bool:
    fields = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation")
    return all(getattr(a, f) == getattr(b, f) for f in fields) and a.groups == b.groups


# -- tests ----------------------------------------------------------------------------------


def test_cnn_shapes_and_counts():
    suite, cases = check_against_model(SmallResNet, (2, 3, 64, 64))
    assert suite.layer_count == 1 + 2 * 2 * 2 + 1  # stem, 4 blocks x 2 convs, 1 downsample
    assert list(cases) == [
        "conv1",
        "layer1.0.conv1",  # 8->8 3x3 at 16x16, shared by the four layer1 convs
        "layer2.0.conv1",
        "layer2.0.conv2",  # 16->16 3x3 at 8x8, shared by three layer2 convs
        "layer2.0.downsample.0",
    ]
    assert [c.count for c in suite.cases] == [1, 4, 1, 3, 1]
    stem = cases["conv1"].problem
    assert (stem.spatial, stem.kernel, stem.stride, stem.padding) == (
        (64, 64),
        (7, 7),
        (2, 2),
        (3, 3),
    )
    assert cases["layer1.0.conv1"].problem.spatial == (16, 16)
    assert cases["layer2.0.downsample.0"].problem.stride == (2, 2)
    assert suite.axes.dtypes == ("float32",) and suite.name == "smallresnet"
    assert parse_suite(suite_to_toml(suite)) == suite


def test_speech_encoder_conv1d_stack():
    length = 400
    suite, cases = check_against_model(SpeechEncoder, (1, 1, length))
    lengths = [length]
    for k, s in [(10, 5), (3, 2), (3, 2), (2, 2)]:
        lengths.append((lengths[-1] - k) // s + 1)
    feature = [cases[f"feature.{i}.0"].problem for i in range(4)]
    assert [p.spatial[0] for p in feature] == lengths[:4]
    assert feature[-1].output_shape == (1, 16, lengths[4])
    pos = cases["pos_conv"].problem
    assert (pos.groups, pos.kernel, pos.padding) == (4, (8,), (4,))
    block = cases["blocks.0"]
    assert block.count == 3 and block.problem.padding == (2,)  # 'same' for k=5, explicit
    assert all(p.nd == 1 for p in (c.problem for c in suite.cases))


def test_depthwise_and_grouped_convs():
    suite, cases = check_against_model(GroupedNet, (1, 3, 32, 32))
    dw = cases["blocks.0.depthwise"]
    assert (dw.count, dw.problem.groups, dw.problem.in_channels) == (2, 32, 32)
    assert cases["blocks.2.depthwise"].problem.stride == (2, 2)
    assert cases["blocks.0.expand"].count == 3  # the stride-2 block expands at 16x16 too
    assert cases["blocks.0.project"].count == 2
    assert cases["blocks.2.project"].problem.spatial == (8, 8)
    assert cases["grouped"].problem.groups == 4


def test_meta_device_used_and_instance_untouched():
    model = SmallResNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    trace = trace_convs(model, (2, 3, 32, 32))
    assert trace.device == "meta" and trace.fallback_reason is None
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert model.training and model.layer1[0].bn1.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # a factory is built on meta: its weights never take memory
    built = []

    def factory():
        built.append(SmallResNet())
        return built[-1]

    assert trace_convs(factory, (1, 3, 32, 32)).device == "meta"
    assert built[0].conv1.weight.is_meta


def test_falls_back_to_cpu_when_meta_fails_and_says_why():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 4, 3)

        def forward(self, x):
            return self.conv(x) if x.sum() > -1e9 else x

    trace = trace_convs(DataDependent, (1, 2, 10))
    assert trace.device == "cpu"
    assert "meta" in trace.fallback_reason and "item" in trace.fallback_reason.lower()
    assert trace.recorded[0].problem.spatial == (10,)
    assert "traced on cpu" in suite_from_model(DataDependent, (1, 2, 10)).description


def test_padding_modes_shared_modules_and_unbatched():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.reflect = nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")
            self.shared = nn.Conv2d(2, 2, 1)
            self.same_even = nn.Conv1d(2, 2, 4, padding="same")

        def forward(self, x):
            y = self.shared(self.reflect(x))
            y = self.shared(y[..., ::2, ::2])  # same module, another shape
            return self.same_even(y.flatten(2))

    trace = trace_convs(Odd, (1, 2, 8, 8))
    cases = {c.name: c for c in cases_from_calls(trace.calls)}
    assert list(cases) == ["reflect", "shared", "shared#2", "same_even"]
    assert cases["reflect"].problem.spatial == (10, 10) and cases["reflect"].problem.padding == (
        0,
        0,
    )
    assert any("reflect" in n for n in trace.notes)
    assert cases["shared#2"].problem.spatial == (4, 4)
    assert cases["same_even"].problem.padding == "same"  # asymmetric: kept as 'same'
    unbatched = describe_call("c", nn.Conv1d(3, 4, 3), (3, 20))
    assert (unbatched.problem.batch, unbatched.problem.spatial) == (1, (20,))


def test_errors_name_the_cause():
    with pytest.raises(
        UserError, match=r"no_such_pkg\.mod:f: cannot import module 'no_such_pkg\.mod'"
    ):
        load_factory("no_such_pkg.mod:f")
    with pytest.raises(UserError, match=r"'torch\.nn' has no attribute 'NoSuchNet'"):
        load_factory("torch.nn:NoSuchNet")
    with pytest.raises(UserError, match="expected PACKAGE.MODULE:FACTORY"):
        load_factory("torch.nn")
    assert load_factory("torch.nn:Conv2d") is nn.Conv2d

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            raise RuntimeError("deliberately broken forward")

    with pytest.raises(UserError, match="forward pass .* failed: RuntimeError: deliberately"):
        suite_from_model(Broken, (1, 3, 8, 8))
    with pytest.raises(UserError, match=r"forward pass with input shape \[1, 5, 8, 8\] failed"):
        suite_from_model(SmallResNet, (1, 5, 8, 8))  # wrong channel count
    with pytest.raises(UserError, match="returned a dict, not an nn.Module"):
        suite_from_model(dict, (1, 3, 8, 8))
    with pytest.raises(UserError, match="ran no nn.Conv1d/nn.Conv2d"):
        suite_from_model(lambda: nn.Linear(4, 4), (2, 4))
    with pytest.raises(UserError, match="input shape"):
        suite_from_model(SmallResNet, (1, 0, 8))
    with pytest.raises(UserError, match="unknown dtype 'float8'"):
        suite_from_model(SmallResNet, (1, 3, 32, 32), dtype="float8")


def test_counts_weight_the_flops_of_the_model():
    suite = suite_from_model(SmallResNet, (1, 3, 64, 64), dtype="float16", name="r")
    calls = real_conv_calls(SmallResNet(), (1, 3, 64, 64))
    model = SmallResNet()
    modules = dict(model.named_modules())
    flops = sum(
        2
        * math.prod(out)
        * modules[name].in_channels
        // modules[name].groups
        * math.prod(modules[name].kernel_size)
        for name, _, out in calls
    )
    assert sum(c.count * c.problem.flops for c in suite.cases) == flops
    assert suite.axes.dtypes == ("float16",) and suite.name == "r"


def test_layers_of_a_bare_sequential_get_readable_names():
    from torch import nn

    from convbench.problem.trace import suite_from_model

    def factory():
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.Sequential(nn.Conv2d(8, 16, 1)),
        )

    suite = suite_from_model(factory, (1, 3, 16, 16), name="seq")
    assert [c.name for c in suite.cases] == ["conv1@0", "conv2@2", "conv3@4.0"]
