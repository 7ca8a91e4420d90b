"""Every metric derived from a run's curves, in one table (`RUN_MEASURES`), and the curve
readers behind them.

Each entry names its columns, says what it measures, and computes them for every run of a
frame; bnlab.analysis.frames.derive adds them all (the committed CSV holds them too, and they
are recomputed from the curves whenever a frame is read). A new run-level metric is one entry.

Hands downstream: `add_measures(runs)` (frames.derive); the curve readers the figures draw
from (`act_in_series`, `last_layer`, `grad_ics_layers`); `to_accuracy` and `steps_to` (steps to
a validation accuracy; bnlab.analysis.claim_measures, the figures).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd


_ACT_KEY = re.compile(r"^eval:probe/act_in/(?:(b\d+)/)?(u\d+)/p(\d+(?:\.\d+)?)$")


def act_in_series(curves: dict) -> dict:
    """{(layer, unit): {percentile: array over evaluations}} from the activation-input probe
    (layer 'last' for runs made before every hidden layer was probed)."""
    out: dict = {}
    for k, v in curves.items():
        m = _ACT_KEY.match(k)
        if m:
            layer, unit, pct = m.group(1) or "last", m.group(2), float(m.group(3))
            out.setdefault((layer, unit), {})[pct] = np.asarray([np.nan if x is None else x for x in v], float)
    return out


def last_layer(series: dict) -> str | None:
    layers = sorted({layer for layer, _ in series}, key=lambda s: (s == "last", int(s[1:]) if s[1:].isdigit() else 0))
    return layers[-1] if layers else None


def act_in_drift(curves: dict, every: int | None = None, layers: str = "all") -> float | None:
    """How far the activation-input distributions move during training (Ioffe Fig. 1b,c):
    for each probed (layer, unit) and each of the 15th, 50th and 85th percentiles, the mean
    absolute change between consecutive evaluations on the regular grid (steps that are
    multiples of `every`, so finer early evaluations do not change the measure), divided by
    that unit's mean 15-85th percentile width; averaged over percentiles, units and layers
    (`layers="last"`: the last hidden layer only). Location and spread both count."""
    series = act_in_series(curves)
    steps = np.asarray(curves.get("eval:step", []), dtype=float)
    keep = (steps % every == 0) if every and len(steps) else np.ones(len(steps), bool)
    if layers == "last":
        last = last_layer(series)
        series = {k: v for k, v in series.items() if k[0] == last}
    drifts = []
    for pcts in series.values():
        if not {15.0, 50.0, 85.0} <= set(pcts):
            continue
        p15, p85 = pcts[15.0][keep[:len(pcts[15.0])]], pcts[85.0][keep[:len(pcts[85.0])]]
        width = np.nanmean(p85 - p15) if len(p15) else np.nan
        if not (np.isfinite(width) and width > 0):
            continue
        for p in (15.0, 50.0, 85.0):
            x = pcts[p][keep[:len(pcts[p])]]
            if len(x) >= 2 and np.all(np.isfinite(x)):
                drifts.append(np.mean(np.abs(np.diff(x))) / width)
    return float(np.mean(drifts)) if drifts else None


def eval_mean(curves: dict, prefix: str, suffix: str = "") -> float | None:
    """Mean over evaluations (and over every series `eval:<prefix>...<suffix>`: layers) of
    a probe's finite values; None when the run has none."""
    series = [np.asarray([np.nan if x is None else x for x in v], dtype=float) for k, v in curves.items()
              if k.startswith(f"eval:{prefix}") and k.endswith(suffix)]
    values = np.concatenate(series) if series else np.array([])
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def grad_ics(curves: dict, measure: str = "l2", layer: int | None = None) -> float | None:
    """Santurkar et al.'s ICS summarised per run: the mean over evaluations (and layers, or
    weight layer `layer` alone) of the probe's `l2` (||G - G'||, their measure), `rel`
    (||G - G'|| / ||G||) or `cos`."""
    return eval_mean(curves, "probe/grad_ics/" + (f"l{layer}/" if layer is not None else ""), f"/{measure}")


def grad_ics_layers(curves: dict) -> list[int]:
    """The weight layers a run's gradient-ICS probe measured (1 = the second weight layer)."""
    return sorted({int(k.split("/")[2][1:]) for k in curves if k.startswith("eval:probe/grad_ics/")})


# Santurkar et al. (2018, Sec. 3.2) landscape along the gradient (bnlab.probes.LandscapeProbe),
# each summarised per run as its mean over evaluations
LANDSCAPE = ("loss_range", "grad_range", "beta")


def _until_divergence(curves: dict, target: float) -> tuple[float | None, float | None]:
    """to_accuracy without the evaluation at which a diverged run stopped."""
    cut = {k: v[:-1] for k, v in curves.items() if k.startswith("eval:")}
    return to_accuracy(cut, target)


# validation accuracies whose first crossing is read off every run's curve ("steps and
# seconds to 95%, 97%, 98%"): steps_to_val_0.97, time_to_val_0.97_s; None if never reached
SPEED_TARGETS = (0.95, 0.97, 0.98)


def to_accuracy(curves: dict, target: float) -> tuple[float | None, float | None]:
    """(step, training seconds) of the first evaluation whose validation accuracy is at least
    `target`, from the curve; (None, None) when the run never reached it (or diverged first:
    a diverged run's last evaluation does not count, as for its best)."""
    steps, accs, times = (curves.get(f"eval:{k}") or [] for k in ("step", "val/acc", "time_s"))
    for i, (step, acc) in enumerate(zip(steps, accs)):
        if acc is not None and acc >= target:
            return float(step), (float(times[i]) if i < len(times) and times[i] is not None else None)
    return None, None


def steps_to(runs: pd.DataFrame, target: float) -> list:
    """Per run, the first evaluation step whose validation accuracy reaches `target` (a diverged
    run's last evaluation does not count); None when never reached."""
    status = runs["status"] if "status" in runs else pd.Series([None] * len(runs), index=runs.index)
    return [(to_accuracy(c, target) if s != "diverged" else _until_divergence(c, target))[0]
            for c, s in zip(runs["curves"], status)]



def _speed(runs: pd.DataFrame) -> dict:
    out = {}
    for t in SPEED_TARGETS:
        reached = [to_accuracy(c, t) if s != "diverged" else _until_divergence(c, t)
                   for c, s in zip(runs["curves"], runs.get("status", pd.Series([None] * len(runs))))]
        out[f"steps_to_val_{t:g}"] = [r[0] for r in reached]
        out[f"time_to_val_{t:g}_s"] = [r[1] for r in reached]
    return out


# training losses whose first crossing is read off every run's curve ("a lower training loss
# sooner"), fixed before the runs that test it: at 10k steps both arms of mnist_mlp's committed
# runs end near 0.04-0.05 (medians), so 0.1 is reached by most runs of either arm, not by none
TRAIN_LOSS_TARGETS = (0.1,)


def _train_loss(runs: pd.DataFrame) -> dict:
    """The lowest training loss reached (the logged interval means) and the first logged step
    at or below each target; None where never (a diverged run's losses count until it stopped)."""
    def series(c):
        steps, losses = c.get("train:step") or [], c.get("train:train/loss") or []
        return [(s, x) for s, x in zip(steps, losses) if x is not None and np.isfinite(x)]

    out = {"best/train/loss": [min((x for _, x in series(c)), default=None) for c in runs["curves"]]}
    for t in TRAIN_LOSS_TARGETS:
        out[f"steps_to_train_loss_{t:g}"] = [next((float(s) for s, x in series(c) if x <= t), None)
                                             for c in runs["curves"]]
    return out


# the activation statistics (bnlab.activation_stats), per run at its last evaluation, mean over
# the probed hidden layers: act_<mode>_<stat>
ACT_STATS = ("norm_mean_abs", "norm_var", "pre_mean_abs", "pre_var", "pre_skew_abs", "pre_kurt_abs",
             "corr_abs", "eff_rank_frac")


def act_stat_last(curves: dict, mode: str, stat: str) -> float | None:
    """A statistic of the activation-statistics probe at the run's last evaluation, mean over
    layers; None where the probe did not log it."""
    values = [v[-1] for k, v in curves.items() if k.startswith("eval:probe/act_stats/") and
              k.endswith(f"/{mode}/{stat}") and v and v[-1] is not None and np.isfinite(v[-1])]
    return float(np.mean(values)) if values else None


def _act_stats(runs: pd.DataFrame) -> dict:
    if not any(k.startswith("eval:probe/act_stats/") for c in runs["curves"] for k in c):
        return {}
    return {f"act_{mode}_{stat}": [act_stat_last(c, mode, stat) for c in runs["curves"]]
            for mode in ("train", "eval") for stat in ACT_STATS}


def _every(runs: pd.DataFrame) -> pd.Series:
    return runs["cfg.trainer.eval_every"] if "cfg.trainer.eval_every" in runs else pd.Series([None] * len(runs))


def _grad_ics_layers(runs: pd.DataFrame) -> dict:
    out = {}
    for i in sorted({i for c in runs["curves"] for i in grad_ics_layers(c)}):
        for m in ("l2", "cos"):
            out[f"grad_ics_{m}_l{i}"] = [grad_ics(c, m, i) for c in runs["curves"]]
    return out


def _landscape(runs: pd.DataFrame) -> dict:
    if not any(k.startswith("eval:probe/landscape/") for c in runs["curves"] for k in c):
        return {}
    return {f"landscape_{m}": [eval_mean(c, f"probe/landscape/{m}") for c in runs["curves"]] for m in LANDSCAPE}


def _gap(runs: pd.DataFrame) -> dict:
    if "best/train_eval/acc" not in runs:
        return {}
    return {"best/gap": pd.to_numeric(runs["best/train_eval/acc"], errors="coerce")
            - pd.to_numeric(runs["best/test/acc"], errors="coerce")}


@dataclass(frozen=True)
class Measure:
    """One entry of the run-measure table."""

    columns: str
    """The columns it adds (<t>, <m>, <i>: one per target, measure, layer)."""
    what: str
    """What it measures, in words."""
    compute: Callable[[pd.DataFrame], dict]
    """runs -> {column: one value per run}; {} where the runs logged nothing it reads."""
    together: bool = False
    """Added as one block (a wide family of columns: one at a time would fragment the frame)."""


RUN_MEASURES: tuple[Measure, ...] = (
    Measure("steps_to_val_<t>, time_to_val_<t>_s",
            "steps and training seconds to the first evaluation at or above each of SPEED_TARGETS "
            "(None: never, or only at the evaluation where a diverged run stopped)", _speed),
    Measure("act_in_drift", "Ioffe & Szegedy's ICS: the activation-input percentiles' movement between "
                            "evaluations, relative to their spread, over every probed hidden layer",
            lambda runs: {"act_in_drift": [act_in_drift(c, e) for c, e in zip(runs["curves"], _every(runs))]}),
    Measure("act_in_drift_last", "the same, on the last hidden layer only",
            lambda runs: {"act_in_drift_last": [act_in_drift(c, e, "last") for c, e in zip(runs["curves"], _every(runs))]}),
    Measure("grad_ics_<m> (l2, rel, cos)", "Santurkar et al.'s ICS (Def. 2.1): ||G − G′||, its relative size and the "
                                           "cosine, mean over layers and evaluations",
            lambda runs: {f"grad_ics_{m}": [grad_ics(c, m) for c in runs["curves"]] for m in ("l2", "rel", "cos")}),
    Measure("grad_ics_<m>_l<i> (l2, cos)", "the same per weight layer (their Fig. 3 shows layers across depth)",
            _grad_ics_layers, together=True),
    Measure("landscape_<m> (loss_range, grad_range, beta)",
            "Santurkar et al.'s landscape along the gradient, mean over evaluations", _landscape, together=True),
    Measure("best/gap", "eval-mode accuracy on training images minus test accuracy at the best-validation "
                        "evaluation (runs with trainer.eval_train > 0)", _gap),
    Measure("best/train/loss, steps_to_train_loss_<t>",
            "the lowest training loss reached (logged interval means) and the first logged step at or below "
            "each of TRAIN_LOSS_TARGETS", _train_loss),
    Measure("act_<mode>_<stat> (train, eval; ACT_STATS)",
            "the activation-statistics probe at the last evaluation, mean over hidden layers: the normalized "
            "value's and the pre-activation's per-unit |mean| and variance, the pre-activation's |skewness| and "
            "|excess kurtosis|, the units' mean |correlation| and effective rank over width", _act_stats,
            together=True),
)


def add_measures(runs: pd.DataFrame) -> pd.DataFrame:
    """The frame with every RUN_MEASURES column added (recomputed where present)."""
    block: dict = {}

    def flush(frame: pd.DataFrame) -> pd.DataFrame:
        if not block:
            return frame
        frame = pd.concat([frame.drop(columns=[k for k in block if k in frame]),
                           pd.DataFrame(block, index=frame.index)], axis=1)
        block.clear()
        return frame

    for measure in RUN_MEASURES:
        columns = measure.compute(runs)
        if measure.together:
            block.update(columns)
            continue
        runs = flush(runs)
        for name, values in columns.items():
            runs[name] = values
    return flush(runs)
