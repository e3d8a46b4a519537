"""The worker process: Ctrl-C while it is being spawned is never lost (deterministically); a
worker launched ahead of its run serves the run, or is killed when the run never comes."""

from __future__ import annotations

import os
import signal
import time
from multiprocessing.context import SpawnProcess

import psutil
import pytest

from convbench.cli import main
from convbench.runner.worker import Prelaunched, Worker


@pytest.fixture
def ctrl_c_during_spawn(monkeypatch):
    """Deliver SIGINT to this process at the worst moment: the worker process exists and the
    parent has not yet returned from starting it (the window that used to drop the signal)."""
    original = SpawnProcess.start
    sent = []

    def start_then_ctrl_c(self):
        original(self)
        if not sent:
            sent.append(self.pid)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(SpawnProcess, "start", start_then_ctrl_c)
    return sent


def test_a_ctrl_c_caught_by_python_mid_spawn_waits_until_the_child_has_its_data(monkeypatch, capfd):
    """The race behind a flaky run: Ctrl-C's C handler ran just before SIGINT was blocked, and
    CPython ran the Python handler right after the child was spawned, before the parent wrote
    the child's start-up data (the child then died on EOFError with a traceback). Reproduced
    exactly by running the current Python handler at that point, as the interpreter would."""
    import multiprocessing.popen_spawn_posix as popen_spawn_posix
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()  # its own spawn is not the one under test
    real = popen_spawn_posix.util.spawnv_passfds

    def spawn_then_python_handler(*args, **kwargs):
        pid = real(*args, **kwargs)
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        return pid

    monkeypatch.setattr(popen_spawn_posix.util, "spawnv_passfds", spawn_then_python_handler)
    worker = Worker()
    with pytest.raises(KeyboardInterrupt):
        worker.start()
    monkeypatch.undo()
    try:
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert worker.conn.poll(120), "the worker never answered"
        assert worker.conn.recv()[0] == "ready"  # it had its data and started
    finally:
        worker.kill()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "EOFError" not in err, err


def test_ctrl_c_while_the_worker_is_spawned_reaches_the_parent(ctrl_c_during_spawn):
    worker = Worker()
    with pytest.raises(KeyboardInterrupt):
        worker.start()
    child = ctrl_c_during_spawn[0]
    worker.kill()
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"


def test_ctrl_c_while_the_worker_is_spawned_stops_the_run(
    ctrl_c_during_spawn, tiny_suite, tmp_path, capsys
):
    db = tmp_path / "r.sqlite"
    assert main(["run", str(tiny_suite), "--db", str(db), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "nothing was stored" in err
    assert not db.exists()  # a store this run created and never used is not left behind


def test_the_worker_ignores_ctrl_c_and_the_parent_keeps_its_handler():
    worker = Worker()
    worker.start()
    try:
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set())
        assert signal.SIGINT not in blocked  # the parent's mask is restored
        os.kill(worker.proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the worker too
        assert worker.call(("env",), 60)["python"]  # ... which ignores it and keeps serving
    finally:
        worker.stop()


CTRL_C_AT_SPAWN = """
import os, signal, sys, time
from multiprocessing.context import SpawnProcess

original = SpawnProcess.start

def python_handles_sigint(pid):
    fields = dict(line.split(":\t") for line in open(f"/proc/{pid}/status").read().splitlines())
    return int(fields["SigCgt"], 16) & (1 << (signal.SIGINT - 1))

def start(self):
    original(self)
    # the worker's interpreter is up and importing (its KeyboardInterrupt handler is in place)
    deadline = time.monotonic() + 60
    while not python_handles_sigint(self.pid) and time.monotonic() < deadline:
        time.sleep(0.0005)
    os.killpg(0, signal.SIGINT)  # a terminal's Ctrl-C: this process and the worker being born

SpawnProcess.start = start
from convbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_to_the_process_group_at_spawn_in_a_fresh_process(tiny_suite, tmp_path):
    """In a fresh interpreter (multiprocessing's resource tracker not started yet), Ctrl-C
    reaches the parent and the worker exactly while the worker is spawned: exit 130, and no
    traceback from either (the worker was born with SIGINT blocked)."""
    import subprocess
    import sys

    db = tmp_path / "r.sqlite"
    proc = subprocess.run(
        [sys.executable, "-c", CTRL_C_AT_SPAWN, "run", str(tiny_suite), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
    )
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "Fatal Python error" not in proc.stderr
    assert "interrupted before the run started; nothing was stored" in proc.stderr
    assert not db.exists()


def test_a_message_of_an_unknown_kind_is_answered_at_once_with_the_known_ones():
    worker = Worker(threads=1)
    try:
        start = time.monotonic()
        with pytest.raises(ValueError, match=r"unknown message kind 'nope' \(known: bandwidth"):
            worker.call(("nope", 1), timeout_s=600)
        assert time.monotonic() - start < 120  # the start-up, not the time limit
        assert "malloc" in worker.call(("env",), timeout_s=120)  # and it goes on serving
    finally:
        worker.stop()


def _alive(pid: int) -> bool:
    return psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"


def test_a_prelaunched_worker_serves_the_first_call_and_one_never_used_is_killed():
    with Prelaunched(threads=1) as make:
        first = make()
        assert first.proc is not None and not first.ready  # spawned, its start-up not awaited
        try:
            assert first.call(("env",), timeout_s=120)["python"] and first.ready
        finally:
            first.stop()
        later = make()
        assert later is not first and later.proc is None  # made as usual, started on first use
    before = {c.pid for c in psutil.Process().children()}
    with Prelaunched(threads=1):  # the caller failed before its run: nothing takes the worker
        (child,) = {c.pid for c in psutil.Process().children()} - before
        assert _alive(child)
    assert not _alive(child)


def test_a_ctrl_c_held_back_until_the_prelaunched_child_was_spawned_kills_it(
    ctrl_c_during_spawn,
):
    with pytest.raises(KeyboardInterrupt):
        Prelaunched()
    assert not _alive(ctrl_c_during_spawn[0])
