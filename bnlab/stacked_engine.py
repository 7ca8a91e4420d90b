"""The stacked engine: one step of K runs as one stacked model (bnlab.stacked), for
bnlab.trainer.train_group.

Each run stays a `RunLoop` with its own model, optimizer, sampler, progress and outcome; the
engine only computes their steps together. At every step it draws the batch (one batch shared
by runs whose samplers are in the same state, i.e. runs of one seed; else one batch per run),
sets each run's rate from its own schedule, takes one forward/backward over the stack and one
`StackedSGD` step, and adds each run's loss and correct count to that run's accumulators (views
into one (K,) tensor, so the runs' code reads them as before). Before a run is evaluated or
saved, `sync` writes its slice (weights, BN running statistics, momentum buffers, sampler
position) back into its own model and optimizer: evaluation, probes and checkpoints are exactly
those of a run trained alone, and a stack's checkpoint is K ordinary checkpoints. A run that
stops (diverges) leaves the stack, which is rebuilt from the runs that go on.

Equal to separate runs up to the floating-point order of the sums (tests/test_stacked.py).
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn.functional as F

from bnlab.recalibration import PREFIX as RECAL_PREFIX, BNRecalibration
from bnlab.rng import global_rng_state
from bnlab.stacked import StackedMLP, StackedSGD, why_not_stackable
from bnlab.trainer import Engine, RunLoop

log = logging.getLogger(__name__)


def why_loops_cannot_stack(loops: Sequence[RunLoop]) -> str | None:
    """None when the runs can be trained as one stack; else the reason, in words."""
    reason = why_not_stackable([lp.model for lp in loops])
    if reason:
        return reason
    first = loops[0]
    for lp in loops:
        if lp.data is not first.data:
            return "the runs read different data"
        if lp.spec.batch_size != first.spec.batch_size:
            return "the runs differ in batch size"
        if lp.spec.augment:
            return "augmented batches do not stack (each run's crops come from its own generator)"
        if lp.spec.bf16 != first.spec.bf16 or lp.forward is not lp.model:
            return "compiled steps do not stack yet, nor runs with and without bf16"
        if lp.hooks.step_probes:
            return "step probes (Def. 2.1 ICS, the landscape) measure inside one run's step"
        opt = lp.optimizer
        if type(opt) is not torch.optim.SGD or len(opt.param_groups) != 1:
            return "only SGD stacks"
        g = opt.param_groups[0]
        if g["dampening"] != 0 or g.get("maximize") or g["nesterov"] != first.optimizer.param_groups[0]["nesterov"]:
            return "SGD with dampening, maximize or mixed Nesterov does not stack"
    return None


class StackedEngine(Engine):
    name = "stacked"

    def __init__(self, loops: Sequence[RunLoop]):
        reason = why_loops_cannot_stack(loops)
        if reason:
            raise ValueError(f"cannot stack these runs: {reason}")
        self.members: list[RunLoop] = []
        self.stack: StackedMLP | None = None
        self._measured: dict = {}  # (step, what) -> each member's numbers, for the step being evaluated
        # each run's dropout generator: what the global one would be for the run alone (seeded by
        # the run's seed before its first step: bnlab.runner; or restored from its checkpoint)
        self.generators: dict[int, torch.Generator] = {}
        for lp in loops:
            lp.rng_state = (lambda lp=lp: self._rng_state(lp))
        for lp in loops:
            default_eval, default_probe = lp.evaluate_split, lp.measure_probe
            lp.evaluate_split = (lambda split, x, y, lp=lp, d=default_eval: self._evaluate(lp, split, x, y, d))
            lp.measure_probe = (lambda probe, step, lp=lp, d=default_probe: self._probe(lp, probe, step, d))

    # -- building the stack from the runs' own models (after any checkpoint is restored) -------
    def _build(self, loops: Sequence[RunLoop]) -> None:
        self.members = list(loops)
        models = [lp.model for lp in loops]
        self.stack = stack = StackedMLP.from_models(models)
        stack.train()
        groups = [lp.optimizer.param_groups[0] for lp in loops]
        self.opt = opt = StackedSGD(stack, [g["lr"] for g in groups], [g["momentum"] for g in groups],
                                    [g["weight_decay"] for g in groups], nesterov=groups[0]["nesterov"])
        self.pairs = [stack.member_params(k, lp.model) for k, lp in enumerate(loops)]
        stack.generators = [self._generator(lp) for lp in loops]
        # momentum buffers of resumed runs (a fresh run has none yet, as in torch's SGD)
        for j, p in enumerate(opt.params):
            bufs = [lp.optimizer.state.get(self.pairs[k][j][1], {}).get("momentum_buffer")
                    for k, lp in enumerate(loops)]
            if opt._moves and all(b is not None or g["momentum"] == 0 for b, g in zip(bufs, groups)) \
                    and any(b is not None for b in bufs):
                like = [b if b is not None else torch.zeros_like(self.pairs[k][j][1]) for k, b in enumerate(bufs)]
                opt.bufs[j] = torch.stack(like) if self.pairs[0][j][2] == "run" else torch.cat(like)
        # each run's accumulators become views into one (K,) tensor, keeping their values
        self.loss_acc = torch.stack([lp.loss_acc for lp in loops])
        self.correct_acc = torch.stack([lp.correct_acc for lp in loops])
        for k, lp in enumerate(loops):
            lp.loss_acc, lp.correct_acc = self.loss_acc[k], self.correct_acc[k]
        # runs of one seed draw the same batches: one draw serves all (the others' samplers
        # are set to the leader's state whenever they are synced)
        s0 = loops[0].sampler.state_dict()
        self.shared = all(_same_sampler_state(lp.sampler.state_dict(), s0) for lp in loops[1:])
        self.scheduled = any(lp.hooks.lr_at is not None for lp in loops)
        self.rates = [g["lr"] for g in groups]

    def _generator(self, loop: RunLoop) -> torch.Generator:
        if id(loop) not in self.generators:
            g = torch.Generator(device=loop.device)
            if loop.restored_rng is not None:
                g.set_state(loop.restored_rng["torch"]["cpu" if loop.device.type != "cuda" else "cuda"])
            else:
                g.manual_seed(loop.spec.seed)  # torch.manual_seed(seed), as bnlab.rng.seed_everything
            self.generators[id(loop)] = g
        return self.generators[id(loop)]

    def _rng_state(self, loop: RunLoop) -> dict:
        """The run's checkpoint's random state: as a run alone saves it, its dropout generator's
        state in the place of the global one's."""
        state = global_rng_state(loop.device)
        state["torch"] = {**state["torch"], ("cpu" if loop.device.type != "cuda" else "cuda"): self._generator(loop).get_state()}
        return state

    # -- the step ------------------------------------------------------------------------------
    def step(self, loops: Sequence[RunLoop], step: int) -> float:
        if self.stack is None or len(loops) != len(self.members) or any(a is not b for a, b in zip(loops, self.members)):
            self._build(loops)
        if self.scheduled:
            rates = [lp.rate(step) if lp.hooks.lr_at is not None else self.rates[k] for k, lp in enumerate(loops)]
            if rates != self.rates:
                self.rates = rates
                self.opt.set_lr(rates)
                for lp, r in zip(loops, rates):
                    lp.optimizer.param_groups[0]["lr"] = r
        data = loops[0].data
        if self.shared:
            idx = loops[0].sampler.next()
            x, y = data.train_x[idx], data.train_y[idx]
        else:
            idx = torch.stack([lp.sampler.next() for lp in loops])
            x, y = data.train_x[idx], data.train_y[idx]
        with torch.autocast(loops[0].device.type, dtype=torch.bfloat16, enabled=loops[0].spec.bf16):
            losses, logits = self.stack.losses(x, y, per_run=not self.shared)
        self.opt.zero_grad()
        losses.sum().backward()
        self.opt.step()
        if loops[0].p.initial_loss is None:
            for lp, first in zip(loops, losses.tolist()):
                lp.start_from(first)
        with torch.no_grad():
            self.loss_acc += losses
            self.correct_acc += (logits.argmax(2) == y).sum(dim=-1)
        for lp in loops:
            lp.counted(step)
        return 0.0

    # -- the runs' own state ---------------------------------------------------------------------
    @torch.no_grad()
    def sync(self, loop: RunLoop) -> None:
        if self.stack is None or not any(loop is m for m in self.members):
            return  # not stepped yet (the untrained evaluation), or stopped: its model is its own
        k = next(i for i, m in enumerate(self.members) if m is loop)
        self.stack.load_into(k, loop.model)
        g = loop.optimizer.param_groups[0]
        for j, (stacked, own, kind) in enumerate(self.pairs[k]):
            buf = self.opt.bufs[j]
            if buf is not None and g["momentum"] != 0:
                piece = buf[k] if kind == "run" else buf[k * own.shape[0]:(k + 1) * own.shape[0]]
                loop.optimizer.state[own]["momentum_buffer"] = piece.clone()
        if self.shared and k > 0:
            loop.sampler.load_state_dict(self.members[0].sampler.state_dict())

    # -- evaluation: every run of the stack at once, each handed its own numbers ------------------
    def _index(self, loop: RunLoop) -> int | None:
        if self.stack is None:
            return None  # not stepped yet (the untrained evaluation): each run's own model, exactly
        return next((k for k, m in enumerate(self.members) if m is loop), None)

    def _evaluate(self, loop: RunLoop, split: str, x, y, alone):
        k = self._index(loop)
        if k is None:
            return alone(split, x, y)
        key = (loop.p.step, "eval", split)
        if key not in self._measured:
            self._measured = {kk: v for kk, v in self._measured.items() if kk[0] == loop.p.step}
            self._measured[key] = self._evaluate_all(x, y, loop.spec.eval_batch_size)
        return self._measured[key][k]

    @torch.no_grad()
    def _evaluate_all(self, x, y, batch_size: int) -> list[tuple[float, float]]:
        """Each run's eval-mode mean cross-entropy and accuracy over (x, y) (bnlab.evaluation.evaluate, stacked)."""
        stack, kk = self.stack, self.stack.k
        was_training = stack.training
        stack.eval()
        loss_sum = torch.zeros(kk, device=x.device)
        correct = torch.zeros(kk, dtype=torch.long, device=x.device)
        for i in range(0, len(x), batch_size):
            logits = stack(x[i:i + batch_size])  # (K, B, classes)
            yb = y[i:i + batch_size]
            b = len(yb)
            loss_sum += F.cross_entropy(logits.reshape(kk * b, -1), yb.repeat(kk), reduction="none").view(kk, b).sum(1)
            correct += (logits.argmax(2) == yb).sum(1)
        stack.train(was_training)
        n = max(len(x), 1)
        return [(loss / n, c / n) for loss, c in zip(loss_sum.tolist(), correct.tolist())]

    def _probe(self, loop: RunLoop, probe, step: int, alone) -> dict:
        """The recalibrated readout (bnlab.recalibration) of every run at once where the runs
        recalibrate on the same batches (one seed); any other probe on the run's own model."""
        k = self._index(loop)
        if k is None or not isinstance(probe, BNRecalibration) or not self.stack._bn:
            return alone(probe, step)
        probes = [next(p for p in m.hooks.probes if isinstance(p, BNRecalibration)) for m in self.members]
        if not all(torch.equal(p.index, probe.index) for p in probes):
            return alone(probe, step)
        key = (loop.p.step, "recalibrated")
        if key not in self._measured:
            self._measured[key] = self._recalibrated_all(probe)
        return self._measured[key][k]

    @torch.no_grad()
    def _recalibrated_all(self, probe: BNRecalibration) -> list[dict]:
        """BNRecalibration.measure for every run of the stack: each BN channel's statistics
        re-estimated as the plain average over the probe's batches, evaluated, then put back."""
        stack = self.stack
        names = [f"running_{w}_{i}" for i in range(len(stack._bn)) for w in ("mean", "var")]
        saved = {n: getattr(stack, n).clone() for n in names}
        momenta, tracked, was_training = [bn["momentum"] for bn in stack._bn], stack.num_batches_tracked.clone(), \
            stack.training
        out = [{} for _ in range(stack.k)]
        try:
            for i in range(len(stack._bn)):
                getattr(stack, f"running_mean_{i}").zero_()
                getattr(stack, f"running_var_{i}").fill_(1.0)
            stack.train()
            stack.dropout_active = False  # BN as in training, dropout as in eval (as BNRecalibration)
            for n, idx in enumerate(probe.index, start=1):
                for bn in stack._bn:
                    bn["momentum"] = 1.0 / n  # nn.BatchNorm's cumulative average (momentum None)
                stack(probe.data.train_x[idx])
            for split, (x, y) in probe.splits.items():
                if len(x):
                    for k, (loss, acc) in enumerate(self._evaluate_all(x, y, probe.eval_batch_size)):
                        out[k][f"{RECAL_PREFIX}{split}/loss"], out[k][f"{RECAL_PREFIX}{split}/acc"] = loss, acc
        finally:
            for n, v in saved.items():
                getattr(stack, n).copy_(v)
            for bn, m in zip(stack._bn, momenta):
                bn["momentum"] = m
            stack.num_batches_tracked.copy_(tracked)
            stack.dropout_active = True
            stack.train(was_training)
        return out

    def stopped(self, loop: RunLoop) -> None:
        """The run's own model already holds its last state (it was synced for its last
        evaluation); the stack is rebuilt without it at the next step."""
        for m in self.members:
            if m is not loop:
                self.sync(m)
        self.stack = None


def _same_sampler_state(a: dict, b: dict) -> bool:
    return a["pos"] == b["pos"] and torch.equal(a["gen"], b["gen"]) and torch.equal(a["perm"], b["perm"])
