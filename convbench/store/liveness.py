"""Is a ``running`` run still running? A run records which process owns it (host, pid and the
process's start time); a run whose owner on this host is gone — ``kill -9``, a power cut, a
closed laptop — is shown as ``stale`` instead of ``running`` forever, and ``--resume`` may
take it over. A live owner is never taken over. On another host the owner cannot be checked;
the run stays ``running`` with the time of its last result (``heartbeat_at``)."""

from __future__ import annotations

import os
import socket

import psutil


def this_process() -> dict:
    """The owner record of a run started or resumed by this process."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": _started(pid)}


def _started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def owner_alive(owner: dict | None) -> bool | None:
    """True/False for an owner on this host (a reused pid is not the owner: its start time
    differs); None when it cannot be told (another host, no owner recorded)."""
    if not owner or owner.get("host") != socket.gethostname() or not owner.get("pid"):
        return None
    started = _started(int(owner["pid"]))
    if started is None:
        return False
    recorded = owner.get("started")
    return recorded is None or abs(started - recorded) < 1.0


def effective_status(status: str | None, owner: dict | None) -> str | None:
    """The stored status, with ``running`` turned ``stale`` when its owner is gone."""
    if status == "running" and owner_alive(owner) is False:
        return "stale"
    return status
