"""Entry point: `bnlab-train [overrides]` (or `python -m bnlab.train`).

The Hydra app is a thin shell around `run(cfg, out_dir) -> summary`, which tests call
directly. Order matters: validate the config and load the data before anything is written,
so bad input leaves no run behind; then train, with the run store always written and W&B
mirroring it.
"""
from __future__ import annotations

import logging
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
from omegaconf import DictConfig

import bnlab  # noqa: F401  (registers the ${repo_root:} resolver before Hydra composes)
from bnlab.config import validate
from bnlab.data import load_data
from bnlab.environment import environment, resolve_device
from bnlab.errors import ConfigError, InputError
from bnlab.layers import init_weights
from bnlab.models import build_model, count_parameters
from bnlab.optimizers import make_optimizer
from bnlab.probes import ActivationInputProbe
from bnlab.resolvers import CONF_DIR
from bnlab.store import RUN_FILE, RunWriter, fingerprint, resolved_config
from bnlab.tracking import open_mirror
from bnlab.trainer import train

log = logging.getLogger("bnlab")


def seed_everything(seed: int) -> None:
    """Reset global RNG state: launchers may reuse one process for several jobs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(cfg: DictConfig, out_dir: str | Path) -> dict:
    """Train one configuration into the run directory `out_dir` and return its summary.

    Raises InputError (before writing anything) for bad config or missing data. A diverged
    run returns normally with status `diverged`; any other failure is recorded as `failed`
    in summary.json and re-raised.
    """
    validate(cfg)
    config = resolved_config(cfg)
    if cfg.trainer.num_threads is not None:
        torch.set_num_threads(cfg.trainer.num_threads)
    device = resolve_device(cfg.trainer.device)
    data = load_data(cfg.data, device)

    seed_everything(cfg.seed)
    model = build_model(cfg.model, data.in_shape, data.num_classes).to(device)
    init_weights(model, cfg.init.scheme, cfg.init.std, cfg.init.gain)
    optimizer = make_optimizer(cfg.optim, model)
    params = count_parameters(model)
    probe = None
    if cfg.probes.act_input.enabled:
        pool = data.val_x if len(data.val_x) else data.train_x
        p = cfg.probes.act_input
        probe = ActivationInputProbe(pool[:p.batch_size], p.units, p.percentiles)
    log.info("%s on %s: %s parameters, device %s, %d train / %d val / %d test images",
             cfg.model.name, cfg.data.name, f"{params:,}", device, len(data.train_x),
             len(data.val_x), len(data.test_x))

    fp = fingerprint(config)
    env = environment(device)
    writer = RunWriter(out_dir)
    writer.start({"config": config, "fingerprint": fp, "env": env, "data": data.info,
                  "params": params, "started_at": _now()})
    base = {"fingerprint": fp, "params": params, "data": data.info, "started_at": _now()}
    wall = time.perf_counter()
    try:
        with open_mirror(config, out_dir) as mirror:
            def emit(record: dict) -> None:
                writer.log(record)
                mirror.log(record)

            result = train(model, optimizer, data, cfg.trainer, seed=cfg.seed,
                           augment=cfg.data.augment, batch_size=cfg.optim.batch_size,
                           emit=emit, probe=probe)
            summary = {**result, **base, "wall_time_s": time.perf_counter() - wall,
                       "finished_at": _now()}
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


def preflight(overrides: list[str]) -> DictConfig:
    """Compose and validate the config as Hydra will, before Hydra makes a run folder.

    Hydra reports an unknown group option or key over several lines; here every bad input
    becomes one ConfigError line naming the key and the allowed values.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError("overrides", _one_line(exc)) from None
    for ov in parsed:
        group_dir = CONF_DIR / ov.key_or_group
        if group_dir.is_dir() and not ov.is_delete():
            value = ov.value()
            options = sorted(p.stem for p in group_dir.glob("*.yaml"))
            if isinstance(value, str) and value not in options:
                raise ConfigError(ov.key_or_group, f"got {value!r}; allowed: {', '.join(options)}")
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="preflight"):
            cfg = compose("config", overrides=overrides)
    except HydraException as exc:
        unknown = re.search(r"Could not override '([^']+)'", str(exc))
        if unknown and "not in struct" in str(exc.__cause__):
            key = unknown.group(1)
            raise ConfigError(key, f"no such key in the config (a typo? `bnlab-train --cfg job` "
                              f"lists the keys; +{key}=... adds a new one)") from None
        raise ConfigError("overrides", _one_line(exc)) from None
    validate(cfg)
    return cfg


def main() -> None:
    """Console entry point: preflight the overrides, then hand over to Hydra."""
    args = sys.argv[1:]
    # Hydra's own flags (--help, --cfg, -m, ...) go straight to Hydra.
    if not any(a.startswith("-") for a in args):
        try:
            preflight(args)
        except InputError as exc:
            print(f"bnlab-train: error: {exc}", file=sys.stderr)
            sys.exit(2)
    hydra_main()


# An absolute path: a relative one is looked up as a Python package when run as a module.
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> str:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run(cfg, out_dir)
    except InputError as exc:
        _discard_unstarted(out_dir)
        print(f"bnlab-train: error: {exc}", file=sys.stderr)
        sys.exit(2)
    return summary["status"]


if __name__ == "__main__":
    main()
