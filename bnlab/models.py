"""The networks, each built from the same factories so that arms differ only in the norm.

    mlp        Ioffe & Szegedy's MLP (hidden widths a list)
    deep_mlp   a plain MLP of `depth` hidden layers of `width` (for init x depth)
    cnn        a LeNet-like CNN
    vgg        Santurkar et al.'s VGG for CIFAR-10 (VGG-11/13/16), a width multiplier for CPUs
    resnet20   He et al.'s ResNet-20 for CIFAR-10 with a norm slot; without a norm, SkipInit

The model protocol — what the probes and the init see of a model, and all they see:
    weight_layers        the Linear and Conv layers in forward order, the classifier last
    hidden_activations   the activation module of every hidden layer, in forward order
                         (conv and dense; in a ResNet, both of every block's)
    hidden_norms         the norm layer feeding each of them, or None (no norm, or none found)
    probe_activation     the one Ioffe & Szegedy's Fig. 1(b,c) watches: the last hidden one
    classifier           the final Linear layer
Every hidden block is `affine -> norm -> activation [-> dropout]`. When the norm subtracts a
mean, the affine layer's bias is redundant and is dropped, as in the paper.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bnlab.config_checks import choice, get, int_list, integer, number
from bnlab.errors import ConfigError
from bnlab.layers import ACTIVATIONS, make_act, weight_layers
from bnlab.norms import make_norm, norm_has_shift

DROPOUT_PLACEMENTS = ("after_each_activation", "before_classifier")
# which hidden layers of the MLP carry the norm: every one (the paper's BN), the first only, the
# last only. The input is standardized in every arm (bnlab.data), so norm=none is "input only".
NORM_LAYERS = ("all", "first", "last")


class Block(nn.Sequential):
    """affine -> norm -> activation -> dropout, holding only the layers that do something.

    No Identity placeholders: on a small MLP every extra module call is a measurable share
    of a training step.
    """

    def __init__(self, affine: nn.Module, norm: nn.Module | None, act: nn.Module, dropout: float):
        layers = [affine] + ([norm] if norm is not None else []) + [act]
        self.act_index = len(layers) - 1
        super().__init__(*layers, *([nn.Dropout(dropout)] if dropout > 0 else []))

    @property
    def act(self) -> nn.Module:
        return self[self.act_index]

    @property
    def norm(self) -> nn.Module | None:
        return self[1] if self.act_index == 2 else None


class Network(nn.Module):
    """The model protocol (module docstring): bnlab.probes and bnlab.layers use only these."""

    @property
    def weight_layers(self) -> list[nn.Module]:
        """Linear and Conv layers in forward order, the classifier last."""
        return weight_layers(self)

    @property
    def hidden_activations(self) -> list[nn.Module]:
        """The activation module of every hidden layer, in forward order (module order)."""
        acts = tuple(ACTIVATIONS.values())
        return [m for m in self.modules() if isinstance(m, acts)]

    @property
    def hidden_norms(self) -> list[nn.Module | None]:
        """The norm layer feeding each hidden activation (aligned with hidden_activations), or
        None where there is none: the module registered just before the activation in the
        same parent, unless that is a weight layer or an Identity."""
        weights = (nn.Linear, nn.Conv2d, nn.Identity)
        before: dict[int, nn.Module | None] = {}
        for parent in self.modules():
            children = list(parent.children())
            for prev, child in zip([None, *children], children):
                before[id(child)] = None if prev is None or isinstance(prev, weights) else prev
        return [before.get(id(a)) for a in self.hidden_activations]

    @property
    def probe_activation(self) -> nn.Module:
        """The last hidden activation (Ioffe & Szegedy's Fig. 1(b,c) unit)."""
        return self.hidden_activations[-1]

    @property
    def classifier(self) -> nn.Linear:
        raise NotImplementedError


class Classifier(Network):
    """Feature layers, hidden blocks, then a linear classifier. `probe_activation` is the
    activation of the last hidden block."""

    def __init__(self, features: nn.Sequential, blocks: Sequence[Block], head: nn.Linear):
        super().__init__()
        self.features = features
        self.blocks = nn.Sequential(*blocks)
        self.head = head
        # forward walks the leaf layers directly: nested Sequential calls cost time per step
        self._layers = [*features, *[layer for block in blocks for layer in block], head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self._layers:
            x = layer(x)
        return x

    @property
    def classifier(self) -> nn.Linear:
        return self.head


def _norm_or_none(m, features: int, dims: int) -> nn.Module | None:
    """The configured norm layer, or None when there is none (so no Identity is inserted)."""
    if m.norm == "none":
        return None
    options = {k: dict(m[k]) for k in ("bn", "ln", "gn", "noise") if m.get(k) is not None}
    return make_norm(m.norm, features, dims, options)


def _block_dropout(i: int, n_blocks: int, p: float, placement: str) -> float:
    if placement == "after_each_activation":
        return p
    return p if i == n_blocks - 1 else 0.0


def _has_norm(i: int, n_blocks: int, placement: str) -> bool:
    """Whether dense block i of n carries the norm (model.norm_layers; NORM_LAYERS)."""
    return placement == "all" or (placement == "first" and i == 0) or (placement == "last" and i == n_blocks - 1)


def _dense_blocks(in_features: int, widths: Sequence[int], m) -> list[Block]:
    # the MLP's model.norm_layers places the norm; the dense heads of the conv nets have it everywhere
    placement = m.get("norm_layers", "all")
    blocks, prev = [], in_features
    for i, width in enumerate(widths):
        normed = _has_norm(i, len(widths), placement)
        blocks.append(Block(
            nn.Linear(prev, width, bias=not (normed and norm_has_shift(m.norm))),
            _norm_or_none(m, width, 1) if normed else None,
            make_act(m.activation),
            _block_dropout(i, len(widths), m.dropout, m.dropout_placement),
        ))
        prev = width
    return blocks


def build_mlp(m, in_shape: Sequence[int], num_classes: int) -> Classifier:
    in_features = math.prod(in_shape)  # plain ints: the model can also be built on the meta device
    blocks = _dense_blocks(in_features, m.widths, m)
    return Classifier(nn.Sequential(nn.Flatten()), blocks, nn.Linear(m.widths[-1], num_classes))


def build_cnn(m, in_shape: Sequence[int], num_classes: int) -> Classifier:
    bias = not norm_has_shift(m.norm)
    layers: list[nn.Module] = []
    prev = in_shape[0]
    for ch in m.channels:
        layers += [
            nn.Conv2d(prev, ch, m.kernel_size, padding=m.kernel_size // 2, bias=bias),
            _norm_or_none(m, ch, 2),
            make_act(m.activation),
            nn.MaxPool2d(2),
        ]
        layers = [layer for layer in layers if layer is not None]
        prev = ch
    layers.append(nn.Flatten())
    features = nn.Sequential(*layers)
    with torch.no_grad():
        flat = features.eval()(torch.zeros(2, *in_shape)).shape[1]
    features.train()
    blocks = _dense_blocks(flat, m.widths, m)
    return Classifier(features, blocks, nn.Linear(m.widths[-1], num_classes))


def build_deep_mlp(m, in_shape: Sequence[int], num_classes: int) -> Classifier:
    """`depth` hidden layers of `width`, no skips (Yang et al. 2019's setting for BN at depth)."""
    in_features = math.prod(in_shape)  # plain ints: the model can also be built on the meta device
    widths = [m.width] * m.depth
    return Classifier(nn.Sequential(nn.Flatten()), _dense_blocks(in_features, widths, m),
                      nn.Linear(widths[-1], num_classes))


# VGG configurations (Simonyan & Zisserman 2015): conv3x3 channels, "M" a 2x2 max-pool
VGG_LAYERS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def vgg_channels(m) -> list:
    """The VGG's conv channels scaled by the width multiplier (at least 1), pools as "M"."""
    return [v if v == "M" else max(1, round(v * m.width_multiplier)) for v in VGG_LAYERS[m.depth]]


def build_vgg(m, in_shape: Sequence[int], num_classes: int) -> Classifier:
    """conv3x3 -> norm -> activation blocks with max-pools (5 pools: 32x32 -> 1x1), then
    optional dense blocks (`widths`) and the classifier, as Santurkar et al.'s CIFAR VGG."""
    bias = not norm_has_shift(m.norm)
    layers: list[nn.Module] = []
    prev = in_shape[0]
    for v in vgg_channels(m):
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        layers += [nn.Conv2d(prev, v, 3, padding=1, bias=bias), _norm_or_none(m, v, 2), make_act(m.activation)]
        prev = v
    layers = [layer for layer in layers if layer is not None] + [nn.Flatten()]
    features = nn.Sequential(*layers)
    with torch.no_grad():
        flat = features.eval()(torch.zeros(2, *in_shape)).shape[1]
    features.train()
    widths = list(m.widths)
    blocks = _dense_blocks(flat, widths, m)
    if m.dropout > 0 and not widths:  # no dense block to carry it: dropout before the classifier
        features.append(nn.Dropout(m.dropout))
    return Classifier(features, blocks, nn.Linear(widths[-1] if widths else flat, num_classes))


class BasicBlock(nn.Module):
    """He et al.'s basic block: conv3x3 -> norm -> act -> conv3x3 -> norm, plus the shortcut,
    then act. The shortcut is He et al.'s option A (identity; at a stride, subsampled and
    zero-padded channels), which keeps ResNet-20 at 0.27M parameters. With SkipInit (De &
    Smith 2020) the residual branch is scaled by a learnable scalar that starts at 0, so a
    deep net without normalization starts as (nearly) the identity and still trains."""

    def __init__(self, cin: int, cout: int, stride: int, m, skipinit: bool):
        super().__init__()
        bias = not norm_has_shift(m.norm)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=bias)
        self.norm1 = _norm_or_none(m, cout, 2) or nn.Identity()
        self.act1 = make_act(m.activation)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=bias)
        self.norm2 = _norm_or_none(m, cout, 2) or nn.Identity()
        self.act2 = make_act(m.activation)
        self.stride, self.pad = stride, cout - cin
        self.alpha = nn.Parameter(torch.zeros(())) if skipinit else None

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        if self.alpha is not None:
            out = self.alpha * out
        return self.act2(out + self.shortcut(x))


class ResNet(Network):
    """He et al. (2016) ResNet for CIFAR-10: a conv stem, three stages of `blocks_per_stage`
    basic blocks at width, 2 x width, 4 x width channels (16/32/64 for ResNet-20), global
    average pooling and the classifier."""

    def __init__(self, m, in_shape: Sequence[int], num_classes: int, blocks_per_stage: int = 3):
        super().__init__()
        skipinit = m.norm == "none" if m.skipinit == "auto" else bool(m.skipinit)
        w = m.width
        self.stem = nn.Sequential(*[layer for layer in (
            nn.Conv2d(in_shape[0], w, 3, 1, 1, bias=not norm_has_shift(m.norm)),
            _norm_or_none(m, w, 2), make_act(m.activation)) if layer is not None])
        blocks, cin = [], w
        for stage, cout in enumerate((w, 2 * w, 4 * w)):
            for b in range(blocks_per_stage):
                blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and b == 0 else 1, m, skipinit))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  *([nn.Dropout(m.dropout)] if m.dropout > 0 else []))
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.blocks(self.stem(x))))

    @property
    def classifier(self) -> nn.Linear:
        return self.head


def build_resnet20(m, in_shape: Sequence[int], num_classes: int) -> ResNet:
    return ResNet(m, in_shape, num_classes, blocks_per_stage=3)


# ---------------------------------------------------------------- each model's own config keys
# check(cfg, side): its keys in the composed config, for images whose smaller side is `side`;
# run by bnlab.config.validate after the keys every model shares.

def _check_mlp(cfg, side: int) -> None:
    int_list(cfg, "model.widths")
    choice(cfg, "model.norm_layers", NORM_LAYERS)


def _check_deep_mlp(cfg, side: int) -> None:
    integer(cfg, "model.depth", lo=1)
    integer(cfg, "model.width", lo=1)


def _check_cnn(cfg, side: int) -> None:
    int_list(cfg, "model.widths")
    channels = int_list(cfg, "model.channels")
    stages = side.bit_length() - 1  # each conv stage halves the image with a 2x2 pooling
    if len(channels) > stages:
        raise ConfigError("model.channels", f"got {len(channels)} conv stages; a {side}x{side} image "
                          f"allows at most {stages} (each halves it)")
    k = integer(cfg, "model.kernel_size", lo=1, hi=side)
    if k % 2 == 0:
        raise ConfigError("model.kernel_size", f"got {k}; must be an odd integer >= 1 and <= {side}")


def _check_vgg(cfg, side: int) -> None:
    choice(cfg, "model.depth", tuple(VGG_LAYERS))
    number(cfg, "model.width_multiplier", lo=0, hi=8, lo_open=True)
    int_list(cfg, "model.widths", allow_empty=True)
    pools = VGG_LAYERS[cfg.model.depth].count("M")
    if side < 2 ** pools:
        raise ConfigError("model", f"vgg halves the image {pools} times and needs at least "
                          f"{2 ** pools}x{2 ** pools}; data={cfg.data.name} has {side}x{side} (use data=cifar10)")


def _check_resnet20(cfg, side: int) -> None:
    integer(cfg, "model.width", lo=1)
    if get(cfg, "model.skipinit") not in ("auto", True, False):
        raise ConfigError("model.skipinit", f"got {get(cfg, 'model.skipinit')!r}; allowed: auto, true, false")


# ---------------------------------------------------------------- the model registry

@dataclass(frozen=True)
class Model:
    """One entry of the model registry: everything the code knows about a model."""

    build: Callable[..., nn.Module]
    """(model config, input shape, number of classes) -> the network (the model protocol)."""
    hidden_widths: Callable[..., list[int]]
    """model config -> the units (channels) of every hidden layer: the probes' units must
    exist in the narrowest."""
    check: Callable[..., None]
    """(composed config, smaller image side) -> None, or ConfigError for its first bad key."""


MODELS: dict[str, Model] = {
    "mlp": Model(build_mlp, lambda m: list(m.widths), _check_mlp),
    "deep_mlp": Model(build_deep_mlp, lambda m: [m.width] * m.depth, _check_deep_mlp),
    "cnn": Model(build_cnn, lambda m: [*m.channels, *m.widths], _check_cnn),
    "vgg": Model(build_vgg, lambda m: [v for v in vgg_channels(m) if v != "M"] + list(m.widths), _check_vgg),
    "resnet20": Model(build_resnet20, lambda m: [m.width, 2 * m.width, 4 * m.width], _check_resnet20),
}
MODEL_NAMES = tuple(MODELS)  # the allowed values of model.name


def hidden_widths(m) -> list[int]:
    """The units (channels) of every hidden layer the model config `m` builds."""
    return MODELS[m.name].hidden_widths(m)


def build_model(m, in_shape: Sequence[int], num_classes: int) -> Network:
    """The model named by `m.name` from the `model` config node."""
    return MODELS[m.name].build(m, in_shape, num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
