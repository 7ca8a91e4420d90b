"""How many torch threads a run uses (`trainer.num_threads`), and a warning when it has more
than the cores free for it.

On a CPU, torch's intra-op threads default to every core. With anything else running, the
threads wait on each other: measured on a 2-core machine with one core busy, a 2,000-step
MNIST MLP run took 10.4 ms/step with two threads and 2.7 with one. So:

- `auto` (the default): in a parallel sweep of the local launcher, the cores shared out
  between its `n_jobs` jobs (one each when n_jobs is the core count); under SLURM, the task's
  `cpus_per_task`; for a single run, the cores not busy (this process's cores,
  os.sched_getaffinity, less the 1-minute load average), at least one;
- an integer: that many (a warning when it exceeds the cores free for the run);
- null: torch's own default (every core).

Threads change the speed and the last bits of a run's numbers (the order of floating-point
sums; on 200-step runs the MLP's training loss and every metric of the small CNN differed
between 1 and 2 threads), not what a run learns. Each run records the count it used
(run.json env.torch_threads); the studies' sweeps and scripts/check_rerun.py use one thread.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger("bnlab")

AUTO = "auto"


def cores_available() -> int:
    """The cores this process may run on (a container's or taskset's share of the machine)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cores_free(cores: int, load: float | None = None) -> int:
    """The cores not busy: `cores` less the 1-minute load average, rounded (0 when all busy)."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
    return max(0, min(cores, int(cores - load + 0.5)))


def choose_threads(setting, *, jobs_sharing: int | None = None, task_cpus: int | None = None,
                   cores: int | None = None, load: float | None = None) -> tuple[int | None, int, str]:
    """(threads, cores free for this run, where that number comes from) for a
    `trainer.num_threads` setting. `jobs_sharing`: the parallel jobs of a local sweep that
    share the cores; `task_cpus`: a SLURM task's cores. threads None keeps torch's default."""
    cores = cores or cores_available()
    if task_cpus:
        free, why = task_cpus, f"the SLURM task's cpus_per_task={task_cpus}"
    elif jobs_sharing:
        free, why = max(1, cores // jobs_sharing), f"{cores} core(s) shared by {jobs_sharing} parallel job(s)"
    else:
        free = cores_free(cores, load)
        why = f"{cores} core(s), load average {os.getloadavg()[0] if load is None else load:.2f}"
    threads = max(1, free) if setting == AUTO else setting
    return threads, free, why


def set_torch_threads(setting, **where) -> int | None:
    """Choose the run's threads (choose_threads), set them in torch, and warn in one line
    when they exceed the cores free for the run. Returns the number set (None: torch's)."""
    import torch

    threads, free, why = choose_threads(setting, **where)
    if threads is not None:
        torch.set_num_threads(threads)
    used = threads if threads is not None else torch.get_num_threads()
    if used > free:
        log.warning("trainer.num_threads: this run uses %d torch thread(s) but %d core(s) are free for it "
                    "(%s): its steps will be slower than on an idle machine%s", used, free, why,
                    "" if setting == AUTO else "; trainer.num_threads=auto uses the free cores")
    return threads
