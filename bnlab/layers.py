"""Factories for the parts that differ between arms: normalization, activation, init.

Arms of a study differ only through these factories, so a model built with
`norm="none"` and one built with `norm="batch"` are otherwise the same network.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

# Normalization layers by name. `dims` is 1 for fully-connected features, 2 for conv maps.
# Layer / group norm can be added here later without touching the models.
def _batch_norm(features: int, dims: int, momentum: float, eps: float, affine: bool) -> nn.Module:
    cls = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    return cls(features, eps=eps, momentum=momentum, affine=affine)


def _no_norm(features: int, dims: int, momentum: float, eps: float, affine: bool) -> nn.Module:
    return nn.Identity()


NORMS: dict[str, Callable[..., nn.Module]] = {"none": _no_norm, "batch": _batch_norm}

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
}

INIT_SCHEMES = ("default", "normal", "xavier", "kaiming")


def make_norm(kind: str, features: int, dims: int = 1, momentum: float = 0.1,
              eps: float = 1e-5, affine: bool = True) -> nn.Module:
    """A normalization layer, or Identity for `none`."""
    return NORMS[kind](features, dims, momentum, eps, affine)


def norm_has_shift(kind: str) -> bool:
    """Whether the norm layer makes a preceding layer's bias redundant (BN subtracts the mean)."""
    return kind != "none"


def make_act(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def init_weights(model: nn.Module, scheme: str, std: float | None = None, gain: float = 1.0) -> None:
    """Initialise every Linear/Conv weight of `model` by `scheme`; biases to zero.

    Norm layers keep their own init (scale 1, shift 0). `default` leaves PyTorch's init.
    `gain` multiplies the standard deviation of xavier/kaiming, so poor scales are expressible.
    """
    if scheme == "default":
        return
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        weight = module.weight
        fan_in = weight[0].numel()
        fan_out = weight.shape[0] * weight[0][0].numel() if weight.dim() > 2 else weight.shape[0]
        if scheme == "normal":
            sigma = float(std)
        elif scheme == "xavier":
            sigma = gain * math.sqrt(2.0 / (fan_in + fan_out))
        elif scheme == "kaiming":
            sigma = gain * math.sqrt(2.0 / fan_in)
        else:
            raise ValueError(f"unknown init scheme {scheme!r}")
        with torch.no_grad():
            weight.normal_(0.0, sigma)
            if module.bias is not None:
                module.bias.zero_()
