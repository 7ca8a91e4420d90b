"""Signals that ask a run to stop: finish the step, checkpoint, end as `failed` with the reason.

SIGTERM (a scheduler's time limit, `kill`) and, under submitit on SLURM, the preemption
signal (USR2, sent `signal_delay_s` before the time limit) do not stop the process
mid-step. The handler only notes the request; the trainer sees it at the end of its
current step, saves a checkpoint there, and then `honour()` ends the run:

- SIGTERM: raises Terminated, so the run is closed as `failed` with "stopped by SIGTERM"
  and the sweep's counts are true; relaunched, the run resumes from that checkpoint.
- USR2 under submitit: calls submitit's own handler, which requeues the job on the
  cluster and exits; the requeued job resumes from the checkpoint.

A second signal while the first is pending stops at once. SIGINT keeps Python's
KeyboardInterrupt (Ctrl-C stops now; the last periodic checkpoint remains).
"""
from __future__ import annotations

import signal


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM: a scheduler's time limit, `kill`)."""


class StopRequests:
    """Context manager: while a run trains, turn stop signals into a request that the
    trainer honours at the end of a step. Only the main thread can install handlers;
    elsewhere nothing changes (and nothing is ever requested)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

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

    def _note(self, signum, _frame) -> None:
        if self.signum is not None:  # asked twice: stop now
            self.honour()
        self.signum = signum

    def honour(self) -> None:
        """End the run for the pending request (call after saving the checkpoint)."""
        previous = self._previous.get(self.signum)
        if self.signum != signal.SIGTERM and callable(previous):
            previous(self.signum, None)  # submitit: requeue, then sys.exit
        raise Terminated(self.reason)
