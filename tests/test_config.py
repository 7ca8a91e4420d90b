"""Bad input: one line naming the key and what is allowed, non-zero exit, no traceback,
nothing left behind that looks like a run. And the CLI's good paths."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bnlab.config import validate
from bnlab.errors import ConfigError
from bnlab.train import compose_jobs, preflight

from conftest import data_root

# (override, key the error must name, a word the message must contain)
BAD = [
    ("trainer.checkpoint.every_s=0", "trainer.checkpoint.every_s", "> 0"),
    ("trainer.checkpoint.max_overhead=2", "trainer.checkpoint.max_overhead", "(0, 1]"),
    ("trainer.checkpoint.keep=maybe", "trainer.checkpoint.keep", "true or false"),
    ("data.name=svhn", "data.name", "mnist, cifar10"),
    ("model.name=resnet", "model.name", "mlp, deep_mlp, cnn, vgg, resnet20"),
    ("model.norm=instance", "model.norm", "none, batch, layer, group, noisy_batch, noise"),
    ("model.activation=gelu", "model.activation", "sigmoid, relu, tanh"),
    ("init.scheme=orthogonal", "init.scheme", "default, normal, xavier, kaiming"),
    ("optim.name=rmsprop", "optim.name", "sgd, adam"),
    ("optim.lr=0", "optim.lr", "> 0"),
    ("optim.lr=-0.1", "optim.lr", "> 0"),
    ("optim.lr=abc", "optim.lr", "number"),
    ("optim.lr=nan", "optim.lr", "number"),
    ("optim.lr=true", "optim.lr", "number"),
    ("model.dropout=1.0", "model.dropout", "[0, 1)"),
    ("model.dropout=-0.1", "model.dropout", "[0, 1)"),
    ("model.dropout_placement=input", "model.dropout_placement", "before_classifier"),
    ("optim.batch_size=0", "optim.batch_size", ">= 1"),
    ("optim.batch_size=55001", "optim.batch_size", "<= 55000"),
    ("optim.batch_size=2.5", "optim.batch_size", "integer"),
    ("trainer.max_steps=0", "trainer.max_steps", ">= 1"),
    ("trainer.eval_every=-5", "trainer.eval_every", ">= 1"),
    ("model.widths=[]", "model.widths", "non-empty"),
    ("model.widths=[100,0]", "model.widths", "positive"),
    ("init.std=0", "init.std", "> 0"),
    ("init.std=-1", "init.std", "> 0"),
    ("init.gain=0", "init.gain", "> 0"),
    ("tracking.mode=cloud", "tracking.mode", "offline, online, disabled"),
    ("trainer.device=tpu", "trainer.device", "auto, cpu"),
    ("seed=-1", "seed", ">= 0"),
    ("data.val_size=60000", "data.val_size", "<= 59999"),
    ("model.bn.momentum=0", "model.bn.momentum", "(0, 1]"),
    ("probes.act_input.units=[100]", "probes.act_input.units", "[0, 100)"),
    ("name=", "name", "1 to 100"),
    ("name=a/b", "name", "letters"),
    ("trainer.max_steps=1e3", "trainer.max_steps", "integer"),
    ("seed=4294967296", "seed", "<= 4294967295"),
    ("data.split_seed=1180591620717411303424", "data.split_seed", "<= 4294967295"),
    ("data.target_val_acc=abc", "data.target_val_acc", "(0, 1]"),
    ("data.target_val_acc=1.5", "data.target_val_acc", "(0, 1]"),
    ("name=..", "name", "not only dots"),
    ("name=.", "name", "not only dots"),
    ("name=" + "x" * 300, "name", "1 to 100"),
]


@pytest.mark.parametrize("overrides,key,allowed", [
    (["model=cnn", "model.channels=[4,4,4,4,4,4]"], "model.channels", "at most 4"),
    (["model=cnn", "model.kernel_size=99"], "model.kernel_size", "<= 28"),
    (["model=cnn", "data=cifar10", "model.kernel_size=33"], "model.kernel_size", "<= 32"),
])
def test_cnn_shapes_that_cannot_fit_the_image(cfg_factory, overrides, key, allowed):
    with pytest.raises(ConfigError) as err:
        validate(cfg_factory(*overrides))
    assert err.value.key == key and allowed in str(err.value)
    validate(cfg_factory("model=cnn", "model.channels=[4,4,4,4]"))  # 28 -> 14 -> 7 -> 3 -> 1: fits


@pytest.mark.parametrize("override,key,allowed", BAD)
def test_validate_rejects_with_key_and_allowed_values(cfg_factory, override, key, allowed):
    with pytest.raises(ConfigError) as err:
        validate(cfg_factory(override))
    assert err.value.key == key
    assert allowed in str(err.value) and "\n" not in str(err.value)


def test_defaults_are_the_ioffe_mlp_and_valid(cfg_factory):
    cfg = cfg_factory()
    validate(cfg)
    assert cfg.data.name == "mnist" and cfg.model.name == "mlp"
    assert list(cfg.model.widths) == [100, 100, 100] and cfg.model.activation == "sigmoid"
    assert cfg.optim.batch_size == 60 and cfg.init.scheme == "normal"
    assert cfg.tracking.mode == "disabled"  # tests; the shipped default is offline


def test_shipped_defaults(tmp_path):
    from hydra import compose, initialize_config_dir
    from bnlab.resolvers import CONF_DIR, REPO_ROOT
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config")
    assert cfg.tracking.mode == "offline"
    assert cfg.paths.results == str(REPO_ROOT / "results")
    expected_data = os.environ.get("BNLAB_DATA", str(REPO_ROOT / "data"))
    assert cfg.data.root == expected_data


@pytest.mark.parametrize("override,key,allowed", [
    ("data=svhn", "data", "cifar10, mnist"),
    ("model=resnet", "model", "cnn, deep_mlp, mlp, resnet20, vgg"),
    ("optim=lamb", "optim", "adam, sgd"),
    ("init=orthogonal", "init", "default, kaiming, normal, xavier"),
    ("model.nrom=batch", "model.nrom", "no such key"),
])
def test_preflight_names_group_and_unknown_keys(override, key, allowed):
    with pytest.raises(ConfigError) as err:
        preflight([override, "tracking.mode=disabled"])
    assert err.value.key == key and allowed in str(err.value)


def test_preflight_checks_every_value_of_a_command_line_sweep():
    cfgs = preflight(["optim.lr=0.1,0.5", "tracking.mode=disabled"], multirun=True)
    assert sorted(c.optim.lr for c in cfgs) == [0.1, 0.5]
    with pytest.raises(ConfigError) as err:
        preflight(["optim.lr=0.1,-1"], multirun=True)
    assert err.value.key == "optim.lr" and "optim.lr=-1" in str(err.value)


@pytest.mark.parametrize("studies", ["experiments=[quickstart,lr_mnist]", "experiments=quickstart,lr_mnist",
                                     "experiments=glob(*)"])
def test_one_study_at_a_time_in_the_launch_and_its_dry_run(studies):
    """A list of study files was merged into one config without a word; a sweep over them runs
    one job per file and ignores each file's sweep. `--dry-run` previews with compose_jobs."""
    for jobs in (lambda: compose_jobs([studies], multirun=True), lambda: preflight([studies], multirun=True)):
        with pytest.raises(ConfigError, match="one study at a time") as err:
            jobs()
        assert err.value.key == "experiments"


@pytest.mark.parametrize("override,key,allowed", [
    ("name=ünïcödé", "name", """quote it, e.g. 'name="ünïcödé"'"""),
    ("paths.results=~/x", "paths.results", "`~` is not expanded in an override: give an absolute path "
                                           "(e.g. paths.results=$HOME/x)"),
    ("hydra.launcher.n_jobs=abc", "hydra.launcher.n_jobs", "got 'abc'; must be an integer >= 1"),
])
def test_hydra_parser_errors_name_the_key_and_what_is_allowed(override, key, allowed):
    """Hydra said "LexerNoViableAltException: name=ünïcödé; ^" or "Error merging override …"."""
    with pytest.raises(ConfigError) as err:
        compose_jobs([override, "seed=0,1"], multirun=True)
    assert err.value.key == key and allowed in str(err.value) and "\n" not in str(err.value)


def test_a_quoted_value_passes_the_grammar_and_meets_the_key_own_check():
    with pytest.raises(ConfigError, match="must be a name of 1 to 100 letters") as err:
        compose_jobs(['name="ünïcödé"'])
    assert err.value.key == "name"


def _cli(tmp_path: Path, *args: str, env_extra=None):
    env = {**os.environ, "BNLAB_DATA": str(data_root()), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "bnlab.train", f"paths.results={tmp_path}",
                           "tracking.mode=disabled", "trainer.progress=false", *args],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("args,key", [
    (["model=resnet"], "model:"),
    (["optim.lr=-1"], "optim.lr:"),
    (["model.dropout=1.5"], "model.dropout:"),
    (["model.nrom=batch"], "model.nrom:"),
    (["data.root=/nonexistent/bnlab-data", "data.download=false"], "data.root:"),
    (["-m", "optim.lr=0.1,-1"], "optim.lr:"),
    (["seed=4294967296"], "seed:"),
    (["data.split_seed=1180591620717411303424"], "data.split_seed:"),
    (["data.target_val_acc=abc"], "data.target_val_acc:"),
    (["name=.."], "name:"),
    (["name=" + "n" * 300], "name:"),
    (["model=cnn", "model.kernel_size=99"], "model.kernel_size:"),
    (["model=cnn", "model.channels=[4,4,4,4,4,4]"], "model.channels:"),
    (["-m", "hydra.launcher.n_jobs=0", "seed=0,1"], "hydra.launcher.n_jobs:"),
    (["paths.results=/proc/bnlab"], "paths.results:"),
    (["paths.results=/etc/hostname/bnlab"], "paths.results:"),
    (["tags=[" + ",".join(["t"] * 20000) + "]"], "tags:"),
    (["experiments=[quickstart,lr_mnist]"], "experiments:"),
    (["name=ünïcödé"], "name:"),
    (["paths.results=~/x"], "paths.results:"),
    (["-m", "hydra.launcher.n_jobs=abc", "seed=0,1"], "hydra.launcher.n_jobs:"),
])
def test_cli_bad_input_is_one_line_nonzero_and_leaves_nothing(tmp_path, args, key):
    proc = _cli(tmp_path, *args)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"bnlab-train: error: {key}"), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not list(tmp_path.rglob("summary.json")) and not list(tmp_path.rglob("run.json"))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob(".hydra"))


def test_cli_online_tracking_without_credentials_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path / "home"), BNLAB_DATA=str(data_root()))
    proc = subprocess.run([sys.executable, "-m", "bnlab.train", f"paths.results={tmp_path}", "tracking.mode=online",
                           "trainer.max_steps=10"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("bnlab-train: error: tracking.mode:") and "wandb login" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_cli_data_missing_found_late_cleans_the_run_folder(tmp_path):
    # Missing data is found when run() loads it, after Hydra made the run folder: that
    # folder must be removed again.
    proc = _cli(tmp_path, "data.download=false",
                env_extra={"BNLAB_DATA": str(tmp_path / "no-data-here")})
    assert proc.returncode == 2 and "data.root:" in proc.stderr and "Traceback" not in proc.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and "no-data-here" not in str(p)]


def test_cli_completed_and_diverged_runs_exit_zero(mnist_root, tmp_path):
    ok = _cli(tmp_path, "name=cli", "trainer.max_steps=30", "trainer.eval_every=30", "model.norm=batch")
    assert ok.returncode == 0, ok.stderr
    bad = _cli(tmp_path, "name=cli", "model.norm=none", "optim.lr=1000", "trainer.max_steps=500")
    assert bad.returncode == 0, bad.stderr
    runs = sorted(p for p in (tmp_path / "runs" / "cli").iterdir() if not p.name.startswith("."))
    assert len(runs) == 2 and all((r / ".hydra" / "config.yaml").exists() for r in runs)
    statuses = sorted(json.loads((r / "summary.json").read_text())["status"] for r in runs)
    assert statuses == ["completed", "diverged"]


# the CNN pairs take a minute or more each on a loaded 2-core machine: the slow tier (make test-all)
@pytest.mark.parametrize("data,model", [("mnist", "mlp"), pytest.param("mnist", "cnn", marks=pytest.mark.slow),
                                        ("cifar10", "mlp"), pytest.param("cifar10", "cnn", marks=pytest.mark.slow)])
@pytest.mark.parametrize("norm", ["none", "batch"])
def test_every_data_and_model_pair_trains_out_of_the_box(mnist_root, cifar_root, cfg_factory, tmp_path, data,
                                                         model, norm):
    """The recipe defaults (conf/recipe/<data>_<model>.yaml: learning rate, batch size, init)
    learn within a few hundred steps, with and without BN: no user has to find them first.
    The CNN is narrowed (8-16 channels, 64 hidden) to keep the test fast: its init is scaled
    by fan-in, so the width does not change what the defaults are tested for."""
    from bnlab.runner import run

    extra = ["data.verify=false"] if data == "cifar10" else []  # the project's JPEG-rebuilt copy
    if model == "cnn":
        extra += ["model.channels=[8,16]", "model.widths=[64]"]
    cfg = cfg_factory(f"data={data}", f"model={model}", f"model.norm={norm}", "trainer.max_steps=300",
                      "trainer.eval_every=300", "trainer.log_every=50", "trainer.num_threads=2", *extra)
    summary = run(cfg, tmp_path / "r")
    assert summary["status"] == "completed" and summary["learned"], summary
    assert summary["best/val/acc"] >= (0.8 if data == "mnist" else 0.2), summary["best/val/acc"]


def test_a_budget_profile_sets_the_budget_and_a_bad_one_is_one_line(tmp_path):
    """`profile=cpu|gpu` picks a study's budget (experiments/santurkar.yaml); the profile acts
    only through the keys it sets, so the run's identity is those resolved keys."""
    from hydra import compose, initialize_config_dir

    from bnlab.config import validate
    from bnlab.errors import ConfigError
    from bnlab.resolvers import CONF_DIR
    from bnlab.store import fingerprint, resolved_config

    def cfg(*overrides):
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=["experiments=santurkar", f"paths.results={tmp_path}", *overrides])

    cpu, gpu = cfg(), cfg("profile=gpu")
    assert (cpu.model.width_multiplier, cpu.trainer.max_steps) == (0.125, 2000)
    assert (gpu.model.width_multiplier, gpu.trainer.max_steps, gpu.optim.batch_size) == (1.0, 15000, 128)
    validate(gpu)
    with pytest.raises(ConfigError, match=r"^profile: got 'tpu'; allowed: cpu, gpu$"):
        validate(cfg("profile=tpu"))
    # a profile added later leaves the runs of the others as they were
    more = cfg("+profiles.tiny={width_multiplier: 0.0625, max_steps: 10, eval_every: 5}")
    assert fingerprint(resolved_config(more)) == fingerprint(resolved_config(cpu))
    same_budget_by_hand = cfg("profile=gpu", "model.width_multiplier=0.125", "trainer.max_steps=2000",
                              "trainer.eval_every=250")
    assert fingerprint(resolved_config(same_budget_by_hand)) == fingerprint(resolved_config(cpu))


@pytest.mark.parametrize("study", ["santurkar", "resnet20", "lr_cifar", "init_cifar", "dropout_cifar"])
def test_every_cifar_study_composes_and_validates_under_both_profiles(tmp_path, study):
    """The CIFAR-10 suite's studies under `cpu` (the default) and `gpu`, as `bnlab-train
    experiments=<study> profile=gpu --cfg job` composes them: valid, and the gpu profile at
    the papers' budgets (full-width nets, batch 128; ResNet-20's standard schedule)."""
    from hydra import compose, initialize_config_dir

    from bnlab.config import validate
    from bnlab.resolvers import CONF_DIR
    from bnlab.analysis.suites import CIFAR_SUITE

    assert study in CIFAR_SUITE
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cpu = compose("config", overrides=[f"experiments={study}", f"paths.results={tmp_path}"])
        gpu = compose("config", overrides=[f"experiments={study}", f"paths.results={tmp_path}", "profile=gpu"])
    for cfg in (cpu, gpu):
        validate(cfg)
        assert cfg.data.name == "cifar10" and not cfg.data.verify and cfg.optim.batch_size == 128
    assert cpu.profile == "cpu" and gpu.trainer.max_steps > cpu.trainer.max_steps
    if study == "resnet20":
        assert (gpu.model.width, gpu.trainer.max_steps, list(gpu.optim.lr_milestones), gpu.data.augment) == \
            (16, 64000, [32000, 48000], True)
        assert (gpu.optim.lr, gpu.optim.momentum, gpu.optim.weight_decay, gpu.init.scheme) == (0.1, 0.9, 1e-4, "kaiming")
        assert (cpu.model.width, list(cpu.optim.lr_milestones), cpu.data.augment) == (8, [], False)
    else:
        assert (gpu.model.name, gpu.model.depth, gpu.model.width_multiplier, gpu.trainer.max_steps) == ("vgg", 11, 1.0, 15000)
        assert (cpu.model.width_multiplier, gpu.init.scheme, gpu.data.augment) == (0.125, "xavier", False)


def test_the_suite_script_knows_its_suites_and_refuses_others():
    from bnlab.analysis.spec import list_studies
    from bnlab.resolvers import REPO_ROOT
    from bnlab.analysis.suites import SUITES, studies_of

    assert set(studies_of("cifar")) <= set(list_studies()) and set(studies_of("mnist")) <= set(list_studies())
    assert {s for suite in SUITES.values() for s in suite} == set(studies_of("mnist")) | set(studies_of("cifar"))
    out = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "suite.sh"), "imagenet"], capture_output=True,
                         text=True, env={**os.environ, "BIN": str(Path(sys.executable).parent)})
    assert out.returncode != 0 and "suite: got 'imagenet'; allowed: mnist, cifar" in out.stderr


def test_a_study_is_read_under_its_budget_profile():
    """The analysis reads a study under the profile its runs were made with: the quick
    profile's budget, seeds and confirmation seeds; a profile the study lacks is one line."""
    from bnlab.analysis.spec import load_spec
    from bnlab.errors import ConfigError
    from bnlab.analysis.study import has_profiles

    full, quick = load_spec("ioffe_fig1"), load_spec("ioffe_fig1", profile="quick")
    assert (full.profile, full.max_steps, full.seeds, full.confirm_seeds) == ("full", 50000, [], list(range(100, 108)))
    assert (quick.profile, quick.max_steps, quick.seeds, quick.confirm_seeds) == ("quick", 3000, [0], [100, 101])
    assert load_spec("quickstart", profile="quick").profile is None, "a study without profiles ignores it"
    with pytest.raises(ConfigError, match=r"^profile: got 'slow'; allowed: full, quick$"):
        load_spec("ioffe_fig1", profile="slow")
    assert set(has_profiles("santurkar")) == {"cpu", "gpu"} and has_profiles("quickstart") == []


def test_a_quick_profile_runs_a_smaller_grid_through_bnlab_study(capsys):
    """A profile's `grid` narrows the study's grid for bnlab-study's phase 1 (the main grid
    and each extra one), except a key an extra grid sets itself; the full profile has none."""
    from bnlab.analysis.spec import load_spec
    from bnlab.study_command import main as study_main

    assert load_spec("dropout_mnist").grid == []
    assert load_spec("dropout_mnist", profile="quick").grid == ["optim.lr=1.0,4.0,16.0"]
    study_main(["dropout_mnist", "profile=quick", "paths.results=/nonexistent-bnlab-test", "--dry-run"])
    commands = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("$ bnlab-train")]
    assert commands[0].endswith("optim.lr=1.0,4.0,16.0 seed=0")
    assert "optim.lr=1.0,4.0,16.0 seed=0 model.dropout_placement=before_classifier" in commands[1]
    assert "optim.lr=1.0" not in commands[2] and commands[2].endswith("model.norm=batch optim.lr=32.0")


def test_a_profile_may_name_its_own_extra_grids(capsys):
    """A budget profile's `sweeps` replace the study's extra grids for bnlab-study's phase 1
    (the quick look at dropout_wide_mnist skips the extra rates); without them the study's
    own extra grids run, and `sweeps: []` runs none (ioffe_fig1 quick has no BN lr 16)."""
    from bnlab.analysis.spec import load_spec
    from bnlab.study_command import main as study_main

    full, quick = load_spec("dropout_wide_mnist"), load_spec("dropout_wide_mnist", profile="quick")
    assert ["model.norm=batch", "optim.lr=32.0"] in full.sweeps and len(full.sweeps) == 7
    assert quick.sweeps == [["model.dropout_placement=before_classifier", "model.dropout=0.5"]]
    assert load_spec("ioffe_fig1").sweeps == [["model.norm=batch", "optim.lr=16.0"]]
    assert load_spec("ioffe_fig1", profile="quick").sweeps == []
    study_main(["dropout_wide_mnist", "profile=quick", "paths.results=/nonexistent-bnlab-test", "--dry-run"])
    commands = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("$ bnlab-train")]
    assert len(commands) == 2 and commands[0].endswith("optim.lr=2.0,8.0 model.dropout=0.0,0.5 seed=0")
    assert commands[1].endswith("optim.lr=2.0,8.0 seed=0 model.dropout_placement=before_classifier model.dropout=0.5")


def test_a_study_file_that_names_no_study_or_is_not_yaml_is_one_line_naming_it(tmp_path, monkeypatch):
    """An empty study file (only `# @package _global_`) launched the default 50k-step run in
    silence; broken YAML was a parser's traceback. Both are one line naming the file (and the
    line), from the launch, its dry run (compose_jobs) and the analysis (load_spec) alike."""
    import shutil
    from bnlab import train
    from bnlab.analysis.spec import load_spec
    from bnlab.resolvers import EXPERIMENTS_DIR

    studies = tmp_path / "studies" / "experiments"  # a copy of experiments/ on the search path
    shutil.copytree(EXPERIMENTS_DIR, studies)
    (studies / "empty.yaml").write_text("# @package _global_\n")
    (studies / "broken.yaml").write_text("# @package _global_\nname: broken\ntrainer:\n  max_steps: 10\n"
                                         "   eval_every: 5\n")
    monkeypatch.setattr(train, "STUDIES_ROOT", tmp_path / "studies")
    for name, said in (("empty", "names no study: a study file sets `name`"),
                       ("broken", "line 5: not valid YAML")):
        for launch in (lambda: compose_jobs([f"experiments={name}"]),
                       lambda: preflight([f"experiments={name}", f"paths.results={tmp_path}"])):
            with pytest.raises(ConfigError, match=said) as err:
                launch()
            assert err.value.key == f"experiments/{name}.yaml" and "\n" not in str(err.value)
        with pytest.raises(ConfigError, match=said):
            load_spec(name, studies)
    assert not (tmp_path / "runs").exists()
    compose_jobs(["experiments=quickstart"])  # a study file of the copy composes as before
