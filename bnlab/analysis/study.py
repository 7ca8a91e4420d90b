"""The one per-study pipeline behind `bnlab-plot` and `bnlab-report`:

    load (run store, else the committed CSV) -> frame -> verdicts -> Holm over the family

(the figures are drawn from what it hands over: bnlab.views.figures.draw)

so that a figure and the verdict printed beside it always come from the same numbers.

A target is a study name (experiments/<name>.yaml: its runs under results/runs/<name>/,
figures and CSV under results/<name>/), or a folder of runs: a study's sweep folder, or
runs launched ad hoc with no study file (figures and CSV then go to <folder>/figures/, so a
partial folder never overwrites a study's committed CSV).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from bnlab.analysis.beside import arms_beside
from bnlab.analysis.selection import confirmation_runs
from bnlab.analysis.spec import StudySpec, check_primaries, is_num, list_studies, load_spec, spec_for_runs
from bnlab.analysis.records import Study
from bnlab.analysis.verdicts import (ics_with_accuracy, normalization_check, range_over_settings, settings_reading,
                                     study_verdicts)
from bnlab.analysis.frames import budget, frame_from_csv, frame_from_store, relative, write_csv
from bnlab.errors import ConfigError
from bnlab.resolvers import REPO_ROOT
from bnlab.study_file import read_study_file
from bnlab.analysis.stats import apply_holm

RESULTS = REPO_ROOT / "results"


def current_runs(runs: pd.DataFrame, name: str, profile: str | None = None) -> tuple[pd.DataFrame, dict]:
    """The runs that belong to the study as experiments/<name>.yaml defines it *now*.

    A study folder keeps every run ever made for it, including runs of an earlier
    definition (say, a different step budget) or quick checks launched with extra
    overrides. Mixing them would average different experiments, so runs whose config
    differs from the current study on any key the study does not sweep are left out
    (and counted). Confirmation runs differ only on swept keys (arm, tuned keys, seed)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from bnlab.resolvers import CONF_DIR
    from bnlab.store import NEUTRAL_DEFAULTS, NON_SCIENTIFIC_KEYS

    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="analysis"):
        cfg = compose("config", overrides=[f"experiments={name}", *([f"profile={profile}"] if profile else [])],
                      return_hydra_config=True)
    # swept: the grid's keys and those of the study's extra sweeps; a swept config group
    # (model=mlp,deep_mlp; init=xavier,...) sweeps every key under it
    swept = {f"cfg.{k}" for k in (OmegaConf.select(cfg, "hydra.sweeper.params") or {})}
    swept |= {f"cfg.{k}" for extra in (OmegaConf.select(cfg, "sweeps") or []) for k in extra}
    with open_dict(cfg):
        del cfg["hydra"]
    current = pd.json_normalize(OmegaConf.to_container(cfg, resolve=True), sep=".").iloc[0]
    current.index = [f"cfg.{k}" for k in current.index]
    skip = tuple(f"cfg.{k}" for k in NON_SCIENTIFIC_KEYS)
    keys = [k for k in current.index if not any(k == s or k.startswith(s + ".") for s in swept)
            and not k.startswith(skip)]
    stale = pd.Series(False, index=runs.index)
    differing: dict = {}
    for k in keys:
        want = current[k]
        neutral = NEUTRAL_DEFAULTS.get(k.removeprefix("cfg."), _MISSING)
        if k in runs:
            have = runs[k]
            if neutral is not _MISSING:  # runs made before the key existed hold it at its neutral value
                have = have.map(lambda v: neutral if _missing(v) else v)
        elif neutral is not _MISSING:
            have = pd.Series([neutral] * len(runs), index=runs.index)
        else:
            continue
        diff = have.map(lambda v: not _same(v, want))
        if diff.any():
            differing[k.removeprefix("cfg.")] = sorted({repr(v) for v in have[diff]})[:3]
        stale |= diff
    if "status" in runs:  # a damaged run stays in, to be counted as damaged
        stale &= runs["status"] != "damaged"
    return runs[~stale].reset_index(drop=True), {"stale": int(stale.sum()), "differing": differing}


_MISSING = object()


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _same(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if is_num(a) and is_num(b):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if hasattr(a, "tolist"):
        a = a.tolist()
    return a == b or str(a) == str(b)


def profile_results(results_dir: Path, profile: str | None) -> Path:
    """Where a command run under `--profile P` reads and writes: results/<P>/ (git-ignored, where
    `scripts/suite.sh --profile P` puts its runs) when the results folder is the committed one, so
    that no profile's report or figures ever land over the committed results/; any other folder
    given with --results as it is."""
    if profile and Path(results_dir).resolve() == RESULTS.resolve():
        return Path(results_dir) / profile
    return Path(results_dir)


def _shown(path: Path) -> str:
    """A folder as the line that names a source shows it: from the current directory when under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


def _left_out_text(left_out: dict) -> str:
    differing = "; ".join(f"{k}: {', '.join(v)}" for k, v in left_out["differing"].items())
    return f"from an earlier definition of the study or launched with extra overrides (differing in {differing})"


def load_study(target: str, results_dir: Path = RESULTS, runs_root: Path | None = None,
               profile: str | None = None) -> Study:
    """The one loader of a study's runs, for bnlab-status, bnlab-plot and bnlab-report alike:
    resolve a study name or a folder of runs into a Study record (name, spec, runs, source, out …);
    `ran` is False when there is nothing to analyse. A study name reads its run store's runs of
    the study as defined now (`current_runs`); when the store has none of them, the committed CSV
    (results/<study>/runs.csv). `source_line` says in one line which, with the run count and
    what was left out. A study with budget profiles is read under `profile` (default: the
    study's own). Writes nothing (`save_frame` writes the CSV)."""
    runs_root = runs_root or results_dir / "runs"
    folder = Path(target)
    if "/" not in target and target not in list_studies() and not folder.is_dir() and (runs_root / target).is_dir():
        folder = runs_root / target  # runs launched under a name with no study file (name=adhoc, default)
    left_out = {"stale": 0, "differing": {}}
    store = None
    if "/" not in target and target in list_studies():
        name, spec = target, load_spec(target, profile=profile)
        profile = spec.profile
        store, out = runs_root / target, results_dir / target
        csv = out / "runs.csv"
        stored = frame_from_store(store) if store.is_dir() else pd.DataFrame()
        runs = stored
        if not stored.empty:
            runs, left_out = current_runs(stored, name, profile)
        where = f" (budget profile {profile})" if profile else ""
        dropped = f"; {left_out['stale']} left out, {_left_out_text(left_out)}" if left_out["stale"] else ""
        in_store = (f"the run store {_shown(store)} holds {len(stored)} run(s), none of the study as defined now: "
                    f"all {_left_out_text(left_out)}" if len(stored) else f"no runs in {_shown(store)}")
        if not runs.empty:
            source = f"run store (`{relative(str(store))}`)"
            line = f"{name}: {len(runs)} runs{where} from the run store {_shown(store)}{dropped}"
        elif csv.exists():
            runs, source = frame_from_csv(csv), f"committed CSV (`{relative(str(csv))}`)"
            line = f"{name}: {len(runs)} runs{where} from the committed CSV {_shown(csv)} ({in_store})"
        else:
            line = f"{name}: no runs{where}: {in_store}, and no CSV at {_shown(csv)}"
            return Study(name=name, spec=spec, ran=False, left_out=left_out, out=out, store=store, source_line=line)
    elif folder.is_dir():
        runs = frame_from_store(folder)
        if runs.empty:
            raise FileNotFoundError(f"no runs under {folder}")
        spec = spec_for_runs(runs, folder.name)
        name = spec.name
        if not spec.adhoc:
            runs, left_out = current_runs(runs, name)
        out, store = folder / "figures", folder
        source = f"runs under `{relative(str(folder))}`"
        dropped = f"; {left_out['stale']} left out, {_left_out_text(left_out)}" if left_out["stale"] else ""
        line = f"{name}: {len(runs)} runs from the folder {_shown(folder)}{dropped}"
    else:
        raise FileNotFoundError(f"{target!r} is neither a study in experiments/ ({', '.join(list_studies())}) "
                                f"nor a folder of runs")
    return Study(name=name, spec=spec, ran=not runs.empty, runs=runs, source=source, out=out, left_out=left_out,
                 store=store, source_line=line,
                 # a step's cost from the confirmation runs when there are any: the grid's runs may
                 # have shared the machine with other work
                 budget=budget(runs, spec.arm_col, confirmation_runs(runs, spec)))


def save_frame(study: Study) -> None:
    """The study's CSV (results/<study>/runs.csv, or <folder>/figures/runs.csv), written from the
    runs it was read from when they came from a run store (a CSV read alone is left as it is)."""
    if study["ran"] and not str(study["source"]).startswith("committed CSV"):
        write_csv(study["runs"], Path(study["out"]) / "runs.csv")


def has_profiles(name: str) -> list[str]:
    """The budget profiles experiments/<name>.yaml defines."""
    from bnlab.analysis.spec import profiles_of
    from bnlab.resolvers import EXPERIMENTS_DIR

    return [str(p) for p in profiles_of(read_study_file(EXPERIMENTS_DIR / f"{name}.yaml"))]


def decide(studies: list[dict]) -> None:
    """Verdicts for every study that ran, each decided within its pre-registered family
    (DESIGN.md, "Pre-registered hypotheses"): Holm within the primary, mechanism, cost and
    descriptive families, across all studies; exploratory rows keep their raw p and get no
    verdict word."""
    families: dict[str, list[dict]] = {}
    for s in studies:
        if s["ran"]:
            s["results"] = study_verdicts(s["runs"], s["spec"])
            # the readings the report shows beside the verdicts, computed here (views compute nothing)
            s["ranges"] = {r["id"]: range_over_settings(s["runs"], s["spec"], r) for r in s["results"]}
            s["ics_accuracy"] = ics_with_accuracy(s["runs"], s["spec"], s["results"])
            s["settings"] = settings_reading(s["runs"], s["spec"])
            s["normalization"] = normalization_check(s["runs"], s["spec"], s["results"])
            for r in s["results"]:
                families.setdefault(r["family"], []).append(r)
    by_name = {s["name"]: s for s in studies}
    for s in studies:  # arms read beside another study's (analysis.beside), after every study is read
        s["beside"] = arms_beside(s, by_name)
    for name, family in families.items():
        if name == "exploratory":
            for r in family:
                r.update(verdict="exploratory", reason="exploratory: effect, 95% interval and raw p, no verdict",
                         p_holm=float("nan"), family_size=0)
        else:
            apply_holm(family)


def slices(study: dict) -> dict:
    """Runs of other budgets committed beside a study (`<label>_runs.csv`: santurkar's GPU
    slice), as {label: frame}."""
    if "slices" not in study:  # read once: the figures and the report both use them
        out = Path(study["out"])
        study["slices"] = {f.name.removesuffix("_runs.csv"): frame_from_csv(f) for f in sorted(out.glob("*_runs.csv"))}
    return study["slices"]


def check_results_folder(results: Path) -> None:
    """`--results` names the folder the analysis commands read (its runs/ and each study's
    runs.csv) and write into: one that does not exist holds no runs, and writing a report of
    nothing there would only hide the typo."""
    if not Path(results).is_dir():
        raise ConfigError("--results", f"{results} is not a folder (give an existing results folder, "
                                       f"the one holding runs/ and <study>/runs.csv; default <repo>/results)")


def analyse_all(results_dir: Path = RESULTS, runs_root: Path | None = None, profile: str | None = None) -> list[dict]:
    """Every study in experiments/ that tests a claim, loaded and decided as one family; with
    `profile`, only the studies that define that budget profile, read under it."""
    names = [n for n in list_studies() if profile is None or profile in has_profiles(n)]
    studies = [load_study(n, results_dir, runs_root, profile) for n in names]
    studies = [s for s in studies if s["spec"].claims]  # quickstart is a demo, not evidence
    # one primary per claim and dataset across the studies; all twelve when every study is read
    check_primaries([s["spec"] for s in studies], complete=profile is None)
    decide(studies)
    return studies


__all__ = ["StudySpec", "RESULTS", "load_study", "save_frame", "profile_results", "decide", "analyse_all", "check_results_folder", "current_runs"]
