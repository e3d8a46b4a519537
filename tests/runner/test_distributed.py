"""Shards + merge, several devices at once, and the Ray executor on a local cluster."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from convbench import results
from convbench.errors import UserError
from convbench.problem import load_suite
from convbench.problem.shard import parse_shard, shard_tasks
from convbench.store.merge import merge


def test_shards_partition_the_sweep_deterministically():
    suite = load_suite("resnet50")
    tasks = suite.tasks(backends=["naive", "im2col", "onednn"], directions=["forward", "backward"])
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


def test_sharded_runs_merge_to_the_unsharded_rows(tiny_suite, tmp_path, fast, run_cli):
    common = ["--backends", "naive,cudnn", "--directions", "forward", "--run-id", "sweep-1", *fast]
    for k in (1, 2):
        proc = run_cli(
            [
                "run",
                str(tiny_suite),
                "--db",
                str(tmp_path / f"s{k}.sqlite"),
                "--shard",
                f"{k}/2",
                *common,
            ]
        )
        assert proc.returncode == 0, proc.stderr
    out = tmp_path / "all.sqlite"
    proc = run_cli(
        [
            "merge",
            str(out),
            str(tmp_path / "s1.sqlite"),
            str(tmp_path / "s2.sqlite"),
            str(tmp_path / "s1.sqlite"),
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert "duplicates skipped" in proc.stdout
    df = results.load(out)
    want = load_suite(tiny_suite).tasks(backends=["naive", "cudnn"], directions=["forward"])
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


def test_several_devices_in_parallel(tiny_suite, tmp_path, fast, run_cli):
    db = tmp_path / "r.sqlite"
    proc = run_cli(
        [
            "run",
            str(tiny_suite),
            "--db",
            str(db),
            "--devices",
            "cpu,cuda:0",
            "--backends",
            "naive,cudnn",
            "--directions",
            "forward",
            *fast,
        ]
    )
    assert proc.returncode == 0, proc.stderr
    df = results.load(db)
    assert len(df) == 2 * 2 * 2
    cuda = df[df.device == "cuda:0"]
    assert set(cuda.status) == {"unsupported"} and set(cuda.reason) == {"no CUDA device"}
    assert set(df[(df.device == "cpu") & (df.backend == "naive")].status) == {"ok"}


def test_ray_executor_matches_local_and_survives_a_killed_worker(
    tiny_suite, tmp_path, plugin_env, fast, run_cli
):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'convbench[ray]')")
    args = ["--backends", "naive,flaky,cudnn", "--directions", "forward", *fast]
    local_db, ray_db = tmp_path / "local.sqlite", tmp_path / "ray.sqlite"
    marker = tmp_path / "flaky.marker"
    proc = run_cli(["run", str(tiny_suite), "--db", str(local_db), *args], env=plugin_env)
    assert proc.returncode == 0, proc.stderr
    local = results.load(local_db)
    # locally, the first flaky call kills the worker: an error row, and the sweep goes on
    assert (local.status == "error").sum() == 1
    assert "worker process died" in local[local.status == "error"].reason.iloc[0]

    marker.unlink()
    env = dict(plugin_env, RAY_DISABLE_USAGE_STATS="1")
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
