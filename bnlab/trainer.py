"""The shared training loop, used by every run of every study.

`train(model, optimizer, data, spec, hooks)` reads like its table of contents: start (evaluate
the untrained net, or restore a checkpoint), then for every step: save a checkpoint when one is
due (or the run was asked to stop), take one optimizer step on a drawn batch (an index into
device tensors), accumulate the train loss/accuracy on the device (no host sync per step), and
at interval boundaries stop the clock, log, evaluate, probe and check for divergence; last, the
run's result. `time_s` counts training time only; evaluation, logging and checkpoints are
excluded.

The run is the unit (`RunLoop`: its spec, hooks, `Progress`, sampler and accumulators) and the
step is swappable (`Engine`): `train_group` steps several runs in lockstep, and `train` is a
group of one. bnlab.stacked_engine is the engine that trains K runs as one stacked model.

What it is given: a `LoopSpec` (plain values: how long, how often, what counts as diverged) and
`Hooks` (what it calls out to: the sink for records, the probes, the rate schedule, checkpoints,
stop requests). What it keeps: `Progress`, the loop's state, which a checkpoint carries so that
a resumed run continues exactly.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bnlab.data import BatchSampler, Splits, augment_batch
from bnlab.evaluation import evaluate
from bnlab.outcomes import learned_rule
from bnlab.probes import Probe, StepProbe
from bnlab.recalibration import PREFIX as RECAL_PREFIX
from bnlab.rng import global_rng_state, rng_state, set_global_rng_state

if TYPE_CHECKING:
    from bnlab.checkpoint import Checkpoints
    from bnlab.stopping import StopRequests

log = logging.getLogger(__name__)
RECAL_VAL = RECAL_PREFIX + "val/acc"
# the keys of an evaluation that a run's summary carries as its last values
EVAL_PREFIXES = ("val/", "test/", "train_eval/", RECAL_PREFIX)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _progress_bar(total: int, enabled: bool):
    if not (enabled and sys.stderr.isatty()):
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="step", dynamic_ncols=True, leave=False)


class Heartbeat:
    """A log line with the step, the rate and the ETA at least every `every_s` seconds of a
    run whose progress bar is not shown (stderr is not a terminal: a log file, a scheduler's
    output), so that a slow run between two evaluations is never silent. The rate is that of
    the last interval, in wall-clock time (evaluations included: what the ETA must cover)."""

    def __init__(self, every_s: float, step: int, max_steps: int, clock: Callable[[], float] = time.monotonic):
        self.every_s, self.max_steps, self.clock = every_s, max_steps, clock
        self.last_step, self.last_t = step, clock()

    def tick(self, step: int) -> None:
        now = self.clock()
        if now - self.last_t < self.every_s:
            return
        rate = (step - self.last_step) / (now - self.last_t)
        eta = (self.max_steps - step) / rate if rate > 0 else None
        eta_text = "?" if eta is None else f"{int(eta) // 3600}:{int(eta) % 3600 // 60:02d}:{int(eta) % 60:02d}"
        log.info("step %d/%d (%.1f%%), %.3g steps/s, ETA %s", step, self.max_steps, 100 * step / self.max_steps,
                 rate, eta_text)
        self.last_step, self.last_t = step, now


def _short(value) -> str:
    """A metric for a log line: 4 significant digits ("-" when not measured)."""
    return "-" if value is None else f"{value:.4g}"


def is_eval_step(step: int, max_steps: int, every: int, early_every: int | None, early_steps: int) -> bool:
    """Evaluation schedule: every `every` steps and at the last step, plus every
    `early_every` steps up to `early_steps` (finer early evaluations resolve steps-to-target
    where the arms differ, without evaluating densely all run long). Plain ints: it runs at
    every step, where reading the config node would cost a measurable share of a small step."""
    if step % every == 0 or step == max_steps:
        return True
    return bool(early_every) and step <= early_steps and step % early_every == 0


@dataclass(frozen=True)
class LoopSpec:
    """What one run's loop does and when: plain values, read once from the config
    (`from_config`), so the loop never reads a config node per step."""
    max_steps: int
    """optimizer steps in all (`trainer.max_steps`)"""
    batch_size: int
    """training images per step (`optim.batch_size`)"""
    seed: int
    """the batch order's seed, and (+1) the augmentation's (`seed`)"""
    augment: bool = False
    """random crops and flips of each training batch (`data.augment`)"""
    log_every: int = 100
    """steps per logged train loss/accuracy, the mean over the interval (`trainer.log_every`)"""
    eval_every: int = 1000
    """steps between evaluations, plus step 0 and the last (`trainer.eval_every`)"""
    eval_every_early: int | None = None
    """a finer evaluation interval early in training; None: off (`trainer.eval_every_early`)"""
    early_steps: int = 0
    """how long the early interval applies (`trainer.early_steps`)"""
    eval_batch_size: int = 2000
    """images per forward pass when evaluating (`trainer.eval_batch_size`)"""
    eval_train: int = 0
    """also evaluate the first this many training images: the train-test gap (`trainer.eval_train`)"""
    divergence_factor: float = 10.0
    """diverged: a loss above this times the starting loss that is not falling (`trainer.divergence_factor`)"""
    divergence_warmup: int = 100
    """steps before the factor rule applies; a non-finite loss counts at once (`trainer.divergence_warmup`)"""
    learned_margin: float = 0.1
    """"learned": best validation accuracy at least chance + this (`trainer.learned_margin`)"""
    target_acc: float | None = None
    """the validation accuracy whose first reaching is the run's speed (`data.target_val_acc`)"""
    progress: bool = False
    """a progress bar when stderr is a terminal (`trainer.progress`)"""
    progress_every_s: float | None = None
    """without a bar (not a terminal): a log line with step, rate and ETA this often (`trainer.progress_every_s`)"""
    bf16: bool = False
    """the forward pass and the loss under bfloat16 autocast (`trainer.bf16`)"""
    channels_last: bool = False
    """4-D batches in NHWC memory layout, as the model's weights (`trainer.channels_last`)"""

    @classmethod
    def from_config(cls, cfg) -> "LoopSpec":
        """The loop's values from a composed (validated) run config."""
        t = cfg.trainer
        return cls(max_steps=t.max_steps, batch_size=cfg.optim.batch_size, seed=cfg.seed,
                   augment=bool(cfg.data.augment), log_every=t.log_every, eval_every=t.eval_every,
                   eval_every_early=t.eval_every_early, early_steps=t.early_steps,
                   eval_batch_size=t.eval_batch_size, eval_train=t.get("eval_train", 0) or 0,
                   divergence_factor=t.divergence_factor, divergence_warmup=t.divergence_warmup,
                   learned_margin=t.learned_margin, target_acc=cfg.data.target_val_acc,
                   progress=bool(t.progress), progress_every_s=t.get("progress_every_s"),
                   bf16=bool(t.get("bf16", False)), channels_last=bool(t.get("channels_last", False)))

    def is_eval_step(self, step: int) -> bool:
        return is_eval_step(step, self.max_steps, self.eval_every, self.eval_every_early, self.early_steps)


@dataclass
class Hooks:
    """What the loop calls out to. Only `emit` is required."""
    emit: Callable[[dict], None]
    """receives every logged record (the run store and the W&B mirror, in bnlab.runner)"""
    probes: Sequence[Probe] = ()
    """measured at every evaluation, on the probes' own fixed batch (bnlab.probes)"""
    step_probes: Sequence[StepProbe] = ()
    """measured inside an evaluation step, on its own minibatch, before the update"""
    lr_at: Callable[[int], float] | None = None
    """step -> rate, set before every step (bnlab.optimizers.lr_schedule); None: left alone"""
    checkpoints: "Checkpoints | None" = None
    """saves the loop's state when one is due, and when the run is asked to stop"""
    stop: "StopRequests | None" = None
    """pending stop requests (SIGTERM, preemption): save, then honour"""
    name: str = ""
    """what the run's log lines start with, among the runs of a group (its swept values)"""


@dataclass
class Progress:
    """The loop's own state, apart from the model, optimizer and generators: what a
    checkpoint must carry for a resumed run to continue exactly where it stopped."""
    step: int = 0
    train_time: float = 0.0  # training seconds so far (evaluation, logging, checkpoints excluded)
    # the best evaluation (the untrained net's at step 0 included: a run that diverges
    # before its next evaluation has that as its best), and the best after step 0 (did it learn?)
    best: dict = field(default_factory=lambda: {"val/acc": -1.0, "step": 0})
    trained_best_val: float = -1.0
    # the same for the recalibrated readout (bnlab.recalibration), when a probe records it
    best_recal: dict = field(default_factory=lambda: {"val/acc": -1.0, "step": 0})
    # speed: the first evaluation at which val/acc reaches the dataset's target
    to_target: dict = field(default_factory=lambda: {"steps_to_target": None, "time_to_target_s": None,
                                                     "samples_to_target": None})
    last_eval: dict = field(default_factory=dict)
    last_train: dict = field(default_factory=dict)
    diverged_at: int | None = None
    initial_loss: float | None = None
    previous_loss: float = math.inf
    loss_limit: float = math.inf
    # the running sums of the current logging interval (device tensors while training)
    interval: int = 0
    loss_sum: float = 0.0
    correct_sum: int = 0


def train(model: nn.Module, optimizer: torch.optim.Optimizer, data: Splits, spec: LoopSpec,
          hooks: Hooks, resume_from: dict | None = None) -> dict:
    """Train for `spec.max_steps` steps; return the run's result fields (no status I/O here).

    `resume_from` (a loaded checkpoint) continues a run from the step after the one it was
    saved at; without it the untrained net is evaluated first (step 0). A group of one."""
    return train_group([RunLoop(model, optimizer, data, spec, hooks)], [resume_from])[0]


def train_group(loops: list["RunLoop"], resume_from: Sequence[dict | None], engine: "Engine | None" = None) -> list[dict]:
    """Train several runs in lockstep, one `engine` step for all of them at every step (the
    default engine steps each run's own model and optimizer; bnlab.stacked_engine steps them as
    one stacked model), and return each run's result fields.

    Each run keeps everything that makes it a run (its spec, hooks, `Progress`, sampler,
    divergence state): a run that diverges is evaluated, recorded and stops, its weights
    frozen, while the others go on. The runs must start at the same step (all fresh, or all
    resumed from checkpoints of one step) and have the same `max_steps`."""
    if len({lp.spec.max_steps for lp in loops}) != 1:
        raise ValueError("the runs of one group must have the same max_steps")
    for loop, saved in zip(loops, resume_from):
        if saved is None:
            loop.evaluate_untrained()
        else:
            loop.restore(saved)
    if len({lp.p.step for lp in loops}) != 1:
        raise ValueError("the runs of one group must start at the same step")
    _Group(loops, engine or Engine()).run_steps()
    return [lp.result() for lp in loops]


class Engine:
    """How one step of a group is computed: here each run's own model and optimizer, one run
    after another (a group of one is the trainer as it always was). bnlab.stacked_engine
    computes the same step for K runs as one stacked model."""
    name = "single"

    def step(self, loops: Sequence["RunLoop"], step: int) -> float:
        """One optimizer step of every run in `loops`; returns the seconds spent in step
        probes (not training time)."""
        return sum(lp.own_step(step) for lp in loops)

    def sync(self, loop: "RunLoop") -> None:
        """Bring `loop`'s own model and optimizer up to date (before it is evaluated or saved)."""

    def stopped(self, loop: "RunLoop") -> None:
        """`loop` stops (it diverged): its weights stay as they are."""


class _Group:
    """The loop over steps of a group of runs: checkpoints, the engine's step, then each run's
    logging, evaluation and divergence check. The clock is the group's: training time between
    two stops is shared equally among the runs that trained in it (one run: all of it)."""

    def __init__(self, loops: list["RunLoop"], engine: Engine):
        self.loops, self.engine = loops, engine
        self.active = list(loops)
        self.spec = loops[0].spec
        self.device = loops[0].device
        self.tick = 0.0
        for lp in loops:
            lp.sync = (lambda lp=lp: engine.sync(lp))

    def run_steps(self) -> None:
        spec, first = self.spec, self.loops[0]
        solo = len(self.loops) == 1
        bar = _progress_bar(spec.max_steps, spec.progress)
        if bar is not None:
            bar.update(first.p.step)
        beat = Heartbeat(spec.progress_every_s, first.p.step, spec.max_steps) \
            if bar is None and spec.progress_every_s else None
        for lp in self.loops:
            lp.model.train()
        self._start_clock()
        for step in range(first.p.step + 1, spec.max_steps + 1):
            # Between steps: the state is that of the end of step `step - 1`, all of it logged.
            self._save_if_due()
            self.tick += self.engine.step(self.active, step)  # probes' time is not training time
            if beat is not None:
                beat.tick(step)
            if not (step % spec.log_every == 0 or step == spec.max_steps or spec.is_eval_step(step)):
                continue
            self._stop_clock()  # the clock stops while we log and evaluate
            for lp in list(self.active):
                lp.record_step(step, bar if solo else None)
                if lp.p.diverged_at is not None:
                    self.engine.stopped(lp)
                    self.active.remove(lp)
            if not self.active:
                break
            self.tick = time.perf_counter()
        if bar is not None:
            bar.close()

    def _start_clock(self) -> None:
        _sync(self.device)
        self.tick = time.perf_counter()

    def _stop_clock(self) -> None:
        _sync(self.device)
        share = (time.perf_counter() - self.tick) / len(self.active)
        for lp in self.active:
            lp.p.train_time += share

    def _save_if_due(self) -> None:
        """Every run's checkpoint when one of them is due, or when a stop is requested (then the
        stop is honoured): the runs of a group are saved at one step, so they resume together."""
        hooks = [lp.hooks for lp in self.active]
        stop = next((h.stop for h in hooks if h.stop is not None), None)
        stopping = stop is not None and stop.requested
        if stopping or any(h.checkpoints is not None and h.checkpoints.due() for h in hooks):
            self._stop_clock()  # the clock stops while we save
            for lp in self.active:
                if lp.hooks.checkpoints is not None and lp.hooks.checkpoints.enabled:
                    lp.hooks.checkpoints.save(lp.snapshot())
            if stopping:
                stop.honour()
            self.tick = time.perf_counter()


class RunLoop:
    """One run inside the loop: the model, optimizer and generators it steps, the device
    accumulators of the current logging interval, and its `Progress`."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, data: Splits,
                 spec: LoopSpec, hooks: Hooks):
        self.model, self.optimizer, self.data, self.spec, self.hooks = model, optimizer, data, spec, hooks
        self.device = device = data.train_x.device
        self.sampler = BatchSampler(len(data.train_x), spec.batch_size, spec.seed, device)
        self.aug_gen = torch.Generator(device=device).manual_seed(spec.seed + 1) if spec.augment else None
        self.p = Progress()
        # the splits every evaluation measures, in eval mode: validation, test, and (eval_train > 0)
        # the first eval_train training images, whose accuracy minus test's is the train-test gap
        self.splits = {"val": (data.val_x, data.val_y), "test": (data.test_x, data.test_y)}
        if spec.eval_train:
            self.splits["train_eval"] = (data.train_x[:spec.eval_train], data.train_y[:spec.eval_train])
        self.loss_acc = torch.zeros((), device=device)
        self.correct_acc = torch.zeros((), dtype=torch.long, device=device)
        self.step_record: dict = {}  # what the step probes measured inside the current step
        # brings the model and optimizer up to date before an evaluation or a checkpoint (an
        # engine that trains the run elsewhere, bnlab.stacked_engine, sets it)
        self.sync: Callable[[], None] = lambda: None
        # the training step's forward pass: the model, or its compiled form (trainer.compile),
        # which shares its parameters (evaluation and probes call the model itself)
        self.forward: Callable[[torch.Tensor], torch.Tensor] = model
        # an evaluation and a probe's measurement, of this run's own model by default; the
        # stacked engine measures all its runs at once and hands each its own numbers
        self.evaluate_split: Callable[[str, torch.Tensor, torch.Tensor], tuple[float, float]] = \
            lambda split, x, y: evaluate(self.model, x, y, self.spec.eval_batch_size)
        self.measure_probe: Callable[[Probe, int], dict] = lambda probe, step: probe.measure(self.model, step=step)
        # the random state the run's next step draws from (dropout): the global generators alone
        self.rng_state: Callable[[], dict] = lambda: global_rng_state(self.device)
        self.restored_rng: dict | None = None

    # -- start -------------------------------------------------------------------------------
    def evaluate_untrained(self) -> None:
        rec = self._record(0)
        self._evaluate_into(rec)
        self.hooks.emit(rec)

    def restore(self, saved: dict) -> None:
        """Continue from a checkpoint (bnlab.checkpoint): everything the next step depends on."""
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.sampler.load_state_dict(saved["sampler"])
        if self.aug_gen is not None:
            self.aug_gen.set_state(saved["augment"])
        self.p = Progress(**saved["progress"])
        self.loss_acc.fill_(self.p.loss_sum)
        self.correct_acc.fill_(self.p.correct_sum)
        self.restored_rng = saved["rng"]  # what the run's dropout draws from next (an engine may hold it)
        set_global_rng_state(saved["rng"], self.device)  # last: loading must not move the RNGs after it
        log.info("resuming from the checkpoint at step %d of %d", self.p.step, self.spec.max_steps)

    def snapshot(self) -> dict:
        """Everything the next step depends on (see bnlab.checkpoint)."""
        self.sync()
        p = self.p
        p.loss_sum, p.correct_sum = self.loss_acc.item(), int(self.correct_acc.item())
        return {"progress": asdict(p), "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "sampler": self.sampler.state_dict(), "rng": self.rng_state(),
                "augment": self.aug_gen.get_state() if self.aug_gen is not None else None}

    # -- the step ----------------------------------------------------------------------------
    def rate(self, step: int) -> float | None:
        """The rate of `step` from the schedule (None: constant, the optimizer's own)."""
        return self.hooks.lr_at(step) if self.hooks.lr_at is not None else None

    def own_step(self, step: int) -> float:
        """One optimizer step of this run's own model on its next batch; the step probes
        measure inside it (at evaluation steps). Returns the seconds the probes took."""
        model, optimizer, data = self.model, self.optimizer, self.data
        probing = bool(self.hooks.step_probes) and self.spec.is_eval_step(step)
        lr = self.rate(step)
        if lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr
        idx = self.sampler.next()
        xb, yb = data.train_x[idx], data.train_y[idx]
        if self.aug_gen is not None:
            xb = augment_batch(xb, self.aug_gen)
        if self.spec.channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        rng_before = rng_state(self.device, model) if probing else None
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.spec.bf16):
            logits = self.forward(xb)
            loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        paused = 0.0
        if probing:  # inside the step, on its own minibatch; the clock stops meanwhile
            _sync(self.device)
            t0 = time.perf_counter()
            for probe in self.hooks.step_probes:
                self.step_record.update(probe.measure_step(model, optimizer, xb, yb, rng_before))
            _sync(self.device)
            paused = time.perf_counter() - t0
        optimizer.step()
        if self.p.initial_loss is None:
            self.start_from(loss.item())
        self.loss_acc += loss.detach()
        self.correct_acc += (logits.argmax(1) == yb).sum()
        self.counted(step)
        return paused

    def start_from(self, first_loss: float) -> None:
        """The loss of the first minibatch, before any update: where this run started.
        Divergence is judged against it, so a run that starts high (a huge init) and falls is
        never "diverged"."""
        p = self.p
        p.initial_loss = first_loss
        p.loss_limit = self.spec.divergence_factor * max(first_loss, math.log(self.data.num_classes)) \
            if math.isfinite(first_loss) else -math.inf

    def counted(self, step: int) -> None:
        """Step `step` is done (its loss and correct count are in the accumulators)."""
        self.p.interval += 1
        self.p.step = step

    def record_step(self, step: int, bar=None) -> None:
        """At a logging or evaluation step: the interval's train metrics, the evaluation (and
        the one made where a diverged run stops), to the hooks; the log line or the bar."""
        spec, p = self.spec, self.p
        do_eval = spec.is_eval_step(step)
        rec = self._record(step)
        rec.update(self.step_record)
        self.step_record = {}
        if step % spec.log_every == 0 or step == spec.max_steps:
            self._close_interval(rec, step)
        if do_eval or p.diverged_at is not None:
            self._evaluate_into(rec, counts=p.diverged_at is None)  # what a broken model does, then stop
        self.hooks.emit(rec)
        self._show(rec, bar, step, do_eval)
        if p.diverged_at is not None:
            log.warning("%straining loss %.4g at step %d (started at %.4g, limit %.4g): run diverged",
                        self._who(), p.last_train["train/loss"], step, p.initial_loss, p.loss_limit)

    # -- logging, evaluation, divergence -----------------------------------------------------
    def _record(self, step: int) -> dict:
        return {"step": step, "samples": step * self.spec.batch_size, "time_s": round(self.p.train_time, 6),
                "lr": self.optimizer.param_groups[0]["lr"]}

    def _close_interval(self, rec: dict, step: int) -> None:
        """The interval's mean train loss/accuracy into `rec`, and the divergence check."""
        p = self.p
        train_loss = self.loss_acc.item() / p.interval
        rec["train/loss"] = train_loss
        rec["train/acc"] = self.correct_acc.item() / (p.interval * self.spec.batch_size)
        p.last_train.update({k: rec[k] for k in ("train/loss", "train/acc")})
        self.loss_acc.zero_()
        self.correct_acc.zero_()
        p.interval = 0
        # Diverged: a non-finite loss at any time; or, after the warm-up, a loss far above
        # where the run started that is not falling. A falling loss is never divergence.
        blown = not math.isfinite(train_loss) or (
            step > self.spec.divergence_warmup and train_loss > p.loss_limit and train_loss >= p.previous_loss)
        p.previous_loss = train_loss
        if blown:
            p.diverged_at = step

    def _evaluate_into(self, rec: dict, counts: bool = True) -> None:
        """Evaluate into `rec`. An evaluation that does not count (the one made where a
        diverged run is stopped) is recorded, but is never the run's best or its target."""
        self.sync()
        p, target = self.p, self.spec.target_acc
        for split, (x, y) in self.splits.items():
            if len(x):
                rec[f"{split}/loss"], rec[f"{split}/acc"] = self.evaluate_split(split, x, y)
        for probe in self.hooks.probes:
            rec.update(self.measure_probe(probe, rec["step"]))
        p.last_eval.update({k: v for k, v in rec.items() if k.startswith(EVAL_PREFIXES)})
        if not counts:
            return
        if target is not None and p.to_target["steps_to_target"] is None and rec.get("val/acc", -1.0) >= target:
            p.to_target.update(steps_to_target=rec["step"], time_to_target_s=rec["time_s"],
                               samples_to_target=rec["samples"])
        if rec["step"] > 0:
            p.trained_best_val = max(p.trained_best_val, rec.get("val/acc", -1.0))
        if rec.get("val/acc", -1.0) > p.best["val/acc"]:
            p.best.update({"val/acc": rec["val/acc"], "val/loss": rec["val/loss"], "step": rec["step"],
                           "test/acc": rec.get("test/acc"), "test/loss": rec.get("test/loss"),
                           "train_eval/acc": rec.get("train_eval/acc")})
        if rec.get(RECAL_VAL, -1.0) > p.best_recal["val/acc"]:
            p.best_recal.update({"val/acc": rec[RECAL_VAL], "step": rec["step"],
                                 "test/acc": rec.get(RECAL_PREFIX + "test/acc")})

    def _show(self, rec: dict, bar, step: int, do_eval: bool) -> None:
        if bar is not None:
            bar.update(step - bar.n)
            bar.set_postfix({k: f"{v:.4f}" for k, v in rec.items() if k in ("train/loss", "val/acc")})
        elif do_eval:
            log.info("%sstep %d/%d  train/loss %s  val/acc %s", self._who(), step, self.spec.max_steps,
                     _short(rec.get("train/loss")), _short(rec.get("val/acc")))

    def _who(self) -> str:
        return f"{self.hooks.name}: " if self.hooks.name else ""

    # -- the end -----------------------------------------------------------------------------
    def result(self) -> dict:
        """The run's result fields: outcome, steps, times, last and best metrics, speed."""
        p, spec = self.p, self.spec
        best_val = p.best["val/acc"] if p.best["val/acc"] >= 0 else None
        trained_val = p.trained_best_val if p.trained_best_val >= 0 else None
        # data.val_size=0 (issue 22): no validation split, so "learned" is judged on the last
        # test accuracy (and says so) instead of a false "false" from a best val/acc never measured
        no_val = len(self.splits["val"][0]) == 0
        judged_on = p.last_eval.get("test/acc") if no_val else trained_val
        learned = p.diverged_at is None and learned_rule(judged_on, p.last_train.get("train/loss"),
                                                         p.initial_loss, self.data.num_classes, spec.learned_margin)
        return {
            "status": "diverged" if p.diverged_at is not None else "completed",
            "learned": learned,
            **({"learned_on": "test/acc"} if no_val else {}),
            "steps": p.step,
            "diverged_at_step": p.diverged_at,
            "initial_loss": p.initial_loss,
            "train_time_s": p.train_time,
            "step_time_ms": 1000 * p.train_time / max(p.step, 1),
            **p.last_train, **p.last_eval,
            "best/val/acc": best_val,
            "best/step": p.best["step"],
            "best/test/acc": p.best.get("test/acc"),
            # eval-mode accuracy on training images at the best-validation evaluation (eval_train > 0)
            **({"best/train_eval/acc": p.best.get("train_eval/acc")} if "train_eval" in self.splits else {}),
            # the recalibrated readout at its own best validation evaluation (bnlab.recalibration)
            **({f"best/{RECAL_PREFIX}{k}": v for k, v in p.best_recal.items()} if p.best_recal["val/acc"] >= 0 else {}),
            "target_val_acc": spec.target_acc,
            **p.to_target,
        }
