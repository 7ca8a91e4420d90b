"""The shared trainer on real MNIST: it learns, logs the right fields, is deterministic,
records divergence as a result, and records failures."""
import json
import math
import re

import pytest

import bnlab.runner as train_mod
from bnlab.store import load_run, read_metrics
from bnlab.runner import run

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


def test_activation_percentile_probe_covers_every_hidden_layer(mnist_root, cfg_factory, tmp_path):
    run(cfg_factory("model.norm=batch"), tmp_path / "r")
    evals = [r for r in _records(tmp_path / "r") if "val/acc" in r]
    for r in evals:
        for b in (0, 1, 2):
            for u in (0, 1, 2):
                p15, p50, p85 = (r[f"probe/act_in/b{b}/u{u}/p{p}"] for p in (15, 50, 85))
                assert p15 < p50 < p85
    assert evals[0]["probe/act_in/b2/u0/p50"] != evals[-1]["probe/act_in/b2/u0/p50"]  # it moves in training


def test_activation_probe_has_no_step0_artifact(mnist_root, cfg_factory, tmp_path):
    """At step 0 a BN layer (scale 1, shift 0) hands its activation a standardized input:
    median near 0, 15th/85th percentiles near -1/+1 — not the raw pre-activation that eval
    mode with initial running statistics would show. And the probe changes nothing."""
    run(cfg_factory("model.norm=batch", "init.std=1.0"), tmp_path / "r")
    first = _records(tmp_path / "r")[0]
    for b in (0, 1, 2):
        assert abs(first[f"probe/act_in/b{b}/u0/p50"]) < 0.3
        assert -1.4 < first[f"probe/act_in/b{b}/u0/p15"] < -0.6 < 0.6 < first[f"probe/act_in/b{b}/u0/p85"] < 1.4
    run(cfg_factory("model.norm=batch", "init.std=1.0", "probes.act_input.enabled=false"), tmp_path / "off")
    on, off = read_metrics(tmp_path / "r"), read_metrics(tmp_path / "off")
    probe_cols = [c for c in on if c.startswith("probe/")]
    assert on.drop(columns=probe_cols + ["time_s"]).equals(off.drop(columns=["time_s"]))


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
    assert s["learned"] is False
    assert load_run(tmp_path / "r")["status"] == "diverged"
    assert s["test/acc"] < 0.3  # the broken model was still evaluated
    evals = [r for r in _records(tmp_path / "r") if "val/acc" in r]
    assert evals[-1]["step"] == s["steps"]
    assert s["best/step"] != s["steps"], "the evaluation where the run was stopped is never its best"


def test_a_falling_loss_from_a_huge_init_is_not_divergence(mnist_root, cfg_factory, tmp_path):
    """N(0, 10^2) weights start the no-BN net at a loss of hundreds; it falls. Judged against
    its own starting loss, and never while falling, it is not "diverged"."""
    s = run(cfg_factory("model.norm=none", "init.std=10", "trainer.max_steps=600", "trainer.log_every=100",
                        "trainer.eval_every=300"), tmp_path / "r")
    assert s["initial_loss"] > 50
    assert s["status"] == "completed" and s["steps"] == 600
    losses = [r["train/loss"] for r in _records(tmp_path / "r") if "train/loss" in r]
    assert losses[-1] < losses[0] < s["initial_loss"]


def test_a_run_stuck_at_chance_did_not_learn(mnist_root, cfg_factory, tmp_path):
    """A sigmoid MLP at lr 30 saturates: finite loss, chance accuracy. Completed, not learned."""
    s = run(cfg_factory("model.norm=none", "optim.lr=30", "trainer.max_steps=400", "trainer.log_every=100",
                        "trainer.eval_every=200"), tmp_path / "r")
    assert s["status"] == "completed" and s["learned"] is False
    assert s["best/val/acc"] < 0.3
    ok = run(cfg_factory("model.norm=none", "trainer.max_steps=400", "trainer.eval_every=200"), tmp_path / "ok")
    assert ok["learned"] is True


def test_early_evaluations_resolve_steps_to_target(mnist_root, cfg_factory, tmp_path):
    s = run(cfg_factory("model.norm=batch", "optim.lr=2.0", "trainer.max_steps=600", "trainer.eval_every=300",
                        "trainer.eval_every_early=50", "trainer.early_steps=300", "data.target_val_acc=0.8"),
            tmp_path / "r")
    steps = [r["step"] for r in _records(tmp_path / "r") if "val/acc" in r]
    assert steps == [0, 50, 100, 150, 200, 250, 300, 600]
    assert s["steps_to_target"] is not None and s["steps_to_target"] % 50 == 0 and s["steps_to_target"] <= 300


def test_paired_arms_share_weights_batches_and_dropout_masks(mnist_root, cfg_factory, tmp_path, monkeypatch):
    """Same seed, norm none vs batch: same initial weights in every shared layer, same first
    batch, same dropout masks; only the norm layer (and the bias it makes redundant) differs."""
    import torch
    from torch import nn

    seen = {}
    real_train = train_mod.train_group

    def spy(loops, *args, **kw):
        (loop,) = loops
        model = loop.model
        norm = "batch" if any(isinstance(m, nn.BatchNorm1d) for m in model.modules()) else "none"
        seen[norm] = {"weights": [l.weight.detach().clone() for l in model.weight_layers], "masks": []}
        hooks = [m.register_forward_hook(lambda _m, _i, out: seen[norm]["masks"].append((out == 0).clone())
                                         if model.training else None)
                 for m in model.modules() if isinstance(m, nn.Dropout)]
        try:
            return real_train(loops, *args, **kw)
        finally:
            for h in hooks:
                h.remove()

    monkeypatch.setattr(train_mod, "train_group", spy)
    for norm in ("none", "batch"):
        run(cfg_factory(f"model.norm={norm}", "model.dropout=0.2", "seed=4", "probes.act_input.enabled=false",
                        "trainer.max_steps=3"), tmp_path / norm)
    a, b = seen["none"], seen["batch"]
    assert all(torch.equal(x, y) for x, y in zip(a["weights"], b["weights"]))
    assert len(a["masks"]) == len(b["masks"]) == 9  # 3 steps x 3 dropout layers
    assert all(torch.equal(x, y) for x, y in zip(a["masks"], b["masks"]))
    assert load_run(tmp_path / "batch")["paired"] == 1


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
    for key in ("python", "torch", "device", "git_commit", "code_version"):
        assert key in env
    assert env["device"] == "cpu" and start["config"]["model"]["norm"] == "none"


def test_the_code_version_changes_with_the_training_code_only(tmp_path):
    """A hash of the training files' contents: commits of docs or analysis code, and edits
    to them, leave it alone; any edit to the training code (committed or not) changes it,
    and undoing the edit gives the old version back. Checked in a scratch clone."""
    import shutil
    import subprocess

    from bnlab import environment
    from bnlab.resolvers import REPO_ROOT

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{REPO_ROOT}", str(clone)], check=True)
    git = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@t"]
    try:
        clean = environment.code_version(clone)
        assert clean and len(clean) == 12 and int(clean, 16) >= 0
        (clone / "README.md").write_text("edited")
        for analysis in (clone / "bnlab" / "analysis" / "verdicts.py", clone / "bnlab" / "views" / "report.py"):
            analysis.write_text(analysis.read_text() + "\n# an analysis edit\n")
        subprocess.run([*git, "commit", "-qam", "docs and analysis"], check=True)
        assert environment.code_version(clone) == clean, "a commit of docs or analysis is not new training code"
        trainer = clone / "bnlab" / "trainer.py"
        original = trainer.read_text()
        trainer.write_text(original + "\n# an edit\n")
        edited = environment.code_version(clone)
        assert edited != clean and environment.code_version(clone) == edited
        subprocess.run([*git, "commit", "-qam", "training edit"], check=True)
        assert environment.code_version(clone) == edited, "committing an edit does not change the version"
        trainer.write_text(original)
        assert environment.code_version(clone) == clean, "the same training code is the same version"
        (clone / "bnlab" / "new_module.py").write_text("x = 1\n")
        assert environment.code_version(clone) not in (clean, edited)
        (clone / "bnlab" / "new_module.py").unlink()
        (clone / "conf" / "trainer" / "default.yaml").write_text("max_steps: 1\n")
        assert environment.code_version(clone) != clean, "config defaults are training code"
    finally:
        shutil.rmtree(clone, ignore_errors=True)


def test_a_crash_is_recorded_as_failed_and_reraised(mnist_root, cfg_factory, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(train_mod, "train_group", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg_factory(), tmp_path / "r")
    row = load_run(tmp_path / "r")
    assert row["status"] == "failed" and "simulated crash" in row["error"]


def test_gradient_ics_probe_leaves_training_untouched(mnist_root, cfg_factory, tmp_path):
    run(cfg_factory("model.norm=batch", "model.dropout=0.1", "optim.momentum=0.9"), tmp_path / "plain")
    run(cfg_factory("model.norm=batch", "model.dropout=0.1", "optim.momentum=0.9", "probes.grad_ics.enabled=true"),
        tmp_path / "probed")
    plain, probed = read_metrics(tmp_path / "plain"), read_metrics(tmp_path / "probed")
    ics_cols = [c for c in probed if c.startswith("probe/grad_ics/")]
    assert sorted(ics_cols) == sorted(f"probe/grad_ics/l{i}/{m}" for i in (1, 2, 3) for m in ("l2", "rel", "cos"))
    assert probed.drop(columns=ics_cols + ["time_s"]).equals(plain.drop(columns=["time_s"]))
    evals = probed.dropna(subset=["probe/grad_ics/l1/cos"])
    assert list(evals["step"]) == [25, 50], "measured inside the evaluation steps"
    assert ((evals.filter(like="/cos") <= 1 + 1e-6) & (evals.filter(like="/cos") >= -1 - 1e-6)).all().all()
    assert (evals.filter(like="/l2") > 0).all().all()


TINY_MODELS = {  # model: (overrides, input shape, weight layers)
    "mlp": (["model.widths=[8,8]"], (1, 8, 8), 3),
    "cnn": (["model=cnn", "model.channels=[4,4]", "model.widths=[8,8]"], (1, 8, 8), 5),
    "vgg": (["model=vgg", "model.width_multiplier=0.0625"], (3, 32, 32), 9),
    "resnet20": (["model=resnet20", "model.width=4"], (3, 8, 8), 20),
}


def _tiny(norm="batch", kind="mlp"):
    import torch
    from hydra import compose, initialize_config_dir
    from bnlab.models import build_model
    from bnlab.rng import seed_noise
    from bnlab.resolvers import CONF_DIR

    extra, shape, _ = TINY_MODELS[kind]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        m = compose("config", overrides=[*extra, f"model.norm={norm}", "model.dropout=0.2"]).model
    torch.manual_seed(0)
    model = build_model(m, shape, 3)
    seed_noise(model, 0)
    x, y = torch.randn(32, *shape), torch.randint(0, 3, (32,))
    return model, x, y


def _same_state(a: dict, b: dict) -> bool:
    """Two noise layers' extra states (seed and generator state) are the same."""
    import torch

    ga, gb = a["generator"], b["generator"]
    return a["seed"] == b["seed"] and (ga is None and gb is None or torch.equal(ga, gb))


def _probe_step(model, optimizer, x, y, snapshot=lambda: None):
    """A training step's forward and backward, then the probe (as the trainer does);
    `snapshot` is called just before the probe."""
    import torch.nn.functional as F
    from bnlab.probes import GradientICSProbe
    from bnlab.rng import rng_state

    state = rng_state(x.device, model)
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    snap = snapshot()
    return GradientICSProbe().measure_step(model, optimizer, x, y, state), snap


@pytest.mark.parametrize("kind,norm", [("mlp", "batch"), ("cnn", "batch"), ("vgg", "batch"),
                                       ("resnet20", "batch"), ("mlp", "noisy_batch"), ("resnet20", "none")])
def test_gradient_ics_uses_the_optimizers_own_step_and_restores_everything(kind, norm):
    import torch

    model, x, y = _tiny(norm, kind)
    still = torch.optim.SGD(model.parameters(), lr=0.0)
    out, _ = _probe_step(model, still, x, y)
    n_layers = len(model.weight_layers)
    assert n_layers == TINY_MODELS[kind][2], "conv layers are measured too"
    assert set(out) == {f"probe/grad_ics/l{i}/{m}" for i in range(1, n_layers) for m in ("l2", "rel", "cos")}
    assert all(out[f"probe/grad_ics/l{i}/l2"] == 0 for i in range(1, n_layers)), \
        "no update before layer i (lr 0) and the same dropout masks: G' = G exactly"
    # (a layer whose gradient is 0 has no cosine: SkipInit's branches start with alpha = 0)
    assert all(abs(out[f"probe/grad_ics/l{i}/cos"] - 1) < 1e-6 for i in range(1, n_layers)
               if out[f"probe/grad_ics/l{i}/rel"] == out[f"probe/grad_ics/l{i}/rel"])

    for opt in (torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3),
                torch.optim.Adam(model.parameters(), lr=0.01)):
        # one real step first, so momentum / Adam moments exist and must be restored
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

        def snapshot():
            return ({k: v.clone() if torch.is_tensor(v) else v for k, v in model.state_dict().items()},
                    {k: {n: t.clone() if torch.is_tensor(t) else t for n, t in s.items()}
                     for k, s in opt.state_dict()["state"].items()},
                    [p.grad.clone() for p in model.parameters()], torch.get_rng_state())

        out, (before, opt_before, grads, rng) = _probe_step(model, opt, x, y, snapshot)
        assert out[f"probe/grad_ics/l{n_layers - 1}/l2"] > 0 and out["probe/grad_ics/l1/cos"] < 1
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) if torch.is_tensor(before[k]) else
                   _same_state(before[k], after[k]) for k in before), "weights, BN statistics, noise restored"
        for k, s in opt.state_dict()["state"].items():
            for n, t in s.items():
                assert torch.equal(torch.as_tensor(t), torch.as_tensor(opt_before[k][n])), (k, n)
        assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads)), "G left for the real step"
        assert torch.equal(torch.get_rng_state(), rng), "the random stream goes on as without the probe"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_stopped_run_is_failed_with_the_reason(mnist_root, tmp_path, sig):
    """A scheduler's SIGTERM or a Ctrl-C ends the run as `failed`, reason recorded, not `incomplete`."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "BNLAB_DATA": str(mnist_root)}
    proc = subprocess.Popen([sys.executable, "-m", "bnlab.train", f"paths.results={tmp_path}", "name=stop",
                             "tracking.mode=disabled", "trainer.progress=false", "trainer.max_steps=200000"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            # a test run started in the background (`nohup pytest &`) inherits an
                            # ignored SIGINT, which Python then keeps: give the run Ctrl-C's default
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.rglob("metrics.jsonl")):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(getattr(signal, sig))
    proc.wait(timeout=60)
    run_dir = next(tmp_path.rglob("run.json")).parent
    row = load_run(run_dir)
    assert row["status"] == "failed"
    assert ("SIGTERM" in row["error"]) if sig == "SIGTERM" else ("KeyboardInterrupt" in row["error"])
    assert proc.returncode != 0
    if sig == "SIGTERM":  # one line that says what happened and what to do, no traceback
        err = proc.stderr.read()
        assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err
        assert "bnlab-train: stopped by SIGTERM: the run is recorded as failed, with a checkpoint" in err


@pytest.mark.parametrize("kind,norm", [("mlp", "batch"), ("cnn", "none"), ("resnet20", "noisy_batch")])
def test_landscape_probe_measures_along_the_gradient_and_restores_everything(kind, norm):
    import math

    import torch

    from bnlab.probes import LandscapeProbe

    model, x, y = _tiny(norm, kind)
    probe = LandscapeProbe(x, y, lr=0.1, low=0.5, high=4.0, points=4)
    assert [round(e, 6) for e in probe.etas] == [0.05, 0.1, 0.2, 0.4], "a geometric grid over [1/2, 4] x lr"
    model.train()
    torch.nn.functional.cross_entropy(model(x), y).backward()  # a gradient the probe must leave alone
    before = {k: v.clone() if torch.is_tensor(v) else v for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    out = probe.measure(model)
    assert set(out) == {"probe/landscape/loss_range", "probe/landscape/grad_range", "probe/landscape/beta"}
    assert out["probe/landscape/loss_range"] > 0 and out["probe/landscape/grad_range"] >= 0
    assert math.isfinite(out["probe/landscape/beta"]) and out["probe/landscape/beta"] > 0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) if torch.is_tensor(before[k]) else _same_state(before[k], after[k])
               for k in before), "weights, BN statistics and noise restored"
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert torch.equal(torch.get_rng_state(), rng) and model.training


def test_a_run_with_the_landscape_probe_trains_exactly_like_one_without(mnist_root, cfg_factory, tmp_path):
    base = ["model.norm=batch", "model.dropout=0.1", "trainer.max_steps=50", "trainer.eval_every=25"]
    plain = run(cfg_factory(*base), tmp_path / "a")
    probed = run(cfg_factory(*base, "probes.landscape.enabled=true", "probes.landscape.batch_size=64"),
                 tmp_path / "b")
    for key in ("train/loss", "val/acc", "test/acc", "best/val/acc"):
        assert plain[key] == probed[key], key
    curve = read_metrics(tmp_path / "b")
    assert curve["probe/landscape/beta"].notna().sum() == 3, "at every evaluation (0, 25, 50)"


def test_eval_train_measures_the_train_test_gap_without_changing_training(mnist_root, cfg_factory, tmp_path):
    """trainer.eval_train evaluates training images in eval mode (dropout off, BN on its
    running statistics) at every evaluation; training itself is bit-for-bit the same, and the
    frame's best/gap is that accuracy minus test accuracy at the best-validation evaluation."""
    from bnlab.analysis.frames import frame_from_store

    base = ["model.norm=batch", "model.dropout=0.5", "data.train_subset=300", "trainer.max_steps=300",
            "trainer.eval_every=100", "optim.lr=1.0"]
    plain = run(cfg_factory(*base), tmp_path / "runs" / "a")
    measured = run(cfg_factory(*base, "trainer.eval_train=300"), tmp_path / "runs" / "b")
    for key in ("train/loss", "val/acc", "test/acc", "best/val/acc", "best/step"):
        assert plain[key] == measured[key], key
    assert "best/train_eval/acc" not in plain
    curve = read_metrics(tmp_path / "runs" / "b")
    assert curve["train_eval/acc"].notna().sum() == 4, "at every evaluation (0, 100, 200, 300)"
    # 300 images seen 60 times: the net fits them better than unseen test images
    assert measured["best/train_eval/acc"] > measured["best/test/acc"] + 0.02
    frame = frame_from_store(tmp_path / "runs").set_index("cfg.trainer.eval_train")
    assert frame.loc[300, "best/gap"] == pytest.approx(measured["best/train_eval/acc"] - measured["best/test/acc"])


def test_eval_train_beyond_the_training_images_is_one_line_before_training(cfg_factory, tmp_path):
    from bnlab.config import validate
    from bnlab.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        validate(cfg_factory("data.train_subset=1000", "trainer.eval_train=1001"))
    assert e.value.key == "trainer.eval_train" and "<= 1000" in str(e.value)


_COUNT_VALIDATIONS = """
import json, sys
import bnlab.config, bnlab.train
seen = []
real = bnlab.config.validate
def counting(cfg):
    seen.append(int(cfg.seed))
    return real(cfg)
bnlab.config.validate = counting
bnlab.train.MAX_PREFLIGHT_JOBS = int(sys.argv[1])
sys.argv = ["bnlab-train", *sys.argv[2:]]
try:
    bnlab.train.main()
finally:
    print("VALIDATED", json.dumps(seen))
"""


@pytest.mark.parametrize("argv, preflight_max, expected", [
    (["seed=3"], 2000, [3]),                           # a single run: its preflight only
    (["-m", "seed=0,1"], 2000, [0, 1]),                # a sweep: each job once, in the launching process
    (["-m", "seed=0,1"], 1, [0, 0, 1]),                # preflight saw only a part: the jobs check themselves
])
def test_a_config_is_validated_once_per_job(mnist_root, tmp_path, argv, preflight_max, expected):
    """Issue 19: `validate` ran three times per job (preflight, the Hydra job, `run`)."""
    import os
    import subprocess
    import sys

    from conftest import data_root

    tiny = ["trainer.max_steps=2", "trainer.eval_every=2", "trainer.log_every=1", "tracking.mode=disabled",
            "trainer.progress=false", "probes.act_input.enabled=false", "hydra/launcher=basic",
            f"paths.results={tmp_path}", f"paths.data={data_root()}"]
    env = {k: v for k, v in os.environ.items() if k != "BNLAB_PREFLIGHT_VALIDATED"}
    out = subprocess.run([sys.executable, "-c", _COUNT_VALIDATIONS, str(preflight_max), *argv, *tiny],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.rsplit("VALIDATED ", 1)[1])
    assert seen == expected
    assert len(list(tmp_path.glob("runs/default/**/summary.json"))) == len(set(expected))


def test_run_validates_for_a_direct_caller(cfg_factory, tmp_path):
    from bnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="optim.lr"):
        run(cfg_factory("optim.lr=-1"), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_auto_threads_share_the_free_cores_and_too_many_are_named_in_one_line(caplog):
    """`trainer.num_threads=auto`: a single run takes the cores the load leaves free (at least
    one), a parallel sweep's job its share of the cores, a SLURM task its cpus_per_task; an
    explicit count above the free cores is one warning line naming the key."""
    import torch

    from bnlab.threads import choose_threads, set_torch_threads

    assert choose_threads("auto", cores=2, load=0.2)[:2] == (2, 2)
    assert choose_threads("auto", cores=2, load=1.1)[:2] == (1, 1)
    assert choose_threads("auto", cores=2, load=3.0)[:2] == (1, 0)
    assert choose_threads("auto", jobs_sharing=2, cores=2, load=5.0)[:2] == (1, 1), "the load of its sibling jobs"
    assert choose_threads("auto", jobs_sharing=3, cores=16)[:2] == (5, 5)
    assert choose_threads("auto", task_cpus=4, cores=2)[:2] == (4, 4)
    assert choose_threads(3, cores=8, load=0.0)[:2] == (3, 8)
    before = torch.get_num_threads()
    try:
        with caplog.at_level("WARNING", logger="bnlab"):
            assert set_torch_threads(2, cores=2, load=1.0) == 2 and torch.get_num_threads() == 2
            assert set_torch_threads(1, cores=2, load=1.0) == 1
        warned = [r.getMessage() for r in caplog.records]
        assert len(warned) == 1 and warned[0].startswith("trainer.num_threads: this run uses 2 torch thread(s) "
                                                         "but 1 core(s) are free for it"), warned
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["many", 0, 1.5])
def test_a_bad_thread_count_is_one_line_naming_auto(cfg_factory, value):
    from bnlab.config import validate
    from bnlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"trainer.num_threads: got .*allowed: auto"):
        validate(cfg_factory(f"trainer.num_threads={value}"))


def test_a_run_without_a_terminal_logs_step_rate_and_eta(mnist_root, cfg_factory, tmp_path, caplog):
    """No progress bar (not a terminal): a line with the step, steps/s and the ETA at least
    every trainer.progress_every_s seconds (here: a tiny interval, so every step); the run's
    numbers are those of a run without the lines."""
    from bnlab.runner import run

    base = ["model.norm=batch", "trainer.max_steps=30", "trainer.eval_every=30", "trainer.log_every=10"]
    with caplog.at_level("INFO", logger="bnlab"):
        beating = run(cfg_factory(*base, "trainer.progress_every_s=1e-9"), tmp_path / "beat")
    lines = [r.getMessage() for r in caplog.records if "steps/s" in r.getMessage()]
    assert len(lines) >= 25, lines
    assert re.fullmatch(r"step \d+/30 \(\d+\.\d%\), [\d.e+]+ steps/s, ETA \d+:\d\d:\d\d", lines[-1]), lines[-1]
    caplog.clear()
    with caplog.at_level("INFO", logger="bnlab"):
        quiet = run(cfg_factory(*base, "trainer.progress_every_s=null"), tmp_path / "quiet")
    assert not [r for r in caplog.records if "steps/s" in r.getMessage()]
    assert {k: v for k, v in beating.items() if "/" in k} == {k: v for k, v in quiet.items() if "/" in k}


def test_a_run_without_a_validation_split_is_judged_learned_on_test_accuracy_and_warns(
        mnist_root, cfg_factory, tmp_path, caplog):
    """data.val_size=0 once recorded a run that reached 0.95 as `learned: false` in silence:
    its best validation accuracy was never measured. Now a warning at the start says which
    outcomes are not measured, and `learned` is judged on test accuracy and says so."""
    from bnlab.analysis.frames import frame_from_store, outcome

    cfg = cfg_factory("model.norm=batch", "data.val_size=0", "trainer.max_steps=200", "trainer.eval_every=100")
    with caplog.at_level("INFO", logger="bnlab"):
        s = run(cfg, tmp_path / "runs" / "default" / "r")
    assert any("data.val_size=0: no validation split" in r.getMessage() for r in caplog.records)
    ending = [r.getMessage() for r in caplog.records if "after 200 steps" in r.getMessage()]
    assert ending and "no validation set" in ending[-1] and "nan" not in ending[-1], ending
    assert s["status"] == "completed" and s["test/acc"] > 0.85 and s["best/val/acc"] is None
    assert s["learned"] is True and s["learned_on"] == "test/acc"
    row = frame_from_store(tmp_path / "runs" / "default").iloc[0]
    assert outcome(row) == "learned"  # as the analysis reads it
    # a run with a validation split is judged on it, as before, with no new field
    with_val = run(cfg_factory("model.norm=batch", "trainer.max_steps=200", "trainer.eval_every=100"),
                   tmp_path / "with_val")
    assert with_val["learned"] is True and "learned_on" not in with_val


@pytest.mark.parametrize("option, extra", [("trainer.bf16=true", []),
                                           ("trainer.channels_last=true", ["model=cnn"]),
                                           ("trainer.compile=default", [])])
def test_a_gpu_option_composes_and_trains_on_the_cpu(mnist_root, cfg_factory, tmp_path, option, extra):
    """bf16 autocast, channels-last and a compiled step (issue 23): each is a config key that
    validates, trains a run that learns as the plain run does (to a loose tolerance: the
    arithmetic differs), keeps BN's statistics and the parameters in float32, and is part of
    the run's identity (off: the fingerprint of a run from before the keys)."""
    import torch

    from bnlab.store import fingerprint, resolved_config

    steps = 60 if extra else 150  # the CNN (channels-last) learns in fewer steps and costs more per step
    common = ["model.norm=batch", f"trainer.max_steps={steps}", f"trainer.eval_every={steps}", *extra]
    plain_cfg, cfg = cfg_factory(*common), cfg_factory(*common, option)
    assert fingerprint(resolved_config(cfg)) != fingerprint(resolved_config(plain_cfg))
    seen = {}
    real_train = train_mod.train_group

    def spy(loops, *args, **kw):
        out = real_train(loops, *args, **kw)
        seen["dtypes"] = {t.dtype for t in loops[0].model.state_dict().values() if t.is_floating_point()}
        seen["compiled"] = loops[0].forward is not loops[0].model
        return out

    train_mod.train_group = spy
    try:
        opt = run(cfg, tmp_path / "option")
    finally:
        train_mod.train_group = real_train
    plain = run(plain_cfg, tmp_path / "plain")
    assert opt["status"] == "completed" and opt["learned"]
    assert seen["dtypes"] == {torch.float32}
    assert seen["compiled"] == option.startswith("trainer.compile")
    assert abs(opt["val/acc"] - plain["val/acc"]) < 0.05
