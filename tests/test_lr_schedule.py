"""The optimizer's step schedule (optim.lr_milestones, optim.lr_gamma): He et al.'s ResNet
schedule for the GPU profile. The rate is a function of the step alone, so a resumed run
continues on the same schedule, and a constant rate (the default) leaves training untouched."""
import json

import pytest

from bnlab.config import validate
from bnlab.errors import ConfigError
from bnlab.optimizers import lr_at
from bnlab.runner import run
from bnlab.store import fingerprint, resolved_config

from test_checkpoint import STATEFUL, TIMING, Killed, _kill_at, _untimed


def test_the_rate_drops_after_each_milestone():
    rates = [lr_at(s, 0.1, [32000, 48000], 0.1) for s in (1, 32000, 32001, 48000, 48001, 64000)]
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert lr_at(5, 0.3, [], 0.1) == 0.3


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_run_logs_the_scheduled_rate_and_a_constant_one_is_the_old_run(mnist_root, cfg_factory, tmp_path):
    base = ["trainer.max_steps=50", "trainer.log_every=10", "trainer.eval_every=50", "optim.lr=0.4"]
    run(cfg_factory(*base, "optim.lr_milestones=[20,40]", "optim.lr_gamma=0.5"), tmp_path / "stepped")
    logged = {r["step"]: r["lr"] for r in _records(tmp_path / "stepped") if "train/loss" in r}
    assert logged == pytest.approx({10: 0.4, 20: 0.4, 30: 0.2, 40: 0.2, 50: 0.1})
    # the default (no milestones) is the run made before the schedule existed: same identity
    assert fingerprint(resolved_config(cfg_factory(*base))) == \
        fingerprint(resolved_config(cfg_factory(*base, "optim.lr_milestones=[]", "optim.lr_gamma=0.1")))
    assert fingerprint(resolved_config(cfg_factory(*base))) != \
        fingerprint(resolved_config(cfg_factory(*base, "optim.lr_milestones=[20]")))


def test_a_run_resumed_after_a_milestone_ends_as_if_never_stopped(mnist_root, cfg_factory, tmp_path, monkeypatch):
    from bnlab.checkpoint import find_resumable

    cfg = cfg_factory(*STATEFUL, "optim.lr_milestones=[60,100]", "trainer.checkpoint.every_s=1e-9")
    whole = run(cfg, tmp_path / "whole")
    _kill_at(monkeypatch, 70)
    with pytest.raises(Killed):
        run(cfg, tmp_path / "broken")
    monkeypatch.undo()
    found, state = find_resumable(tmp_path, fingerprint(resolved_config(cfg)))
    resumed = run(cfg, found, resume_from=state)
    assert {k: v for k, v in resumed.items() if k not in TIMING} == {k: v for k, v in whole.items() if k not in TIMING}
    assert _untimed(_records(found)) == _untimed(_records(tmp_path / "whole"))


@pytest.mark.parametrize("milestones", ["[40,20]", "[0]", "[20,20]", "[1.5]"])
def test_bad_milestones_are_one_line_before_training(cfg_factory, milestones):
    with pytest.raises(ConfigError) as e:
        validate(cfg_factory(f"optim.lr_milestones={milestones}"))
    assert e.value.key == "optim.lr_milestones" and "increasing positive steps" in str(e.value)
