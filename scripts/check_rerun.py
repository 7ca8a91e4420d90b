#!/usr/bin/env python
"""Train one committed run again and compare it with its row in the study's CSV.

    .venv/bin/python scripts/check_rerun.py ioffe_fig1 model.norm=batch optim.lr=2.0 seed=100
    .venv/bin/python scripts/check_rerun.py dropout_wide_mnist model.norm=none model.dropout=0.5 optim.lr=1.0 seed=0

The overrides pick the run's config (as `bnlab-train experiments=<study> ...` composes it); the
run is trained into a scratch folder, not the run store, and found among the committed rows by
its fingerprint (the hash of its scientific config), so a rerun of any other config is refused
rather than compared with the wrong row. Compared: every metric of the summary (accuracies,
losses, best step, outcome, steps to each accuracy) and every point of every evaluation curve;
not compared: wall-clock times and the machine. The trainer is deterministic on one CPU thread,
so on the same torch build the numbers are the same to the last digit the CSV keeps.

The rerun uses the engine the committed run was trained with (its `env.engine`): a run trained
in a stack (bnlab.stacked_engine) is trained again in the same stack, its runs in the same order
(`env.stack`: their overrides), since a stacked run's last digits depend on its stack's size
(the wide matmuls' blocking): the whole stack is trained again, K times the cost of one run.

Exit status: 0 every compared number is the same; 1 one differs (each is listed); 2 the
overrides match no committed run, or the rerun did not finish.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bnlab.analysis.frames import MACHINE_COLUMNS, frame_from_csv, frame_from_store  # noqa: E402

# what a rerun cannot reproduce: where it ran (the machine's columns), when, and how long it took
NOT_COMPARED = MACHINE_COLUMNS + ("run", "started_at", "finished_at", "code_version", "env.", "train_time_s",
                                  "step_time_ms", "wall_time_s", "time_to_")
# curves whose values are clock readings
CLOCK_CURVES = ("time", "seconds")
REL_TOL = 1e-9


def _compared(column: str) -> bool:
    return not column.startswith("cfg.") and not column.startswith(NOT_COMPARED) and column != "curves"


def _same(a, b) -> bool:
    missing_a = a is None or (isinstance(a, float) and math.isnan(a))
    missing_b = b is None or (isinstance(b, float) and math.isnan(b))
    if missing_a or missing_b:
        return missing_a and missing_b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=1e-12)
    return str(a) == str(b)


def differences(fresh: dict, committed: dict) -> tuple[int, list[str]]:
    """(how many numbers were compared, one line per difference) between two frame rows."""
    n, diffs = 0, []
    for col in sorted(set(fresh) & set(committed)):
        if not _compared(col):
            continue
        n += 1
        if not _same(fresh[col], committed[col]):
            diffs.append(f"{col}: rerun {fresh[col]!r}, committed {committed[col]!r}")
    fc, cc = fresh.get("curves") or {}, committed.get("curves") or {}
    for key in sorted(set(fc) | set(cc)):
        if any(word in key for word in CLOCK_CURVES):
            continue
        a, b = fc.get(key), cc.get(key)
        if a is None or b is None:
            diffs.append(f"curve {key}: only in the {'committed run' if a is None else 'rerun'}")
            continue
        if len(a) != len(b):
            diffs.append(f"curve {key}: {len(a)} points in the rerun, {len(b)} committed")
            continue
        n += len(a)
        bad = [i for i, (x, y) in enumerate(zip(a, b)) if not _same(x, y)]
        if bad:
            i = bad[0]
            diffs.append(f"curve {key}: {len(bad)} of {len(a)} points differ (first: point {i}, "
                         f"rerun {a[i]!r}, committed {b[i]!r})")
    return n, diffs


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    import bnlab  # noqa: F401  (resolvers)
    from bnlab.resolvers import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="check_rerun"):
        return compose("config", overrides=[o for o in overrides if not o.startswith("hydra.")])


def _committed_stack(committed, fp: str | None) -> list[list[str]] | None:
    """The stack the committed run of fingerprint `fp` was trained in (each member's
    overrides, in order), or None: trained alone (or no run matches: the comparison says so)."""
    import json

    if "env.stack" not in committed or fp is None:  # None: a bad override; the rerun's own error names it
        return None
    rows = committed[(committed["fingerprint"] == fp) & committed["env.stack"].notna()]
    return json.loads(rows["env.stack"].iloc[0]) if not rows.empty else None


def _fingerprint(overrides: list[str]) -> str | None:
    from bnlab.store import fingerprint, resolved_config

    try:
        return fingerprint(resolved_config(_compose(overrides)))
    except Exception:
        return None


def _rerun_stack(study: str, stack: list[list[str]], extra: list[str], scratch: Path) -> int:
    """Train the stack again, its runs in their order, by the stacked engine, into `scratch`."""
    from bnlab.runner import Job, run_group

    jobs = []
    for i, member in enumerate(stack):
        cfg = _compose([f"experiments={study}", *member, *extra])
        jobs.append(Job(cfg, scratch / "runs" / str(cfg.name) / "rerun" / str(i), overrides=member))
    try:
        run_group(jobs, engine="stacked")
    except Exception as exc:
        print(f"check_rerun: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study", help="a study in experiments/ whose CSV is committed (results/<study>/runs.csv)")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE that pick the run, e.g. model.norm=batch optim.lr=2.0 seed=100")
    ap.add_argument("--results", default=str(REPO / "results"), help="where the committed CSVs are (default: results/)")
    ap.add_argument("--scratch", help="train into this folder (default: a temporary one, removed afterwards)")
    args = ap.parse_args(argv)

    csv = Path(args.results) / args.study / "runs.csv"
    if not csv.exists():
        print(f"check_rerun: no committed CSV for study {args.study!r} at {csv}", file=sys.stderr)
        return 2
    bad = [o for o in args.overrides if "=" not in o or o.startswith(("hydra.", "paths.", "experiments="))]
    if bad:
        print(f"check_rerun: overrides must be KEY=VALUE of the run's config (not hydra.*, paths.*, "
              f"experiments=); got {' '.join(bad)}", file=sys.stderr)
        return 2
    committed = frame_from_csv(csv)
    with tempfile.TemporaryDirectory(prefix="bnlab-rerun-") as tmp:
        scratch = Path(args.scratch or tmp)
        extra = [f"paths.results={scratch}", "tracking.mode=disabled", "trainer.progress=false",
                 "trainer.num_threads=1"]
        overrides = [f"experiments={args.study}", *args.overrides, *extra]
        wanted = _fingerprint(overrides)  # the run the overrides name (None: the rerun's error says why)
        stack = _committed_stack(committed, wanted)
        if stack is not None:
            print(f"the committed run was trained in a stack of {len(stack)}: training that stack again "
                  f"(the stacked engine)", flush=True)
            for member in stack:
                print(f"  $ {' '.join(member)}", flush=True)
            code = _rerun_stack(args.study, stack, extra, scratch)
        else:
            command = [sys.executable, "-m", "bnlab.train", *overrides, "hydra.mode=RUN"]
            print("$ " + " ".join(command), flush=True)
            code = subprocess.run(command, cwd=REPO, env=os.environ.copy()).returncode
        fresh = frame_from_store(scratch)
        if code != 0 or fresh.empty:
            print(f"check_rerun: the rerun did not finish (exit {code})", file=sys.stderr)
            return 2
    picked = fresh[fresh["fingerprint"] == wanted] if wanted else fresh
    run = (picked if not picked.empty else fresh).iloc[0].to_dict()
    rows = committed[(committed["fingerprint"] == run["fingerprint"]) & (committed["status"] != "superseded")]
    if rows.empty:
        print(f"check_rerun: no committed run of {args.study} has this config (fingerprint {run['fingerprint']}); "
              f"the overrides must give exactly a committed run's settings (its seed and tuned keys)", file=sys.stderr)
        return 2
    row = rows.iloc[0].to_dict()
    n, diffs = differences(run, row)
    print(f"committed row: {row['run']} (training code {row.get('code_version')}, engine "
          f"{row.get('env.engine') or 'single'}); rerun: training code {run.get('code_version')}, engine "
          f"{run.get('env.engine') or 'single'}")
    for key in ("outcome", "best/val/acc", "best/test/acc", "best/step", "train/loss"):
        if key in run:
            print(f"  {key}: rerun {run[key]!r}, committed {row.get(key)!r}")
    if diffs:
        print(f"{len(diffs)} of {n} compared numbers/curves differ:")
        for d in diffs:
            print("  " + d)
        return 1
    print(f"the same: {n} numbers compared (summary metrics and every evaluation point; times left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
