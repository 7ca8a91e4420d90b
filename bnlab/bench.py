"""bnlab-bench: the trainer's time per step against a minimal hand-written PyTorch loop.

Both loops train the default MLP (Ioffe & Szegedy Fig. 1: 784-100-100-100-10, sigmoid,
batch 60, SGD) on the same MNIST tensors on the same device. The minimal loop is what a
researcher would write by hand: index a batch, forward, loss, backward, step. The trainer
adds train-metric accumulation, logging, divergence checks and timing; its evaluation time
is excluded from its step time, as it is in every run's `step_time_ms`.

    bnlab-bench [--steps N] [--repeats R] [--norm none batch] [--device auto] [--threads T]

Prints one line per measurement and the ratio trainer / minimal (target: <= 1.15).

    bnlab-bench --stacked [K ...] [--steps N] [--repeats R]

prints one table: per run-step, the trainer (one run), the minimal loop (one run) and K runs
trained as one stacked model (bnlab.stacked; K = 1, 2, 4, ..., 64), with the speed-up over
the trainer's one run at a time (target on a 2-core CPU, one thread: >= 1.8 for K >= 8).

    bnlab-bench --startup RUNS [--sweep-steps 1000]

times a sweep of RUNS short jobs on two workers and splits a job's time into its training,
the rest of its run, and its start-up (the fixed cost a short job pays).

    bnlab-bench --sweep [--sweep-runs 8] [--sweep-steps 10000]

times the same sweep (the quickstart study widened to --sweep-runs runs) three ways, each a
real `bnlab-train` multirun: one job at a time with one torch thread, one job at a time
with all cores' threads, and one single-thread job per core in parallel; it prints the
commands and the throughput ratios (target for parallel vs one at a time: >= 1.7).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import time
from pathlib import Path

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
from bnlab.trainer import Hooks, LoopSpec, train


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
    init_weights(model, cfg.init.scheme, cfg.init.std, cfg.init.gain, seed=cfg.seed)
    opt = make_optimizer(cfg.optim, model)
    cfg.trainer.max_steps = steps
    cfg.trainer.eval_every = steps
    records = []
    spec = dataclasses.replace(LoopSpec.from_config(cfg), augment=False)  # the step alone, as the other timings
    result = train(model, opt, data, spec, Hooks(emit=records.append))
    return result["step_time_ms"]


def stacked_loop(cfg, data, k: int, steps: int) -> float:
    """ms per *run*-step of K runs of `cfg`'s model (rates spread over a grid, one seed, so the
    batches are shared) trained as one stacked model (bnlab.stacked)."""
    from bnlab.stacked import StackedMLP, StackedSGD

    models = []
    for i in range(k):
        torch.manual_seed(cfg.seed)
        m = build_model(cfg.model, data.in_shape, data.num_classes)
        init_weights(m, cfg.init.scheme, cfg.init.std, cfg.init.gain, seed=cfg.seed + i)
        models.append(m)
    stacked = StackedMLP.from_models(models).to(data.train_x.device)
    opt = StackedSGD(stacked, [cfg.optim.lr * 2 ** (i % 4 - 2) for i in range(k)], cfg.optim.momentum,
                     cfg.optim.weight_decay)
    sampler = BatchSampler(len(data.train_x), cfg.optim.batch_size, cfg.seed, data.train_x.device)
    sync = torch.cuda.synchronize if data.train_x.is_cuda else (lambda: None)

    def step():
        idx = sampler.next()
        losses, _ = stacked.losses(data.train_x[idx], data.train_y[idx])
        opt.zero_grad()
        losses.sum().backward()
        opt.step()

    for _ in range(20):  # warm-up
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return 1000 * (time.perf_counter() - t0) / steps / k


def bench_stacked(base, data, norms, ks, steps: int, repeats: int) -> None:
    """One table: per run-step, the trainer (one run), the minimal loop (one run) and a stack
    of K runs, and the stack's speed-up over one run at a time (the trainer)."""
    print(f"{'norm':6s} {'engine':22s} {'ms per run-step':>16s} {'speed-up':>9s}")
    for norm in norms:
        cfg = base.copy()
        cfg.model.norm = norm
        trainer = statistics.median(trainer_loop(cfg.copy(), data, steps) for _ in range(repeats))
        minimal = statistics.median(minimal_loop(data, norm, cfg.optim.lr, cfg.optim.batch_size, steps, cfg.seed)
                                    for _ in range(repeats))
        print(f"{norm:6s} {'trainer, one run':22s} {trainer:16.3f} {1.0:9.2f}")
        print(f"{norm:6s} {'minimal loop, one run':22s} {minimal:16.3f} {trainer / minimal:9.2f}")
        for k in ks:
            t = statistics.median(stacked_loop(cfg, data, k, max(50, steps // max(1, k // 4)))
                                  for _ in range(repeats))
            print(f"{norm:6s} {f'stacked, K = {k}':22s} {t:16.3f} {trainer / t:9.2f}", flush=True)


def sweep_wall_time(n_jobs: int, threads: int, runs: int, steps: int, root: str) -> float:
    """Seconds for a whole `bnlab-train` multirun of `runs` quickstart runs."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "bnlab.train", "experiments=quickstart",
           f"name=bench_{n_jobs}x{threads}", f"seed=range(0,{runs // 2})",
           f"hydra.launcher.n_jobs={n_jobs}", f"trainer.num_threads={threads}",
           f"trainer.max_steps={steps}", "trainer.eval_every=1000", "tracking.mode=disabled",
           f"paths.results={root}"]
    print("$", " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ})
    return time.perf_counter() - t0


def bench_startup(runs: int, steps: int, n_jobs: int) -> None:
    """What a sweep job costs beyond its training steps: one real `bnlab-train` multirun of
    `runs` quickstart jobs of `steps` steps on `n_jobs` workers, read back from the runs'
    summaries. Per job: the sweep's wall clock times the workers over the jobs (each worker's
    share), the run's own wall time (from its folder's creation to its summary: evaluations,
    probes and logging included) and its training time; the difference between the first and
    the last is the fixed cost of a job (worker start-up, imports, data, Hydra's job set-up)."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        cmd = [sys.executable, "-m", "bnlab.train", "-m", "experiments=quickstart", "name=startup",
               f"seed=range(0,{runs // 2})", f"hydra.launcher.n_jobs={n_jobs}", "trainer.num_threads=1",
               f"trainer.max_steps={steps}", f"trainer.eval_every={steps}", "tracking.mode=disabled",
               "trainer.progress=false", f"paths.results={root}"]
        print("$", " ".join(cmd[1:]), flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
        wall = time.perf_counter() - t0
        summaries = [json.loads(p.read_text()) for p in Path(root).rglob("summary.json")]
    n = len(summaries)
    share = wall * n_jobs / n
    run_wall = statistics.mean(s["wall_time_s"] for s in summaries)
    train = statistics.mean(s["train_time_s"] for s in summaries)
    print(f"{n} jobs x {steps} steps on {n_jobs} workers: sweep {wall:.1f} s; per job: {share:.2f} s of a "
          f"worker, of which the run {run_wall:.2f} s (training {train:.2f} s, evaluation and logging "
          f"{run_wall - train:.2f} s) and {share - run_wall:.2f} s outside the run (start-up: workers, "
          f"imports, data, job set-up); fixed cost per job {share - train:.2f} s")


def bench_sweep(runs: int, steps: int) -> None:
    import os
    import tempfile

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as root:
        serial_1 = sweep_wall_time(1, 1, runs, steps, root)
        serial_all = sweep_wall_time(1, cores, runs, steps, root)
        parallel = sweep_wall_time(cores, 1, runs, steps, root)
    print(f"{runs} runs x {steps} steps on {cores} cores: one at a time, 1 thread {serial_1:.1f} s; "
          f"one at a time, {cores} threads {serial_all:.1f} s; {cores} parallel jobs x 1 thread "
          f"{parallel:.1f} s")
    print(f"throughput parallel / serial(1 thread) = {serial_1 / parallel:.2f}x; "
          f"parallel / serial({cores} threads) = {serial_all / parallel:.2f}x")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sweep", action="store_true", help="time parallel against serial sweeps")
    ap.add_argument("--sweep-runs", type=int, default=8)
    ap.add_argument("--sweep-steps", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--norm", nargs="+", default=["none", "batch"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--startup", type=int, default=None, metavar="RUNS",
                    help="time a sweep of RUNS short quickstart jobs (--sweep-steps steps, 2 workers) and "
                         "split each job's time into training, the rest of the run, and start-up")
    ap.add_argument("--stacked", type=int, nargs="*", metavar="K",
                    help="per run-step time of K runs stacked into one model (bnlab.stacked), for each K "
                         "(default 1 2 4 8 16 32 64), beside the trainer and the minimal loop")
    args = ap.parse_args(argv)
    if args.sweep:
        return bench_sweep(args.sweep_runs, args.sweep_steps)
    if args.startup:
        return bench_startup(args.startup, args.sweep_steps, 2)
    logging.disable(logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        base = compose("config", overrides=["tracking.mode=disabled", "trainer.progress=false",
                                            "probes.act_input.enabled=false"])
    device = resolve_device(args.device)
    data = load_data(base.data, device)
    if args.stacked is not None:
        print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
              f"Ioffe MLP, batch {base.optim.batch_size}, median of {args.repeats}")
        return bench_stacked(base, data, args.norm, args.stacked or [1, 2, 4, 8, 16, 32, 64], args.steps,
                             args.repeats)
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
