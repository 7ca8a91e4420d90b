"""What we measure inside the network during training, through the model's probe surface
only (`weight_layers`, `hidden_activations`; see bnlab.models.Classifier).

Two kinds of probe:
- an *evaluation probe* (`measure(model)`) runs at every evaluation on a fixed batch;
- a *step probe* (`measure_step(...)`) runs inside the training step at evaluation steps, on
  the minibatch that step trains on, after the backward pass and before the optimizer step.
Neither leaves a trace: a probed run trains exactly like an unprobed one (tested).

ActivationInputProbe: Ioffe & Szegedy's Figure 1(b,c), percentiles of the input to the
activation of fixed units, for every hidden layer.
GradientICSProbe: Santurkar et al.'s Definition 2.1 of internal covariate shift.
LandscapeProbe: Santurkar et al.'s loss landscape, gradient predictiveness, beta-smoothness.
Built here from the config, with their own modules: ActivationStatsProbe (bnlab.activation_stats:
moments, Gaussianity, decorrelation) and BNRecalibration (bnlab.recalibration: the readout with
BN statistics re-estimated on clean training batches).
"""
from __future__ import annotations

import copy
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from bnlab.activation_stats import ActivationStatsProbe
from bnlab.norms import NORMS
from bnlab.recalibration import BNRecalibration
from bnlab.rng import rng_state, set_rng_state


class Probe(Protocol):
    """Anything measured inside the model at each evaluation, without changing it; `step` is
    the evaluation's training step (a probe may measure more at some steps: the last)."""

    def measure(self, model: nn.Module, step: int | None = None) -> dict[str, float]: ...


class StepProbe(Protocol):
    """Measured inside a training step (see module docstring), without changing it."""

    def measure_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                     y: torch.Tensor, rng_state: dict) -> dict[str, float]: ...


def _as_in_training_without_dropout(model: nn.Module) -> None:
    """Train mode for every layer (normalization uses the batch's statistics, noise layers
    draw their noise), except dropout, which is off: what a probe sees is a function of the
    weights and the batch. Whatever norm a model uses, nothing here lists it; a probe saves
    the running statistics (every buffer) first and restores them after."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()


class ActivationInputProbe:
    """15th/50th/85th (configurable) percentiles of the input to the activation of fixed
    units (channels, for conv layers) of every hidden layer, over a fixed held-out batch.

    Normalization runs as in training — BN uses the statistics of the probe batch — with
    dropout off, and BN's running statistics are restored afterwards. Why not eval mode: at
    step 0 BN's running statistics are still their initial values (mean 0, variance 1), so
    the first eval-mode reading of a BN net shows an un-normalized input and a large spurious
    jump at the first evaluation; later, running averages lag the weights. Batch statistics
    over 1,000 held-out images show the distribution the layer actually sees in training.

    Keys: probe/act_in/b{layer}/u{unit}/p{percentile}; layer 0 is the first hidden layer.
    """

    def __init__(self, batch: torch.Tensor, units, percentiles):
        self.batch = batch
        self.units = list(units)
        self.percentiles = list(percentiles)
        self._q = torch.tensor([p / 100 for p in self.percentiles], device=batch.device)

    def keys(self, n_layers: int) -> list[str]:
        return [f"probe/act_in/b{b}/u{u}/p{p:g}" for b in range(n_layers) for u in self.units
                for p in self.percentiles]

    @torch.no_grad()
    def measure(self, model: nn.Module, step: int | None = None) -> dict[str, float]:
        acts = model.hidden_activations
        captured: dict[int, torch.Tensor] = {}

        def hook_for(j):
            def hook(_module, inputs):
                x = inputs[0]
                # (N, C[, H, W]) -> (C, N*H*W) for the probed units
                captured[j] = x[:, self.units].transpose(0, 1).reshape(len(self.units), -1)
            return hook

        handles = [a.register_forward_pre_hook(hook_for(j)) for j, a in enumerate(acts)]
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        randomness = rng_state(self.batch.device, model)
        was_training = model.training
        try:
            _as_in_training_without_dropout(model)
            model(self.batch)
        finally:
            for h in handles:
                h.remove()
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
            set_rng_state(randomness, self.batch.device, model)  # training draws the same noise
            model.train(was_training)
        out = {}
        for j in range(len(acts)):
            # (len(q), len(units)) -> one value per (unit, percentile)
            values = torch.quantile(captured[j].float(), self._q, dim=1).T.flatten().tolist()
            keys = [f"probe/act_in/b{j}/u{u}/p{p:g}" for u in self.units for p in self.percentiles]
            out.update(zip(keys, values))
        return out


class GradientICSProbe:
    """Internal covariate shift as Santurkar et al. (2018, Definition 2.1) define it.

    For every weight layer i >= 1 (Linear and Conv layers in forward order; the first has no
    earlier layers), on the minibatch the run trains on at this step:

        G  = dL/dW_i at the current weights (the gradient the step is about to use)
        G' = dL/dW_i after every parameter before W_i took the optimizer's own update
             (SGD with its momentum and weight decay, or Adam: `optimizer.step()` on those
             parameters alone), same batch, same dropout masks
        l2 = ||G - G'||  (their measure: the headline),
        rel = ||G - G'|| / ||G||,  cos = cos(G, G')

    BN uses batch statistics both times, as in the training step. Afterwards the weights,
    gradients, BN running statistics, optimizer state and random state are exactly as they
    were, so the real step proceeds unchanged.
    """

    def measure_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                     y: torch.Tensor, rng_state_before_forward: dict) -> dict[str, float]:
        device = x.device
        after_forward = rng_state(device, model)
        named = list(model.named_parameters())
        order = [p for _, p in named]
        grads = [p.grad.detach().clone() if p.grad is not None else None for p in order]
        weights = [p.detach().clone() for p in order]
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        opt_state = copy.deepcopy(optimizer.state_dict())
        out: dict[str, float] = {}
        try:
            for i, layer in enumerate(model.weight_layers):
                if i == 0:
                    continue
                k = next(j for j, p in enumerate(order) if p is layer.weight)
                g = grads[k]
                if g is None:
                    continue
                for j, p in enumerate(order):  # only the earlier parameters get a gradient
                    p.grad = grads[j].clone() if j < k and grads[j] is not None else None
                optimizer.step()
                set_rng_state(rng_state_before_forward, device, model)  # the same dropout masks and noise
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                g2 = layer.weight.grad.detach()
                diff = (g - g2).norm().item()
                norm = g.norm().item()
                out[f"probe/grad_ics/l{i}/l2"] = diff
                out[f"probe/grad_ics/l{i}/rel"] = diff / norm if norm > 0 else float("nan")
                out[f"probe/grad_ics/l{i}/cos"] = F.cosine_similarity(g.flatten(), g2.flatten(), dim=0).item()
                self._restore(model, optimizer, order, weights, buffers, opt_state)
        finally:
            self._restore(model, optimizer, order, weights, buffers, opt_state)
            for p, gr in zip(order, grads):
                p.grad = gr
            set_rng_state(after_forward, device, model)
        return out

    @staticmethod
    @torch.no_grad()
    def _restore(model, optimizer, order, weights, buffers, opt_state) -> None:
        for p, w in zip(order, weights):
            p.copy_(w)
        for k, v in model.named_buffers():
            v.copy_(buffers[k])
        optimizer.load_state_dict(copy.deepcopy(opt_state))


class LandscapeProbe:
    """Santurkar et al. (2018, Sec. 3.2, App. A.2.2): how smooth the loss is along the
    gradient. At an evaluation, on a fixed training batch, with g = dL/dW at the current
    weights, step along -g by eta over a geometric grid spanning [low, high] x the learning
    rate, and record

        loss_range  max - min over eta of L(W - eta g)               (loss landscape)
        grad_range  max - min over eta of ||dL/dW(W - eta g) - g||    (gradient predictiveness)
        beta        max over eta of ||dL/dW(W - eta g) - g|| / ||eta g||   (effective beta-smoothness)

    Normalization runs with batch statistics (its noise too), as in training; dropout is
    off, so the landscape is a function of the weights alone. Weights, gradients, buffers,
    noise generators and the global random state are exactly as before afterwards."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, lr: float, low: float, high: float, points: int):
        self.x, self.y = x, y
        self.etas = [lr * low * (high / low) ** (k / max(points - 1, 1)) for k in range(points)]

    def measure(self, model: nn.Module, step: int | None = None) -> dict[str, float]:
        device = self.x.device
        params = [p for p in model.parameters() if p.requires_grad]
        weights = [p.detach().clone() for p in params]
        grads = [p.grad.detach().clone() if p.grad is not None else None for p in params]
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        randomness = rng_state(device, model)
        was_training = model.training
        losses, diffs, ratios = [], [], []
        try:
            _as_in_training_without_dropout(model)
            g = self._gradient(model, params)
            g_norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
            for eta in self.etas:
                with torch.no_grad():
                    for p, w, gi in zip(params, weights, g):
                        p.copy_(w - eta * gi)
                set_rng_state(randomness, device, model)  # the same noise at every point
                loss, g_eta = self._loss_and_gradient(model, params)
                diff = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(g_eta, g))).item()
                losses.append(loss)
                diffs.append(diff)
                step = (eta * g_norm).item()
                ratios.append(diff / step if step > 0 else float("nan"))
        finally:
            with torch.no_grad():
                for p, w, gr in zip(params, weights, grads):
                    p.copy_(w)
                    p.grad = gr
                for k, v in model.named_buffers():
                    v.copy_(buffers[k])
            set_rng_state(randomness, device, model)
            model.train(was_training)
        return {"probe/landscape/loss_range": max(losses) - min(losses),
                "probe/landscape/grad_range": max(diffs) - min(diffs),
                "probe/landscape/beta": max(ratios)}

    def _loss_and_gradient(self, model, params) -> tuple[float, list[torch.Tensor]]:
        loss = F.cross_entropy(model(self.x), self.y)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return loss.item(), [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]

    def _gradient(self, model, params) -> list[torch.Tensor]:
        return [g.detach() for g in self._loss_and_gradient(model, params)[1]]


def build_probes(cfg, data) -> tuple[list[Probe], list[StepProbe]]:
    """The probes the run config's `probes` node enables: (evaluation probes, step probes).
    Activation-input percentiles and activation statistics run on fixed held-out images; the
    landscape probe on a fixed batch of training images (at the run's learning rate); the
    gradient-ICS probe on the training step's own minibatch; the recalibrated readout
    (bnlab.recalibration) on fixed batches of training images drawn from the run's seed."""
    p = cfg.probes
    probes: list[Probe] = []
    step_probes: list[StepProbe] = []
    held_out = data.val_x if len(data.val_x) else data.train_x
    if p.act_input.enabled:
        probes.append(ActivationInputProbe(held_out[:p.act_input.batch_size], p.act_input.units,
                                           p.act_input.percentiles))
    if p.act_stats.enabled:
        probes.append(ActivationStatsProbe(held_out[:p.act_stats.batch_size],
                                           normalizes=NORMS[cfg.model.norm].subtracts_mean,
                                           corr_units=p.act_stats.corr_units, final_step=cfg.trainer.max_steps))
    if p.landscape.enabled:
        n = p.landscape.batch_size
        probes.append(LandscapeProbe(data.train_x[:n], data.train_y[:n], cfg.optim.lr, p.landscape.low,
                                     p.landscape.high, p.landscape.points))
    if p.grad_ics.enabled:
        step_probes.append(GradientICSProbe())
    if p.bn_recalibration.enabled:
        probes.append(BNRecalibration(data, p.bn_recalibration.batches, cfg.optim.batch_size, cfg.seed,
                                      cfg.trainer.eval_batch_size))
    return probes, step_probes
