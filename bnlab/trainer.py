"""The shared training loop, used by every run of every study.

Reads top to bottom: draw a batch (an index into device tensors), step, accumulate the
train loss/accuracy on the device (no host sync per step), and at interval boundaries
stop the clock, log, evaluate, probe, and check for divergence. `time_s` counts training
time only; evaluation and logging are excluded.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bnlab.data import BatchSampler, Splits, augment_batch
from bnlab.outcomes import learned_rule
from bnlab.probes import Probe, StepProbe, rng_state

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


def is_eval_step(step: int, max_steps: int, every: int, early_every: int | None, early_steps: int) -> bool:
    """Evaluation schedule: every `every` steps and at the last step, plus every
    `early_every` steps up to `early_steps` (finer early evaluations resolve steps-to-target
    where the arms differ, without evaluating densely all run long). Plain ints: it runs at
    every step, where reading the config node would cost a measurable share of a small step."""
    if step % every == 0 or step == max_steps:
        return True
    return bool(early_every) and step <= early_steps and step % early_every == 0


def train(model: nn.Module, optimizer: torch.optim.Optimizer, data: Splits, tcfg, *,
          seed: int, augment: bool, batch_size: int, emit: Callable[[dict], None],
          probes: Sequence[Probe] = (), step_probes: Sequence[StepProbe] = (),
          target_acc: float | None = None) -> dict:
    """Train for `tcfg.max_steps` steps; return the run's result fields (no status I/O here)."""
    device = data.train_x.device
    sampler = BatchSampler(len(data.train_x), batch_size, seed, device)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1) if augment else None
    max_steps, log_every, warmup = tcfg.max_steps, tcfg.log_every, tcfg.divergence_warmup
    schedule = (max_steps, tcfg.eval_every, tcfg.eval_every_early, tcfg.early_steps)

    train_time = 0.0
    # the best evaluation (the untrained net's at step 0 included: a run that diverges before
    # its next evaluation has that as its best), and the best after step 0 (did it learn?)
    best = {"val/acc": -1.0, "step": 0}
    trained_best = {"val/acc": -1.0}
    # speed: the first evaluation at which val/acc reaches the dataset's target
    to_target = {"steps_to_target": None, "time_to_target_s": None, "samples_to_target": None}
    last_eval: dict = {}
    last_train: dict = {}
    diverged_at = None
    initial_loss = None
    previous_loss = math.inf
    loss_limit = math.inf

    def record(step: int) -> dict:
        return {"step": step, "samples": step * batch_size, "time_s": round(train_time, 6),
                "lr": optimizer.param_groups[0]["lr"]}

    def eval_into(rec: dict, counts: bool = True) -> None:
        """Evaluate into `rec`. An evaluation that does not count (the one made where a
        diverged run is stopped) is recorded, but is never the run's best or its target."""
        for split, (x, y) in {"val": (data.val_x, data.val_y), "test": (data.test_x, data.test_y)}.items():
            if len(x):
                rec[f"{split}/loss"], rec[f"{split}/acc"] = evaluate(model, x, y, tcfg.eval_batch_size)
        for probe in probes:
            rec.update(probe.measure(model))
        last_eval.update({k: v for k, v in rec.items() if k.startswith(("val/", "test/"))})
        if not counts:
            return
        if (target_acc is not None and to_target["steps_to_target"] is None
                and rec.get("val/acc", -1.0) >= target_acc):
            to_target.update(steps_to_target=rec["step"], time_to_target_s=rec["time_s"],
                             samples_to_target=rec["samples"])
        if rec["step"] > 0:
            trained_best["val/acc"] = max(trained_best["val/acc"], rec.get("val/acc", -1.0))
        if rec.get("val/acc", -1.0) > best["val/acc"]:
            best.update({"val/acc": rec["val/acc"], "val/loss": rec["val/loss"], "step": rec["step"],
                         "test/acc": rec.get("test/acc"), "test/loss": rec.get("test/loss")})

    rec = record(0)
    eval_into(rec)
    emit(rec)

    bar = _progress_bar(max_steps, tcfg.progress)
    loss_acc = torch.zeros((), device=device)
    correct_acc = torch.zeros((), dtype=torch.long, device=device)
    interval = 0
    step = 0
    step_record: dict = {}
    model.train()
    _sync(device)
    tick = time.perf_counter()
    for step in range(1, max_steps + 1):
        do_eval = is_eval_step(step, *schedule)
        idx = sampler.next()
        xb, yb = data.train_x[idx], data.train_y[idx]
        if aug_gen is not None:
            xb = augment_batch(xb, aug_gen)
        probing = do_eval and bool(step_probes)
        rng_before = rng_state(device) if probing else None
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
        if initial_loss is None:
            # the loss of the first minibatch, before any update: where this run started.
            # Divergence is judged against it, so a run that starts high (a huge init) and
            # falls is never "diverged".
            initial_loss = loss.item()
            loss_limit = tcfg.divergence_factor * max(initial_loss, math.log(data.num_classes)) \
                if math.isfinite(initial_loss) else -math.inf
        loss_acc += loss.detach()
        correct_acc += (logits.argmax(1) == yb).sum()
        interval += 1

        do_log = step % log_every == 0 or step == max_steps
        if not (do_log or do_eval):
            continue
        _sync(device)
        train_time += time.perf_counter() - tick  # the clock stops while we log and evaluate

        rec = record(step)
        rec.update(step_record)
        step_record = {}
        if do_log:
            train_loss = loss_acc.item() / interval
            rec["train/loss"], rec["train/acc"] = train_loss, correct_acc.item() / (interval * batch_size)
            last_train.update({k: rec[k] for k in ("train/loss", "train/acc")})
            loss_acc.zero_()
            correct_acc.zero_()
            interval = 0
            # Diverged: a non-finite loss at any time; or, after the warm-up, a loss far above
            # where the run started that is not falling. A falling loss is never divergence.
            blown = not math.isfinite(train_loss) or (
                step > warmup and train_loss > loss_limit and train_loss >= previous_loss)
            previous_loss = train_loss
            if blown:
                diverged_at = step
        if do_eval or diverged_at is not None:
            eval_into(rec, counts=diverged_at is None)  # record what a broken model does, then stop
        emit(rec)
        if bar is not None:
            bar.update(step - bar.n)
            bar.set_postfix({k: f"{v:.4f}" for k, v in rec.items() if k in ("train/loss", "val/acc")})
        elif do_eval:
            log.info("step %d/%d  train/loss %s  val/acc %s", step, max_steps,
                     rec.get("train/loss", "-"), rec.get("val/acc", "-"))
        if diverged_at is not None:
            log.warning("training loss %.4g at step %d (started at %.4g, limit %.4g): run diverged",
                        train_loss, step, initial_loss, loss_limit)
            break
        tick = time.perf_counter()
    if bar is not None:
        bar.close()

    best_val = best["val/acc"] if best["val/acc"] >= 0 else None
    trained_val = trained_best["val/acc"] if trained_best["val/acc"] >= 0 else None
    learned = diverged_at is None and learned_rule(trained_val, last_train.get("train/loss"), initial_loss,
                                                   data.num_classes, tcfg.learned_margin)
    result = {
        "status": "diverged" if diverged_at is not None else "completed",
        "learned": learned,
        "steps": step,
        "diverged_at_step": diverged_at,
        "initial_loss": initial_loss,
        "train_time_s": train_time,
        "step_time_ms": 1000 * train_time / max(step, 1),
        **last_train, **last_eval,
        "best/val/acc": best_val,
        "best/step": best["step"],
        "best/test/acc": best.get("test/acc"),
        "target_val_acc": target_acc,
        **to_target,
    }
    return result
