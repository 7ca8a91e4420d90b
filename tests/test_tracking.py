"""The W&B mirror, offline: no key, no network, no prompt, and the history holds the curves."""
import json
import os
import subprocess
import sys

from bnlab.tracking import flat_config, run_tags

from conftest import data_root


def test_flat_config_and_tags():
    cfg = {"name": "s", "claim": "lr", "tags": ["x"], "model": {"norm": "batch", "bn": {"eps": 1e-5}},
           "data": {"name": "mnist"}}
    flat = flat_config(cfg)
    assert flat["model.norm"] == "batch" and flat["model.bn.eps"] == 1e-5
    assert run_tags(cfg) == ["x", "claim:lr", "data:mnist", "norm:batch"]


def _keys(update) -> set:
    """Keys of a record's `update`: printed as a list of {key, value_json} or as a dict."""
    return {u["key"] for u in update} if isinstance(update, list) else set(update)


def _inspect(run_dir):
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "wandb"), "leet", "inspect",
                          "--json", str(run_dir)], capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_offline_run_records_history_without_key_network_or_prompt(mnist_root, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(BNLAB_DATA=str(data_root()), HOME=str(tmp_path / "home"))  # no ~/.netrc, no key
    proc = subprocess.run(
        [sys.executable, "-m", "bnlab.train", f"paths.results={tmp_path}", "name=wb",
         "tracking.mode=offline", "trainer.max_steps=100", "trainer.eval_every=50",
         "trainer.log_every=25", "model.norm=batch", "trainer.progress=false"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = tmp_path / "runs" / "wb"
    offline = list((study / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, "all of a study's W&B runs live in <study>/wandb"
    summary = json.loads(next(study.rglob("summary.json")).read_text())
    assert summary["wandb_dir"] == str(offline[0])

    records = _inspect(offline[0])
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    metrics = [json.loads(line) for line in next(study.rglob("metrics.jsonl")).read_text().splitlines()]
    assert [h["step"] for h in history] == [m["step"] for m in metrics] == [0, 25, 50, 75, 100]
    assert history[-1]["val/acc"] == metrics[-1]["val/acc"] and "samples" in history[-1]
    run = next(r["run"] for r in records if r["type"] == "run")
    assert run["run_group"] == "wb norm=batch" and run["job_type"] == "lr=0.5", "grouped by study and arm"
    assert run["display_name"] == "wb norm=batch lr=0.5 seed=0" and run["run_id"].startswith("batch-s0-lr0.5-")
    assert "norm:batch" in run["tags"] and "data:mnist" in run["tags"]
    config_keys = _keys(run["config"]["update"])
    assert {"model.norm", "optim.lr", "init.std", "seed", "study", "launch", "code_version"} <= config_keys
    assert not any(k.startswith("paths.") or k == "data.root" for k in config_keys), "no machine paths"
    summary_keys = set()
    for r in records:
        if r["type"] == "summary":
            summary_keys |= _keys(r["summary"].get("update", []))
    assert {"status", "best/val/acc", "test/acc", "steps_to_target"} <= summary_keys
    assert any(r["type"] == "exit" for r in records), "the W&B run was finished"
