"""Entry point: `bnlab-train [overrides]` (or `python -m bnlab.train`).

The command line: preflight every job's config, then the Hydra app, a thin shell (lock,
skip what is done, resume what was stopped) around bnlab.runner.run(cfg, out_dir). Only
Hydra and the config tools are imported at the top: `--help` and tab completion must not
wait for torch, which the training modules load when a job starts.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import bnlab  # noqa: F401  (registers the ${repo_root:} resolver before Hydra composes)
from bnlab.errors import ConfigError, InputError, StoreWriteError
from bnlab.resolvers import CONF_DIR, STUDIES_ROOT
from bnlab.stopping import Terminated
from bnlab.store import RUN_FILE, fingerprint, resolved_config
from bnlab.sweep import STORE_WRITE_EXIT, check_sweep_size, claim, expand_sweep, find_done, record_skip, study_dir

log = logging.getLogger("bnlab")


def _discard_unstarted(out_dir: Path) -> None:
    """Remove the folder Hydra made for a run that never started (bad input, or already done)."""
    if out_dir.is_dir() and not (out_dir / RUN_FILE).exists():
        shutil.rmtree(out_dir, ignore_errors=True)


def _one_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return "; ".join(ln for ln in lines if not ln.startswith(("Set the environment", "Config search path")))


def _group_dir(group: str) -> Path | None:
    for root in (CONF_DIR, STUDIES_ROOT):
        if (root / group).is_dir() and any((root / group).glob("*.yaml")):
            return root / group
    return None


def _check_group_choices(parsed) -> None:
    """An unknown option of a config group, e.g. model=resnet, named with the allowed ones."""
    for ov in parsed:
        # hydra/* groups also live in plugins (ConfigStore): Hydra checks those itself
        group_dir = None if ov.key_or_group.startswith("hydra/") else _group_dir(ov.key_or_group)
        if group_dir is None or ov.is_delete():
            continue
        options = sorted(p.stem for p in group_dir.glob("*.yaml"))
        _check_one_study(ov, options)
        values = list(ov.sweep_string_iterator()) if ov.is_discrete_sweep() else [ov.value()]
        for value in values:
            if isinstance(value, str) and value not in options:
                raise ConfigError(ov.key_or_group, f"got {value!r}; allowed: {', '.join(options)}")


# --- one study at a time (issue 22): Hydra merges a list of study files into one config, and
# a sweep over them runs one job per file, ignoring each file's own sweep (DESIGN.md's traps)
def _check_one_study(ov, options: list[str]) -> None:
    if ov.key_or_group != "experiments":
        return
    value = ov.value()
    if isinstance(value, list) or (ov.is_sweep_override() and len(getattr(value, "list", ())) != 1):
        raise ConfigError("experiments", f"got {ov.input_line.split('=', 1)[1]}; one study at a time "
                          f"(experiments=<one of: {', '.join(options)}>), each launched on its own")
    study = value.list[0] if ov.is_sweep_override() else value
    if isinstance(study, str) and study in options:  # broken YAML, or a file naming no study
        from bnlab.study_file import read_study_file

        read_study_file(_group_dir("experiments") / f"{study}.yaml")
# ---


def _compose(compose, overrides: list[str], **kw) -> DictConfig:
    from hydra.errors import HydraException

    try:
        return compose("config", overrides=overrides, **kw)
    except HydraException as exc:
        unknown = re.search(r"Could not override '([^']+)'", str(exc))
        if unknown and "not in struct" in str(exc.__cause__):
            key = unknown.group(1)
            raise ConfigError(key, f"no such key in the config (a typo? `bnlab-train --cfg job` "
                              f"lists the keys; +{key}=... adds a new one)") from None
        from bnlab.override_errors import unmergeable_override

        raise unmergeable_override(str(exc), exc.__cause__) or ConfigError("overrides", _one_line(exc)) from None


MAX_PREFLIGHT_JOBS = 2000
# Set by `main` when its preflight validated every job of the launch: the jobs then skip the
# check (a config is validated once per job, in the launching process). A larger sweep's jobs
# beyond MAX_PREFLIGHT_JOBS, and a Hydra app entered without `main`, validate in the job.
VALIDATED_ENV = "BNLAB_PREFLIGHT_VALIDATED"
MAX_OVERRIDE_CHARS = 4000


def compose_jobs(overrides: list[str], multirun: bool = False) -> list[tuple[list[str], DictConfig]]:
    """Every job of the launch as (its overrides, its composed and validated config), as
    Hydra will compose them; writes nothing.

    Hydra reports an unknown group option or key over several lines, and a bad value in a
    sweep only when that job starts; here every bad input becomes one ConfigError line
    naming the key and the allowed values, before the first job.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from hydra.types import RunMode

    from bnlab.config import validate
    from bnlab.data import check_data_present

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        from bnlab.override_errors import unparsable_override

        raise unparsable_override(overrides, exc) from None
    _check_group_choices(parsed)
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="preflight"):
        base = _compose(compose, plain, return_hydra_config=True)
        multirun = multirun or base.hydra.mode == RunMode.MULTIRUN
        n_jobs = OmegaConf.select(base, "hydra.launcher.n_jobs", default=None)
        if multirun and n_jobs is not None and not (isinstance(n_jobs, int) and n_jobs >= 1):
            raise ConfigError("hydra.launcher.n_jobs", f"got {n_jobs!r}; must be an integer >= 1 "
                              f"(parallel jobs of the local launcher)")
        if not multirun:
            jobs = [overrides]
        else:
            params = OmegaConf.select(base, "hydra.sweeper.params")
            params = OmegaConf.to_container(params) if params is not None else {}
            try:
                check_sweep_size(params, overrides)  # counted before any job is made
                jobs = expand_sweep(params, overrides)
            except HydraException as exc:
                raise ConfigError("hydra.sweeper.params", _one_line(exc)) from None
        composed, by_groups = [], {}
        for job in jobs[:MAX_PREFLIGHT_JOBS]:
            cfg = _compose_fast(compose, job, by_groups)
            try:
                validate(cfg)
                check_data_present(cfg.data)
            except InputError as exc:
                where = f" (in sweep job: {' '.join(job)})" if multirun else ""
                raise type(exc)(exc.key, str(exc).split(": ", 1)[1] + where) from None
            composed.append((list(job), cfg))
    return composed


def _value_override(o) -> bool:
    """A plain `key=value` on a key that is not a config group (what a study's sweep varies:
    seed, optim.lr, model.norm): Hydra applies these after the groups are chosen, in order."""
    return (not o.is_sweep_override() and not o.is_add() and not o.is_force_add() and not o.is_delete()
            and o.package is None and not o.key_or_group.startswith("hydra")
            and _group_dir(o.key_or_group.replace(".", "/")) is None)


_ABSENT = object()


def _compose_fast(compose, job: list[str], by_groups: dict) -> DictConfig:
    """The job's config as Hydra composes it, without a full composition for every job: a
    Hydra composition costs ~0.2 s (the defaults tree), and a sweep's jobs differ only in
    plain values. The config of the job's non-value overrides (groups: experiments=...,
    model=vgg; additions; deletions) is composed once per distinct set, then the job's value
    overrides are set on a copy in order, as Hydra sets them. A key that is not in the config
    goes through Hydra, for its error. tests/test_sweeps.py checks that every study's jobs come
    out identical to Hydra's own composition."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(job)
    is_value = [_value_override(o) for o in parsed]  # each looks the key up among the config groups once
    values = [o for o, v in zip(parsed, is_value) if v]
    rest = tuple(o.input_line for o, v in zip(parsed, is_value) if not v)
    if rest not in by_groups:
        by_groups[rest] = _compose(compose, list(rest))
    cfg = copy.deepcopy(by_groups[rest])
    for o in values:
        if OmegaConf.select(cfg, o.key_or_group, default=_ABSENT, throw_on_missing=False) is _ABSENT:
            return _compose(compose, job)
        OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)  # as Hydra does
    return cfg


def preflight(overrides: list[str], multirun: bool = False) -> list[DictConfig]:
    """preflight_jobs, the configs only."""
    return [cfg for _, cfg in preflight_jobs(overrides, multirun)]


def preflight_jobs(overrides: list[str], multirun: bool = False) -> list[tuple[list[str], DictConfig]]:
    """Compose and validate every job's config (compose_jobs), then check what the launch
    needs before Hydra writes anything: a writable study folder, W&B credentials for online
    tracking, the datasets (downloaded here, once). Returns every job's (overrides, config)."""
    from bnlab.config import check_wandb_credentials, check_writable
    from bnlab.data import ensure_present

    composed = compose_jobs(overrides, multirun)
    cfgs = [cfg for _, cfg in composed]
    # Where runs go must be writable, and online tracking must have credentials: before any job.
    for folder in sorted({str(study_dir(c)) for c in cfgs}):  # <paths.runs>/<name>
        check_writable("paths.results", folder)
    for c in {c.tracking.mode: c for c in cfgs}.values():
        check_wandb_credentials(c)
    # Download missing datasets once, here, rather than in every parallel job at once.
    for d in {(c.data.name, str(c.data.root)): c.data for c in cfgs}.values():
        ensure_present(d)
    # The memory the jobs that run at once on this machine need (not on a cluster's nodes).
    if not any(o.startswith("hydra/launcher=") and not o.endswith("=local") for o in overrides):
        from bnlab.memory import check_memory, parallel_jobs

        check_memory(cfgs, parallel_jobs(overrides) if len(cfgs) > 1 else 1)
    return composed



def plan_launch(composed: list[tuple[list[str], DictConfig]], overrides: list[str]) -> str | None:
    """Group the launch's jobs into stacks (bnlab.stack_plan) and name the plan to bnlab's
    sweeper (BNLAB_STACK_PLAN); returns a line saying what was grouped (None: nothing stacks)."""
    from bnlab.stack_plan import PLAN_ENV, plan_stacks, why_config_cannot_stack, write_plan

    os.environ.pop(PLAN_ENV, None)
    cfgs = [c for _, c in composed]
    if len(cfgs) < 2 or all(why_config_cannot_stack(c) for c in cfgs):
        return None
    stacks = plan_stacks(cfgs, _to_train(cfgs), _parallel(overrides))
    path = write_plan([j for j, _ in composed], cfgs, stacks)
    if path is None:
        return None
    os.environ[PLAN_ENV] = str(path)
    stacked = [s for s in stacks if len(s) > 1]
    return (f"{sum(map(len, stacked))} of {len(cfgs)} jobs train in {len(stacked)} stacks of up to "
            f"{max(map(len, stacked))} runs (trainer.stack; 1 trains each alone)")


def _parallel(overrides: list[str]) -> int:
    """Jobs that run at once: the local launcher's (a cluster's are not split for balance)."""
    from bnlab.memory import parallel_jobs

    if any(o.startswith("hydra/launcher=") and not o.endswith("=local") for o in overrides):
        return 1
    return parallel_jobs(overrides)


def _to_train(cfgs: list[DictConfig]) -> list[bool]:
    """Per job: whether it still trains (not done, not being trained elsewhere); only those are
    stacked, so that a relaunch packs what is missing into full stacks."""
    from bnlab.dry_run import _locked_elsewhere
    from bnlab.sweep import done_fingerprints

    done: dict[Path, set] = {}
    out = []
    for cfg in cfgs:
        root = study_dir(cfg)
        if root not in done:
            done[root] = done_fingerprints(root)
        fp = fingerprint(resolved_config(cfg))
        out.append(bool(cfg.force) or (fp not in done[root] and not _locked_elsewhere(root, fp)))
    return out


class _NoAccountingWarnings(logging.Filter):
    """submitit polls `sacct` for job states and warns on every poll when the cluster keeps
    no accounting (it then reads the states from squeue): harmless, and it drowns the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Bypassing sacct error" not in record.getMessage()


def main() -> None:
    """Console entry point: preflight the overrides, then hand over to Hydra."""
    args = sys.argv[1:]
    logging.getLogger("submitit").addFilter(_NoAccountingWarnings())
    long = next((a for a in args if len(a) > MAX_OVERRIDE_CHARS), None)
    if long is not None:  # Hydra's parser takes minutes over a list of tens of thousands of characters
        key = long.split("=", 1)[0]
        print(f"bnlab-train: error: {key}: got a {len(long):,}-character override; at most "
              f"{MAX_OVERRIDE_CHARS:,} (put long values in a config file)", file=sys.stderr)
        sys.exit(2)
    flags = [a for a in args if a.startswith("-")]
    overrides = [a for a in args if not a.startswith("-")]
    multirun = any(f in ("-m", "--multirun") for f in flags)
    # --- launch and dry run agree (issue 22): a comma list or range on the command line is a
    # sweep with or without -m, as in `--dry-run`; Hydra alone would refuse it without -m
    if not multirun and "--cfg" not in flags and "-c" not in flags and _sweeps_on_command_line(overrides):
        multirun = True
        args = ["-m", *args]
    # --- `--cfg` prints the values a run uses (Hydra's --resolve), `--cfg ... --unresolved`
    # the interpolations as written
    if ("--cfg" in flags or "-c" in flags) and "--resolve" not in flags:
        args = [a for a in args if a != "--unresolved"] if "--unresolved" in flags else [*args, "--resolve"]
    # ---
    try:
        if DRY_RUN in flags:  # what the launch would do; trains nothing, writes nothing
            from bnlab.dry_run import describe_launch

            # as a sweep: a single run is a sweep of one job, and `-m` may be left out
            print(describe_launch(compose_jobs(overrides, multirun=True), _parallel(overrides)))
            return
        if "--cfg" in flags or "-c" in flags:
            _one_config_only(args)
        # Hydra's informational flags (--help, --cfg, --info, ...) go straight to Hydra.
        os.environ.pop(VALIDATED_ENV, None)  # only this launch's preflight may vouch for its jobs
        if all(f in ("-m", "--multirun") for f in flags):
            composed = preflight_jobs(overrides, multirun=multirun)
            if len(composed) < MAX_PREFLIGHT_JOBS:  # all of them checked
                os.environ[VALIDATED_ENV] = "1"  # the jobs (joblib workers, SLURM tasks) inherit it
                stacked = plan_launch(composed, overrides)
                if stacked:
                    log.info(stacked)
    except InputError as exc:
        print(f"bnlab-train: error: {exc}", file=sys.stderr)
        sys.exit(2)
    # Hydra's parser wants -m before the overrides; accept it anywhere
    sys.argv = [sys.argv[0], *[a for a in args if a in ("-m", "--multirun")],
                *[a for a in args if a not in ("-m", "--multirun")]]
    hydra_main()


DRY_RUN = "--dry-run"


def _sweeps_on_command_line(overrides: list[str]) -> bool:
    """Whether an override sweeps (model.norm=none,batch, seed=range(3)); a malformed one is
    left to the preflight, which names it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return any(o.is_sweep_override() for o in OverridesParser.create().parse_overrides(overrides))
    except Exception:
        return False


def _one_config_only(args: list[str]) -> None:
    """`--cfg` prints one config; on a sweep Hydra answers with a traceback or "Ambiguous
    value". Say what to do instead."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    # the overrides, without the flags and the values of those that take one (--cfg job)
    valued = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-path", "-cp",
              "--config-dir", "-cd", "--info", "-i"}
    overrides = [a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] not in valued)]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:
        return  # Hydra's own message for a malformed override
    swept = [o.key_or_group for o in parsed if o.is_sweep_override()]
    if not swept and ("-m" in args or "--multirun" in args):
        swept = ["(-m)"]
    if swept:
        raise ConfigError("--cfg", f"prints one job's config, and this command sweeps {', '.join(swept)}: "
                          f"`bnlab-train {' '.join(overrides)} --dry-run` lists every job; for one "
                          f"job's config give one value per key (e.g. seed=0)")


def _thread_share(hc) -> dict:
    """The cores one job of this launch may use (bnlab.threads.choose_threads): a SLURM
    task's cpus_per_task, or the local launcher's cores shared by its n_jobs parallel jobs;
    nothing for a single run (its free cores are read from the load)."""
    from hydra.types import RunMode

    if hc.mode != RunMode.MULTIRUN:
        return {}
    launcher = hc.launcher
    if launcher.get("cpus_per_task"):  # submitit: the cores the scheduler gives the task
        return {"task_cpus": int(launcher.cpus_per_task)}
    n_jobs = launcher.get("n_jobs")
    return {"jobs_sharing": int(n_jobs)} if n_jobs else {}


class JobPrefix(logging.Filter):
    """Prefixes every log line of one sweep job with its number and swept values."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "job_prefixed", False):
            record.msg, record.job_prefixed = self.prefix + str(record.msg), True
        return True


def _label(hc, task: list[str] | None = None) -> str | None:
    """A run's name in W&B: the values its sweep varies, e.g. "model.norm=batch seed=1"
    (from the sweep's record, sweep.json), among `task` (the job's overrides by default);
    None for a single run (tracking names it)."""
    from hydra.types import RunMode

    from bnlab.store import read_json
    from bnlab.sweep import SWEEP_FILE

    if hc.mode != RunMode.MULTIRUN:
        return None
    swept = set((read_json(Path(hc.sweep.dir) / SWEEP_FILE) or {}).get("swept") or [])
    chosen = [o for o in (hc.overrides.task if task is None else task) if o.split("=", 1)[0].lstrip("+~") in swept]
    return " ".join(chosen) or None


def _train_stack(cfg: DictConfig, hc, launch: str) -> list[dict]:
    """A stack's job (bnlab.stack_plan): each member's config composed as Hydra composes it
    alone, then, as for any job, locked, skipped when done and resumed when unfinished, in the
    folder it would have had alone (`<sweep>/<its job number>`); the rest trained together
    (bnlab.runner.train_stack). Returns the summaries of the runs trained here."""
    from hydra import compose

    from bnlab.checkpoint import find_resumable
    from bnlab.config import validate
    from bnlab.runner import Job, train_stack
    from bnlab.stack_plan import read_stack

    sweep_dir = Path(hc.sweep.dir)
    jobs = []
    with contextlib.ExitStack() as locks:
        for member in read_stack(cfg.trainer.stack_members):
            mcfg = compose("config", overrides=list(member["overrides"]))
            if os.environ.get(VALIDATED_ENV) != "1":
                validate(mcfg)
            mcfg.trainer.num_threads = cfg.trainer.num_threads  # the share this job was given
            out_dir = sweep_dir / str(member["index"])
            fp = fingerprint(resolved_config(mcfg))
            root = study_dir(mcfg)
            if not locks.enter_context(claim(root, fp)):
                log.info("skipping job %s: the same config is being trained by another process", member["index"])
                record_skip(out_dir, "running elsewhere", None, fp)
                continue
            done = None if mcfg.force else find_done(root, fp)
            if done is not None:
                log.info("skipping job %s: already done in %s", member["index"], done)
                record_skip(out_dir, "already done", done, fp)
                continue
            unfinished, checkpoint = (None, None) if mcfg.force else find_resumable(root, fp, prefer=out_dir)
            if unfinished is not None and unfinished != out_dir:
                log.info("job %s resumes the unfinished run in %s", member["index"], unfinished)
                record_skip(out_dir, "resumed", unfinished, fp)
            jobs.append(Job(mcfg, unfinished or out_dir, _label(hc, list(member["overrides"])), launch, checkpoint,
                            overrides=[o for o in member["overrides"] if not o.startswith("paths.")]))
        return train_stack(jobs)


# An absolute path: a relative one is looked up as a Python package when run as a module.
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> str:
    from hydra.types import RunMode

    from bnlab.workers import exit_worker, guard_worker

    hc = HydraConfig.get()
    guard_worker(hc)  # a joblib worker whose launcher is gone starts nothing (bnlab.workers)
    out_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    from bnlab.threads import set_torch_threads

    # `auto`: the cores free for this job; the number chosen is what the run records
    cfg.trainer.num_threads = set_torch_threads(cfg.trainer.num_threads, **_thread_share(hc))
    launch = Path(hc.sweep.dir).name if multirun else out_dir.name
    label = _label(hc)
    if multirun:  # parallel jobs interleave their lines: each says which job it is
        # its number in the sweep (its folder: the launcher's own count skips a stack's members)
        prefix = JobPrefix(f"[{hc.sweep.subdir}] " if cfg.trainer.get("stack_members") else
                           f"[job {hc.sweep.subdir}{': ' + label if label else ''}] ")
        for handler in logging.getLogger().handlers:  # Hydra makes these afresh for every job
            handler.addFilter(prefix)
    # the training modules (torch) load here, when a job starts
    from bnlab.checkpoint import find_resumable
    from bnlab.config import validate
    from bnlab.runner import run

    try:
        if os.environ.get(VALIDATED_ENV) != "1":  # not vouched for by this launch's preflight
            validate(cfg)
        if cfg.trainer.get("stack_members"):
            summaries = _train_stack(cfg, hc, launch)
            return ", ".join(s["status"] for s in summaries) or "skipped"
        fp = fingerprint(resolved_config(cfg))
        root = study_dir(cfg)
        with claim(root, fp) as mine:
            if not mine:
                log.info("skipping: the same config is being trained by another process")
                record_skip(out_dir, "running elsewhere", None, fp)
                return "running elsewhere"
            done = None if cfg.force else find_done(root, fp)
            if done is not None:
                log.info("skipping: already done in %s (force=true trains it again)", done)
                if multirun:  # the sweep's progress counts it from this record
                    record_skip(out_dir, "already done", done, fp)
                else:  # a single run leaves no folder behind for a run it did not train
                    _discard_unstarted(out_dir)
                return "skipped"
            # killed, timed out or preempted before: continue from its checkpoint, in its folder
            # (a job requeued by SLURM comes back to its own folder, which is looked at first)
            unfinished, checkpoint = (None, None) if cfg.force else find_resumable(root, fp, prefer=out_dir)
            if unfinished is not None and unfinished != out_dir:
                log.info("resuming the unfinished run in %s", unfinished)
                record_skip(out_dir, "resumed", unfinished, fp)
            summary = run(cfg, unfinished or out_dir, label=label, launch=launch,
                          resume_from=checkpoint, validated=True)
    except InputError as exc:
        _discard_unstarted(out_dir)
        # one line in a sweep job too: SystemExit passes through the job runner and joblib's
        # workers to the launcher, which exits with it (a raised error would be a traceback)
        where = f" (in sweep job {hc.job.num}: {label or ' '.join(hc.overrides.task)})" if multirun else ""
        print(f"bnlab-train: error: {exc}{where}", file=sys.stderr)
        sys.exit(2)
    except StoreWriteError as exc:
        # the store cannot be written: nothing more can be kept, so the whole sweep stops
        # (SystemExit passes through Hydra's job runner and joblib's workers to the launcher)
        print(f"bnlab-train: error: {exc}; stopping{' the sweep' if multirun else ''}", file=sys.stderr)
        sys.exit(STORE_WRITE_EXIT)
    except Terminated as exc:
        # asked to stop (a scheduler's limit, `kill`): the run is recorded `failed` with its
        # checkpoint; one line instead of a traceback, and the shell's code for SIGTERM
        finished = getattr(exc, "finished", None)  # the signal came as the run was finishing
        print(f"bnlab-train: {exc}: " + (f"the run had finished and is recorded as {finished}; nothing more was "
                                         f"started" if finished else "the run is recorded as failed, with a "
                                         "checkpoint; run the same command again to resume it"), file=sys.stderr)
        exit_worker(hc, 128 + signal.SIGTERM)  # a joblib worker exits: it takes no next job
    return summary["status"]


if __name__ == "__main__":
    main()
