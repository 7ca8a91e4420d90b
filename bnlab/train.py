"""Entry point: `bnlab-train [overrides]` (or `python -m bnlab.train`).

The Hydra app is a thin shell around `run(cfg, out_dir) -> summary`, which tests call
directly. Order matters: validate the config and load the data before anything is written,
so bad input leaves no run behind; then train, with the run store always written and W&B
mirroring it.
"""
from __future__ import annotations

import logging
import os
import random
import re
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import bnlab  # noqa: F401  (registers the ${repo_root:} resolver before Hydra composes)
from bnlab.checkpoint import Checkpoints, find_resumable
from bnlab.config import check_wandb_credentials, check_writable, validate
from bnlab.data import check_data_present, ensure_present, load_data
from bnlab.environment import environment, resolve_device
from bnlab.errors import ConfigError, InputError, StoreWriteError
from bnlab.layers import init_weights
from bnlab.models import build_model, count_parameters
from bnlab.optimizers import make_optimizer
from bnlab.probes import build_probes
from bnlab.resolvers import CONF_DIR, STUDIES_ROOT
from bnlab.stopping import StopRequests, Terminated
from bnlab.store import RUN_FILE, RunWriter, fingerprint, resolved_config
from bnlab.sweep import STORE_WRITE_EXIT, claim, expand_sweep, find_done, record_skip, study_dir
from bnlab.tracking import open_mirror
from bnlab.trainer import train

log = logging.getLogger("bnlab")
PAIRING_VERSION = 1


def seed_everything(seed: int) -> None:
    """Reset global RNG state: launchers may reuse one process for several jobs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(cfg: DictConfig, out_dir: str | Path, *, label: str | None = None,
        launch: str | None = None, resume_from: dict | None = None) -> dict:
    """Train one configuration into the run directory `out_dir` and return its summary.

    Raises InputError (before writing anything) for bad config or missing data. A diverged
    run returns normally with status `diverged`; any other failure is recorded as `failed`
    in summary.json and re-raised, as is a write to the store that fails (StoreWriteError).
    `label` names the run (the swept values) and `launch` the sweep it belongs to, for the
    W&B mirror. `resume_from` is the checkpoint of the unfinished run in `out_dir`
    (bnlab.checkpoint.find_resumable): training continues from it in that folder.
    """
    validate(cfg)
    config = resolved_config(cfg)
    if cfg.trainer.num_threads is not None:
        torch.set_num_threads(cfg.trainer.num_threads)
    device = resolve_device(cfg.trainer.device)
    data = load_data(cfg.data, device)

    seed_everything(cfg.seed)
    model = build_model(cfg.model, data.in_shape, data.num_classes).to(device)
    # paired seeds: per-layer generators, so both arms share every shared layer's weights
    init_weights(model, cfg.init.scheme, cfg.init.std, cfg.init.gain, seed=cfg.seed)
    optimizer = make_optimizer(cfg.optim, model)
    params = count_parameters(model)
    probes, step_probes = build_probes(cfg.probes, data)
    # Building the arms consumed the global RNG differently (a bias here, a norm layer
    # there): reseed so that both arms draw the same dropout masks in the same order.
    seed_everything(cfg.seed)
    log.info("%s on %s: %s parameters, device %s, %d train / %d val / %d test images",
             cfg.model.name, cfg.data.name, f"{params:,}", device, len(data.train_x),
             len(data.val_x), len(data.test_x))

    fp = fingerprint(config)
    writer = RunWriter(out_dir)
    # earlier attempts of this run: the steps each resumed from, their wall time, W&B run id
    before = (resume_from or {}).get("meta", {})
    resumes = [*before.get("resumes", []), resume_from["progress"]["step"]] if resume_from else []
    if resume_from is None:
        writer.start({"config": config, "fingerprint": fp, "env": environment(device), "data": data.info,
                      "params": params, "started_at": _now()})
    else:
        writer.resume(resume_from["records_offset"])
    # `paired`: this run's initial weights, batches and dropout masks are a function of its
    # seed shared with every other arm (runs from before the paired design lack the field).
    base = {"fingerprint": fp, "params": params, "data": data.info,
            "started_at": before.get("started_at", _now()), "paired": PAIRING_VERSION}
    if resumes:
        base["resumed_from_steps"] = resumes
    wall = time.perf_counter()
    wall_before = before.get("wall_time_s", 0.0)
    wandb_id = {"id": before.get("wandb_id")}
    checkpoints = Checkpoints.from_config(out_dir, cfg.trainer.checkpoint, records=writer, meta=lambda: {
        "resumes": resumes, "started_at": base["started_at"], "wandb_id": wandb_id["id"],
        "wall_time_s": wall_before + time.perf_counter() - wall})
    stop = StopRequests()
    try:
        with stop, open_mirror(config, study_dir(cfg), label=label, launch=launch,
                               run_id=wandb_id["id"]) as mirror:
            wandb_id["id"] = mirror.run_id

            def emit(record: dict) -> None:
                writer.log(record)
                mirror.log(record)

            result = train(model, optimizer, data, cfg.trainer, seed=cfg.seed,
                           augment=cfg.data.augment, batch_size=cfg.optim.batch_size,
                           emit=emit, probes=probes, step_probes=step_probes,
                           target_acc=cfg.data.target_val_acc, checkpoints=checkpoints,
                           resume_from=resume_from, stop=stop)
            summary = {**result, **base, "wall_time_s": wall_before + time.perf_counter() - wall,
                       "finished_at": _now()}
            summary["wandb_dir"] = mirror.run_dir
            mirror.set_summary(summary)
    except BaseException as exc:
        # stopped by a signal (Terminated; SystemExit from submitit's requeue): say which
        reason = f"{type(exc).__name__}: {exc}"
        if stop.requested:
            reason = stop.reason if isinstance(exc, (Terminated, SystemExit)) else f"{stop.reason}, then {reason}"
        failed = {**base, "status": "failed", "error": reason, "finished_at": _now(),
                  "wall_time_s": wall_before + time.perf_counter() - wall}
        # where a relaunch resumes from (bnlab.checkpoint.find_resumable)
        saved = checkpoints.saved_step if checkpoints.saved_step is not None else \
            (resume_from["progress"]["step"] if resume_from else None)
        if saved is not None and checkpoints.path.exists():
            failed["checkpoint_step"] = saved
        try:
            writer.finish(failed)
        except StoreWriteError:
            pass  # the store cannot be written: the error being raised says so
        raise
    writer.finish(summary)
    checkpoints.discard()
    log.info("%s after %d steps: test/acc %.4f, best val/acc %.4f at step %d, %.3f ms/step",
             summary["status"], summary["steps"], summary.get("test/acc", float("nan")),
             summary["best/val/acc"] or float("nan"), summary["best/step"], summary["step_time_ms"])
    if stop.requested:  # asked to stop after the last step: the run is done, the sweep stops
        stop.honour()
    return summary


def _discard_unstarted(out_dir: Path) -> None:
    """Remove the folder Hydra made for a run that never started (bad input)."""
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
        values = list(ov.sweep_string_iterator()) if ov.is_discrete_sweep() else [ov.value()]
        for value in values:
            if isinstance(value, str) and value not in options:
                raise ConfigError(ov.key_or_group, f"got {value!r}; allowed: {', '.join(options)}")


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
        raise ConfigError("overrides", _one_line(exc)) from None


MAX_PREFLIGHT_JOBS = 2000
MAX_OVERRIDE_CHARS = 4000


def preflight(overrides: list[str], multirun: bool = False) -> list[DictConfig]:
    """Compose and validate every job's config as Hydra will, before Hydra writes anything.

    Hydra reports an unknown group option or key over several lines, and a bad value in a
    sweep only when that job starts; here every bad input becomes one ConfigError line
    naming the key and the allowed values, before the first job. Returns the job configs.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from hydra.types import RunMode

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError("overrides", _one_line(exc)) from None
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
                jobs = expand_sweep(params, overrides)
            except HydraException as exc:
                raise ConfigError("hydra.sweeper.params", _one_line(exc)) from None
        cfgs = []
        for job in jobs[:MAX_PREFLIGHT_JOBS]:
            cfg = _compose(compose, job)
            try:
                validate(cfg)
                check_data_present(cfg.data)
            except InputError as exc:
                where = f" (in sweep job: {' '.join(job)})" if multirun else ""
                raise type(exc)(exc.key, str(exc).split(": ", 1)[1] + where) from None
            cfgs.append(cfg)
    # Where runs go must be writable, and online tracking must have credentials: before any job.
    for folder in sorted({str(study_dir(c)) for c in cfgs}):  # <paths.runs>/<name>
        check_writable("paths.results", folder)
    for c in {c.tracking.mode: c for c in cfgs}.values():
        check_wandb_credentials(c)
    # Download missing datasets once, here, rather than in every parallel job at once.
    for d in {(c.data.name, str(c.data.root)): c.data for c in cfgs}.values():
        ensure_present(d)
    return cfgs


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
    # Hydra's informational flags (--help, --cfg, --info, ...) go straight to Hydra.
    if all(f in ("-m", "--multirun") for f in flags):
        try:
            preflight([a for a in args if not a.startswith("-")], multirun=bool(flags))
        except InputError as exc:
            print(f"bnlab-train: error: {exc}", file=sys.stderr)
            sys.exit(2)
    hydra_main()


def _threads_per_job(hc) -> int | None:
    """Torch threads for one job of a parallel sweep: the cores shared out between jobs."""
    from hydra.types import RunMode

    if hc.mode != RunMode.MULTIRUN:
        return None
    launcher = hc.launcher
    if launcher.get("cpus_per_task"):  # submitit: the cores the scheduler gives the task
        return int(launcher.cpus_per_task)
    n_jobs = launcher.get("n_jobs")
    if n_jobs:
        return max(1, (os.cpu_count() or 1) // int(n_jobs))
    return None


def _label(hc) -> str | None:
    """A readable run name from the swept values, e.g. "model.norm=batch seed=1"."""
    swept = set(hc.sweeper.get("params") or {})
    overrides = list(hc.overrides.task)
    chosen = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in swept]
    return " ".join(chosen or overrides) or None


# An absolute path: a relative one is looked up as a Python package when run as a module.
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> str:
    from hydra.types import RunMode

    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    if cfg.trainer.num_threads is None:
        cfg.trainer.num_threads = _threads_per_job(hc)
    launch = Path(hc.sweep.dir).name if multirun else out_dir.name
    try:
        validate(cfg)
        fp = fingerprint(resolved_config(cfg))
        root = study_dir(cfg)
        with claim(root, fp) as mine:
            if not mine:
                log.info("skipping: the same config is being trained by another process")
                record_skip(out_dir, "running elsewhere", None, fp)
                return "running elsewhere"
            done = find_done(root, fp)
            if done is not None:
                log.info("skipping: already done in %s", done)
                record_skip(out_dir, "already done", done, fp)
                return "skipped"
            # killed, timed out or preempted before: continue from its checkpoint, in its folder
            # (a job requeued by SLURM comes back to its own folder, which is looked at first)
            unfinished, checkpoint = find_resumable(root, fp, prefer=out_dir)
            if unfinished is not None and unfinished != out_dir:
                log.info("resuming the unfinished run in %s", unfinished)
                record_skip(out_dir, "resumed", unfinished, fp)
            summary = run(cfg, unfinished or out_dir, label=_label(hc), launch=launch,
                          resume_from=checkpoint)
    except InputError as exc:
        _discard_unstarted(out_dir)
        if multirun:
            raise
        print(f"bnlab-train: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except StoreWriteError as exc:
        # the store cannot be written: nothing more can be kept, so the whole sweep stops
        # (SystemExit passes through Hydra's job runner and joblib's workers to the launcher)
        print(f"bnlab-train: error: {exc}; stopping{' the sweep' if multirun else ''}", file=sys.stderr)
        sys.exit(STORE_WRITE_EXIT)
    return summary["status"]


if __name__ == "__main__":
    main()
