"""OmegaConf resolvers the configs use. Registered on import of `bnlab`."""
from pathlib import Path

from omegaconf import OmegaConf

# The checkout that holds bnlab/, conf/ and results/ (the package is installed editable).
REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("repo_root"):
        OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT))
