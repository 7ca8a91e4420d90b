"""Reading one study file (experiments/<name>.yaml), for the launch and the analysis alike.

A study file is hand-written YAML: a typo in it must be one line naming the file and the
line, not a parser's traceback; and a file that names no study (say, only its
`# @package _global_` line) would otherwise launch the default 50k-step run in silence.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import OmegaConf

from bnlab.errors import ConfigError


def read_study_file(path: Path) -> dict:
    """The study file's contents as a dict; ConfigError (key: the file) when it is not valid
    YAML (with the line) or names no study (no `name`)."""
    key = f"experiments/{path.name}"
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path)) if path.stat().st_size else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(key, f"{where}not valid YAML ({problem})") from None
    if not isinstance(raw, dict) or not raw.get("name"):
        raise ConfigError(key, "names no study: a study file sets `name` (its folder under results/runs/) "
                               "and its sweep (hydra.sweeper.params); see experiments/quickstart.yaml")
    return raw
