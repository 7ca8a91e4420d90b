"""The recalibrated readout: every BN layer's statistics gathered afresh on clean training
batches, then the network evaluated with them — the readout of the network that was trained.

Why: in eval mode BN uses running statistics, an exponential average over the training steps.
They lag the weights (at a high rate the last steps moved the weights more than the average
follows), and with Santurkar et al.'s noisy BN they were gathered on *noised* inputs while the
eval-mode network runs without the noise: the network evaluated is not the one trained.
Recalibrating (Ioffe & Szegedy 2015, Alg. 2, step 10: the population statistics of the
trained network; "precise BN" in Wu & Johnson 2021) removes both effects.

How, at every evaluation (the clock is stopped, as for every evaluation): each BN layer's
running statistics are reset and re-estimated as the plain average (momentum None) over
`batches` fixed batches of training images, with BN in train mode and every other layer in
eval mode (noise and dropout off); then validation and test are evaluated in eval mode; then
every BN layer's running statistics and momentum are put back, so training is untouched
(tested). The batches are drawn once, with their own generator from the run's seed: the same
images at every evaluation and for every arm of a seed.

Keys: recal/val/loss, recal/val/acc, recal/test/loss, recal/test/acc. A network with no BN
layer has nothing to recalibrate and records none of them (its readout is the plain one).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnlab.evaluation import evaluate
from bnlab.rng import derived_seed

PREFIX = "recal/"


def batch_norms(model: nn.Module) -> list[_BatchNorm]:
    """The layers whose eval-mode output depends on running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


class BNRecalibration:
    """An evaluation probe (bnlab.probes.Probe): the recalibrated eval-mode readout."""

    def __init__(self, data, batches: int, batch_size: int, seed: int, eval_batch_size: int):
        g = torch.Generator().manual_seed(derived_seed("recalibration", seed, 0))
        self.index = torch.randint(len(data.train_x), (batches, batch_size), generator=g).to(data.train_x.device)
        self.data, self.eval_batch_size = data, eval_batch_size
        self.splits = {"val": (data.val_x, data.val_y), "test": (data.test_x, data.test_y)}

    @torch.no_grad()
    def recalibrate(self, model: nn.Module) -> None:
        """Re-estimate every BN layer's statistics on the fixed clean batches (in place)."""
        norms = batch_norms(model)
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # the plain average over the batches, not an exponential one
        for m in model.modules():  # BN as in training, everything else (noise, dropout) as in eval
            m.training = isinstance(m, _BatchNorm)
        for idx in self.index:
            model(self.data.train_x[idx])

    def measure(self, model: nn.Module, step: int | None = None) -> dict[str, float]:
        norms = batch_norms(model)
        if not norms:
            return {}
        saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
                 for m in norms]
        was_training = model.training
        out: dict[str, float] = {}
        try:
            self.recalibrate(model)
            for split, (x, y) in self.splits.items():
                if len(x):
                    out[f"{PREFIX}{split}/loss"], out[f"{PREFIX}{split}/acc"] = evaluate(model, x, y, self.eval_batch_size)
        finally:
            with torch.no_grad():
                for m, (mean, var, tracked, momentum) in zip(norms, saved):
                    m.running_mean.copy_(mean)
                    m.running_var.copy_(var)
                    m.num_batches_tracked.copy_(tracked)
                    m.momentum = momentum
            model.train(was_training)
        return out
