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


# What decides what a run computes: the package's modules (bar the analysis-only ones
# below), its config defaults, the sweep launcher and the dependencies. The study files are
# not here: what they set is in every run's config (and fingerprint), and their analysis
# blocks decide nothing a run computes.
TRAINING_CODE = ("bnlab", "conf", "hydra_plugins", "pyproject.toml")
# Modules that only read finished runs (analysis, figures, the report, status): an edit to
# them is not a new training-code version.
ANALYSIS_ONLY = frozenset(f"bnlab/{m}.py" for m in (
    "bench", "dry_run", "plot_command", "status", "study_command"))
# ... and every module of the two wings that read the store (bnlab/analysis, bnlab/views)
ANALYSIS_FOLDERS = ("bnlab/analysis/", "bnlab/views/")


def training_files(root=None) -> list:
    """The files whose contents make the training-code version, sorted (relative paths)."""
    root = root or REPO_ROOT
    files = []
    for top in TRAINING_CODE:
        path = root / top
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for p in candidates:
            rel = p.relative_to(root).as_posix()
            if p.suffix not in (".py", ".yaml", ".toml") or "__pycache__" in p.parts or rel in ANALYSIS_ONLY \
                    or rel.startswith(ANALYSIS_FOLDERS):
                continue
            files.append(rel)
    return sorted(files)


def code_version(root=None) -> str | None:
    """The training code's version: a hash (12 hex digits) of the names and contents of the
    training files, so that runs made from the same training code share a version whatever
    was committed around them (docs, analysis, results), and any edit to the training code,
    committed or not, makes a new one. None when the sources are not on disk (an installed
    wheel)."""
    root = root or REPO_ROOT
    files = training_files(root)
    if not files:
        return None
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode() + b"\0")
        try:
            h.update((root / rel).read_bytes())
        except OSError:
            pass
        h.update(b"\0")
    return h.hexdigest()[:12]


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
