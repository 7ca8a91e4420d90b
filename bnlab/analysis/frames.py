"""Runs (from the run store or a committed CSV) -> one study frame, with derived metrics
(bnlab.analysis.measures).

A study frame is a pandas DataFrame with one row per run: `cfg.*` config columns, `status`,
`outcome`, the summary metrics, derived metrics (ICS measures) and a `curves` column (a dict
of lists: the logged curves). `frame_from_store` and `frame_from_csv` give the same columns,
so every figure and verdict can be rebuilt from either. Nothing here knows about claims.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from bnlab.resolvers import REPO_ROOT
from bnlab.store import NON_SCIENTIFIC_KEYS, RUN_FILE, load_runs, read_json, read_metrics
from bnlab.outcomes import learned_rule
from bnlab.analysis.measures import add_measures

FINISHED = ("completed", "diverged")
# What a run's outcome says, in the order a reader sees counts.
# superseded: an earlier run of a config retrained with force=true (kept, not analysed)
OUTCOMES = ("learned", "did not learn", "diverged", "failed", "damaged", "incomplete", "superseded")
# Curves kept per run in the frame and the CSV: evaluation records and the train-loss trace.
EVAL_KEYS = ("step", "samples", "time_s", "val/acc", "val/loss", "test/acc", "test/loss")
# Columns that would carry the paths of the machine that made the runs: never in a CSV.
MACHINE_COLUMNS = ("path", "wandb_dir", "cfg.paths.", "cfg.data.root", "data.root")
# The study file's own text (its claims with their literature, its description, profiles and
# extra grids): the same on every row, and in experiments/<study>.yaml; most of a CSV's bytes
STUDY_TEXT_COLUMNS = ("cfg.analysis.", "cfg.description", "cfg.profiles.", "cfg.sweeps")


def _round(v, digits=5):
    if isinstance(v, float) and math.isfinite(v):
        return float(f"{v:.{digits}g}")
    return None if isinstance(v, float) else v


def curves_of(metrics: pd.DataFrame) -> dict:
    """The curves of one run as plain lists (JSON-able): evaluations and train loss."""
    if metrics.empty:
        return {}
    out = {}
    ev = metrics[metrics["val/acc"].notna()] if "val/acc" in metrics else metrics.iloc[0:0]
    for k in [*EVAL_KEYS, *sorted(c for c in metrics if c.startswith("probe/"))]:
        if k in ev:
            out[f"eval:{k}"] = [_round(v) for v in ev[k].tolist()]
    tr = metrics[metrics["train/loss"].notna()] if "train/loss" in metrics else metrics.iloc[0:0]
    for k in ("step", "time_s", "train/loss", "train/acc"):
        if k in tr:
            out[f"train:{k}"] = [_round(v) for v in tr[k].tolist()]
    return out


# ------------------------------------------------------------------ derived metrics

def _fill_best_from_start(runs: pd.DataFrame) -> None:
    """The trainer's rule for a run's best evaluation counts the untrained net at step 0 (it
    wins ties), so a run that diverged before its next evaluation — the evaluation where it
    stopped never counts — scores chance accuracy rather than a missing value. Summaries
    written while the trainer left step 0 out are brought to the same rule here."""
    if "best/val/acc" not in runs:
        return
    for i, row in runs.iterrows():
        if row.get("status") not in FINISHED:
            continue
        c = row["curves"]
        start_val = (c.get("eval:val/acc") or [None])[0]
        start_test = (c.get("eval:test/acc") or [None])[0]
        if (c.get("eval:step") or [None])[0] != 0 or start_val is None:
            continue
        best = row.get("best/val/acc")
        if pd.isna(best) or start_val >= float(best):
            runs.at[i, "best/val/acc"] = start_val
            runs.at[i, "best/test/acc"] = start_test
            runs.at[i, "best/step"] = 0


def derive(runs: pd.DataFrame) -> pd.DataFrame:
    """Add the derived metrics (bnlab.analysis.measures.RUN_MEASURES, from each run's curves)
    and the outcome column."""
    runs = runs.copy()  # one block: the columns added below would fragment a frame read column by column
    _fill_best_from_start(runs)
    runs = add_measures(runs)
    runs["outcome"] = [outcome(r) for _, r in runs.iterrows()]
    return runs


def _num(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def outcome(row) -> str:
    """learned | did not learn | diverged | failed | damaged | incomplete. A completed run that never
    rose clearly above chance, or ended with a higher training loss than it started with,
    "did not learn". Runs made before the trainer recorded `learned` are judged by the same
    rule from their summary (the starting loss taken as chance level, ln C)."""
    status = row.get("status")
    if status != "completed":
        return status if status in OUTCOMES else "incomplete"
    learned = row.get("learned")
    if isinstance(learned, (bool, np.bool_)) or (learned is not None and not pd.isna(learned)):
        return "learned" if bool(learned) else "did not learn"
    classes = 10
    start = _num(row.get("initial_loss")) or math.log(classes)
    margin = _num(row.get("cfg.trainer.learned_margin")) or 0.1
    ok = learned_rule(_num(row.get("best/val/acc")), _num(row.get("train/loss")), start, classes, margin)
    return "learned" if ok else "did not learn"


def outcome_counts(runs: pd.DataFrame) -> dict:
    col = runs["outcome"] if "outcome" in runs else pd.Series(dtype=str)
    return {o: int((col == o).sum()) for o in OUTCOMES}


# ------------------------------------------------------------------ loading and saving

def frame_from_store(root: str | Path) -> pd.DataFrame:
    """Every run under `root`, with curves, derived metrics and the hardware it ran on."""
    root = Path(root)
    runs = load_runs(root)
    if runs.empty:
        return runs
    curves, hw = [], []
    for path in runs["path"]:
        curves.append(curves_of(read_metrics(path)))
        env = (read_json(Path(path) / RUN_FILE) or {}).get("env")
        env = env if isinstance(env, dict) else {}  # a damaged run.json: counted as damaged by load_runs
        hw.append({"env.device": env.get("device"), "env.device_name": env.get("device_name"),
                   "env.torch": env.get("torch"), "env.torch_threads": env.get("torch_threads"),
                   # the engine (bnlab.stacked_engine), recorded since issue 23: absent before
                   **({"env.engine": env["engine"]} if "engine" in env else {}),
                   **({"env.group_size": env["group_size"]} if "group_size" in env else {}),
                   # the runs it was stacked with, in order (scripts/check_rerun.py trains them again)
                   **({"env.stack": json.dumps(env["stack"])} if env.get("stack") else {})})
    runs = pd.concat([runs.reset_index(drop=True), pd.DataFrame(hw)], axis=1)
    runs["curves"] = curves
    runs["run"] = [relative(p, root) for p in runs["path"]]
    return derive(runs)


def relative(path: str, root: Path | None = None) -> str:
    """A run's folder as the repository (or, outside it, the store root) sees it: never a
    path of the machine that made it."""
    p = Path(path).resolve()
    for base in (REPO_ROOT, root.resolve().parent if root is not None else None):
        if base is None:
            continue
        try:
            return str(p.relative_to(base))
        except ValueError:
            continue
    return p.name


def curves_path(csv: Path) -> Path:
    """Where a study CSV's curves are: beside it, runs.csv -> runs.curves.jsonl.gz."""
    return csv.with_name(f"{csv.stem}.curves.jsonl.gz")


def write_csv(runs: pd.DataFrame, path: Path) -> None:
    """The study's aggregate CSV: one row per run, scalars only, and no column that holds a
    path of this machine; the curves (most of the bytes) go beside it, compressed, one line
    per run keyed by `run` (runs.curves.jsonl.gz, byte-for-byte the same for the same runs)."""
    import gzip

    def absolute_path(col) -> bool:  # a safety net for fields added later
        return runs[col].map(lambda v: isinstance(v, str) and (v.startswith("/") or v[1:3] == ":\\")).any()

    keep = [c for c in runs.columns if c != "curves" and not c.startswith(MACHINE_COLUMNS + STUDY_TEXT_COLUMNS)
            and not absolute_path(c)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    runs[keep].to_csv(tmp, index=False)
    lines = "".join(json.dumps({"run": r, "curves": c}, separators=(",", ":")) + "\n"
                    for r, c in zip(runs["run"], runs["curves"]))
    curves = curves_path(path)
    curves_tmp = curves.with_name(curves.name + ".tmp")
    with open(curves_tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(lines.encode())
    tmp.replace(path)
    curves_tmp.replace(curves)


def frame_from_csv(path: str | Path) -> pd.DataFrame:
    """A study frame from its CSV and the curves beside it (or, in CSVs written before the
    curves moved out, from its `curves` column)."""
    import gzip

    path = Path(path)
    runs = pd.read_csv(path, low_memory=False).copy()  # copy(): one block per dtype, not per column
    if "curves" in runs:
        runs["curves"] = [json.loads(c) if isinstance(c, str) else {} for c in runs["curves"]]
    else:
        beside = curves_path(path)
        by_run = {}
        if beside.exists():
            with gzip.open(beside, "rt") as f:
                by_run = {d["run"]: d["curves"] for d in map(json.loads, f)}
        runs["curves"] = [by_run.get(r, {}) for r in runs["run"]]
    runs["path"] = runs["run"]
    return derive(runs)


def swept_columns(runs: pd.DataFrame) -> list[str]:
    """`cfg.*` columns that take more than one value across the runs, leaving out keys that
    say where or how a run was made rather than what it computed (NON_SCIENTIFIC_KEYS)."""
    skip = tuple(f"cfg.{k}" for k in NON_SCIENTIFIC_KEYS)
    # a damaged run has no config to compare: every key would look swept
    readable = runs[runs["status"] != "damaged"] if "status" in runs else runs
    return [c for c in readable.columns
            if c.startswith("cfg.") and not c.startswith(skip) and readable[c].map(repr).nunique() > 1]


def wall_clock_hours(runs: pd.DataFrame) -> float:
    """The hours during which at least one of the runs was running: the union of their
    start-to-finish intervals (a study made over two sessions does not count the gap)."""
    if "started_at" not in runs or "finished_at" not in runs:
        return 0.0
    start = pd.to_datetime(runs["started_at"], errors="coerce", utc=True)
    end = pd.to_datetime(runs["finished_at"], errors="coerce", utc=True)
    spans = sorted((a, b) for a, b in zip(start, end) if pd.notna(a) and pd.notna(b) and b >= a)
    total, current = 0.0, None
    for a, b in spans:
        if current is None or a > current[1]:
            if current is not None:
                total += (current[1] - current[0]).total_seconds()
            current = [a, b]
        else:
            current[1] = max(current[1], b)
    if current is not None:
        total += (current[1] - current[0]).total_seconds()
    return total / 3600


def run_seconds(runs: pd.DataFrame) -> pd.Series:
    """Each run's wall time, a stacked run's as its share of its stack's (the stack's K runs
    share one process for the stack's wall time; `train_time_s` is a share already)."""
    wall = runs["wall_time_s"].astype(float)
    if "env.group_size" in runs:
        wall = wall / pd.to_numeric(runs["env.group_size"], errors="coerce").fillna(1).clip(lower=1)
    return wall


def budget(runs: pd.DataFrame, arm_col: str = "cfg.model.norm", timing: pd.DataFrame | None = None) -> dict:
    """What produced a study's numbers: outcomes, steps, seeds, data, hardware. The cost of a
    step per arm is averaged over `timing` (default: every finished run)."""
    fin = runs[runs["status"].isin(FINISHED)]
    timed = fin if timing is None or timing.empty else timing[timing["status"].isin(FINISHED)]

    def uniq(col):
        return sorted({str(v) for v in runs[col].dropna()}) if col in runs else []
    return {
        "runs": len(runs), "finished": len(fin), **outcome_counts(runs),
        "seeds": int(runs["cfg.seed"].nunique()) if "cfg.seed" in runs else 0,
        "max_steps": uniq("cfg.trainer.max_steps"), "batch_size": uniq("cfg.optim.batch_size"),
        "dataset": uniq("cfg.data.name"), "train_subset": uniq("cfg.data.train_subset"),
        # runs whose data did not match the canonical checksums (the JPEG-rebuilt CIFAR-10 copy)
        "unverified": int((runs["data.verified"].map(str) == "False").sum()) if "data.verified" in runs else 0,
        "device": uniq("env.device_name") or uniq("env.device"), "threads": uniq("env.torch_threads"),
        "torch": uniq("env.torch"),
        # the days the runs finished on (UTC)
        "made": sorted({str(v)[:10] for v in runs["finished_at"].dropna()}) if "finished_at" in runs else [],
        # the training-code versions the finished runs were made with (bnlab.environment)
        "code_versions": {str(k): int(n) for k, n in fin["code_version"].value_counts().items()}
        if "code_version" in fin else {},
        "paired": bool(len(runs)) and "paired" in runs and bool(runs["paired"].notna().all()),
        "step_time_ms": {str(a): float(g["step_time_ms"].astype(float).mean())
                         for a, g in timed.groupby(arm_col)} if "step_time_ms" in timed and arm_col in timed else {},
        "timed_runs": len(timed),
        "train_hours": float(runs["train_time_s"].astype(float).sum() / 3600) if "train_time_s" in runs else 0.0,
        "run_hours": float(run_seconds(runs).sum() / 3600) if "wall_time_s" in runs else 0.0,
        # from the runs' own start and finish times: how long the study took, and how many of
        # its runs ran at a time on average (run time over wall clock)
        "wall_hours": wall_clock_hours(runs),
    }
