"""Processes laffi starts and stops: every process below one (torchrun puts ranks in sessions of their own), a
signal to all of them, and a Stop that escalates to SIGKILL after a grace period; a training job, a vLLM server and
the ranks of a launch are stopped the same way.

Usage:
    stop_tree(pid, grace=30)      # SIGTERM to pid, its group and its descendants; SIGKILL to what is left later
    alive(pid)                    # False for a finished process, a zombie included
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc): torchrun starts its ranks in sessions of their own, so a process
    group signal alone would miss them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def signal_tree(pid: int, sig: int) -> list[int]:
    """Send `sig` to pid's process group (the job started it in a session of its own), to pid and to every
    descendant; returns the pids signalled that still existed."""
    hit = []
    targets = [pid, *descendants(pid)]
    try:
        group = os.getpgid(pid)
        if group != os.getpgrp():  # never our own group: that would signal the app (or the test) itself
            os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for p in targets:
        try:
            os.kill(p, sig)
            hit.append(p)
        except (ProcessLookupError, PermissionError):
            pass
    return hit


def stop_tree(pid: int, grace: float, on_kill=None) -> threading.Thread:
    """SIGTERM now (every rank saves a checkpoint at the end of its step and exits); whatever is still alive after
    `grace` seconds gets SIGKILL. Returns the watcher thread (a daemon: Stop returns at once)."""
    tree = [pid, *descendants(pid)]  # remembered now: once the parent dies its children are re-parented
    signal_tree(pid, signal.SIGTERM)

    def escalate():
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not any(alive(p) for p in tree):
                return
            time.sleep(0.2)
        left = [p for p in tree if alive(p)]
        for p in left:
            signal_tree(p, signal.SIGKILL)
        if left and on_kill:
            on_kill(left)

    watcher = threading.Thread(target=escalate, daemon=True, name=f"stop-{pid}")
    watcher.start()
    return watcher


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie, finished but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (not Linux): kill(0) said it exists
        return True
