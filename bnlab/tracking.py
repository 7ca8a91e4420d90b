"""The W&B mirror of a run. The run store stays the source of truth; W&B is a view of it.

mode: offline (default: no account, no network, no prompt), online, or disabled (tests).
With `disabled` wandb is not even imported. The W&B run is always finished, also when
training raises, so a worker never leaves a dangling run behind.

All runs of a study share one W&B directory, `<runs>/<study>/wandb/`, so that
`wandb leet <runs>/<study>/wandb` browses the whole study and `wandb sync` uploads it. An
ad-hoc run (`name` left at `default`) is filed under its dataset and model instead,
`<runs>/default/<data>-<model>/wandb/`, so that ad-hoc MNIST MLP runs are not mixed with
ad-hoc CIFAR VGG runs; the run store itself is unchanged (`<runs>/default/...`).

Every W&B run says what it is where a viewer looks: `wandb leet` lists runs by their folder
(`offline-run-<time>-<id>`), so the id is made readable (`batch-s1-lr0.5-3f9a2c`); the
display name holds the study and the setting (`mnist_mlp norm=batch lr=0.5 seed=1`), the
group the study and arm, and `job_type` the rest of the setting without the seed, so the
runs of one group and job type are the seeds of one setting (W&B's band over seeds).
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
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


# `name` of a run launched without a study (conf/config.yaml)
ADHOC_NAME = "default"
# keys that name every run, swept or not: its arm, its learning rate, its seed
NAME_KEYS = ("model.norm", "optim.lr", "seed")
# W&B's limits: a run id of at most 64 characters, without its reserved characters; a
# job type of at most 64 characters
ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
MAX_ID, MAX_JOB_TYPE = 64, 64


def dashboard_study(config: dict) -> str:
    """The study a run belongs to in W&B: its `name`, or for an ad-hoc run its dataset and
    model (`mnist-mlp`), so that ad-hoc runs of different nets are not one group."""
    name = config.get("name") or ADHOC_NAME
    return name if name != ADHOC_NAME else f"{config['data']['name']}-{config['model']['name']}"


def wandb_root(config: dict, study_dir: str | os.PathLike) -> Path:
    """The folder W&B writes its `wandb/` folder into: the study's folder, or for an ad-hoc
    run `<runs>/default/<data>-<model>/` (one W&B folder per ad-hoc name)."""
    study_dir = Path(study_dir)
    return study_dir if (config.get("name") or ADHOC_NAME) != ADHOC_NAME else study_dir / dashboard_study(config)


def label_keys(label: str | None) -> list[str]:
    """The keys of a sweep job's label ("model.norm=batch seed=1" -> ["model.norm", "seed"])."""
    return re.findall(r"(?:^|\s)[+~]*([\w.\-/]+)=", label or "")


def _label_values(label: str | None) -> dict:
    return dict(re.findall(r"(?:^|\s)[+~]*([\w.\-/]+)=(\S*)", label or ""))


def _text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def arm_key(config: dict) -> str:
    """The study's scientific variable (analysis.arm_key), model.norm unless it says otherwise."""
    return (config.get("analysis") or {}).get("arm_key") or "model.norm"


def run_setting(config: dict, label: str | None = None) -> list[tuple[str, str, str]]:
    """(key, short key, value) of what names a run, in this order: its arm, the learning
    rate, the other keys its sweep varies (from the job's label), the seed. Values come from
    the resolved config (a group override such as `model=vgg` keeps the label's value). A
    short key is the key's last part (`lr`), or the whole key where two would read the same."""
    keys = [k for k in dict.fromkeys([arm_key(config), *NAME_KEYS, *label_keys(label)]) if k != "seed"]
    keys.append("seed")
    flat, given = flat_config(config), _label_values(label)
    keys = [k for k in keys if k in flat or k in given]
    lasts = [k.rsplit(".", 1)[-1] for k in keys]
    return [(k, last if lasts.count(last) == 1 else k, _text(flat[k] if k in flat else given[k]))
            for k, last in zip(keys, lasts)]


def run_names(config: dict, label: str | None = None) -> dict:
    """W&B's name, group, job type and a readable id prefix for one run:
    name `<study> norm=batch lr=0.5 seed=1` (with every swept key), group `<study> norm=batch`
    (study and arm), job_type `lr=0.5` (the setting without arm and seed: the seeds of one
    setting share group and job type), id prefix `batch-s1-lr0.5` (what `wandb leet` lists)."""
    study, setting = dashboard_study(config), run_setting(config, label)
    arm, rest, seed = setting[0], setting[1:-1], setting[-1]
    word = "{0[1]}={0[2]}".format
    slug = [arm[2], f"s{seed[2]}", *(short + value for _, short, value in rest)]
    return {"name": " ".join([study, *map(word, setting)]),
            "group": f"{study} {word(arm)}",
            "job_type": (" ".join(map(word, rest)) or "train")[:MAX_JOB_TYPE],
            "id_prefix": ID_CHARS.sub("", "-".join(slug))[:MAX_ID - 7]}


def new_run_id(id_prefix: str) -> str:
    """A readable, unique W&B run id: the run's setting and 6 random hex digits (from
    `secrets`, so that naming a run never moves the training RNG)."""
    return f"{id_prefix}-{secrets.token_hex(3)}"


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
    def __init__(self, config: dict, study_dir: str | os.PathLike, label: str | None, launch: str | None,
                 run_id: str | None = None, code_version: str | None = None):
        self.config, self.wandb_root = config, wandb_root(config, study_dir)
        self.names, self.launch = run_names(config, label), launch
        self.run, self.run_id, self.code_version = None, run_id, code_version

    def __enter__(self):
        import wandb  # slow import, only when mirroring

        t, names = self.config["tracking"], self.names
        self.wandb_root.mkdir(parents=True, exist_ok=True)
        resumed = self.run_id is not None
        self.run = wandb.init(
            project=t["project"], entity=t.get("entity"), mode=t["mode"],
            dir=str(self.wandb_root),
            config=dashboard_config(self.config, study=dashboard_study(self.config), launch=self.launch,
                                    code_version=self.code_version),
            # group by study and arm (relaunches and added seeds land in the same group),
            # job type the rest of the setting; filter by launch
            name=names["name"], group=names["group"], job_type=names["job_type"],
            tags=run_tags(self.config), settings=wandb.Settings(silent=True, console="off"),
            # a run resumed from its checkpoint continues its W&B run (the steps logged after
            # the checkpoint are logged to it again)
            id=self.run_id if resumed else new_run_id(names["id_prefix"]),
            resume="allow" if resumed else None,
            # the runs of a stack (bnlab.runner.run_group) are open at once in one process
            reinit="create_new",
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


def open_mirror(config: dict, study_dir, label: str | None = None, launch: str | None = None,
                run_id: str | None = None, code_version: str | None = None) -> NullMirror:
    if config["tracking"]["mode"] == "disabled":
        return NullMirror()
    return WandbMirror(config, study_dir, label, launch, run_id, code_version)
