"""The decisions file: written diffable, read back, validated, stale entries ignored."""

from __future__ import annotations

import json

import pytest

from convbench.errors import UserError
from convbench.store.decisions import FORMAT, read, write

CONTEXT = {"torch": "2.13.0", "device_name": "cpu X", "threads": 2, "convbench": "0.1.0"}


def entry(**kw):
    e = dict(problem="abc", dtype="float32", device="cpu", backend="winograd", context=CONTEXT)
    e["pass"] = "forward"
    e.update(kw)
    return e


def test_round_trip_is_sorted_and_diffable(tmp_path):
    path = write(tmp_path / "d.json", [entry(problem="b"), entry(problem="a")], model="m:f",
                 input_shape=[1, 3, 8, 8])  # fmt: skip
    text = path.read_text()
    assert text.endswith("\n") and json.loads(text)["format"] == FORMAT
    table = read(path)
    assert table.model == "m:f" and table.input_shape == [1, 3, 8, 8]
    assert [e["problem"] for e in table.entries] == ["a", "b"]
    assert table.lookup()[("a", "float32", "cpu", "forward")]["backend"] == "winograd"


def test_stale_entries_are_ignored_with_a_line_each(tmp_path):
    old = entry(problem="x", context={**CONTEXT, "threads": 8})
    path = write(tmp_path / "d.json", [entry(), old], model="m:f", input_shape=[1])
    fresh = read(path).fresh(lambda device: CONTEXT)
    assert [e["problem"] for e in fresh.entries] == ["abc"]
    (line,) = fresh.ignored
    assert "entry #" in line and "threads 8 (now 2)" in line and str(path) in line


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "invalid JSON"),
        ('{"format": "other"}', "not a decisions file"),
        (f'{{"format": "{FORMAT}", "decisions": 3}}', "field 'decisions'"),
        (f'{{"format": "{FORMAT}", "decisions": [{{"problem": "a"}}]}}',
         "entry #1: field 'dtype' is missing"),
        (f'{{"format": "{FORMAT}", "decisions": [{json.dumps(entry(**{"pass": "sideways"}))}]}}',
         "entry #1: field 'pass'"),
        (f'{{"format": "{FORMAT}", "decisions": [{json.dumps(entry(threads=1, context=5))}]}}',
         "entry #1: field 'context': expected dict"),
    ],
)  # fmt: skip
def test_broken_files_are_one_line_errors_naming_file_and_entry(tmp_path, document, message):
    path = tmp_path / "broken.json"
    path.write_text(document)
    with pytest.raises(UserError, match=message) as info:
        read(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


LAYOUT = {"memory_format": "channels_last", "device": "cpu", "context": CONTEXT, "reason": "r"}


def test_the_layout_round_trips_and_goes_stale_like_an_entry(tmp_path):
    path = write(tmp_path / "d.json", [entry()], model="m:f", input_shape=[1], layout=LAYOUT)
    table = read(path)
    assert table.memory_format == "channels_last" and table.layout["reason"] == "r"
    assert read(write(tmp_path / "e.json", [entry()], model="m", input_shape=[1])).layout is None
    assert table.fresh(lambda device: CONTEXT).memory_format == "channels_last"
    fresh = table.fresh(lambda device: {**CONTEXT, "torch": "9"})
    assert fresh.memory_format == "contiguous" and fresh.layout is None
    assert any("layout channels_last on cpu ignored" in line for line in fresh.ignored)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("nhwc", "field 'layout': expected an object"),
        ({**LAYOUT, "memory_format": "nhwc"}, "layout: field 'memory_format': 'nhwc' is not one"),
        ({**LAYOUT, "context": None}, "layout: field 'context': expected dict"),
    ],
)
def test_a_broken_layout_is_a_one_line_error(tmp_path, layout, message):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"format": FORMAT, "decisions": [entry()], "layout": layout}))
    with pytest.raises(UserError, match=message) as info:
        read(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


STEP = dict(layer="layer1.0.conv2", problem="abc", backend="winograd", layout="channels_last",
            arrives="contiguous", convert=True, ms=1.0, convert_ms=0.1)  # fmt: skip
PLAN = {"dtype": "float32", "device": "cpu", "context": CONTEXT, "layers": [STEP],
        "conv_ms": 1.0, "convert_ms": 0.1, "predicted_ms": 1.1}  # fmt: skip


def test_the_plan_round_trips_applies_with_per_layer_and_goes_stale(tmp_path):
    path = write(tmp_path / "d.json", [entry()], model="m:f", input_shape=[1],
                 layout={**LAYOUT, "per_layer": True}, plan=PLAN)  # fmt: skip
    table = read(path)
    assert table.plan["layers"][0]["layout"] == "channels_last"
    assert table.per_layer == table.plan
    assert read(write(tmp_path / "e.json", [entry()], model="m", input_shape=[1],
                      plan=PLAN)).per_layer is None  # fmt: skip
    fresh = table.fresh(lambda device: {**CONTEXT, "threads": 4})
    assert fresh.plan is None and fresh.per_layer is None
    assert any("plan on cpu ignored" in line for line in fresh.ignored)
    older = read(write(tmp_path / "f.json", [entry()], model="m", input_shape=[1]))
    assert older.plan is None  # a file without a plan reads as before


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ([], "field 'plan': expected an object"),
        ({**PLAN, "layers": None}, "plan: field 'layers': expected list"),
        ({**PLAN, "dtype": "float8"}, "plan: field 'dtype': 'float8' is not one"),
        ({**PLAN, "layers": [{**STEP, "layout": "nhwc"}]},
         "plan: layer #1: field 'layout': 'nhwc' is not one"),
        ({**PLAN, "layers": [{**STEP, "arrives": "nchw"}]},
         "plan: layer #1: field 'arrives': 'nchw' is not one"),
        ({**PLAN, "layers": [{**STEP, "convert": False}]},
         "plan: layer #1: field 'convert': False but the input arrives in contiguous"),
        ({**PLAN, "layers": [{k: v for k, v in STEP.items() if k != "backend"}]},
         "plan: layer #1: field 'backend' is missing"),
    ],
)  # fmt: skip
def test_a_broken_plan_is_a_one_line_error(tmp_path, plan, message):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"format": FORMAT, "decisions": [entry()], "plan": plan}))
    with pytest.raises(UserError, match=message) as info:
        read(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
