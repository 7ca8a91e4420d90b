"""bnlab-bench: the trainer's time per step against a minimal hand-written PyTorch loop.

Both loops train the default MLP (Ioffe & Szegedy Fig. 1: 784-100-100-100-10, sigmoid,
batch 60, SGD) on the same MNIST tensors on the same device. The minimal loop is what a
researcher would write by hand: index a batch, forward, loss, backward, step. The trainer
adds train-metric accumulation, logging, divergence checks and timing; its evaluation time
is excluded from its step time, as it is in every run's `step_time_ms`.

    bnlab-bench [--steps N] [--repeats R] [--norm none batch] [--device auto] [--threads T]

Prints one line per measurement and the ratio trainer / minimal (target: <= 1.15).

    bnlab-bench --stacked [K ...] [--steps N] [--repeats R] [--vgg-width W] [--vgg-steps N]

prints one table (markdown): per run-step, for the Ioffe MLP and the VGG-11, the trainer (one
run at a time), the minimal loop, the minimal loop fed by a torchvision DataLoader, and K runs
trained together by the trainer's stacked engine (bnlab.stacked_engine; K = 1, 2, 4, ..., 64),
with the speed-up over sequential runs (target on this CPU, one thread: >= 1.8 for K >= 8 on
the MLP; on a GPU >= 30 for K = 64).

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
from bnlab.trainer import Hooks, LoopSpec


def minimal_loop(data, norm: str, lr: float, batch_size: int, steps: int, seed: int) -> float:
    """ms per step of a hand-written loop with a hand-written model."""
    torch.manual_seed(seed)
    bn = norm == "batch"

    def block(i, o):
        return [nn.Linear(i, o, bias=not bn), *([nn.BatchNorm1d(o)] if bn else []), nn.Sigmoid()]

    model = nn.Sequential(nn.Flatten(), *block(784, 100), *block(100, 100), *block(100, 100),
                          nn.Linear(100, 10)).to(data.train_x.device)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    return plain_loop(model, opt, sampled_batches(data, batch_size, seed), steps, data.train_x.device)


def sampled_batches(data, batch_size: int, seed: int):
    """Endless (x, y) batches indexed from the device tensors, in the trainer's order (BatchSampler)."""
    sampler = BatchSampler(len(data.train_x), batch_size, seed, data.train_x.device)
    while True:
        idx = sampler.next()
        yield data.train_x[idx], data.train_y[idx]


def trainer_loop(cfg, data, steps: int) -> float:
    """ms per step as the bnlab trainer measures and reports it (with the run's GPU options:
    trainer.bf16, trainer.channels_last, trainer.compile, as bnlab.runner applies them)."""
    from bnlab.trainer import RunLoop, train_group

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.in_shape, data.num_classes).to(data.train_x.device)
    init_weights(model, cfg.init.scheme, cfg.init.std, cfg.init.gain, seed=cfg.seed)
    if cfg.trainer.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(cfg.optim, model)
    cfg.trainer.max_steps = steps
    cfg.trainer.eval_every = steps
    spec = dataclasses.replace(LoopSpec.from_config(cfg), augment=False)  # the step alone, as the other timings
    loop = RunLoop(model, opt, data, spec, Hooks(emit=lambda r: None))
    if cfg.trainer.get("compile"):
        loop.forward = torch.compile(model, mode=cfg.trainer.compile)
    return train_group([loop], [None])[0]["step_time_ms"]


def stacked_trainer(cfg, data, k: int, steps: int, seeds_differ: bool = False) -> float:
    """ms per *run*-step of K runs of `cfg` (one seed, so the batches are shared, or with
    `seeds_differ` a seed each, so each run draws its own batch; rates spread over a grid)
    trained together by the trainer's stacked engine (bnlab.stacked_engine), as a stacked sweep
    job trains them: each run's step time is its share of the stack's."""
    from bnlab.stacked_engine import StackedEngine
    from bnlab.trainer import RunLoop, train_group

    cfg = cfg.copy()
    cfg.trainer.max_steps = cfg.trainer.eval_every = steps
    spec = dataclasses.replace(LoopSpec.from_config(cfg), augment=False)
    loops = []
    for i in range(k):
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, data.in_shape, data.num_classes).to(data.train_x.device)
        init_weights(model, cfg.init.scheme, cfg.init.std, cfg.init.gain, seed=cfg.seed)
        opt = make_optimizer(cfg.optim, model)
        opt.param_groups[0]["lr"] = cfg.optim.lr * 2 ** (i % 4 - 2)
        run_spec = dataclasses.replace(spec, seed=cfg.seed + i) if seeds_differ else spec
        loops.append(RunLoop(model, opt, data, run_spec, Hooks(emit=lambda r: None)))
    results = train_group(loops, [None] * k, StackedEngine(loops))
    return statistics.mean(r["step_time_ms"] for r in results)


def plain_loop(model, opt, batches, steps: int, device) -> float:
    """ms per step of the minimal loop over `batches` (an iterator of (x, y) on the CPU)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y = next(batches)
        loss = F.cross_entropy(model(x.to(device, non_blocking=True)), y.to(device, non_blocking=True))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    return 1000 * (time.perf_counter() - t0) / steps


def dataloader_loop(cfg, data, steps: int) -> float:
    """ms per step of the minimal loop fed by the torchvision pipeline a researcher would write:
    the dataset from its files, ToTensor and Normalize (CIFAR-10: random crop and flip too),
    a shuffling DataLoader in the main process (its workers would take the other cores)."""
    import itertools

    import torchvision
    from torchvision import transforms as T

    mean, std = data.info["mean"], data.info["std"]  # the run's own normalization (bnlab.data)
    if cfg.data.name == "mnist":
        tf = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
        ds = torchvision.datasets.MNIST(str(cfg.data.root), train=True, download=False, transform=tf)
    else:
        tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                        T.Normalize(mean, std)])
        cifar = torchvision.datasets.CIFAR10
        if not cfg.data.verify:  # the rebuilt copy (data.verify=false): torchvision's checksums fail on it
            cifar = type("UnverifiedCIFAR10", (cifar,), {"_check_integrity": lambda self: True})
        ds = cifar(str(cfg.data.root), train=True, download=False, transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.optim.batch_size, shuffle=True, drop_last=True,
                                         num_workers=0, pin_memory=data.train_x.is_cuda)
    device = data.train_x.device
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.in_shape, data.num_classes).to(device)
    opt = make_optimizer(cfg.optim, model)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    plain_loop(model, opt, batches, 5, device)  # warm-up
    return plain_loop(model, opt, batches, steps, device)


def model_loop(cfg, data, steps: int) -> float:
    """ms per step of the minimal loop around the bnlab model (batches indexed from the device tensors)."""
    device = data.train_x.device
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.in_shape, data.num_classes).to(device)
    opt = make_optimizer(cfg.optim, model)
    batches = sampled_batches(data, cfg.optim.batch_size, cfg.seed)
    plain_loop(model, opt, batches, 5, device)
    return plain_loop(model, opt, batches, steps, device)


def bench_table(device, norms, ks, steps: int, repeats: int, vgg_width: float, vgg_steps: int) -> None:
    """One table, one run: per run-step, for the Ioffe MLP (MNIST) and the VGG-11 (CIFAR-10),
    the trainer (one run), the minimal hand-written loop, the same loop fed by a torchvision
    DataLoader, and (the MLP) K runs stacked by the trainer's stacked engine, with the speed-up
    over the trainer's runs one after another (sequential)."""
    print(f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of {repeats}")
    print(f"| model | norm | engine | ms per run-step | speed-up over sequential runs |")
    print("|---|---|---|---|---|")

    def row(model, norm, engine, ms, seq):
        print(f"| {model} | {norm} | {engine} | {ms:.3f} | {seq / ms:.2f}x |", flush=True)

    for model, overrides, n_steps in (
            ("Ioffe MLP (MNIST, batch 60)", [], steps),
            (f"VGG-11 x{vgg_width:g} (CIFAR-10, batch 128)",
             ["data=cifar10", "data.verify=false", "model=vgg", f"model.width_multiplier={vgg_width}",
              "data.augment=false"], vgg_steps)):
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            base = compose("config", overrides=["tracking.mode=disabled", "trainer.progress=false",
                                                "probes.act_input.enabled=false", *overrides])
        data = load_data(base.data, device)
        for norm in norms:
            cfg = base.copy()
            cfg.model.norm = norm
            med = lambda f: statistics.median(f() for _ in range(repeats))  # noqa: E731
            seq = med(lambda: trainer_loop(cfg.copy(), data, n_steps))
            row(model, norm, "trainer, one run at a time", seq, seq)
            row(model, norm, "minimal loop", med(lambda: model_loop(cfg, data, n_steps)), seq)
            row(model, norm, "minimal loop + torchvision DataLoader", med(lambda: dataloader_loop(cfg, data, n_steps)),
                seq)
            if device.type == "cuda":  # the GPU options (issue 23, item 5), each alone
                for option, value in (("bf16", True), ("channels_last", True), ("compile", "reduce-overhead")):
                    c = cfg.copy()
                    c.trainer[option] = value
                    row(model, norm, f"trainer, {option}={value}", med(lambda: trainer_loop(c.copy(), data, n_steps)), seq)
            if cfg.model.name not in ("mlp", "deep_mlp"):
                print(f"| {model} | {norm} | stacked | (conv nets do not stack yet) | |")
                continue
            for k in ks:
                row(model, norm, f"trainer, stack of K = {k}",
                    med(lambda: stacked_trainer(cfg, data, k, max(200, n_steps // max(1, k // 4)))), seq)
            for k in (5, 8):  # a confirmation phase: one run per seed, each its own batch
                row(model, norm, f"trainer, stack of K = {k}, a seed each",
                    med(lambda: stacked_trainer(cfg, data, k, n_steps, seeds_differ=True)), seq)


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
                    help="the one table: per run-step time of the trainer, the minimal loop, a DataLoader "
                         "pipeline and K runs stacked by the trainer (default K = 1 2 4 8 16 32 64), for the "
                         "MLP and the VGG")
    ap.add_argument("--vgg-width", type=float, default=0.25, help="the VGG-11's width multiplier in the table")
    ap.add_argument("--vgg-steps", type=int, default=30, help="steps per VGG measurement in the table")
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
        return bench_table(device, args.norm, args.stacked or [1, 2, 4, 8, 16, 32, 64], args.steps, args.repeats,
                           args.vgg_width, args.vgg_steps)
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
