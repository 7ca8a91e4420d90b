"""Factories for activations and weight init, and the paired-seed init itself.

Arms of a study differ only through factories (norm layers: bnlab.norms.make_norm), so a
model built with `norm="none"` and one built with `norm="batch"` are otherwise the same
network, started from the same weights for one seed.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from bnlab.rng import layer_seed

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
}

INIT_SCHEMES = ("default", "normal", "xavier", "kaiming")


def make_act(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The Linear and Conv layers of `model` in forward order (model.modules() order)."""
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def init_weights(model: nn.Module, scheme: str, std: float | None = None, gain: float = 1.0,
                 seed: int = 0) -> None:
    """Initialise every Linear/Conv layer of `model` by `scheme`, for paired seeds.

    Each weight layer draws from its own generator, seeded by (run seed, layer index) and
    drawn on the CPU: so for one seed the BN and no-BN arms start from identical weights in
    every shared layer, whatever else the arms construct, on any device. Biases (present
    only where no norm layer follows) are drawn after the weight, from the same generator.
    Norm layers keep their own init (scale 1, shift 0).

    `normal`: N(0, std^2) weights, zero biases. `xavier`/`kaiming`: normal with the scheme's
    sigma times `gain`, zero biases. `default`: PyTorch's own rule (Kaiming-uniform with
    a=sqrt(5), i.e. U(±1/sqrt(fan_in)) for weights and biases), redrawn from the per-layer
    generator so that it pairs too.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}")
    for index, module in enumerate(weight_layers(model)):
        gen = torch.Generator().manual_seed(layer_seed(seed, index))
        weight = module.weight
        fan_in = weight[0].numel()
        fan_out = weight.shape[0] * weight[0][0].numel() if weight.dim() > 2 else weight.shape[0]
        w = torch.empty(weight.shape, dtype=torch.float32)
        bias = None
        if scheme == "default":
            bound = 1.0 / math.sqrt(fan_in)
            w.uniform_(-bound, bound, generator=gen)
            if module.bias is not None:
                bias = torch.empty(module.bias.shape).uniform_(-bound, bound, generator=gen)
        else:
            if scheme == "normal":
                sigma = float(std)
            elif scheme == "xavier":
                sigma = gain * math.sqrt(2.0 / (fan_in + fan_out))
            else:  # kaiming
                sigma = gain * math.sqrt(2.0 / fan_in)
            w.normal_(0.0, sigma, generator=gen)
        with torch.no_grad():
            weight.copy_(w)
            if module.bias is not None:
                module.bias.copy_(bias) if bias is not None else module.bias.zero_()
