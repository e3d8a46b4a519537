"""Suite files: loading, validation messages, stable ids, task expansion, round-trip."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st

from convbench.backends import backend_names
from convbench.errors import UserError
from convbench.problem import (
    Axes,
    ConvCase,
    ConvProblem,
    ProblemError,
    Suite,
    SuiteError,
    Task,
    find_suite,
    list_suites,
    load_suite,
    parse_suite,
    suite_to_toml,
)
from convbench.problem.files import shipped_dir

SHIPPED = (
    "deepbench",
    "large_kernel",
    "mobilenet_v2",
    "nlp_conv1d",
    "perf_cpu",
    "perf_train",
    "resnet50",
    "smoke",
    "vgg16",
)

SHIPPED_DIR = shipped_dir()


def case(suite: Suite, name: str) -> ConvCase:
    (found,) = [c for c in suite.cases if c.name == name]
    return found


# ---------------------------------------------------------------------------------------------
# Shipped suites


def test_shipped_suites_are_listed():
    infos = list_suites(SHIPPED_DIR)
    assert [i.name for i in infos] == sorted(SHIPPED)
    for info in infos:
        suite = load_suite(info.path)
        assert (info.n_cases, info.n_layers) == (len(suite.cases), suite.layer_count)
        assert info.description
    assert {i.name: i.n_layers for i in infos}["resnet50"] == 53


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_suite_loads_and_matches_torch_shapes(name):
    suite = load_suite(SHIPPED_DIR / f"{name}.toml")
    assert suite.name == name and suite.cases and suite.source
    for c in suite.cases:
        p = c.problem
        x = torch.empty(p.input_shape, device="meta")
        w = torch.empty(p.weight_shape, device="meta")
        conv = F.conv1d if p.nd == 1 else F.conv2d
        assert tuple(conv(x, w, None, **p.conv_kwargs()).shape) == p.output_shape, c.name


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_suite_round_trips(name):
    suite = load_suite(SHIPPED_DIR / f"{name}.toml")
    again = parse_suite(suite_to_toml(suite), "dumped.toml")
    assert again == suite
    assert [c.case_id for c in again.cases] == [c.case_id for c in suite.cases]


def test_resnet50_layers():
    suite = load_suite("resnet50")
    assert suite.layer_count == 53 and len(suite.cases) == 23
    assert all(not c.problem.bias and c.problem.batch == 8 for c in suite.cases)
    stem = case(suite, "conv1").problem
    assert (stem.in_channels, stem.out_channels, stem.spatial) == (3, 64, (224, 224))
    assert (stem.kernel, stem.stride, stem.padding) == ((7, 7), (2, 2), (3, 3))
    assert stem.out_spatial == (112, 112)
    # layer3 blocks 1-5: 3x3 256->256 at 14x14
    c = case(suite, "layer3.1.conv2")
    assert c.count == 5
    assert (c.problem.in_channels, c.problem.out_channels, c.problem.spatial) == (
        256,
        256,
        (14, 14),
    )
    # v1.5: the stage's stride sits on the first block's 3x3
    c = case(suite, "layer4.0.conv2")
    assert (c.problem.spatial, c.problem.stride, c.problem.out_spatial) == (
        (14, 14),
        (2, 2),
        (7, 7),
    )
    assert case(suite, "layer2.0.conv1").problem.stride == (1, 1)
    # layer1.0.downsample.0 is the same problem as the three layer1 conv3s
    assert case(suite, "layer1.0.conv3").count == 4
    down = case(suite, "layer2.0.downsample.0").problem
    assert (down.in_channels, down.out_channels, down.kernel, down.stride) == (
        256,
        512,
        (1, 1),
        (2, 2),
    )
    downsample = [c for c in suite.cases if "downsample" in c.name]
    assert len(downsample) == 3  # the 4th is counted in layer1.0.conv3
    # 4.09 GMAC per image, the figure torchvision publishes for ResNet-50 (its FC adds 0.002)
    macs = sum(c.count * c.problem.macs for c in suite.cases) / 8
    assert macs == pytest.approx(4.087e9, rel=1e-3)


def test_vgg16_layers():
    suite = load_suite("vgg16")
    assert suite.layer_count == 13 and len(suite.cases) == 9
    assert all(c.problem.kernel == (3, 3) and c.problem.padding == (1, 1) for c in suite.cases)
    assert case(suite, "features.24").count == 3
    assert case(suite, "features.24").problem.spatial == (14, 14)
    macs = sum(c.count * c.problem.macs for c in suite.cases) / 8
    assert macs == pytest.approx(15.35e9, rel=1e-3)


def test_mobilenet_v2_layers():
    suite = load_suite("mobilenet_v2")
    assert suite.layer_count == 52
    depthwise = [c for c in suite.cases if c.problem.groups > 1]
    assert sum(c.count for c in depthwise) == 17
    assert all(
        c.problem.groups == c.problem.in_channels == c.problem.out_channels for c in depthwise
    )
    assert all(c.problem.kernel == (3, 3) for c in depthwise)
    expand = case(suite, "features.15.conv.0.0").problem
    assert (expand.in_channels, expand.out_channels, expand.spatial) == (160, 960, (7, 7))
    macs = sum(c.count * c.problem.macs for c in suite.cases) / 8
    assert macs == pytest.approx(299.5e6, rel=1e-3)  # the paper's 300M multiply-adds


def test_deepbench_row_mapping():
    suite = load_suite("deepbench")
    assert 10 <= len(suite.cases) <= 15
    # row 3: W=700 H=161 C=1 N=16 K=32 S=20 R=5 pad 0 stride 2
    p = case(suite, "train03").problem
    assert (p.batch, p.in_channels, p.out_channels) == (16, 1, 32)
    assert (p.spatial, p.kernel, p.stride, p.padding) == ((161, 700), (5, 20), (2, 2), (0, 0))


def test_nlp_conv1d_wav2vec2_chain():
    suite = load_suite("nlp_conv1d")
    assert all(c.problem.nd == 1 for c in suite.cases)
    encoder = [c.problem for c in suite.cases if c.name.startswith("wav2vec2.")]
    assert [p.kernel[0] for p in encoder] == [10, 3, 3, 3, 3, 2, 2]
    assert [p.stride[0] for p in encoder] == [5, 2, 2, 2, 2, 2, 2]
    assert encoder[0].spatial == (16000,) and encoder[0].in_channels == 1
    for a, b in zip(encoder, encoder[1:], strict=False):
        assert a.out_spatial == b.spatial
    assert encoder[-1].out_spatial == (49,)
    dw = case(suite, "conformer.dw31.d256.L250").problem
    assert dw.groups == dw.in_channels == 256 and dw.out_spatial == dw.spatial


def test_large_kernel_suite():
    suite = load_suite("large_kernel")
    kernels_1d = {c.problem.kernel[0] for c in suite.cases if c.problem.nd == 1}
    kernels_2d = {c.problem.kernel[0] for c in suite.cases if c.problem.nd == 2}
    assert kernels_1d == {127, 255, 511} and kernels_2d == {11, 15, 31}


def test_smoke_covers_the_argument_forms():
    suite = load_suite("smoke")
    problems = [c.problem for c in suite.cases]
    assert 4 <= len(problems) <= 6
    assert {p.nd for p in problems} == {1, 2}
    assert any(max(p.stride) > 1 for p in problems)
    assert any(p.groups > 1 and p.groups == p.in_channels for p in problems)  # depthwise
    assert any(max(p.dilation) > 1 for p in problems)
    assert any(p.nd == 1 and p.padding == "same" and p.kernel[0] > 3 for p in problems)
    assert {p.bias for p in problems} == {True, False}
    assert all(p.macs < 1e6 for p in problems)
    assert suite.axes.directions == ("forward", "backward")
    assert suite.axes.backends is None  # every registered backend


# ---------------------------------------------------------------------------------------------
# Validation messages

HEAD = '[suite]\nname = "x"\n'
CASE = '[[case]]\nname = "a"\nin_channels = 8\nout_channels = 8\nspatial = [8, 8]\nkernel = 3\n'


def write(tmp_path, text: str):
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent(text))
    return path


BAD = [
    # (suite text, substrings the message must contain)
    (HEAD + CASE + "kernal = 3\n", ["case 'a' (#1)", "field 'kernal'", "did you mean 'kernel'"]),
    (HEAD + CASE + "groups = 4.0\n", ["case 'a' (#1)", "field 'groups'", "expected an integer"]),
    (HEAD + CASE + 'bias = "no"\n', ["case 'a' (#1)", "field 'bias'", "true or false"]),
    (HEAD + CASE + "count = 0\n", ["case 'a' (#1)", "field 'count'", ">= 1"]),
    (HEAD + CASE.replace("[8, 8]", "8"), ["case 'a' (#1)", "field 'spatial'", "an array"]),
    (HEAD + CASE.replace("[8, 8]", "[8, 8, 8]"), ["case 'a' (#1)", "field 'spatial'", "1 or 2"]),
    (HEAD + CASE.replace('"a"', '"a@n1"'), ["case 'a@n1' (#1)", "field 'name'", "'@n'"]),
    (HEAD + CASE.replace('name = "a"\n', ""), ["case #1", "field 'name'", "missing"]),
    (HEAD + CASE.replace("kernel = 3\n", ""), ["case 'a' (#1)", "field 'kernel'", "missing"]),
    (
        HEAD + CASE + CASE.replace("in_channels = 8", "in_channels = 30") + "groups = 4\n",
        ["case 'a' (#2)", "field 'name'", "duplicate"],
    ),
    (
        HEAD
        + CASE
        + CASE.replace('"a"', '"conv3"').replace("= 8\nout", "= 30\nout")
        + "groups = 4\n",
        ["case 'conv3' (#2)", "field 'in_channels'", "30 is not divisible by groups=4"],
    ),
    (HEAD + CASE.replace("= 3", "= 11"), ["case 'a' (#1)", "field 'kernel'", "larger than"]),
    (
        HEAD + CASE + 'stride = 2\npadding = "same"\n',
        ["case 'a' (#1)", "field 'padding'", "'same'"],
    ),
    (HEAD + CASE + 'padding = "full"\n', ["case 'a' (#1)", "field 'padding'", "'full'"]),
    (
        HEAD + "[defaults]\ngroups = 3\n" + CASE,
        ["case 'a' (#1)", "field 'in_channels' (groups from [defaults])", "groups=3"],
    ),
    (
        HEAD + "[defaults]\npadding = 'same'\n" + CASE + "stride = 2\n",
        ["case 'a' (#1)", "field 'padding' (padding from [defaults])", "stride"],
    ),
    (HEAD + "[defaults]\nname = 'z'\n" + CASE, ["[defaults]", "field 'name'", "unknown"]),
    (HEAD + "[defaults]\nbatch = true\n" + CASE, ["[defaults]", "field 'batch'", "integer"]),
    (HEAD + "colour = 'red'\n" + CASE, ["[suite]", "field 'colour'", "unknown field"]),
    (HEAD + "description = 3\n" + CASE, ["[suite]", "field 'description'", "a string"]),
    ('[suite]\nname = " "\n' + CASE, ["[suite]", "field 'name'", "empty"]),
    (HEAD + "[axes]\ndtype = ['float32']\n" + CASE, ["[axes]", "field 'dtype'", "'dtypes'"]),
    (HEAD + "[axes]\ndtypes = ['float8']\n" + CASE, ["[axes]", "field 'dtypes'", "'float8'"]),
    (HEAD + "[axes]\ndtypes = 'float32'\n" + CASE, ["[axes]", "field 'dtypes'", "an array"]),
    (HEAD + "[axes]\ndirections = ['fwd']\n" + CASE, ["[axes]", "field 'directions'", "'fwd'"]),
    (HEAD + "[axes]\ndevices = ['gpu']\n" + CASE, ["[axes]", "field 'devices'", "'gpu'"]),
    (HEAD + "[axes]\ndevices = []\n" + CASE, ["[axes]", "field 'devices'", "empty"]),
    (
        HEAD + "[axes]\ndevices = ['cpu', 'cpu']\n" + CASE,
        ["[axes]", "field 'devices'", "'cpu' is listed twice"],
    ),
    (HEAD + "[axes]\nbatch_sizes = [0]\n" + CASE, ["[axes]", "field 'batch_sizes'", "positive"]),
    (HEAD + "[cases]\n", ["unknown top-level key 'cases'"]),
    (HEAD, ["no [[case]]"]),
    ("case = 3\n" + HEAD, ["array of tables"]),
    (HEAD + "[axes]\nbackends = 'naive'\n" + CASE, ["[axes]", "field 'backends'", "an array"]),
    ('[suite]\nname = "x"\nbroken = \n', ["invalid TOML", "line 3"]),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=range(len(BAD)))
def test_bad_suite_messages_name_file_case_and_field(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    for part in expected:
        assert part in message
    assert isinstance(info.value, UserError)


def test_message_names_case_by_position(tmp_path):
    text = HEAD + CASE + CASE.replace('"a"', '"b"') + CASE.replace('"a"', '"c"') + "stride = 0\n"
    with pytest.raises(SuiteError, match=r"bad\.toml: case 'c' \(#3\): field 'stride': .*>= 1"):
        load_suite(write(tmp_path, text))


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(SuiteError, match="nope.toml: no such suite file"):
        load_suite(tmp_path / "nope.toml")
    with pytest.raises(SuiteError, match=r"no_such_suite: no suite of that name.*known: .*smoke"):
        load_suite("no_such_suite")
    with pytest.raises(SuiteError, match="no such suite directory"):
        list_suites(tmp_path / "nowhere")


def test_names_resolve_in_cwd_first_then_the_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_suite("smoke").path.resolve() == (SHIPPED_DIR / "smoke.toml").resolve()
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "smoke.toml").write_text(HEAD + CASE)
    assert find_suite("smoke") == tmp_path.joinpath("suites", "smoke.toml").relative_to(tmp_path)
    assert load_suite("smoke").name == "x"
    names = [i.name for i in list_suites()]
    assert "x" in names and "smoke" not in names and "resnet50" in names  # ./suites shadows


def test_defaults_apply_unless_the_case_sets_them():
    suite = parse_suite(
        HEAD
        + "[defaults]\nbatch = 4\nbias = false\n"
        + CASE
        + "batch = 2\n"
        + CASE.replace('"a"', '"b"')
    )
    assert [c.problem.batch for c in suite.cases] == [2, 4]
    assert [c.problem.bias for c in suite.cases] == [False, False]
    assert suite.axes == Axes()  # float32, cpu, forward, each case's batch, every backend
    assert parse_suite(CASE, "dir/mine.toml").name == "mine"  # [suite] name defaults to stem


# ---------------------------------------------------------------------------------------------
# Ids


def pinned_case() -> ConvCase:
    problem = ConvProblem(
        batch=2, in_channels=8, out_channels=16, spatial=(16, 16), kernel=3, padding=1
    )
    return ConvCase("conv2d_3x3_pad1", problem)


def test_ids_are_pinned():
    # If this fails, every stored result loses its link to its suite case: change with care.
    c = pinned_case()
    assert c.case_id == "8bc1bb13e7bc"
    assert Task(c, "naive", "float32", "cpu", "forward").key == "fc772b590072"


def test_ids_are_stable_and_field_sensitive():
    a, b = load_suite("smoke"), load_suite(SHIPPED_DIR / "smoke.toml")
    assert [c.case_id for c in a.cases] == [c.case_id for c in b.cases]
    assert len({c.case_id for c in a.cases}) == len(a.cases)
    c = pinned_case()
    assert ConvCase(c.name, c.problem, count=7).case_id == c.case_id  # count is not measured
    assert ConvCase("other", c.problem).case_id != c.case_id
    for change in ({"batch": 3}, {"padding": "same"}, {"bias": False}, {"groups": 8}):
        assert ConvCase(c.name, dataclasses.replace(c.problem, **change)).case_id != c.case_id
    # equivalent spellings of one problem give one id
    same = dataclasses.replace(c.problem, kernel=(3, 3), stride=(1,), padding=[1, 1])
    assert ConvCase(c.name, same).case_id == c.case_id
    keys = {t.key for t in a.tasks(registered=backend_names())}
    assert len(keys) == len(a.tasks(registered=backend_names()))


# ---------------------------------------------------------------------------------------------
# Task expansion


def test_tasks_cover_the_axes_in_order():
    suite = load_suite("smoke")
    tasks = suite.tasks(registered=backend_names())
    backends = ["naive", "im2col", "fft", "winograd", "torch", "onednn"]
    backends += ["onednn_packed", "cudnn", "cudnn_tf32", "cudnn_benchmark"]  # every registered
    assert len(tasks) == len(suite.cases) * len(backends) * 2
    assert [t.backend for t in tasks[: len(backends)]] == backends  # backend varies fastest
    assert {t.direction for t in tasks[: len(backends)]} == {"forward"}
    assert tasks[len(backends)].direction == "backward"
    assert [t.case for t in tasks[:: 2 * len(backends)]] == list(suite.cases)
    assert tasks == suite.tasks(registered=backend_names())  # deterministic


def test_task_overrides_and_batch_sizes():
    suite = load_suite("smoke")
    tasks = suite.tasks(
        registered=backend_names(),
        backends=["naive", "im2col"],
        dtypes=["float64", "float32"],
        devices=["cpu"],
        directions=["forward"],
        batch_sizes=[1, 8],
    )
    assert len(tasks) == len(suite.cases) * 2 * 2 * 2
    first = tasks[:8]
    assert [t.case.name for t in first] == [f"conv2d_3x3_pad1@n{n}" for n in (1,) * 4 + (8,) * 4]
    assert [t.dtype for t in first[:4]] == ["float64", "float64", "float32", "float32"]
    assert first[4].problem.batch == 8 and first[0].problem.batch == 1
    assert first[0].torch_dtype == torch.float64
    # a batch variant has the id of the same case written out with that name and batch
    c = suite.cases[0]
    written = ConvCase(f"{c.name}@n8", dataclasses.replace(c.problem, batch=8))
    assert first[4].case.case_id == written.case_id


def test_axes_in_file_drive_expansion(tmp_path):
    text = HEAD + '[axes]\nbackends = ["im2col"]\nbatch_sizes = [3]\ndtypes = ["bfloat16"]\n'
    suite = parse_suite(text + CASE)
    (task,) = suite.tasks(registered=backend_names())
    got = (task.backend, task.dtype, task.case.name, task.problem.batch)
    assert got == ("im2col", "bfloat16", "a@n3", 3)


def test_bad_overrides_and_unknown_backends(tmp_path):
    suite = load_suite(write(tmp_path, HEAD + CASE))
    with pytest.raises(SuiteError, match=r"bad\.toml: override of axis 'dtypes': .*'half'"):
        suite.tasks(registered=backend_names(), dtypes=["half"])
    with pytest.raises(SuiteError, match=r"override of axis 'batch_sizes': .*positive"):
        suite.tasks(registered=backend_names(), batch_sizes=[-1])
    with pytest.raises(SuiteError, match=r"override of axis 'backends': unknown backend 'nope'"):
        suite.tasks(registered=backend_names(), backends=["nope"])
    suite = load_suite(write(tmp_path, HEAD + "[axes]\nbackends = ['winogard']\n" + CASE))
    with pytest.raises(SuiteError, match=r"\[axes\]: field 'backends': unknown backend 'winogard'"):
        suite.tasks(registered=backend_names())


# ---------------------------------------------------------------------------------------------
# Writing


def test_dump_bare_cases_with_header_and_awkward_strings():
    cases = [
        pinned_case(),
        ConvCase(
            'dw\t"quoted" \\',
            ConvProblem(
                batch=1,
                in_channels=4,
                out_channels=4,
                spatial=(9,),
                kernel=4,
                padding="same",
                groups=4,
                bias=False,
            ),
            count=3,
        ),
    ]
    axes = Axes(dtypes=("float16",), devices=("cuda:1",), batch_sizes=(1, 2), backends=("fft",))
    text = suite_to_toml(
        cases,
        name="gen",
        description='a "model"',
        source="x\ny",
        axes=axes,
        header="generated\nby a test",
    )
    assert text.startswith("# generated\n# by a test\n[suite]\n")
    suite = parse_suite(text)
    assert suite == Suite("gen", 'a "model"', "x\ny", None, tuple(cases), axes)
    assert suite_to_toml(suite) == suite_to_toml(parse_suite(suite_to_toml(suite)))


@st.composite
def problems(draw) -> ConvProblem:
    nd = draw(st.sampled_from([1, 2]))
    sizes = st.lists(st.integers(1, 5), min_size=nd, max_size=nd)
    groups = draw(st.sampled_from([1, 2, 3]))
    padding = draw(st.one_of(st.sampled_from(["same", "valid"]), st.integers(0, 3), sizes))
    try:
        return ConvProblem(
            batch=draw(st.integers(1, 4)),
            in_channels=groups * draw(st.integers(1, 3)),
            out_channels=groups * draw(st.integers(1, 3)),
            spatial=draw(st.lists(st.integers(1, 40), min_size=nd, max_size=nd)),
            kernel=draw(st.one_of(st.integers(1, 5), sizes)),
            stride=draw(st.one_of(st.integers(1, 3), sizes)),
            padding=padding,
            dilation=draw(st.one_of(st.integers(1, 3), sizes)),
            groups=groups,
            bias=draw(st.booleans()),
        )
    except ProblemError:
        assume(False)


@given(st.lists(problems(), min_size=1, max_size=4), st.integers(1, 9))
def test_round_trip_property(problem_list, count):
    cases = [ConvCase(f"c{i}", p, count) for i, p in enumerate(problem_list)]
    suite = parse_suite(suite_to_toml(cases))
    assert suite.cases == tuple(cases)
    assert [c.case_id for c in suite.cases] == [c.case_id for c in cases]
