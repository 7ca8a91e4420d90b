"""Shared fixtures: the real config composed and shrunk, and the real MNIST.

Tests that need data use `$BNLAB_DATA` (CI points it at the shared copy). When MNIST is
missing they fail, never skip: a green run must mean the data-dependent behaviour was tested.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import bnlab  # noqa: F401  (registers resolvers)
from bnlab.data import DATASETS
from bnlab.resolvers import CONF_DIR, REPO_ROOT


def data_root() -> Path:
    return Path(os.environ.get("BNLAB_DATA", REPO_ROOT / "data"))


def _require(name: str) -> Path:
    root = data_root()
    missing = [f for f in DATASETS[name].files if not (root / f).is_file()]
    if missing:
        pytest.fail(f"{name} not found under {root} (missing {missing[0]}): "
                    "set BNLAB_DATA to a folder holding it (CI: ../shared/data)")
    return root


@pytest.fixture
def mnist_root() -> Path:
    return _require("mnist")


@pytest.fixture
def cifar_root() -> Path:
    return _require("cifar10")


def make_cfg(tmp_path: Path, *overrides: str):
    """The real config, shrunk for tests: W&B disabled, results under tmp_path, no bar."""
    base = [f"paths.results={tmp_path}", f"paths.data={data_root()}", "tracking.mode=disabled",
            "trainer.progress=false", "trainer.max_steps=50", "trainer.eval_every=25",
            "trainer.log_every=25",
            # a fixed thread count: the last bits of a run depend on it (bnlab.threads), and
            # `auto` would read it from the machine's load
            "trainer.num_threads=1"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=base + list(overrides))


@pytest.fixture
def cfg_factory(tmp_path):
    return lambda *overrides: make_cfg(tmp_path, *overrides)
