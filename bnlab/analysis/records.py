"""The analysis wing's records: a study file's `Claim`, a decided `Verdict`, and a loaded
`Study`, each a dataclass whose fields are documented where they are declared and whose
defaults are written once, here.

A record also reads like the dict it replaced (`r["effect"]`, `r.get("hold")`, `{**claim}`),
so that the statistics (bnlab.analysis.stats, which decide plain dicts too: the sensitivity
rows) and the views read one way; `get(key, default)` gives `default` where a field is None
(not given), which is what every "missing" means in these records. A key that is no field is
an error: a study file's unknown claim key is a one-line ConfigError at load.

Hands downstream: `as_claim(mapping, where)` (bnlab.analysis.spec, verdicts); `Verdict`
(bnlab.analysis.verdicts.claim_result); `Study` (bnlab.analysis.study.load_study).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bnlab.errors import ConfigError


class Record:
    """Dict-style reading and updating of a dataclass record (see the module's docstring)."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def __getitem__(self, key: str) -> Any:
        if key not in self.field_names():
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self.field_names():
            raise KeyError(f"{type(self).__name__} has no field {key!r}")
        setattr(self, key, value)

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, None) if key in self.field_names() else None
        return default if value is None else value

    def __contains__(self, key: str) -> bool:
        return key in self.field_names() and getattr(self, key) is not None

    def keys(self):
        return [k for k in self.field_names() if getattr(self, k) is not None]

    def items(self):
        return [(k, getattr(self, k)) for k in self.keys()]

    def __iter__(self):
        return iter(self.keys())

    def update(self, other: dict | None = None, **kw) -> None:
        for key, value in {**(other or {}), **kw}.items():
            self[key] = value


@dataclass
class Claim(Record):
    """One claim of a study file (`analysis.claims[]`), as the analysis reads it."""

    claim: str
    """Which of the claims (bnlab.analysis.spec.CLAIMS) it tests."""
    id: str | None = None
    """Its name in the report and its figure (claim_<id>.png); default: `claim`."""
    kind: str = "compare"
    """How its per-seed values are made (bnlab.analysis.kinds.KINDS)."""
    metric: str | None = None
    """The run-level column it reads (a `best/…`, a probe's, a derived one)."""
    direction: str = "higher"
    """Which way of the metric the claim predicts: higher or lower."""
    min_effect: float = 0.0
    """The smallest effect that matters, fixed in advance (the margin of a non-inferiority)."""
    family: str | None = None
    """Its pre-registered family (spec.FAMILIES); None: exploratory."""
    comparisons: list | None = None
    """Its own comparisons (baseline, treatment, test), else the study's."""
    matched: dict | None = None
    """A setting fixed in advance for both arms ({optim.lr: 0.1}): nothing is chosen."""
    where: dict | None = None
    """The runs it reads, by config value ({model.depth: 3})."""
    arm_where: dict | None = None
    """Per arm, the runs it reads ({batch: {model.dropout: 0}}): the arms differ in that key."""
    over: str | None = None
    """The key a whole-grid or gain kind reads across (optim.lr, init.std, model.dropout)."""
    reference: float | None = None
    """A gain's reference value of `over` (no dropout: 0)."""
    reference_where: dict | None = None
    """A gain's reference runs, from another slice ({model.dropout_placement: …})."""
    threshold: float | None = None
    """A max_usable claim's validation level a usable rate must reach."""
    only_learned: bool = False
    """Read only runs that learned (a measure that means nothing in a net that did not train)."""
    select_on: str | None = None
    """Its own selection metric (fewest steps to a target), else the study's."""
    select_direction: str | None = None
    """Which way its own selection metric is best (lower, higher)."""
    target: Any = None
    """Steps to a validation accuracy: `baseline_best` or a number (bnlab.analysis.measures)."""
    transform: str | None = None
    """`log2`: the metric read on a log2 scale (a ratio)."""
    precondition: str | None = None
    """`baseline_benefits`: the no-BN arm's gain must be measurable, else inconclusive."""
    equivalence_margin: float | None = None
    """The margin of its equivalence comparisons, fixed in advance."""
    literature: str = ""
    """The published finding it is read beside, naming its works (views.citations)."""
    literature_values: dict | None = None
    """The published numbers on its own metric, per arm, with their `source`."""
    url: str = ""
    """The page of the first work `literature` names."""
    note: str = ""
    """How it is measured, in words, for the report."""
    # set as the claim is judged, never in a study file
    test: str = "superiority"
    """The comparison's test (superiority, equivalence, non_inferiority)."""
    margin: float | None = None
    """The comparison's equivalence margin."""
    target_value: float | None = None
    """The target a `target` claim measures steps to, once known."""
    target_from: str | None = None
    """How that target was got, in words."""
    measured: str | None = None
    """The column a transformed metric was made from."""

    @property
    def name(self) -> str:
        """Its id, else its claim."""
        return self.id or self.claim


# the keys a study file may give a claim (the rest are set as it is judged)
CLAIM_KEYS = tuple(k for k in Claim.field_names() if k not in ("test", "margin", "target_value", "target_from",
                                                                 "measured"))


def as_claim(raw, where: str = "analysis.claims[]") -> Claim:
    """A claim record from a study file's mapping (or a record, unchanged); an unknown key is a
    one-line ConfigError naming it and the allowed keys."""
    if isinstance(raw, Claim):
        return raw
    unknown = [k for k in raw if k not in Claim.field_names()]
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", f"not a claim key; allowed: {', '.join(CLAIM_KEYS)}")
    if "claim" not in raw:
        raise ConfigError(f"{where}.claim", "every claim names the claim it tests")
    return Claim(**{k: v for k, v in raw.items()})


def with_(claim: Claim, **changes) -> Claim:
    """The claim with some fields changed (dataclasses.replace)."""
    return replace(claim, **changes)


@dataclass
class Verdict(Record):
    """One claim judged on one comparison: its per-seed values, the test, the verdict within
    its family, and what the report shows beside it."""

    # what was asked
    claim: str = ""
    """Which claim (spec.CLAIMS)."""
    id: str = ""
    """The verdict's name: the claim's id, with the comparison's when it has several."""
    claim_id: str = ""
    """The claim's own id in its study file."""
    kind: str = "compare"
    """The claim's kind (kinds.KINDS)."""
    metric: str | None = None
    """The column its per-seed values read."""
    direction: str = "higher"
    """The claimed direction."""
    baseline: str = ""
    """The comparison's baseline arm."""
    treatment: str = ""
    """The comparison's treatment arm."""
    test_kind: str = "superiority"
    """superiority, equivalence or non_inferiority."""
    comparison: str = ""
    """The comparison in words ("BN vs no BN")."""
    arm_where: dict = field(default_factory=dict)
    """Per arm, the runs it reads where the arms differ in a key."""
    study: str = ""
    """The study it comes from."""
    dataset: str = ""
    """The dataset, as the report names it."""
    family: str = "exploratory"
    """Its pre-registered family (spec.FAMILIES; study:<name> for a study's own)."""
    note: str = ""
    """How it is measured, in words."""
    literature: str = ""
    """The published finding it is read beside."""
    literature_values: dict = field(default_factory=dict)
    """The published numbers on its metric, per arm."""
    url: str = ""
    """The page of the first cited work."""
    # what decided it
    baseline_values: list = field(default_factory=list)
    """The baseline arm's per-seed values, by seed."""
    treatment_values: list = field(default_factory=list)
    """The treatment arm's per-seed values, by seed."""
    baseline_censored: list = field(default_factory=list)
    """Per baseline value: 0, +1 (at least) or −1 (at most)."""
    treatment_censored: list = field(default_factory=list)
    """Per treatment value: 0, +1 or −1."""
    seeds: list = field(default_factory=list)
    """The seeds that decided."""
    decided_by: str = ""
    """Which runs decided, in words (confirmation seeds, grid seeds …)."""
    chosen: dict = field(default_factory=dict)
    """Per arm, the setting its values were read at."""
    chosen_on: list | None = None
    """The tuning seeds that chose it (None: nothing chosen)."""
    edges: dict = field(default_factory=dict)
    """Per arm, the tuned keys whose choice lies at the grid's edge."""
    provisional: str | None = None
    """Why it is shown on the seeds that chose (no confirmation runs yet)."""
    target_value: float | None = None
    """The target of a steps-to-target claim."""
    target_from: str | None = None
    """How that target was got."""
    measured: str | None = None
    """The column a transformed metric was made from."""
    # the test (bnlab.analysis.stats)
    test: str = "none"
    """The test that decided (paired t, Welch t, permutation (ranks) …)."""
    n_baseline: int = 0
    """Seeds in the baseline arm."""
    n_treatment: int = 0
    """Seeds in the treatment arm."""
    baseline_mean: float = np.nan
    """The baseline arm's mean."""
    treatment_mean: float = np.nan
    """The treatment arm's mean."""
    effect: float = np.nan
    """Treatment − baseline, signed so + is the claimed direction (unsigned for an equivalence)."""
    ci_low: float = np.nan
    """The effect's 95% interval, low end."""
    ci_high: float = np.nan
    """The effect's 95% interval, high end."""
    p: float = np.nan
    """The test's p."""
    effect_size: float = np.nan
    """The effect over the per-seed differences' standard deviation (paired)."""
    se: float = np.nan
    """The effect's standard error (t tests)."""
    df: float = np.nan
    """The t test's degrees of freedom."""
    min_effect: float = np.nan
    """The smallest effect that matters."""
    margin: float | None = None
    """An equivalence's margin."""
    ni_margin: float | None = None
    """A non-inferiority's margin."""
    bound: str | None = None
    """≥ or ≤ where censored values make the effect a bound; ? where they bound it both ways."""
    censored: int = 0
    """How many values were censored."""
    # the verdict
    verdict: str = "inconclusive"
    """supported, not supported, inconclusive, exploratory or not comparable."""
    reason: str = ""
    """Why, in words."""
    hold: str | None = None
    """Why the verdict is held at inconclusive whatever its family says."""
    precondition: str | None = None
    """Whether the claim's precondition holds, in words."""
    p_holm: float = np.nan
    """Holm's adjusted p within its family."""
    family_size: int = 0
    """m, the tests with a p in its family."""
    bonferroni_low: float = np.nan
    """The family's Bonferroni interval (level 1 − 0.05/m), low end."""
    bonferroni_high: float = np.nan
    """The family's Bonferroni interval, high end."""
    # beside it
    sensitivity: list = field(default_factory=list)
    """The claim judged at each setting its kind names (rows: plain dicts)."""
    sensitivity_summary: str = ""
    """Where it holds, reverses, is inconclusive, in words."""
    ratio: dict | None = None
    """The verdict as a ratio, where the claim is one (measures.ratio_of)."""
    baseline_natural: float = np.nan
    """The baseline mean in the claim's own unit."""
    treatment_natural: float = np.nan
    """The treatment mean in the claim's own unit."""


def as_verdict(result: dict) -> Verdict:
    """A verdict record from the decided fields (bnlab.analysis.verdicts.claim_result)."""
    return Verdict(**result)


@dataclass
class Study(Record):
    """A study as loaded and decided (bnlab.analysis.study)."""

    name: str
    """Its study file's name (experiments/<name>.yaml), or an ad-hoc folder's."""
    spec: Any
    """Its checked StudySpec (bnlab.analysis.spec)."""
    ran: bool = False
    """Whether it has any current runs."""
    out: Path | None = None
    """The folder of its CSV, figures and page."""
    left_out: dict = field(default_factory=lambda: {"stale": 0, "differing": {}})
    """Runs left out (another definition of the study, or extra overrides) and the keys they differ in."""
    runs: pd.DataFrame | None = None
    """Its current runs, one row each."""
    source: str | None = None
    """Where the runs were read from (the run store, or the committed CSV), in words."""
    source_line: str = ""
    """The one line every command prints: the source, the run count and what was left out."""
    store: Path | None = None
    """Its run-store folder (which may not exist)."""
    budget: dict = field(default_factory=dict)
    """What produced its numbers (bnlab.analysis.frames.budget)."""
    results: list = field(default_factory=list)
    """Its verdicts, decided within their families."""
    ranges: dict = field(default_factory=dict)
    """Per verdict id, each arm's range over the grid (verdicts.range_over_settings)."""
    ics_accuracy: list = field(default_factory=list)
    """Whether ICS goes with the accuracy benefit (verdicts.ics_with_accuracy)."""
    settings: pd.DataFrame | None = None
    """The validation metric per arm and setting (verdicts.settings_reading)."""
    normalization: list = field(default_factory=list)
    """Zero mean and unit variance of the normalized value, checked (verdicts.normalization_check)."""
    beside: list = field(default_factory=list)
    """Its arms beside the arms it borrows from other studies (bnlab.analysis.beside)."""
    figures: list = field(default_factory=list)
    """The figures drawn for it."""
    slices: dict | None = None
    """Runs of other budgets committed beside it, by label."""
