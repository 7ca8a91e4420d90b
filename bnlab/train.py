"""Entry point: `bnlab-train [overrides]` (or `python -m bnlab.train`).

The Hydra app is a thin shell around `run(cfg, out_dir) -> summary`, which tests call
directly. Order matters: validate the config and load the data before anything is written,
so bad input leaves no run behind; then train, with the run store always written and W&B
mirroring it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import shutil
import signal
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
from bnlab.config import check_wandb_credentials, check_writable, validate
from bnlab.data import check_data_present, ensure_present, load_data
from bnlab.environment import environment, resolve_device
from bnlab.errors import ConfigError, InputError
from bnlab.layers import init_weights
from bnlab.models import build_model, count_parameters
from bnlab.optimizers import make_optimizer
from bnlab.probes import build_probes
from bnlab.resolvers import CONF_DIR, STUDIES_ROOT
from bnlab.store import RUN_FILE, RunWriter, fingerprint, resolved_config
from bnlab.sweep import claim, expand_sweep, find_done, record_skip, study_dir
from bnlab.tracking import open_mirror
from bnlab.trainer import train

log = logging.getLogger("bnlab")
PAIRING_VERSION = 1


def seed_everything(seed: int) -> None:
    """Reset global RNG state: launchers may reuse one process for several jobs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM: a scheduler's time limit, `kill`)."""


@contextlib.contextmanager
def terminated_as_failure():
    """While a run trains, SIGTERM raises Terminated (SIGINT already raises
    KeyboardInterrupt), so the run is closed as `failed` with the reason instead of being
    left `incomplete`. The previous handler comes back afterwards. Only the main thread can
    install handlers; elsewhere nothing changes."""
    def stop(signum, _frame):
        raise Terminated(f"stopped by {signal.Signals(signum).name}")

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(cfg: DictConfig, out_dir: str | Path, *, label: str | None = None,
        launch: str | None = None) -> dict:
    """Train one configuration into the run directory `out_dir` and return its summary.

    Raises InputError (before writing anything) for bad config or missing data. A diverged
    run returns normally with status `diverged`; any other failure is recorded as `failed`
    in summary.json and re-raised. `label` names the run (the swept values) and `launch`
    the sweep it belongs to, for the W&B mirror.
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
    env = environment(device)
    writer = RunWriter(out_dir)
    writer.start({"config": config, "fingerprint": fp, "env": env, "data": data.info,
                  "params": params, "started_at": _now()})
    # `paired`: this run's initial weights, batches and dropout masks are a function of its
    # seed shared with every other arm (runs from before the paired design lack the field).
    base = {"fingerprint": fp, "params": params, "data": data.info, "started_at": _now(),
            "paired": PAIRING_VERSION}
    wall = time.perf_counter()
    try:
        with terminated_as_failure(), open_mirror(config, study_dir(cfg), label=label, launch=launch) as mirror:
            def emit(record: dict) -> None:
                writer.log(record)
                mirror.log(record)

            result = train(model, optimizer, data, cfg.trainer, seed=cfg.seed,
                           augment=cfg.data.augment, batch_size=cfg.optim.batch_size,
                           emit=emit, probes=probes, step_probes=step_probes,
                           target_acc=cfg.data.target_val_acc)
            summary = {**result, **base, "wall_time_s": time.perf_counter() - wall,
                       "finished_at": _now()}
            summary["wandb_dir"] = mirror.run_dir
            mirror.set_summary(summary)
    except BaseException as exc:
        writer.finish({**base, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                       "wall_time_s": time.perf_counter() - wall, "finished_at": _now()})
        raise
    writer.finish(summary)
    log.info("%s after %d steps: test/acc %.4f, best val/acc %.4f at step %d, %.3f ms/step",
             summary["status"], summary["steps"], summary.get("test/acc", float("nan")),
             summary["best/val/acc"] or float("nan"), summary["best/step"], summary["step_time_ms"])
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
    for runs_dir in sorted({str(c.paths.runs) for c in cfgs}):
        check_writable("paths.results", runs_dir)
    for c in {c.tracking.mode: c for c in cfgs}.values():
        check_wandb_credentials(c)
    # Download missing datasets once, here, rather than in every parallel job at once.
    for d in {(c.data.name, str(c.data.root)): c.data for c in cfgs}.values():
        ensure_present(d)
    return cfgs


def main() -> None:
    """Console entry point: preflight the overrides, then hand over to Hydra."""
    args = sys.argv[1:]
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
            summary = run(cfg, out_dir, label=_label(hc), launch=launch)
    except InputError as exc:
        _discard_unstarted(out_dir)
        if multirun:
            raise
        print(f"bnlab-train: error: {exc}", file=sys.stderr)
        sys.exit(2)
    return summary["status"]


if __name__ == "__main__":
    main()
