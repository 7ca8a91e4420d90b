"""`run(cfg, out_dir) -> summary`: one configuration trained into one run directory;
`run_group(jobs)`: several, trained together (a run is a group of one).

The Hydra shell (bnlab.train) calls it for every job; tests call it directly. Order
matters: validate the config and load the data before anything is written, so bad input
leaves no run behind; then train, with the run store always written and W&B mirroring it.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
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
from bnlab.trainer import Hooks, LoopSpec, RunLoop, train_group

log = logging.getLogger("bnlab")
PAIRING_VERSION = 1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Job:
    """One run to train: its config, its run folder and how it is named and resumed."""
    cfg: DictConfig
    out_dir: Path
    label: str | None = None
    """the swept values that name it (W&B)"""
    launch: str | None = None
    """the sweep it belongs to (W&B)"""
    resume_from: dict | None = None
    """the checkpoint of the unfinished run in `out_dir` (bnlab.checkpoint.find_resumable)"""
    overrides: list[str] | None = None
    """the overrides that compose `cfg` (a stack's job: recorded, so that scripts/check_rerun.py
    can train the same stack again)"""


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
    or the job itself); a direct caller leaves it False and `run` validates. A group of one.
    """
    return run_group([Job(cfg, Path(out_dir), label, launch, resume_from)], validated=validated)[0]


def run_group(jobs: list[Job], *, validated: bool = False, engine: str = "single") -> list[dict]:
    """Train the runs of `jobs` together (bnlab.trainer.train_group) and return their summaries.

    The jobs share the data, the device and the thread count (the first job's), and start at
    the same step (all fresh, or all resumed from one step). `engine`: "single" steps each run's
    own model in turn; "stacked" steps them as one stacked model (bnlab.stacked_engine, which
    says why a group cannot stack). Each run is written to its own folder exactly as a run
    trained alone, with the engine named in its run.json (`env.engine`). A diverged run is
    recorded as diverged while the others go on; a failure of the group (an error, a stop
    request) is recorded as `failed` in every unfinished run, with its checkpoint, and re-raised.
    """
    cfgs = [j.cfg for j in jobs]
    if not validated:
        for cfg in cfgs:
            validate(cfg)
    cfg0 = cfgs[0]
    if cfg0.trainer.num_threads == AUTO:  # a direct caller (bnlab.train chose the number already)
        set_torch_threads(AUTO)
    elif cfg0.trainer.num_threads is not None:
        torch.set_num_threads(cfg0.trainer.num_threads)
    device = resolve_device(cfg0.trainer.device)
    data = load_data(cfg0.data, device)
    units = [RunUnit(j, data, device) for j in jobs]
    step_engine = None
    if engine == "stacked":  # a stack of one too, when asked (scripts/check_rerun.py)
        from bnlab.stacked_engine import StackedEngine, why_loops_cannot_stack

        reason = why_loops_cannot_stack([u.loop for u in units])
        if reason:
            raise NotStackable(f"cannot stack these runs: {reason}")
        step_engine = StackedEngine([u.loop for u in units])
    engine_name = step_engine.name if step_engine is not None else "single"
    # a stacked run's arithmetic depends (in its last bits) on its stack's size and order: what
    # it was stacked with is recorded, so that a rerun can stack the same runs again
    stack = [j.overrides for j in jobs] if step_engine is not None and all(j.overrides for j in jobs) else None
    for u in units:
        u.start(engine_name, len(units), stack)
        if len(units) > 1:  # its log lines say which run of the group they are about
            u.hooks.name = u.job.label or u.out_dir.name
    stop = StopRequests()
    try:
        with stop, contextlib.ExitStack() as mirrors:
            for u in units:
                u.open(mirrors, stop)
            results = train_group([u.loop for u in units], [j.resume_from for j in jobs], step_engine)
            summaries = [u.summarise(r) for u, r in zip(units, results)]
    except BaseException as exc:
        with stop.holding():  # every run's failure is written, whatever signal comes meanwhile
            for u in units:
                u.record_failure(exc, stop)
        raise
    with stop.holding():
        for u, summary in zip(units, summaries):
            u.finish(summary)
    if stop.requested:  # asked to stop after the last step: the runs are done, the sweep stops
        stop.honour(finished=", ".join(sorted({s["status"] for s in summaries})))
    return summaries


def train_stack(jobs: list[Job]) -> list[dict]:
    """Train the jobs of a stack (bnlab.stack_plan): those that start at the same step (all
    fresh, or resumed from one stack's checkpoints) as one stacked group; a group that cannot
    stack after all (bnlab.stacked_engine says why) trains its runs one after another, each
    alone. Returns every summary."""
    by_start: dict[int, list[Job]] = {}
    for job in jobs:
        by_start.setdefault(job.resume_from["progress"]["step"] if job.resume_from else 0, []).append(job)
    summaries = []
    for group in by_start.values():
        if len(group) == 1:
            summaries += run_group(group, validated=True)
            continue
        try:
            summaries += run_group(group, validated=True, engine="stacked")
        except NotStackable as exc:
            log.warning("%s: the %d runs train one after another", exc, len(group))
            for job in group:
                summaries += run_group([job], validated=True)
    return summaries


class NotStackable(ValueError):
    """A group of runs that the stacked engine cannot train together (raised before anything is written)."""


class RunUnit:
    """One run of a group, apart from its loop: its config, fingerprint, store writer, W&B
    mirror and checkpoints, and the summary it ends with (or the failure it records)."""

    def __init__(self, job: Job, data, device: torch.device):
        cfg = job.cfg
        self.job, self.cfg, self.out_dir = job, cfg, job.out_dir
        self.config = resolved_config(cfg)
        self.data, self.device = data, device
        seed_everything(cfg.seed)
        model = build_model(cfg.model, data.in_shape, data.num_classes).to(device)
        # paired seeds: per-layer generators, so both arms share every shared layer's weights
        init_weights(model, cfg.init.scheme, cfg.init.std, cfg.init.gain, seed=cfg.seed)
        seed_noise(model, cfg.seed)  # noisy_batch / noise layers: their own generators
        if cfg.trainer.channels_last:
            model = model.to(memory_format=torch.channels_last)  # conv weights NHWC (a no-op for 2-D ones)
        optimizer = make_optimizer(cfg.optim, model)
        self.params = count_parameters(model)
        probes, step_probes = build_probes(cfg, data)
        # Building the arms consumed the global RNG differently (a bias here, a norm layer
        # there): reseed so that both arms draw the same dropout masks in the same order.
        seed_everything(cfg.seed)
        self.hooks = Hooks(emit=self._emit, probes=probes, step_probes=step_probes, lr_at=lr_schedule(cfg.optim))
        self.loop = RunLoop(model, optimizer, data, LoopSpec.from_config(cfg), self.hooks)
        if cfg.trainer.compile:
            self.loop.forward = torch.compile(model, mode=cfg.trainer.compile)
        log.info("%s on %s: %s parameters, device %s, %d train / %d val / %d test images",
                 cfg.model.name, cfg.data.name, f"{self.params:,}", device, len(data.train_x),
                 len(data.val_x), len(data.test_x))
        if len(data.val_x) == 0:
            log.warning("data.val_size=0: no validation split, so the validation-based outcomes (best "
                        "val/acc, its step, steps to target) are not measured; `learned` is judged on "
                        "the last test accuracy (recorded as learned_on: test/acc)")

    def start(self, engine: str, group_size: int, stack: list[list[str]] | None = None) -> None:
        """Open the run's folder (a fresh run.json, or the resumed run's records) and its checkpoints."""
        job, out_dir = self.job, self.out_dir
        self.fp = fp = fingerprint(self.config)
        self.writer = writer = RunWriter(out_dir)
        # earlier attempts of this run: the steps each resumed from, their wall time, W&B run id
        before = (job.resume_from or {}).get("meta", {})
        self.resumes = resumes = [*before.get("resumes", []), job.resume_from["progress"]["step"]] \
            if job.resume_from else []
        # the engine that trained it (bnlab.stacked_engine: equal to a run alone up to the
        # floating-point order of its sums); scripts/check_rerun.py reruns with the same one
        self.env = env = {**environment(self.device), "engine": engine, "group_size": group_size,
                          **({"stack": stack} if stack else {})}
        if job.resume_from is None:
            writer.start({"config": self.config, "fingerprint": fp, "env": env, "data": self.data.info,
                          "params": self.params, "started_at": _now()})
        else:
            writer.resume(job.resume_from["records_offset"])
        # `paired`: this run's initial weights, batches and dropout masks are a function of its
        # seed shared with every other arm (runs from before the paired design lack the field).
        self.base = base = {"fingerprint": fp, "params": self.params, "data": self.data.info,
                            "started_at": before.get("started_at", _now()), "paired": PAIRING_VERSION}
        if resumes:
            base["resumed_from_steps"] = resumes
        self.wall = time.perf_counter()
        self.wall_before = before.get("wall_time_s", 0.0)
        self.wandb_id = before.get("wandb_id")
        self.checkpoints = Checkpoints.from_config(out_dir, self.cfg.trainer.checkpoint, records=writer,
                                                   meta=lambda: {
            "fingerprint": fp,  # the config it belongs to (bnlab.checkpoint.unusable_because)
            "resumes": resumes, "started_at": base["started_at"], "wandb_id": self.wandb_id,
            "wall_time_s": self._wall_time()})
        self.hooks.checkpoints = self.checkpoints

    def _wall_time(self) -> float:
        return self.wall_before + time.perf_counter() - self.wall

    def open(self, mirrors: contextlib.ExitStack, stop: StopRequests) -> None:
        """Open the run's W&B mirror (closed with the group) and attach the stop requests."""
        job = self.job
        self.mirror = mirrors.enter_context(open_mirror(
            self.config, study_dir(self.cfg), label=job.label, launch=job.launch, run_id=self.wandb_id,
            code_version=self.env["code_version"]))
        self.wandb_id = self.mirror.run_id
        self.hooks.stop = stop

    def _emit(self, record: dict) -> None:
        self.writer.log(record)
        self.mirror.log(record)

    def summarise(self, result: dict) -> dict:
        summary = {**result, **self.base, "wall_time_s": self._wall_time(), "finished_at": _now()}
        summary["wandb_dir"] = self.mirror.run_dir
        self.mirror.set_summary(summary)
        return summary

    def record_failure(self, exc: BaseException, stop: StopRequests) -> None:
        """The run is recorded `failed`, with where a relaunch resumes from; never raises."""
        if not hasattr(self, "writer"):
            return  # never started: nothing was written
        # stopped by a signal (Terminated; SystemExit from submitit's requeue): say which
        reason = f"{type(exc).__name__}: {exc}"
        if stop.requested:
            reason = stop.reason if isinstance(exc, (Terminated, SystemExit)) else f"{stop.reason}, then {reason}"
        failed = {**self.base, "status": "failed", "error": reason, "finished_at": _now(),
                  "wall_time_s": self._wall_time()}
        # where a relaunch resumes from (bnlab.checkpoint.find_resumable)
        resume_from = self.job.resume_from
        saved = self.checkpoints.saved_step if self.checkpoints.saved_step is not None else \
            (resume_from["progress"]["step"] if resume_from else None)
        if saved is not None and self.checkpoints.path.exists():
            failed["checkpoint_step"] = saved
        try:
            self.writer.finish(failed)
        except StoreWriteError:
            pass  # the store cannot be written: the error being raised says so

    def finish(self, summary: dict) -> None:
        self.writer.finish(summary)
        self.checkpoints.discard()
        best = (f"best val/acc {summary['best/val/acc']:.4f} at step {summary['best/step']}"
                if summary.get("best/val/acc") is not None else "no validation set (data.val_size=0)")
        who = f"{self.hooks.name}: " if self.hooks.name else ""
        log.info("%s%s after %d steps: test/acc %.4f, %s, %.3f ms/step", who, summary["status"], summary["steps"],
                 summary.get("test/acc", float("nan")), best, summary["step_time_ms"])
