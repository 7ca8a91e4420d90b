"""The one look of every figure and table: matplotlib's style, each arm's colour and name,
and what each key means in words.

Hands downstream (bnlab.views.figures, bnlab.views.report): `STYLE` (rc settings), `colour(arm)`
and `arm_name(arm)` (a norm's from the norm registry, bnlab.norms.NORMS; any other arm's colour
picked from its name), and `label(key)` (an axis label; a key not listed is shown as it is).
"""
from __future__ import annotations

import zlib

from bnlab.norms import NORMS

STYLE = {"figure.dpi": 110, "savefig.dpi": 110, "axes.grid": True, "grid.alpha": 0.3,
         "axes.spines.top": False, "axes.spines.right": False, "font.size": 9,
         "legend.frameon": False, "legend.fontsize": 8}
# one colour and one name per norm, the same in every figure (from the norm registry)
ARM_COLOURS = {kind: norm.colour for kind, norm in NORMS.items()}
ARM_NAMES = {kind: norm.label for kind, norm in NORMS.items()}
# the arms of model.norm_layers (bnlab.models.NORM_LAYERS): where the MLP's norm sits
ARM_NAMES.update({"all": "BN at every hidden layer", "first": "BN at the first hidden layer only",
                  "last": "BN at the last hidden layer only"})


# What each key means, for axis labels (a key not listed is shown as it is)
LABELS = {
    "best/test/acc": "best test accuracy", "best/val/acc": "best validation accuracy",
    "test/acc": "final test accuracy", "val/acc": "validation accuracy",
    "steps_to_target": "steps to the target validation accuracy",
    "time_to_target_s": "training seconds to the target validation accuracy",
    "act_in_drift": "activation-input drift (Ioffe's ICS)",
    "grad_ics_l2": "||G − G′|| (Santurkar et al.'s ICS)",
    "grad_ics_rel": "||G − G′|| / ||G||", "grad_ics_cos": "cos(G, G′)",
    "landscape_loss_range": "loss range along the gradient", "landscape_grad_range": "gradient predictiveness (range)",
    "landscape_beta": "effective β-smoothness",
    "optim.lr": "learning rate", "init.std": "init σ", "model.dropout": "dropout rate",
    "data.train_subset": "training images",
    "step_time_ms": "ms per training step",
    "best/gap": "train − test accuracy (gap)", "best/train_eval/acc": "training accuracy (eval mode)",
    "model.dropout_placement": "dropout placement",
    "best/recal/test/acc": "best test accuracy, BN statistics recalibrated on clean batches",
    "best/recal/val/acc": "best validation accuracy, BN statistics recalibrated",
    "train/acc": "train-mode accuracy on the last training batches",
    "best/train/loss": "lowest training loss reached",
    "act_in_drift_last": "activation-input drift, last hidden layer (Ioffe's ICS)",
    "model.norm": "normalization", "model.name": "model", "init.scheme": "initialization",
    "model.norm_layers": "hidden layers normalized",
}
# a per-layer gradient-ICS measure (grad_ics_<m>_l<i>) in words
GRAD_ICS_WORDS = {"l2": "||G − G′||", "rel": "||G − G′|| / ||G||", "cos": "cos(G, G′)"}

# the activation-statistics probe's statistics (bnlab.analysis.measures.ACT_STATS), in words
ACT_STAT_WORDS = {"norm_mean_abs": "per-unit |mean| of the normalized value", "norm_var": "variance of the normalized value",
                  "pre_mean_abs": "per-unit |mean| of the pre-activation", "pre_var": "variance of the pre-activation",
                  "pre_skew_abs": "|skewness| of the pre-activation", "pre_kurt_abs": "|excess kurtosis| of the pre-activation",
                  "corr_abs": "mean |correlation| between units", "eff_rank_frac": "effective rank over width"}

# the keys that read on a log axis (their grids are geometric); any other on a linear one
LOG_SCALE = frozenset({"optim.lr", "init.std", "data.train_subset"})


def label(key: str) -> str:
    """A key as a reader says it; derived keys by their pattern (steps_to_val_0.97: steps to
    97% validation accuracy; log2 <key>: log2 of what <key> says)."""
    key = str(key).removeprefix("cfg.")
    if key in LABELS:
        return LABELS[key]
    if key.startswith("log2 "):
        return f"log2 of {label(key.removeprefix('log2 '))}"
    if key.startswith(("act_train_", "act_eval_")):
        mode, stat = key.split("_", 2)[1:]
        if stat in ACT_STAT_WORDS:
            return f"{ACT_STAT_WORDS[stat]} ({mode} mode)"
    if key.startswith("steps_to_train_loss_"):
        return f"steps to a training loss of {key.removeprefix('steps_to_train_loss_')}"
    if key.startswith("steps_to_val_"):
        try:
            return f"steps to {100 * float(key.removeprefix('steps_to_val_')):.4g}% validation accuracy"
        except ValueError:
            return key
    if key.startswith("time_to_val_") and key.endswith("_s"):
        try:
            return (f"training seconds to {100 * float(key.removeprefix('time_to_val_').removesuffix('_s')):.4g}% "
                    f"validation accuracy")
        except ValueError:
            return key
    if key.startswith("grad_ics_") and "_l" in key.removeprefix("grad_ics_"):
        measure, _, layer = key.removeprefix("grad_ics_").partition("_l")
        if measure in GRAD_ICS_WORDS and layer.isdigit():
            return f"{GRAD_ICS_WORDS[measure]}, weight layer {int(layer) + 1} (Santurkar et al.'s ICS)"
    return key


# for arms that are not registered norms (an ad-hoc sweep whose arm key is, say, optim.lr): a
# colour picked from the arm's name, so the same value has the same colour in every figure. Each
# is at least ΔE94 20 from every norm's colour and from each other (tests/test_figures.py): the
# browns and dark reds once used here read as no-BN's red.
OTHER_COLOURS = ("#bcbd22", "#e7298a", "#393b79", "#8c6d31", "#e7969c", "#c5b0d5")


def colour(arm) -> str:
    arm = str(arm)
    return ARM_COLOURS.get(arm) or OTHER_COLOURS[zlib.crc32(arm.encode()) % len(OTHER_COLOURS)]


def arm_name(arm) -> str:
    return ARM_NAMES.get(str(arm), str(arm))
