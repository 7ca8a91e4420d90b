"""Per-study pipeline (frame -> CSV, verdicts, figures) and results/REPORT.md.

    bnlab-report            # every study in experiments/: CSV + figures + REPORT.md
    bnlab-plot <study>      # one study's CSV + figures (see bnlab.plot_command)

A study's runs come from its run store (results/runs/<study>/) when it is there, which
also rewrites the committed CSV (results/<study>/runs.csv); otherwise from that CSV alone,
so a reader who cloned the repository regenerates every figure and number.
"""
from __future__ import annotations

import argparse
import math
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from bnlab.analysis import (VERDICT_RULE, _relative, budget, claim_result, current_runs, frame_from_csv,
                            frame_from_store, list_studies, load_spec, matched_table, setting_table,
                            write_csv)
from bnlab.plots import plot_study
from bnlab.resolvers import REPO_ROOT

RESULTS = REPO_ROOT / "results"
CLAIMS = {
    "ics": "1. BN reduces internal covariate shift",
    "speed": "2. Training is faster (fewer steps), although each step costs more",
    "accuracy": "3. Accuracy is higher",
    "lr": "4. Higher learning rates can be used",
    "dropout": "5. BN regularizes and reduces the need for dropout",
    "init": "6. BN makes training robust to poor weight initialization",
}


def study_results(name: str, results_dir: Path = RESULTS, runs_root: Path | None = None,
                  fmt: str = "png", run_dir: Path | None = None) -> dict:
    """Load a study (store first, else CSV), write its CSV and figures, compute its verdicts."""
    spec = load_spec(name)
    runs_root = runs_root or results_dir / "runs"
    store = run_dir or runs_root / name
    csv = results_dir / name / "runs.csv"
    runs = frame_from_store(store) if store.is_dir() else pd.DataFrame()
    left_out = {"stale": 0, "differing": {}}
    if not runs.empty:
        runs, left_out = current_runs(runs, name)
    if not runs.empty:
        source = f"run store (`{_relative(str(store))}`)"
        write_csv(runs, csv)
    elif csv.exists():
        runs, source = frame_from_csv(csv), f"committed CSV (`{_relative(str(csv))}`)"
    else:
        return {"name": name, "spec": spec, "ran": False, "left_out": left_out}
    results = [claim_result(runs, spec, c) for c in spec.claims]
    figures = plot_study(runs, spec, results, results_dir / name, fmt)
    return {"name": name, "spec": spec, "ran": True, "runs": runs, "results": results,
            "figures": figures, "source": source, "budget": budget(runs), "left_out": left_out}


def _fmt(v, digits=4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def _plain(v):
    """Settings as a reader writes them: {'optim.lr': 0.5}, not {'cfg.optim.lr': np.float64(0.5)}."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{str(k).removeprefix('cfg.')}: {_plain(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(str(_plain(x)) for x in v) + "]"
    return v.item() if hasattr(v, "item") else v


def _effect(r: dict) -> str:
    return f"{r['effect']:+.4g} [{r['ci_low']:+.4g}, {r['ci_high']:+.4g}]" if math.isfinite(r["effect"]) else "–"


def _budget_line(b: dict) -> str:
    device = ", ".join(b["device"]) or "?"
    return (f"{b['finished']} finished runs ({b['diverged']} diverged) of {b['runs']}, {b['seeds']} seeds, "
            f"{'/'.join(b['max_steps'])} steps of batch {'/'.join(b['batch_size'])} on {'/'.join(b['dataset'])}"
            f"{'' if b['train_subset'] in ([], ['None']) else ' (subset ' + '/'.join(b['train_subset']) + ')'}; "
            f"{device}, {'/'.join(b['threads'])} torch thread(s), torch {'/'.join(b['torch'])}")


def _table(df: pd.DataFrame) -> str:
    if df.empty:
        return ""
    cols = list(df.columns)
    lines = ["| " + " | ".join(c.removeprefix("cfg.") for c in cols) + " |",
             "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def _claim_rows(studies: list[dict]) -> list[str]:
    rows = []
    for claim, title in CLAIMS.items():
        found = False
        for s in studies:
            for c in s["spec"].claims:
                if c["claim"] != claim:
                    continue
                found = True
                if not s["ran"]:
                    rows.append(f"| {title} | **not run yet** | – | – | {c.get('literature', '')} "
                                f"| – | study `{s['name']}` has no runs (`bnlab-train experiments={s['name']}`) |")
                    continue
                r = next(r for r in s["results"] if r["id"] == c.get("id", claim))
                fig = f"[figure]({s['name']}/claim_{r['id']}.png)"
                note = f"<br>*{r['note']}*" if r.get("note") else ""
                rows.append(f"| {title} | **{r['verdict']}**{note} | {_effect(r)} ({r['metric']}, {r['kind']}; "
                            f"p = {_fmt(r['p'], 2)}, g = {_fmt(r['hedges_g'], 2)}, n = {r['n_baseline']}/{r['n_treatment']}) "
                            f"| [{c.get('literature', '')}]({c.get('url', '')}) | {fig} "
                            f"| `{s['name']}`: {_budget_line(s['budget'])} |")
        if not found:
            rows.append(f"| {title} | **not run yet** | – | – | – | no study in experiments/ tests it |")
    return rows


def _study_section(s: dict) -> list[str]:
    spec = s["spec"]
    out = [f"## Study `{s['name']}`", "", spec.description, ""]
    if not s["ran"]:
        out += [f"Not run yet. Run it with `bnlab-train experiments={s['name']}`, then `bnlab-report`.", ""]
        return out
    b = s["budget"]
    lo = s["left_out"]
    stale = (f"- Left out: {lo['stale']} run(s) from an earlier definition of the study or launched with "
             f"extra overrides (differing in {', '.join(lo['differing'])}).") if lo["stale"] else None
    out += [f"- Budget: {_budget_line(b)}.", f"- Source of these numbers: {s['source']}.",
            *([stale] if stale else []),
            f"- Mean time per training step: " + ", ".join(f"{k} {v:.3f} ms" for k, v in b["step_time_ms"].items()) + ".", ""]
    for r in s["results"]:
        chosen = "; ".join(f"{k}: {_plain(v)}" for k, v in r["chosen"].items())
        out += [f"**Claim `{r['id']}`** ({r['kind']} on `{r['metric']}`, {r['direction']} is the claimed direction, "
                f"smallest effect that matters {r['min_effect']:g}): **{r['verdict']}** — {r['reason']}. "
                f"No BN {_fmt(r['baseline_mean'])}, BN {_fmt(r['treatment_mean'])}; effect {_effect(r)}, "
                f"p = {_fmt(r['p'], 2)}, Hedges' g = {_fmt(r['hedges_g'], 2)}. Settings used: {chosen}."
                + (f" *Note:* {r['note']}" if r.get("note") else ""), ""]
    shown = set()
    for r in s["results"]:
        if r["kind"] == "compare" and spec.tune and r["metric"] not in shown:
            shown.add(r["metric"])
            out += [f"Both arms at each setting of {', '.join(spec.tune)} (`{r['metric']}`, difference = BN − no BN):", "",
                    _table(matched_table(s["runs"], spec, r["metric"])), ""]
    table = setting_table(s["runs"], spec, spec.select_on)
    keep = [c for c in table.columns if c.startswith("cfg.")] + ["runs", "diverged", "n", "mean", "ci_low", "ci_high"]
    out += [f"Validation metric `{spec.select_on}` per arm and setting (mean, 95% CI), with divergences:", "",
            _table(table[keep]), ""]
    for f in s["figures"]:
        out += [f"![{f.stem}]({s['name']}/{f.name})", ""]
    return out


def write_report(studies: list[dict], path: Path) -> None:
    lines = [
        "# bnlab report: which benefits of batch normalization hold?", "",
        f"Generated by `bnlab-report` on {datetime.now(timezone.utc):%Y-%m-%d} from the runs listed per study "
        "(run store when present, else the committed CSV beside each study's figures). Every number and "
        "figure here is regenerated by that command; nothing is typed in by hand.", "",
        "## Verdicts", "",
        "| claim | verdict | our effect (BN − no BN, signed: + = as claimed) [95% CI] | literature | figure | budget and hardware |",
        "|---|---|---|---|---|---|",
        *_claim_rows(studies), "",
        "**How a verdict is decided.** " + VERDICT_RULE, "",
        "**Caveats.** Budgets are CPU-sized (see each study): the MNIST runs are 3k–10k steps against the "
        "paper's 50k, so absolute accuracies sit below the published ones; the comparison between arms at "
        "equal budget is what the verdicts test. Learning rate (or init scale, or dropout) is tuned per arm "
        "on the validation split only; test numbers are reported, never used for selection. The CIFAR-10 "
        "copy on the project machines is rebuilt from JPEGs (2–3% lower accuracy expected).", "",
    ]
    for s in studies:
        lines += _study_section(s)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="bnlab-report", description="Write results/REPORT.md from every study.")
    ap.add_argument("--results", default=str(RESULTS), help="results folder (default <repo>/results)")
    ap.add_argument("--runs-root", default=None, help="raw runs folder (default <results>/runs)")
    ap.add_argument("--format", default="png", choices=("png", "svg", "pdf"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    results_dir = Path(args.results)
    runs_root = Path(args.runs_root) if args.runs_root else None
    studies = [study_results(name, results_dir, runs_root, fmt=args.format) for name in list_studies()]
    studies = [s for s in studies if s["spec"].claims]  # quickstart is a demo, not evidence
    write_report(studies, results_dir / "REPORT.md")
    ran = [s["name"] for s in studies if s["ran"]]
    print(f"wrote {results_dir / 'REPORT.md'}: {len(ran)} of {len(studies)} studies have runs "
          f"({', '.join(ran) or 'none'}), in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
