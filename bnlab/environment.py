"""What ran where: the environment record stored with every run."""
from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys

import torch

from bnlab.resolvers import REPO_ROOT


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device must be available."""
    from bnlab.errors import ConfigError

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("trainer.device", f"{name} requested but CUDA is not available; use auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.device", "mps requested but not available; use auto or cpu")
    return torch.device(name)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# What decides what a run computes: a change here is a new training-code version.
TRAINING_CODE = ("bnlab", "conf", "experiments", "hydra_plugins", "pyproject.toml")


def code_version() -> str | None:
    """The training code's version: the commit (12 hex digits), plus `+<hash of the
    uncommitted changes>` when the training code differs from it, so that two runs made
    from the same edited tree share a version and runs from different edits do not.
    None outside a git checkout."""
    commit = _git("rev-parse", "--short=12", "HEAD")
    if commit is None:
        return None
    diff = _git("diff", "HEAD", "--", *TRAINING_CODE) or ""
    untracked = (_git("ls-files", "--others", "--exclude-standard", "--", *TRAINING_CODE) or "").split()
    if not diff and not untracked:
        return commit
    h = hashlib.sha256(diff.encode())
    for name in sorted(untracked):
        h.update(name.encode())
        try:
            h.update((REPO_ROOT / name).read_bytes())
        except OSError:
            pass
    return f"{commit}+{h.hexdigest()[:8]}"


def environment(device: torch.device) -> dict:
    import torchvision

    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        device_name = f"{_cpu_model()} ({os.cpu_count()} cores)"
    else:
        device_name = device.type
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(device),
        "device_name": device_name,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "code_version": code_version(),
        "argv": sys.argv,
        # the scheduler's job, when the run trains under SLURM (submitit's launcher)
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
