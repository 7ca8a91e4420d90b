"""Optimizer factory: the `optim` config node -> a torch optimizer, and its step schedule."""
from __future__ import annotations

import bisect
from typing import Callable, Sequence

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


def lr_at(step: int, base: float, milestones: Sequence[int], gamma: float) -> float:
    """The rate of training step `step` (1-based): `base` times `gamma` for every milestone
    already passed (step > milestone: with [32000], steps 1..32000 at base, then base * gamma).
    A function of the step alone, so a resumed run continues on the same schedule."""
    return base * gamma ** bisect.bisect_left(list(milestones), step)


def lr_schedule(o) -> Callable[[int], float] | None:
    """The `optim` node's step schedule as step -> rate, or None for a constant rate (the
    trainer then never touches the optimizer's rate)."""
    milestones = [int(m) for m in (o.get("lr_milestones") or [])]
    if not milestones:
        return None
    base, gamma = float(o.lr), float(o.get("lr_gamma", 0.1))
    return lambda step: lr_at(step, base, milestones, gamma)
