"""OmegaConf resolvers the configs use. Registered on import of `bnlab`."""
import os
from pathlib import Path

from omegaconf import OmegaConf

# The checkout that holds bnlab/, conf/ and results/ (the package is installed editable).
REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"
# The folder that holds experiments/ (one study per file); the search-path plugin adds it.
STUDIES_ROOT = REPO_ROOT
EXPERIMENTS_DIR = STUDIES_ROOT / "experiments"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("repo_root"):
        OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT))
    if not OmegaConf.has_resolver("cpu_count"):
        # one parallel job per core by default
        OmegaConf.register_new_resolver("cpu_count", lambda: os.cpu_count() or 1)
