"""Shards + merge, several devices at once, and the Ray executor on a local cluster."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from convbench import results
from convbench.backends import backend_names
from convbench.cli import main
from convbench.errors import UserError
from convbench.problem import load_suite
from convbench.problem.shard import parse_shard, shard_tasks
from convbench.store.merge import merge


def test_shards_partition_the_sweep_deterministically():
    suite = load_suite("resnet50")
    tasks = suite.tasks(
        registered=backend_names(),
        backends=["naive", "im2col", "onednn"],
        directions=["forward", "backward"],
    )
    n = 4
    shards = [shard_tasks(tasks, k, n) for k in range(1, n + 1)]
    keys = [t.key for s in shards for t in s]
    assert sorted(keys) == sorted(t.key for t in tasks)  # every task exactly once
    assert shards == [shard_tasks(tasks, k, n) for k in range(1, n + 1)]  # deterministic
    for shard in shards:  # a case never straddles shards
        cases = {t.case.case_id for t in shard}
        assert all(
            t.case.case_id not in cases for other in shards if other is not shard for t in other
        )
    loads = [sum(t.problem.flops for t in s) for s in shards]
    assert max(loads) <= 1.35 * min(loads)  # balanced by estimated cost
    assert len(shard_tasks(tasks, 1, 1)) == len(tasks)


@pytest.mark.parametrize("text", ["0/4", "5/4", "a/b", "3", "1/0"])
def test_bad_shard_spec(text):
    with pytest.raises(UserError, match="--shard"):
        parse_shard(text)


def test_sharded_runs_merge_to_the_unsharded_rows(tiny_suite, tmp_path, fast, capsys, warm_workers):
    common = ["--backends", "naive,cudnn", "--directions", "forward", "--run-id", "sweep-1", *fast]
    for k in (1, 2):
        shard = ["--db", str(tmp_path / f"s{k}.sqlite"), "--shard", f"{k}/2"]
        assert main(["run", str(tiny_suite), *shard, *common]) == 0
    out = tmp_path / "all.sqlite"
    capsys.readouterr()
    shards = [str(tmp_path / "s1.sqlite"), str(tmp_path / "s2.sqlite")]
    assert main(["merge", str(out), *shards, str(tmp_path / "s1.sqlite")]) == 0
    assert "duplicates skipped" in capsys.readouterr().out
    df = results.load(out)
    want = load_suite(tiny_suite).tasks(
        registered=backend_names(), backends=["naive", "cudnn"], directions=["forward"]
    )
    assert sorted(df.result_key) == sorted(t.key for t in want)
    assert set(df.run_id) == {"sweep-1"}
    assert df.node_json.notna().all()


def test_merge_refuses_another_schema_version(tmp_path):
    from convbench.store import Store

    Store(tmp_path / "a.sqlite").close()
    shutil.copy(tmp_path / "a.sqlite", tmp_path / "b.sqlite")
    with sqlite3.connect(tmp_path / "b.sqlite") as conn:
        conn.execute("UPDATE meta SET value='0' WHERE key='schema_version'")
    with pytest.raises(UserError, match=r"b\.sqlite: results schema version 0"):
        merge(tmp_path / "out.sqlite", [tmp_path / "a.sqlite", tmp_path / "b.sqlite"])
    assert not (tmp_path / "out.sqlite").exists()  # refused before writing anything


def test_several_devices_in_parallel(tiny_suite, tmp_path, fast, warm_workers):
    db = tmp_path / "r.sqlite"
    args = ["--devices", "cpu,cuda:0", "--backends", "naive,cudnn", "--directions", "forward"]
    assert main(["run", str(tiny_suite), "--db", str(db), *args, *fast]) == 0
    df = results.load(db)
    assert len(df) == 2 * 2 * 2
    cuda = df[df.device == "cuda:0"]
    assert set(cuda.status) == {"unsupported"} and set(cuda.reason) == {"no CUDA device"}
    assert set(df[(df.device == "cpu") & (df.backend == "naive")].status) == {"ok"}


def test_ray_executor_matches_local_and_survives_a_killed_worker(
    tiny_suite, tmp_path, fast, run_cli, plugins, warm_workers
):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'convbench[ray]')")
    args = ["--backends", "naive,flaky,cudnn", "--directions", "forward", *fast]
    local_db, ray_db = tmp_path / "local.sqlite", tmp_path / "ray.sqlite"
    marker = Path(plugins["FLAKY_MARKER"])
    marker.unlink(missing_ok=True)
    # the two local runs in this process (their workers are what get killed); Ray's below
    # in a `convbench` process of its own, so that its cluster starts and stops with it
    assert main(["run", str(tiny_suite), "--db", str(local_db), "--no-interleave", *args]) == 0
    local = results.load(local_db)
    # locally, the first flaky call kills the worker: an error row, and the sweep goes on
    assert (local.status == "error").sum() == 1
    assert "worker process died" in local[local.status == "error"].reason.iloc[0]

    # interleaved, the group whose worker died is measured again task by task: the flaky
    # backend (it crashes only once) and its neighbours get results that say so
    marker.unlink()
    again_db = tmp_path / "again.sqlite"
    assert main(["run", str(tiny_suite), "--db", str(again_db), *args]) == 0
    again = results.load(again_db)
    assert set(again[again.backend != "cudnn"].status) == {"ok"}
    alone = again[again.reason.fillna("").str.startswith("measured alone")]
    assert set(alone.backend) == {"naive", "flaky"} and alone.case.nunique() == 1
    assert "worker process died" in alone.reason.iloc[0]

    marker.unlink()
    env = dict(plugins, RAY_DISABLE_USAGE_STATS="1")
    proc = run_cli(
        [
            "run",
            str(tiny_suite),
            "--db",
            str(ray_db),
            "--executor",
            "ray",
            "--cpus-per-task",
            "1",
            *args,
        ],
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    remote = results.load(ray_db)
    assert sorted(remote.result_key) == sorted(local.result_key)
    assert marker.exists()  # a worker really was killed mid-task ...
    assert set(remote[remote.backend != "cudnn"].status) == {"ok"}  # ... and retried
    assert set(remote[remote.backend == "cudnn"].status) == {"unsupported"}
    assert remote.node.notna().all()


def test_ray_placement_keeps_cpu_timing_alone():
    from convbench.runner.ray_executor import Node, Placement

    nodes = [Node("a", cpus=8, gpus=2), Node("b", cpus=4, gpus=0)]
    place = Placement(nodes, cpus_per_task=2, pack=False)
    first = place.place("cpu-1", "cpu")
    second = place.place("cpu-2", "cpu")
    assert {first.node.node_id, second.node.node_id} == {"a", "b"}  # one per node
    assert place.place("cpu-3", "cpu") is None  # both nodes are timing: wait
    assert place.place("gpu-1", "cuda:0") is None  # never beside a CPU timing
    assert place.release("cpu-1", first) is None  # nothing ran beside it
    gpu = place.place("gpu-1", "cuda:0")
    assert gpu.node.node_id == "a" and place.place("gpu-2", "cuda:0").node.node_id == "a"
    assert place.place("gpu-3", "cuda:0") is None  # two GPUs, two units
    assert place.place("cpu-3", "cpu") is None  # node a computes for its GPUs, b is busy
    assert place.release("gpu-1", gpu) == "gpu-2"  # GPUs share a node: recorded


def test_ray_placement_packs_cpu_tasks_on_disjoint_cores():
    from convbench.runner.ray_executor import Node, Placement

    place = Placement([Node("a", cpus=8, gpus=0)], cpus_per_task=3, pack=True)
    slots = [place.place(f"cpu-{k}", "cpu") for k in range(3)]
    assert slots[2] is None  # 8 // 3 = 2 slots
    assert slots[0].cores == (0, 1, 2) and slots[1].cores == (3, 4, 5)
    assert place.release("cpu-0", slots[0]) == "cpu-1"
    again = place.place("cpu-9", "cpu")
    assert again.cores == (0, 1, 2)
    assert not place.fits_anywhere("cuda:0")
