"""What we measure inside the network during training (at every evaluation).

ActivationInputProbe reproduces Ioffe & Szegedy's Figure 1(b,c): percentiles of the input
to the activation (after the norm layer when there is one) for fixed units of the last
hidden layer, over a fixed batch. It runs in eval mode, so BN uses its running statistics
and the probe changes nothing in the model.
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import nn


class Probe(Protocol):
    """Anything measured inside the model at each evaluation, without changing it."""

    def measure(self, model: nn.Module) -> dict[str, float]: ...


class ActivationInputProbe:
    def __init__(self, batch: torch.Tensor, units, percentiles):
        self.batch = batch
        self.units = list(units)
        self.percentiles = list(percentiles)
        self._q = torch.tensor([p / 100 for p in self.percentiles], device=batch.device)

    def keys(self) -> list[str]:
        return [f"probe/act_in/u{u}/p{p:g}" for u in self.units for p in self.percentiles]

    @torch.no_grad()
    def measure(self, model: nn.Module) -> dict[str, float]:
        captured = {}

        def hook(_module, inputs):
            captured["x"] = inputs[0][:, self.units]

        handle = model.probe_activation.register_forward_pre_hook(hook)
        was_training = model.training
        try:
            model.eval()
            model(self.batch)
        finally:
            handle.remove()
            model.train(was_training)
        # (len(q), len(units)) -> one value per (unit, percentile)
        values = torch.quantile(captured["x"].float(), self._q, dim=0).T.flatten().tolist()
        return dict(zip(self.keys(), values))


class GradientICSProbe:
    """Internal covariate shift as Santurkar et al. (2018, Def. 2.1) measure it: how much the
    gradient of layer i changes when every layer before it takes its SGD step on the same
    batch. For each affine layer i >= 1 (hidden layers after the first, and the classifier):

        G  = dL/dW_i at the current weights
        G' = dL/dW_i after W_j <- W_j - lr * dL/dW_j for all parameters before layer i
        l2 = ||G - G'||,  rel = ||G - G'|| / ||G||,  cos = cos(G, G')

    Measured in training mode (BN uses batch statistics, as during training) on a fixed
    batch. The probe leaves no trace: weights, BN running statistics and the global random
    state are restored, so a run with the probe trains exactly as one without it.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, lr: float):
        self.x, self.y, self.lr = x, y, lr

    @staticmethod
    def _layers(model: nn.Module) -> list[nn.Module]:
        return [b[0] for b in model.blocks] + [model.head]

    def _grads(self, model: nn.Module, seed: int) -> dict:
        model.zero_grad(set_to_none=True)
        with torch.random.fork_rng(devices=[self.x.device] if self.x.is_cuda else []):
            torch.manual_seed(seed)  # the same dropout masks for G and G'
            loss = nn.functional.cross_entropy(model(self.x), self.y)
        loss.backward()
        return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}

    def keys(self, model: nn.Module) -> list[str]:
        return [f"probe/grad_ics/l{i}/{m}" for i in range(1, len(self._layers(model))) for m in ("l2", "rel", "cos")]

    def measure(self, model: nn.Module) -> dict[str, float]:
        params = dict(model.named_parameters())
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}  # weights and BN buffers
        was_training = model.training
        model.train()
        out = {}
        try:
            grads = self._grads(model, 0)
            names = list(params)
            layers = self._layers(model)
            for i in range(1, len(layers)):
                target = next(n for n, p in params.items() if p is layers[i].weight)
                before = names[:names.index(target)]  # every parameter of the earlier layers
                with torch.no_grad():
                    for n in before:
                        if n in grads:
                            params[n].sub_(self.lr * grads[n])
                g, g2 = grads[target].flatten(), self._grads(model, 0)[target].flatten()
                with torch.no_grad():
                    for n in before:
                        params[n].copy_(saved[n])
                diff = (g - g2).norm().item()
                norm = g.norm().item()
                out[f"probe/grad_ics/l{i}/l2"] = diff
                out[f"probe/grad_ics/l{i}/rel"] = diff / norm if norm > 0 else float("nan")
                out[f"probe/grad_ics/l{i}/cos"] = torch.nn.functional.cosine_similarity(g, g2, dim=0).item()
        finally:
            model.load_state_dict(saved)
            model.zero_grad(set_to_none=True)
            model.train(was_training)
        return out


def build_probes(p, data, lr: float) -> list[Probe]:
    """The probes the `probes` config node enables, on fixed batches of `data` (bnlab.data.Splits):
    activation-input percentiles on held-out images, gradient ICS on training images."""
    probes: list[Probe] = []
    if p.act_input.enabled:
        pool = data.val_x if len(data.val_x) else data.train_x
        probes.append(ActivationInputProbe(pool[:p.act_input.batch_size], p.act_input.units,
                                           p.act_input.percentiles))
    if p.grad_ics.enabled:
        n = p.grad_ics.batch_size
        probes.append(GradientICSProbe(data.train_x[:n], data.train_y[:n], lr))
    return probes
