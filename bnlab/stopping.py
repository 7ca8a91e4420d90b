"""Signals that ask a run to stop: finish the step, checkpoint, end as `failed` with the reason.

SIGTERM (a scheduler's time limit, `kill`) and, under submitit on SLURM, the preemption
signal (USR2, sent `signal_delay_s` before the time limit) do not stop the process
mid-step. The handler only notes the request; the trainer sees it at the end of its
current step, saves a checkpoint there, and then `honour()` ends the run:

- SIGTERM: raises Terminated, so the run is closed as `failed` with "stopped by SIGTERM"
  and the sweep's counts are true; relaunched, the run resumes from that checkpoint.
- USR2 under submitit: calls submitit's own handler, which requeues the job on the
  cluster and exits; the requeued job resumes from the checkpoint.

A second signal while the first is pending stops at once — unless it comes within
REPEAT_WINDOW_S of the first: signals that arrive together are one request, not impatience
(a sweep stopped by `kill` of its process group reaches each worker both directly and
through the launcher; a dead launcher's workers hear of it from the kernel), and stopping
"at once" then would cut the checkpoint the first signal asked for. SIGINT keeps Python's
KeyboardInterrupt (Ctrl-C stops now; the last periodic checkpoint remains).
"""
from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time


# seconds within which a repeated stop signal is the same request (see the module docstring)
REPEAT_WINDOW_S = 2.0


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM: a scheduler's time limit, `kill`)."""


class StopRequests:
    """Context manager: while a run trains, turn stop signals into a request that the
    trainer honours at the end of a step. Only the main thread can install handlers;
    elsewhere nothing changes (and nothing is ever requested)."""

    def __init__(self):
        self.signum: int | None = None
        self._first_at = 0.0  # when the pending request arrived (time.monotonic)
        self._previous: dict[int, object] = {}
        self._holding = False

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def reason(self) -> str | None:
        if self.signum is None:
            return None
        name = signal.Signals(self.signum).name
        if self.signum == signal.SIGTERM:
            return f"stopped by {name}"
        return f"stopped by {name} (the scheduler's preemption or time-limit signal; requeued)"

    def __enter__(self) -> "StopRequests":
        signums = [signal.SIGTERM]
        # USR2 only where a Python handler is already there (submitit's requeue handler):
        # elsewhere its default action stays as it was
        if hasattr(signal, "SIGUSR2") and callable(signal.getsignal(signal.SIGUSR2)):
            signums.append(signal.SIGUSR2)
        try:
            for signum in signums:
                self._previous[signum] = signal.signal(signum, self._note)
        except ValueError:  # not the main thread
            self._restore()
        return self

    def __exit__(self, *exc) -> bool:
        self._restore()
        return False

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    @contextlib.contextmanager
    def holding(self):
        """While the runs' records are written (their summaries, failed or finished): stop
        signals are noted and never acted on, so that a repeat arriving then (a dead launcher's
        kernel signal, seconds after the first) cannot cut the records of the runs not yet
        written; a group of runs writes several."""
        self._holding = True
        self.__enter__()
        try:
            yield self
        finally:
            self.__exit__()
            self._holding = False

    def _note(self, signum, _frame) -> None:
        if self._holding:
            if self.signum is None:
                self.signum, self._first_at = signum, time.monotonic()
            return
        if self.signum is not None:
            if time.monotonic() - self._first_at >= REPEAT_WINDOW_S:  # asked again, later: stop now
                self.honour()
            return  # the same request, arriving twice
        self.signum, self._first_at = signum, time.monotonic()

    def honour(self, finished: str | None = None) -> None:
        """End the run for the pending request (call after saving the checkpoint). `finished`:
        the status of a run that ended before the request was honoured (it is not failed)."""
        previous = self._previous.get(self.signum)
        if self.signum != signal.SIGTERM and callable(previous):
            try:
                previous(self.signum, None)  # submitit: requeue, then sys.exit
            except subprocess.CalledProcessError as exc:
                if list(exc.cmd[:2]) != ["scontrol", "requeue"]:
                    raise
                requeue_again(str(exc.cmd[2]), exc)
        stopped = Terminated(self.reason)
        stopped.finished = finished
        raise stopped


# squeue's states of a job that has been requeued (or is being requeued)
REQUEUED_STATES = ("PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "COMPLETING")


def requeue_again(job_id: str, error: Exception, attempts: int = 5, wait_s: float = 2.0) -> None:
    """submitit's `scontrol requeue` was refused. Seen under load: slurmctld answered "Job is
    pending execution" while it was still settling the job's launch, then requeued it anyway
    a second later. Look again a few times: when the job is (being) requeued, or a retried
    requeue is accepted, exit as submitit does after a requeue (the checkpoint is saved);
    otherwise raise the original error."""
    for _ in range(attempts):
        time.sleep(wait_s)
        state = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True,
                               text=True).stdout.strip()
        if state in REQUEUED_STATES or subprocess.run(["scontrol", "requeue", job_id],
                                                      capture_output=True).returncode == 0:
            sys.exit(-1)
    raise error
