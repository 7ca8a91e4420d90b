"""Validation of the composed config: the one home of bad-input errors.

`validate(cfg)` runs before anything is loaded or written. Each problem is reported as a
ConfigError naming the key and what is allowed, which the entry point prints as one line.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from bnlab.data import DATASETS, train_pool_size
from bnlab.config_checks import boolean as _bool, choice as _choice, get as _get, integer as _int
from bnlab.config_checks import is_int as _is_int, is_number as _is_number
from bnlab.config_checks import number as _number
from bnlab.errors import ConfigError

# torch.compile's modes for trainer.compile (false: not compiled)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
from bnlab.layers import ACTIVATIONS, INIT_SCHEMES
from bnlab.norms import NORM_KINDS
from bnlab.models import DROPOUT_PLACEMENTS, MODEL_NAMES, MODELS, hidden_widths

OPTIMIZERS = ("sgd", "adam")
TRACKING_MODES = ("offline", "online", "disabled")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
MAX_NAME = 100
# W&B refuses a project name with these characters, or longer than 128, inside a run
WANDB_FORBIDDEN = set("/\\#?%:")
MAX_WANDB_PROJECT = 128
# numpy and torch take seeds below 2**32 (numpy's legacy seeding refuses larger ones)
MAX_SEED = 2**32 - 1


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first invalid value; return None when the config is usable."""
    # a study with budget profiles (`profiles.<name>`, chosen by `profile=`): checked first,
    # since every key the profile sets is an interpolation that a bad name breaks
    profiles = OmegaConf.select(cfg, "profiles")
    if profiles is not None:
        allowed = tuple(str(k) for k in profiles)
        if OmegaConf.select(cfg, "profile") not in allowed:
            raise ConfigError("profile", f"got {OmegaConf.select(cfg, 'profile')!r}; allowed: {', '.join(allowed)}")
    _int(cfg, "seed", lo=0, hi=MAX_SEED)
    name = _get(cfg, "name")
    if (not isinstance(name, str) or not NAME_PATTERN.match(name) or set(name) == {"."}
            or len(name) > MAX_NAME):
        shown = name if not isinstance(name, str) or len(name) <= 40 else f"{name[:37]}... ({len(name)} characters)"
        raise ConfigError("name", f"got {shown!r}; must be a name of 1 to {MAX_NAME} letters, digits, '_', '-' or "
                          "'.', not only dots (it names the study's folder under paths.runs)")

    # data
    spec = DATASETS[_choice(cfg, "data.name", tuple(DATASETS))]
    _get(cfg, "data.root")
    for key in ("data.download", "data.verify", "data.augment"):
        _bool(cfg, key)
    _int(cfg, "data.val_size", lo=0, hi=spec.train_size - 1)
    _int(cfg, "data.split_seed", lo=0, hi=MAX_SEED)
    target = _get(cfg, "data.target_val_acc")
    if target is not None and not (_is_number(target) and 0 < target <= 1):
        raise ConfigError("data.target_val_acc", f"got {target!r}; must be a number in (0, 1] or null")
    _int(cfg, "data.train_subset", lo=1, hi=spec.train_size - cfg.data.val_size, allow_none=True)

    # model
    model = _choice(cfg, "model.name", MODEL_NAMES)
    _choice(cfg, "model.norm", NORM_KINDS)
    _choice(cfg, "model.activation", tuple(ACTIVATIONS))
    _number(cfg, "model.dropout", lo=0, hi=1, hi_open=True)
    _choice(cfg, "model.dropout_placement", DROPOUT_PLACEMENTS)
    MODELS[model].check(cfg, min(spec.shape[1:]))  # its own keys, next to its builder
    _number(cfg, "model.bn.momentum", lo=0, hi=1, lo_open=True)
    _number(cfg, "model.bn.eps", lo=0, lo_open=True)
    _bool(cfg, "model.bn.affine")
    # the options of the other norms (bnlab.norms), checked whichever norm is chosen
    _number(cfg, "model.ln.eps", lo=0, lo_open=True)
    _bool(cfg, "model.ln.affine")
    _int(cfg, "model.gn.groups", lo=1)
    _number(cfg, "model.gn.eps", lo=0, lo_open=True)
    _bool(cfg, "model.gn.affine")
    _number(cfg, "model.noise.mean_range", lo=0)
    low = _number(cfg, "model.noise.scale_low", lo=0)
    _number(cfg, "model.noise.scale_high", lo=low)
    _number(cfg, "model.noise.jitter", lo=0)

    # init
    scheme = _choice(cfg, "init.scheme", INIT_SCHEMES)
    if scheme == "normal":
        _number(cfg, "init.std", lo=0, lo_open=True)
    _number(cfg, "init.gain", lo=0, lo_open=True)

    # optimizer
    opt = _choice(cfg, "optim.name", OPTIMIZERS)
    _number(cfg, "optim.lr", lo=0, lo_open=True)
    _number(cfg, "optim.weight_decay", lo=0)
    pool = train_pool_size(cfg.data)
    _int(cfg, "optim.batch_size", lo=1, hi=pool)
    milestones = _get(cfg, "optim.lr_milestones")
    if not isinstance(milestones, (list, ListConfig)) or not all(
            _is_int(m) and 0 < m for m in milestones) or list(milestones) != sorted(set(milestones)):
        raise ConfigError("optim.lr_milestones", f"got {milestones!r}; must be a list of increasing "
                                                 f"positive steps ([] for a constant rate)")
    _number(cfg, "optim.lr_gamma", lo=0, lo_open=True)
    if opt == "sgd":
        _number(cfg, "optim.momentum", lo=0, hi=1, hi_open=True)
        _bool(cfg, "optim.nesterov")
        if cfg.optim.nesterov and cfg.optim.momentum == 0:
            raise ConfigError("optim.nesterov", "true needs optim.momentum > 0")
    else:
        betas = _get(cfg, "optim.betas")
        if not isinstance(betas, (list, ListConfig)) or len(betas) != 2 or not all(
                _is_number(b) and 0 <= b < 1 for b in betas):
            raise ConfigError("optim.betas", f"got {betas!r}; must be two numbers in [0, 1)")

    # trainer
    _int(cfg, "trainer.max_steps", lo=1)
    _int(cfg, "trainer.log_every", lo=1)
    _int(cfg, "trainer.eval_every", lo=1)
    _int(cfg, "trainer.eval_batch_size", lo=1)
    # at most the training images the run has (data.train_subset or the whole pool)
    _int(cfg, "trainer.eval_train", lo=0, hi=train_pool_size(cfg.data))
    threads = _get(cfg, "trainer.num_threads")
    if threads != "auto" and threads is not None and not (_is_int(threads) and threads >= 1):
        raise ConfigError("trainer.num_threads", f"got {threads!r}; allowed: auto (the cores free for the run), "
                          f"an integer >= 1, or null (torch's default: every core)")
    _int(cfg, "trainer.stack", lo=1, hi=256)  # runs per stack (bnlab.stack_plan); 1: each alone
    members = _get(cfg, "trainer.stack_members")
    if members is not None and not Path(str(members)).is_file():
        raise ConfigError("trainer.stack_members", f"got {members!r}; set by bnlab's sweeper to a stack's "
                          f"file (leave it null)")
    _bool(cfg, "trainer.bf16")
    _bool(cfg, "trainer.channels_last")
    if _get(cfg, "trainer.compile") is not False:
        _choice(cfg, "trainer.compile", COMPILE_MODES)
    _number(cfg, "trainer.divergence_factor", lo=1, lo_open=True)
    _int(cfg, "trainer.divergence_warmup", lo=0)
    _number(cfg, "trainer.learned_margin", lo=0, hi=1, hi_open=True)
    _int(cfg, "trainer.eval_every_early", lo=1, allow_none=True)
    _int(cfg, "trainer.early_steps", lo=0)
    _bool(cfg, "trainer.progress")
    if _get(cfg, "trainer.progress_every_s") is not None:
        _number(cfg, "trainer.progress_every_s", lo=0, lo_open=True)
    _bool(cfg, "force")
    if _get(cfg, "trainer.checkpoint.every_s") is not None:
        _number(cfg, "trainer.checkpoint.every_s", lo=0, lo_open=True)
    _number(cfg, "trainer.checkpoint.max_overhead", lo=0, hi=1, lo_open=True)
    _bool(cfg, "trainer.checkpoint.keep")
    device = _get(cfg, "trainer.device")
    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        raise ConfigError("trainer.device", f"got {device!r}; allowed: auto, cpu, cuda, cuda:N, mps")

    # probes
    probe = cfg.probes.act_input
    _bool(cfg, "probes.act_input.enabled")
    if probe.enabled:
        units = _get(cfg, "probes.act_input.units")
        width = min(hidden_widths(cfg.model))
        if not isinstance(units, (list, ListConfig)) or not units or not all(
                _is_int(u) and 0 <= u < width for u in units):
            raise ConfigError("probes.act_input.units",
                              f"got {units!r}; must be a non-empty list of unit indices in [0, {width}) "
                              f"(every hidden layer is probed; the narrowest has {width})")
        pcts = _get(cfg, "probes.act_input.percentiles")
        if not isinstance(pcts, (list, ListConfig)) or not pcts or not all(
                _is_number(p) and 0 <= p <= 100 for p in pcts):
            raise ConfigError("probes.act_input.percentiles",
                              f"got {pcts!r}; must be a non-empty list of numbers in [0, 100]")
        _int(cfg, "probes.act_input.batch_size", lo=1)

    _bool(cfg, "probes.grad_ics.enabled")
    _bool(cfg, "probes.act_stats.enabled")
    _int(cfg, "probes.act_stats.batch_size", lo=2)
    _int(cfg, "probes.act_stats.corr_units", lo=0)
    _bool(cfg, "probes.bn_recalibration.enabled")
    _int(cfg, "probes.bn_recalibration.batches", lo=1)
    _bool(cfg, "probes.landscape.enabled")
    _int(cfg, "probes.landscape.batch_size", lo=1)
    _int(cfg, "probes.landscape.points", lo=2)
    low = _number(cfg, "probes.landscape.low", lo=0, lo_open=True)
    _number(cfg, "probes.landscape.high", lo=low, lo_open=True)

    _choice(cfg, "tracking.mode", TRACKING_MODES)
    project = _get(cfg, "tracking.project")
    if not isinstance(project, str) or not 0 < len(project) <= MAX_WANDB_PROJECT or WANDB_FORBIDDEN & set(project):
        raise ConfigError("tracking.project", f"got {project!r}; must be a W&B project name of 1 to "
                          f"{MAX_WANDB_PROJECT} characters, none of {' '.join(sorted(WANDB_FORBIDDEN))}")


def check_writable(key: str, path) -> None:
    """`path` (a folder bnlab will create and write) can be made and written: its nearest
    existing ancestor is a folder in which a file can be created. Checked with a temporary
    folder that is removed at once, so a refusal leaves nothing behind."""
    path = Path(path)
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(key, f"{str(path)!r} goes through {str(ancestor)!r}, which is a file, not a folder")
    try:
        with tempfile.TemporaryDirectory(dir=ancestor, prefix=".bnlab-write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(key, f"cannot write under {str(ancestor)!r} ({exc.strerror or exc}); "
                          f"choose a writable folder") from None


def check_wandb_credentials(cfg: DictConfig) -> None:
    """tracking.mode=online needs a W&B API key (WANDB_API_KEY or `wandb login`'s ~/.netrc
    entry); without one wandb raises deep inside a run. Say so before anything starts."""
    if cfg.tracking.mode != "online" or os.environ.get("WANDB_API_KEY"):
        return
    import netrc
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        if netrc.netrc().authenticators(host):
            return
    except (OSError, netrc.NetrcParseError):
        pass
    raise ConfigError("tracking.mode", f"online needs W&B credentials and none were found for {host}: "
                      "run `wandb login` (or set WANDB_API_KEY), or use tracking.mode=offline and "
                      "`wandb sync` later")
