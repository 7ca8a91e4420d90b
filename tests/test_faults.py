"""Hard cases and faults (issue 22, deliverable 9): each ends in its one clean outcome — bad
input in one line naming the key (exit 2, nothing written), a store fault in the store's one
line (exit 3), or a stated recovery — never a traceback, and nothing finished or logged lost."""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from bnlab.errors import ConfigError, DataError, InputError, StoreWriteError

from conftest import data_root

TINY = ["tracking.mode=disabled", "trainer.progress=false", "trainer.num_threads=1",
        "trainer.max_steps=40", "trainer.eval_every=20", "trainer.log_every=10"]


def _cli(tmp_path, *args, timeout=300, module="bnlab.train", fsize=None, **env):
    """A bnlab command in a fresh process: (exit code, stderr). `fsize`: the largest file it
    may write, in bytes (RLIMIT_FSIZE: a full disk for that process only)."""
    flags = [a for a in args if a in ("-m", "--multirun")]  # Hydra wants -m before the overrides
    results = [f"paths.results={tmp_path}"] if module == "bnlab.train" else []
    cmd = [sys.executable, "-m", module, *flags, *results, *[a for a in args if a not in flags]]
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))) if fsize else None
    proc = subprocess.run(cmd, env={**os.environ, "BNLAB_DATA": str(data_root()), **env}, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit)
    return proc.returncode, proc.stderr


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


# ---------------------------------------------------------------- errors cross process boundaries

@pytest.mark.parametrize("error", [InputError("seed", "got -1; must be an integer >= 0"),
                                   ConfigError("model.norm", "got 'x'; allowed: none, batch"),
                                   DataError("data.root", "mnist not found"),
                                   StoreWriteError("/r/summary.json", OSError(28, "No space left on device"))])
def test_every_bnlab_error_survives_a_pickle_round_trip(error):
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error)
    assert getattr(back, "key", None) == getattr(error, "key", None)


def test_a_bad_job_in_a_parallel_sweep_is_one_line_and_exit_2(mnist_root, tmp_path):
    """data.verify=true on a copy of MNIST whose test labels differ by one byte fails inside
    the job (the checksum is read when the data loads), in a joblib worker."""
    root = tmp_path / "data" / "MNIST" / "raw"
    root.mkdir(parents=True)
    for f in (mnist_root / "MNIST" / "raw").iterdir():
        (root / f.name).symlink_to(f)
    labels = root / "t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[100] = (data[100] + 1) % 10
    labels.unlink()
    labels.write_bytes(bytes(data))
    code, err = _cli(tmp_path, "-m", "data.verify=true,false", f"data.root={tmp_path / 'data'}",
                     "hydra.launcher.n_jobs=2", *TINY)
    line = _one_error_line(err)
    assert code == 2 and line.startswith("bnlab-train: error: data.verify: ") and "sweep job 0" in line, err[-3000:]


# ---------------------------------------------------------------- a checkpoint that does not fit

@contextlib.contextmanager
def _file_size_limit(nbytes: int):
    """Writes beyond `nbytes` fail with EFBIG in this process (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_checkpoint_that_does_not_fit_is_the_stores_error_and_keeps_the_previous_one(tmp_path):
    import torch

    from bnlab.checkpoint import CHECKPOINT_FILE, Checkpoints, load_checkpoint

    c = Checkpoints(tmp_path, every_s=300, max_overhead=0.01, keep=False)
    c.save({"progress": {"step": 1}, "blob": torch.zeros(10)})
    good = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with _file_size_limit(64 * 1024), pytest.raises(StoreWriteError) as err:
        c.save({"progress": {"step": 2}, "blob": torch.zeros(100_000)})  # 400 kB: does not fit
    assert str(err.value) == f"cannot write {tmp_path / CHECKPOINT_FILE}: File too large"
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == good and load_checkpoint(tmp_path)["progress"]["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE], "no temp file left behind"


def test_a_run_whose_checkpoint_does_not_fit_stops_with_the_stores_line(mnist_root, tmp_path):
    code, err = _cli(tmp_path, *TINY, "trainer.checkpoint.every_s=1", fsize=300 * 1024)
    line = _one_error_line(err)
    assert code == 3 and line.startswith("bnlab-train: error: cannot write ") and "checkpoint.pt" in line, err


# ---------------------------------------------------------------- a checkpoint from another config

class Killed(BaseException):
    """Stands for SIGKILL: the run stops where it is, with no summary."""


def _kill_after(monkeypatch, step):
    from bnlab.store import RunWriter

    real_log = RunWriter.log

    def log(self, record):
        real_log(self, record)
        if record["step"] == step:
            raise Killed(step)

    monkeypatch.setattr(RunWriter, "log", log)


SMALL = [*TINY, "trainer.max_steps=60", "trainer.checkpoint.every_s=1e-9"]


def test_a_foreign_checkpoint_is_set_aside_before_anything_is_cut_and_the_run_retrained(
        mnist_root, cfg_factory, tmp_path, monkeypatch, caplog):
    import torch

    from bnlab.checkpoint import CHECKPOINT_FILE, find_resumable
    from bnlab.runner import run
    from bnlab.store import fingerprint, load_runs, resolved_config

    cfg = cfg_factory(*SMALL)
    killed = tmp_path / "runs" / "default" / "killed"
    with monkeypatch.context() as m:
        _kill_after(m, 30)
        with pytest.raises(Killed):
            run(cfg, killed)
    run(cfg_factory(*SMALL, "model.widths=[50]", "trainer.checkpoint.keep=true"), tmp_path / "other")
    # as the checkpoints made before they recorded their config's fingerprint: only the shapes tell
    foreign = torch.load(tmp_path / "other" / CHECKPOINT_FILE, weights_only=True)
    del foreign["meta"]["fingerprint"]
    torch.save(foreign, killed / CHECKPOINT_FILE)
    records = (killed / "metrics.jsonl").read_bytes()

    assert find_resumable(tmp_path / "runs", fingerprint(resolved_config(cfg))) == (None, None)
    assert (killed / "metrics.jsonl").read_bytes() == records, "nothing logged is cut"
    aside = [p.name for p in killed.glob("checkpoint.unusable-*.pt")]
    assert not (killed / CHECKPOINT_FILE).exists() and len(aside) == 1, "set aside, not deleted"
    warned = [r.getMessage() for r in caplog.records if "unusable checkpoint" in r.getMessage()]
    assert len(warned) == 1 and aside[0] in warned[0] and "model does not fit" in warned[0], warned

    # the launch, as a user relaunches it: trained again from the start, in a new folder
    code, err = _cli(tmp_path, *SMALL)
    assert code == 0, err[-3000:]
    runs = load_runs(tmp_path / "runs" / "default")
    assert sorted(runs["status"]) == ["completed", "failed"]  # the new run, and the killed one as it was
    assert (killed / "metrics.jsonl").read_bytes() == records


def test_a_checkpoint_of_the_same_shapes_from_another_config_is_not_resumed(mnist_root, cfg_factory, tmp_path,
                                                                             monkeypatch):
    """Another learning rate: the shapes fit, the fingerprint the checkpoint records does not."""
    from bnlab.checkpoint import CHECKPOINT_FILE, find_resumable
    from bnlab.runner import run
    from bnlab.store import fingerprint, resolved_config

    cfg = cfg_factory(*SMALL)
    with monkeypatch.context() as m:
        _kill_after(m, 30)
        with pytest.raises(Killed):
            run(cfg, tmp_path / "killed")
        with pytest.raises(Killed):
            run(cfg_factory(*SMALL, "optim.lr=0.01"), tmp_path / "other")
    (tmp_path / "killed" / CHECKPOINT_FILE).write_bytes((tmp_path / "other" / CHECKPOINT_FILE).read_bytes())
    assert find_resumable(tmp_path / "killed", fingerprint(resolved_config(cfg))) == (None, None)
    assert list((tmp_path / "killed").glob("checkpoint.unusable-*.pt"))
    # while the other run's own checkpoint still resumes it
    other = fingerprint(resolved_config(cfg_factory(*SMALL, "optim.lr=0.01")))
    assert find_resumable(tmp_path / "other", other)[0] == tmp_path / "other"


# ---------------------------------------------------------------- a sweep too large to expand

@pytest.mark.parametrize("params,overrides", [
    ({}, ["seed=range(0,7)", "model.norm=none,batch"]),
    ({"seed": "range(0,5)", "optim.lr": "0.1,0.5"}, ["seed=0,1"]),  # the command line replaces the study's
    ({}, ["optim.lr=range(0.1,0.5,0.1)", "name=x"]),
])
def test_a_sweep_is_counted_without_expanding_it(params, overrides):
    from bnlab.sweep import count_sweep, expand_sweep

    assert count_sweep(params, overrides) == len(expand_sweep(params, overrides))


@pytest.mark.parametrize("sweep,says", [("seed=range(0,100000000)", "sweep: 100,000,000 jobs; at most 10,000"),
                                        ("optim.lr=range(0,1,0)", "optim.lr: got range(0, 1, 0); a range's step")])
@pytest.mark.parametrize("dry", [True, False])
def test_a_sweep_above_the_cap_or_without_end_is_refused_before_it_is_expanded(tmp_path, sweep, says, dry):
    code, err = _cli(tmp_path, "-m", sweep, *TINY, *(["--dry-run"] if dry else []), timeout=60)
    assert code == 2 and _one_error_line(err).startswith(f"bnlab-train: error: {says}"), err[-2000:]
    assert not tmp_path.exists() or not any(tmp_path.iterdir()), "nothing written"


# ---------------------------------------------------------------- damaged or ill-typed records

def _edit(path: Path, **fields):
    record = json.loads(path.read_text())
    record.update(fields)
    path.write_text(json.dumps(record))


DAMAGE = {
    "random bytes in run.json": lambda run: (run / "run.json").write_bytes(bytes(range(256))),
    "an empty run.json": lambda run: (run / "run.json").write_text("{}"),
    "a config that is text": lambda run: _edit(run / "run.json", config="oops"),
    "a seed that is text": lambda run: _edit(run / "run.json", config={"seed": "one"}),
    "a metric that is text": lambda run: _edit(run / "summary.json", **{"test/acc": "high"}),
    "a time that is a number": lambda run: _edit(run / "summary.json", finished_at=12345),
    "a status that is a number": lambda run: _edit(run / "summary.json", status=42),
    "random bytes in summary.json": lambda run: (run / "summary.json").write_bytes(bytes(range(256))),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_or_ill_typed_record_is_counted_and_named_and_the_study_still_read(tmp_path, capsys, caplog,
                                                                                    damage):
    from bnlab.analysis.frames import outcome_counts
    from bnlab.analysis.study import decide, load_study
    from bnlab.status import main as status_main
    from bnlab.store import load_runs

    from synthetic import make_store

    study = make_store(tmp_path)
    run = sorted(p.parent for p in study.rglob("run.json"))[0]
    DAMAGE[damage](run)
    runs = load_runs(study)
    assert (runs["status"] == "damaged").sum() == 1 and len(runs) == 35
    assert any(str(run) in r.getMessage() and "damaged record" in r.getMessage() for r in caplog.records)

    status_main([str(study)])  # bnlab-status: the rest of the study, with the damaged run counted
    table = capsys.readouterr().out
    assert "damaged" in table and "34 runs" not in table and "35 runs" in table

    loaded = load_study(str(study))  # what bnlab-plot reads, frames and verdicts
    decide([loaded])
    assert outcome_counts(loaded["runs"])["damaged"] == 1
    assert sum(outcome_counts(loaded["runs"]).values()) == 35


def test_a_status_that_is_not_a_status_is_damaged_in_every_count(tmp_path):
    """`"status": 42` was "failed" in a sweep's progress and "incomplete" in the study's
    counts: it is one damaged summary in both, and not a run done."""
    from bnlab.analysis.frames import outcome
    from bnlab.store import load_run
    from bnlab.sweep import SWEEP_FILE, find_done, sweep_progress

    from synthetic import write_run

    sweep = tmp_path / "s" / "multirun_x"
    write_run(tmp_path, "s", "batch", 0.1, 0, 0.9, 0.9, path=sweep / "0")
    (sweep / SWEEP_FILE).write_text(json.dumps({"total": 1, "started_unix": 0, "swept": []}))
    fp = json.loads((sweep / "0" / "run.json").read_text())["fingerprint"]
    assert find_done(tmp_path / "s", fp) == sweep / "0"
    _edit(sweep / "0" / "summary.json", status=42)
    progress = sweep_progress(sweep)
    assert (progress["damaged"], progress["failed"], progress["done"]) == (1, 0, 0)
    row = load_run(sweep / "0")
    assert row["status"] == "damaged" and outcome(row) == "damaged" and row["damaged"] == "summary.json"
    assert find_done(tmp_path / "s", fp) is None


# ---------------------------------------------------------------- a truncated dataset file

@pytest.mark.parametrize("verify", ["true", "false"])
def test_a_truncated_mnist_file_is_named_with_its_expected_size_before_anything_is_made(mnist_root, tmp_path,
                                                                                       verify):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (mnist_root / "MNIST" / "raw").iterdir():
        (raw / f.name).symlink_to(f)
    images = raw / "train-images-idx3-ubyte"
    head = images.read_bytes()[:1_000_000]
    images.unlink()
    images.write_bytes(head)
    code, err = _cli(tmp_path / "results", f"data.root={tmp_path / 'data'}", f"data.verify={verify}", *TINY)
    assert code == 2 and _one_error_line(err) == (
        f"bnlab-train: error: data.root: {images} has 1,000,000 bytes, not the 47,040,016 of the MNIST file "
        f"(truncated or not MNIST); replace it, or set BNLAB_DATA or data.root to a folder that holds it"), err
    assert not (tmp_path / "results").exists(), "nothing half-made"


# ---------------------------------------------------------------- a run that cannot fit in memory

@pytest.mark.parametrize("overrides,key", [(["model.widths=[100000000]"], "model"),
                                           (["model=resnet20", "data=cifar10", "data.verify=false",
                                             "model.width=100000"], "model"),
                                           (["optim.batch_size=54000", "model.widths=[1000000]"],
                                            "optim.batch_size"),
                                           (["optim.batch_size=54000", "model.widths=[30000,30000]",
                                             "hydra.launcher.n_jobs=2", "-m", "seed=0,1"], None)])
def test_a_run_that_cannot_fit_in_memory_is_refused_with_the_estimate(mnist_root, cifar_root, tmp_path,
                                                                      overrides, key):
    from bnlab.memory import available

    code, err = _cli(tmp_path, *TINY, *overrides, timeout=120)
    free, _ = available("cpu")
    line = _one_error_line(err)
    assert code == 2 and "a run needs about " in line and " available (MemAvailable in /proc/meminfo)" in line, err
    assert key is None or line.startswith(f"bnlab-train: error: {key}: "), line
    assert not tmp_path.exists() or not any(tmp_path.rglob("run.json")), "refused before any run"


def test_the_estimate_counts_data_parameters_and_activations(cfg_factory):
    from bnlab.memory import estimate

    small, wide = estimate(cfg_factory()), estimate(cfg_factory("model.widths=[1000,1000,1000]"))
    # the MLP 784-100-100-100-10: 99,710 parameters; plain SGD holds weights and gradients, with
    # momentum a buffer more, Adam two
    assert small["parameters"] == 99_710 * 4 * 2
    assert estimate(cfg_factory("optim.momentum=0.9"))["parameters"] == 99_710 * 4 * 3
    assert estimate(cfg_factory("optim=adam"))["parameters"] == 99_710 * 4 * 4
    # MNIST: 70,000 images of 784 float32 values on the device, and the uint8 copy
    assert small["data"] == 70_000 * 784 * 4 + 70_000 * 784
    assert wide["parameters"] > 25 * small["parameters"]
    # the larger of a training batch (kept for backward, with gradients) and an evaluation batch
    assert estimate(cfg_factory("optim.batch_size=20000"))["activations"] > small["activations"]
    assert estimate(cfg_factory("trainer.eval_batch_size=20000"))["activations"] > small["activations"]


# ---------------------------------------------------------------- wrong or silent

def test_sigterm_as_a_run_finishes_says_it_completed(mnist_root, cfg_factory, tmp_path, monkeypatch):
    import signal

    import bnlab.runner
    from bnlab.stopping import Terminated
    from bnlab.store import load_run

    real_train = bnlab.runner.train_group

    def train(*args, **kw):  # SIGTERM lands after the last step, as the run's summary is made
        result = real_train(*args, **kw)
        os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(bnlab.runner, "train_group", train)
    with pytest.raises(Terminated) as stopped:
        bnlab.runner.run(cfg_factory(*TINY), tmp_path / "r")
    assert stopped.value.finished == "completed" and load_run(tmp_path / "r")["status"] == "completed"


@pytest.mark.parametrize("project", ["a/b", "x:y", "q?", "p" * 129])
def test_a_project_name_wandb_refuses_is_refused_up_front(cfg_factory, project):
    from bnlab.config import validate

    with pytest.raises(ConfigError) as err:
        validate(cfg_factory(f"tracking.project='{project}'"))
    assert err.value.key == "tracking.project" and "W&B project name" in str(err.value)
    validate(cfg_factory("tracking.project=bnlab-runs.v2"))


def test_a_resumed_runs_summary_is_not_damaged():
    """A run resumed from checkpoints records the step of each resume as a list
    (`resumed_from_steps`, bnlab.runner): a summary, not a damaged one (the type check once
    read it by its '_steps' ending as a number, and every resumed run looked damaged)."""
    from bnlab.store import summary_problem

    assert summary_problem({"status": "completed", "resumed_from_steps": [0, 17551], "best/val/acc": 0.97}) == ""
    assert "not a list" in summary_problem({"status": "completed", "resumed_from_steps": 17551})
    assert "not an integer" in summary_problem({"status": "failed", "resumed_from_steps": [0, "x"]})
