"""K runs of one MLP trained as one stacked model (issue 23: many runs in one step).

A study's grid is many runs of the *same* MLP that differ in seed, learning rate or init.
On a CPU (and far more on a GPU) one small model's step is dominated by per-op overhead, so
K of them trained together cost much less per run-step than K one after another:

- the first layer reads one shared batch (runs of one seed sample the same batches) through
  one wide matmul, (B, D) @ (D, K·H); later layers are batched matmuls over the K runs;
- BatchNorm is one `batch_norm` over K·H channels: every channel has its own batch
  statistics and running statistics, so each run keeps its own, exactly as alone;
- the loss is the sum over runs of each run's mean cross-entropy, so each run's slice of
  every parameter gets the gradient it would get alone;
- `StackedSGD` is torch's SGD with a learning rate, momentum and weight decay per run.

Nothing here changes what a run computes: `StackedMLP.from_models` stacks K ordinary models
(built and initialised by bnlab.models / bnlab.layers, so each starts from the weights its
seed gives it alone) and `load_into` writes each run's slice back into its ordinary model,
where evaluation, probes and checkpoints work as for any run. Equal to separate runs up to
floating-point summation order (tests/test_stacked.py states the tolerance).

Supported: the MLP and deep MLP with norm `none` or `batch` (any `norm_layers`), any
activation, dropout (each run's masks drawn from its own generator, as alone). Anything else `why_not_stackable` names, and it trains as today.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bnlab.models import Classifier

STACKABLE_NORMS = (nn.BatchNorm1d,)


def why_not_stackable(models: list[nn.Module]) -> str | None:
    """None when the K models can be stacked; else the reason, in words."""
    if not models:
        return "no models"
    shapes = None
    for m in models:
        if not isinstance(m, Classifier) or len(m.features) != 1 or not isinstance(m.features[0], nn.Flatten):
            return "only the MLP and the deep MLP stack"
        kinds = []
        for layer in m._layers[1:]:
            if isinstance(layer, nn.Dropout):
                kinds.append(("dropout",))  # the rate may differ between runs; each draws its own masks
            elif isinstance(layer, nn.Linear):
                kinds.append(("linear", tuple(layer.weight.shape), layer.bias is not None))
            elif isinstance(layer, nn.BatchNorm1d):
                if not (layer.affine and layer.track_running_stats) or layer.momentum is None:
                    return "BatchNorm without affine, running statistics or a momentum does not stack"
                kinds.append(("bn", layer.num_features, layer.eps, layer.momentum))
            elif isinstance(layer, (nn.Sigmoid, nn.ReLU, nn.Tanh)):
                kinds.append(("act", type(layer)))
            else:
                return f"a {type(layer).__name__} layer does not stack"
        if shapes is None:
            shapes = kinds
        elif kinds != shapes:
            return "the runs differ in architecture"
    return None


class StackedMLP(nn.Module):
    """K MLPs of one architecture as one module: forward((B, D) or (K, B, D)) -> (K, B, classes)."""

    def __init__(self, models: list[Classifier]):
        super().__init__()
        reason = why_not_stackable(models)
        if reason:
            raise ValueError(f"cannot stack these runs: {reason}")
        self.k = len(models)
        self.plan: list[tuple] = []  # ("linear", index) / ("bn", index) / ("act", module)
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        self.gammas, self.betas = nn.ParameterList(), nn.ParameterList()
        self._bn: list[dict] = []
        layers = [m._layers[1:] for m in models]
        for pos, layer in enumerate(layers[0]):
            same = [ls[pos] for ls in layers]
            if isinstance(layer, nn.Linear):
                self.weights.append(nn.Parameter(torch.stack([s.weight.detach() for s in same]).clone()))
                has_bias = layer.bias is not None
                self.biases.append(nn.Parameter(torch.stack([s.bias.detach() for s in same]).clone())
                                   if has_bias else None)
                self.plan.append(("linear", len(self.weights) - 1, has_bias))
            elif isinstance(layer, nn.BatchNorm1d):
                i = len(self.gammas)
                self.gammas.append(nn.Parameter(torch.cat([s.weight.detach() for s in same]).clone()))
                self.betas.append(nn.Parameter(torch.cat([s.bias.detach() for s in same]).clone()))
                self.register_buffer(f"running_mean_{i}", torch.cat([s.running_mean for s in same]).clone())
                self.register_buffer(f"running_var_{i}", torch.cat([s.running_var for s in same]).clone())
                self._bn.append({"eps": layer.eps, "momentum": layer.momentum, "features": layer.num_features})
                self.plan.append(("bn", i))
            elif isinstance(layer, nn.Dropout):
                self.plan.append(("dropout", [float(m.p) for m in same]))
            else:
                self.plan.append(("act", layer))
        # each run's dropout masks come from its own generator (set_generators): by default the
        # global one, as for a run alone
        self.generators: list[torch.Generator | None] = [None] * self.k
        self.dropout_active = True  # off: BN in training mode, dropout as in eval (recalibration)
        self._fast: list[tuple] | None = None
        # BatchNorm's count of training batches (read only by a momentum-less BN, refused above;
        # kept so that each run's module ends with the count it would have alone)
        bns = [m for m in models[0]._layers if isinstance(m, nn.BatchNorm1d)]
        self.register_buffer("num_batches_tracked", bns[0].num_batches_tracked.detach().clone() if bns
                             else torch.zeros((), dtype=torch.long))

    @classmethod
    def from_models(cls, models: list[Classifier]) -> "StackedMLP":
        return cls(models)

    def _resolved(self) -> list[tuple]:
        """The plan with its tensors looked up once (a module attribute lookup costs microseconds,
        twenty of them a step were a third of a small stack's step); rebuilt after `.to()`."""
        if self._fast is None:
            fast = []
            for step in self.plan:
                if step[0] == "linear":
                    _, i, has_bias = step
                    fast.append(("linear", self.weights[i], self.biases[i] if has_bias else None))
                elif step[0] == "bn":
                    i = step[1]
                    fast.append(("bn", getattr(self, f"running_mean_{i}"), getattr(self, f"running_var_{i}"),
                                 self.gammas[i], self.betas[i], self._bn[i]))
                else:
                    fast.append(step)
            self._fast = fast
        return self._fast

    def _apply(self, fn, *args, **kwargs):
        self._fast = None  # buffers may be replaced (module.to)
        return super()._apply(fn, *args, **kwargs)

    def forward(self, x: torch.Tensor, per_run: bool = False) -> torch.Tensor:
        """`x`: one batch shared by every run (B, ...), or with `per_run` one batch per run
        (K, B, ...). The hidden state is kept as (B, K, H): the layout in which BatchNorm over
        K·H channels is a view."""
        k = self.k
        shared = not per_run
        training = self.training
        if training and self._bn:
            self.num_batches_tracked += 1
        h = None
        for step in self._resolved():
            kind = step[0]
            if kind == "linear":
                _, w, bias = step  # (K, out, in), (K, out)
                if h is None and shared:
                    flat = x.reshape(x.shape[0], -1)
                    h = flat @ w.reshape(k * w.shape[1], w.shape[2]).t()  # (B, K*out): one wide matmul
                    h = h.view(flat.shape[0], k, w.shape[1])
                else:
                    if h is None:
                        h = x.reshape(k, x.shape[1], -1).transpose(0, 1)  # (B, K, in)
                    h = torch.bmm(h.transpose(0, 1), w.transpose(1, 2)).transpose(0, 1)  # (B, K, out)
                if bias is not None:
                    h = h + bias
            elif kind == "bn":
                _, mean, var, gamma, beta, bn = step
                b, kk, c = h.shape
                h = F.batch_norm(h.reshape(b, kk * c), mean, var, gamma, beta, training, bn["momentum"],
                                 bn["eps"]).view(b, kk, c)
            elif kind == "dropout":
                if training and self.dropout_active:
                    h = h * self._masks(step[1], h)
            else:
                h = step[1](h)
        return h.transpose(0, 1)  # (K, B, classes)

    def _masks(self, rates: list[float], h: torch.Tensor) -> torch.Tensor:
        """Each run's dropout mask (B, K, H), drawn as torch's dropout draws it for a run alone
        (bernoulli(1 - p) over the run's (B, H) input, from the run's generator, divided by
        1 - p; nothing drawn at p = 0), so that a run of a seed draws the masks it draws alone."""
        b, _, c = h.shape
        masks = []
        for p, gen in zip(rates, self.generators):
            if p == 0:
                masks.append(torch.ones(b, c, dtype=h.dtype, device=h.device))
            elif p == 1:
                masks.append(torch.zeros(b, c, dtype=h.dtype, device=h.device))
            else:
                masks.append(torch.empty(b, c, dtype=h.dtype, device=h.device).bernoulli_(1 - p, generator=gen)
                             .div_(1 - p))
        return torch.stack(masks, dim=1)

    def losses(self, x: torch.Tensor, y: torch.Tensor, per_run: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Each run's mean cross-entropy (K,) and the logits; `y`: (B,) shared or (K, B)."""
        logits = self.forward(x, per_run)
        k, b, c = logits.shape
        targets = y.expand(k, b) if y.dim() == 1 else y
        per = F.cross_entropy(logits.reshape(k * b, c), targets.reshape(k * b), reduction="none")
        return per.view(k, b).mean(dim=1), logits

    def member_params(self, index: int, model: Classifier) -> list[tuple[nn.Parameter, nn.Parameter, str]]:
        """(stacked parameter, run `index`'s own parameter, "run" | "block") in the order of
        `self.parameters()`: "run" stacks the runs along the first dimension, "block" (BN's
        gamma and beta) concatenates them in K blocks."""
        linears = [m for m in model._layers if isinstance(m, nn.Linear)]
        bns = [m for m in model._layers if isinstance(m, nn.BatchNorm1d)]
        pairs = [(self.weights[i], lin.weight, "run") for i, lin in enumerate(linears)]
        pairs += [(self.biases[i], lin.bias, "run") for i, lin in enumerate(linears) if lin.bias is not None]
        pairs += [(self.gammas[i], bn.weight, "block") for i, bn in enumerate(bns)]
        pairs += [(self.betas[i], bn.bias, "block") for i, bn in enumerate(bns)]
        if [id(p) for p, _, _ in pairs] != [id(p) for p in self.parameters()]:
            raise AssertionError("the stacked parameters are not in the order member_params assumes")
        return pairs

    @torch.no_grad()
    def load_into(self, index: int, model: Classifier) -> None:
        """Write run `index`'s slice into its ordinary model (for evaluation, probes, checkpoints)."""
        linears = [m for m in model._layers if isinstance(m, nn.Linear)]
        bns = [m for m in model._layers if isinstance(m, nn.BatchNorm1d)]
        for i, lin in enumerate(linears):
            lin.weight.copy_(self.weights[i][index])
            if lin.bias is not None:
                lin.bias.copy_(self.biases[i][index])
        for i, bn in enumerate(bns):
            c = self._bn[i]["features"]
            sl = slice(index * c, (index + 1) * c)
            bn.weight.copy_(self.gammas[i][sl])
            bn.bias.copy_(self.betas[i][sl])
            bn.running_mean.copy_(getattr(self, f"running_mean_{i}")[sl])
            bn.running_var.copy_(getattr(self, f"running_var_{i}")[sl])
            bn.num_batches_tracked.copy_(self.num_batches_tracked)


class StackedSGD:
    """torch.optim.SGD (momentum, dampening 0, optional Nesterov, weight decay) with the rate,
    momentum and weight decay of each run: parameters whose first dimension (or, for the
    concatenated BN parameters, K equal blocks) is the run."""

    def __init__(self, stacked: StackedMLP, lr, momentum, weight_decay, nesterov: bool = False):
        self.stacked, self.k = stacked, stacked.k
        as_k = lambda v: torch.as_tensor(v, dtype=torch.float32).expand(self.k).clone()  # noqa: E731
        self.lr, self.momentum, self.weight_decay = as_k(lr), as_k(momentum), as_k(weight_decay)
        self.nesterov = nesterov
        self._decays, self._moves = bool((self.weight_decay != 0).any()), bool((self.momentum != 0).any())
        self.params = [p for p in stacked.parameters() if p is not None]
        self.bufs: list[torch.Tensor | None] = [None] * len(self.params)
        self._shape_values()

    def _per_run(self, v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """The per-run values (K,) shaped to broadcast against `p`."""
        if p.dim() == 1:  # BN's gamma/beta: K blocks of C
            return v.repeat_interleave(p.shape[0] // self.k).to(p.device)
        return v.view(self.k, *([1] * (p.dim() - 1))).to(p.device)

    def _shape_values(self) -> None:
        """Each parameter's rates, momenta and decays, shaped once (not at every step)."""
        self._lr = [self._per_run(self.lr, p) for p in self.params]
        self._mom = [self._per_run(self.momentum, p) for p in self.params]
        self._wd = [self._per_run(self.weight_decay, p) for p in self.params]

    def set_lr(self, rates) -> None:
        """New per-run rates (a schedule's step)."""
        self.lr = torch.as_tensor(rates, dtype=torch.float32).expand(self.k).clone()
        self._lr = [self._per_run(self.lr, p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """One step; `active` (K,) bool: runs that stopped (diverged) keep their slice frozen."""
        for j, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad
            if self._decays:
                g = g.add(p * self._wd[j])
            if self._moves:
                if self.bufs[j] is None:
                    self.bufs[j] = g.detach().clone()
                else:
                    self.bufs[j].mul_(self._mom[j]).add_(g)
                g = g.add(self.bufs[j] * self._mom[j]) if self.nesterov else self.bufs[j]
            update = g * self._lr[j]
            if active is not None:  # where, not a product: a stopped run's update may be NaN
                update = torch.where(self._per_run(active, p), update, torch.zeros((), dtype=update.dtype))
            p.sub_(update)
