"""The SLURM launcher on a real single-node cluster (scripts/slurm_cluster.sh): a sweep lands
every run in the store, and a run that cannot meet its time limit is requeued by submitit
and resumes from its checkpoint to the metrics of an uninterrupted run.

The cluster needs root (daemons, /etc/slurm). CI starts it and sets BNLAB_SLURM=required:
there these tests fail when it cannot start. Elsewhere they are skipped, saying why.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bnlab.resolvers import REPO_ROOT
from bnlab.store import load_runs

from conftest import data_root

PARTITION = os.environ.get("BNLAB_SLURM_PARTITION", "bnlab")


@pytest.fixture(scope="module")
def cluster():
    script = REPO_ROOT / "scripts" / "slurm_cluster.sh"
    out = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        why = f"the SLURM test cluster did not start: {(out.stderr or out.stdout).strip()[-500:]}"
        if os.environ.get("BNLAB_SLURM") == "required":
            pytest.fail(why)
        pytest.skip(why + " (set BNLAB_SLURM=required to make this a failure)")
    return PARTITION


def _start_with(tmp_path, slurmctld_running: bool, sinfo_states: str):
    """`slurm_cluster.sh start` as a non-root user on a machine where `pgrep`, `sinfo`, `id`
    and `scontrol` say what the test wants (fakes first on PATH): no daemon is touched."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    fakes = {"pgrep": "echo 4242" if slurmctld_running else "exit 1",
             "sinfo": f"printf '{sinfo_states}'", "id": "echo 1000", "scontrol": "exit 0"}
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "BNLAB_SLURM_PARTITION": "bnlab"}
    return subprocess.run(["bash", str(REPO_ROOT / "scripts" / "slurm_cluster.sh"), "start"], env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_cluster_already_up_is_reused_or_named_in_one_line(tmp_path):
    up = _start_with(tmp_path / "up", True, "idle\n")
    assert up.returncode == 0 and "reusing the running cluster (slurmctld pid 4242)" in up.stdout, up
    flagged = _start_with(tmp_path / "flagged", True, "mix*\n")
    assert flagged.returncode == 0, flagged
    down = _start_with(tmp_path / "down", True, "down*\ndrain\n")
    assert down.returncode == 1 and not down.stdout
    lines = down.stderr.strip().splitlines()
    assert len(lines) == 1 and "already running (pid 4242)" in lines[0] and "(sinfo: down* drain)" in lines[0] \
        and "slurm_cluster.sh stop" in lines[0], down.stderr
    idled = _start_with(tmp_path / "idled", True, "idler\n")  # not a state: never taken for "idle"
    assert idled.returncode == 1
    # none running: a new cluster is started, which needs root (the fake `id` is not root)
    fresh = _start_with(tmp_path / "fresh", False, "")
    assert fresh.returncode == 1 and fresh.stderr.strip() == "slurm_cluster: start needs root", fresh


def _slurm_sweep(tmp_path, *args, **popen):
    env = {**os.environ, "BNLAB_DATA": str(data_root())}
    cmd = [sys.executable, "-m", "bnlab.train", "-m", f"paths.results={tmp_path}", "tracking.mode=disabled",
           "trainer.progress=false", "hydra/launcher=slurm", f"hydra.launcher.partition={PARTITION}",
           "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


@pytest.mark.slow  # a real cluster (CI starts one): the slow tier
def test_a_sweep_through_the_slurm_launcher_stores_every_run(mnist_root, cluster, tmp_path):
    proc = _slurm_sweep(tmp_path, "experiments=quickstart", "name=slurm_sweep", "seed=0,1",
                        "trainer.max_steps=150", "trainer.eval_every=75", "trainer.log_every=25",
                        "hydra.launcher.timeout_min=10")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert "Bypassing sacct error" not in out, "submitit's accounting warnings are filtered"
    assert "sweep slurm_sweep: 4 of 4 done" in out, "progress in the launching terminal, for SLURM too"
    runs = load_runs(tmp_path / "runs" / "slurm_sweep")
    assert len(runs) == 4 and set(runs.status) == {"completed"}, runs[["status", "path"]]
    assert sorted(zip(runs["cfg.model.norm"], runs["cfg.seed"])) == [("batch", 0), ("batch", 1),
                                                                      ("none", 0), ("none", 1)]
    # the runs of one arm (two seeds, each alone in its seed's group) stack: a SLURM job per stack
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("run.json")]
    jobs = {r["env"]["slurm_job_id"] for r in records}
    assert None not in jobs and len(jobs) == 2, "each stack trained in its own SLURM job"
    assert {r["env"]["engine"] for r in records} == {"stacked"}
    for job in jobs:
        assert len({r["config"]["model"]["norm"] for r in records if r["env"]["slurm_job_id"] == job}) == 1


def _local_run(tmp_path, *args):
    env = {**os.environ, "BNLAB_DATA": str(data_root())}
    cmd = [sys.executable, "-m", "bnlab.train", f"paths.results={tmp_path}", "tracking.mode=disabled",
           "trainer.progress=false", "trainer.num_threads=1", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _job_ids() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True, text=True)
    return set(out.stdout.split())


def _nudge_requeued_jobs(proc, until: float, older: set[str], settle_s: float = 5.0) -> None:
    """SLURM holds a requeued job for about two minutes before it may start again; start it
    sooner instead (scontrol update StartTime=now), so the test waits for training mostly.

    Not at once: a job restarted within the second of its requeue is killed as it starts
    ("Job credential revoked": the node revoked the old instance's credential, and credentials
    carry one-second timestamps), and then the sweep waits for a job that is gone. Wait until
    it has pended `settle_s` seconds. A job of this test (not in `older`) that fails instead
    is reported at once."""
    pending_since: dict[str, float] = {}
    while proc.poll() is None and time.time() < until:
        queue = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i %t %r"], capture_output=True, text=True)
        for line in queue.stdout.splitlines():
            job, state, reason = line.split(maxsplit=2)
            if job in older:
                continue
            if state in ("F", "NF", "BF", "OOM"):
                proc.kill()
                pytest.fail(f"SLURM job {job} ended in state {state} ({reason.strip()}) instead of resuming")
            if state == "PD" and reason.strip() == "BeginTime":
                since = pending_since.setdefault(job, time.time())
                if time.time() - since >= settle_s:
                    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], capture_output=True)
            else:
                pending_since.pop(job, None)
        time.sleep(1)


@pytest.mark.slow  # several minutes of SLURM time limits and requeues
def test_a_time_limited_run_is_requeued_and_resumes_to_the_same_metrics(mnist_root, cluster, tmp_path):
    """Two minutes of SLURM time for a run that needs more: USR2 comes before the limit
    (`signal_delay_s`, and up to a minute earlier: SLURM checks limits every 30 s), the run
    checkpoints at the end of its step, submitit requeues the job, and it resumes."""
    science = ["name=requeue", "seed=3", "trainer.max_steps=90000", "trainer.eval_every=10000",
               "model.dropout=0.1"]
    older = _job_ids()
    proc = _slurm_sweep(tmp_path / "slurm", *science, "hydra.launcher.timeout_min=2",
                        "hydra.launcher.signal_delay_s=30", "hydra.launcher.max_num_timeout=5")
    reference = _local_run(tmp_path / "local", *science)  # meanwhile, on the other core
    _nudge_requeued_jobs(proc, until=time.time() + 1200, older=older)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-2000:]

    summaries = list((tmp_path / "slurm").rglob("summary.json"))
    assert len(summaries) == 1, "the requeued job resumed in its own folder"
    summary = json.loads(summaries[0].read_text())
    assert summary["status"] == "completed"
    assert summary.get("resumed_from_steps"), "it was stopped and resumed at least once"
    assert all(0 < s < 90000 for s in summary["resumed_from_steps"])
    whole = json.loads(next((tmp_path / "local").rglob("summary.json")).read_text())
    for key in ("test/acc", "test/loss", "val/acc", "train/loss", "best/val/acc", "best/step", "steps"):
        assert summary[key] == whole[key], key
    log = "".join(p.read_text() for p in (tmp_path / "slurm").rglob("*_log.out"))
    assert "Requeued job" in log
