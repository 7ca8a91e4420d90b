"""What we measure inside the network during training.

ActivationInputProbe reproduces Ioffe & Szegedy's Figure 1(b,c): percentiles of the input
to the activation (after the norm layer when there is one) for fixed units of the last
hidden layer, over a fixed batch. It runs in eval mode, so BN uses its running statistics
and the probe changes nothing in the model.
"""
from __future__ import annotations

import torch
from torch import nn


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
