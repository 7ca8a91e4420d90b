"""Runs compared without an account, on one small offline ad-hoc sweep (model.norm=none,batch
x seed=0,1, 30 steps, real MNIST): the W&B offline runs say what they are where `wandb leet`
looks (readable folder ids, display name, group, job type, config, summary) and live in a W&B
folder of their own ad-hoc name; `bnlab-status --compare` puts the two norms side by side."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bnlab.status import main as status_main
from bnlab.tracking import run_names

from conftest import data_root


@pytest.fixture(scope="module")
def adhoc_sweep(tmp_path_factory):
    """The 2x2 sweep, trained once for the module, W&B offline with everything under tmp."""
    tmp = tmp_path_factory.mktemp("dashboard")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(BNLAB_DATA=str(data_root()), HOME=str(tmp / "home"), WANDB_DIR=str(tmp / "wandb_env"),
               WANDB_CACHE_DIR=str(tmp / "wandb_cache"), WANDB_CONFIG_DIR=str(tmp / "wandb_config"))
    proc = subprocess.run(
        [sys.executable, "-m", "bnlab.train", "-m", f"paths.results={tmp}", "tracking.mode=offline",
         "trainer.max_steps=30", "trainer.eval_every=30", "trainer.log_every=10", "trainer.progress=false",
         "model.norm=none,batch", "seed=0,1", "hydra.launcher.n_jobs=1"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "runs" / "default"


def _records(run_dir: Path) -> list[dict]:
    """The run's .wandb log read back by wandb's own reader (`wandb leet inspect --json`)."""
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "wandb"), "leet", "inspect",
                          "--json", str(run_dir)], capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def _values(update) -> dict:
    """A config or summary `update`: a list of {key, value_json} or a dict."""
    if isinstance(update, list):
        return {u["key"]: json.loads(u["value_json"]) for u in update}
    return dict(update)


def test_offline_runs_carry_their_name_group_and_config_in_a_folder_per_ad_hoc_name(adhoc_sweep):
    wandb_dir = adhoc_sweep / "mnist-mlp" / "wandb"
    assert not (adhoc_sweep / "wandb").exists(), "ad-hoc runs are filed by dataset and model, not under default/"
    folders = sorted(wandb_dir.glob("offline-run-*"))
    assert len(folders) == 4
    seen = {}
    for folder in folders:
        records = _records(folder)
        run = next(r["run"] for r in records if r["type"] == "run")
        config = _values(run["config"]["update"])
        norm, seed = config["model.norm"], config["seed"]
        # what `wandb leet` lists is the folder: its id says the run
        assert folder.name.endswith(run["run_id"]) and run["run_id"].startswith(f"{norm}-s{seed}-lr0.5-")
        assert run["display_name"] == f"mnist-mlp norm={norm} lr=0.5 seed={seed}"
        assert run["run_group"] == f"mnist-mlp norm={norm}" and run["job_type"] == "lr=0.5"
        assert f"norm:{norm}" in run["tags"] and "data:mnist" in run["tags"]
        assert config["study"] == "mnist-mlp" and config["optim.lr"] == 0.5
        assert config["launch"].startswith("multirun_"), "filter by the sweep a run belongs to"
        summary = {}
        for r in records:
            if r["type"] == "summary":
                summary.update(_values(r["summary"].get("update", [])))
        assert summary["status"] == "completed" and 0 <= summary["best/val/acc"] <= 1
        seen[(norm, seed)] = run["run_id"]
    assert set(seen) == {("none", 0), ("none", 1), ("batch", 0), ("batch", 1)}
    # the run store itself keeps its layout: the sweep under runs/default/
    assert len(list(adhoc_sweep.glob("multirun_*/*/summary.json"))) == 4


def test_compare_prints_one_row_per_norm_with_two_seeds_and_an_interval(adhoc_sweep, capsys):
    status_main([str(adhoc_sweep), "--compare"])
    lines = capsys.readouterr().out.splitlines()
    # first what was read (sweep progress, the one loader's source line), then the comparison
    assert any(ln.startswith("default: 4 runs from the folder") for ln in lines), lines
    lines = lines[next(i for i, ln in enumerate(lines) if "grouped by model.norm;" in ln):]
    assert "2 seed(s)" in lines[0]
    header, rows = lines[1].split(), lines[2:]
    assert header[:8] == ["model.norm", "runs", "n", "completed", "diverged", "failed", "incomplete", "not"]
    assert len(rows) == 2, "one row per norm: the seed is averaged over"
    by_norm = {row.split()[0]: row for row in rows}
    assert set(by_norm) == {"batch", "none"}
    for row in by_norm.values():
        words = row.split()
        assert words[1:4] == ["2", "2", "2"], "2 runs, 2 finished, 2 completed"
        assert "[" in row and "]" in row, "mean [95% interval] over the two seeds"
    # the batch arm's best val/acc: the mean of its two runs' summaries, inside its interval
    best = [json.loads(f.read_text())["best/val/acc"] for f in adhoc_sweep.glob("multirun_*/*/summary.json")
            if json.loads((f.parent / "run.json").read_text())["config"]["model"]["norm"] == "batch"]
    intervals = re.findall(r"(-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]", by_norm["batch"])
    mean, low, high = map(float, intervals[1])  # final val/acc, best val/acc, ...
    assert len(best) == 2 and mean == pytest.approx(sum(best) / 2, rel=1e-3) and low < mean < high


def test_run_names_include_every_swept_key_and_keep_the_seed_out_of_group_and_job_type():
    config = {"name": "lr_mnist", "data": {"name": "mnist"}, "seed": 3,
              "model": {"name": "mlp", "norm": "batch", "widths": [50, 50], "bn": {"eps": 1e-5},
                        "ln": {"eps": 1e-5}},
              "optim": {"lr": 0.25}, "analysis": {"arm_key": "model.norm"}}
    names = run_names(config, "model.norm=batch optim.lr=0.25 model.widths=[50,50] model.bn.eps=1e-5 "
                              "model.ln.eps=1e-5 seed=3")
    assert names["name"] == ("lr_mnist norm=batch lr=0.25 widths=[50,50] model.bn.eps=1e-05 "
                             "model.ln.eps=1e-05 seed=3"), "keys that would read the same stay whole"
    assert names["group"] == "lr_mnist norm=batch"
    assert names["job_type"] == "lr=0.25 widths=[50,50] model.bn.eps=1e-05 model.ln.eps=1e-05"
    assert names["id_prefix"].startswith("batch-s3-lr0.25-widths5050")
    assert not set(names["id_prefix"]) - set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    # a single run (no label) is named by its arm, learning rate and seed; ad-hoc by data and model
    single = run_names({**config, "name": "default"})
    assert single["name"] == "mnist-mlp norm=batch lr=0.25 seed=3" and single["job_type"] == "lr=0.25"
