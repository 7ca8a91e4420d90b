"""Stacks through the launchers (issue 23): a sweep's compatible jobs train as one job of the
launcher and write ordinary run folders, skip and resume like any job, and a stack killed or
stopped mid-run and launched again ends exactly as the uninterrupted stack. Real MNIST, real
processes (python -m bnlab.train)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bnlab.checkpoint import CHECKPOINT_FILE, load_checkpoint
from bnlab.store import load_run
from conftest import data_root

SWEEP = ["-m", "optim.lr=0.1,0.5,1.0", "seed=0", "model.norm=batch"]


def _cli(results: Path, *args, wait=True):
    env = {**os.environ, "BNLAB_DATA": str(data_root())}
    flags = [a for a in args if a.startswith("-")]
    cmd = [sys.executable, "-m", "bnlab.train", *flags, f"paths.results={results}", "tracking.mode=disabled",
           "trainer.progress=false", "trainer.num_threads=1", *[a for a in args if a not in flags]]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return proc
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]
    return out


def _sweep_runs(results: Path, name: str = "default") -> dict[str, Path]:
    """job number -> run folder, of every sweep of the study"""
    return {p.parent.name: p.parent for p in (results / "runs" / name).rglob("run.json")}


def test_a_sweep_trains_its_compatible_jobs_as_one_stack_in_ordinary_run_folders(mnist_root, tmp_path):
    args = [*SWEEP, "trainer.max_steps=60", "trainer.eval_every=30", "hydra/launcher=basic"]
    dry = _cli(tmp_path, *args, "--dry-run")
    assert dry.count("[stack 0]") == 3 and "3 jobs train in 1 stacks of 3 runs" in dry
    _cli(tmp_path, *args)
    runs = _sweep_runs(tmp_path)
    assert sorted(runs) == ["0", "1", "2"], "each run in the folder of its job number"
    sweep = runs["0"].parent
    assert (sweep / "stack0").is_dir() and not (sweep / "stack0" / "run.json").exists()
    for job, lr in zip("012", (0.1, 0.5, 1.0)):
        record = json.loads((runs[job] / "run.json").read_text())
        assert record["config"]["optim"]["lr"] == lr and record["env"]["engine"] == "stacked"
        assert load_run(runs[job])["status"] == "completed"
    again = _cli(tmp_path, *args)  # all done: nothing stacks, every job skips
    assert "stack_members" not in again and len(_sweep_runs(tmp_path)) == 3
    # trainer.stack=1: each job alone (the same fingerprints: the key is not scientific)
    _cli(tmp_path / "alone", *args, "trainer.stack=1")
    alone = _sweep_runs(tmp_path / "alone")
    for job in "012":
        a, s = load_run(alone[job]), load_run(runs[job])
        assert a["fingerprint"] == s["fingerprint"]
        assert json.loads((alone[job] / "run.json").read_text())["env"]["engine"] == "single"
        assert a["test/acc"] == pytest.approx(s["test/acc"], abs=2e-4)  # a flipped image or two at most


STEPS = 3000
RESUME = [*SWEEP, "name=stackresume", f"trainer.max_steps={STEPS}", "trainer.eval_every=500",
          "optim.momentum=0.9", "hydra/launcher=basic"]


@pytest.fixture(scope="module")
def uninterrupted_stack(tmp_path_factory):
    where = tmp_path_factory.mktemp("whole")
    _cli(where, *RESUME)
    return {job: load_run(d) for job, d in _sweep_runs(where, "stackresume").items()}


def _wait_for_checkpoints(results: Path, step: int, proc, timeout=240) -> list[Path]:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        dirs = [m.parent for m in (results / "runs" / "stackresume").rglob("metrics.jsonl")]
        if len(dirs) == 3 and all((d / CHECKPOINT_FILE).exists() for d in dirs):
            last = [d / "metrics.jsonl" for d in dirs]
            if all(json.loads(m.read_text().splitlines()[-1])["step"] >= step for m in last):
                return dirs
        time.sleep(0.1)
    raise AssertionError(f"no checkpointed stack reached step {step} (rc {proc.poll()})")


@pytest.mark.slow  # ~1 min each: an uninterrupted stack beside a killed and resumed one
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_a_stack_killed_mid_run_and_relaunched_ends_as_the_uninterrupted_stack(mnist_root, tmp_path, sig,
                                                                              uninterrupted_stack):
    """The stack's runs are saved at one step, so a relaunch restacks them from their (ordinary)
    checkpoints; every final number equals the uninterrupted stack's exactly."""
    first = _cli(tmp_path, *RESUME, wait=False)
    dirs = _wait_for_checkpoints(tmp_path, STEPS // 3, first)
    first.send_signal(getattr(signal, sig))
    first.wait(timeout=60)
    assert first.returncode != 0
    saved = {load_checkpoint(d)["progress"]["step"] for d in dirs}
    assert len(saved) == 1 and 0 < next(iter(saved)) < STEPS - 300, "the stack's runs are saved at one step"
    out = _cli(tmp_path, *RESUME)
    assert "stack_members" in out, "the unfinished runs are stacked again"
    runs = _sweep_runs(tmp_path, "stackresume")
    assert len(runs) == 3, "resumed in their own folders, not trained afresh"
    for job, d in runs.items():
        summary, reference = load_run(d), uninterrupted_stack[job]
        assert summary["resumed_from_steps"] == sorted(saved)
        for key in ("test/acc", "test/loss", "val/acc", "train/loss", "best/val/acc", "best/step", "steps",
                    "steps_to_target", "status", "learned"):
            assert summary[key] == reference[key], (job, key)
        assert not (d / CHECKPOINT_FILE).exists()
