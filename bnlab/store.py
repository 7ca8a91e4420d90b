"""The run store: one directory per run, the source of truth for everything downstream.

    <run>/.hydra/         Hydra's composed config (when launched through Hydra)
    <run>/run.json        resolved config, its fingerprint, environment, data: written at start
    <run>/metrics.jsonl   one JSON object per logged step, appended and flushed
    <run>/summary.json    written last and atomically; a run without it is incomplete
    <run>/checkpoint.pt   the latest checkpoint while the run trains (bnlab.checkpoint);
                          deleted when it finishes, unless trainer.checkpoint.keep

Loaders turn one run or a folder of runs into pandas DataFrames.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from omegaconf import DictConfig, OmegaConf

from bnlab.errors import StoreWriteError

if TYPE_CHECKING:  # pandas is imported by the readers only: training does not need it
    import pandas as pd

log = logging.getLogger(__name__)

RUN_FILE, METRICS_FILE, SUMMARY_FILE = "run.json", "metrics.jsonl", "summary.json"

# Keys that say where a run writes or how it is watched, not what it computes:
# two runs that differ only here are the same experiment.
NON_SCIENTIFIC_KEYS = ("paths", "tracking", "force", "recipe", "data.root", "data.download", "trainer.progress",
                       "trainer.progress_every_s", "trainer.num_threads", "trainer.device", "trainer.eval_batch_size", "trainer.checkpoint",
                       # how runs are grouped into stacks (bnlab.stack_plan); the engine is in run.json's env
                       "trainer.stack", "trainer.stack_members",
                       "tags", "claim", "description", "analysis",
                       # a study's budget profile acts only through the keys it sets (resolved)
                       "profile", "profiles",
                       # a study's extra grids, run by bnlab-study after its main one
                       "sweeps")


def resolved_config(cfg: DictConfig) -> dict:
    """The config as plain, fully resolved containers."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


# Keys added after fingerprints were first written, with their neutral value: the value that
# runs made before the key existed are taken to have had. A key at its neutral value is left
# out of the fingerprint, so adding a key never makes finished runs unrecognised (a new key
# must be registered here: tests/test_store.py checks every key of the config).
NEUTRAL_DEFAULTS: dict[str, Any] = {
    "trainer.eval_every_early": None,
    "trainer.early_steps": 0,
    "trainer.divergence_warmup": 100,
    "trainer.learned_margin": 0.1,
    "trainer.eval_train": 0,
    # the MLP's norm placement (bnlab.models.NORM_LAYERS): every hidden layer, as before the key
    "model.norm_layers": "all",
    # the optimizer's step schedule (bnlab.optimizers.lr_schedule): constant
    "optim.lr_milestones": [], "optim.lr_gamma": 0.1,
    # the options of the norms added to the zoo (bnlab.norms), at their defaults
    "model.ln.eps": 1e-5, "model.ln.affine": True,
    "model.gn.groups": 8, "model.gn.eps": 1e-5, "model.gn.affine": True,
    "model.noise.mean_range": 0.5, "model.noise.scale_low": 1.0, "model.noise.scale_high": 1.25,
    "model.noise.jitter": 0.1,
    # the landscape probe (off by default: a disabled probe is dropped from the fingerprint)
    "probes.landscape.enabled": False, "probes.landscape.batch_size": 256, "probes.landscape.points": 4,
    "probes.landscape.low": 0.5, "probes.landscape.high": 4.0,
    # the activation-statistics probe and the recalibrated readout (off by default, likewise)
    "probes.act_stats.enabled": False, "probes.act_stats.batch_size": 1000, "probes.act_stats.corr_units": 0,
    "probes.bn_recalibration.enabled": False, "probes.bn_recalibration.batches": 100,
    # the GPU options (issue 23): off
    "trainer.bf16": False, "trainer.channels_last": False, "trainer.compile": False,
}
# Keys that no longer exist: dropped wherever an old config still holds them.
RETIRED_KEYS = ("probes.grad_ics.batch_size",)


def _pop(tree: dict, dotted: str) -> Any:
    *parents, leaf = dotted.split(".")
    node = tree
    for p in parents:
        node = node.get(p, {}) if isinstance(node, dict) else {}
    return node.pop(leaf, None) if isinstance(node, dict) else None


def _get_dotted(tree: dict, dotted: str, missing: Any) -> Any:
    node: Any = tree
    for p in dotted.split("."):
        if not isinstance(node, dict) or p not in node:
            return missing
        node = node[p]
    return node


def fingerprint(config: dict) -> str:
    """Stable hash of the scientific part of a resolved config: NON_SCIENTIFIC_KEYS,
    RETIRED_KEYS, disabled probes and keys at their NEUTRAL_DEFAULTS left out."""
    pruned = json.loads(json.dumps(config))
    # a disabled probe measures nothing: the same experiment as a config without it
    probes = pruned.get("probes")
    if isinstance(probes, dict):
        for name in [k for k, v in probes.items() if isinstance(v, dict) and v.get("enabled") is False]:
            del probes[name]
    for dotted in (*NON_SCIENTIFIC_KEYS, *RETIRED_KEYS):
        _pop(pruned, dotted)
    missing = object()
    for dotted, neutral in NEUTRAL_DEFAULTS.items():
        if _get_dotted(pruned, dotted, missing) == neutral:
            _pop(pruned, dotted)
            # a group of new keys (model.gn.*) all at neutral leaves an empty node: drop it too
            parent = dotted.rsplit(".", 1)[0]
            while "." in dotted and _get_dotted(pruned, parent, missing) == {}:
                _pop(pruned, parent)
                dotted, parent = parent, parent.rsplit(".", 1)[0]
    blob = json.dumps(pruned, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (a diverged loss is recorded by status)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`.

    A reader (or a crash at any moment) sees the old file or the new one, never half of one.
    A write that fails (permissions, a full disk) raises StoreWriteError naming `path`.
    """
    path = Path(path)
    with store_writes(path):
        atomic_replace(path, lambda f: f.write(json.dumps(clean(obj), indent=2, allow_nan=False).encode()))


@contextlib.contextmanager
def store_writes(path) -> Iterator[None]:
    """OSError while writing `path` -> StoreWriteError(path, cause): one line, not a traceback."""
    try:
        yield
    except StoreWriteError:
        raise
    except OSError as exc:
        raise StoreWriteError(path, exc) from None


def atomic_replace(path: Path, write: Callable[[Any], Any]) -> None:
    """`write(binary file)` into a temp file beside `path`, fsync, rename over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; run files are meant to be shared
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunWriter:
    """Writes one run directory. Open with `start` (or `resume`), append with `log`, close
    with `finish`. Every failed write raises StoreWriteError naming the file and the cause."""

    def __init__(self, out_dir: str | os.PathLike):
        self.dir = Path(out_dir)
        self._metrics = None

    def start(self, record: dict) -> None:
        with store_writes(self.dir):
            self.dir.mkdir(parents=True, exist_ok=True)
        # a run trained again in the same folder (a SLURM job requeued to its own folder whose
        # checkpoint could not be used) starts from a clean slate; the earlier attempt's
        # records are renamed, not cut: nothing logged is lost
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        for name in (SUMMARY_FILE, METRICS_FILE):
            earlier = self.dir / name
            if earlier.exists():
                with store_writes(earlier):
                    earlier.rename(earlier.with_name(f"{earlier.name}.earlier-{stamp}"))
        write_json_atomic(self.dir / RUN_FILE, record)
        with store_writes(self.dir / METRICS_FILE):
            self._metrics = open(self.dir / METRICS_FILE, "w")

    def resume(self, offset: int) -> None:
        """Reopen a run's records where its checkpoint left them: the failed summary of the
        interrupted attempt goes, and metrics.jsonl is cut back to `offset` bytes (the lines
        logged after the checkpoint are logged again as training repeats those steps)."""
        with store_writes(self.dir / SUMMARY_FILE):
            (self.dir / SUMMARY_FILE).unlink(missing_ok=True)
        with store_writes(self.dir / METRICS_FILE):
            self._metrics = open(self.dir / METRICS_FILE, "r+")
            self._metrics.truncate(offset)
            self._metrics.seek(offset)

    @property
    def offset(self) -> int:
        """Bytes of metrics.jsonl written so far: a checkpoint's position in the records."""
        return self._metrics.tell()

    def log(self, record: dict) -> None:
        with store_writes(self.dir / METRICS_FILE):
            self._metrics.write(json.dumps(clean(record), allow_nan=False) + "\n")
            self._metrics.flush()

    def finish(self, summary: dict) -> None:
        if self._metrics is not None:
            try:
                self._metrics.close()
            except OSError:
                pass  # its lines were flushed as they were written
            self._metrics = None
        write_json_atomic(self.dir / SUMMARY_FILE, summary)


# ---------------------------------------------------------------- readers

def _parse_object(raw: bytes) -> tuple[dict | None, str]:
    """(the JSON object in `raw`, "") or (None, why not): a record is a UTF-8 JSON object."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return None, f"not valid UTF-8 JSON ({type(exc).__name__})"
    if not isinstance(obj, dict):
        return None, f"a JSON {type(obj).__name__}, not an object"
    return obj, ""


_reported: set[tuple[str, str]] = set()


def _report_damage(path, why: str) -> None:
    """One warning line per damaged file and process: a tool that reads a file twice (the
    sweep's progress, then the study's runs) names it once."""
    if (str(path), why) not in _reported:
        _reported.add((str(path), why))
        log.warning("damaged record %s: %s", path, why)


# What a run's records hold, by type: a file that parses but holds a field of the wrong type
# (a metric "high", "finished_at": 12345, "config": "oops", "status": 42) is as damaged as one
# that does not parse, and is counted as damaged by every reader alike.
SUMMARY_STATUSES = ("completed", "diverged", "failed")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _field_problem(key: str, value, expect: str) -> str:
    ok = {"number": _is_number(value), "integer": isinstance(value, int) and not isinstance(value, bool),
          "text": isinstance(value, str), "object": isinstance(value, dict), "list": isinstance(value, list),
          "true/false": isinstance(value, bool)}[expect]
    return "" if ok else f"{key} is {json.dumps(value)[:40]}, not {'an' if expect[0] in 'aeiou' else 'a'} {expect}"


def summary_problem(summary: dict) -> str:
    """Why summary.json's object is not a summary ("" when it is): its status one of
    SUMMARY_STATUSES; metrics (keys with a '/'), times and counts numbers or null; times of
    day text; `learned` true, false or null."""
    if summary.get("status") not in SUMMARY_STATUSES:
        return f"status is {json.dumps(summary.get('status'))[:40]}, not one of {', '.join(SUMMARY_STATUSES)}"
    for key, value in summary.items():
        if value is None:
            continue
        if key == "resumed_from_steps":  # the step of each resume, a list (bnlab.runner)
            why = _field_problem(key, value, "list") or next(
                (f"{key} holds {json.dumps(v)[:40]}, not an integer" for v in value
                 if not isinstance(v, int) or isinstance(v, bool)), "")
            if why:
                return why
            continue
        if "/" in key or key.endswith(("_s", "_ms", "step", "steps", "_target")) or key in (
                "initial_loss", "target_val_acc", "params"):
            expect = "number"
        elif key.endswith("_at"):
            expect = "text"
        elif key in ("fingerprint", "error"):
            expect = "text"
        elif key == "learned":
            expect = "true/false"
        elif key == "data":
            expect = "object"
        else:
            continue
        why = _field_problem(key, value, expect)
        if why:
            return why
    return ""


def run_record_problem(record: dict) -> str:
    """Why run.json's object is not a run's record ("" when it is): its config an object,
    and where present its seed an integer, its fingerprint and start time text, its
    environment and data objects, its parameter count an integer."""
    why = _field_problem("config", record.get("config"), "object")
    seed = record["config"].get("seed") if not why else None
    checks = [("config.seed", seed, "integer"), *((key, record.get(key), expect) for key, expect in (
        ("fingerprint", "text"), ("env", "object"), ("data", "object"), ("params", "integer"), ("started_at", "text")))]
    for key, value, expect in checks:
        if not why and value is not None:
            why = _field_problem(key, value, expect)
    return why


def read_summary(path: Path) -> tuple[str, dict | None]:
    """read_record for a summary.json, its fields checked by type (summary_problem)."""
    return read_record(path, summary_problem)


def read_record(path: Path, check: Callable[[dict], str] | None = None) -> tuple[str, dict | None]:
    """("missing", None), ("ok", the object) or ("damaged", None) for a JSON record file.

    Only a UTF-8 JSON object counts as a record: binary bytes (a disk fault, a bad copy),
    truncated JSON or any other JSON value are damage, as is an object that `check` finds
    wrong (it returns why), reported in one warning line that names the file — never a
    traceback, and never a reason to stop reading other runs."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return "missing", None
    except OSError as exc:
        _report_damage(path, f"cannot be read ({exc.strerror or exc})")
        return "damaged", None
    obj, why = _parse_object(raw)
    if obj is not None and check is not None and check(obj):
        obj, why = None, check(obj)
    if obj is None:
        _report_damage(path, f"{why}; skipped")
        return "damaged", None
    return "ok", obj


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`, or None when it is missing or damaged (see read_record)."""
    return read_record(path)[1]


def read_metrics(run_dir: str | os.PathLike) -> "pd.DataFrame":
    """metrics.jsonl as a DataFrame, one row per logged step.

    A damaged line (binary bytes, not JSON, not an object) is skipped and the lines after it
    are still read, with one warning naming the file and how many lines were skipped; an
    unterminated last line is a write torn by a crash, skipped quietly."""
    import pandas as pd

    rows, bad = [], []
    path = Path(run_dir) / METRICS_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return pd.DataFrame()
    except OSError as exc:
        _report_damage(path, f"cannot be read ({exc.strerror or exc})")
        return pd.DataFrame()
    lines = data.split(b"\n")
    last = len(lines)  # the text after the final newline: empty, or a write a crash cut short
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        obj, _ = _parse_object(line)
        if obj is not None:
            rows.append(obj)
        elif number != last:
            bad.append(number)
    if bad:
        _report_damage(path, f"{len(bad)} line(s) skipped (line {bad[0]}{' …' if len(bad) > 1 else ''})")
    return pd.DataFrame(rows)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_run(run_dir: str | os.PathLike) -> dict:
    """One run as a flat dict: `cfg.*` config columns, summary fields, `status`, `path`.

    A run that started but has no summary has status `incomplete`; one whose run.json or
    summary.json is damaged has status `damaged` and names the file in `damaged`."""
    run_dir = Path(run_dir)
    start_state, start = read_record(run_dir / RUN_FILE, run_record_problem)
    summary_state, summary = read_summary(run_dir / SUMMARY_FILE)
    row = {"path": str(run_dir), "status": "incomplete"}
    start = start or {}
    config = start.get("config")
    row.update(_flatten(config if isinstance(config, dict) else {}, "cfg."))
    row["fingerprint"] = start.get("fingerprint")
    row["code_version"] = run_code_version(start.get("env"))
    if summary is not None:
        row.update({k: v for k, v in _flatten(summary).items() if not k.startswith(("config.", "env."))})
    damaged = [name for name, state in ((RUN_FILE, start_state), (SUMMARY_FILE, summary_state))
               if state == "damaged"]
    if damaged:
        row["status"] = "damaged"
        row["damaged"] = ", ".join(damaged)
    return row


def run_code_version(env) -> str | None:
    """The training-code version a run was made with (bnlab.environment.code_version); for
    runs made before it was recorded, the commit, marked `+dirty` when the tree was."""
    if not isinstance(env, dict):
        return None
    if env.get("code_version"):
        return env["code_version"]
    commit = env.get("git_commit")
    return f"{commit[:12]}{'+dirty' if env.get('git_dirty') else ''}" if commit else None


def mark_superseded(runs: "pd.DataFrame") -> "pd.DataFrame":
    """Runs retrained with `force=true` leave the earlier run of the same config in the
    store (nothing is deleted): of the finished runs (completed, diverged) sharing a
    fingerprint, all but the latest get status `superseded`, so each config counts once."""
    if runs.empty or "fingerprint" not in runs or "finished_at" not in runs:
        return runs
    finished = runs[runs["status"].isin(("completed", "diverged")) & runs["fingerprint"].notna()]
    latest = finished.sort_values("finished_at").groupby("fingerprint").tail(1).index
    runs.loc[finished.index.difference(latest), "status"] = "superseded"
    return runs


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Run directories at or below `root` (those holding run.json)."""
    root = Path(root)
    if (root / RUN_FILE).exists():
        return [root]
    return sorted(p.parent for p in root.rglob(RUN_FILE))


def load_runs(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> "pd.DataFrame":
    """Every run at or below the given folder(s), one row each."""
    import pandas as pd

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:  # an empty frame would only fail later, somewhere less clear
        raise FileNotFoundError(f"no run store at {missing[0]} (runs live under <paths.results>/runs/<study>)")
    rows = [load_run(d) for p in paths for d in find_runs(p)]
    return mark_superseded(pd.DataFrame(rows))
