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
    dropout, _ = _models(cfg_factory, [["model.dropout=0.1"]])
    assert "dropout" in why_not_stackable(dropout)
    layer, _ = _models(cfg_factory, [["model.norm=layer"]])
    assert "LayerNorm" in why_not_stackable(layer)
    two, _ = _models(cfg_factory, [["model.widths=[100,100,100]"], ["model.widths=[50,50,50]"]])
    assert "architecture" in why_not_stackable(two)
    with pytest.raises(ValueError, match="cannot stack"):
        StackedMLP.from_models(dropout)
