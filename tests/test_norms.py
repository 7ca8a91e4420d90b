"""The norm zoo (bnlab.norms): each norm's statistics in train and eval mode, Santurkar et
al.'s noise within its ranges and reproducible, options from the config, and training."""
import pytest
import torch
from torch import nn

from bnlab.norms import NORM_KINDS, SanturkarNoise, make_norm, norm_has_shift
from bnlab.rng import seed_noise


def _data(dims, n=256, c=6):
    g = torch.Generator().manual_seed(0)
    shape = (n, c) if dims == 1 else (n, c, 5, 5)
    return 3.0 + 2.5 * torch.randn(shape, generator=g)


@pytest.mark.parametrize("dims", [1, 2])
def test_batch_norm_standardizes_each_channel_in_train_mode_and_uses_running_stats_in_eval(dims):
    x = _data(dims)
    bn = make_norm("batch", 6, dims)
    y = bn.train()(x)
    axes = (0,) if dims == 1 else (0, 2, 3)
    assert torch.allclose(y.mean(axes), torch.zeros(6), atol=1e-5)
    assert torch.allclose(y.var(axes, unbiased=False), torch.ones(6), atol=1e-3)
    bn.eval()
    assert not torch.allclose(bn(x).mean(axes), torch.zeros(6), atol=0.5), "eval uses running statistics"


@pytest.mark.parametrize("dims", [1, 2])
def test_layer_norm_standardizes_each_sample(dims):
    x = _data(dims)
    y = make_norm("layer", 6, dims)(x)
    flat = y.reshape(len(y), -1)
    assert torch.allclose(flat.mean(1), torch.zeros(len(y)), atol=1e-5)
    assert torch.allclose(flat.var(1, unbiased=False), torch.ones(len(y)), atol=1e-3)


def test_group_norm_standardizes_each_group_of_each_sample_and_picks_a_dividing_count():
    x = _data(2, c=6)
    gn = make_norm("group", 6, 2, {"gn": {"groups": 4}})
    assert gn.num_groups == 3, "4 does not divide 6: the largest count below that does"
    y = gn(x).reshape(len(x), 3, -1)
    assert torch.allclose(y.mean(2), torch.zeros(len(x), 3), atol=1e-5)


def test_santurkar_noise_stays_in_its_ranges_and_is_off_in_eval():
    noise = make_norm("noise", 4, 1)
    assert isinstance(noise, SanturkarNoise) and not norm_has_shift("noise") and norm_has_shift("noisy_batch")
    ones = torch.ones(4000, 4)
    zeros = torch.zeros(4000, 4)
    m = noise.train()(zeros)                 # a <- s*0 + m: the per-sample shifts
    s = noise(ones) - noise(zeros)           # two draws: only their ranges can be compared
    assert m.min() >= -0.6 - 1e-6 and m.max() <= 0.6 + 1e-6
    per_unit = m.mean(0)                     # ~ mu_t of this step, in [-0.5, 0.5]
    assert per_unit.abs().max() <= 0.5 + 0.02 and (m.max(0).values - m.min(0).values <= 0.2 + 1e-6).all()
    assert 0.6 < s.mean() < 1.6
    noise.eval()
    assert torch.equal(noise(ones), ones), "no noise in eval mode"


def test_noisy_batch_shifts_the_distribution_at_every_step_and_is_reproducible():
    x = _data(1)
    layer = make_norm("noisy_batch", 6, 1).train()
    seed_noise(layer, 7)
    first, second = layer(x), layer(x)
    assert not torch.allclose(first.mean(0), second.mean(0), atol=0.05), "a new shift every step"
    again = make_norm("noisy_batch", 6, 1).train()
    seed_noise(again, 7)
    assert torch.equal(again(x), first), "the same seed draws the same noise"
    state = layer.state_dict()               # the generator travels in the state_dict (checkpoints)
    third = layer(x)
    layer.load_state_dict(state)
    assert torch.equal(layer(x), third)


@pytest.mark.parametrize("kind", NORM_KINDS)
def test_every_norm_trains_on_mnist(mnist_root, cfg_factory, tmp_path, kind):
    from bnlab.runner import run

    s = run(cfg_factory(f"model.norm={kind}", "trainer.max_steps=400", "trainer.eval_every=400",
                        "trainer.log_every=50", "optim.lr=0.5"), tmp_path / "r")
    assert s["status"] == "completed" and s["learned"] and s["best/val/acc"] > 0.7, (kind, s["best/val/acc"])


def test_a_probed_noisy_run_trains_exactly_like_an_unprobed_one(mnist_root, cfg_factory, tmp_path):
    from bnlab.runner import run

    base = ["model.norm=noisy_batch", "trainer.max_steps=60", "trainer.eval_every=20", "trainer.log_every=20"]
    plain = run(cfg_factory(*base, "probes.grad_ics.enabled=false"), tmp_path / "a")
    probed = run(cfg_factory(*base, "probes.grad_ics.enabled=true"), tmp_path / "b")
    for key in ("train/loss", "val/acc", "test/acc", "best/val/acc"):
        assert plain[key] == probed[key], key


def test_bad_norm_options_are_one_line_errors(cfg_factory):
    from bnlab.config import validate
    from bnlab.errors import ConfigError

    for override, key in (("model.gn.groups=0", "model.gn.groups"), ("model.noise.scale_high=0.5",
                                                                       "model.noise.scale_high"),
                          ("model.norm=instance", "model.norm")):
        with pytest.raises(ConfigError) as err:
            validate(cfg_factory(override))
        assert err.value.key == key and "\n" not in str(err.value)


def test_the_registry_and_the_config_agree_on_every_norm_option():
    """The Hydra config's norm options are the registry's defaults, and every option group a
    norm names exists: adding a norm or an option changes one place and this test says where
    the other copy is."""
    from omegaconf import OmegaConf

    from bnlab.norms import DEFAULT_OPTIONS, NORMS
    from bnlab.resolvers import CONF_DIR

    yaml = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "norm_options" / "default.yaml"))
    assert yaml == DEFAULT_OPTIONS
    for kind, norm in NORMS.items():
        assert set(norm.options) <= set(DEFAULT_OPTIONS), kind
        assert norm.label and norm.colour.startswith("#"), kind


def test_every_registry_entry_declares_whether_it_subtracts_a_mean_and_its_layer_agrees():
    """A norm's entry says whether the layer before it keeps its bias (Norm.subtracts_mean);
    the answer is checked on the layer itself: adding the same constant to every input unit
    leaves the output of a mean-subtracting norm unchanged, and changes any other's."""
    from bnlab.norms import NORMS

    for kind, norm in NORMS.items():
        assert isinstance(norm.subtracts_mean, bool), f"{kind}: subtracts_mean must be declared True or False"
        for dims in (1, 2):
            x = _data(dims, c=16)  # 16 units: group norm's 8 groups hold two each
            layer = make_norm(kind, 16, dims).train()
            outputs = []
            for shifted in (x, x + 7.0):
                seed_noise(layer, 0)  # noisy norms: the same noise for both inputs
                outputs.append(layer(shifted))
            # float32 rounding of the shifted input, divided by a small group's spread, reaches
            # ~3e-4; a norm that keeps the shift moves its output by about the shift itself (7)
            unchanged = (outputs[0] - outputs[1]).abs().max().item() < 0.01
            assert unchanged == norm.subtracts_mean, f"{kind} (dims={dims}) declares subtracts_mean={norm.subtracts_mean}"


def test_a_norm_entry_that_does_not_say_whether_it_subtracts_a_mean_is_refused_by_name():
    from bnlab.norms import Norm

    rms = {"build": lambda features, dims, o: nn.RMSNorm(features), "options": (), "label": "RMS norm",
           "colour": "#8c564b"}
    with pytest.raises(TypeError, match=r"norm 'RMS norm': its registry entry must say subtracts_mean=True or False"):
        Norm(**rms)
    with pytest.raises(TypeError, match=r"subtracts_mean must be True or False, got 'no'"):
        Norm(**rms, subtracts_mean="no")
    with pytest.raises(TypeError):  # fields by name only: a positional entry cannot shift its answers
        Norm(rms["build"], (), "RMS norm", "#8c564b", False)


def test_a_new_norm_keeps_or_drops_the_bias_before_it_as_its_entry_says(cfg_factory, monkeypatch):
    from bnlab import norms
    from bnlab.models import build_model

    cfg = cfg_factory("model.norm=none")
    for subtracts_mean in (False, True):
        entry = norms.Norm(build=lambda features, dims, o: nn.RMSNorm(features), options=(), label="RMS norm",
                           colour="#8c564b", subtracts_mean=subtracts_mean)
        monkeypatch.setitem(norms.NORMS, "rms", entry)
        cfg.model.norm = "rms"
        model = build_model(cfg.model, (1, 28, 28), 10)
        hidden = [layer for layer in model.weight_layers[:-1]]
        assert hidden and all((layer.bias is None) == subtracts_mean for layer in hidden)
