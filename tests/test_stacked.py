"""K runs stacked into one model (bnlab.stacked) train as K separate runs do.

Tolerance: the stacked step sums the same products in another order (one wide matmul and
batched matmuls instead of K small ones), so a value differs from its separate run's by
float32 rounding (~1e-7 relative) from the first step on, and training carries that
difference along: over 200 steps of the Ioffe MLP on real MNIST batches, at rates up to 2,
with momentum and weight decay, it stays below TOL (relative, absolute below 1) on every loss,
weight and running statistic — orders of
magnitude below any difference a verdict reads (on random labels at lr 2, a chaotic regime,
it reached 1.6e-4 on a loss of 13, which is why real batches are used).
"""
import pytest
import torch
import torch.nn.functional as F

from bnlab.data import load_data
from bnlab.layers import init_weights
from bnlab.models import build_model
from bnlab.stacked import StackedMLP, StackedSGD, why_not_stackable

TOL = 1e-4


def _models(cfg_factory, k_overrides):
    """One ordinary model per run, built and initialised as bnlab.runner does."""
    models, cfgs = [], []
    for overrides in k_overrides:
        cfg = cfg_factory(*overrides)
        torch.manual_seed(cfg.seed)
        m = build_model(cfg.model, (1, 28, 28), 10)
        init_weights(m, cfg.init.scheme, cfg.init.std, cfg.init.gain, seed=cfg.seed)
        models.append(m)
        cfgs.append(cfg)
    return models, cfgs


RUNS = [["model.norm=batch", "optim.lr=0.5", "seed=0"], ["model.norm=batch", "optim.lr=2.0", "seed=0"],
        ["model.norm=batch", "optim.lr=0.1", "seed=0", "init.std=1.0"],
        ["model.norm=batch", "optim.lr=1.0", "seed=3", "optim.momentum=0.9", "optim.weight_decay=0.0005"]]


def _batches(cfg_factory, steps, b=60, seed=0):
    """Real MNIST training batches, as the runs see them (standardized), drawn at random."""
    data = load_data(cfg_factory().data, torch.device("cpu"))
    g = torch.Generator().manual_seed(seed)
    idx = [torch.randint(0, len(data.train_y), (b,), generator=g) for _ in range(steps)]
    return [(data.train_x[i], data.train_y[i]) for i in idx]


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_a_stack_trains_as_its_runs_do_alone(mnist_root, cfg_factory, norm):
    """Same initial weights exactly; per-step losses and final weights and BN running
    statistics within TOL of K separate runs (each its own rate, momentum, weight decay and
    init), on shared batches."""
    runs = [[f"model.norm={norm}", *r[1:]] for r in RUNS]
    alone, cfgs = _models(cfg_factory, runs)
    stacked = StackedMLP.from_models(_models(cfg_factory, runs)[0])
    for k, m in enumerate(alone):  # the stack starts from each run's own weights, exactly
        probe = build_model(cfgs[k].model, (1, 28, 28), 10)
        stacked.load_into(k, probe)
        assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), probe.state_dict().values()))
    opts = [torch.optim.SGD(m.parameters(), lr=c.optim.lr, momentum=c.optim.momentum,
                            weight_decay=c.optim.weight_decay) for m, c in zip(alone, cfgs)]
    sopt = StackedSGD(stacked, [c.optim.lr for c in cfgs], [c.optim.momentum for c in cfgs],
                      [c.optim.weight_decay for c in cfgs])
    worst = 0.0
    for x, y in _batches(cfg_factory, 200):
        losses_alone = []
        for m, o in zip(alone, opts):
            o.zero_grad()
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            o.step()
            losses_alone.append(loss.item())
        sopt.zero_grad()
        losses, _ = stacked.losses(x, y)
        losses.sum().backward()
        sopt.step()
        worst = max(worst, max(abs(a - b) / max(1.0, abs(a)) for a, b in zip(losses_alone, losses.tolist())))
    assert worst < TOL, worst
    for k, m in enumerate(alone):
        mine = build_model(cfgs[k].model, (1, 28, 28), 10)
        stacked.load_into(k, mine)
        for (name, a), b in zip(m.state_dict().items(), mine.state_dict().values()):
            assert torch.allclose(a.float(), b.float(), atol=TOL, rtol=TOL), (k, name, (a.float() - b.float()).abs().max())


def test_a_run_that_diverges_in_a_stack_stops_alone(mnist_root, cfg_factory):
    """A member whose weights turn non-finite mid-run (what a divergence does) has non-finite
    losses from then on and, stopped, keeps its slice frozen; the other members train
    bit for bit as in the same stack where nothing diverged (nothing leaks between runs)."""
    runs = [RUNS[0], RUNS[1], RUNS[3]]
    hit, clean = (StackedMLP.from_models(_models(cfg_factory, runs)[0]) for _ in range(2))
    hit_opt, clean_opt = (StackedSGD(s, [0.5, 2.0, 1.0], [0.0, 0.0, 0.9], [0.0, 0.0, 0.0005]) for s in (hit, clean))
    active = torch.ones(3, dtype=torch.bool)
    frozen = None
    for step, (x, y) in enumerate(_batches(cfg_factory, 40, seed=1)):
        if step == 10:
            with torch.no_grad():
                hit.weights[1][1, 0, 0] = float("inf")
        hit_opt.zero_grad()
        losses, _ = hit.losses(x, y)
        active &= torch.isfinite(losses)
        if not active[1] and frozen is None:
            frozen = [p[1].clone() for p in hit.weights]
        losses.sum().backward()
        hit_opt.step(active)
        clean_opt.zero_grad()
        ref, _ = clean.losses(x, y)
        ref.sum().backward()
        clean_opt.step()
        assert torch.equal(losses[[0, 2]], ref[[0, 2]]), step
    assert frozen is not None and active.tolist() == [True, False, True]
    assert all(torch.equal(p[1], f) for p, f in zip(hit.weights, frozen)), "the stopped run's slice is frozen"
    for a, b in zip(hit.parameters(), clean.parameters()):
        if a.dim() > 1:
            assert torch.equal(a[[0, 2]], b[[0, 2]])


def test_per_run_batches_and_eval_mode_match_the_runs_alone(cfg_factory):
    """Runs of different seeds see different batches ((K, B, ...) input), and in eval mode the
    stack's logits are each run's own with its running statistics."""
    alone, _ = _models(cfg_factory, [RUNS[0], RUNS[3]])
    stacked = StackedMLP.from_models(_models(cfg_factory, [RUNS[0], RUNS[3]])[0])
    xs = torch.randn(2, 60, 1, 28, 28)
    out = stacked(xs, per_run=True)  # training mode: updates the running statistics too
    for k, m in enumerate(alone):
        assert torch.allclose(out[k], m(xs[k]), atol=1e-5)
    stacked.eval()
    x = torch.randn(30, 1, 28, 28)
    out = stacked(x)
    for k, m in enumerate(alone):
        assert torch.allclose(out[k], m.eval()(x), atol=1e-5)


def test_what_does_not_stack_says_why(cfg_factory):
    dropout, _ = _models(cfg_factory, [["model.dropout=0.1"], ["model.dropout=0.5"]])
    assert why_not_stackable(dropout) is None, "dropout stacks, each run at its own rate"
    layer, _ = _models(cfg_factory, [["model.norm=layer"]])
    assert "LayerNorm" in why_not_stackable(layer)
    two, _ = _models(cfg_factory, [["model.widths=[100,100,100]"], ["model.widths=[50,50,50]"]])
    assert "architecture" in why_not_stackable(two)
    with pytest.raises(ValueError, match="cannot stack"):
        StackedMLP.from_models(layer)


# ------------------------------------------------- the stacked engine inside the trainer and runner

def _curves(run_dir):
    from bnlab.store import read_metrics

    m = read_metrics(run_dir)
    return m[[c for c in m.columns if c != "time_s" and m[c].dtype.kind == "f"]]


@pytest.mark.parametrize("case", ["one seed (shared batches)", "two seeds (a batch per run)",
                                  "one seed, dropout and the recalibrated readout"])
def test_the_runs_of_a_stacked_group_write_what_each_writes_alone(mnist_root, cfg_factory, tmp_path, case):
    """bnlab.runner.run_group(engine="stacked") against bnlab.runner.run of each config: the
    untrained evaluation (step 0) is the same exactly (same initial weights, same evaluation
    code); every logged number over 300 steps (losses, accuracies, evaluations and probes, which
    the stack measures for all its runs at once) is within TOL (module docstring); dropout masks
    are each run's own (a wrong mask moves the curves by far more than TOL); a member forced to
    diverge (init.std 1e39: infinite weights, a non-finite loss at once) diverges at the same step, alone, while the
    others stay within TOL of their runs alone; each run.json names the engine and group size."""
    import json

    from bnlab.runner import Job, run, run_group

    second_seed = "seed=3" if case.startswith("two") else "seed=0"
    common = ["model.norm=batch", "trainer.max_steps=300", "trainer.eval_every=100", "trainer.log_every=50"]
    if "dropout" in case:
        common += ["model.dropout=0.2", "probes.bn_recalibration.enabled=true"]
    runs = [["optim.lr=0.5", "seed=0"], ["optim.lr=1.0", "seed=0", "optim.momentum=0.9"],
            ["optim.lr=0.1", second_seed, "init.std=1.0"], ["optim.lr=0.5", "seed=0", "init.std=1e39"],
            ["optim.lr=1.0", second_seed, "optim.weight_decay=0.0005"]]
    cfgs = [cfg_factory(*common, *r) for r in runs]
    alone = [run(c, tmp_path / f"alone{i}") for i, c in enumerate(cfgs)]
    group = run_group([Job(c, tmp_path / f"stack{i}") for i, c in enumerate(cfgs)], engine="stacked")
    assert [s["status"] for s in group] == [s["status"] for s in alone] == \
        ["completed", "completed", "completed", "diverged", "completed"]
    assert group[3]["diverged_at_step"] == alone[3]["diverged_at_step"]
    for i in range(len(runs)):
        a, s = _curves(tmp_path / f"alone{i}"), _curves(tmp_path / f"stack{i}")
        assert list(a.columns) == list(s.columns) and len(a) == len(s)
        assert a.iloc[0].equals(s.iloc[0]), "the untrained evaluation is the same exactly"
        if i == 3:
            continue  # past divergence the numbers are chaos; its outcome and step are compared above
        rel = ((a - s).abs() / a.abs().clip(lower=1)).max().max()
        assert rel < TOL, (i, rel)
        env = json.loads((tmp_path / f"stack{i}" / "run.json").read_text())["env"]
        assert env["engine"] == "stacked" and env["group_size"] == len(runs)
    assert json.loads((tmp_path / "alone0" / "run.json").read_text())["env"]["engine"] == "single"


def test_a_group_that_cannot_stack_trains_each_run_alone(mnist_root, cfg_factory, tmp_path):
    """train_stack falls back to one run after another, before anything is written for the
    refused stack, and each run is then exactly the run trained alone."""
    from bnlab.runner import Job, run, train_stack

    common = ["trainer.max_steps=60", "optim=adam", "model.dropout=0.1"]
    cfgs = [cfg_factory(*common, "optim.lr=0.001"), cfg_factory(*common, "optim.lr=0.002")]
    summaries = train_stack([Job(c, tmp_path / f"s{i}") for i, c in enumerate(cfgs)])
    alone = run(cfgs[1], tmp_path / "alone")
    assert summaries[1]["test/acc"] == alone["test/acc"] and summaries[1]["train/loss"] == alone["train/loss"]


def test_stacks_are_planned_by_what_may_differ_between_their_runs(cfg_factory):
    """bnlab.stack_plan: on a CPU, runs of one seed and architecture that differ in rate, momentum,
    weight decay or init share a stack of at most trainer.stack runs; another seed, norm or
    dropout rate does not, except that runs alone in their seed's group stack across seeds; a
    norm that does not stack trains alone, as do ineligible (done) jobs; fewer stacks than
    parallel jobs are split."""
    from bnlab.stack_plan import plan_stacks, why_config_cannot_stack

    jobs = [["optim.lr=0.1"], ["optim.lr=0.5", "optim.momentum=0.9"], ["optim.lr=1", "init.std=1.0"],
            ["optim.lr=2", "optim.weight_decay=0.001"], ["optim.lr=0.1", "seed=1"], ["optim.lr=0.1", "model.norm=batch"],
            ["optim.lr=0.1", "model.dropout=0.1"], ["optim.lr=0.1", "model.norm=layer"]]
    cfgs = [cfg_factory("trainer.stack=3", *j) for j in jobs]
    assert why_config_cannot_stack(cfgs[6]) is None and "layer" in why_config_cannot_stack(cfgs[7])
    assert "adam" in why_config_cannot_stack(cfg_factory("optim=adam"))
    assert plan_stacks(cfgs, [True] * 8) == [[0, 1, 2], [3], [4], [5], [6], [7]]
    assert plan_stacks(cfgs, [True, False, True, True, True, True, True, True]) == [[0, 2, 3], [1], [4], [5], [6], [7]]
    assert plan_stacks(cfgs[:4], [True] * 4, parallel=3) == [[0, 1], [2], [3]]
    assert plan_stacks([cfg_factory("trainer.stack=1", *j) for j in jobs[:4]], [True] * 4) == [[0], [1], [2], [3]]
    # a confirmation phase (one run per seed): alone in their seeds' groups, they stack across seeds
    confirm = [cfg_factory("optim.lr=0.5", f"seed={100 + s}") for s in range(5)]
    assert plan_stacks(confirm, [True] * 5) == [[0, 1, 2, 3, 4]]
    assert plan_stacks(confirm, [True] * 5, parallel=2) == [[0, 1, 2], [3, 4]]


def test_a_stacked_runs_wall_time_counts_as_its_share_of_the_stack():
    """The report's run time (bnlab.analysis.frames.budget): K runs of a stack share one process
    for the stack's wall time, so each counts its K-th; runs trained alone (or before the
    engine was recorded) count whole."""
    import pandas as pd

    from bnlab.analysis.frames import run_seconds

    runs = pd.DataFrame({"wall_time_s": [900.0, 900.0, 100.0, 50.0], "env.group_size": [9, 9, 1, None]})
    assert run_seconds(runs).tolist() == [100.0, 100.0, 100.0, 50.0]
    assert run_seconds(runs[["wall_time_s"]]).tolist() == [900.0, 900.0, 100.0, 50.0]
