"""The W&B mirror of a run. The run store stays the source of truth; W&B is a view of it.

mode: offline (default: no account, no network, no prompt), online, or disabled (tests).
With `disabled` wandb is not even imported. The W&B run is always finished, also when
training raises, so a worker never leaves a dangling run behind.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def flat_config(config: dict, prefix: str = "") -> dict:
    """Nested config -> {"model.norm": "batch", ...} so the dashboard can group by any key."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_name(config: dict) -> str:
    m, o = config["model"], config["optim"]
    return f"{config['data']['name']}-{m['name']}-{m['norm']}-lr{o['lr']:g}-s{config['seed']}"


class NullMirror:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def log(self, record: dict) -> None:
        pass

    def set_summary(self, summary: dict) -> None:
        pass


class WandbMirror(NullMirror):
    def __init__(self, config: dict, out_dir: str | os.PathLike):
        self.config, self.out_dir = config, Path(out_dir)
        self.run = None

    def __enter__(self):
        import wandb  # slow import, only when mirroring

        t = self.config["tracking"]
        self.run = wandb.init(
            project=t["project"], entity=t.get("entity"), mode=t["mode"],
            dir=str(self.out_dir), config=flat_config(self.config),
            name=run_name(self.config), group=self.config.get("name"), job_type="train",
            tags=[str(x) for x in self.config.get("tags", [])],
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")
        return self

    def log(self, record: dict) -> None:
        self.run.log(record)

    def set_summary(self, summary: dict) -> None:
        self.run.summary.update({k: v for k, v in flat_config(summary).items()
                                 if not k.startswith(("config.", "env."))})

    def __exit__(self, exc_type, exc, tb):
        self.run.finish(exit_code=0 if exc_type is None else 1)
        return False


def open_mirror(config: dict, out_dir) -> NullMirror:
    if config["tracking"]["mode"] == "disabled":
        return NullMirror()
    return WandbMirror(config, out_dir)
