"""Hydra's basic sweeper, without composing every job a second time before the launch.

Hydra's BasicSweeper composes each job of a batch to check it (`validate_batch_is_legal`)
and the launcher composes it again to run it; each composition costs ~0.2 s of the launching
process, serially, before and while the workers train. `bnlab-train`'s preflight has already
composed and validated every job of the launch (bnlab.train.compose_jobs, which says so in
BNLAB_PREFLIGHT_VALIDATED): then the check is skipped. A launch without that preflight (a
Hydra app entered another way, a sweep past the preflight's job cap) is checked as before.
"""
import os
from dataclasses import dataclass
from typing import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore

# bnlab.train.VALIDATED_ENV (not imported: a plugin module loads before the package's config)
VALIDATED_ENV = "BNLAB_PREFLIGHT_VALIDATED"


@dataclass
class BnlabSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.bnlab_sweeper.bnlab_sweeper.BnlabSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="bnlab", node=BnlabSweeperConf, provider="bnlab")


class BnlabSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        if os.environ.get(VALIDATED_ENV) == "1":
            return
        BasicSweeper.validate_batch_is_legal(self, batch)
