"""A study file -> a checked study spec: `StudySpec` (arms, tuned keys, seeds, budget profile)
with its `Comparison` records and `Claim` records (bnlab.analysis.records), checked once at load
(a ConfigError names the key: an unknown claim key included).

Hands downstream: `load_spec(name)`, `adhoc_spec(runs)` for a folder with no study file,
`spec_for_runs`, `list_studies`, `CLAIMS` (the claims a study may test, with the report's titles).

Arms and comparisons. A study has any number of arms (values of the arm key); each claim is
judged on one or more *comparisons*, a baseline arm against a treatment arm:
- `superiority` (the default): the treatment beats the baseline in the claim's direction by at
  least `min_effect` (none -> batch: "BN helps");
- `equivalence`: the two arms differ by less than a margin stated in advance (batch ->
  noisy_batch: "noisy BN trains about as well as BN", Santurkar et al.): supported when the 95%
  interval of the difference lies inside +-margin (bnlab.analysis.stats.equivalence).
The study's `analysis.comparisons` list applies to every claim; a claim may list its own. A
study with one comparison may still name it with `baseline:`/`treatment:`. Every comparison of
every claim is one verdict, decided within its family (`family:` on the claim or the
comparison: FAMILIES; unmarked is exploratory, with no verdict word; `study` is a family of the
study's own).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bnlab.analysis.frames import swept_columns
from bnlab.analysis.records import Claim, as_claim
from bnlab.errors import ConfigError
from bnlab.resolvers import EXPERIMENTS_DIR
from bnlab.study_file import read_study_file

TESTS = ("superiority", "equivalence", "non_inferiority")
# the pre-registered families of hypotheses (DESIGN.md, "Pre-registered hypotheses"): each is
# decided on its own (Holm within it); exploratory rows get no verdict word. `study`: a family of
# the study's own (a researcher's ad-hoc study, decided within itself so that adding it never
# changes a shipped verdict)
FAMILIES = ("primary", "mechanism", "cost", "descriptive", "exploratory", "study")
# the claims with one primary hypothesis per dataset, and the datasets
PRIMARY_CLAIMS = ("ics", "speed", "accuracy", "lr", "dropout", "init")
DATASETS = {"mnist": "MNIST", "cifar10": "CIFAR-10"}


@dataclass(frozen=True)
class Comparison:
    """One question a claim asks of two arms: does `treatment` beat `baseline` (superiority),
    or do they differ by less than `margin` (equivalence; the margin is on the claim's metric,
    taken from the claim's `equivalence_margin` when the comparison names none)."""
    baseline: str
    treatment: str
    test: str = "superiority"
    margin: float | None = None
    family: str | None = None  # None: the claim's family

    @property
    def id(self) -> str:
        return f"{self.treatment}_vs_{self.baseline}"


@dataclass
class StudySpec:
    """A study's analysis. `arms` are every arm in the study, the baseline first; `baseline`
    and `treatment` are the two arms of the comparison at hand (`for_comparison`)."""
    name: str
    description: str
    claims: list[Claim]
    arm_key: str = "model.norm"
    baseline: str = "none"
    treatment: str = "batch"
    tune: list[str] = field(default_factory=list)
    select_on: str = "best/val/acc"
    max_steps: int | None = None
    confirm_seeds: list[int] = field(default_factory=list)
    adhoc: bool = False  # made up from a folder of runs, not read from experiments/
    comparisons: list[Comparison] = field(default_factory=list)
    arms: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # study-specific figures (ioffe_fig1)
    profile: str | None = None  # the budget profile read (profiles.<profile> in the study file)
    sweeps: list[list[str]] = field(default_factory=list)  # extra grids (override lists) of phase 1
    seeds: list[int] = field(default_factory=list)  # the profile's grid seeds, when it names them
    # the profile's smaller grid, when it names one (quick: fewer learning rates), as overrides
    grid: list[str] = field(default_factory=list)
    dataset: str = "mnist"  # the data config the study trains on (defaults: override /data)
    # arms of other studies read beside this study's, at their own tuned settings (bnlab.analysis.beside):
    # [{"study": "mnist_mlp", "arm": "none", "label": "none (input only)"}]
    beside: list[dict] = field(default_factory=list)

    def __post_init__(self):
        # every claim a Claim record (bnlab.analysis.records): its defaults written once, there
        self.claims = [as_claim(c, f"analysis.claims[{i}]") for i, c in enumerate(self.claims)]
        if not self.comparisons:
            self.comparisons = [Comparison(self.baseline, self.treatment)]
        if not self.arms:
            seen = [a for c in self.comparisons for a in (c.baseline, c.treatment)]
            seen += [a for c in self.claims for cc in c.get("comparisons") or [] for a in
                     (str(cc.get("baseline")), str(cc.get("treatment")))]
            self.arms = list(dict.fromkeys(seen))

    @property
    def arm_col(self) -> str:
        return f"cfg.{self.arm_key}"

    @property
    def pair(self) -> tuple[str, str]:
        """The comparison at hand: (baseline, treatment)."""
        return (self.baseline, self.treatment)

    def for_comparison(self, comparison: Comparison) -> "StudySpec":
        return replace(self, baseline=comparison.baseline, treatment=comparison.treatment)

    def claim_comparisons(self, claim: dict) -> list[Comparison]:
        """The comparisons a claim is judged on: its own list, else the study's (an
        equivalence taking the claim's `equivalence_margin` when it names no margin)."""
        cid = claim.name
        own = claim.get("comparisons")
        if own:
            return [_comparison(c, f"analysis.claims[{cid}].comparisons[{i}]", claim) for i, c in enumerate(own)]
        out = []
        for c in self.comparisons:
            margin = c.margin if c.margin is not None else claim.get("equivalence_margin")
            if c.test == "equivalence":
                _check_margin(margin, f"analysis.claims[{cid}].equivalence_margin", c)
            out.append(replace(c, margin=float(margin) if c.test == "equivalence" else None))
        return out

    def family_of(self, claim: dict, comparison: Comparison) -> str:
        """The pre-registered family a verdict belongs to: its comparison's, else its claim's,
        else exploratory (DESIGN.md: "everything else"). `study` names this study's own family."""
        family = comparison.family or claim.get("family") or "exploratory"
        return f"study:{self.name}" if family == "study" else family


def list_studies(experiments_dir: Path = EXPERIMENTS_DIR) -> list[str]:
    return sorted(p.stem for p in experiments_dir.glob("*.yaml"))


def _check_margin(margin, key: str, comparison) -> None:
    if not (isinstance(margin, (int, float)) and not isinstance(margin, bool) and margin > 0):
        raise ConfigError(key, f"got {margin!r}; the equivalence of {comparison.treatment} and "
                               f"{comparison.baseline} needs a margin > 0 on the claim's metric (margin: on "
                               f"the comparison or equivalence_margin: on the claim)")


def _comparison(raw, key: str, claim: dict | None = None) -> Comparison:
    """A comparison from a study file, checked: both arms named, a known test; within a claim,
    an equivalence must have a positive margin (its own `margin`, else the claim's
    `equivalence_margin`)."""
    if not isinstance(raw, dict) or "baseline" not in raw or "treatment" not in raw:
        raise ConfigError(key, f"got {raw!r}; each comparison needs baseline: and treatment: "
                               f"(and optionally test: {'|'.join(TESTS)}, margin:)")
    test = raw.get("test", "superiority")
    if test not in TESTS:
        raise ConfigError(f"{key}.test", f"got {test!r}; allowed: {', '.join(TESTS)}")
    family = raw.get("family")
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"{key}.family", f"got {family!r}; allowed: {', '.join(FAMILIES)}")
    comparison = Comparison(str(raw["baseline"]), str(raw["treatment"]), test, family=family)
    if test != "equivalence":
        return comparison
    margin = raw.get("margin", (claim or {}).get("equivalence_margin"))
    if margin is not None or claim is not None:
        _check_margin(margin, f"{key}.margin", comparison)
    return replace(comparison, margin=None if margin is None else float(margin))


def _override_value(v) -> str:
    """A study file's value as a command-line override: null, lists joined by commas."""
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        return ",".join(_override_value(x) for x in v)
    return str(v)


def profiles_of(raw: dict) -> dict:
    """A study file's budget profiles ({name: settings}); {} for a study with none."""
    return dict(raw.get("profiles") or {})


def chosen_profile(raw: dict, profile: str | None) -> str | None:
    """The profile a study is read under: the one asked for, else the file's default; None
    for a study without profiles. A name the study does not define is a ConfigError."""
    profiles = profiles_of(raw)
    if not profiles:
        return None
    chosen = profile or raw.get("profile")
    if chosen not in profiles:
        raise ConfigError("profile", f"got {chosen!r}; allowed: {', '.join(map(str, profiles))}")
    return str(chosen)


# The claims a study may test (`claim:` in analysis.claims), in the report's order, with its titles
CLAIMS = {
    "ics": "1. BN reduces internal covariate shift",
    "speed": "2. Training is faster (fewer steps), although each step costs more",
    "accuracy": "3. Accuracy is higher",
    "lr": "4. Higher learning rates can be used",
    "dropout": "5. BN regularizes and reduces the need for dropout",
    "init": "6. Robust to poor initialization: BN's worst case over these inits is better",
    # not one of the benefits claimed for BN: Santurkar et al.'s explanation of them
    "smoothness": "7. (Santurkar et al.'s mechanism) BN makes the loss landscape smoother",
    # not benefits either: the seed's own descriptions of what BN does (DESIGN.md, family D)
    "describe": "8. (The seed's descriptions) what BN does to the activations and the training loss",
}


def load_spec(name: str, experiments_dir: Path = EXPERIMENTS_DIR, profile: str | None = None) -> StudySpec:
    """The analysis block of experiments/<name>.yaml, checked (ConfigError names the key),
    under a budget profile when the study has them (profiles.<p>: max_steps, seeds,
    confirm_seeds, a smaller grid and its own extra grids of that budget)."""
    raw = read_study_file(experiments_dir / f"{name}.yaml")
    a = raw.get("analysis") or {}
    chosen = chosen_profile(raw, profile)
    budget = profiles_of(raw).get(chosen, {}) if chosen else {}
    if "comparisons" in a:
        if "baseline" in a or "treatment" in a:
            raise ConfigError("analysis.comparisons", "give either comparisons: or baseline:/treatment:, not both")
        comparisons = [_comparison(c, f"analysis.comparisons[{i}]") for i, c in enumerate(a["comparisons"] or [])]
        if not comparisons:
            raise ConfigError("analysis.comparisons", "got an empty list; name at least one comparison")
    else:
        comparisons = [Comparison(str(a.get("baseline", "none")), str(a.get("treatment", "batch")))]
    arm_key = a.get("arm_key", "model.norm")
    # every arm the study sweeps is drawn, compared or not (baseline first)
    swept = (((raw.get("hydra") or {}).get("sweeper") or {}).get("params") or {}).get(arm_key, "")
    swept = [str(x) for x in swept] if isinstance(swept, list) else [
        x.strip() for x in str(swept).split(",") if x.strip() and not any(ch in x for ch in "()[]")]
    arms = [str(x) for x in a.get("arms", [])] or list(dict.fromkeys(
        [comparisons[0].baseline] + [x for c in comparisons for x in (c.baseline, c.treatment)] + swept))
    spec = StudySpec(name=raw.get("name", name), description=raw.get("description", ""),
                     claims=a.get("claims", []), arm_key=arm_key,
                     baseline=comparisons[0].baseline, treatment=comparisons[0].treatment,
                     tune=list(a.get("tune", [])), select_on=a.get("select_on", "best/val/acc"),
                     max_steps=budget.get("max_steps", (raw.get("trainer") or {}).get("max_steps")),
                     confirm_seeds=[int(s) for s in budget.get("confirm_seeds", a.get("confirm_seeds", []))],
                     comparisons=comparisons, arms=arms, figures=[str(f) for f in a.get("figures", [])],
                     profile=chosen, seeds=[int(x) for x in budget.get("seeds", [])],
                     grid=[f"{k}={_override_value(v)}" for k, v in (budget.get("grid") or {}).items()],
                     # a profile may name its own extra grids (quick: fewer), replacing the study's
                     sweeps=[[f"{k}={_override_value(v)}" for k, v in extra.items()]
                             for extra in (budget["sweeps"] if "sweeps" in budget else raw.get("sweeps")) or []],
                     dataset=_data_of(raw), beside=_beside(a.get("beside")))
    for claim in spec.claims:  # every comparison of every claim checked now, before any analysis
        cid = claim.name
        if claim.get("claim") not in CLAIMS:
            raise ConfigError(f"analysis.claims[{cid}].claim",
                              f"got {claim.get('claim')!r}; allowed: {', '.join(CLAIMS)}")
        if claim.get("family") is not None and claim["family"] not in FAMILIES:
            raise ConfigError(f"analysis.claims[{cid}].family",
                              f"got {claim['family']!r}; allowed: {', '.join(FAMILIES)}")
        spec.claim_comparisons(claim)
        _check_gain(claim, spec)
    check_primaries([spec])
    return spec


def _beside(raw) -> list[dict]:
    """`analysis.beside`: arms of other studies to read beside this one's, checked."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("analysis.beside", f"got {raw!r}; give a list of {{study: <name>, arm: <arm>, label: <words>}}")
    out = []
    for i, b in enumerate(raw):
        if not isinstance(b, dict) or not b.get("study") or b.get("arm") is None:
            raise ConfigError(f"analysis.beside[{i}]", f"got {b!r}; give {{study: <name>, arm: <arm>, label: <words>}}")
        if b["study"] not in list_studies():
            raise ConfigError(f"analysis.beside[{i}].study",
                              f"got {b['study']!r}; allowed: the studies in experiments/ ({', '.join(list_studies())})")
        out.append({"study": str(b["study"]), "arm": str(b["arm"]), "label": str(b.get("label") or b["arm"])})
    return out


def _data_of(raw: dict) -> str:
    """The data config a study file selects (`- override /data: cifar10`), else the default."""
    for entry in raw.get("defaults") or []:
        if isinstance(entry, dict):
            for k, v in entry.items():
                if str(k).replace("override ", "").strip() == "/data":
                    return str(v)
    return "mnist"


def primaries(spec: StudySpec) -> list[tuple[str, str, str]]:
    """(claim, dataset, verdict id) of each primary hypothesis a study tests."""
    out = []
    for claim in spec.claims:
        comparisons = spec.claim_comparisons(claim)
        for comp in comparisons:
            if spec.family_of(claim, comp) == "primary":
                own = claim.name
                out.append((claim["claim"], spec.dataset, own if len(comparisons) == 1 else f"{own}_{comp.id}"))
    return out


def check_primaries(specs: list[StudySpec], complete: bool = False) -> None:
    """One primary hypothesis per claim and dataset (DESIGN.md): two is a ConfigError naming
    both; with `complete` (every study loaded), a missing one too."""
    seen: dict[tuple[str, str], str] = {}
    for spec in specs:
        for claim, data, vid in primaries(spec):
            if claim not in PRIMARY_CLAIMS:
                raise ConfigError(f"{spec.name}: analysis.claims[{vid}].family",
                                  f"claim {claim!r} has no primary hypothesis; primary is for: "
                                  f"{', '.join(PRIMARY_CLAIMS)}")
            where = f"{spec.name}:{vid}"
            if (claim, data) in seen:
                raise ConfigError(f"{spec.name}: analysis.claims[{vid}].family",
                                  f"two primary hypotheses for claim {claim!r} on {DATASETS.get(data, data)}: "
                                  f"{seen[(claim, data)]} and {where}; one per claim and dataset")
            seen[(claim, data)] = where
    if complete:
        missing = [f"{c} on {DATASETS[d]}" for d in DATASETS for c in PRIMARY_CLAIMS if (c, d) not in seen]
        if missing:
            raise ConfigError("analysis.claims[].family", f"no primary hypothesis for {', '.join(missing)}; "
                                                          f"mark one claim per claim and dataset family: primary")


def _check_gain(claim: dict, spec: StudySpec) -> None:
    """A gain claim names a tuned key `over` and its `reference` value; `reference_where`
    (a mapping of config keys) belongs to gain claims only."""
    cid = claim.name
    if claim.get("kind") != "gain":
        if "reference_where" in claim:
            raise ConfigError(f"analysis.claims[{cid}].reference_where", "only a kind: gain claim has a reference")
        return
    if claim.get("over") not in spec.tune:
        raise ConfigError(f"analysis.claims[{cid}].over", f"got {claim.get('over')!r}; must be one of the "
                                                          f"study's tuned keys (analysis.tune: {spec.tune})")
    if not is_num(claim.get("reference")):
        raise ConfigError(f"analysis.claims[{cid}].reference", f"got {claim.get('reference')!r}; must be a number "
                                                               f"(the value of {claim['over']} the gain is measured from)")
    for key in ("where", "reference_where"):
        if claim.get(key) is not None and not isinstance(claim[key], dict):
            raise ConfigError(f"analysis.claims[{cid}].{key}", f"got {claim[key]!r}; must be a mapping "
                                                               f"of config keys to values")


def adhoc_spec(runs: pd.DataFrame, name: str) -> StudySpec:
    """A spec for runs launched ad hoc (no study file): the arm key is `model.norm` when it
    was swept, else the first swept key; the other swept keys (seed aside) are tuned per
    arm. No claims: figures and tables only."""
    swept = [c.removeprefix("cfg.") for c in swept_columns(runs) if c != "cfg.seed"]
    arm_key = "model.norm" if "model.norm" in swept or not swept else swept[0]
    col = f"cfg.{arm_key}"
    values = sorted({str(v) for v in runs[col].dropna()}, key=lambda v: (v != "none", v)) if col in runs else []
    baseline = values[0] if values else "none"
    treatment = values[1] if len(values) > 1 else baseline
    comparisons = [Comparison(baseline, v) for v in values[1:]] or [Comparison(baseline, treatment)]
    return StudySpec(name=name, description=f"runs under {name}, launched ad hoc", claims=[],
                     arm_key=arm_key, baseline=baseline, treatment=treatment, comparisons=comparisons,
                     arms=values or [baseline],
                     tune=[k for k in swept if k != arm_key], adhoc=True,
                     max_steps=int(runs["cfg.trainer.max_steps"].max()) if "cfg.trainer.max_steps" in runs else None)


def spec_for_runs(runs: pd.DataFrame, fallback_name: str) -> StudySpec:
    """The spec of the study a folder of runs belongs to (their most common `name`, when
    experiments/ has that study), else one made up from what the runs swept."""
    names = runs["cfg.name"].dropna().astype(str) if "cfg.name" in runs else pd.Series(dtype=str)
    name = names.mode().iloc[0] if len(names) else fallback_name
    return load_spec(name) if name in list_studies() else adhoc_spec(runs, name)


def is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
