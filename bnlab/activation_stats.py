"""What BN does to the activations, measured: the seed's own descriptions of BN as numbers.

"normalizes the feature vectors to have zero mean and unit variance" — per unit, the mean and
variance of the *normalized value* (the norm layer's output with its affine step γ, β undone),
and of the *pre-activation* (the input to the nonlinearity, after the affine step), in train
mode (batch statistics) and in eval mode (running statistics): zero mean and unit variance
hold by construction for BN's normalized value in train mode only.
"values sampled from a normal/Gaussian distribution" — per unit, the skewness and excess
kurtosis of the pre-activation (0 and 0 for a Gaussian).
"BN helps to whiten the values" — whitening means decorrelated units, which per-unit
standardization does not do by construction: the mean absolute off-diagonal correlation of a
layer's units and the effective rank of their correlation matrix (exp of the entropy of its
normalized eigenvalues; 1 when all units move together, the width when they are independent).

A unit is a feature of a dense layer or a channel of a conv layer (its values over the batch
and every position). Every statistic is a mean over the layer's units. The probe runs on the
fixed held-out batch of the activation-input probe, through the model protocol only
(hidden_activations, hidden_norms), with dropout off; every buffer and random state is put
back, so a probed run trains exactly as an unprobed one (tested).

Keys: probe/act_stats/b{layer}/{train|eval}/{stat}; stat is one of
    norm_mean_abs, norm_var    normalized value: mean |per-unit mean|, mean per-unit variance
                               (only where the arm's norm normalizes)
    pre_mean_abs, pre_var      the same for the pre-activation
    pre_skew_abs, pre_kurt_abs mean |skewness|, mean |excess kurtosis| of the pre-activation
    corr_abs, eff_rank, eff_rank_frac   decorrelation of the pre-activation (eff_rank / width)
and, with `corr_units` k > 0, at the run's last step only (`final_step`), the train-mode
correlation matrix of each layer's first k pre-activations: probe/act_corr/b{layer}/u{a}_u{b}
(a < b), what the whitening figure draws.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from bnlab.rng import rng_state, set_rng_state

KEY = "probe/act_stats"
CORR_KEY = "probe/act_corr"
MODES = ("train", "eval")


def _units(x: torch.Tensor) -> torch.Tensor:
    """(N, C[, H, W]) -> (C, N*H*W): one row per unit, in float64 (fourth moments)."""
    return x.detach().transpose(0, 1).reshape(x.shape[1], -1).double()


def moments(u: torch.Tensor) -> dict[str, float]:
    """Means over units of |mean|, variance, |skewness|, |excess kurtosis| of `u` (C, M).
    Units with no spread have no shape: they count in the mean and variance only."""
    mean = u.mean(1)
    c = u - mean[:, None]
    var = (c ** 2).mean(1)
    spread = var > 1e-12
    std = var[spread].sqrt()
    skew = (c[spread] ** 3).mean(1) / std ** 3
    kurt = (c[spread] ** 4).mean(1) / std ** 4 - 3.0
    nan = float("nan")
    return {"mean_abs": mean.abs().mean().item(), "var": var.mean().item(),
            "skew_abs": skew.abs().mean().item() if spread.any() else nan,
            "kurt_abs": kurt.abs().mean().item() if spread.any() else nan}


def decorrelation(u: torch.Tensor) -> dict[str, float]:
    """Mean |off-diagonal correlation| and effective rank of the units' correlation matrix
    (units with no spread left out); `eff_rank_frac` is the effective rank over the width."""
    c = u - u.mean(1, keepdim=True)
    std = c.pow(2).mean(1).sqrt()
    live = std > 1e-6
    k = int(live.sum())
    if k < 2:
        return {"corr_abs": float("nan"), "eff_rank": float(k), "eff_rank_frac": k / max(len(u), 1)}
    z = c[live] / std[live, None]
    corr = (z @ z.T) / z.shape[1]
    off = corr[~torch.eye(k, dtype=torch.bool, device=corr.device)]
    eig = torch.linalg.eigvalsh(corr).clamp_min(0)
    p = eig / eig.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    return {"corr_abs": off.abs().mean().item(), "eff_rank": math.exp(entropy),
            "eff_rank_frac": math.exp(entropy) / len(u)}


def correlations(u: torch.Tensor, prefix: str) -> dict[str, float]:
    """The off-diagonal correlations of the units `u` (C, M), keyed {prefix}/u{a}_u{b} (a < b);
    NaN for a unit with no spread."""
    c = u - u.mean(1, keepdim=True)
    std = c.pow(2).mean(1).sqrt()
    corr = (c @ c.T) / c.shape[1] / (std[:, None] * std[None, :])
    return {f"{prefix}/u{a}_u{b}": (corr[a, b].item() if std[a] > 1e-6 and std[b] > 1e-6 else float("nan"))
            for a in range(len(u)) for b in range(a + 1, len(u))}


def _affine_layer(norm: nn.Module) -> nn.Module:
    """The layer inside `norm` that holds its per-unit affine step (BN inside noisy BN), or
    `norm` itself when it has none."""
    for m in norm.modules():
        if isinstance(getattr(m, "weight", None), nn.Parameter) and getattr(m, "weight").dim() == 1:
            return m
    return norm


def _undo_affine(layer: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The normalized value before the affine step z = γ x̂ + β."""
    w = getattr(layer, "weight", None)
    if not isinstance(w, nn.Parameter) or w.dim() != 1 or w.numel() != z.shape[1]:
        return z  # no per-unit affine step (affine: false)
    shape = (1, -1) + (1,) * (z.dim() - 2)
    b = layer.bias if isinstance(getattr(layer, "bias", None), nn.Parameter) else torch.zeros_like(w)
    gamma = torch.where(w.abs() > 1e-8, w, torch.full_like(w, float("nan")))
    return (z - b.view(shape)) / gamma.view(shape)


class ActivationStatsProbe:
    """An evaluation probe (bnlab.probes.Probe): the statistics above, in both modes."""

    def __init__(self, batch: torch.Tensor, normalizes: bool, corr_units: int = 0, final_step: int | None = None):
        self.batch = batch
        self.normalizes = normalizes  # whether the arm's norm standardizes (bnlab.norms.Norm.subtracts_mean)
        self.corr_units = corr_units  # the units whose correlation matrix is logged at the last step
        self.final_step = final_step

    @torch.no_grad()
    def _capture(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        acts, norms = model.hidden_activations, model.hidden_norms
        pre: dict[int, torch.Tensor] = {}
        normed: dict[int, torch.Tensor] = {}

        def pre_hook(j):
            return lambda _m, inputs: pre.__setitem__(j, _units(inputs[0]))

        def norm_hook(j, layer):
            return lambda _m, _inputs, out: normed.__setitem__(j, _units(_undo_affine(layer, out)))

        handles = [a.register_forward_pre_hook(pre_hook(j)) for j, a in enumerate(acts)]
        if self.normalizes:
            for j, norm in enumerate(norms):
                if norm is not None:
                    layer = _affine_layer(norm)
                    handles.append(layer.register_forward_hook(norm_hook(j, layer)))
        try:
            model(self.batch)
        finally:
            for h in handles:
                h.remove()
        return [pre[j] for j in range(len(acts))], [normed.get(j) for j in range(len(acts))]

    def measure(self, model: nn.Module, step: int | None = None) -> dict[str, float]:
        device = self.batch.device
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        randomness = rng_state(device, model)
        was_training = model.training
        out: dict[str, float] = {}
        try:
            for mode in MODES:
                model.train(mode == "train")
                for m in model.modules():  # dropout off in both modes
                    if isinstance(m, nn.modules.dropout._DropoutNd):
                        m.eval()
                pre, normed = self._capture(model)
                for j, (u, n) in enumerate(zip(pre, normed)):
                    at = f"{KEY}/b{j}/{mode}"
                    if n is not None:
                        stats = moments(n)
                        out[f"{at}/norm_mean_abs"], out[f"{at}/norm_var"] = stats["mean_abs"], stats["var"]
                    stats = moments(u)
                    out.update({f"{at}/pre_{k}": v for k, v in stats.items()})
                    out.update({f"{at}/{k}": v for k, v in decorrelation(u).items()})
                    if mode == "train" and self.corr_units and step is not None and step == self.final_step:
                        out.update(correlations(u[:self.corr_units], f"{CORR_KEY}/b{j}"))
        finally:
            with torch.no_grad():
                for k, v in model.named_buffers():
                    v.copy_(buffers[k])
            set_rng_state(randomness, device, model)
            model.train(was_training)
        return out
