"""The recalibrated readout (bnlab.recalibration): BN statistics re-estimated on clean
training batches, noise and dropout off, training untouched."""
import copy

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from bnlab.data import Splits
from bnlab.models import build_model
from bnlab.norms import SanturkarNoise
from bnlab.recalibration import BNRecalibration, batch_norms
from bnlab.rng import seed_noise
from bnlab.runner import run
from bnlab.store import read_metrics


def _splits(n=600, seed=0):
    """Two well-separated Gaussian classes in 20 dimensions, shifted far from zero, so that a
    BN net's eval-mode readout depends on its running statistics."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(2, (n,), generator=g)
    x = torch.randn(n, 1, 1, 20, generator=g) + 4.0 * (2 * y.view(n, 1, 1, 1) - 1) + 10.0
    k = n // 3
    return Splits(x[:k], y[:k], x[k:2 * k], y[k:2 * k], x[2 * k:], y[2 * k:], num_classes=2)


def _mlp(norm):
    m = OmegaConf.create({"name": "mlp", "widths": [16, 16], "activation": "relu", "norm": norm,
                          "dropout": 0.5, "dropout_placement": "after_each_activation",
                          "bn": {"momentum": 0.1, "eps": 1e-5, "affine": True}})
    torch.manual_seed(0)
    return build_model(m, (1, 1, 20), 2)


def test_recalibration_replaces_wrong_running_statistics_and_puts_them_back():
    data = _splits()
    model = _mlp("batch")
    for m in batch_norms(model):  # running statistics far from the data's: eval mode is broken
        m.running_mean.fill_(50.0)
        m.running_var.fill_(1e-4)
    before = {k: v.clone() for k, v in model.named_buffers()}
    recal = BNRecalibration(data, batches=10, batch_size=50, seed=3, eval_batch_size=100)
    out = recal.measure(model)
    assert set(out) == {"recal/val/loss", "recal/val/acc", "recal/test/loss", "recal/test/acc"}
    # what recalibration computes: the first BN's statistics are those of its input on the batches
    clean = copy.deepcopy(model)
    recal.recalibrate(clean)
    first = batch_norms(clean)[0]
    pre = torch.cat([clean.weight_layers[0](data.train_x[i].flatten(1)) for i in recal.index])
    assert torch.allclose(first.running_mean, pre.mean(0), atol=1e-4)
    # the original's statistics, counters and momentum are exactly as they were
    assert all(torch.equal(v, before[k]) for k, v in model.named_buffers())
    assert all(m.momentum == 0.1 for m in batch_norms(model)) and model.training


def test_recalibration_runs_without_noise_and_dropout():
    """A noisy-BN net recalibrates and reads out as the same net with its noise removed."""
    data = _splits()
    noisy = _mlp("noisy_batch")
    seed_noise(noisy, 5)
    for m in noisy.modules():
        if isinstance(m, SanturkarNoise):
            m.mean_range, m.scale_low, m.scale_high = 20.0, 5.0, 10.0  # would wreck any readout
    clean = copy.deepcopy(noisy)
    for block in clean.modules():
        for name, child in list(block.named_children()):
            if isinstance(child, SanturkarNoise):
                setattr(block, name, nn.Identity())
    recal = BNRecalibration(data, batches=8, batch_size=40, seed=1, eval_batch_size=100)
    assert recal.measure(noisy) == recal.measure(clean)
    assert recal.measure(noisy) == recal.measure(noisy)  # draws nothing: the same every time


def test_a_net_without_bn_records_nothing():
    assert BNRecalibration(_splits(), 2, 10, 0, 100).measure(_mlp("none")) == {}


@pytest.mark.parametrize("norm", ["noisy_batch", "none"])
def test_a_recalibrated_run_trains_exactly_as_one_without(mnist_root, cfg_factory, tmp_path, norm):
    base = [f"model.norm={norm}", "trainer.max_steps=60", "trainer.eval_every=30", "trainer.log_every=10",
            "model.dropout=0.2", "seed=7"]
    plain = run(cfg_factory(*base), tmp_path / "plain")
    recal = run(cfg_factory(*base, "probes.bn_recalibration.enabled=true", "probes.bn_recalibration.batches=5"),
                tmp_path / "recal")
    same = [k for k in plain if k.startswith(("val/", "test/", "train/", "best/")) or k in ("steps", "status")]
    assert same and all(plain[k] == recal[k] for k in same)
    a = read_metrics(tmp_path / "plain")
    b = read_metrics(tmp_path / "recal")
    assert a["train/loss"].equals(b["train/loss"]) and a["val/acc"].equals(b["val/acc"])
    if norm == "none":
        assert not any(k.startswith(("recal/", "best/recal/")) for k in recal)
    else:
        assert b["recal/val/acc"].notna().sum() == 3  # steps 0, 30, 60
        best = b.loc[b["recal/val/acc"].idxmax()]
        assert recal["best/recal/val/acc"] == best["recal/val/acc"]
        assert recal["best/recal/test/acc"] == best["recal/test/acc"]
        assert recal["best/recal/step"] == best["step"]
