"""`bnlab-train ... --dry-run`: every job a launch would run, and what would happen to it.

Each job is composed and validated exactly as the launch would (bnlab.train.compose_jobs),
then looked up in the run store the way the Hydra shell does before training: already done
(and where), being trained by another process right now, to be resumed from a checkpoint,
or to be trained. Nothing is trained and nothing is written: no folder, no lock, no
download (a missing dataset is reported by the validation, as in a real launch).
"""
from __future__ import annotations

import fcntl
from pathlib import Path

from omegaconf import DictConfig

from bnlab.store import fingerprint, resolved_config
from bnlab.sweep import LOCK_DIR, find_done, study_dir


def _locked_elsewhere(root: Path, fp: str) -> bool:
    """Whether a live process holds the lock of `fp` (without creating the lock file)."""
    try:
        f = open(root / LOCK_DIR / f"{fp}.lock", "r")
    except OSError:
        return False
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def job_state(cfg: DictConfig) -> tuple[str, Path | None]:
    """("already done" | "running elsewhere" | "to resume" | "to train", the run folder)."""
    from bnlab.checkpoint import find_resumable

    fp = fingerprint(resolved_config(cfg))
    root = study_dir(cfg)
    if _locked_elsewhere(root, fp):
        return "running elsewhere", None
    done = find_done(root, fp)
    if done is not None:
        return "already done", done
    unfinished, _ = find_resumable(root, fp, look_only=True)
    if unfinished is not None:
        return "to resume", unfinished
    return "to train", None


def _varying(jobs: list[list[str]]) -> list[list[str]]:
    """Each job's overrides, keeping those that differ between jobs (all of them for one job)."""
    if len(jobs) < 2:
        return jobs
    common = set(jobs[0]).intersection(*map(set, jobs[1:]))
    return [[o for o in job if o not in common] for job in jobs]


def _short(path: Path) -> str:
    """A run folder relative to the working directory when it is below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def describe_launch(composed: list[tuple[list[str], DictConfig]], parallel: int = 1) -> str:
    """The table `--dry-run` prints: one line per job (and the stack it trains in,
    bnlab.stack_plan), then the counts."""
    from bnlab.stack_plan import plan_stacks

    states = [job_state(cfg) for _, cfg in composed]
    cfgs = [cfg for _, cfg in composed]
    stacks = plan_stacks(cfgs, [st in ("to train", "to resume") for st, _ in states], parallel) \
        if len(cfgs) > 1 else [[0]] * len(cfgs)
    stacked = [s for s in stacks if len(s) > 1]
    in_stack = {i: n for n, members in enumerate(stacked) for i in members}
    shown = _varying([job for job, _ in composed])
    names = sorted({str(cfg.name) for _, cfg in composed})
    width = max((len(" ".join(j)) for j in shown), default=0)
    lines = [f"{'study' if len(names) == 1 else 'studies'} {', '.join(names)}: {len(composed)} job(s)"
             f"{'' if len(composed) < 2 else ' (the overrides that differ between them)'}"]
    for i, (job, (state, where)) in enumerate(zip(shown, states)):
        stack = f"  [stack {in_stack[i]}]" if i in in_stack else ""
        lines.append(f"  #{i:<3} {' '.join(job):<{width}}  {state}{f'  {_short(where)}' if where else ''}{stack}")
    counts = {s: sum(st == s for st, _ in states) for s in ("to train", "to resume", "already done",
                                                            "running elsewhere")}
    if stacked:
        lines.append(f"stacks: {sum(map(len, stacked))} jobs train in {len(stacked)} stacks of "
                     f"{'-'.join(sorted({str(len(s)) for s in stacked}, key=int))} runs, each a job of the launcher "
                     f"(trainer.stack: at most that many; 1 trains each alone)")
    lines.append("dry run: " + ", ".join(f"{n} {s}" for s, n in counts.items()) +
                 "; nothing was trained or written")
    return "\n".join(lines)
