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


def test_the_report_and_every_study_page_link_only_files_that_exist():
    pages = [RESULTS / "REPORT.md", *sorted(RESULTS.glob("*/README.md"))]
    assert len(pages) > 10
    for page in pages:
        missing = [m for m in _links(page) if not (page.parent / m).exists()]
        assert not missing, f"{page.relative_to(REPO_ROOT)}: dead links {missing}"
    linked = {(RESULTS / m).resolve() for m in _links(RESULTS / "REPORT.md")}
    assert set(p.resolve() for p in pages[1:]) <= linked, "every study page is linked from the report"


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
