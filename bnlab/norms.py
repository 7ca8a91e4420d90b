"""Normalization layers by name: `make_norm(kind, features, dims, options)`.

The one place a norm is built, so that arms differ only here (timm's create_norm_layer is
the model). `dims` is 1 for fully-connected features (N, C) and 2 for conv maps (N, C, H, W).

    none         Identity
    batch        BatchNorm (model.bn: momentum, eps, affine)
    layer        per-sample normalization over all of a layer's features (conv: C, H, W),
                 LayerNorm (model.ln: eps, affine)
    group        GroupNorm over `groups` groups of channels (model.gn: groups, eps, affine)
    noisy_batch  BatchNorm followed by Santurkar et al.'s (2018) Algorithm 1 noise
    noise        the same noise with no normalization (their "standard + noise" control)

The noise (model.noise), in train mode only: per unit (a channel of a conv map) and step,
mu_t ~ U(-mean_range, mean_range) and sigma_t ~ U(scale_low, scale_high); per sample,
m ~ U(mu_t - jitter, mu_t + jitter) and s ~ N(sigma_t, jitter); then a <- s * a + m. So the
distribution of every activation shifts at every step. Defaults are the paper's (0.5, 1,
1.25, 0.1). The noise draws from the layer's own generator, seeded from the run's seed and
the layer's index (bnlab.rng.seed_noise), whose state travels in the module's state_dict: a
checkpoint restores it, and a probe that runs the network saves and restores it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

# The defaults of each option group (the config's model.bn, model.ln, model.gn, model.noise;
# conf/norm_options/default.yaml holds the same values for Hydra, and a test keeps them equal).
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "bn": {"momentum": 0.1, "eps": 1e-5, "affine": True},
    "ln": {"eps": 1e-5, "affine": True},
    "gn": {"groups": 8, "eps": 1e-5, "affine": True},
    "noise": {"mean_range": 0.5, "scale_low": 1.0, "scale_high": 1.25, "jitter": 0.1},
}


class SanturkarNoise(nn.Module):
    """Santurkar et al. (2018) Algorithm 1: a random affine shift of every unit's
    distribution, redrawn at every step (train mode only)."""

    def __init__(self, mean_range: float, scale_low: float, scale_high: float, jitter: float):
        super().__init__()
        self.mean_range, self.scale_low, self.scale_high, self.jitter = mean_range, scale_low, scale_high, jitter
        self.seed = 0
        self._gen: torch.Generator | None = None
        self._state: torch.Tensor | None = None  # a restored state, applied on the next draw

    def reseed(self, seed: int) -> None:
        self.seed, self._gen, self._state = seed, None, None

    def _generator(self, device: torch.device) -> torch.Generator:
        if self._gen is None or self._gen.device != device:
            self._gen = torch.Generator(device=device).manual_seed(self.seed)
            if self._state is not None:
                self._gen.set_state(self._state)
                self._state = None
        return self._gen

    def get_extra_state(self) -> dict:
        state = self._gen.get_state() if self._gen is not None else self._state
        return {"seed": self.seed, "generator": state}

    def set_extra_state(self, state: dict) -> None:
        self.seed, self._gen, self._state = state["seed"], None, state["generator"]

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return a
        g = self._generator(a.device)
        n, c = a.shape[0], a.shape[1]
        shape = (n, c) + (1,) * (a.dim() - 2)  # per sample and unit; the same over a map's positions

        def uniform(lo, hi, size):
            return lo + (hi - lo) * torch.rand(size, generator=g, device=a.device, dtype=a.dtype)

        mu = uniform(-self.mean_range, self.mean_range, (1, c))
        sigma = uniform(self.scale_low, self.scale_high, (1, c))
        m = uniform(mu - self.jitter, mu + self.jitter, (n, c))
        s = sigma + self.jitter * torch.randn((n, c), generator=g, device=a.device, dtype=a.dtype)
        return s.view(shape) * a + m.view(shape)

    def extra_repr(self) -> str:
        return (f"mean_range={self.mean_range}, scale=U({self.scale_low}, {self.scale_high}), "
                f"jitter={self.jitter}")


def _batch(features, dims, o):
    cls = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    return cls(features, eps=o["bn"]["eps"], momentum=o["bn"]["momentum"], affine=o["bn"]["affine"])


def _layer(features, dims, o):
    if dims == 1:
        return nn.LayerNorm(features, eps=o["ln"]["eps"], elementwise_affine=o["ln"]["affine"])
    # a conv map: every feature of the sample (C, H, W) together, one scale/shift per channel
    return nn.GroupNorm(1, features, eps=o["ln"]["eps"], affine=o["ln"]["affine"])


def _group(features, dims, o):
    groups = min(o["gn"]["groups"], features)
    while features % groups:  # the largest group count <= the asked one that divides the channels
        groups -= 1
    return nn.GroupNorm(groups, features, eps=o["gn"]["eps"], affine=o["gn"]["affine"])


def _noise(o):
    n = o["noise"]
    return SanturkarNoise(n["mean_range"], n["scale_low"], n["scale_high"], n["jitter"])


# `subtracts_mean` has no usable default: a norm must say whether the layer before it keeps
# its bias (a forgotten answer once dropped a custom norm's bias without a word)
_UNDECIDED: Any = object()


@dataclass(frozen=True, kw_only=True)
class Norm:
    """One entry of the norm registry: everything the code knows about a norm. Every field is
    named in the entry (keyword-only), and `subtracts_mean` must be given as True or False."""

    build: Callable[[int, int, dict], nn.Module]
    """(features, dims, merged options) -> the layer; dims is 1 for (N, C), 2 for (N, C, H, W)."""
    options: tuple[str, ...]
    """The option groups of DEFAULT_OPTIONS it reads (documentation; every group is passed)."""
    label: str
    """Its name in figures and in the report."""
    colour: str
    """Its colour in every figure."""
    subtracts_mean: bool = _UNDECIDED
    """Whether its output is unchanged when the same constant is added to every input unit
    (it subtracts a mean; tests/test_norms.py checks each entry's answer on its layer). True:
    the models build the layer before it WITHOUT a bias (bnlab.models), and the activation
    statistics treat it as a standardizing norm. The bias is exactly redundant for batch and
    noisy_batch (each unit's mean over the batch is removed); layer and group norms remove a
    mean over a sample's features, so for them dropping the bias is this project's convention
    (all their runs were made so), not an identity. A norm that does not subtract a mean
    (none, noise, an RMS norm) keeps the bias: say False."""

    def __post_init__(self):
        if self.subtracts_mean is _UNDECIDED:
            raise TypeError(f"norm {self.label!r}: its registry entry must say subtracts_mean=True or False "
                            "(True: the layer before it is built without a bias; False: the bias is kept)")
        if not isinstance(self.subtracts_mean, bool):
            raise TypeError(f"norm {self.label!r}: subtracts_mean must be True or False, got "
                            f"{self.subtracts_mean!r}")


NORMS: dict[str, Norm] = {
    "none": Norm(build=lambda features, dims, o: nn.Identity(), options=(), subtracts_mean=False,
                 label="no BN", colour="#d62728"),
    "batch": Norm(build=_batch, options=("bn",), subtracts_mean=True, label="BN", colour="#1f77b4"),
    "layer": Norm(build=_layer, options=("ln",), subtracts_mean=True, label="layer norm", colour="#2ca02c"),
    "group": Norm(build=_group, options=("gn",), subtracts_mean=True, label="group norm", colour="#9467bd"),
    "noisy_batch": Norm(build=lambda features, dims, o: nn.Sequential(_batch(features, dims, o), _noise(o)),
                        options=("bn", "noise"), subtracts_mean=True, label="noisy BN", colour="#17becf"),
    "noise": Norm(build=lambda features, dims, o: _noise(o), options=("noise",), subtracts_mean=False,
                  label="noise only", colour="#ff7f0e"),
}
NORM_KINDS = tuple(NORMS)  # the allowed values of model.norm


def make_norm(kind: str, features: int, dims: int = 1, options: dict | None = None) -> nn.Module:
    """The norm layer `kind` for `features` units (channels when dims=2). `options` holds
    any of bn/ln/gn/noise, each overriding DEFAULT_OPTIONS key by key."""
    if kind not in NORMS:
        raise ValueError(f"unknown norm {kind!r}; allowed: {', '.join(NORM_KINDS)}")
    merged = {k: {**v, **((options or {}).get(k) or {})} for k, v in DEFAULT_OPTIONS.items()}
    return NORMS[kind].build(features, dims, merged)


def norm_has_shift(kind: str) -> bool:
    """Whether the layer before the norm is built without a bias: the norm's registry entry
    says so (Norm.subtracts_mean; all but none and noise)."""
    return NORMS[kind].subtracts_mean


def noise_layers(model: nn.Module) -> list[SanturkarNoise]:
    return [m for m in model.modules() if isinstance(m, SanturkarNoise)]
