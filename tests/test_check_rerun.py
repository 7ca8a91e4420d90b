"""scripts/check_rerun.py: a committed run trained again is compared number by number with its
row in the study's CSV (real MNIST, a 40-step run of the quickstart study)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pandas as pd

from bnlab.analysis.frames import frame_from_store, write_csv
from bnlab.resolvers import REPO_ROOT

RUN = ["model.norm=batch", "seed=0", "trainer.max_steps=40", "trainer.eval_every=20"]


def _script():
    spec = importlib.util.spec_from_file_location("check_rerun", REPO_ROOT / "scripts" / "check_rerun.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_rerun_matches_its_committed_row_and_a_changed_number_is_named(mnist_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BNLAB_DATA", str(mnist_root))
    store, results = tmp_path / "store", tmp_path / "results"
    subprocess.run([sys.executable, "-m", "bnlab.train", "experiments=quickstart", *RUN, "hydra.mode=RUN",
                    f"paths.results={store}", "tracking.mode=disabled", "trainer.progress=false",
                    "trainer.num_threads=1"], check=True, cwd=REPO_ROOT, capture_output=True)
    csv = results / "quickstart" / "runs.csv"
    write_csv(frame_from_store(store), csv)
    check = _script().main

    assert check(["quickstart", *RUN, "--results", str(results)]) == 0
    assert "the same:" in capsys.readouterr().out

    committed = pd.read_csv(csv)
    committed["best/test/acc"] += 0.01
    committed.to_csv(csv, index=False)
    assert check(["quickstart", *RUN, "--results", str(results)]) == 1
    out = capsys.readouterr().out
    assert "best/test/acc: rerun" in out and "differ" in out

    # another seed is another config: refused, not compared with the wrong row
    assert check(["quickstart", *RUN[:1], "seed=1", *RUN[2:], "--results", str(results)]) == 2
    assert "no committed run of quickstart has this config" in capsys.readouterr().err
    assert check(["no_such_study", "--results", str(results)]) == 2


def test_a_run_trained_in_a_stack_is_rerun_in_its_stack_to_the_last_digit(mnist_root, tmp_path, capsys,
                                                                           monkeypatch):
    """A committed run that a sweep trained in a stack of three (env.engine: stacked) is trained
    again in the same stack (env.stack: its runs' overrides, in order), and every number
    matches its row. (Alone, or in a stack of one, its last digits differ: the stack's size
    changes the matmuls' blocking.)"""
    monkeypatch.setenv("BNLAB_DATA", str(mnist_root))
    store, results = tmp_path / "store", tmp_path / "results"
    subprocess.run([sys.executable, "-m", "bnlab.train", "-m", "experiments=quickstart", "model.norm=batch", "seed=0",
                    "optim.lr=0.1,0.5,1.0", "trainer.max_steps=40", "trainer.eval_every=20", "hydra/launcher=basic",
                    f"paths.results={store}", "tracking.mode=disabled", "trainer.progress=false",
                    "trainer.num_threads=1"], check=True, cwd=REPO_ROOT, capture_output=True)
    frame = frame_from_store(store)
    assert set(frame["env.engine"]) == {"stacked"} and len(frame) == 3
    write_csv(frame, results / "quickstart" / "runs.csv")
    run = ["model.norm=batch", "seed=0", "optim.lr=0.5", "trainer.max_steps=40", "trainer.eval_every=20"]
    assert _script().main(["quickstart", *run, "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "trained in a stack of 3" in out and "engine stacked); rerun" in out and "the same:" in out
