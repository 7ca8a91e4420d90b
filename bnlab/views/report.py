"""bnlab-report: results/REPORT.md, every study's CSV and figures, from the run store (or the
committed CSVs), through the one per-study pipeline in bnlab.analysis.study.

    bnlab-report            # every study in experiments/: CSV + figures + REPORT.md
    bnlab-plot <study>      # one study's CSV + figures (see bnlab.plot_command)

A study's runs come from its run store (results/runs/<study>/) when it is there, which
also rewrites the committed CSV (results/<study>/runs.csv); otherwise from that CSV alone,
so a reader who cloned the repository regenerates every figure and number.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bnlab.analysis.kinds import KINDS
from bnlab.analysis.selection import seeds_text
from bnlab.analysis.spec import CLAIMS, DATASETS, FAMILIES, PRIMARY_CLAIMS
from bnlab.errors import ConfigError
from bnlab.analysis.frames import OUTCOMES
from bnlab.views.citations import linked
from bnlab.views.style import arm_name, label
from bnlab.analysis.stats import ALPHA, EQUIVALENCE_RULE, NONINFERIORITY_RULE, VERDICT_RULE, effect_text
from bnlab.analysis.study import RESULTS, analyse_all, check_results_folder, profile_results, save_frame, slices
from bnlab.analysis.suites import suite_budgets
from bnlab.views.figures import draw



def cell(text) -> str:
    """Text that can sit in a Markdown table cell (a literal | would end the cell)."""
    return str(text).replace("|", "\\|")


def _fmt(v, digits=4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}g}"
    return str(v)


def _plain(v):
    """Settings as a reader writes them: {'optim.lr': 0.5}, not {'cfg.optim.lr': np.float64(0.5)}."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{str(k).removeprefix('cfg.')}: {_plain(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(str(_plain(x)) for x in v) + "]"
    return v.item() if hasattr(v, "item") else v


def _effect(r: dict) -> str:
    """stats.effect_text, saying in words when censored values make the effect a bound."""
    text = effect_text(r)
    if r.get("bound") and text != "–":
        text += " (censored: a bound, no interval)" if r["bound"] != "?" else " (censored both ways: not even a bound)"
    return text


def _outcomes_text(b: dict) -> str:
    return ", ".join(f"{b[o]} {o}" for o in OUTCOMES if b.get(o))


def _budget_line(b: dict) -> str:
    device = ", ".join(b["device"]) or "?"
    return (f"{b['runs']} runs ({_outcomes_text(b)}), {b['seeds']} seeds, "
            f"{'/'.join(b['max_steps'])} steps of batch {'/'.join(b['batch_size'])} on {'/'.join(b['dataset'])}"
            f"{'' if b['train_subset'] in ([], ['None'], ['nan']) else ' (subset ' + '/'.join(b['train_subset']) + ')'}; "
            f"{device}, {'/'.join(b['threads'])} torch thread(s), torch {'/'.join(b['torch'])}; "
            f"{b['run_hours'] * 60:.0f} min of run time in all, {b['train_hours'] * 60:.0f} of them training steps "
            f"({_wall_text(b)}); "
            f"{'paired seeds' if b['paired'] else 'runs not all paired (Welch where unpaired)'}"
            f"{'; made ' + _days(b['made']) if b.get('made') else ''}")


def _jobs(b: dict) -> float:
    """How many of a study's runs ran at a time on average: run time over wall clock."""
    return b["run_hours"] / b["wall_hours"] if b.get("wall_hours") else float("nan")


def _wall_text(b: dict) -> str:
    """The wall clock the runs' own start and finish times span, and the jobs at a time it implies."""
    if not b.get("wall_hours"):
        return "wall clock not recorded"
    return f"{b['wall_hours'] * 60:.0f} min of wall clock, {_jobs(b):.2g} runs at a time on average"


def _days(days: list[str]) -> str:
    return days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"


def code_versions_line(versions: dict) -> str:
    """The training code behind a study's finished runs; a warning when it is not one version."""
    if len(versions) == 1:
        return f"- Training code: `{next(iter(versions))}` (every finished run)."
    listed = ", ".join(f"`{v}` {n} run(s)" for v, n in sorted(versions.items(), key=lambda kv: -kv[1]))
    return (f"- **Training code: {len(versions)} versions** ({listed}). A change to the training code does not "
            f"retrain finished runs; `force=true` retrains them (the earlier runs are kept, superseded).")


def _table(df: pd.DataFrame) -> str:
    if df.empty:
        return ""
    cols = list(df.columns)
    lines = ["| " + " | ".join(str(c).removeprefix("cfg.") for c in cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(cell(_fmt(row[c])) for c in cols) + " |")
    return "\n".join(lines)


def _beside_literature(r: dict) -> str:
    """Each arm's mean beside the published number the claim gives on its own metric
    (`literature_values`), and ours minus theirs: how near the paper we are, in words."""
    values = r.get("literature_values") or {}
    parts = []
    for arm, ours in ((r["baseline"], r.get("baseline_mean")), (r["treatment"], r.get("treatment_mean"))):
        theirs = values.get(arm)
        if isinstance(theirs, (int, float)) and isinstance(ours, (int, float)) and math.isfinite(ours):
            parts.append(f"{arm_name(arm)} {_fmt(ours)} against {theirs:g} (ours − theirs {ours - theirs:+.4f})")
    if not parts:
        return ""
    return f" **Beside the literature** ({values.get('source') or 'source not given'}): " + "; ".join(parts) + "."


def _range_over_settings(r: dict, s: dict) -> str:
    """A worst-case claim's whole range for each arm (bnlab.analysis.verdicts.range_over_settings),
    in words: its worst and best setting, ties counted."""
    def at(end: dict) -> str:
        words = ", ".join(f"{k.removeprefix('cfg.')}={_plain(v)}" for k, v in end["setting"].items()
                          if not (isinstance(v, float) and math.isnan(v)))
        more = f" and {end['ties']} other setting{'s' if end['ties'] > 1 else ''}" if end["ties"] else ""
        return f"{end['value']:.3f} ({words}{more})"
    parts = [f"{arm_name(x['arm'])} from {at(x['worst'])} to {at(x['best'])}"
             for x in s.get("ranges", {}).get(r["id"], [])]
    return (" **Range over the settings** (mean over seeds, worst to best): " + "; ".join(parts) + ".") if parts else ""


def _edges_text(r: dict) -> str:
    edges = r.get("edges") or {}
    return "; ".join(f"{arm}: {', '.join(f)}" for arm, f in edges.items())


def _claim_rows(s: dict) -> list[str]:
    """A study's verdict rows, in the order of the claims' titles (its page's table)."""
    rows = []
    for claim, title in CLAIMS.items():
        for c in (c for c in s["spec"].claims if c.claim == claim):
            if not s["ran"]:
                rows.append(f"| {title} `{c.name}` | **not run yet** | – | – | – | – | – "
                            f"| {cell(linked(c.literature))} | – | `bnlab-study {s['name']}` |")
                continue
            for r in (r for r in s["results"] if r["claim_id"] == c.name):
                rows.append(_claim_row(title, s, c, r))
    return rows


def _figure_link(s: dict, r: dict, text: str = "figure") -> str:
    """A link to the claim's own figure, from the study's page, where it was drawn (a claim
    without one, say a description on one seed, links nothing)."""
    name = f"claim_{r['id']}.png"
    # only what this run drew: a file left in the folder by an earlier run (another profile's,
    # another definition's) may be gone or stale by the time the page is read
    drawn = {Path(f).name for f in s.get("figures", [])}
    return f"[{text}]({name})" if name in drawn else "–"


UNVERIFIED_NOTE = ("† On the CIFAR-10 copy the project's machines hold: rebuilt from a JPEG export (exact "
                   "labels and order, lossy pixels), so its runs record `verified: false` and their accuracies are "
                   "not comparable digit for digit with the papers' (original pixels).")


def _unverified_mark(s: dict) -> str:
    """† beside a number measured on data that did not match its canonical checksums."""
    return " †" if s.get("budget", {}).get("unverified") else ""


def _arm_words(r: dict, arm: str) -> str:
    """An arm as the comparison reads it: "BN", or "no BN (dropout 0)" where the claim sets a
    key per arm (`arm_where`: the dropout claim's BN without dropout)."""
    where = (r.get("arm_where") or {}).get(arm) or {}
    setting = ", ".join(f"{label(k).removesuffix(' rate')} {_plain(v)}" for k, v in where.items())
    return arm_name(arm) + (f" ({setting})" if setting else "")


def _comparison_words(r: dict) -> str:
    """"noisy BN ≈ BN (equivalence within ±0.01)", "BN (dropout 0) not worse than no BN (its
    best dropout) by 0.002" or "BN vs no BN"."""
    b, t = _arm_words(r, r["baseline"]), _arm_words(r, r["treatment"])
    if r.get("test_kind") == "equivalence":
        return f"{t} ≈ {b} (equivalence within ±{r['margin']:g})"
    if r.get("test_kind") == "non_inferiority":
        return f"{t} not worse than {b} by more than {r['ni_margin']:g} (non-inferiority)"
    return f"{t} vs {b}"


def _family_words(r: dict) -> str:
    """Which family decided a row, and how large it was."""
    family = str(r.get("family", "exploratory"))
    if family == "exploratory":
        return "exploratory: no verdict word"
    name = "this study's own family" if family.startswith("study:") else f"{family} family"
    return f"{name}, m = {r.get('family_size', '?')}"


def _claim_row(title: str, s: dict, c: dict, r: dict) -> str:
    """One row of the verdicts table: one claim judged on one comparison."""
    fig = _figure_link(s, r)
    note = f"<br>*{cell(r['note'])}*" if r.get("note") else ""
    edges = cell(_edges_text(r))
    edge = f"<br>⚠ chosen at the grid's edge: {edges}" if edges else ""
    sens = r.get("sensitivity_summary") or "– (whole-grid measure)"
    return (f"| {title} `{r['id']}`: {cell(_comparison_words(r))} | **{r['verdict']}** ({_family_words(r)}){note}{edge} "
            f"| {_effect(r)}{_unverified_mark(s)} ({r['metric']}, {r['kind']}; {r['test']}, n = {r['n_baseline']}/{r['n_treatment']}) "
            f"| p = {_fmt(r['p'], 2)}, p_Holm = {_fmt(r.get('p_holm'), 2)} "
            f"| {r['decided_by']}: {seeds_text(r['seeds'])}"
            + (f" (chosen on seeds {seeds_text(r['chosen_on'])})" if r.get("chosen_on") else "")
            + f" | {sens} | {cell(linked(c.literature))} | {fig} "
            f"| `{s['name']}`: {_budget_line(s['budget'])} |")


def _sensitivity_table(r: dict) -> str:
    rows = []
    for x in r["sensitivity"]:
        rows.append({**{k.removeprefix("cfg."): _plain(v) for k, v in x["setting"].items()},
                     arm_name(r["baseline"]): x["baseline_mean"], arm_name(r["treatment"]): x["treatment_mean"],
                     "effect [95% CI]": _effect(x),
                     "test": x["test"], "p": x["p"], "p_Holm": x.get("p_holm"), "n": f"{x['n_baseline']}/{x['n_treatment']}",
                     "verdict": x["verdict"]})
    return _table(pd.DataFrame(rows))


def _study_section(s: dict) -> list[str]:
    """The detail of one study (its page, results/<study>/README.md, below its verdict table):
    budget, seeds, every claim in words, sensitivity, settings, the runs of other budgets and
    its figures (links relative to the page)."""
    spec = s["spec"]
    out = []
    if not s["ran"]:
        out += [f"Not run yet. Run it with `bnlab-study {s['name']}`, then `bnlab-report`.", ""]
        return out
    b = s["budget"]
    seeds = sorted(int(x) for x in s["runs"]["cfg.seed"].unique())
    tune_seeds = [x for x in seeds if x not in spec.confirm_seeds]
    conf_seeds = [x for x in seeds if x in spec.confirm_seeds]
    out += [*([f"- Budget profile: `{spec.profile}` (the study file's `profiles.{spec.profile}`)."] if spec.profile else []),
            f"- Budget: {_budget_line(b)}.", f"- Runs: `results/runs/{s['name']}` (one row each in `results/{s['name']}/runs.csv`, their curves beside it in `runs.curves.jsonl.gz`).",
            f"- Seeds: tuning (grid) {seeds_text(tune_seeds)}; confirmation {seeds_text(conf_seeds)}.",
            *([f"- **Data †: {b['unverified']} of {b['runs']} runs on unverified data.** {UNVERIFIED_NOTE[2:]} "
               "Every accuracy in this study carries that caveat."] if b.get("unverified") else []),
            *([code_versions_line(b["code_versions"])] if b.get("code_versions") else []),
            "- Mean time per training step: " + ", ".join(f"{k} {v:.3f} ms" for k, v in b["step_time_ms"].items())
            + f" (over {b['timed_runs']} {'confirmation' if conf_seeds else 'finished'} runs; "
              f"{'/'.join(b['threads']) or '?'} torch thread(s) per run, {_jobs(b):.2g} runs at a time on average "
              f"on {', '.join(b['device']) or '?'}, evaluation excluded).",
            ""]
    for r in s["results"]:
        chosen = "; ".join(f"{k}: {_plain(v)}" for k, v in r["chosen"].items())
        edges = _edges_text(r)
        judged = (f"equivalence margin ±{r['margin']:g}" if r.get("test_kind") == "equivalence" else
                  f"{r['direction']} is the claimed direction, smallest effect that matters {r['min_effect']:g}")
        out += [f"**Claim `{r['id']}`**, {_comparison_words(r)} ({r['kind']} on `{r['metric']}`, {judged}): "
                f"**{r['verdict']}** — {r['reason']}. "
                + (f"*Precondition:* {r['precondition']}. " if r.get("precondition") else "")
                + (f"*Target:* {r['target_value']:.4g}, {r['target_from']}. " if r.get("target_value") is not None else "")
                + 
                f"{arm_name(r['baseline'])} {_fmt(r['baseline_mean'])}, {arm_name(r['treatment'])} "
                f"{_fmt(r['treatment_mean'])}{_unverified_mark(s)}; effect {_effect(r)}; "
                f"{r['test']}, p = {_fmt(r['p'], 2)}, p_Holm = {_fmt(r.get('p_holm'), 2)} (family of "
                f"{r.get('family_size', '?')}), effect size {_fmt(r['effect_size'], 2)}. Decided by {r['decided_by']} "
                f"{seeds_text(r['seeds'])}. Settings: {chosen}." + _beside_literature(r) + _range_over_settings(r, s)
                + (f" ⚠ **Edge of the grid:** {edges}." if edges else "")
                + (f" *Note:* {r['note']}" if r.get("note") else ""), ""]
        if r["sensitivity"]:
            out += [f"Sensitivity of `{r['id']}` at every shared setting (tuning seeds; effect signed so + = as "
                    f"claimed; Holm within the claim): {r['sensitivity_summary']}.", "", _sensitivity_table(r), ""]
    table = s.get("settings", pd.DataFrame())
    if not table.empty:
        keep = [c for c in table.columns if c.startswith("cfg.")] + ["runs", *[o for o in OUTCOMES if o in table],
                                                                     "n", "mean", "ci_low", "ci_high"]
        recal = [c for c in ("recalibrated", "recalibrated − running") if c in table]
        out += [f"Validation metric `{spec.select_on}` per arm and setting on the tuning seeds (mean, 95% CI), "
                f"with every run's outcome counted" + (
                    "; `recalibrated`: the same metric with every BN layer's statistics recomputed on clean "
                    "training batches (the network that was trained; – for an arm without BN), and how far "
                    "the running statistics' readout lags it:" if recal else
                    " (these runs did not record the recalibrated readout, `probes.bn_recalibration`):"),
                "", _table(table[keep + recal]), ""]
    out += _ics_and_accuracy(s)
    out += _normalization_check(s)
    out += _beside_section(s)
    out += _slices_section(s)
    for f in s.get("figures", []):
        out += [f"![{f.stem}]({Path(f).name})", ""]
    return out


# the ICS measures a study's `ics` claims may use (bnlab.analysis.verdicts.ICS_METRICS), as the report names them
ICS_MEASURES = {"act_in_drift": "Ioffe & Szegedy's (activation-input drift)",
                "grad_ics_l2": "Santurkar et al.'s (raw ||G−G′||)",
                "grad_ics_rel": "the relative ||G−G′||/||G||", "grad_ics_cos": "the cosine of G and G′"}


def _ics_and_accuracy(s: dict) -> list[str]:
    """Whether ICS goes with the accuracy benefit (bnlab.analysis.verdicts.ics_with_accuracy), in
    words: a measure goes with the benefit when the arms with a measurable change in either
    change in both, less ICS exactly where more accurate; an arm that changes one without the
    other makes it "only in part"; one with less ICS and lower accuracy (or the reverse), "not"."""
    readings = s.get("ics_accuracy") or []
    if not readings:
        return []
    spec = s["spec"]
    rows, verdicts = {}, []
    for reading in readings:
        metric, words = reading["metric"], []
        for x in reading["arms"]:
            arm, gain, a, i = x["arm"], x["gain"], x["accuracy_sign"], x["ics_sign"]
            rows.setdefault(arm, {"arm": arm_name(arm),
                                  f"test accuracy − {arm_name(spec.baseline)} [95% CI]":
                                      f"{gain['mean']:+.4f} [{gain['ci_low']:+.4f}, {gain['ci_high']:+.4f}]"})
            rows[arm][f"less ICS, {metric} [95% CI]"] = effect_text(x["verdict"])
            words.append(f"{arm_name(arm)}: {'less' if i > 0 else 'more' if i < 0 else 'no measurable change in'} ICS, "
                         f"{'higher' if a > 0 else 'lower' if a < 0 else 'no measurably different'} accuracy")
        agree, disagree, unmatched = ([arm_name(a) for a in reading[k]] for k in ("agree", "disagree", "unmatched"))
        answer = ("**does not go with the accuracy benefit**" if disagree else
                  "**goes with the accuracy benefit only in part**" if agree and unmatched else
                  "**goes with the accuracy benefit**" if agree else
                  "**is not seen to go with the accuracy benefit** (no arm changed both measurably)" if unmatched else
                  "**cannot be told** (no arm changed either measurably)")
        verdicts.append(f"- By {ICS_MEASURES[metric]} measure (`{metric}`), ICS {answer}: "
                        + "; ".join(words) + f" (both changed, the same way: {', '.join(agree) or 'none'}; "
                        f"opposite ways: {', '.join(disagree) or 'none'}; one without the other: "
                        f"{', '.join(unmatched) or 'none'}).")
    table = pd.DataFrame(list(rows.values())).fillna("–")
    return ["**Does ICS go with the accuracy benefit?** Each arm against "
            f"{arm_name(spec.baseline)}, on the seeds and settings of its ICS claims (paired per seed, 95% "
            "intervals; a change counts when its interval excludes 0):", "", _table(table), "", *verdicts, ""]


def _ci_text(x: dict, digits: int = 4) -> str:
    """A seed_stats reading as mean [95% CI] (the mean alone from one seed)."""
    if x["n"] > 1:
        return f"{_fmt(x['mean'], digits)} [{_fmt(x['ci_low'], digits)}, {_fmt(x['ci_high'], digits)}]"
    return _fmt(x.get("mean"), digits)


def _normalization_check(s: dict) -> list[str]:
    """The check of what the normalization does (bnlab.analysis.verdicts.normalization_check), as a table."""
    rows = s.get("normalization") or []
    if not rows:
        return []

    ci = _ci_text
    table = pd.DataFrame([{"arm": arm_name(r["arm"]), "seeds": seeds_text(r["seeds"]),
                           "train: per-unit mean (abs)": ci(r["train_norm_mean_abs"]), "train: variance": ci(r["train_norm_var"]),
                           "eval: per-unit mean (abs)": ci(r["eval_norm_mean_abs"]), "eval: variance": ci(r["eval_norm_var"])}
                          for r in rows])
    return ["**Zero mean and unit variance, checked** (a check of what the normalization does, not a hypothesis): "
            "the normalized value (before γ and β) per unit, mean over units and hidden layers, at the last evaluation; "
            "in train mode (the batch's statistics) it is 0 and 1 by construction, in eval mode (running statistics) "
            "only as far as they match the data (mean [95% CI] over seeds):", "", _table(table), ""]


def _reading(r: dict) -> str:
    """One arm's reading (bnlab.analysis.beside): mean [95% CI], censored runs as a bound."""
    if not r["n"]:
        return "–"
    if r["censored"]:
        return f"≥ {_fmt(r['mean'])} ({r['censored']} of {r['n']} never got there: counted at the budget)"
    return _ci_text(r)


def _by_claim(rows: list[dict]) -> list[list[dict]]:
    """The side-by-side rows grouped by claim, in their order."""
    return [[r for r in rows if r["claim_id"] == c] for c in dict.fromkeys(r["claim_id"] for r in rows)]


def _beside_name(r: dict) -> str:
    return f"{r['label']} (`{r['study']}`)" if r.get("label") else arm_name(r["arm"])


def _beside_section(s: dict) -> list[str]:
    """The study's arms beside the arms it borrows (analysis.beside), each at its own tuned
    setting, one table per claim metric: no verdict, a reading."""
    rows = s.get("beside") or []
    if not rows:
        return []
    out = [f"**Every arm side by side, each at its own tuned setting** (the study's arms and "
           + ", ".join(f"`{b['study']}`'s `{b['arm']}` as \"{b['label']}\"" for b in s["spec"].beside)
           + "; each arm's setting chosen by the claim's own rule on its study's tuning seeds, then mean [95% CI] over "
             "the confirmation seeds — or over the tuning seeds that chose it, where the arm has no confirmation runs "
             "there, a reading biased in its favour; no verdict):", ""]
    for group in _by_claim(rows):
        claim_id, metric = group[0]["claim_id"], group[0]["metric"]
        table = pd.DataFrame([{"arm": _beside_name(r),
                               "setting": ", ".join(f"{label(k)} {_plain(v)}" for k, v in r["setting"].items()),
                               label(metric): _reading(r), "seeds": f"{seeds_text(r['seeds'])} ({r['seeds_from']})",
                               "differs": r["differs"] or "–"} for r in group])
        if not any(r["differs"] for r in group):
            table = table.drop(columns="differs")
        out += [f"`{claim_id}` ({label(metric)}, {group[0]['direction']} is better):", "", _table(table), ""]
    return out


def beside_sentence(s: dict) -> str | None:
    """The side-by-side reading in one line for the report's first screen, on the claims' metrics."""
    rows = s.get("beside") or []
    if not rows:
        return None
    return " — ".join(f"{label(group[0]['metric'])}: " + "; ".join(f"{_beside_name(r)} {_reading(r)}" for r in group)
                      for group in _by_claim(rows))


SLICE_COLUMNS = {"cfg.model.norm": "arm", "cfg.optim.lr": "lr", "cfg.model.width_multiplier": "width",
                 "cfg.trainer.max_steps": "budget (steps)", "outcome": "outcome", "steps": "steps run",
                 "diverged_at_step": "diverged at step", "best/test/acc": "best test acc",
                 "best/step": "at step", "test/acc": "last test acc", "step_time_ms": "ms/step",
                 "env.device_name": "device", "cfg.seed": "seed"}


def _slices_section(s: dict) -> list[str]:
    """Runs committed beside a study as `<label>_runs.csv` (a slice of another budget profile,
    say, made on a lent GPU): a table of every run, outside the verdicts, regenerated from the
    committed CSV like everything else."""
    out = []
    for label, runs in (slices(s) if s.get("out") else {}).items():
        csv = Path(s["out"]) / f"{label}_runs.csv"
        cols = [c for c in SLICE_COLUMNS if c in runs]
        table = runs[cols].rename(columns=SLICE_COLUMNS)
        if "arm" in table:
            table["arm"] = table["arm"].map(arm_name)
        device = ", ".join(sorted({str(d) for d in runs.get("env.device_name", pd.Series(dtype=str)).dropna()}))
        made = sorted({str(v)[:10] for v in runs["finished_at"].dropna()}) if "finished_at" in runs else []
        out += [f"**Runs of `{label}`** (`{s['name']}/{csv.name}`: {len(runs)} runs"
                + (f" on {device}" if device else "") + (f", made {made[0]}" if made else "")
                + "; not part of the verdicts above, which are decided on this study's own budget):", "",
                _table(table), ""]
    return out


def _budget_table(studies: list[dict]) -> list[str]:
    """Each study's runs, run time and wall clock, and each suite's sum, from the runs' own
    records (their wall times, start and finish times, threads and devices), so it regenerates
    from the CSVs; a suite's measured time (scripts/suite.sh prints it) adds process start-up."""
    ran = {s["name"]: s["budget"] for s in studies if s["ran"]}
    if not ran:
        return []
    out = ["## Budgets and wall time", "",
           "Run time is the sum of every current run's wall time (start-up, training, evaluation, probes); the "
           "wall clock is the time during which at least one of the study's runs was running (from their start "
           "and finish times), and their ratio is how many ran at a time on average.", "",
           "| study | runs | run time (min) | wall clock (min) | runs at a time | threads per run | hardware |",
           "|---|---|---|---|---|---|---|"]
    out += [f"| `{name}` | {b['runs']} | {b['run_hours'] * 60:.0f} | {b['wall_hours'] * 60:.0f} | {_jobs(b):.2g} "
            f"| {'/'.join(b['threads']) or '?'} | {cell(', '.join(b['device']) or '?')} |" for name, b in ran.items()]
    out.append("")
    for suite in suite_budgets(ran):
        out.append(f"- {suite['title']}: {', '.join(f'`{n}`' for n in suite['studies'])}: "
                   f"{suite['wall_hours'] * 60:.0f} min of wall clock as made ({suite['run_hours'] * 60:.0f} min of run time)"
                   + (f"; not run yet: {', '.join(suite['missing'])}" if suite["missing"] else "") + ".")
    return out + [""]


def _ratio(r: dict) -> str:
    """Speed and cost read as ratios (bnlab.analysis.measures.ratio_of), in words."""
    q = r.get("ratio")
    if not q:
        return ""
    if q["kind"] == "times":
        sign = {"≥": "≥ ", "≤": "≤ "}.get(q["bound"], "")
        interval = f" [×{q['low']:.3g}, ×{q['high']:.3g}]" if math.isfinite(q["low"]) and math.isfinite(q["high"]) else ""
        return f"{sign}×{q['value']:.3g}{interval}"
    bound, value = q["bound"], q["value"]
    if 0 < value < 1:  # the treatment took more steps: say so, not "0.8× fewer" (a bound turns round too)
        bound, value, words = {"≥": "≤", "≤": "≥"}.get(bound, bound), 1 / value, "more"
    else:
        words = "fewer"
    sign = {"≥": "≥ ", "≤": "≤ ", "?": "~"}.get(bound, "")
    return f"{sign}{value:.3g}× {words} steps"


def _value(r: dict, which: str) -> str:
    """An arm's mean as the claim reads it (a log2 rate as the rate itself)."""
    v = r.get(f"{which}_natural", float("nan"))
    if v is None or not math.isfinite(v):
        return "–"
    if r.get("kind") == "max_usable":
        return f"{v:.3g}"
    if str(r.get("metric", "")).startswith("log2 "):
        return f"{v:.4g}"
    return _fmt(v)


def _measure_words(r: dict) -> str:
    measured = r.get("measured") or str(r.get("metric", "")).removeprefix("log2 ")
    return KINDS[r["kind"]].words.format(m=label(measured))


def _mean_words(r: dict) -> str:
    """How an arm's value was averaged: a log2 measure read back as a geometric mean."""
    if KINDS[r["kind"]].log_scale:
        return ""  # the kind's words say it
    return ", geometric mean over seeds" if str(r.get("metric", "")).startswith("log2 ") else ", mean over seeds"


PLAIN_LEAD = {"supported": "Holds here", "not supported": "Ruled out here", "inconclusive": "Not decided",
              "exploratory": "Exploratory", "not comparable": "Not comparable"}


def plain_sentence(r: dict, s: dict | None = None) -> str:
    """One sentence a reader can take away, generated from the verdict: the lead word, each
    arm's mean on the claim's own measure, the ratio where the claim is one, and why a verdict
    was not reached."""
    b, t = _arm_words(r, r["baseline"]), _arm_words(r, r["treatment"])
    means = (f"{t} {_value(r, 'treatment')} against {b} {_value(r, 'baseline')} "
             f"({_measure_words(r)}{_mean_words(r)})")
    ratio = _ratio(r)
    text = f"{PLAIN_LEAD.get(r['verdict'], r['verdict'])}: {means}" + (f"; {ratio}" if ratio else "")
    if r["verdict"] != "supported" and r.get("reason"):
        text += f" — {r['reason']}"
    if r.get("precondition", "").startswith("the precondition fails"):
        text += f"; {r['precondition']}"
    if s is not None and s.get("ranges", {}).get(r["id"]):
        text += "." + _range_over_settings(r, s).replace("**", "")
    return text.rstrip(".") + "."


def _rel(target: Path, start: Path) -> str:
    return os.path.relpath(target, start).replace(os.sep, "/")


def _page_link(s: dict, report_dir: Path) -> str:
    return f"[`{s['name']}`]({_rel(Path(s['out']) / 'README.md', report_dir)})"


def _family_rows(studies: list[dict], family: str) -> list[tuple[dict, dict]]:
    return [(s, r) for s in studies if s["ran"] for r in s["results"] if r.get("family") == family]


def _headline_row(s: dict, r: dict, report_dir: Path, first: str) -> str:
    return (f"| {first} | **{r['verdict']}** | {_effect(r)}{_unverified_mark(s)} "
            f"| {_fmt(r.get('p_holm'), 2)} | {cell(_literature_figure(s, r))} | {cell(plain_sentence(r, s))} "
            f"| {_page_link(s, report_dir)} |")


def _literature_figure(s: dict, r: dict) -> str:
    """The published numbers beside a row: the claim's `literature_values` where it gives them,
    else its literature text, each work linked to its page."""
    c = next((c for c in s["spec"].claims if c.name == r["claim_id"]), {})
    values = c.get("literature_values") or {}
    nums = [f"{arm_name(a)} {v:g}" for a, v in values.items() if isinstance(v, (int, float))]
    if nums:
        return linked(f"{', '.join(nums)} ({values.get('source') or 'source not given'})")
    return linked(c.get("literature", "")) or "–"


def _primary_table(studies: list[dict], report_dir: Path) -> list[str]:
    """The twelve primary hypotheses, claim × dataset, one row each (a missing one says so)."""
    found = {(r["claim"], r["dataset"]): (s, r) for s, r in _family_rows(studies, "primary")}
    planned = {}
    for s in studies:  # a primary whose study has not run yet
        if not s["ran"]:
            for c in s["spec"].claims:
                if c.family == "primary":
                    planned[(c.claim, DATASETS.get(s["spec"].dataset, s["spec"].dataset))] = s
    m = next((r.get("family_size") for _, r in found.values()), 0)
    out = [f"## The six claims on MNIST and CIFAR-10", "",
           f"The primary family: one hypothesis per claim and dataset, fixed in advance (`DESIGN.md`, "
           f"\"Pre-registered hypotheses\"), decided together (Holm across its {m} tests, both ways). Effect: "
           f"treatment − baseline, signed so that + is the claimed direction, [95% CI]; ≥/≤: a bound from censored runs.", "",
           "| claim | data | verdict | effect [95% CI] | p_Holm | literature | in plain words | study |",
           "|---|---|---|---|---|---|---|---|"]
    for claim in PRIMARY_CLAIMS:
        title = CLAIMS[claim]
        for data in DATASETS.values():
            first = f"{title} | {data}"
            if (claim, data) in found:
                s, r = found[(claim, data)]
                out.append(_headline_row(s, r, report_dir, first))
            elif (claim, data) in planned:
                s = planned[(claim, data)]
                out.append(f"| {first} | **not run yet** | – | – | – | `bnlab-study {s['name']}` | {_page_link(s, report_dir)} |")
            else:
                out.append(f"| {first} | **not run yet** | – | – | – | – | no study marks it `family: primary` | – |")
    return out + [""]


FAMILY_TITLES = {
    "mechanism": ("Mechanism: Santurkar et al.'s argument",
                  "noisy BN ≈ BN on the recalibrated readout, Def. 2.1 ICS at one matched rate, β-smoothness and "
                  "gradient predictiveness"),
    "cost": ("Cost: each BN step costs more", "BN's step time over no BN's, paired per seed in one sweep, as a ratio"),
    "descriptive": ("The seed's descriptions of what BN does", "Gaussian pre-activations, decorrelated units, "
                    "a lower training loss"),
}


def _family_section(studies: list[dict], family: str, report_dir: Path) -> list[str]:
    title, what = FAMILY_TITLES[family]
    rows = _family_rows(studies, family)
    if not rows:
        return [f"**{title}** ({family} family: {what}): no study has run a test of it yet.", ""]
    out = [f"## {title}", "",
           f"The {family} family ({what}): {rows[0][1].get('family_size', len(rows))} tests, Holm within it.", "",
           "| hypothesis | data | verdict | effect [95% CI] | p_Holm | literature | in plain words | study |",
           "|---|---|---|---|---|---|---|---|"]
    for s, r in rows:
        c = next((c for c in s["spec"].claims if c.name == r["claim_id"]), {})
        at = ", ".join(f"{label(k)} {_plain(v)}" for k, v in (c.get("matched") or {}).items())
        out.append(_headline_row(s, r, report_dir, f"`{r['id']}`: {cell(_comparison_words(r))} ({r['metric']}"
                                                   + (f", at {at}" if at else "") + f") | {r['dataset']}"))
    return out + [""]


def _description_checks(studies: list[dict], report_dir: Path) -> list[str]:
    """The seed's other two descriptions, one line each, below the descriptive family: what the
    normalization does (a check, no hypothesis) and where it sits (exploratory arms read beside
    the no-BN arm). From the studies' readings; a line per study that has them."""
    out = []
    for s in studies:
        for r in s.get("normalization") or [] if s["ran"] else []:
            def ci(x: dict) -> str:
                return _ci_text(x, 3)
            out += [f"- **\"Zero mean and unit variance\"** (a check, not a hypothesis; {_page_link(s, report_dir)}, "
                    f"{arm_name(r['arm'])}, seeds {seeds_text(r['seeds'])}): the normalized value per unit has |mean| "
                    f"{ci(r['train_norm_mean_abs'])} and variance {ci(r['train_norm_var'])} in train mode (the batch's "
                    f"statistics: so by construction), and |mean| {ci(r['eval_norm_mean_abs'])} and variance "
                    f"{ci(r['eval_norm_var'])} in eval mode, where the running statistics stand in for the batch's."]
    for s in studies:
        line = beside_sentence(s) if s["ran"] else None
        if line:
            out += [f"- **{cell(s['spec'].description)}** (exploratory, {_page_link(s, report_dir)}; every arm of every "
                    f"study standardizes its input, so no BN is \"the input only\"): {line}."]
    return out + [""] if out else []


def _studies_table(studies: list[dict], report_dir: Path) -> list[str]:
    out = ["## Studies", "",
           "Each study's page holds its every row (the exploratory ones too), how each was decided, the sensitivity "
           "at every setting, the budget, and its figures.", "",
           "| study | data | rows by family | runs | what it asks |", "|---|---|---|---|---|"]
    for s in studies:
        counts: dict[str, int] = {}
        for r in s.get("results", []) if s["ran"] else []:
            name = "own" if str(r.get("family", "")).startswith("study:") else r.get("family", "exploratory")
            counts[name] = counts.get(name, 0) + 1
        order = [f for f in FAMILIES if f != "study"] + ["own"]
        rows = ", ".join(f"{counts[f]} {f}" for f in order if counts.get(f)) or ("not run yet" if not s["ran"] else "–")
        runs = str(s["budget"]["runs"]) if s["ran"] else "–"
        data = DATASETS.get(s["spec"].dataset, s["spec"].dataset)
        out.append(f"| {_page_link(s, report_dir)} | {data} | {rows} | {runs} | {cell(s['spec'].description)} |")
    return out + [""]


def write_study_page(s: dict, profile: str | None = None) -> Path:
    """results/<study>/README.md: the study's verdict table and its detail (`_study_section`)."""
    page = Path(s["out"]) / "README.md"
    spec = s["spec"]
    lines = [f"# Study `{s['name']}`" + (f" (budget profile `{profile}`)" if profile else ""), "",
             spec.description, "",
             # the same words whether the runs came from the run store or the CSV, so that a page
             # regenerated from the committed CSVs is byte-identical (`make report` in a fresh clone)
             f"Generated by `bnlab-report` (or `bnlab-plot {s['name']}`) from the study's runs, one row each in "
             f"`runs.csv` beside this page (written from the run store when it is there). "
             f"Back to the [report]({_rel(page.parent.parent / 'REPORT.md', page.parent)}).", "",
             "| claim: comparison | verdict (family) | effect (treatment − baseline, + = as claimed) [95% CI] "
             "| p, p_Holm | seeds that decided | sensitivity: verdict at each matched setting | literature | figure "
             "| budget and hardware |",
             "|---|---|---|---|---|---|---|---|---|",
             *_claim_rows(s), ""]
    if s["ran"] and s.get("budget", {}).get("unverified"):
        lines += [UNVERIFIED_NOTE, ""]
    lines += _study_section(s)
    page.parent.mkdir(parents=True, exist_ok=True)
    tmp = page.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(page)
    return page


def write_report(studies: list[dict], path: Path, profile: str | None = None) -> None:
    """REPORT.md: the twelve primary answers first, then the mechanism, cost and descriptive
    families, a pointer to the exploratory rows, the studies, the rules and the budgets; every
    study's detail on its own page."""
    report_dir = path.parent
    exploratory = _family_rows(studies, "exploratory")
    with_exploratory = sorted({s["name"] for s, _ in exploratory})
    lines = [
        "# bnlab report: which benefits of batch normalization hold?"
        + (f" (budget profile `{profile}`)" if profile else ""), "",
        *([f"**Every study here was read under its `{profile}` budget profile**: the budget each study file names "
           f"under `profiles.{profile}`, not the one its committed verdicts use. "
           + ("A first look: fewer steps, seeds and rates. The evidence is in the committed results/REPORT.md."
              if profile == "quick" else ""), ""] if profile else []),
        "Generated by `bnlab-report` from each study's runs (its run store when present, else the committed CSV "
        "beside its figures); nothing is typed in by hand, and the file carries no date.", "",
        *_primary_table(studies, report_dir),
        *_family_section(studies, "mechanism", report_dir),
        *_family_section(studies, "cost", report_dir),
        *_family_section(studies, "descriptive", report_dir),
        *_description_checks(studies, report_dir),
        f"**Exploratory rows** ({len(exploratory)}: other thresholds and units, controls, manipulation checks, "
        f"other architectures and budgets, pilots): effect, 95% interval and raw p, no verdict word, on the pages of "
        + (", ".join(f"`{n}`" for n in with_exploratory) or "no study") + ".", "",
        *([UNVERIFIED_NOTE, ""] if any(s.get("budget", {}).get("unverified") for s in studies if s["ran"]) else []),
        *_studies_table(studies, report_dir),
        "## How a verdict is decided", "",
        VERDICT_RULE, "", EQUIVALENCE_RULE, "", NONINFERIORITY_RULE, "",
        f"**Run outcomes.** A run *diverged* when its training loss became non-finite or, after a warm-up, rose far "
        f"above the loss it started from without falling; it *did not learn* when it completed but its best "
        f"validation accuracy stayed within 0.1 of chance or its final training loss was above its starting loss; "
        f"otherwise it *learned*; α = {ALPHA}.", "",
        "**Caveats.** Budgets are CPU-sized (each study page says which): `ioffe_fig1` runs the paper's 50k steps; "
        "the other MNIST studies run 1k–10k steps and the CIFAR-10 ones 200–2,000, so absolute accuracies sit below "
        "the published ones, and the comparison between arms at equal budget is what a verdict tests. Settings and "
        "design choices are made on the validation split only; test numbers are reported, never used for selection. "
        "The CIFAR-10 copy on the project machines is rebuilt from JPEGs (exact labels, lossy pixels; runs record "
        "`verified: false`).", "",
    ]
    lines += _budget_table(studies)
    for s in studies:
        write_study_page(s, profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="bnlab-report", description="Write results/REPORT.md from every study.")
    ap.add_argument("--results", default=str(RESULTS), help="results folder (default <repo>/results)")
    ap.add_argument("--runs-root", default=None, help="raw runs folder (default <results>/runs)")
    ap.add_argument("--format", default="png", choices=("png", "svg", "pdf"))
    ap.add_argument("--profile", default=None,
                    help="a budget profile (e.g. quick): only the studies that define it, read under it")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        check_results_folder(Path(args.results))
        results_dir = profile_results(Path(args.results), args.profile)
        studies = analyse_all(results_dir, Path(args.runs_root) if args.runs_root else None, args.profile)
    except ConfigError as exc:
        print(f"bnlab-report: error: {exc}", file=sys.stderr)
        raise SystemExit(2)
    if args.profile and not studies:
        raise SystemExit(f"bnlab-report: error: profile: no study defines a profile {args.profile!r}")
    for s in studies:
        print(s["source_line"])
    if args.profile and not any(s["ran"] for s in studies):
        raise SystemExit(f"bnlab-report: no runs of profile {args.profile!r} under {results_dir / 'runs'}; "
                         f"nothing written (`scripts/suite.sh mnist --profile {args.profile}` makes them)")
    if not any(s["ran"] for s in studies):  # a report of nothing would hide a wrong folder
        runs_root = Path(args.runs_root) if args.runs_root else results_dir / "runs"
        print(f"bnlab-report: error: --results: no study has runs under {runs_root} or a runs.csv under "
              f"{results_dir}; nothing written (`bnlab-study <study>` makes runs)", file=sys.stderr)
        raise SystemExit(2)
    for s in studies:
        if s["ran"]:
            save_frame(s)
            draw(s, args.format)
    write_report(studies, results_dir / "REPORT.md", args.profile)
    ran = [s["name"] for s in studies if s["ran"]]
    print(f"wrote {results_dir / 'REPORT.md'}: {len(ran)} of {len(studies)} studies have runs "
          f"({', '.join(ran) or 'none'}), in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
