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
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from bnlab.analysis.selection import arm_runs, finished, fixed_settings, seeds_text, setting_table, where
from bnlab.analysis.spec import CLAIMS
from bnlab.errors import ConfigError
from bnlab.analysis.frames import OUTCOMES, swept_columns
from bnlab.views.style import arm_name
from bnlab.analysis.stats import ALPHA, EQUIVALENCE_RULE, VERDICT_RULE, effect_text, seed_stats
from bnlab.analysis.study import RESULTS, analyse_all, slices
from bnlab.analysis.suites import SUITES
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
            f"(≈ {b['run_hours'] * 30:.0f} min of wall clock at two jobs at a time); "
            f"{'paired seeds' if b['paired'] else 'runs not all paired (Welch where unpaired)'}"
            f"{'; made ' + _days(b['made']) if b.get('made') else ''}")


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
    """A worst-case claim's whole range for each arm: its worst and best setting (mean over
    seeds), so "flat across inits" or "struggles somewhere" can be read off, not only the worst."""
    if r.get("kind") != "worst_case" or "runs" not in s:
        return ""
    spec = s["spec"]
    claim = next((c for c in spec.claims if c.get("id", c["claim"]) == r["id"]), {})
    runs = finished(where(s["runs"], claim))
    # keys that really vary (a key added later is NaN on older runs: its neutral value, not a setting)
    keys = [c for c in swept_columns(runs) if c not in (spec.arm_col, "cfg.seed")
            and runs[c].dropna().map(repr).nunique() > 1]
    if not keys or r["metric"] not in runs:
        return ""
    parts = []
    for arm in (r["baseline"], r["treatment"]):
        means = runs[runs[spec.arm_col].astype(str) == arm].groupby(keys, dropna=False)[r["metric"]].mean().dropna()
        if means.empty:
            continue

        def words(setting) -> str:
            setting = setting if isinstance(setting, tuple) else (setting,)
            return ", ".join(f"{k.removeprefix('cfg.')}={_plain(v)}" for k, v in zip(keys, setting)
                             if not (isinstance(v, float) and math.isnan(v)))
        def at(value, setting) -> str:  # ties (several settings at the same mean) are counted
            others = int(np.isclose(means, value, atol=5e-4).sum()) - 1
            more = f" and {others} other setting{'s' if others > 1 else ''}" if others else ""
            return f"{value:.3f} ({words(setting)}{more})"
        parts.append(f"{arm_name(arm)} from {at(means.min(), means.idxmin())} to {at(means.max(), means.idxmax())}")
    return (" **Range over the settings** (mean over seeds, worst to best): " + "; ".join(parts) + ".") if parts else ""


def _edges_text(r: dict) -> str:
    edges = r.get("edges") or {}
    return "; ".join(f"{arm}: {', '.join(f)}" for arm, f in edges.items())


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
                    rows.append(f"| {title} | **not run yet** | – | – | – | – | {cell(c.get('literature', ''))} | – "
                                f"| study `{s['name']}` has no runs (`bnlab-study {s['name']}`) |")
                    continue
                for r in (r for r in s["results"] if r["claim_id"] == c.get("id", claim)):
                    rows.append(_claim_row(title, s, c, r))
        if not found:
            rows.append(f"| {title} | **not run yet** | – | – | – | – | – | – | no study in experiments/ tests it |")
    return rows


UNVERIFIED_NOTE = ("† On the CIFAR-10 copy the project's machines hold: rebuilt from a JPEG export (exact "
                   "labels and order, lossy pixels), so its runs record `verified: false` and their accuracies are "
                   "not comparable digit for digit with the papers' (original pixels).")


def _unverified_mark(s: dict) -> str:
    """† beside a number measured on data that did not match its canonical checksums."""
    return " †" if s.get("budget", {}).get("unverified") else ""


def _comparison_words(r: dict) -> str:
    """"noisy BN ≈ BN (equivalence within ±0.01)" or "BN vs no BN"."""
    b, t = arm_name(r["baseline"]), arm_name(r["treatment"])
    return f"{t} ≈ {b} (equivalence within ±{r['margin']:g})" if r.get("test_kind") == "equivalence" else f"{t} vs {b}"


def _claim_row(title: str, s: dict, c: dict, r: dict) -> str:
    """One row of the verdicts table: one claim judged on one comparison."""
    fig = f"[figure]({s['name']}/claim_{r['id']}.png)"
    note = f"<br>*{cell(r['note'])}*" if r.get("note") else ""
    edges = cell(_edges_text(r))
    edge = f"<br>⚠ chosen at the grid's edge: {edges}" if edges else ""
    sens = r.get("sensitivity_summary") or "– (whole-grid measure)"
    return (f"| {title} `{r['id']}`: {cell(_comparison_words(r))} | **{r['verdict']}**{note}{edge} "
            f"| {_effect(r)}{_unverified_mark(s)} ({r['metric']}, {r['kind']}; {r['test']}, n = {r['n_baseline']}/{r['n_treatment']}) "
            f"| p = {_fmt(r['p'], 2)}, p_Holm = {_fmt(r.get('p_holm'), 2)} "
            f"| {r['decided_by']}: {seeds_text(r['seeds'])}"
            + (f" (chosen on seeds {seeds_text(r['chosen_on'])})" if r.get("chosen_on") else "")
            + f" | {sens} | [{cell(c.get('literature', ''))}]({c.get('url', '')}) | {fig} "
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
    spec = s["spec"]
    out = [f"## Study `{s['name']}`", "", spec.description, ""]
    if not s["ran"]:
        out += [f"Not run yet. Run it with `bnlab-study {s['name']}`, then `bnlab-report`.", ""]
        return out
    b = s["budget"]
    lo = s["left_out"]
    stale = (f"- Left out: {lo['stale']} run(s) from an earlier definition of the study or launched with "
             f"extra overrides (differing in {', '.join(lo['differing'])}).") if lo["stale"] else None
    seeds = sorted(int(x) for x in s["runs"]["cfg.seed"].unique())
    tune_seeds = [x for x in seeds if x not in spec.confirm_seeds]
    conf_seeds = [x for x in seeds if x in spec.confirm_seeds]
    out += [*([f"- Budget profile: `{spec.profile}` (the study file's `profiles.{spec.profile}`)."] if spec.profile else []),
            f"- Budget: {_budget_line(b)}.", f"- Runs: `results/runs/{s['name']}` (one row each in `results/{s['name']}/runs.csv`, their curves beside it in `runs.curves.jsonl.gz`).",
            f"- Seeds: tuning (grid) {seeds_text(tune_seeds)}; confirmation {seeds_text(conf_seeds)}.",
            *([stale] if stale else []),
            *([f"- **Data †: {b['unverified']} of {b['runs']} runs on unverified data.** {UNVERIFIED_NOTE[2:]} "
               "Every accuracy in this study carries that caveat."] if b.get("unverified") else []),
            *([code_versions_line(b["code_versions"])] if b.get("code_versions") else []),
            "- Mean time per training step: " + ", ".join(f"{k} {v:.3f} ms" for k, v in b["step_time_ms"].items())
            + f" (over {b['timed_runs']} {'confirmation' if conf_seeds else 'finished'} runs; one torch thread per "
              f"job, two jobs at a time on the 2-core CPU, evaluation excluded).",
            ""]
    for r in s["results"]:
        chosen = "; ".join(f"{k}: {_plain(v)}" for k, v in r["chosen"].items())
        edges = _edges_text(r)
        judged = (f"equivalence margin ±{r['margin']:g}" if r.get("test_kind") == "equivalence" else
                  f"{r['direction']} is the claimed direction, smallest effect that matters {r['min_effect']:g}")
        out += [f"**Claim `{r['id']}`**, {_comparison_words(r)} ({r['kind']} on `{r['metric']}`, {judged}): "
                f"**{r['verdict']}** — {r['reason']}. "
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
    # a study that tunes nothing but fixes several settings in advance (santurkar: lr 0.1 and
    # 0.5) has a row per arm and setting, as one that tunes has per arm and candidate
    fixed = sorted({k.removeprefix("cfg.") for f in fixed_settings(s["runs"], spec) for k in f})
    table = setting_table(s["runs"][~s["runs"]["cfg.seed"].isin(spec.confirm_seeds)],
                          spec if spec.tune else replace(spec, tune=fixed), spec.select_on)
    if not table.empty:
        keep = [c for c in table.columns if c.startswith("cfg.")] + ["runs", *[o for o in OUTCOMES if o in table],
                                                                     "n", "mean", "ci_low", "ci_high"]
        out += [f"Validation metric `{spec.select_on}` per arm and setting on the tuning seeds (mean, 95% CI), "
                f"with every run's outcome counted:", "", _table(table[keep]), ""]
    out += _ics_and_accuracy(s)
    out += _slices_section(s)
    for f in s.get("figures", []):
        out += [f"![{f.stem}]({s['name']}/{f.name})", ""]
    return out


# the ICS measures a study's `ics` claims may use, as the report names them
ICS_MEASURES = {"act_in_drift": "Ioffe & Szegedy's (activation-input drift)",
                "grad_ics_l2": "Santurkar et al.'s (raw ||G−G′||)",
                "grad_ics_rel": "the relative ||G−G′||/||G||", "grad_ics_cos": "the cosine of G and G′"}


def _decided_sign(stats_: dict) -> int:
    """+1 / -1 when the 95% interval lies on one side of 0, 0 when it spans it."""
    lo, hi = stats_.get("ci_low"), stats_.get("ci_high")
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0


def _ics_and_accuracy(s: dict) -> list[str]:
    """Whether ICS, as each paper measures it, goes with the accuracy benefit: for every arm an
    `ics` claim compares with the baseline, its ICS reduction (the claim's effect, + = less ICS)
    beside its test-accuracy gain over the baseline on the same seeds and settings (paired per
    seed). A measure goes with the benefit when the arms with a measurable change in either
    change in both, less ICS exactly where more accurate; an arm that changes one without the
    other makes it "only in part"; one with less ICS and lower accuracy (or the reverse), "not"."""
    spec, runs = s["spec"], finished(s["runs"])
    ics = [r for r in s["results"] if r["claim"] == "ics" and r["metric"] in ICS_MEASURES
           and r["baseline"] == spec.baseline and np.isfinite(r.get("effect", np.nan))]
    if not ics or "best/test/acc" not in runs:
        return []
    rows, verdicts = {}, []
    for metric in dict.fromkeys(r["metric"] for r in ics):
        agree, disagree, unmatched, words = [], [], [], []
        for r in (r for r in ics if r["metric"] == metric):
            arm = r["treatment"]

            def accuracy(a):
                setting = {k: v for k, v in (r["chosen"].get(a) or {}).items() if k.startswith("cfg.")}
                sel = arm_runs(runs, spec, a, setting)
                return sel[sel["cfg.seed"].isin(r["seeds"])].groupby("cfg.seed")["best/test/acc"].mean()

            gain = seed_stats((accuracy(arm) - accuracy(spec.baseline)).dropna().tolist())
            rows.setdefault(arm, {"arm": arm_name(arm),
                                  f"test accuracy − {arm_name(spec.baseline)} [95% CI]":
                                      f"{gain['mean']:+.4f} [{gain['ci_low']:+.4f}, {gain['ci_high']:+.4f}]"})
            rows[arm][f"less ICS, {metric} [95% CI]"] = effect_text(r)
            a, i = _decided_sign(gain), _decided_sign(r)
            if a and i:
                (agree if a == i else disagree).append(arm_name(arm))
            elif a or i:
                unmatched.append(arm_name(arm))
            words.append(f"{arm_name(arm)}: {'less' if i > 0 else 'more' if i < 0 else 'no measurable change in'} ICS, "
                         f"{'higher' if a > 0 else 'lower' if a < 0 else 'no measurably different'} accuracy")
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
    """Each study's runs and wall time, and each suite's sum: estimated from the runs' own wall
    times (evaluation and probes included) at two jobs at a time, so it regenerates from the
    CSVs; a suite's measured time (scripts/suite.sh prints it) adds process start-up."""
    ran = {s["name"]: s["budget"] for s in studies if s["ran"]}
    if not ran:
        return []
    out = ["## Budgets and wall time", "",
           "Run time is the sum of every current run's wall time (start-up, training, evaluation, probes), "
           "one torch thread per run; the wall clock is that over the two jobs run at a time on the 2-core CPU "
           "(a study made on a GPU says so in its budget line).", "",
           "| study | runs | run time (min) | ≈ wall clock at two jobs (min) |", "|---|---|---|---|"]
    out += [f"| `{name}` | {b['runs']} | {b['run_hours'] * 60:.0f} | {b['run_hours'] * 30:.0f} |" for name, b in ran.items()]
    out.append("")
    for title, names in SUITES.items():
        have = [n for n in names if n in ran]
        if have:
            hours = sum(ran[n]["run_hours"] for n in have)
            missing = [n for n in names if n not in ran]
            out.append(f"- {title}: {', '.join(f'`{n}`' for n in have)}: ≈ {hours * 30:.0f} min of wall clock "
                       f"from scratch ({hours * 60:.0f} min of run time)"
                       + (f"; not run yet: {', '.join(missing)}" if missing else "") + ".")
    return out + [""]


def _dataset_section(studies: list[dict], dataset: str, title: str) -> list[str]:
    """Every verdict of the studies on one dataset in one table, each beside the literature it
    tests (the verdicts table orders by claim; a reader of one dataset's papers wants them
    together), with the studies' budgets and the runs committed beside them."""
    on = [s for s in studies if s["ran"] and s["budget"]["dataset"] == [dataset]]
    if not on:
        return []
    out = [f"## {title}", "",
           "| study | claim: comparison | verdict | baseline → treatment (mean) | effect [95% CI], p_Holm | literature |",
           "|---|---|---|---|---|---|"]
    for st in on:
        for r in st["results"]:
            c = next((c for c in st["spec"].claims if c.get("id", c["claim"]) == r["claim_id"]), {})
            out.append(f"| `{st['name']}` | `{r['id']}`: {cell(_comparison_words(r))} | **{r['verdict']}** "
                       f"| {arm_name(r['baseline'])} {_fmt(r['baseline_mean'])} → {arm_name(r['treatment'])} "
                       f"{_fmt(r['treatment_mean'])}{_unverified_mark(st)} ({r['metric']}) "
                       f"| {_effect(r)}, p_Holm = {_fmt(r.get('p_holm'), 2)} | {cell(c.get('literature', ''))} |")
    out += [""] + [f"- `{st['name']}`" + (f" (profile `{st['spec'].profile}`)" if st["spec"].profile else "")
                   + f": {_budget_line(st['budget'])}." for st in on]
    slices = [f"`{st['name']}/{f.name}`" for st in on for f in sorted(Path(st["out"]).glob("*_runs.csv"))]
    if slices:
        out.append(f"- Runs of other profiles, listed in their study's section: {', '.join(slices)}.")
    return out + [""]


def write_report(studies: list[dict], path: Path, profile: str | None = None) -> None:
    lines = [
        "# bnlab report: which benefits of batch normalization hold?"
        + (f" (budget profile `{profile}`)" if profile else ""), "",
        *([f"**Every study here was read under its `{profile}` budget profile** ({', '.join(s['name'] for s in studies)}): "
           f"the budget each study file names under `profiles.{profile}`, not the one its committed verdicts use. "
           + ("A first look: fewer steps, seeds and rates; verdicts on fewer than 5 seeds are inconclusive by rule. "
              "The evidence is in the committed results/REPORT.md. " if profile == "quick" else ""), ""] if profile else []),
        "Generated by `bnlab-report` from the runs listed per study (the run store when present, else the "
        "committed CSV beside each study's figures, which holds the same runs). Every number and figure here "
        "is regenerated by that command; nothing is typed in by hand. The file carries no date, so that "
        "regenerating it from the same runs changes nothing; the budget lines say when and on what the runs "
        "were made.", "",
        "## Verdicts", "",
        "| claim: comparison | headline verdict | our effect (treatment − baseline, signed: + = as claimed) [95% CI] "
        "| p, Holm-adjusted p "
        "| seeds that decided | sensitivity: verdict at each matched setting | literature | figure | budget and hardware |",
        "|---|---|---|---|---|---|---|---|---|",
        *_claim_rows(studies), "",
        *([UNVERIFIED_NOTE, ""] if any(s.get("budget", {}).get("unverified") for s in studies if s["ran"]) else []),
        "**How a verdict is decided.** " + VERDICT_RULE + " " + EQUIVALENCE_RULE, "",
        f"**Run outcomes.** A run *diverged* when its training loss became non-finite or, after a warm-up, rose far "
        f"above the loss it started from without falling; it *did not learn* when it completed but its best "
        f"validation accuracy stayed within 0.1 of chance or its final training loss was above its starting loss; "
        f"otherwise it *learned*. Counts of each are given for every study and setting; α = {ALPHA}.", "",
        "**Caveats.** Budgets are CPU-sized (see each study): `ioffe_fig1` runs the paper's 50k steps; the "
        "other MNIST studies run 1k–10k steps, so their absolute accuracies sit below the published ones, and "
        "the comparison between arms at equal budget is what their verdicts test. Settings are chosen on the validation split only; test "
        "numbers are reported, never used for selection. The CIFAR-10 copy on the project machines is rebuilt "
        "from JPEGs (exact labels, lossy pixels; runs record `verified: false`), so CIFAR-10 accuracies are not "
        "comparable digit for digit with the papers'.", "",
    ]
    lines += _budget_table(studies)
    lines += _dataset_section(studies, "cifar10", "CIFAR-10" + (f" (budget profile `{profile}`)" if profile else ""))
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
    ap.add_argument("--profile", default=None,
                    help="a budget profile (e.g. quick): only the studies that define it, read under it")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    results_dir = Path(args.results)
    try:
        studies = analyse_all(results_dir, Path(args.runs_root) if args.runs_root else None, args.profile)
    except ConfigError as exc:
        raise SystemExit(f"bnlab-report: error: {exc}")
    if args.profile and not studies:
        raise SystemExit(f"bnlab-report: error: profile: no study defines a profile {args.profile!r}")
    for s in studies:
        if s["ran"]:
            draw(s, args.format)
    write_report(studies, results_dir / "REPORT.md", args.profile)
    ran = [s["name"] for s in studies if s["ran"]]
    print(f"wrote {results_dir / 'REPORT.md'}: {len(ran)} of {len(studies)} studies have runs "
          f"({', '.join(ran) or 'none'}), in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
