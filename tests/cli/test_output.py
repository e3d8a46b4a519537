"""What the terminal commands print: tables whole whatever the width, commands never wrapped,
flagged results counted and named, the order and baselines as they were. A synthetic store,
no worker."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from convbench.cli import main
from convbench.report.terminal import print_table
from convbench.store import Store

BACKENDS = ["winograd", "fft", "im2col", "naive", "torch"]
OFF_PACE = (
    "off pace: the host ran the reference kernel 40% slower than usual while this was measured"
)


def _rows(case: str, flagged: set[str], vendor: bool) -> list[dict]:
    rows = []
    names = [*BACKENDS, "onednn"] if vendor else BACKENDS
    for i, backend in enumerate(names):
        samples = [0.1 * (i + 1) * (1 + 0.01 * k) for k in range(12)]
        rows.append(
            {
                "run_id": "r1",
                "result_key": f"{case}/{backend}/float32/cpu/forward",
                "status": "ok",
                "backend": backend,
                "case_name": case,
                "dtype": "float32",
                "device": "cpu",
                "direction": "forward",
                "median_ms": samples[6],
                "rel_err": 1e-7,
                "problem_json": json.dumps({"batch": 1}),
                "disturbed": int(backend in flagged),
                "reason": OFF_PACE if backend in flagged else None,
                "samples": samples,
            }
        )
    return rows


@pytest.fixture
def store(tmp_path):
    """Two cases: case_a with onednn (the vendor baseline), case_b without (torch's place);
    three results of case_a flagged off pace."""
    db = tmp_path / "out.sqlite"
    with Store(db) as s:
        s.create_run("r1", suite="s", suite_path=None, command="c", config={}, env={})
        rows = _rows("case_a", {"fft", "naive", "onednn"}, True) + _rows("case_b", set(), False)
        for row in rows:
            samples = row.pop("samples")
            s.add_result(row, samples)
    return db


def test_compare_to_a_file_keeps_every_column_in_the_order_asked(store, capsys):
    order = ["naive", "winograd", "im2col", "fft"]
    assert main(["compare", "--db", str(store), "--backends", ",".join(order)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("case"))
    assert header.split() == ["case", "baseline", *order]
    geo = out[out.index("geometric mean") :]
    backends = [
        line.split()[0] for line in geo.splitlines() if line.split()[:1] in [[b] for b in order]
    ]
    assert backends == order
    # the geomean's baseline: onednn for one case, torch for the other, both said
    words = " ".join(out.split())
    assert "onednn (1 case), torch (1)" in words or "torch (1 case), onednn (1)" in words


def test_compare_counts_and_names_flagged_results(store, capsys):
    assert main(["compare", "--db", str(store)]) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if "flagged" in x and "of" in x]
    assert line.startswith("convbench: 3 of 11 results flagged (off pace 3)")
    assert "convbench calibrate --interference" in line


def test_run_summary_counts_flagged_results_and_never_wraps_the_command(store):
    from convbench.cli.run import _summary

    buffer = io.StringIO()
    out = Console(file=buffer, width=60)
    long_db = "/a/very/long/path/to/some/results/store/that/needs/room.sqlite"

    class Named:
        def __init__(self, s):
            self.s = s
            self.path = long_db

        def result_rows(self, run_id):
            return self.s.result_rows(run_id)

    with Store(store) as s:
        _summary(out, Named(s), "r1", None)
    text = buffer.getvalue()
    assert "3 of 11 results flagged (off pace 3)" in text.replace("\n", " ")
    assert f"`convbench export --db {long_db} --run r1 --out x.csv`" in text
    header = next(line for line in text.splitlines() if "flagged" in line and "backend" in line)
    assert header


def test_a_table_wider_than_the_terminal_is_dealt_into_parts():
    columns = ["case", *(f"backend_{i}" for i in range(8))]
    rows = [[f"case_{r}", *(f"{r + i / 10:.3f}×" for i in range(8))] for r in range(3)]
    buffer = io.StringIO()
    console = Console(file=buffer, width=60, force_terminal=True, color_system=None)
    print_table(console, "speedups", columns, rows, text_columns=1)
    text = buffer.getvalue()
    assert "(part 1 of" in text and "(part 2 of" in text
    for name in columns[1:]:  # every column whole, none cut to a fragment
        assert text.count(name) == 1
    assert text.count("case_2") >= 2  # the key column repeats in every part
    assert all(len(line) <= 60 for line in text.splitlines())


def test_a_table_not_on_a_terminal_is_written_at_full_width():
    columns = ["case", *(f"backend_{i}" for i in range(8))]
    rows = [["case_0", *("1.000×" for _ in range(8))]]
    buffer = io.StringIO()
    print_table(Console(file=buffer, width=60), "t", columns, rows, text_columns=1)
    header = next(line for line in buffer.getvalue().splitlines() if "case" in line)
    assert header.split() == columns
