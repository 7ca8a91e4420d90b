"""The shared training loop, used by every run of every study.

Reads top to bottom: between steps, save a checkpoint when one is due (or the run was asked
to stop); draw a batch (an index into device tensors), step, accumulate the train
loss/accuracy on the device (no host sync per step), and at interval boundaries stop the
clock, log, evaluate, probe, and check for divergence. `time_s` counts training time only;
evaluation, logging and checkpoints are excluded. The loop's state lives in `Progress`, so
that a checkpoint can carry it and a resumed run continue it exactly.
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
from bnlab.outcomes import learned_rule
from bnlab.probes import Probe, StepProbe
from bnlab.rng import global_rng_state, rng_state, set_global_rng_state

if TYPE_CHECKING:
    from bnlab.checkpoint import Checkpoints
    from bnlab.stopping import StopRequests

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` in eval mode over (x, y)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size])
        loss_sum += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum")
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum()
    model.train(was_training)
    n = max(len(x), 1)
    return loss_sum.item() / n, correct.item() / n


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _progress_bar(total: int, enabled: bool):
    if not (enabled and sys.stderr.isatty()):
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="step", dynamic_ncols=True, leave=False)


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


def train(model: nn.Module, optimizer: torch.optim.Optimizer, data: Splits, tcfg, *,
          seed: int, augment: bool, batch_size: int, emit: Callable[[dict], None],
          probes: Sequence[Probe] = (), step_probes: Sequence[StepProbe] = (),
          target_acc: float | None = None, checkpoints: "Checkpoints | None" = None,
          resume_from: dict | None = None, stop: "StopRequests | None" = None,
          lr_at: Callable[[int], float] | None = None) -> dict:
    """Train for `tcfg.max_steps` steps; return the run's result fields (no status I/O here).

    With `checkpoints`, the loop saves one when it is due and, when `stop` has a pending
    request (SIGTERM, preemption), saves one and then honours the request. `resume_from`
    (a loaded checkpoint) continues a run from the step after the one it was saved at.
    `lr_at` (step -> rate; bnlab.optimizers.lr_schedule) sets the rate before every step;
    None leaves the optimizer's rate alone."""
    device = data.train_x.device
    sampler = BatchSampler(len(data.train_x), batch_size, seed, device)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1) if augment else None
    max_steps, log_every, warmup = tcfg.max_steps, tcfg.log_every, tcfg.divergence_warmup
    schedule = (max_steps, tcfg.eval_every, tcfg.eval_every_early, tcfg.early_steps)
    p = Progress()

    def record(step: int) -> dict:
        return {"step": step, "samples": step * batch_size, "time_s": round(p.train_time, 6),
                "lr": optimizer.param_groups[0]["lr"]}

    # the splits every evaluation measures, in eval mode: validation, test, and (eval_train > 0)
    # the first eval_train training images, whose accuracy minus test's is the train-test gap
    splits = {"val": (data.val_x, data.val_y), "test": (data.test_x, data.test_y)}
    if tcfg.get("eval_train", 0):
        splits["train_eval"] = (data.train_x[:tcfg.eval_train], data.train_y[:tcfg.eval_train])

    def eval_into(rec: dict, counts: bool = True) -> None:
        """Evaluate into `rec`. An evaluation that does not count (the one made where a
        diverged run is stopped) is recorded, but is never the run's best or its target."""
        for split, (x, y) in splits.items():
            if len(x):
                rec[f"{split}/loss"], rec[f"{split}/acc"] = evaluate(model, x, y, tcfg.eval_batch_size)
        for probe in probes:
            rec.update(probe.measure(model))
        p.last_eval.update({k: v for k, v in rec.items() if k.startswith(("val/", "test/", "train_eval/"))})
        if not counts:
            return
        if (target_acc is not None and p.to_target["steps_to_target"] is None
                and rec.get("val/acc", -1.0) >= target_acc):
            p.to_target.update(steps_to_target=rec["step"], time_to_target_s=rec["time_s"],
                               samples_to_target=rec["samples"])
        if rec["step"] > 0:
            p.trained_best_val = max(p.trained_best_val, rec.get("val/acc", -1.0))
        if rec.get("val/acc", -1.0) > p.best["val/acc"]:
            p.best.update({"val/acc": rec["val/acc"], "val/loss": rec["val/loss"], "step": rec["step"],
                           "test/acc": rec.get("test/acc"), "test/loss": rec.get("test/loss"),
                           "train_eval/acc": rec.get("train_eval/acc")})

    loss_acc = torch.zeros((), device=device)
    correct_acc = torch.zeros((), dtype=torch.long, device=device)

    def snapshot() -> dict:
        """Everything the next step depends on (see bnlab.checkpoint)."""
        p.loss_sum, p.correct_sum = loss_acc.item(), int(correct_acc.item())
        return {"progress": asdict(p), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "sampler": sampler.state_dict(), "rng": global_rng_state(device),
                "augment": aug_gen.get_state() if aug_gen is not None else None}

    if resume_from is None:
        rec = record(0)
        eval_into(rec)
        emit(rec)
    else:
        model.load_state_dict(resume_from["model"])
        optimizer.load_state_dict(resume_from["optimizer"])
        sampler.load_state_dict(resume_from["sampler"])
        if aug_gen is not None:
            aug_gen.set_state(resume_from["augment"])
        p = Progress(**resume_from["progress"])
        loss_acc.fill_(p.loss_sum)
        correct_acc.fill_(p.correct_sum)
        set_global_rng_state(resume_from["rng"], device)  # last: loading must not move the RNGs after it
        log.info("resuming from the checkpoint at step %d of %d", p.step, max_steps)

    bar = _progress_bar(max_steps, tcfg.progress)
    if bar is not None:
        bar.update(p.step)
    step_record: dict = {}
    model.train()
    _sync(device)
    tick = time.perf_counter()
    for step in range(p.step + 1, max_steps + 1):
        # Between steps: the state is that of the end of step `step - 1`, all of it logged.
        stopping = stop is not None and stop.requested
        if stopping or (checkpoints is not None and checkpoints.due()):
            _sync(device)
            p.train_time += time.perf_counter() - tick  # the clock stops while we save
            if checkpoints is not None and checkpoints.enabled:
                checkpoints.save(snapshot())
            if stopping:
                stop.honour()
            tick = time.perf_counter()
        do_eval = is_eval_step(step, *schedule)
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
        idx = sampler.next()
        xb, yb = data.train_x[idx], data.train_y[idx]
        if aug_gen is not None:
            xb = augment_batch(xb, aug_gen)
        probing = do_eval and bool(step_probes)
        rng_before = rng_state(device, model) if probing else None
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if probing:  # inside the step, on its own minibatch; the clock stops meanwhile
            _sync(device)
            paused = time.perf_counter()
            for probe in step_probes:
                step_record.update(probe.measure_step(model, optimizer, xb, yb, rng_before))
            _sync(device)
            tick += time.perf_counter() - paused
        optimizer.step()
        if p.initial_loss is None:
            # the loss of the first minibatch, before any update: where this run started.
            # Divergence is judged against it, so a run that starts high (a huge init) and
            # falls is never "diverged".
            p.initial_loss = loss.item()
            p.loss_limit = tcfg.divergence_factor * max(p.initial_loss, math.log(data.num_classes)) \
                if math.isfinite(p.initial_loss) else -math.inf
        loss_acc += loss.detach()
        correct_acc += (logits.argmax(1) == yb).sum()
        p.interval += 1
        p.step = step

        do_log = step % log_every == 0 or step == max_steps
        if not (do_log or do_eval):
            continue
        _sync(device)
        p.train_time += time.perf_counter() - tick  # the clock stops while we log and evaluate

        rec = record(step)
        rec.update(step_record)
        step_record = {}
        if do_log:
            train_loss = loss_acc.item() / p.interval
            rec["train/loss"], rec["train/acc"] = train_loss, correct_acc.item() / (p.interval * batch_size)
            p.last_train.update({k: rec[k] for k in ("train/loss", "train/acc")})
            loss_acc.zero_()
            correct_acc.zero_()
            p.interval = 0
            # Diverged: a non-finite loss at any time; or, after the warm-up, a loss far above
            # where the run started that is not falling. A falling loss is never divergence.
            blown = not math.isfinite(train_loss) or (
                step > warmup and train_loss > p.loss_limit and train_loss >= p.previous_loss)
            p.previous_loss = train_loss
            if blown:
                p.diverged_at = step
        if do_eval or p.diverged_at is not None:
            eval_into(rec, counts=p.diverged_at is None)  # record what a broken model does, then stop
        emit(rec)
        if bar is not None:
            bar.update(step - bar.n)
            bar.set_postfix({k: f"{v:.4f}" for k, v in rec.items() if k in ("train/loss", "val/acc")})
        elif do_eval:
            log.info("step %d/%d  train/loss %s  val/acc %s", step, max_steps,
                     _short(rec.get("train/loss")), _short(rec.get("val/acc")))
        if p.diverged_at is not None:
            log.warning("training loss %.4g at step %d (started at %.4g, limit %.4g): run diverged",
                        train_loss, step, p.initial_loss, p.loss_limit)
            break
        tick = time.perf_counter()
    if bar is not None:
        bar.close()

    best_val = p.best["val/acc"] if p.best["val/acc"] >= 0 else None
    trained_val = p.trained_best_val if p.trained_best_val >= 0 else None
    learned = p.diverged_at is None and learned_rule(trained_val, p.last_train.get("train/loss"), p.initial_loss,
                                                     data.num_classes, tcfg.learned_margin)
    result = {
        "status": "diverged" if p.diverged_at is not None else "completed",
        "learned": learned,
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
        **({"best/train_eval/acc": p.best.get("train_eval/acc")} if "train_eval" in splits else {}),
        "target_val_acc": target_acc,
        **p.to_target,
    }
    return result
