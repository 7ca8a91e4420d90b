"""Which jobs of a launch train together as one stack (issue 23), and how the launch tells them.

bnlab-train's preflight has every job's composed config. Jobs that differ only in what a stack
holds per run (the seed, the rate and its schedule, momentum, weight decay, the init) and whose
model stacks (bnlab.stacked: the MLP and deep MLP, norm none or batch, SGD, no augmentation, no
step probes) are grouped into stacks of at most `trainer.stack` runs; on a CPU
runs of one seed share a stack, so that one batch serves all of them, and runs left alone in
their seed's group (a confirmation phase: one run per seed) stack across seeds, each with its
own batch. The plan is written
to a file (`<study>/.stacks/`) that bnlab's sweeper (hydra_plugins/bnlab_sweeper) reads: it
launches one job per stack, through whichever launcher the user chose (joblib, SLURM), which
trains its runs together into their ordinary run folders, `<sweep>/<job number>`, exactly where
they would have been written alone. Jobs that cannot stack, and a launch of one job, run as
before. `--dry-run` shows the stacks.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from omegaconf import DictConfig

from bnlab.store import resolved_config, write_json_atomic
from bnlab.sweep import study_dir

PLAN_ENV = "BNLAB_STACK_PLAN"
STACKS_DIR = ".stacks"
STACKABLE_MODELS = ("mlp", "deep_mlp")
# what may differ between the runs of one stack (each run's own value is stacked)
PER_RUN_KEYS = ("seed", "optim.lr", "optim.momentum", "optim.weight_decay", "optim.lr_milestones",
                "optim.lr_gamma", "init", "trainer.stack_members")


def why_config_cannot_stack(cfg: DictConfig) -> str | None:
    """None when a run of `cfg` can train in a stack; else why not, in words."""
    if int(cfg.trainer.get("stack", 1) or 1) <= 1:
        return "trainer.stack is 1 (stacking off)"
    if cfg.model.name not in STACKABLE_MODELS:
        return f"model {cfg.model.name} does not stack (only {', '.join(STACKABLE_MODELS)})"
    if cfg.model.norm not in ("none", "batch"):
        return f"norm {cfg.model.norm} does not stack (only none and batch)"
    if cfg.optim.name != "sgd":
        return f"optimizer {cfg.optim.name} does not stack (only sgd)"
    if cfg.data.get("augment"):
        return "augmented batches do not stack"
    if cfg.trainer.get("compile"):
        return "compiled steps do not stack yet"
    for probe in ("grad_ics", "landscape"):
        if cfg.probes.get(probe, {}).get("enabled"):
            return f"the {probe} probe measures inside one run's step"
    return None


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.get(p, {}) if isinstance(tree, dict) else {}
    if isinstance(tree, dict):
        tree.pop(leaf, None)


def stack_key(cfg: DictConfig, share_batches: bool) -> str:
    """Runs with equal keys can share a stack: the config without its per-run keys (with the
    seed kept where the runs must share their batches)."""
    config = resolved_config(cfg)
    config.pop("hydra", None)
    for dotted in PER_RUN_KEYS:
        if not (dotted == "seed" and share_batches):
            _drop(config, dotted)
    return json.dumps(config, sort_keys=True, default=str)


def share_batches(cfg: DictConfig) -> bool:
    """On a CPU a stack's runs share one batch (runs of one seed); on a GPU the batches are
    gathered per run, and runs of any seed stack."""
    device = str(cfg.trainer.device)
    if device == "auto":
        import torch

        return not torch.cuda.is_available()
    return not device.startswith("cuda")


def plan_stacks(cfgs: list[DictConfig], eligible: list[bool], parallel: int = 1) -> list[list[int]]:
    """The jobs (by index) grouped into stacks of at most `trainer.stack` runs; every job is
    in exactly one group, a job that cannot stack (or is not `eligible`: already done, running
    elsewhere) in a group of one. When there are fewer stacks than `parallel` jobs that run at
    once, the largest are split, so that no core is left idle."""
    groups: dict[str, list[int]] = {}
    alone: list[list[int]] = []
    shares: dict[str, bool] = {}
    for i, cfg in enumerate(cfgs):
        if not eligible[i] or why_config_cannot_stack(cfg) is not None:
            alone.append([i])
            continue
        dev = str(cfg.trainer.device)
        if dev not in shares:
            shares[dev] = share_batches(cfg)
        groups.setdefault(stack_key(cfg, shares[dev]), []).append(i)
    # A run alone among its seed's runs (a confirmation phase: one run per seed) stacks with the
    # runs of other seeds that are alone too: each with its own batch, still cheaper than one
    # after another (bnlab-bench --stacked: "a seed each")
    singles: dict[str, list[int]] = {}
    for key in [k for k, members in groups.items() if len(members) == 1]:
        (i,) = groups.pop(key)
        singles.setdefault("seeds:" + stack_key(cfgs[i], False), []).append(i)
    groups.update(singles)
    stacks = []
    for members in groups.values():
        limit = max(1, int(cfgs[members[0]].trainer.stack))
        stacks += [members[j:j + limit] for j in range(0, len(members), limit)]
    while len(stacks) < parallel and any(len(s) > 1 for s in stacks):
        big = max(stacks, key=len)
        stacks.remove(big)
        half = (len(big) + 1) // 2
        stacks += [big[:half], big[half:]]
    return sorted(stacks + alone, key=lambda s: s[0])


def write_plan(jobs: list[list[str]], cfgs: list[DictConfig], stacks: list[list[int]]) -> Path | None:
    """Write the stacks of more than one run (one file each, and the plan that names them) into
    the study's `.stacks/` folder; returns the plan's path (None: nothing stacks)."""
    real = [s for s in stacks if len(s) > 1]
    if not real:
        return None
    # Hydra hands its sweeper the overrides without hydra's own (hydra.launcher.n_jobs=2)
    jobs = [[o for o in job if not o.lstrip("+~").startswith(("hydra.", "hydra/"))] for job in jobs]
    folder = study_dir(cfgs[real[0][0]]) / STACKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    plan = {"jobs": [list(j) for j in jobs], "stacks": []}
    for members in real:
        body = {"members": [{"index": i, "overrides": list(jobs[i])} for i in members]}
        name = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        path = folder / f"{name}.json"
        write_json_atomic(path, body)
        plan["stacks"].append({"members": members, "file": str(path)})
    name = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]
    path = folder / f"plan-{name}.json"
    write_json_atomic(path, plan)
    return path


def read_stack(path: str | os.PathLike) -> list[dict]:
    """The members of a stack file: [{"index": job number, "overrides": [...]}, ...]."""
    with open(path) as f:
        return json.load(f)["members"]
