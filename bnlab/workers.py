"""Sweep workers that never outlive their launcher, and a stopped sweep that starts nothing.

Hydra's joblib launcher runs a parallel sweep's jobs in loky worker processes, children of
the launching process, and hands them jobs through a queue that holds a few jobs ahead.
Left alone, a stopped sweep goes on: a worker catches the SystemExit of a job stopped by
SIGTERM and takes the next job from the queue, and after the launcher is killed the
workers train what the queue still holds, then sit idle for minutes. Here:

- the launcher (`stop_workers_on_sigterm`): SIGTERM forwards the signal to its workers (each
  checkpoints its run at the end of its step and records it `failed`, as a single run
  does), waits for them to exit (SIGKILL after `WORKER_GRACE_S`), and exits with 143;
- a worker (`guard_worker`, at the start of every job): refuses the job when its launcher
  is gone, and asks the kernel for SIGTERM when it dies (SIGKILL): a job in training then
  stops at the end of its step as above, and an idle worker exits at once;
- a worker whose job was stopped by a signal exits (`exit_worker`) instead of taking the
  next job from the queue.

Only for the joblib launcher: a SLURM job's parent is slurmstepd, on another machine.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("bnlab")

# The launching process's pid, set by bnlab.train.main for the jobs it starts (inherited
# by the loky workers it spawns).
LAUNCHER_PID_ENV = "BNLAB_LAUNCHER_PID"
JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
WATCH_EVERY_S = 0.5
WORKER_GRACE_S = 20.0


def _children(pid: int) -> list[int]:
    """The pids of `pid`'s child processes (Linux /proc; empty elsewhere)."""
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            pass
    return kids


def _is_resource_tracker(pid: int) -> bool:
    """joblib's and multiprocessing's resource trackers ignore SIGTERM and end by themselves
    when the launcher's end of their pipe closes: nothing to wait for."""
    try:
        return b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a dead child not yet reaped is a zombie: gone for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stop_workers_on_sigterm() -> None:
    """In the launching process of a sweep: on SIGTERM, stop every worker and start nothing."""
    os.environ[LAUNCHER_PID_ENV] = str(os.getpid())
    # After a stop, loky's resource tracker (started with this environment) removes the
    # semaphores and memory-mapped folders the launcher left, and warns of each as "leaked":
    # the cleanup is the point, the warning is noise.
    quiet = "ignore::UserWarning:joblib.externals.loky.backend.resource_tracker"
    os.environ["PYTHONWARNINGS"] = ",".join(w for w in (os.environ.get("PYTHONWARNINGS"), quiet) if w)

    def stop(signum, _frame) -> None:
        workers = [p for p in _children(os.getpid()) if not _is_resource_tracker(p)]
        for pid in workers:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + WORKER_GRACE_S
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in workers:
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        print(f"bnlab-train: sweep stopped by {signal.Signals(signum).name}: no job started after it; "
              f"a run it stopped is recorded as failed with a checkpoint; run the same command again "
              f"to resume (finished runs are skipped)", file=sys.stderr, flush=True)
        os._exit(128 + signum)  # not through Hydra and joblib: they would report the workers' end

    signal.signal(signal.SIGTERM, stop)


def _launcher(hc) -> int | None:
    """The launcher's pid when this process is one of its joblib workers, else None."""
    pid = os.environ.get(LAUNCHER_PID_ENV)
    if not pid or not pid.isdigit() or int(pid) == os.getpid():
        return None  # not launched by bnlab.train.main, or the job runs in the launcher itself
    if str(hc.launcher.get("_target_")) != JOBLIB_LAUNCHER:
        return None
    return int(pid)


def _term_on_parent_death() -> bool:
    """Linux: the kernel sends this process SIGTERM the moment its parent dies
    (prctl PR_SET_PDEATHSIG), so a run stops within its current step; the watching thread
    below is the fallback elsewhere, within WATCH_EVERY_S. True when the kernel will."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


_watching: list[int] = []  # the launcher this worker process watches (one thread per process)


def guard_worker(hc) -> None:
    """At the start of a job in a joblib worker: exit if the launcher is gone; else make
    sure a thread of this worker watches the launcher for as long as the worker lives."""
    launcher = _launcher(hc)
    if launcher is None:
        return
    kernel_signals = _term_on_parent_death()
    if os.getppid() != launcher:  # after the request above: a death in between is seen here
        print(f"bnlab-train: the sweep's launcher (pid {launcher}) is gone: this worker starts no "
              f"job and exits", file=sys.stderr, flush=True)
        os._exit(128 + signal.SIGTERM)
    if _watching:
        return
    _watching.append(launcher)

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(WATCH_EVERY_S)
        # Orphaned. A training job's SIGTERM handler checkpoints and stops the run; an idle
        # worker (no handler) dies of it. Either way nothing more is trained here. Where the
        # kernel has sent it already, not a second time: a second SIGTERM means "stop now",
        # which would cut the checkpoint the first one is writing.
        if not kernel_signals:
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(WORKER_GRACE_S)
        os._exit(128 + signal.SIGTERM)  # a job that did not stop in time

    threading.Thread(target=watch, name="bnlab-launcher-watch", daemon=True).start()


def exit_worker(hc, code: int) -> None:
    """A joblib worker whose job was stopped by a signal exits now: returning would let it
    take the next job from the launcher's queue. Elsewhere (the launcher itself, SLURM)
    a plain SystemExit, as before."""
    if _launcher(hc) is not None:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
