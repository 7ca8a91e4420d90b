"""The memory a run needs, estimated before it starts, against the memory there is.

A run whose tensors do not fit fails with an allocation error after its folder exists, or
drives the machine into swap. The preflight estimates what each job holds at its peak:

    data        the splits as float32 tensors on the device (bnlab.data keeps them there),
                plus the uint8 images they are made from
    parameters  weights, gradients and the optimizer's state (SGD momentum: one buffer,
                Adam: two), float32
    activations every layer's output at the batch size, kept for the backward pass, and
                as much again for their gradients (evaluation, without gradients, at
                trainer.eval_batch_size, when that is larger)

The shapes come from the model built on the meta device (no memory, no weights) and one
forward pass there. It is an estimate (allocator slack, probes and temporaries come on
top), so a refusal means the run cannot fit, not that a run below it surely will.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bnlab.errors import ConfigError

GiB = 1024 ** 3
FLOAT = 4  # bytes of a float32


def _shapes_per_sample(cfg: DictConfig) -> tuple[int, int, int]:
    """(parameters, activation values summed over layers, the largest layer's values) per
    sample, from the model built and run on the meta device."""
    import torch

    from bnlab.data import DATASETS
    from bnlab.models import build_model

    spec = DATASETS[cfg.data.name]
    model_cfg = OmegaConf.create(OmegaConf.to_container(cfg.model, resolve=True))
    for norm in (model_cfg.norm, "batch"):  # a noise norm draws on a generator: meta cannot; BN has its shapes
        model_cfg.norm = norm
        with torch.device("meta"):
            model = build_model(model_cfg, spec.shape, spec.num_classes)
        params = sum(p.numel() for p in model.parameters())
        sizes: list[int] = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel() // 2))
                 for m in model.modules() if not list(m.children())]
        try:
            with torch.device("meta"):
                model(torch.empty(2, *spec.shape, device="meta"))
            return params, sum(sizes), max(sizes, default=0)
        except Exception:  # noqa: BLE001  (try the same shapes with plain BN)
            continue
        finally:
            for h in hooks:
                h.remove()
    return params, 0, 0


def estimate(cfg: DictConfig) -> dict:
    """Bytes a run of `cfg` holds at its peak: {'data', 'parameters', 'activations', 'total'}."""
    from bnlab.data import DATASETS, train_pool_size

    spec = DATASETS[cfg.data.name]
    pixels = math.prod(spec.shape)
    images = train_pool_size(cfg.data) + cfg.data.val_size + spec.test_size
    data = images * pixels * FLOAT + (spec.train_size + spec.test_size) * pixels
    params, per_sample, widest = _shapes_per_sample(cfg)
    states = {"sgd": 1 if cfg.optim.get("momentum", 0) else 0, "adam": 2}.get(cfg.optim.name, 2)
    parameters = params * FLOAT * (2 + states)
    train = 2 * per_sample * cfg.optim.batch_size * FLOAT
    evaluation = 2 * widest * cfg.trainer.eval_batch_size * FLOAT
    activations = max(train, evaluation)
    return {"data": data, "parameters": parameters, "activations": activations,
            "total": data + parameters + activations,
            "batch_key": "optim.batch_size" if train >= evaluation else "trainer.eval_batch_size",
            "batch": cfg.optim.batch_size if train >= evaluation else cfg.trainer.eval_batch_size}


def available(device: str) -> tuple[int | None, str]:
    """(free bytes, where they were read) for the device a run of `trainer.device` uses."""
    from bnlab.environment import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        import torch

        return torch.cuda.mem_get_info(dev)[0], f"free on {dev}"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
    except OSError:
        pass
    return None, ""  # not Linux: nothing to compare against


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= 0.1 * GiB else f"{n / 1024 ** 2:.0f} MiB"


def parallel_jobs(overrides: list[str]) -> int:
    """How many jobs of a local sweep run at once: hydra.launcher.n_jobs (checked by the
    preflight to be an integer), else one per core (conf/hydra/launcher/local.yaml)."""
    import os

    given = [o.split("=", 1)[1] for o in overrides if o.startswith("hydra.launcher.n_jobs=")]
    return int(given[-1]) if given and given[-1].isdigit() else (os.cpu_count() or 1)


def check_memory(cfgs: list[DictConfig], parallel: int) -> None:
    """ConfigError when the largest job, times the jobs that run at once, needs more memory
    than the device has free; names the estimate and what is available."""
    if not cfgs:
        return
    seen: dict[str, tuple[dict, DictConfig]] = {}
    for cfg in cfgs:  # a sweep's jobs share a few model shapes: estimate each once
        key = json.dumps([OmegaConf.to_container(cfg.model, resolve=True), cfg.data.name, cfg.data.val_size,
                          cfg.data.train_subset, cfg.optim.name, cfg.optim.batch_size, cfg.trainer.eval_batch_size,
                          cfg.optim.get("momentum")], sort_keys=True, default=str)
        if key not in seen:
            seen[key] = (estimate(cfg), cfg)
    need, cfg = max(seen.values(), key=lambda e: e[0]["total"])
    free, where = available(cfg.trainer.device)
    jobs = max(1, min(parallel, len(cfgs)))
    if free is None or need["total"] * jobs <= free:
        return
    # the key to change: the model when its parameters alone do not fit (its activations
    # are as wide), else the part that dominates
    parts = {"data": need["data"], "model": need["parameters"], need["batch_key"]: need["activations"]}
    key = "model" if need["parameters"] * jobs > free else max(parts, key=parts.get)
    times = f" × {jobs} parallel jobs = {_gib(need['total'] * jobs)}" if jobs > 1 else ""
    raise ConfigError(key, f"a run needs about {_gib(need['total'])} of memory (data {_gib(need['data'])}, "
                      f"parameters with gradients and optimizer state {_gib(need['parameters'])}, activations at "
                      f"{need['batch_key']}={need['batch']} {_gib(need['activations'])}){times}; {_gib(free)} available "
                      f"({where}): a smaller model or batch, or fewer parallel jobs (hydra.launcher.n_jobs)")
