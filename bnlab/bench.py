"""bnlab-bench: the trainer's time per step against a minimal hand-written PyTorch loop.

Both loops train the default MLP (Ioffe & Szegedy Fig. 1: 784-100-100-100-10, sigmoid,
batch 60, SGD) on the same MNIST tensors on the same device. The minimal loop is what a
researcher would write by hand: index a batch, forward, loss, backward, step. The trainer
adds train-metric accumulation, logging, divergence checks and timing; its evaluation time
is excluded from its step time, as it is in every run's `step_time_ms`.

    bnlab-bench [--steps N] [--repeats R] [--norm none batch] [--device auto] [--threads T]

Prints one line per measurement and the ratio trainer / minimal (target: <= 1.15).
"""
from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch import nn

import bnlab  # noqa: F401
from bnlab.data import BatchSampler, load_data
from bnlab.environment import resolve_device
from bnlab.layers import init_weights
from bnlab.models import build_model
from bnlab.optimizers import make_optimizer
from bnlab.resolvers import CONF_DIR
from bnlab.trainer import train


def minimal_loop(data, norm: str, lr: float, batch_size: int, steps: int, seed: int) -> float:
    """ms per step of a hand-written loop with a hand-written model."""
    torch.manual_seed(seed)
    bn = norm == "batch"

    def block(i, o):
        return [nn.Linear(i, o, bias=not bn), *([nn.BatchNorm1d(o)] if bn else []), nn.Sigmoid()]

    model = nn.Sequential(nn.Flatten(), *block(784, 100), *block(100, 100), *block(100, 100),
                          nn.Linear(100, 10)).to(data.train_x.device)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sampler = BatchSampler(len(data.train_x), batch_size, seed, data.train_x.device)
    sync = torch.cuda.synchronize if data.train_x.is_cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = sampler.next()
        loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    return 1000 * (time.perf_counter() - t0) / steps


def trainer_loop(cfg, data, steps: int) -> float:
    """ms per step as the bnlab trainer measures and reports it."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.in_shape, data.num_classes).to(data.train_x.device)
    init_weights(model, cfg.init.scheme, cfg.init.std, cfg.init.gain)
    opt = make_optimizer(cfg.optim, model)
    cfg.trainer.max_steps = steps
    cfg.trainer.eval_every = steps
    records = []
    result = train(model, opt, data, cfg.trainer, seed=cfg.seed, augment=False,
                   batch_size=cfg.optim.batch_size, emit=records.append)
    return result["step_time_ms"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--norm", nargs="+", default=["none", "batch"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    logging.disable(logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        base = compose("config", overrides=["tracking.mode=disabled", "trainer.progress=false",
                                            "probes.act_input.enabled=false"])
    device = resolve_device(args.device)
    data = load_data(base.data, device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{args.steps} steps x {args.repeats} repeats (interleaved), median ms/step")
    for norm in args.norm:
        cfg = base.copy()
        cfg.model.norm = norm
        mins, trains = [], []
        minimal_loop(data, norm, cfg.optim.lr, cfg.optim.batch_size, 200, cfg.seed)  # warm-up
        for _ in range(args.repeats):
            mins.append(minimal_loop(data, norm, cfg.optim.lr, cfg.optim.batch_size, args.steps, cfg.seed))
            trains.append(trainer_loop(cfg, data, args.steps))
        m, t = statistics.median(mins), statistics.median(trains)
        print(f"norm={norm:5s}  minimal {m:.3f} ms  trainer {t:.3f} ms  ratio {t / m:.3f}  "
              f"(minimal runs {', '.join(f'{v:.3f}' for v in mins)}; "
              f"trainer runs {', '.join(f'{v:.3f}' for v in trains)})")


if __name__ == "__main__":
    main()
