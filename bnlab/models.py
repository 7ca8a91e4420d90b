"""The networks: an MLP (Ioffe & Szegedy layout) and a LeNet-like CNN.

Every hidden block is `affine -> norm -> activation [-> dropout]`. When the norm layer
subtracts the mean (BN), the affine layer's bias is redundant and is dropped, as in the
paper. The activation of the last hidden block is where the activation-input probe looks.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from bnlab.layers import ACTIVATIONS, make_act, weight_layers
from bnlab.norms import make_norm, norm_has_shift

MODELS = ("mlp", "cnn")
DROPOUT_PLACEMENTS = ("after_each_activation", "before_classifier")


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


class Classifier(nn.Module):
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

    # What the probes see of a model (bnlab.probes uses only these):
    @property
    def weight_layers(self) -> list[nn.Module]:
        """Linear and Conv layers in forward order, the classifier last."""
        return weight_layers(self)

    @property
    def hidden_activations(self) -> list[nn.Module]:
        """The activation module of every hidden layer (conv and dense), in forward order."""
        acts = tuple(ACTIVATIONS.values())
        return [m for m in self._layers if isinstance(m, acts)]

    @property
    def probe_activation(self) -> nn.Module:
        """The activation of the last hidden block (Ioffe & Szegedy's Fig. 1(b,c) unit)."""
        return self.blocks[-1].act


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


def _dense_blocks(in_features: int, widths: Sequence[int], m) -> list[Block]:
    bias = not norm_has_shift(m.norm)
    blocks, prev = [], in_features
    for i, width in enumerate(widths):
        blocks.append(Block(
            nn.Linear(prev, width, bias=bias),
            _norm_or_none(m, width, 1),
            make_act(m.activation),
            _block_dropout(i, len(widths), m.dropout, m.dropout_placement),
        ))
        prev = width
    return blocks


def build_mlp(m, in_shape: Sequence[int], num_classes: int) -> Classifier:
    in_features = int(torch.tensor(in_shape).prod())
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


def build_model(m, in_shape: Sequence[int], num_classes: int) -> Classifier:
    """The model named by `m.name` from the `model` config node."""
    builders = {"mlp": build_mlp, "cnn": build_cnn}
    return builders[m.name](m, in_shape, num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
