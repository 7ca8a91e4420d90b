"""The W&B mirror of a run. The run store stays the source of truth; W&B is a view of it.

mode: offline (default: no account, no network, no prompt), online, or disabled (tests).
With `disabled` wandb is not even imported. The W&B run is always finished, also when
training raises, so a worker never leaves a dangling run behind.

All runs of a study share one W&B directory, `<runs>/<study>/wandb/`, so that
`wandb leet <runs>/<study>/wandb` browses the whole study and `wandb sync` uploads it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# x-axes the dashboard offers for every curve
STEP_AXES = ("step", "samples", "time_s")


# where a run was written and read its data: machine paths, not what it computed
MACHINE_KEYS = ("paths.", "data.root")


def dashboard_config(config: dict, **extra) -> dict:
    """What the dashboard groups and filters by: the flat config without machine paths,
    plus `extra` (the study, the launch, the training-code version)."""
    flat = {k: v for k, v in flat_config(config).items() if not k.startswith(MACHINE_KEYS)}
    return {**flat, **extra}


def flat_config(config: dict, prefix: str = "") -> dict:
    """Nested config -> {"model.norm": "batch", ...} so the dashboard can group by any key."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def default_label(config: dict) -> str:
    m, o = config["model"], config["optim"]
    return f"{config['data']['name']}-{m['name']}-{m['norm']}-lr{o['lr']:g}-s{config['seed']}"


def run_tags(config: dict) -> list[str]:
    """Tags for filtering: the study's own, its claim, the dataset and the norm."""
    tags = [str(t) for t in config.get("tags") or []]
    if config.get("claim"):
        tags.append(f"claim:{config['claim']}")
    tags += [f"data:{config['data']['name']}", f"norm:{config['model']['norm']}"]
    return list(dict.fromkeys(tags))


class NullMirror:
    run_dir = None
    run_id = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def log(self, record: dict) -> None:
        pass

    def set_summary(self, summary: dict) -> None:
        pass


class WandbMirror(NullMirror):
    def __init__(self, config: dict, wandb_root: str | os.PathLike, label: str | None, launch: str | None,
                 run_id: str | None = None, code_version: str | None = None):
        self.config, self.wandb_root = config, Path(wandb_root)
        self.label, self.launch = label or default_label(config), launch
        self.run, self.run_id, self.code_version = None, run_id, code_version

    def __enter__(self):
        import wandb  # slow import, only when mirroring

        t, study = self.config["tracking"], self.config.get("name")
        self.wandb_root.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=t["project"], entity=t.get("entity"), mode=t["mode"],
            dir=str(self.wandb_root),
            # group by study (relaunches and added seeds land in the same group); filter by launch
            config=dashboard_config(self.config, study=study, launch=self.launch, code_version=self.code_version),
            name=self.label, group=study,
            job_type="train", tags=run_tags(self.config),
            settings=wandb.Settings(silent=True, console="off"),
            # a run resumed from its checkpoint continues its W&B run (the steps logged after
            # the checkpoint are logged to it again)
            id=self.run_id, resume="allow" if self.run_id else None,
        )
        self.run_id = self.run.id
        self.run_dir = str(Path(self.run.dir).parent)  # .../wandb/offline-run-*/
        for axis in STEP_AXES:
            self.run.define_metric(axis)
        for prefix in ("train", "val", "test", "probe"):
            self.run.define_metric(f"{prefix}/*", step_metric="step")
        return self

    def log(self, record: dict) -> None:
        self.run.log(record)

    def set_summary(self, summary: dict) -> None:
        self.run.summary.update({k: v for k, v in flat_config(summary).items()
                                 if not k.startswith(("data.", "wandb_dir"))})

    def __exit__(self, exc_type, exc, tb):
        self.run.finish(exit_code=0 if exc_type is None else 1)
        return False


def open_mirror(config: dict, wandb_root, label: str | None = None, launch: str | None = None,
                run_id: str | None = None, code_version: str | None = None) -> NullMirror:
    if config["tracking"]["mode"] == "disabled":
        return NullMirror()
    return WandbMirror(config, wandb_root, label, launch, run_id, code_version)
