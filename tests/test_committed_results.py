"""What a reader of the committed results/ sees without running anything: REPORT.md answers
the twelve primary hypotheses on its first screen, stays short, and links only files that
exist (its study pages and their figures)."""
import re

from bnlab.analysis.spec import CLAIMS, DATASETS, PRIMARY_CLAIMS
from bnlab.resolvers import REPO_ROOT

RESULTS = REPO_ROOT / "results"


def _links(page):
    return [m for m in re.findall(r"\]\(([^)\s]+)\)", page.read_text()) if not m.startswith(("http://", "https://"))]


def test_the_first_screen_answers_the_twelve_primary_hypotheses():
    lines = (RESULTS / "REPORT.md").read_text().splitlines()
    assert len(lines) < 300
    first = lines[:40]
    rows = [ln for ln in first if ln.startswith("| ") and any(ln.startswith(f"| {CLAIMS[c]} |") for c in PRIMARY_CLAIMS)]
    cells = {tuple(x.strip() for x in ln.split("|")[1:3]) for ln in rows}
    assert cells == {(CLAIMS[c], d) for c in PRIMARY_CLAIMS for d in DATASETS.values()}
    for ln in rows:  # each with a verdict word and a p_Holm
        verdict = ln.split("|")[3].strip()
        assert verdict in ("**supported**", "**not supported**", "**inconclusive**", "**not run yet**"), ln


def _assert_no_dead_links(results):
    pages = [results / "REPORT.md", *sorted(results.glob("*/README.md"))]
    for page in pages:
        missing = [m for m in _links(page) if not (page.parent / m).exists()]
        assert not missing, f"{page}: dead links {missing}"
    linked = {(results / m).resolve() for m in _links(results / "REPORT.md")}
    assert set(p.resolve() for p in pages[1:]) <= linked, "every study page is linked from the report"
    return pages


def test_the_report_and_every_study_page_link_only_files_that_exist():
    assert len(_assert_no_dead_links(RESULTS)) > 10


def test_a_profile_report_links_only_files_it_wrote(tmp_path):
    """A quick-profile report (here read from two studies' committed CSVs placed in a profile
    folder) links only files that exist: a quick report once linked a claim_lr.png it had not drawn
    (a page linked any claim figure found in the folder when its study drew none)."""
    import shutil
    from bnlab.views.report import main as report_main

    quick = tmp_path / "quick"
    for name in ("lr_mnist", "ioffe_fig1"):
        for f in ("runs.csv", "runs.curves.jsonl.gz"):
            (quick / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(RESULTS / name / f, quick / name / f)
    report_main(["--profile", "quick", "--results", str(quick), "--runs-root", str(tmp_path / "no-runs")])
    pages = _assert_no_dead_links(quick)
    assert len(pages) >= 3 and "budget profile `quick`" in pages[0].read_text().splitlines()[0]


def test_every_bn_arm_that_recorded_the_recalibrated_readout_shows_it_beside_the_running_one():
    """santurkar's runs recorded probes.bn_recalibration: each BN-family arm's tuning row gets
    the recalibrated readout and its lag; the arm without BN has none. Noisy BN's running
    statistics, gathered on noised inputs, lag the most (the reason the readout exists)."""
    from pathlib import Path
    from bnlab.analysis.study import load_study
    from bnlab.analysis.verdicts import settings_reading
    s = load_study("santurkar", runs_root=Path("/nonexistent"))
    table = settings_reading(s["runs"], s["spec"]).set_index(["cfg.model.norm", "cfg.optim.lr"])
    assert table.loc[("none", 0.1), "recalibrated"] != table.loc[("none", 0.1), "recalibrated"]  # NaN
    lag = table["recalibrated − running"]
    assert lag[("noisy_batch", 0.1)] > lag[("batch", 0.1)] > 0
    assert (table["recalibrated"] - table["mean"] - lag).abs().max() < 1e-12


def _copy_of_the_repository(dst):
    """The repository's tracked files as they are in the working tree, committed in a fresh git
    repository at `dst` (a clone that also holds uncommitted edits): `git status` there is clean."""
    import shutil
    import subprocess

    if not (REPO_ROOT / ".git").exists():
        import pytest
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, tracked.decode().split("\0")):
        src = REPO_ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"]):
        subprocess.run(git + cmd, cwd=dst, check=True, capture_output=True)
    return dst


def test_analysis_commands_under_a_profile_never_write_over_the_committed_results(tmp_path):
    """`bnlab-report --profile quick` and `bnlab-plot santurkar --profile gpu` in a clone without
    runs of those profiles: each says so in one line, writes nothing, and `git status` stays clean
    (they once replaced results/REPORT.md and redrew committed figures from the CPU runs)."""
    import os
    import subprocess
    import sys

    clone = _copy_of_the_repository(tmp_path / "clone")
    env = {**os.environ, "PYTHONPATH": str(clone)}
    for module, args in (("bnlab.views.report", ["--profile", "quick"]),
                         ("bnlab.plot_command", ["santurkar", "--profile", "gpu"])):
        done = subprocess.run([sys.executable, "-m", module, *args], cwd=clone, env=env, capture_output=True, text=True)
        said = (done.stdout + done.stderr).strip().splitlines()
        assert done.returncode != 0 and "Traceback" not in done.stderr, said
        assert any("no runs" in ln for ln in said) and said[-1].count("nothing written") == 1, said
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone,
                                capture_output=True, text=True, check=True).stdout
        assert status == "", f"{module} {args} changed the clone:\n{status}"
