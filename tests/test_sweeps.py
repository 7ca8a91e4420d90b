"""Studies, parallel sweeps that survive SIGKILL, the submitit path, and bnlab-status."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from bnlab.errors import ConfigError
from bnlab.resolvers import CONF_DIR, EXPERIMENTS_DIR
from bnlab.status import main as status_main
from bnlab.store import load_runs
from bnlab.sweep import expand_sweep, find_done
from bnlab.train import preflight

from conftest import data_root

TINY = ["trainer.max_steps=150", "trainer.eval_every=75", "trainer.log_every=25",
        "tracking.mode=disabled", "trainer.progress=false"]


def _cli(tmp_path, *args, timeout=300, **popen):
    env = {**os.environ, "BNLAB_DATA": str(data_root())}
    cmd = [sys.executable, "-m", "bnlab.train", f"paths.results={tmp_path}", *args]
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_study_composes_and_declares_its_claim():
    studies = sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))
    assert "quickstart" in studies
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for study in studies:
            cfg = compose("config", overrides=[f"experiments={study}"], return_hydra_config=True)
            assert cfg.name == study and cfg.claim and len(cfg.tags) > 0
            assert cfg.hydra.mode.name == "MULTIRUN" and cfg.hydra.sweeper.params


def test_command_line_narrows_or_widens_a_study():
    params = {"model.norm": "none,batch", "seed": "0,1"}
    assert len(expand_sweep(params, [])) == 4
    wide = expand_sweep(params, ["seed=0,1,2,3"])
    assert len(wide) == 8 and {j[1] for j in wide} == {f"seed={s}" for s in range(4)}
    assert expand_sweep(params, ["model.norm=batch"]) == [["model.norm=batch", "seed=0"],
                                                          ["model.norm=batch", "seed=1"]]


def test_preflight_checks_every_job_of_a_study_before_launching():
    cfgs = preflight(["experiments=quickstart", "tracking.mode=disabled"])
    assert sorted((c.model.norm, c.seed) for c in cfgs) == [("batch", 0), ("batch", 1), ("none", 0), ("none", 1)]
    with pytest.raises(ConfigError) as err:
        preflight(["experiments=quickstart", "model.norm=none,instance"])
    assert err.value.key == "model.norm" and "model.norm=instance" in str(err.value)
    with pytest.raises(ConfigError) as err:
        preflight(["experiments=nosuchstudy"])
    assert err.value.key == "experiments" and "quickstart" in str(err.value)


def _summaries(root: Path):
    return [json.loads(p.read_text()) for p in root.rglob("summary.json")]


@pytest.mark.slow  # ~50 s: a sweep killed mid-way, then relaunched to the end
def test_sigkilled_sweep_relaunched_completes_every_run_exactly_once(mnist_root, tmp_path):
    args = ["experiments=quickstart", "name=killed", "seed=0,1,2,3", "hydra.launcher.n_jobs=2", *TINY]
    proc = _cli(tmp_path, *args, start_new_session=True)
    study = tmp_path / "runs" / "killed"
    deadline = time.time() + 240
    while len(_summaries(study)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep finished before it could be killed; give it more work"
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its workers, mid-sweep
    proc.wait()
    first = _summaries(study)
    assert 2 <= len(first) < 8

    again = _cli(tmp_path, *args)
    assert again.returncode == 0, again.stderr[-2000:]

    summaries = _summaries(study)
    fps = [s["fingerprint"] for s in summaries]
    assert len(summaries) == 8 and len(set(fps)) == 8, "every run trained exactly once"
    assert all(s["status"] == "completed" for s in summaries)
    assert {s["fingerprint"] for s in first} <= set(fps), "nothing that completed was lost"
    for p in study.rglob("*.json"):  # no corrupted file: every JSON parses
        json.loads(p.read_text())
    runs = load_runs(study)
    done = runs[runs.status == "completed"]
    assert sorted(zip(done["cfg.model.norm"], done["cfg.seed"])) == sorted(
        (n, s) for n in ("batch", "none") for s in range(4))
    # the relaunch skipped what was done and says so
    skips = [json.loads(p.read_text()) for p in study.rglob("skipped.json")]
    # (a run killed after its first checkpoint was resumed in its own folder instead)
    assert sorted(s["reason"] for s in skips if s["reason"] != "resumed") == ["already done"] * len(first)
    # parallel jobs share the cores: one torch thread each on a 2-core machine
    threads = {json.loads(p.read_text())["env"]["torch_threads"] for p in study.rglob("run.json")}
    assert threads == {max(1, (os.cpu_count() or 1) // 2)}


def test_third_launch_trains_nothing(mnist_root, tmp_path):
    args = ["experiments=quickstart", "name=again", "model.norm=batch", *TINY]
    assert _cli(tmp_path, *args).returncode == 0
    before = sorted(p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("summary.json"))
    out = _cli(tmp_path, *args)
    assert out.returncode == 0
    after = sorted(p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("summary.json"))
    assert before == after and len(after) == 2
    assert find_done(tmp_path / "runs" / "again", json.loads(
        next((tmp_path / "runs").rglob("summary.json")).read_text())["fingerprint"]) is not None


@pytest.mark.slow  # ~20 s: submitit's own process start-up per job
def test_submitit_local_executor_runs_a_small_study(mnist_root, tmp_path):
    out = _cli(tmp_path, "experiments=quickstart", "name=submitit", "seed=0",
               "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", *TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    summaries = _summaries(tmp_path / "runs" / "submitit")
    assert sorted(s["status"] for s in summaries) == ["completed", "completed"]


def test_slurm_launcher_config_composes():
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert "SlurmLauncher" in launcher._target_ and launcher.partition == "gpu"
    assert launcher.gpus_per_node == 1 and launcher.array_parallelism > 0 and launcher.timeout_min > 0


def test_status_lists_runs_aggregated_over_seeds(mnist_root, tmp_path, capsys):
    assert _cli(tmp_path, "experiments=quickstart", "name=st", *TINY).returncode == 0
    status_main(["st", "--runs-root", str(tmp_path / "runs"), "--runs"])
    out = capsys.readouterr().out
    assert "4 of 4 done" in out and "2 seed(s)" in out and "swept: " in out
    lines = out.splitlines()
    header = next(ln for ln in lines if ln.strip().startswith("model.norm"))
    assert "learned" in header and "did not learn" in header and "test/acc" in header
    agg = [ln.split() for ln in lines[lines.index(header) + 1:lines.index(header) + 3]]
    assert sorted(row[0] for row in agg) == ["batch", "none"]
    assert all(row[1] == "2" and row[2] == "2" for row in agg)  # 2 runs, 2 learned
    assert "±" in out


def test_an_ad_hoc_sweep_is_plotted_and_confirmation_jobs_follow_the_tuning(mnist_root, tmp_path, capsys):
    """A sweep launched from the command line, with no study file, is a folder bnlab-plot
    draws; and bnlab-study's phase 2 reruns each arm's chosen lr on the confirmation seeds."""
    from bnlab.analysis.spec import load_spec
    from bnlab.analysis.frames import frame_from_store
    from bnlab.plot_command import main as plot_main
    from bnlab.study_command import confirmation_jobs

    r = _cli(tmp_path, "model.norm=none,batch", "optim.lr=0.5,2.0", "seed=0,1", "name=adhoc",
             "hydra.launcher.n_jobs=2", *TINY, "-m")
    assert r.returncode == 0, r.stderr[-2000:]
    sweep = next((tmp_path / "runs" / "adhoc").glob("multirun_*"))
    plot_main([str(sweep), "--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert "8 runs" in out and (sweep / "figures" / "convergence.png").exists()
    assert (sweep / "figures" / "best_test_acc_vs_lr.png").exists()
    runs = frame_from_store(sweep)
    spec = load_spec("mnist_mlp")
    jobs = confirmation_jobs(runs, spec)
    assert [j[0] for j in jobs] == ["model.norm=none", "model.norm=batch"]
    assert all(j[-1] == "seed=100,101,102,103,104" and j[1].startswith("optim.lr=") for j in jobs)


def test_running_elsewhere_failed_and_damaged_are_not_counted_as_done(tmp_path):
    from bnlab.store import write_json_atomic
    from bnlab.sweep import SKIP_FILE, SWEEP_FILE, progress_line, sweep_progress

    write_json_atomic(tmp_path / SWEEP_FILE, {"total": 7, "started_unix": time.time()})
    (tmp_path / "elsewhere_run").mkdir()
    write_json_atomic(tmp_path / "elsewhere_run" / "summary.json", {"status": "completed"})
    jobs = {"0": {"status": "completed"}, "1": "already done", "2": "running elsewhere",
            "3": {"status": "failed"}, "4": b"\xff\xfe", "5": {"status": "diverged"},
            "6": {"reason": "resumed", "existing_run": str(tmp_path / "elsewhere_run")}}
    for job, content in jobs.items():
        (tmp_path / job).mkdir()
        if isinstance(content, bytes):
            (tmp_path / job / "summary.json").write_bytes(content)
        elif isinstance(content, dict) and "status" in content:
            write_json_atomic(tmp_path / job / "summary.json", content)
        else:
            write_json_atomic(tmp_path / job / SKIP_FILE, content if isinstance(content, dict) else {"reason": content})
    p = sweep_progress(tmp_path)
    assert (p["done"], p["trained"], p["skipped"], p["elsewhere"], p["failed"], p["damaged"]) == (4, 3, 1, 1, 1, 1)
    line = progress_line("s", p)
    assert line.startswith("sweep s: 4 of 7 done (3 trained, 1 already done; 1 failed; 1 with a damaged summary; "
                           "1 being trained by another process, not done here)"), line


@pytest.mark.slow  # ~40 s: four launches of the same sweep
def test_a_relaunch_with_nothing_to_train_leaves_no_folder_and_force_retrains(mnist_root, tmp_path):
    args = ["experiments=quickstart", "name=force", "model.norm=batch", *TINY]
    assert _cli(tmp_path, *args).returncode == 0
    study = tmp_path / "runs" / "force"
    folders = sorted(p.name for p in study.iterdir())
    again = _cli(tmp_path, *args)
    assert again.returncode == 0 and sorted(p.name for p in study.iterdir()) == folders, "no new folder"
    single = _cli(tmp_path, "name=force", "model.norm=batch", "seed=0", *TINY[:-2], "experiments=quickstart",
                  "hydra.mode=RUN")
    assert single.returncode == 0 and sorted(p.name for p in study.iterdir()) == folders

    forced = _cli(tmp_path, *args, "force=true")
    assert forced.returncode == 0, forced.stderr[-2000:]
    runs = load_runs(study)
    assert sorted(runs.status) == ["completed", "completed", "superseded", "superseded"], "nothing deleted"
    latest = runs[runs.status == "completed"]
    assert (latest["finished_at"].values > runs[runs.status == "superseded"]["finished_at"].max()).all()
    fp = latest["fingerprint"].iloc[0]
    assert str(find_done(study, fp)) in set(latest["path"]), "later launches point at the latest run"


def test_dry_run_lists_every_job_and_its_state_and_writes_nothing(mnist_root, tmp_path):
    args = ["experiments=quickstart", "name=dry", "seed=0", *TINY]
    assert _cli(tmp_path, *args, "model.norm=batch").returncode == 0
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    out = _cli(tmp_path, *args, "--dry-run")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("study dry: 2 job(s)")
    assert any("model.norm=none" in ln and ln.rstrip().endswith("to train") for ln in lines)
    assert any("model.norm=batch" in ln and "already done" in ln for ln in lines)
    assert lines[-1].startswith("dry run: 1 to train, 0 to resume, 1 already done, 0 running elsewhere")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before, "nothing written"
    bad = _cli(tmp_path, *args, "optim.lr=-1", "--dry-run")
    assert bad.returncode == 2 and bad.stderr.startswith("bnlab-train: error: optim.lr:")


def test_cfg_of_a_sweep_says_what_to_do_instead_of_a_traceback(tmp_path):
    out = _cli(tmp_path, "-m", "model.norm=none,batch", "--cfg", "job")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--dry-run" in out.stderr and out.stderr.count("\n") == 1


def test_help_is_bnlabs_own_and_lists_only_its_groups(tmp_path):
    out = _cli(tmp_path, "--help")
    assert out.returncode == 0
    assert out.stdout.startswith("bnlab-train: train one configuration")
    groups = [ln.split(":")[0] for ln in out.stdout.split("== Config groups")[1].split("\n\n")[0].splitlines()[1:]]
    assert groups == ["data", "experiments", "init", "model", "norm_options", "optim", "paths", "probes", "recipe",
                      "tracking", "trainer"]
    assert len(out.stdout.splitlines()) < 40
    comp = subprocess.run([sys.executable, "-m", "bnlab.train", "-sc", "query=bash"], capture_output=True, text=True,
                          env={**os.environ, "COMP_LINE": "bnlab-train "})
    offered = comp.stdout.split()
    assert "experiments=" in offered and not any(o.startswith((".git", ".venv", "results", "tests")) for o in offered)


def test_a_parallel_sweep_says_which_job_each_line_is_and_counts_progress(mnist_root, tmp_path):
    out = _cli(tmp_path, "-m", "name=logs", "model.norm=none,batch", "hydra.launcher.n_jobs=2", *TINY)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    for job, label in ((0, "model.norm=none"), (1, "model.norm=batch")):
        assert f"[job {job}: {label}] completed after 150 steps" in text
    lines = [ln for ln in text.splitlines() if "step 75/150" in ln]
    assert lines and all("[job " in ln for ln in lines)
    assert "sweep logs: 2 of 2 done (2 trained, 0 already done)" in text
    steps = [ln for ln in lines if "train/loss" in ln]
    assert all(len(ln.split("train/loss ")[1].split()[0]) <= 7 for ln in steps), "rounded metrics"


def _session_alive(sid: int) -> list[int]:
    """Live (not zombie) processes of session `sid`: the launcher and every worker it made."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state, ppid, pgrp, session, ...
            alive.append(int(stat.parent.name))
    return alive


def _last_records(root: Path) -> dict[str, dict]:
    """Each run folder's last logged record (step -1 before the first)."""
    last = {}
    for m in root.rglob("metrics.jsonl"):
        lines = [ln for ln in m.read_text().splitlines() if ln.strip()]
        last[str(m.parent)] = json.loads(lines[-1]) if lines else {"step": -1, "time_s": 0.0}
    return last


def _last_steps(root: Path) -> dict[str, int]:
    """Each run folder's last logged step."""
    return {run: r["step"] for run, r in _last_records(root).items()}


@pytest.mark.parametrize("sig,whom", [("SIGTERM", "group"), ("SIGTERM", "launcher"), ("SIGKILL", "launcher")])
def test_a_stopped_sweep_leaves_no_worker_and_trains_nothing_after_the_signal(mnist_root, tmp_path, sig, whom):
    """Four long jobs on two loky workers, stopped once the first job trains: 5 s later no
    process of the sweep is alive, no job started after the signal, the runs that were
    training went on for at most the step in progress, and each is recorded failed with a
    checkpoint to resume from (a SIGKILLed launcher's workers stop themselves)."""
    # one run per job (trainer.stack=1): the bounds below (5 s, 5 steps) are a single run's; a
    # stack's stop and records are tested in tests/test_stack_sweeps.py
    proc = _cli(tmp_path, "-m", "name=stop", "seed=0,1,2,3", "hydra.launcher.n_jobs=2", "trainer.stack=1",
                "trainer.max_steps=1000000",
                "trainer.eval_every=1000000", "trainer.log_every=5", "trainer.num_threads=1",
                "tracking.mode=disabled", "trainer.progress=false", start_new_session=True)
    root = tmp_path / "runs" / "stop"
    deadline = time.time() + 240
    while not any(s > 0 for s in _last_steps(root).values()) if root.exists() else True:
        assert proc.poll() is None and time.time() < deadline, "the sweep did not start training"
        time.sleep(0.2)
    if whom == "group":
        os.killpg(proc.pid, getattr(signal, sig))
    else:
        os.kill(proc.pid, getattr(signal, sig))
    at_signal = _last_records(root)
    time.sleep(5)
    assert proc.poll() is not None and _session_alive(proc.pid) == [], "every process of the sweep has ended"
    after = _last_records(root)
    assert set(after) == set(at_signal), "no job started after the signal"
    if whom == "launcher" and sig == "SIGKILL":
        # The workers learn of the launcher's death from the kernel (PR_SET_PDEATHSIG) once it
        # has torn the launcher down, which on a loaded machine takes some milliseconds (tens
        # of these tiny steps): bound the training after the signal in training seconds, far
        # below the 5 s a worker that had not stopped would have trained.
        extra = {r: after[r]["time_s"] - at_signal[r]["time_s"] for r in after}
        assert all(t < 1.0 for t in extra.values()), (extra, at_signal, after)
    else:  # the launcher forwards the signal itself: the step in progress at most
        assert all(after[r]["step"] <= at_signal[r]["step"] + 5 for r in after), (at_signal, after)
    for run in after:
        summary = json.loads((Path(run) / "summary.json").read_text())
        assert summary["status"] == "failed" and "SIGTERM" in summary["error"], summary
        assert (Path(run) / "checkpoint.pt").exists()


@pytest.mark.parametrize("dash_m", [[], ["-m"]])
def test_the_dry_run_and_the_launch_accept_the_same_command_line(mnist_root, tmp_path, dash_m):
    """A comma list on the command line is a sweep with or without -m: the line `--dry-run`
    previews is the line that launches, and the preview then finds every job done."""
    line = [*dash_m, "name=agree", "model.norm=none,batch", "seed=0", "trainer.max_steps=20", "trainer.eval_every=20",
            "trainer.log_every=10", "tracking.mode=disabled", "trainer.progress=false", "hydra.launcher.n_jobs=1"]
    before = _cli(tmp_path, *line, "--dry-run")
    assert before.returncode == 0 and "2 job(s)" in before.stdout and "2 to train" in before.stdout, before
    launch = _cli(tmp_path, *line)
    assert launch.returncode == 0, launch.stderr[-2000:]
    assert len(list((tmp_path / "runs" / "agree").rglob("summary.json"))) == 2
    after = _cli(tmp_path, *line, "--dry-run")
    assert "0 to train" in after.stdout and "2 already done" in after.stdout, after.stdout


def test_cfg_job_shows_the_values_a_run_uses(tmp_path):
    """`--cfg job` resolves the recipe's interpolations (learning rate, batch size, init);
    `--unresolved` shows them as written."""
    shown = _cli(tmp_path, "model.norm=batch", "--cfg", "job")
    assert shown.returncode == 0 and "${" not in shown.stdout, shown.stdout
    cfg = __import__("yaml").safe_load(shown.stdout)
    assert (cfg["optim"]["lr"], cfg["optim"]["batch_size"], cfg["init"]["std"]) == (0.5, 60, 0.1)
    raw = _cli(tmp_path, "model.norm=batch", "--cfg", "job", "--unresolved")
    assert raw.returncode == 0 and "${oc.select:recipe" in raw.stdout


_WORKER = """
import os, signal, sys, time
from omegaconf import OmegaConf
from bnlab.workers import JOBLIB_LAUNCHER, guard_worker
got = []
signal.signal(signal.SIGTERM, lambda *_: got.append(time.time()))
guard_worker(OmegaConf.create({"launcher": {"_target_": JOBLIB_LAUNCHER}}))
open(sys.argv[1] + ".ready", "w").close()
end = time.time() + 3
while time.time() < end:
    time.sleep(0.05)
open(sys.argv[1], "w").write(str(len(got)))
"""
_LAUNCHER = """
import os, subprocess, sys, time
env = {**os.environ, "BNLAB_LAUNCHER_PID": str(os.getpid())}
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], env=env)
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_an_orphaned_worker_is_asked_to_stop_once(tmp_path):
    """When the launcher dies, its worker gets one SIGTERM (from the kernel), not a second one
    from its watching thread: a second SIGTERM means "stop now" (after REPEAT_WINDOW_S) and could cut the checkpoint
    the first one is writing (seen as a failed run with no checkpoint after a SIGKILLed sweep)."""
    out = tmp_path / "count"
    launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER, _WORKER, str(out)])
    deadline = time.time() + 60
    while not (tmp_path / "count.ready").exists():
        assert time.time() < deadline and launcher.poll() is None, "the worker did not start"
        time.sleep(0.05)
    launcher.kill()
    launcher.wait()
    while not out.exists():
        assert time.time() < deadline, "the worker did not finish"
        time.sleep(0.1)
    assert out.read_text() == "1"


@pytest.mark.parametrize("study", sorted(p.stem for p in (Path(__file__).parents[1] / "experiments").glob("*.yaml")))
def test_the_preflights_fast_composition_is_hydras(study, tmp_path):
    """compose_jobs composes a study's jobs from one composition per set of group choices plus
    each job's values (bnlab.train._compose_fast): every job's config is identical to Hydra's
    own full composition of it."""
    from bnlab.train import _compose, _compose_fast, expand_sweep

    with initialize_config_dir(str(Path(__file__).parents[1] / "conf"), version_base="1.3", job_name="t"):
        base = compose("config", overrides=[f"experiments={study}"], return_hydra_config=True)
        from omegaconf import OmegaConf
        params = OmegaConf.to_container(OmegaConf.select(base, "hydra.sweeper.params") or {})
        jobs = expand_sweep(params, [f"experiments={study}"])
        jobs = jobs[::max(1, len(jobs) // 12)]  # every swept key varies across these
        jobs.append([f"experiments={study}", "model.widths=[50,50]", "seed=7", "data.val_size=1000"])
        cache = {}
        for job in jobs:
            if any(o.startswith("model.widths") for o in job) and "mlp" not in str(base.model.get("name")):
                continue
            fast = _compose_fast(compose, job, cache)
            full = _compose(compose, job)
            assert OmegaConf.to_container(fast) == OmegaConf.to_container(full), job


def test_the_sweeper_skips_a_second_composition_only_of_jobs_the_preflight_checked(monkeypatch):
    """bnlab's sweeper is Hydra's basic one, except that it does not compose every job again
    to check it when bnlab-train's preflight has (BNLAB_PREFLIGHT_VALIDATED=1)."""
    with initialize_config_dir(str(Path(__file__).parents[1] / "conf"), version_base="1.3", job_name="t"):
        cfg = compose("config", return_hydra_config=True)
    from hydra_plugins.bnlab_sweeper.bnlab_sweeper import BasicSweeper, BnlabSweeper, VALIDATED_ENV as PLUGIN_ENV

    from bnlab.train import VALIDATED_ENV

    assert PLUGIN_ENV == VALIDATED_ENV
    assert cfg.hydra.sweeper._target_.endswith("BnlabSweeper")
    calls = []
    sweeper = BnlabSweeper(max_batch_size=None)
    monkeypatch.setattr(BasicSweeper, "validate_batch_is_legal", lambda self, batch: calls.append(batch))
    monkeypatch.setenv(VALIDATED_ENV, "1")
    sweeper.validate_batch_is_legal([["seed=0"]])
    assert calls == []
    monkeypatch.delenv(VALIDATED_ENV)
    sweeper.validate_batch_is_legal([["seed=0"]])
    assert calls == [[["seed=0"]]]
