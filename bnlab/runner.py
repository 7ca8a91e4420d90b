"""`run(cfg, out_dir) -> summary`: one configuration trained into one run directory.

The Hydra shell (bnlab.train) calls it for every job; tests call it directly. Order
matters: validate the config and load the data before anything is written, so bad input
leaves no run behind; then train, with the run store always written and W&B mirroring it.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from omegaconf import DictConfig

from bnlab.checkpoint import Checkpoints
from bnlab.config import validate
from bnlab.data import load_data
from bnlab.environment import environment, resolve_device
from bnlab.errors import StoreWriteError
from bnlab.layers import init_weights
from bnlab.models import build_model, count_parameters
from bnlab.optimizers import lr_schedule, make_optimizer
from bnlab.probes import build_probes
from bnlab.rng import seed_everything, seed_noise
from bnlab.stopping import StopRequests, Terminated
from bnlab.store import RunWriter, fingerprint, resolved_config
from bnlab.sweep import study_dir
from bnlab.threads import AUTO, set_torch_threads
from bnlab.tracking import open_mirror
from bnlab.trainer import Hooks, LoopSpec, train

log = logging.getLogger("bnlab")
PAIRING_VERSION = 1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(cfg: DictConfig, out_dir: str | Path, *, label: str | None = None,
        launch: str | None = None, resume_from: dict | None = None, validated: bool = False) -> dict:
    """Train one configuration into the run directory `out_dir` and return its summary.

    Raises InputError (before writing anything) for bad config or missing data. A diverged
    run returns normally with status `diverged`; any other failure is recorded as `failed`
    in summary.json and re-raised, as is a write to the store that fails (StoreWriteError).
    `label` names the run (the swept values) and `launch` the sweep it belongs to, for the
    W&B mirror. `resume_from` is the checkpoint of the unfinished run in `out_dir`
    (bnlab.checkpoint.find_resumable): training continues from it in that folder.
    `validated`: the caller has validated `cfg` already (bnlab.train: the launch's preflight,
    or the job itself); a direct caller leaves it False and `run` validates.
    """
    if not validated:
        validate(cfg)
    config = resolved_config(cfg)
    if cfg.trainer.num_threads == AUTO:  # a direct caller (bnlab.train chose the number already)
        set_torch_threads(AUTO)
    elif cfg.trainer.num_threads is not None:
        torch.set_num_threads(cfg.trainer.num_threads)
    device = resolve_device(cfg.trainer.device)
    data = load_data(cfg.data, device)

    seed_everything(cfg.seed)
    model = build_model(cfg.model, data.in_shape, data.num_classes).to(device)
    # paired seeds: per-layer generators, so both arms share every shared layer's weights
    init_weights(model, cfg.init.scheme, cfg.init.std, cfg.init.gain, seed=cfg.seed)
    seed_noise(model, cfg.seed)  # noisy_batch / noise layers: their own generators
    optimizer = make_optimizer(cfg.optim, model)
    params = count_parameters(model)
    probes, step_probes = build_probes(cfg, data)
    # Building the arms consumed the global RNG differently (a bias here, a norm layer
    # there): reseed so that both arms draw the same dropout masks in the same order.
    seed_everything(cfg.seed)
    log.info("%s on %s: %s parameters, device %s, %d train / %d val / %d test images",
             cfg.model.name, cfg.data.name, f"{params:,}", device, len(data.train_x),
             len(data.val_x), len(data.test_x))
    if len(data.val_x) == 0:
        log.warning("data.val_size=0: no validation split, so the validation-based outcomes (best "
                    "val/acc, its step, steps to target) are not measured; `learned` is judged on "
                    "the last test accuracy (recorded as learned_on: test/acc)")

    fp = fingerprint(config)
    writer = RunWriter(out_dir)
    # earlier attempts of this run: the steps each resumed from, their wall time, W&B run id
    before = (resume_from or {}).get("meta", {})
    resumes = [*before.get("resumes", []), resume_from["progress"]["step"]] if resume_from else []
    env = environment(device)
    if resume_from is None:
        writer.start({"config": config, "fingerprint": fp, "env": env, "data": data.info,
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
        "fingerprint": fp,  # the config it belongs to (bnlab.checkpoint.unusable_because)
        "resumes": resumes, "started_at": base["started_at"], "wandb_id": wandb_id["id"],
        "wall_time_s": wall_before + time.perf_counter() - wall})
    stop = StopRequests()
    try:
        with stop, open_mirror(config, study_dir(cfg), label=label, launch=launch, run_id=wandb_id["id"],
                               code_version=env["code_version"]) as mirror:
            wandb_id["id"] = mirror.run_id

            def emit(record: dict) -> None:
                writer.log(record)
                mirror.log(record)

            hooks = Hooks(emit=emit, probes=probes, step_probes=step_probes, lr_at=lr_schedule(cfg.optim),
                          checkpoints=checkpoints, stop=stop)
            result = train(model, optimizer, data, LoopSpec.from_config(cfg), hooks, resume_from=resume_from)
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
    best = (f"best val/acc {summary['best/val/acc']:.4f} at step {summary['best/step']}"
            if summary.get("best/val/acc") is not None else "no validation set (data.val_size=0)")
    log.info("%s after %d steps: test/acc %.4f, %s, %.3f ms/step", summary["status"], summary["steps"],
             summary.get("test/acc", float("nan")), best, summary["step_time_ms"])
    if stop.requested:  # asked to stop after the last step: the run is done, the sweep stops
        stop.honour(finished=summary["status"])
    return summary
