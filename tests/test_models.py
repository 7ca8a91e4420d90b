"""Built models: BN placement and bias, dropout placement, init statistics, shapes."""
import math

import pytest
import torch
from torch import nn

from bnlab.layers import init_weights, weight_layers
from bnlab.norms import make_norm
from bnlab.models import build_model, count_parameters


def layers_of(model):
    return [type(m).__name__ for b in model.blocks for m in b]


def test_mlp_with_bn_is_linear_bn_sigmoid_without_bias(cfg_factory):
    cfg = cfg_factory("model.norm=batch")
    model = build_model(cfg.model, (1, 28, 28), 10)
    assert layers_of(model) == ["Linear", "BatchNorm1d", "Sigmoid"] * 3
    for block in model.blocks:
        assert block[0].bias is None, "the linear bias is redundant before BN and must be dropped"
        assert block.norm is block[1]
    assert model.head.bias is not None
    assert [b[0].out_features for b in model.blocks] == [100, 100, 100]
    assert model.blocks[0][0].in_features == 784
    # 784*100 + 100*100*2 + 100*10+10 weights/biases, + 3 BN layers of (gamma, beta) x 100
    assert count_parameters(model) == 78400 + 20000 + 1010 + 600


def test_mlp_without_bn_keeps_bias_and_has_no_norm(cfg_factory):
    model = build_model(cfg_factory("model.norm=none").model, (1, 28, 28), 10)
    assert layers_of(model) == ["Linear", "Sigmoid"] * 3
    assert all(b[0].bias is not None for b in model.blocks)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    assert count_parameters(model) == 78500 + 20200 + 1010


def test_arms_differ_only_in_the_norm_layer(cfg_factory):
    a = build_model(cfg_factory("model.norm=none").model, (1, 28, 28), 10)
    b = build_model(cfg_factory("model.norm=batch").model, (1, 28, 28), 10)
    strip = lambda names: [n for n in names if n != "BatchNorm1d"]  # noqa: E731
    assert strip(layers_of(b)) == layers_of(a)


@pytest.mark.parametrize("act,cls", [("relu", nn.ReLU), ("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid)])
def test_activation_choice(cfg_factory, act, cls):
    model = build_model(cfg_factory(f"model.activation={act}").model, (1, 28, 28), 10)
    assert isinstance(model.probe_activation, cls)
    assert model.probe_activation is model.blocks[-1][-1]


def test_dropout_placement(cfg_factory):
    every = build_model(cfg_factory("model.dropout=0.3", "model.norm=batch").model, (1, 28, 28), 10)
    assert layers_of(every) == ["Linear", "BatchNorm1d", "Sigmoid", "Dropout"] * 3
    assert all(m.p == 0.3 for m in every.modules() if isinstance(m, nn.Dropout))
    head_only = build_model(cfg_factory("model.dropout=0.3", "model.dropout_placement=before_classifier")
                            .model, (1, 28, 28), 10)
    assert layers_of(head_only) == ["Linear", "Sigmoid"] * 3 + ["Dropout"]
    none = build_model(cfg_factory("model.dropout=0").model, (1, 28, 28), 10)
    assert not any(isinstance(m, nn.Dropout) for m in none.modules())


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_cnn_conv_norm_act_and_shapes(cfg_factory, shape):
    cfg = cfg_factory("model=cnn", "model.norm=batch")
    model = build_model(cfg.model, shape, 10)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 and all(c.bias is None for c in convs)
    kinds = [type(m).__name__ for m in model.features]
    assert kinds[:4] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    assert layers_of(model) == ["Linear", "BatchNorm1d", "ReLU"]
    assert model(torch.randn(4, *shape)).shape == (4, 10)
    plain = build_model(cfg_factory("model=cnn").model, shape, 10)
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, nn.Conv2d))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())


def test_normal_init_statistics(cfg_factory):
    torch.manual_seed(0)
    model = build_model(cfg_factory("model.norm=batch").model, (1, 28, 28), 10)
    init_weights(model, "normal", std=0.01)
    w = model.blocks[0][0].weight
    assert w.mean().abs() < 1e-3 and abs(w.std().item() - 0.01) < 3e-4
    assert torch.all(model.head.bias == 0)
    bn = model.blocks[0][1]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0), "norm layers keep their own init"


@pytest.mark.parametrize("scheme,gain", [("xavier", 1.0), ("kaiming", 1.0), ("kaiming", 10.0)])
def test_scaled_inits(cfg_factory, scheme, gain):
    torch.manual_seed(0)
    model = build_model(cfg_factory().model, (1, 28, 28), 10)
    init_weights(model, scheme, gain=gain)
    w = model.blocks[0][0].weight  # fan_in 784, fan_out 100
    expected = gain * (math.sqrt(2 / 884) if scheme == "xavier" else math.sqrt(2 / 784))
    assert abs(w.std().item() / expected - 1) < 0.02
    assert torch.all(model.blocks[0][0].bias == 0)


def test_default_init_follows_pytorchs_rule(cfg_factory):
    model = build_model(cfg_factory().model, (1, 28, 28), 10)
    init_weights(model, "default", seed=3)
    layer = model.blocks[0][0]  # fan_in 784: U(±1/28)
    bound = 1 / 28
    assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.95 * bound
    assert abs(layer.weight.std().item() / (bound / math.sqrt(3)) - 1) < 0.02
    assert layer.bias.abs().max() <= bound and layer.bias.abs().max() > 0


@pytest.mark.parametrize("model_name,scheme", [("mlp", "normal"), ("mlp", "default"), ("cnn", "default"),
                                               ("cnn", "kaiming")])
def test_paired_seeds_share_initial_weights(cfg_factory, model_name, scheme):
    """Same seed, norm none vs batch: identical weights in every shared layer, even though the
    no-BN arm builds biases (and consumes the global RNG differently) and the BN arm norm layers."""
    shape = (1, 28, 28)
    models = {}
    for norm in ("none", "batch"):
        torch.manual_seed(123 if norm == "none" else 7)  # global state must not matter
        m = build_model(cfg_factory(f"model={model_name}", f"model.norm={norm}").model, shape, 10)
        init_weights(m, scheme, std=0.1, seed=5)
        models[norm] = m
    a, b = (weight_layers(models[n]) for n in ("none", "batch"))
    assert len(a) == len(b) >= 3
    for la, lb in zip(a, b):
        assert torch.equal(la.weight, lb.weight)
    other = build_model(cfg_factory(f"model={model_name}").model, shape, 10)
    init_weights(other, scheme, std=0.1, seed=6)
    assert not torch.equal(weight_layers(other)[0].weight, a[0].weight), "another seed, other weights"


def test_make_norm_exposes_bn_hyperparameters():
    bn = make_norm("batch", 7, dims=2, options={"bn": {"momentum": 0.3, "eps": 1e-3, "affine": False}})
    assert isinstance(bn, nn.BatchNorm2d) and bn.momentum == 0.3 and bn.eps == 1e-3 and bn.weight is None
    assert isinstance(make_norm("none", 7), nn.Identity)


def _model(*overrides, shape=(3, 32, 32)):
    from hydra import compose, initialize_config_dir

    from bnlab.models import build_model
    from bnlab.resolvers import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        m = compose("config", overrides=list(overrides)).model
    return build_model(m, shape, 10)


def test_resnet20_is_he_et_als_with_a_norm_slot_and_skipinit_without_one():
    from bnlab.models import count_parameters

    bn = _model("model=resnet20", "model.norm=batch")
    assert 260_000 < count_parameters(bn) < 280_000, "He et al.: 0.27M parameters"
    assert len(bn.weight_layers) == 20 and bn.weight_layers[-1] is bn.classifier
    assert bn(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert all(b.alpha is None for b in bn.blocks), "with a norm: the plain ResNet"
    plain = _model("model=resnet20")
    alphas = [b.alpha for b in plain.blocks]
    assert len(alphas) == 9 and all(a is not None and a.item() == 0 for a in alphas), "SkipInit: branches start at 0"
    x = torch.randn(2, 16, 32, 32).abs()
    block = plain.blocks[0]
    assert torch.equal(block(x), torch.relu(x)), "a SkipInit block starts as the identity (then ReLU)"
    for norm in ("layer", "group", "noisy_batch"):
        assert _model("model=resnet20", f"model.norm={norm}")(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_vgg_and_deep_mlp_follow_the_model_protocol():
    vgg = _model("model=vgg", "model.norm=batch", "model.width_multiplier=0.125")
    convs = [m for m in vgg.weight_layers if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8 and [c.out_channels for c in convs] == [8, 16, 32, 32, 64, 64, 64, 64]
    assert vgg(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert len(vgg.hidden_activations) == 8 and vgg.probe_activation is vgg.hidden_activations[-1]
    assert vgg.weight_layers[-1] is vgg.classifier
    deep = _model("model=deep_mlp", "model.depth=12", "model.norm=batch", shape=(1, 28, 28))
    assert len(deep.weight_layers) == 13 and len(deep.hidden_activations) == 12
    assert all(layer.bias is None for layer in deep.weight_layers[:-1]), "no bias before BN"


@pytest.mark.parametrize("placement, normed", [("all", [0, 1, 2]), ("first", [0]), ("last", [2])])
def test_norm_placement_puts_bn_in_the_chosen_hidden_layers_only(cfg_factory, placement, normed):
    """Issue 21's placement arms: a layer without the norm keeps its bias; the rest is the same net."""
    model = build_model(cfg_factory("model.norm=batch", f"model.norm_layers={placement}").model, (1, 28, 28), 10)
    assert [i for i, b in enumerate(model.blocks) if isinstance(b.norm, nn.BatchNorm1d)] == normed
    assert [b[0].bias is None for b in model.blocks] == [i in normed for i in range(3)]
    assert [n is not None for n in model.hidden_norms] == [i in normed for i in range(3)]
    reference = build_model(cfg_factory("model.norm=none").model, (1, 28, 28), 10)
    assert [tuple(w.weight.shape) for w in model.weight_layers] == [tuple(w.weight.shape) for w in reference.weight_layers]


def test_norm_placement_is_checked_and_neutral(cfg_factory):
    from bnlab.config import validate
    from bnlab.errors import ConfigError
    from bnlab.store import fingerprint, resolved_config

    with pytest.raises(ConfigError, match="model.norm_layers.*allowed: all, first, last"):
        validate(cfg_factory("model.norm_layers=middle"))
    with_key = resolved_config(cfg_factory("model.norm=batch"))
    without = {**with_key, "model": {k: v for k, v in with_key["model"].items() if k != "norm_layers"}}
    assert fingerprint(with_key) == fingerprint(without)
