"""Every seed and random state of a run, in one place.

Hands downstream:
- `seed_everything(seed)`: Python's, NumPy's and torch's global generators reset at the
  start of a job (launchers may reuse one process for several jobs);
- `derived_seed(namespace, seed, index)`: a 63-bit seed that is a function of the run's seed
  and a layer's index only, so that arms that build different norm layers still share the
  draws of every layer they have in common. `layer_seed` (weight init, bnlab.layers) and
  `seed_noise` (the noise layers' own generators, bnlab.norms.SanturkarNoise) use it;
- `rng_state` / `set_rng_state`: what one forward pass draws from (the global CPU and CUDA
  generators: dropout; the model's noise layers), saved and restored by the probes so that a
  probed run trains exactly like an unprobed one;
- `global_rng_state` / `set_global_rng_state`: the global generators a checkpoint carries
  (Python, NumPy, torch), so a resumed run draws the same dropout masks.

The batch order and the augmentation draw from their own generators seeded from the run's
seed (bnlab.data.BatchSampler, bnlab.trainer), and their state travels in the checkpoint.
"""
from __future__ import annotations

import hashlib
import random

import numpy as np
import torch
from torch import nn

from bnlab.norms import noise_layers


def seed_everything(seed: int) -> None:
    """Reset global RNG state: launchers may reuse one process for several jobs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def derived_seed(namespace: str, seed: int, index: int) -> int:
    """A seed for item `index` (a weight layer, a noise layer) of a run with `seed`."""
    digest = hashlib.sha256(f"bnlab-{namespace}/{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def layer_seed(seed: int, index: int) -> int:
    """The seed of weight layer `index` of a run with `seed`: a function of these two only, so
    that arms built with different norm layers (and with or without biases) still draw the
    same weights for every layer they share."""
    return derived_seed("init", seed, index)


def seed_noise(model: nn.Module, seed: int) -> None:
    """Seed every noise layer from the run's seed and its index: reproducible, and the
    same noise for one seed across arms that share the layer."""
    for index, layer in enumerate(noise_layers(model)):
        layer.reseed(derived_seed("noise", seed, index))


# ---------------------------------------------------------------- one forward pass

def rng_state(device: torch.device, model: nn.Module | None = None) -> dict:
    """The random state a forward pass draws from: the global generators (CPU, and the
    device's when it is CUDA: dropout) and, given `model`, its noise layers' own generators
    (noisy_batch, noise)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    if model is not None:
        state["noise"] = [layer.get_extra_state() for layer in noise_layers(model)]
    return state


def set_rng_state(state: dict, device: torch.device, model: nn.Module | None = None) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    if model is not None and "noise" in state:
        for layer, saved in zip(noise_layers(model), state["noise"]):
            layer.set_extra_state(saved)


# ---------------------------------------------------------------- what a checkpoint carries

def global_rng_state(device: torch.device) -> dict:
    """Python's and NumPy's global generators, and torch's (`rng_state`: CPU and CUDA, which
    dropout draws from)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "torch": rng_state(device),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached": float(cached)}}


def set_global_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    set_rng_state(state["torch"], device)


def _as_tuple(value):
    """random.setstate wants tuples; a round trip may hand back lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value
