"""Sweeps that can be killed and launched again: skip what is done, never train twice.

A job's identity is the fingerprint of its resolved config (bnlab.store.fingerprint:
output paths and tracking aside). Before training, a job takes an exclusive lock on its
fingerprint (flock: the kernel drops it when the process dies, even by SIGKILL), then looks
for a run of the same study with the same fingerprint whose summary says `completed` or
`diverged`. If there is one, the job records a `skipped.json` pointing at it and returns.
Failed and incomplete runs are trained again, in a fresh folder; their folders stay as they
were (nothing is ever deleted).

Progress: a Hydra callback writes `sweep.json` (how many jobs, which keys vary, when it
started) into the sweep folder, and the launching process logs "k of N done" with an ETA
whenever a job finishes, whichever launcher runs the jobs.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

from bnlab.errors import ConfigError, StoreWriteError
from bnlab.store import RUN_FILE, SUMMARY_FILE, read_json, read_summary, store_writes, write_json_atomic

log = logging.getLogger(__name__)

DONE_STATUSES = ("completed", "diverged")
# exit status when the run store cannot be written (2 is bad input)
STORE_WRITE_EXIT = 3
SKIP_FILE, SWEEP_FILE, LOCK_DIR = "skipped.json", "sweep.json", ".locks"


def study_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.runs) / cfg.name


def find_done(root: Path, fp: str) -> Path | None:
    """The latest run under `root` with fingerprint `fp` whose status is completed or
    diverged (several exist when a config was retrained with force=true)."""
    if not root.exists():
        return None
    done = []
    for summary_path in root.rglob(SUMMARY_FILE):
        summary = read_summary(summary_path)[1]
        if summary and summary.get("fingerprint") == fp and summary.get("status") in DONE_STATUSES:
            done.append((str(summary.get("finished_at") or ""), str(summary_path.parent)))
    return Path(max(done)[1]) if done else None


def done_fingerprints(root: Path) -> set[str]:
    """The fingerprints of every completed or diverged run under `root` (find_done, for all at once)."""
    done = set()
    for summary_path in root.rglob(SUMMARY_FILE) if root.exists() else ():
        summary = read_summary(summary_path)[1]
        if summary and summary.get("status") in DONE_STATUSES:
            done.add(summary.get("fingerprint"))
    return done


@contextlib.contextmanager
def claim(root: Path, fp: str) -> Iterator[bool]:
    """Hold the lock of fingerprint `fp` while the body runs; yields False if another live
    process holds it (the same config is being trained right now elsewhere)."""
    lock_dir = root / LOCK_DIR
    with store_writes(lock_dir / f"{fp}.lock"):
        lock_dir.mkdir(parents=True, exist_ok=True)
        f = open(lock_dir / f"{fp}.lock", "a")
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def record_skip(out_dir: Path, reason: str, existing: Path | None, fp: str) -> None:
    """skipped.json in a job's folder: why it trained nothing here ("already done",
    "running elsewhere") or where it trained ("resumed": in the unfinished run's folder)."""
    with store_writes(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / SKIP_FILE, {
        "reason": reason, "fingerprint": fp, "existing_run": str(existing) if existing else None,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})


# ------------------------------------------------------------------ progress

def expand_sweep(params: dict, overrides: list[str]) -> list[list[str]]:
    """The override list of every job the basic sweeper launches for `params` (the study's
    hydra.sweeper.params) plus the command-line `overrides`; a command-line value replaces
    the study's value for the same key, as in Hydra's BasicSweeper."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [f"{k}={v}" for k, v in (params or {}).items()] + list(overrides)
    parsed = OverridesParser.create().parse_overrides(args)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


# The most jobs one launch may have. Expanding a sweep makes every job's override list in
# memory: `seed=range(0,100000000)` took 90 s and then ran out of memory. The count comes
# first, from the size of each swept value (count_sweep), and a launch above the cap is
# refused in one line; split such a sweep into several launches.
MAX_SWEEP_JOBS = 10_000


def count_sweep(params: dict, overrides: list[str]) -> int:
    """How many jobs expand_sweep(params, overrides) would make, without making them: the
    product of each swept key's number of values (a command-line value replaces the study's
    for the same key). ConfigError for a range that is empty or never ends (step 0)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep

    args = [f"{k}={v}" for k, v in (params or {}).items()] + list(overrides)
    sizes: dict[str, int] = {}
    for ov in OverridesParser.create().parse_overrides(args):
        value = ov.value() if ov.is_sweep_override() else None
        if isinstance(value, RangeSweep):
            start, stop, step = value.start, value.stop, value.step
            if not step:
                raise ConfigError(ov.key_or_group, f"got range({start}, {stop}, {step}); a range's step must not be 0")
            n = max(0, math.ceil((stop - start) / step))
            if n == 0:
                raise ConfigError(ov.key_or_group, f"got range({start}, {stop}, {step}), which has no values; "
                                  f"a range(start, stop, step) goes from start towards stop, stop excluded")
        elif isinstance(value, ChoiceSweep):
            n = len(value.list)
        elif ov.is_sweep_override():  # a glob over a group's options: a handful
            n = sum(1 for _ in ov.sweep_string_iterator())
        else:
            n = 1
        sizes[ov.get_key_element()] = n
    return math.prod(sizes.values())


def check_sweep_size(params: dict, overrides: list[str]) -> int:
    """The sweep's job count; ConfigError naming the count and the cap above MAX_SWEEP_JOBS."""
    n = count_sweep(params, overrides)
    if n > MAX_SWEEP_JOBS:
        raise ConfigError("sweep", f"{n:,} jobs; at most {MAX_SWEEP_JOBS:,} in one launch (sweep fewer values, "
                          f"or split the sweep into several launches)")
    return n


def count_jobs(hydra_cfg: DictConfig) -> int:
    params = OmegaConf.select(hydra_cfg, "sweeper.params") or {}
    return len(expand_sweep(dict(params), list(hydra_cfg.overrides.task)))


def swept_keys(hydra_cfg: DictConfig) -> list[str]:
    """The keys a sweep varies: the study's grid (hydra.sweeper.params) and the command
    line's sweep overrides (model.norm=none,batch). Jobs are named by these values."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = list(OmegaConf.select(hydra_cfg, "sweeper.params") or {})
    try:
        parsed = OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
    except Exception:  # a label is a convenience: never block a sweep on it
        parsed = []
    for o in parsed:
        if o.is_sweep_override() and o.key_or_group not in keys:
            keys.append(o.key_or_group)
        elif not o.is_sweep_override() and o.key_or_group in keys:
            keys.remove(o.key_or_group)  # the command line pinned a key the study sweeps
    return keys


def sweep_progress(sweep_dir: Path) -> dict | None:
    """{'total', 'done', 'trained', 'skipped', 'failed', 'damaged', 'elsewhere', 'elapsed_s',
    'eta_s'} of one sweep folder. Done: trained here to a completed or diverged summary
    (also by resuming an unfinished run in its own folder), or already done elsewhere."""
    meta = read_json(sweep_dir / SWEEP_FILE)
    if meta is None or not all(isinstance(meta.get(k), (int, float)) and not isinstance(meta.get(k), bool)
                               for k in ("total", "started_unix")):
        return None  # no sweep record, or a damaged one: no progress line, the runs are still read
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    outcomes = []  # per job: its run's summary status, or the reason it trained nothing here
    for j in jobs:
        skip = read_json(j / SKIP_FILE) if (j / SKIP_FILE).exists() and not (j / SUMMARY_FILE).exists() else None
        run_dir = j
        if skip is not None and skip.get("reason") != "resumed":
            outcomes.append(skip.get("reason"))
            continue
        if skip is not None:  # trained here, in the unfinished run's folder it resumed
            run_dir = Path(skip.get("existing_run") or j)
        found, summary = read_summary(run_dir / SUMMARY_FILE)
        if found == "damaged":
            outcomes.append("damaged")
        elif summary is not None:
            outcomes.append("trained" if summary.get("status") in DONE_STATUSES else "failed")
    count = {k: outcomes.count(k) for k in ("trained", "failed", "damaged", "running elsewhere")}
    # a config another process was training when this sweep reached it is not done here:
    # if that process dies, it is still missing (launch the sweep again to train it)
    elsewhere = count["running elsewhere"]
    trained, failed, damaged = count["trained"], count["failed"], count["damaged"]
    skipped = len(outcomes) - trained - failed - damaged - elsewhere
    done, total = trained + skipped, meta["total"]
    finished = [f.stat().st_mtime for j in jobs for f in (j / SUMMARY_FILE, j / SKIP_FILE) if f.exists()]
    end = max(finished) if len(outcomes) >= total and finished else time.time()
    elapsed = end - meta["started_unix"]
    # ETA from the pace of jobs that actually trained (skips are nearly free)
    eta = elapsed / (trained + failed) * (total - len(outcomes)) if trained + failed else None
    return {"total": total, "done": done, "trained": trained, "skipped": skipped, "failed": failed,
            "damaged": damaged, "elsewhere": elsewhere, "elapsed_s": elapsed, "eta_s": eta}


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def progress_line(name: str, p: dict) -> str:
    extra = "".join(f"; {p[key]} {what}" for key, what in (
        ("failed", "failed"), ("damaged", "with a damaged summary"),
        ("elsewhere", "being trained by another process, not done here")) if p.get(key))
    return (f"sweep {name}: {p['done']} of {p['total']} done ({p['trained']} trained, "
            f"{p['skipped']} already done{extra}), elapsed {_fmt_s(p['elapsed_s'])}, ETA {_fmt_s(p['eta_s'])}")


# "k of N done, ETA" in the launching terminal, for every launcher (joblib's workers, SLURM
# jobs on other machines): a thread of the launching process reads the sweep folder and logs
# whenever the counts change. Kept here, not on the callback, which Hydra pickles to jobs.
_WATCHERS: dict[str, tuple[threading.Thread, threading.Event]] = {}
WATCH_EVERY_S = 2.0


def _start_watching(sweep_dir: Path, name: str) -> None:
    stop = threading.Event()

    def watch() -> None:
        last = None
        while True:
            stopping = stop.wait(WATCH_EVERY_S)
            try:
                p = sweep_progress(sweep_dir)
            except OSError:
                p = None
            key = p and (p["done"], p["failed"], p["damaged"], p["elsewhere"])
            if p is not None and key != last and (last is not None or any(key)):
                log.info(progress_line(name, p))
                last = key
            if stopping:
                return

    thread = threading.Thread(target=watch, name=f"sweep-progress-{name}", daemon=True)
    _WATCHERS[str(sweep_dir)] = (thread, stop)
    thread.start()


def _stop_watching(sweep_dir: Path) -> None:
    thread, stop = _WATCHERS.pop(str(sweep_dir), (None, None))
    if thread is not None:
        stop.set()
        thread.join(timeout=10)


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object


class SweepProgress(Callback):
    """Hydra callback: sweep.json at multirun start, "k of N done" after every job."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from bnlab.workers import stop_workers_on_sigterm

        stop_workers_on_sigterm()  # before the launcher starts its workers: they inherit its pid
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        try:
            total = count_jobs(config.hydra)
        except Exception as exc:  # progress is a convenience; never block a sweep on it
            log.warning("could not count the sweep's jobs: %s", exc)
            return
        write_json_atomic(sweep_dir / SWEEP_FILE, {
            "study": config.get("name"), "total": total, "swept": swept_keys(config.hydra),
            "started_unix": time.time(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "pid": os.getpid()})
        log.info("sweep %s: %d jobs -> %s", config.get("name"), total, sweep_dir)
        _start_watching(sweep_dir, str(config.get("name")))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        """A sweep that trained nothing because every job was already done leaves no
        folder behind (its jobs' records only pointed at the runs that exist)."""
        sweep_dir = Path(config.hydra.sweep.dir)
        _stop_watching(sweep_dir)
        p = sweep_progress(sweep_dir) if sweep_dir.is_dir() else None
        if p and p["skipped"] == p["total"] and not any(sweep_dir.rglob(RUN_FILE)):
            shutil.rmtree(sweep_dir, ignore_errors=True)
            log.info("sweep %s: every job was already done; nothing trained, no folder kept "
                     "(force=true trains them again)", config.get("name"))

    def on_job_end(self, config: DictConfig, job_return=None, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return
        sweep_dir = Path(hc.sweep.dir)
        # The next job's folder is made by Hydra before bnlab sees it: if the sweep folder
        # can no longer be written, say so in one line and stop here, not in a traceback there.
        try:
            check_still_writable(sweep_dir)
        except StoreWriteError as exc:
            print(f"bnlab-train: error: {exc}; stopping the sweep", file=sys.stderr)
            sys.exit(STORE_WRITE_EXIT)


def check_still_writable(folder: Path) -> None:
    """StoreWriteError unless a file can be created (and removed) in `folder`."""
    with store_writes(folder):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".bnlab-write-check-")
        os.close(fd)
        os.unlink(tmp)
