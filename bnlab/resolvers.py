"""OmegaConf resolvers the configs use. Registered on import of `bnlab`."""
import os
from pathlib import Path

from omegaconf import OmegaConf

# The checkout that holds bnlab/, conf/ and results/ (the package is installed editable).
REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"
# One study per file. The search-path plugin adds a folder that holds *only* a link to it,
# so that Hydra sees `experiments` as a config group and nothing else of the checkout
# (adding the checkout itself made .venv/, results/ and tests/ "config groups" in --help).
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
STUDIES_ROOT = REPO_ROOT / "hydra_plugins" / "bnlab_searchpath" / "studies"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("repo_root"):
        OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT))
    if not OmegaConf.has_resolver("cpu_count"):
        # one parallel job per core by default
        OmegaConf.register_new_resolver("cpu_count", lambda: os.cpu_count() or 1)
