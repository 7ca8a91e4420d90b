"""bnlab-study: run a study's two phases, tune then confirm, as one resumable command.

    bnlab-study mnist_mlp                       # both phases
    bnlab-study mnist_mlp tracking.mode=disabled hydra.launcher.n_jobs=2   # overrides for both
    bnlab-study mnist_mlp --dry-run             # print the commands, train nothing

Phase 1 (tune): `bnlab-train experiments=<study>`: the study's grid on its tuning seeds.
Phase 2 (confirm): for each arm, the setting chosen on validation data from the tuning runs
(bnlab.analysis.selection.best_settings; for a `gain` claim the chosen value and its reference) runs on
the study's `analysis.confirm_seeds`. A study whose claims choose nothing (whole-grid
measures, pre-specified settings) has no phase 2. Both phases are ordinary sweeps, so a
relaunch trains only what is missing; the confirmation settings are recomputed each time
from the tuning runs on disk.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time

import numpy as np
from pathlib import Path

from bnlab.analysis.kinds import needs_confirmation
from bnlab.analysis.selection import best_settings, gain_choice, where
from bnlab.analysis.spec import StudySpec, list_studies, load_spec
from bnlab.errors import ConfigError
from bnlab.analysis.frames import frame_from_store


def _value(v) -> str:
    """A value as an override, floats kept floats ("2.0", not "2") so that the confirmation
    runs' configs hold the same types as the tuning runs'."""
    return str(float(v)) if isinstance(v, (float, np.floating)) else str(v)


def _merge(sweeps: list[dict]) -> list[dict]:
    """Fewest sweeps ({key: set of values}) whose grids hold exactly the wanted settings: two
    sweeps merge when they have the same keys and differ in at most one, so merging adds no
    setting nobody asked for (lr 1.0 at dropout 0.2 and lr 2.0 at dropout 0: two sweeps)."""
    merged = True
    while merged:
        merged = False
        for i, a in enumerate(sweeps):
            for j in range(i + 1, len(sweeps)):
                b = sweeps[j]
                if a.keys() == b.keys() and sum(a[k] != b[k] for k in a) <= 1:
                    sweeps[i] = {k: a[k] | b[k] for k in a}
                    del sweeps[j]
                    merged = True
                    break
            if merged:
                break
    return sweeps


def confirmation_jobs(runs, spec: StudySpec) -> list[list[str]]:
    """The override lists of phase 2: per arm, every setting a claim chose (the claim's
    `where` keys included), as few sweeps as hold exactly those settings."""
    needing = [c for c in spec.claims if needs_confirmation(spec, c)]
    if not needing or not spec.confirm_seeds:
        return []
    best = best_settings(runs, spec)
    seeds = ",".join(str(s) for s in spec.confirm_seeds)
    wanted: dict[str, list[dict]] = {arm: [] for arm in spec.arms}

    def want(arm: str, setting: dict, fixed: dict | None) -> None:
        keyed = dict(fixed or {})
        keyed.update({col.removeprefix("cfg."): v for col, v in setting.items()})
        sweep = {k: {_value(v)} for k, v in sorted(keyed.items())}
        if sweep not in wanted.setdefault(arm, []):
            wanted[arm].append(sweep)

    for claim in needing:
        if claim.kind == "gain":  # the chosen setting and its reference, each tuned per cell
            for arm, c in gain_choice(runs, spec, claim).items():
                want(arm, c["chosen"], claim.get("where"))
                want(arm, c["reference"], claim.reference_where or claim.where)
        else:  # the claim's own choice (its select_on), else the study's, among the runs it is about
            for arm, setting in best_settings(where(runs, claim), spec, claim).items():
                want(arm, setting, claim.get("where"))
    jobs = []
    for arm in spec.arms:
        if arm not in best:
            raise SystemExit(f"bnlab-study: error: no finished tuning runs for {spec.arm_key}={arm} in "
                             f"study {spec.name!r}; phase 1 must finish first")
        for sweep in _merge(wanted[arm]):
            jobs.append([f"{spec.arm_key}={arm}"] + [f"{k}={','.join(sorted(v))}" for k, v in sweep.items()]
                        + [f"seed={seeds}"])
    return jobs


def _train(study: str, overrides: list[str], dry_run: bool) -> None:
    cmd = [sys.executable, "-m", "bnlab.train", f"experiments={study}", *overrides]
    print("$ bnlab-train " + " ".join(shlex.quote(a) for a in cmd[3:]), flush=True)
    if not dry_run:
        rc = subprocess.call(cmd)
        if rc != 0:
            raise SystemExit(rc)


def _runs_root(overrides: list[str]) -> Path:
    """Where phase 1 wrote its runs: the composed `paths.runs` of the study."""
    from hydra import compose, initialize_config_dir

    from bnlab.resolvers import CONF_DIR

    plain = [o for o in overrides if o.split("=", 1)[0].startswith("paths.")]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="study"):
        return Path(compose("config", overrides=plain).paths.runs)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="bnlab-study", description=__doc__.split("\n")[0])
    ap.add_argument("study", help=f"a study in experiments/ ({', '.join(list_studies())})")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides passed to both phases")
    ap.add_argument("--dry-run", action="store_true", help="print the commands of both phases, train nothing")
    args = ap.parse_intermixed_args(argv)
    if args.study not in list_studies():
        sys.exit(f"bnlab-study: error: study: got {args.study!r}; allowed: {', '.join(list_studies())}")
    profile = next((o.split("=", 1)[1] for o in reversed(args.overrides) if o.startswith("profile=")), None)
    try:
        spec = load_spec(args.study, profile=profile)
    except ConfigError as exc:  # a bad profile, analysis block or study file: bad input, exit 2
        print(f"bnlab-study: error: {exc}", file=sys.stderr)
        sys.exit(2)
    t0 = time.perf_counter()
    # a budget profile may name its own seeds and a smaller grid (a quick look: fewer of each)
    seeds = [f"seed={','.join(map(str, spec.seeds))}"] if spec.seeds else []
    print(f"bnlab-study {args.study}: phase 1 (tune) on the grid's seeds"
          + (f" (profile {spec.profile})" if spec.profile else ""), flush=True)
    _train(args.study, [*args.overrides, *spec.grid, *seeds], args.dry_run)
    for extra in spec.sweeps:  # the study's extra grids (say, named init schemes beside the scales)
        own = {o.split("=", 1)[0] for o in extra}  # a key the extra grid sets itself keeps its values
        grid = [o for o in spec.grid if o.split("=", 1)[0] not in own]
        _train(args.study, [*args.overrides, *grid, *seeds, *extra], args.dry_run)
    store = _runs_root(args.overrides) / spec.name
    if args.dry_run and not store.is_dir():
        print("phase 2 (confirm) is decided from phase 1's runs, which do not exist yet")
        return
    from bnlab.analysis.study import current_runs

    runs = frame_from_store(store)
    if not runs.empty:
        runs, _ = current_runs(runs, args.study, spec.profile)
    if runs.empty and any(needs_confirmation(spec, c) for c in spec.claims):
        print("phase 2 (confirm) is decided from phase 1's runs, which do not exist yet")
        return
    jobs = confirmation_jobs(runs, spec) if not runs.empty else []
    if not jobs:
        print(f"bnlab-study {args.study}: no claim depends on a chosen setting: no confirmation phase")
    for overrides in jobs:
        print(f"bnlab-study {args.study}: phase 2 (confirm) on seeds {spec.confirm_seeds}", flush=True)
        _train(args.study, [*args.overrides, *overrides], args.dry_run)
    print(f"bnlab-study {args.study}: done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
