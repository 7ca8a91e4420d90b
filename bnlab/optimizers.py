"""Optimizer factory: the `optim` config node -> a torch optimizer."""
from __future__ import annotations

import torch
from torch import nn


def make_optimizer(o, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                               weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    raise ValueError(f"unknown optimizer {o.name!r}")
