"""Checkpoints: a run that is killed, timed out or preempted resumes where it left off.

A checkpoint holds everything the next step depends on: the model and optimizer states,
the batch sampler (its epoch permutation, position and generator), the augmentation
generator, the global RNGs (dropout masks), the loop's own progress (best so far, target
reached, the running train-loss sums), and the byte length of metrics.jsonl at that moment.
Restored, the run takes exactly the steps the uninterrupted run would have taken, and ends
with the same metrics (tests/test_checkpoint.py checks this on the CPU).

When: before the first step (which measures what a checkpoint costs), then at most
`every_s` seconds apart, and more often when saving is cheap, as long as saving costs at
most `max_overhead` of the training time (a small MLP checkpoints about every second, a
VGG every few minutes); also at once when the run is asked to stop (see
bnlab.stopping). Always atomic (temp file, fsync, rename): a kill mid-save leaves the
previous checkpoint. Loaded with `weights_only=True`: tensors and plain values, no pickled code.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from bnlab.errors import StoreWriteError
from bnlab.store import METRICS_FILE, RUN_FILE, SUMMARY_FILE, atomic_replace, read_json, read_summary, store_writes

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = 1


class Checkpoints:
    """The checkpoint file of one run: when one is due, saving it, discarding it at the end.

    `records` is the run's RunWriter: a checkpoint records how much of metrics.jsonl
    belongs to it, so a resumed run cuts the lines logged after it and logs them again."""

    def __init__(self, run_dir, every_s: float | None, max_overhead: float, keep: bool, records=None,
                 meta: Callable[[], dict] | None = None):
        self.path = Path(run_dir) / CHECKPOINT_FILE
        self.every_s, self.max_overhead, self.keep = every_s, max_overhead, keep
        self.records, self.meta = records, meta
        self.saved_step: int | None = None
        self._last = time.monotonic()
        # the first checkpoint comes before the first step: it measures what one costs
        self._interval = 0.0 if every_s is not None else None

    @classmethod
    def from_config(cls, run_dir, ccfg, records=None, meta=None) -> "Checkpoints":
        return cls(run_dir, ccfg.every_s, ccfg.max_overhead, ccfg.keep, records, meta)

    @property
    def enabled(self) -> bool:
        return self.every_s is not None

    def due(self) -> bool:
        return self._interval is not None and time.monotonic() - self._last >= self._interval

    def save(self, state: dict) -> None:
        """Write `state` (plus the records' position) atomically; StoreWriteError if it fails."""
        start = time.monotonic()
        payload = {"format": FORMAT, **state}
        if self.records is not None:
            payload["records_offset"] = self.records.offset
        if self.meta is not None:
            payload["meta"] = self.meta()  # the run's own bookkeeping (wall time so far, resumes)
        with store_writes(self.path):
            atomic_replace(self.path, lambda f: _save_to(self.path, payload, f))
        cost = time.monotonic() - start
        self._last = time.monotonic()
        if self.every_s is not None:
            self._interval = min(self.every_s, cost / self.max_overhead)
        self.saved_step = state["progress"]["step"]

    def discard(self) -> None:
        """The run finished: its checkpoint is no longer needed (unless asked to keep it)."""
        if not self.keep:
            self.path.unlink(missing_ok=True)


def _save_to(path: Path, payload: dict, f) -> None:
    """torch.save into the open file `f` (the temp file of `path`). torch's zip writer reports
    a failed write (a full disk, a file-size limit) as a RuntimeError, with the OSError, when
    there is one, as its context: it is the store's write error all the same (one line, exit 3,
    and atomic_replace leaves the previous checkpoint in place)."""
    try:
        torch.save(payload, f)
    except RuntimeError as exc:
        cause = exc.__context__ if isinstance(exc.__context__, OSError) else None
        raise StoreWriteError(path, cause or f"torch.save failed ({str(exc).splitlines()[0][:200]})") from None


def _read(path: Path) -> tuple[dict | None, str]:
    """(the checkpoint at `path`, "") or (None, why it cannot be used)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: any unpickling error
        return None, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return None, f"not a bnlab checkpoint of format {FORMAT}"
    return state, ""


def load_checkpoint(run_dir) -> dict | None:
    """The checkpoint of `run_dir`, or None when there is none or it cannot be read
    (a damaged checkpoint is named in one warning line; the run then starts afresh)."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    state, why = _read(path)
    if state is None:
        log.warning("damaged checkpoint %s: %s; not resumed from", path, why)
    return state


def _expected_shapes(config: dict) -> dict[str, tuple[int, ...]] | None:
    """The state-dict shapes of the model `config` (a run.json's resolved config) builds,
    from a model made on the meta device (no memory, no weights); None if it cannot be built."""
    from omegaconf import OmegaConf

    from bnlab.data import DATASETS
    from bnlab.models import build_model

    try:
        cfg = OmegaConf.create(config)
        spec = DATASETS[cfg.data.name]
        with torch.device("meta"):
            model = build_model(cfg.model, spec.shape, spec.num_classes)
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}
    except Exception as exc:  # an old or hand-edited run.json: the other checks still apply
        log.debug("cannot rebuild the model of this run (%s); shapes not checked", exc)
        return None


def unusable_because(run_dir: Path, state: dict, fp: str, config: dict | None) -> str:
    """Why checkpoint `state` cannot continue the run in `run_dir` (fingerprint `fp`, resolved
    `config`), or "" when it can. Checked before anything of the run is touched: resuming
    cuts metrics.jsonl back to the checkpoint's offset, and a checkpoint from another config
    (copied over, a run folder reused) would cut the run's records and then fail to load."""
    made_for = (state.get("meta") or {}).get("fingerprint")
    if made_for is not None and made_for != fp:
        return f"it was made by another config (fingerprint {made_for}; this run's is {fp})"
    saved = state.get("model")
    expected = _expected_shapes(config) if isinstance(config, dict) else None
    if expected is not None:
        got = {k: tuple(v.shape) for k, v in saved.items()} if isinstance(saved, dict) else {}
        if got != expected:
            key = next((k for k in expected if got.get(k) != expected[k]), None) or \
                next(k for k in got if k not in expected)
            return (f"its model does not fit this run's config ({key}: "
                    f"{list(got[key]) if key in got else 'missing'} in the checkpoint, "
                    f"{list(expected[key]) if key in expected else 'none'} in the model)")
    offset = state.get("records_offset")
    metrics = run_dir / METRICS_FILE
    size = metrics.stat().st_size if metrics.is_file() else 0
    if not isinstance(offset, int) or not 0 <= offset <= size:
        return f"its position in {METRICS_FILE} ({offset!r} bytes) is beyond that file ({size} bytes)"
    if offset:
        with open(metrics, "rb") as f:
            f.seek(offset - 1)
            if f.read(1) != b"\n":
                return f"its position in {METRICS_FILE} ({offset} bytes) is not the end of a line"
    return ""


def set_aside(path: Path, why: str) -> None:
    """Rename an unusable checkpoint out of the way (never delete it: it may be someone's
    only copy) and say so in one line; the run is then trained from the start."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    aside = path.with_name(f"{path.stem}.unusable-{stamp}{path.suffix}")
    try:
        path.rename(aside)
    except OSError as exc:
        log.warning("unusable checkpoint %s: %s; not resumed from (could not be set aside: %s)",
                    path, why, exc.strerror or exc)
        return
    log.warning("unusable checkpoint %s: %s; set aside as %s, and the run is trained again from "
                "the start in a new folder (the records in that one are kept)", path, why, aside.name)


def find_resumable(root: Path, fp: str, prefer: Path | None = None,
                   look_only: bool = False) -> tuple[Path | None, dict | None]:
    """An unfinished run of fingerprint `fp` under `root` with a usable checkpoint, and
    that checkpoint: (run folder, state), or (None, None). A run is unfinished when it has
    no summary (killed) or a `failed` one (stopped by a signal, or an error). `prefer` (the
    job's own folder: a job requeued by SLURM comes back to it) is taken first; else the
    most recent checkpoint. A checkpoint that is damaged or does not belong to its run
    (unusable_because) is set aside, named in one line, and not resumed from (`look_only`:
    a dry run, which writes nothing, leaves it where it is)."""
    if not root.exists():
        return None, None
    candidates = sorted(root.rglob(CHECKPOINT_FILE), key=lambda c: c.stat().st_mtime, reverse=True)
    if prefer is not None:
        candidates.sort(key=lambda c: c.parent != Path(prefer))
    for path in candidates:
        run_dir = path.parent
        start = read_json(run_dir / RUN_FILE) or {}
        if start.get("fingerprint") != fp:
            continue
        found, summary = read_summary(run_dir / SUMMARY_FILE)
        if found == "damaged" or (summary is not None and summary.get("status") != "failed"):
            continue
        state, why = _read(path)
        why = why or unusable_because(run_dir, state, fp, start.get("config"))
        if why:
            if not look_only:
                set_aside(path, why)
            continue
        return run_dir, state
    return None, None
