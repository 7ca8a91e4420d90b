"""Hydra's basic sweeper, without composing every job a second time before the launch, and
launching a stack of jobs as one job (issue 23).

Hydra's BasicSweeper composes each job of a batch to check it (`validate_batch_is_legal`)
and the launcher composes it again to run it; each composition costs ~0.2 s of the launching
process, serially, before and while the workers train. `bnlab-train`'s preflight has already
composed and validated every job of the launch (bnlab.train.compose_jobs, which says so in
BNLAB_PREFLIGHT_VALIDATED): then the check is skipped. A launch without that preflight (a
Hydra app entered another way, a sweep past the preflight's job cap) is checked as before.

Stacks: when the preflight grouped jobs into stacks (bnlab.stack_plan, named in
BNLAB_STACK_PLAN), each stack goes to the launcher as one job, its first member's overrides
plus `trainer.stack_members=<the stack's file>`; the job trains every member into the folder
the member would have had alone. Every job's folder is pinned to its number in the full sweep
(`hydra.sweep.subdir`), since the launcher numbers the jobs it is given, not the sweep's; a
stack job's own folder is `stack<number>` (its log and Hydra's record only).
"""
import json
import logging
import os
from dataclasses import dataclass
from typing import List, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore

log = logging.getLogger(__name__)
# bnlab.train.VALIDATED_ENV and bnlab.stack_plan.PLAN_ENV (not imported: a plugin module loads
# before the package's config)
VALIDATED_ENV = "BNLAB_PREFLIGHT_VALIDATED"
PLAN_ENV = "BNLAB_STACK_PLAN"


@dataclass
class BnlabSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.bnlab_sweeper.bnlab_sweeper.BnlabSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="bnlab", node=BnlabSweeperConf, provider="bnlab")


class BnlabSweeper(BasicSweeper):
    _seen = 0
    _plan = None

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        if os.environ.get(VALIDATED_ENV) == "1":
            return
        BasicSweeper.validate_batch_is_legal(self, batch)

    def _load_plan(self):
        if self._plan is None:
            self._plan = {}
            path = os.environ.get(PLAN_ENV)
            if path:
                with open(path) as f:
                    plan = json.load(f)
                every = [job for batch in self.overrides for job in batch]
                if [list(j) for j in every] != plan["jobs"]:
                    log.warning("the sweep's jobs are not those the preflight planned stacks for: "
                                "every job trains alone")
                else:
                    for stack in plan["stacks"]:
                        self._plan[stack["members"][0]] = stack
                        for i in stack["members"][1:]:
                            self._plan[i] = None  # trained by its stack's job
        return self._plan

    def get_job_batch(self) -> Sequence[Sequence[str]]:
        batch = BasicSweeper.get_job_batch(self)
        plan = self._load_plan()
        first, self._seen = self._seen, self._seen + len(batch)
        if not plan:
            return batch
        out: List[List[str]] = []
        for i, job in enumerate(batch, start=first):
            if i not in plan:
                out.append([*job, f"hydra.sweep.subdir={i}"])
            elif plan[i] is not None:
                out.append([*job, f"trainer.stack_members={plan[i]['file']}", f"hydra.sweep.subdir=stack{i}"])
        return out
