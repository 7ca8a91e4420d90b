"""The shared trainer on real MNIST: it learns, logs the right fields, is deterministic,
records divergence as a result, and records failures."""
import json
import math

import pytest

import bnlab.train as train_mod
from bnlab.store import load_run, read_metrics
from bnlab.train import run

REQUIRED = {"step", "samples", "time_s", "lr"}


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_a_few_hundred_steps_clearly_learn(mnist_root, cfg_factory, tmp_path, norm):
    cfg = cfg_factory(f"model.norm={norm}", "trainer.max_steps=400", "trainer.eval_every=200",
                      "trainer.log_every=50")
    s = run(cfg, tmp_path / "run")
    assert s["status"] == "completed" and s["steps"] == 400
    # chance is 10%; 400 steps of batch 60 (< half an epoch) already reach far above it
    assert s["val/acc"] > 0.85 and s["test/acc"] > 0.85
    assert s["train/loss"] < 0.7
    recs = _records(tmp_path / "run")
    assert [r["step"] for r in recs if "val/acc" in r] == [0, 200, 400]
    assert recs[0]["val/acc"] < 0.3  # the untrained net is near chance
    train_recs = [r for r in recs if "train/loss" in r]
    assert [r["step"] for r in train_recs] == list(range(50, 401, 50))
    assert train_recs[-1]["train/loss"] < train_recs[0]["train/loss"]


def test_every_record_carries_step_samples_time_lr(mnist_root, cfg_factory, tmp_path):
    for norm in ("batch", "none"):
        run(cfg_factory(f"model.norm={norm}", "optim.lr=0.25"), tmp_path / norm)
    keys = {}
    for norm in ("batch", "none"):
        recs = _records(tmp_path / norm)
        for r in recs:
            assert REQUIRED <= r.keys()
            assert r["samples"] == r["step"] * 60 and r["lr"] == 0.25
        times = [r["time_s"] for r in recs]
        assert times == sorted(times) and times[0] == 0
        keys[norm] = set().union(*recs)
    assert keys["batch"] == keys["none"], "both arms log the same fields through the same code path"
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc"} <= keys["none"]


def test_activation_percentile_probe(mnist_root, cfg_factory, tmp_path):
    run(cfg_factory("model.norm=batch"), tmp_path / "r")
    evals = [r for r in _records(tmp_path / "r") if "val/acc" in r]
    for r in evals:
        for u in (0, 1, 2):
            p15, p50, p85 = (r[f"probe/act_in/u{u}/p{p}"] for p in (15, 50, 85))
            assert p15 < p50 < p85
    assert evals[0]["probe/act_in/u0/p50"] != evals[-1]["probe/act_in/u0/p50"]  # it moves in training


def test_same_seed_gives_identical_metrics_on_cpu(mnist_root, cfg_factory, tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run(cfg_factory("model.norm=batch", f"seed={seed}", "model.dropout=0.1"), tmp_path / name)
    strip = lambda df: df.drop(columns=["time_s"])  # noqa: E731
    a, b, c = (strip(read_metrics(tmp_path / n)) for n in "abc")
    assert a.equals(b)
    assert not a.equals(c)


def test_huge_learning_rate_is_a_diverged_result(mnist_root, cfg_factory, tmp_path):
    s = run(cfg_factory("model.norm=none", "optim.lr=1000", "trainer.max_steps=2000"), tmp_path / "r")
    assert s["status"] == "diverged" and s["steps"] < 2000 and s["diverged_at_step"] == s["steps"]
    assert load_run(tmp_path / "r")["status"] == "diverged"
    assert s["test/acc"] < 0.3  # the broken model was still evaluated


def test_non_finite_loss_is_diverged_not_a_crash(mnist_root, cfg_factory, tmp_path):
    s = run(cfg_factory("model.activation=relu", "init.std=1e20"), tmp_path / "r")
    assert s["status"] == "diverged" and s["steps"] == 25
    recs = _records(tmp_path / "r")
    assert recs[-1]["train/loss"] is None or not math.isfinite(recs[-1]["train/loss"])


def test_summary_holds_the_contracted_fields(mnist_root, cfg_factory, tmp_path):
    s = run(cfg_factory(), tmp_path / "r")
    on_disk = json.loads((tmp_path / "r" / "summary.json").read_text())
    for key in ("status", "steps", "wall_time_s", "step_time_ms", "val/acc", "test/acc", "test/loss",
                "train/loss", "best/val/acc", "best/step", "params", "fingerprint"):
        assert key in on_disk, key
    assert on_disk["status"] == s["status"] == "completed"
    assert on_disk["best/val/acc"] >= on_disk["val/acc"] and on_disk["best/step"] in (0, 25, 50)
    assert on_disk["step_time_ms"] > 0 and on_disk["wall_time_s"] >= on_disk["train_time_s"]
    start = json.loads((tmp_path / "r" / "run.json").read_text())
    env = start["env"]
    for key in ("python", "torch", "device", "git_commit"):
        assert key in env
    assert env["device"] == "cpu" and start["config"]["model"]["norm"] == "none"


def test_a_crash_is_recorded_as_failed_and_reraised(mnist_root, cfg_factory, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(train_mod, "train", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg_factory(), tmp_path / "r")
    row = load_run(tmp_path / "r")
    assert row["status"] == "failed" and "simulated crash" in row["error"]


def test_gradient_ics_probe_leaves_training_untouched(mnist_root, cfg_factory, tmp_path):
    run(cfg_factory("model.norm=batch", "model.dropout=0.1"), tmp_path / "plain")
    run(cfg_factory("model.norm=batch", "model.dropout=0.1", "probes.grad_ics.enabled=true",
                    "probes.grad_ics.batch_size=200"), tmp_path / "probed")
    plain, probed = read_metrics(tmp_path / "plain"), read_metrics(tmp_path / "probed")
    ics_cols = [c for c in probed if c.startswith("probe/grad_ics/")]
    assert sorted(ics_cols) == sorted(f"probe/grad_ics/l{i}/{m}" for i in (1, 2, 3) for m in ("l2", "rel", "cos"))
    assert probed.drop(columns=ics_cols + ["time_s"]).equals(plain.drop(columns=["time_s"]))
    evals = probed.dropna(subset=["probe/grad_ics/l1/cos"])
    assert ((evals.filter(like="/cos") <= 1 + 1e-6) & (evals.filter(like="/cos") >= -1 - 1e-6)).all().all()
    assert (evals.filter(like="/rel") > 0).all().all()


def test_gradient_ics_is_zero_when_earlier_layers_do_not_move():
    import torch
    from hydra import compose, initialize_config_dir
    from bnlab.models import build_model
    from bnlab.probes import GradientICSProbe
    from bnlab.resolvers import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        m = compose("config", overrides=["model.norm=batch", "model.widths=[8,8]"]).model
    torch.manual_seed(0)
    model = build_model(m, (1, 4, 4), 3)
    x, y = torch.randn(32, 1, 4, 4), torch.randint(0, 3, (32,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    still = GradientICSProbe(x, y, lr=0.0).measure(model)
    assert all(still[f"probe/grad_ics/l{i}/l2"] == 0 for i in (1, 2))
    assert all(abs(still[f"probe/grad_ics/l{i}/cos"] - 1) < 1e-6 for i in (1, 2))
    moved = GradientICSProbe(x, y, lr=1.0).measure(model)
    assert moved["probe/grad_ics/l2/l2"] > 0 and moved["probe/grad_ics/l2/cos"] < 1
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights and BN statistics restored"
