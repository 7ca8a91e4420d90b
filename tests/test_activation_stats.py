"""The activation-statistics probe (bnlab.activation_stats): zero mean / unit variance where
BN guarantees it, Gaussianity, and decorrelation, measured right; training untouched."""
import pytest
import torch
from omegaconf import OmegaConf

from bnlab.activation_stats import ActivationStatsProbe, decorrelation, moments
from bnlab.models import build_model
from bnlab.runner import run
from bnlab.store import read_metrics


def test_perfectly_correlated_units_have_correlation_one_and_rank_one():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 4000, generator=g, dtype=torch.float64)
    scales = torch.tensor([[1.0], [2.0], [-0.5], [3.0], [0.1]], dtype=torch.float64)
    d = decorrelation(scales * base + 7.0)
    assert d["corr_abs"] == pytest.approx(1.0, abs=1e-9)
    assert d["eff_rank"] == pytest.approx(1.0, abs=1e-6)


def test_independent_gaussian_units_are_uncorrelated_with_full_effective_rank():
    g = torch.Generator().manual_seed(1)
    width = 16
    u = torch.randn(width, 20000, generator=g, dtype=torch.float64) * 3 + 2
    d = decorrelation(u)
    assert d["corr_abs"] < 0.01
    assert d["eff_rank"] == pytest.approx(width, rel=0.01) and d["eff_rank_frac"] == pytest.approx(1, rel=0.01)
    m = moments(u)
    assert m["skew_abs"] < 0.03 and m["kurt_abs"] < 0.06  # a Gaussian: 0 and 0
    assert m["mean_abs"] == pytest.approx(2, abs=0.05) and m["var"] == pytest.approx(9, rel=0.03)


def test_skewed_and_heavy_tailed_units_are_told_apart():
    g = torch.Generator().manual_seed(2)
    exp = torch.empty(4, 50000, dtype=torch.float64).exponential_(generator=g)
    m = moments(exp)  # exponential: skewness 2, excess kurtosis 6
    assert m["skew_abs"] == pytest.approx(2, rel=0.1) and m["kurt_abs"] == pytest.approx(6, rel=0.25)


def _mlp(norm):
    cfg = OmegaConf.create({"name": "mlp", "widths": [32, 32], "activation": "sigmoid", "norm": norm,
                            "dropout": 0.3, "dropout_placement": "after_each_activation",
                            "bn": {"momentum": 0.1, "eps": 1e-5, "affine": True}})
    torch.manual_seed(0)
    return build_model(cfg, (1, 1, 30), 10)


def test_bn_in_train_mode_gives_zero_mean_unit_variance_before_the_affine_step():
    model = _mlp("batch")
    with torch.no_grad():  # a learned affine step and stale running statistics, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.weight.fill_(2.0)
                m.bias.fill_(0.5)
                m.running_mean.fill_(3.0)
    x = torch.randn(500, 1, 1, 30, generator=torch.Generator().manual_seed(3)) * 4 + 1
    before = {k: v.clone() for k, v in model.named_buffers()}
    out = ActivationStatsProbe(x, normalizes=True).measure(model)
    for b in (0, 1):
        assert out[f"probe/act_stats/b{b}/train/norm_mean_abs"] < 1e-5
        assert out[f"probe/act_stats/b{b}/train/norm_var"] == pytest.approx(1.0, abs=1e-3)
        # after the affine step: mean 0.5, variance 4
        assert out[f"probe/act_stats/b{b}/train/pre_mean_abs"] == pytest.approx(0.5, abs=1e-4)
        assert out[f"probe/act_stats/b{b}/train/pre_var"] == pytest.approx(4.0, abs=4e-3)
    # eval mode normalizes with the running statistics: not zero mean here
    assert out["probe/act_stats/b0/eval/norm_mean_abs"] > 0.5
    assert all(torch.equal(v, before[k]) for k, v in model.named_buffers()) and model.training


def test_without_normalization_only_the_pre_activation_is_measured():
    out = ActivationStatsProbe(torch.randn(200, 1, 1, 30), normalizes=False).measure(_mlp("none"))
    assert out and not any("/norm_" in k for k in out)
    assert {k.rsplit("/", 1)[1] for k in out} == {"pre_mean_abs", "pre_var", "pre_skew_abs", "pre_kurt_abs",
                                                  "corr_abs", "eff_rank", "eff_rank_frac"}


def test_a_probed_run_trains_exactly_as_an_unprobed_one(mnist_root, cfg_factory, tmp_path):
    base = ["model.norm=noisy_batch", "trainer.max_steps=50", "trainer.eval_every=25", "model.dropout=0.2",
            "seed=2"]
    plain = run(cfg_factory(*base), tmp_path / "plain")
    probed = run(cfg_factory(*base, "probes.act_stats.enabled=true", "probes.act_stats.batch_size=300"),
                 tmp_path / "probed")
    assert all(plain[k] == probed[k] for k in plain if k.startswith(("val/", "test/", "train/", "best/")))
    m = read_metrics(tmp_path / "probed")
    assert m["probe/act_stats/b2/train/norm_var"].notna().sum() == 3  # steps 0, 25, 50; three hidden layers
    assert m["probe/act_stats/b0/train/norm_var"].dropna().between(0.99, 1.01).all()


def test_the_correlation_matrix_is_logged_at_the_last_step_only():
    """corr_units k: the train-mode correlations of each layer's first k units, keyed by pair,
    at `final_step` and at no other step; a unit copied into another correlates at 1."""
    torch.manual_seed(0)
    model = build_model(OmegaConf.create({"name": "mlp", "widths": [6, 5], "norm": "batch", "activation": "sigmoid",
                                          "dropout": 0.0, "dropout_placement": "after_each_activation",
                                          "norm_layers": "all", "bn": {"eps": 1e-5, "momentum": 0.1, "affine": True}}),
                        (1, 4, 4), 3)
    probe = ActivationStatsProbe(torch.randn(300, 1, 4, 4), normalizes=True, corr_units=4, final_step=100)
    assert not any(k.startswith("probe/act_corr") for k in probe.measure(model, step=50))
    out = probe.measure(model, step=100)
    keys = sorted(k for k in out if k.startswith("probe/act_corr/b0/"))
    assert len(keys) == 6 and keys[0] == "probe/act_corr/b0/u0_u1"  # 4 units: 6 pairs
    assert all(-1.0 <= out[k] <= 1.0 for k in keys)
    from bnlab.activation_stats import correlations
    u = torch.randn(3, 500, dtype=torch.float64)
    u[2] = 2 * u[0] + 1
    r = correlations(u, "x")
    assert r["x/u0_u2"] == pytest.approx(1.0) and abs(r["x/u0_u1"]) < 0.15
