"""The checks a config value goes through: each raises ConfigError (one line, naming the key
and what is allowed) or returns the value. bnlab.config.validate and each model's own check
(bnlab.models.MODELS) use them, so a model's keys are checked next to its builder."""
from __future__ import annotations

import math

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bnlab.errors import ConfigError


def get(cfg: DictConfig, key: str):
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(key, f"cannot be resolved ({str(exc).splitlines()[0]})") from None


def choice(cfg, key: str, allowed) -> str:
    value = get(cfg, key)
    if value not in allowed:
        raise ConfigError(key, f"got {value!r}; allowed: {', '.join(allowed)}")
    return value


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def number(cfg, key: str, *, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    """A finite number within [lo, hi] (open ends where asked)."""
    value = get(cfg, key)
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    rng = f"{left}{lo}, {hi}{right}" if hi is not None else (f"> {lo}" if lo_open else f">= {lo}")
    ok = is_number(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        raise ConfigError(key, f"got {value!r}; must be a number {'in ' if hi is not None else ''}{rng}")
    return value


def integer(cfg, key: str, *, lo: int = 1, hi: int | None = None, allow_none: bool = False):
    value = get(cfg, key)
    if value is None and allow_none:
        return None
    if not is_int(value) or value < lo or (hi is not None and value > hi):
        bound = f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
        raise ConfigError(key, f"got {value!r}; must be {bound}" + (" or null" if allow_none else ""))
    return value


def boolean(cfg, key: str) -> bool:
    value = get(cfg, key)
    if not isinstance(value, bool):
        raise ConfigError(key, f"got {value!r}; must be true or false")
    return value


def int_list(cfg, key: str, allow_empty: bool = False) -> list[int]:
    value = get(cfg, key)
    if not isinstance(value, (list, ListConfig)) or (len(value) == 0 and not allow_empty) or not all(
            is_int(v) and v > 0 for v in value):
        what = "a list" if allow_empty else "a non-empty list"
        raise ConfigError(key, f"got {value!r}; must be {what} of positive integers")
    return list(value)
