"""Synthetic run stores in the store's real format, whose answers are known (shared by the
analysis tests)."""
import numpy as np
import pandas as pd

from bnlab.analysis.spec import StudySpec
from bnlab.store import RunWriter, fingerprint

ACCURACY = {"claim": "accuracy", "kind": "compare", "metric": "best/test/acc", "direction": "higher",
            "min_effect": 0.002}


def write_run(root, name, norm, lr, seed, val, test, status="completed", steps_to_target=None,
              probe_drift=0.0, dropout=0.0, std=0.1, paired=True, learned=True, path=None, probes=None,
              verified=True):
    """One run in the store's real format, with val/test curves and activation probes (and
    `probes`: {metric: [value at step 0, 500, 1000]} logged at the evaluations)."""
    config = {"name": name, "seed": seed, "data": {"name": "mnist", "train_subset": None, "root": "/secret/data"},
              "model": {"name": "mlp", "norm": norm, "dropout": dropout}, "paths": {"results": "/secret/results"},
              "optim": {"lr": lr, "batch_size": 60}, "init": {"std": std},
              "trainer": {"max_steps": 1000, "eval_every": 500}}
    fp = fingerprint(config)
    w = RunWriter(path or root / name / f"{norm}-{lr}-{dropout}-{std}-{seed}")
    w.start({"config": config, "fingerprint": fp, "env": {"device": "cpu", "device_name": "test-cpu",
                                                          "torch": "x", "torch_threads": 1}})
    for i, step in enumerate((0, 500, 1000)):
        frac = step / 1000
        rec = {"step": step, "samples": step * 60, "time_s": step * 0.001, "lr": lr,
               "val/acc": 0.1 + (val - 0.1) * frac, "test/acc": 0.1 + (test - 0.1) * frac}
        for b in ("b0", "b1"):
            for u in ("u0", "u1"):
                mid = probe_drift * i
                rec.update({f"probe/act_in/{b}/{u}/p15": mid - 1, f"probe/act_in/{b}/{u}/p50": mid,
                            f"probe/act_in/{b}/{u}/p85": mid + 1})
        rec.update({k: v[i] for k, v in (probes or {}).items()})
        if step:
            rec["train/loss"] = 2.3 * (1 - frac) + 0.05
        w.log(rec)
    summary = {"status": status, "steps": 1000, "fingerprint": fp, "val/acc": val, "test/acc": test,
               "best/val/acc": val, "best/test/acc": test, "steps_to_target": steps_to_target,
               "step_time_ms": 1.0 if norm == "none" else 1.3, "train_time_s": 1.0, "initial_loss": 2.3,
               "learned": learned and status == "completed", "data": {"root": "/secret/data", "verified": verified}}
    if paired:
        summary["paired"] = 1
    w.finish(summary)


def spec(**kw):
    base = dict(name="synth", description="synthetic", claims=[], tune=["optim.lr"], max_steps=1000,
                confirm_seeds=[100, 101, 102, 103, 104])
    return StudySpec(**{**base, **kw})


def make_store(tmp_path, rng_seed=0):
    """Tuning seeds 0-4: BN better by 0.010 at its best lr; no-BN's best lr on *validation*
    is 0.5 although lr 0.1 has the best *test* accuracy (selection must use validation); lr 2
    diverges without BN. Confirmation seeds 100-104 at the chosen lrs: BN better by 0.004
    only (the winner's curse of the tuning seeds), paired."""
    rng = np.random.default_rng(rng_seed)
    for seed in range(5):
        e = 0.001 * rng.standard_normal()
        write_run(tmp_path, "synth", "batch", 0.5, seed, 0.981 + e, 0.980 + e, steps_to_target=300)
        write_run(tmp_path, "synth", "batch", 2.0, seed, 0.975 + e, 0.974 + e, steps_to_target=400)
        write_run(tmp_path, "synth", "none", 0.5, seed, 0.972 + e, 0.970 + e, steps_to_target=900, probe_drift=0.5)
        write_run(tmp_path, "synth", "none", 0.1, seed, 0.960 + e, 0.985 + e, steps_to_target=None)
        write_run(tmp_path, "synth", "none", 2.0, seed, 0.10, 0.098, status="diverged")
    for seed in range(100, 105):
        e = 0.01 * rng.standard_normal()  # large seed-to-seed spread, shared by both arms
        write_run(tmp_path, "synth", "batch", 0.5, seed, 0.977 + e, 0.974 + e + 0.0002 * rng.standard_normal())
        write_run(tmp_path, "synth", "none", 0.5, seed, 0.973 + e, 0.970 + e)
    return tmp_path / "synth"


THREE_ARM_CLAIM = {"claim": "accuracy", "kind": "compare", "metric": "best/test/acc", "direction": "higher",
                   "min_effect": 0.002, "equivalence_margin": 0.005}


def make_three_arm_store(tmp_path, name="three", rng_seed=0):
    """Arms none, batch, noisy_batch over lr {0.1, 0.5, 2}, tuning seeds 0-4 (lr 0.5 best for
    every arm on validation; no-BN diverges at lr 2), confirmation seeds 100-104 at lr 0.5,
    paired: no BN 0.970, BN 0.980, noisy BN 0.9795 (+ a seed effect shared by the arms). So BN
    beats no BN, noisy BN is within ±0.005 of BN, and BN is *not* within ±0.005 of no BN."""
    rng = np.random.default_rng(rng_seed)
    acc = {"none": {0.1: 0.965, 0.5: 0.970}, "batch": {0.1: 0.975, 0.5: 0.980, 2.0: 0.975},
           "noisy_batch": {0.1: 0.974, 0.5: 0.9795, 2.0: 0.974}}
    for seed in range(5):
        e = 0.002 * rng.standard_normal()
        for norm, by_lr in acc.items():
            for lr, a in by_lr.items():
                write_run(tmp_path, name, norm, lr, seed, a + e + 0.001, a + e)
        write_run(tmp_path, name, "none", 2.0, seed, 0.10, 0.098, status="diverged")
    for seed in range(100, 105):
        e = 0.003 * rng.standard_normal()
        for norm, by_lr in acc.items():
            a = by_lr[0.5] + e + 0.0003 * rng.standard_normal()
            write_run(tmp_path, name, norm, 0.5, seed, a + 0.001, a)
    return tmp_path / name


THREE_ARM_STUDY = """\
# @package _global_
name: three
description: "none, batch, noisy_batch"
hydra:
  sweeper:
    params:
      model.norm: none,batch,noisy_batch
      optim.lr: 0.1,0.5,2.0
      seed: 0,1,2,3,4
trainer:
  max_steps: 1000
analysis:
  arm_key: model.norm
  tune: [optim.lr]
  confirm_seeds: [100, 101, 102, 103, 104]
  comparisons:
    - {baseline: none, treatment: batch}
    - {baseline: batch, treatment: noisy_batch, test: equivalence}
  claims:
    - claim: accuracy
      family: study
      kind: compare
      metric: best/test/acc
      direction: higher
      min_effect: 0.002
      equivalence_margin: 0.005
      literature: "Santurkar et al. 2018: noisy BN trains about as well as BN"
"""


# (val, test) accuracy per (norm, dropout, placement, lr): each cell's best rate is its own
# (no-BN without dropout at lr 2, with dropout after each activation at lr 0.5), so a gain read
# at a matched rate would differ from the gain between the cells' tuned rates
DROPOUT_CELLS = {
    ("none", 0.0, "after_each_activation"): {0.5: (0.960, 0.960), 2.0: (0.970, 0.970)},
    ("none", 0.2, "after_each_activation"): {0.5: (0.976, 0.975), 2.0: (0.965, 0.965)},
    ("none", 0.2, "before_classifier"): {0.5: (0.968, 0.968), 2.0: (0.973, 0.972)},
    ("batch", 0.0, "after_each_activation"): {0.5: (0.980, 0.980), 2.0: (0.978, 0.978)},
    ("batch", 0.2, "after_each_activation"): {0.5: (0.975, 0.975), 2.0: (0.979, 0.978)},
    ("batch", 0.2, "before_classifier"): {0.5: (0.981, 0.980), 2.0: (0.977, 0.977)},
}


def dropout_cell_runs(rng_seed=0) -> pd.DataFrame:
    """A frame of the dropout study's design from DROPOUT_CELLS: tuning seeds 0-4 and
    confirmation seeds 100-104 at every cell and rate, with small per-run noise, paired."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for (norm, p, place), by_lr in DROPOUT_CELLS.items():
        for lr, (val, test) in by_lr.items():
            for seed in [*range(5), *range(100, 105)]:
                e = 0.0003 * rng.standard_normal()
                rows.append({"cfg.model.norm": norm, "cfg.model.dropout": p, "cfg.model.dropout_placement": place,
                             "cfg.optim.lr": lr, "cfg.seed": seed, "status": "completed", "outcome": "learned",
                             "best/val/acc": val + e, "best/test/acc": test + e, "best/gap": 0.03 - e,
                             "paired": 1})
    return pd.DataFrame(rows)
