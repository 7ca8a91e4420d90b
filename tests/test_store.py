"""The run store: atomic summaries, flushed metrics, fingerprints, and the loaders."""
import json

import pytest

import bnlab.store as store
from bnlab.store import (RunWriter, fingerprint, load_run, load_runs, read_metrics,
                         write_json_atomic)


def test_atomic_write_never_leaves_half_a_file(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"status": "completed", "x": 1})

    def crash_mid_write(obj, **kw):
        raise KeyboardInterrupt  # the process "dies" while the new content is being written

    monkeypatch.setattr(store.json, "dumps", crash_mid_write)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic(target, {"status": "failed"})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"status": "completed", "x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"], "no temp file left behind"


def test_non_finite_values_are_stored_as_null(tmp_path):
    write_json_atomic(tmp_path / "s.json", {"loss": float("nan"), "x": [float("inf"), 1.0]})
    assert json.loads((tmp_path / "s.json").read_text()) == {"loss": None, "x": [None, 1.0]}


def _config(lr=0.1, results="/a"):
    return {"seed": 0, "optim": {"lr": lr}, "model": {"norm": "batch"},
            "paths": {"results": results}, "tracking": {"mode": "offline"},
            "data": {"name": "mnist", "root": "/data", "download": True}}


def test_fingerprint_ignores_paths_and_tracking_but_not_science():
    assert fingerprint(_config()) == fingerprint(_config(results="/elsewhere"))
    other = _config()
    other["tracking"]["mode"] = "disabled"
    other["data"]["root"] = "/mnt/data"
    assert fingerprint(other) == fingerprint(_config())
    assert fingerprint(_config(lr=0.2)) != fingerprint(_config())


def _write_run(path, status=None, lr=0.1, steps=3):
    w = RunWriter(path)
    w.start({"config": _config(lr=lr), "fingerprint": fingerprint(_config(lr=lr))})
    for step in range(steps):
        w.log({"step": step, "samples": step * 60, "time_s": step * 0.1, "train/loss": 1.0 / (step + 1)})
    if status:
        w.finish({"status": status, "steps": steps, "test/acc": 0.9})
    return w


def test_metrics_are_readable_while_the_run_is_going(tmp_path):
    w = _write_run(tmp_path / "r")
    df = read_metrics(tmp_path / "r")
    assert list(df["step"]) == [0, 1, 2]
    assert load_run(tmp_path / "r")["status"] == "incomplete"
    w.finish({"status": "completed"})
    assert load_run(tmp_path / "r")["status"] == "completed"


def test_torn_last_metrics_line_is_skipped(tmp_path):
    _write_run(tmp_path / "r", status="completed")
    with open(tmp_path / "r" / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "samp')
    assert list(read_metrics(tmp_path / "r")["step"]) == [0, 1, 2]


def test_restarting_a_run_folder_drops_the_old_summary(tmp_path):
    _write_run(tmp_path / "r", status="completed")
    RunWriter(tmp_path / "r").start({"config": _config()})
    assert load_run(tmp_path / "r")["status"] == "incomplete"


def test_load_runs_reads_a_folder_of_runs_into_one_frame(tmp_path):
    _write_run(tmp_path / "s" / "0", status="completed", lr=0.1)
    _write_run(tmp_path / "s" / "1", status="diverged", lr=10.0)
    _write_run(tmp_path / "s" / "2", lr=0.5)  # no summary: still running, or killed
    (tmp_path / "s" / "not-a-run").mkdir()
    df = load_runs(tmp_path / "s")
    assert len(df) == 3
    assert sorted(df["status"]) == ["completed", "diverged", "incomplete"]
    assert sorted(df["cfg.optim.lr"]) == [0.1, 0.5, 10.0]
    assert df.set_index("cfg.optim.lr").loc[0.1, "test/acc"] == 0.9
    assert len(load_runs(tmp_path / "s" / "0")) == 1
    with pytest.raises(FileNotFoundError, match="no run store at"):
        load_runs(tmp_path / "empty")  # a typo in a path says so, not an empty frame that fails later
    (tmp_path / "empty").mkdir()
    assert load_runs(tmp_path / "empty").empty


def test_a_disabled_probe_does_not_change_the_fingerprint():
    base = _config()
    base["probes"] = {"act_input": {"enabled": True, "units": [0]}}
    with_off = json.loads(json.dumps(base))
    with_off["probes"]["grad_ics"] = {"enabled": False, "batch_size": 1000}
    with_on = json.loads(json.dumps(with_off))
    with_on["probes"]["grad_ics"]["enabled"] = True
    assert fingerprint(with_off) == fingerprint(base) != fingerprint(with_on)


def test_a_new_key_at_its_neutral_default_leaves_the_fingerprint_unchanged(monkeypatch):
    before = fingerprint(_config())
    monkeypatch.setitem(store.NEUTRAL_DEFAULTS, "optim.new_knob", 0.0)
    with_key = _config()
    with_key["optim"]["new_knob"] = 0.0
    assert fingerprint(with_key) == before, "a finished run stays recognised when a key is added"
    with_key["optim"]["new_knob"] = 0.5
    assert fingerprint(with_key) != before, "a non-neutral value is a different experiment"
    retired = _config()
    retired["probes"] = {"grad_ics": {"enabled": True, "batch_size": 1000}}
    plain = _config()
    plain["probes"] = {"grad_ics": {"enabled": True}}
    assert fingerprint(retired) == fingerprint(plain), "a retired key does not count"


def test_every_key_added_since_v1_is_registered_as_neutral():
    """Adding a config key without a neutral value would silently retrain every finished run."""
    from pathlib import Path

    import pandas as pd
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bnlab.resolvers import CONF_DIR

    v1 = {ln.strip() for ln in (Path(__file__).parent / "fingerprint_keys_v1.txt").read_text().splitlines()
          if ln.strip() and not ln.startswith("#")}
    keys = set()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for overrides in ([], ["model=cnn", "data=cifar10", "init=default"], ["optim=adam", "init=kaiming"]):
            cfg = compose("config", overrides=overrides)
            keys |= set(pd.json_normalize(OmegaConf.to_container(cfg, resolve=False), sep=".").columns)
    skip = tuple(store.NON_SCIENTIFIC_KEYS)
    new = {k for k in keys - v1 if not k.startswith(skip)}
    assert new <= set(store.NEUTRAL_DEFAULTS), f"register in NEUTRAL_DEFAULTS: {sorted(new - set(store.NEUTRAL_DEFAULTS))}"


# ---------------------------------------------------------------- damaged files

@pytest.mark.parametrize("content", [b'{"status": "compl\xff\xfe\x00ted"}', b"[1, 2, 3]", b'{"status": "comp',
                                     b"\x89PNG\r\n\x1a\n"])
def test_a_damaged_summary_is_reported_not_a_crash_and_not_done(tmp_path, caplog, content):
    from bnlab.sweep import find_done

    _write_run(tmp_path / "study" / "good", status="completed")
    write_json_atomic(tmp_path / "study" / "good" / "summary.json",
                      {"status": "completed", "steps": 3, "fingerprint": fingerprint(_config())})
    _write_run(tmp_path / "study" / "bad", status="completed", lr=0.2)
    (tmp_path / "study" / "bad" / "summary.json").write_bytes(content)
    runs = load_runs(tmp_path / "study")
    by_dir = dict(zip(runs["path"].map(lambda p: p.rsplit("/", 1)[-1]), runs["status"]))
    assert by_dir == {"good": "completed", "bad": "damaged"}
    assert any("bad/summary.json" in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records)
    assert all("\n" not in r.getMessage() for r in caplog.records), "one line"
    # the damaged run is not done (it will be trained again); the intact one still is
    assert find_done(tmp_path / "study", fingerprint(_config(lr=0.2))) is None
    assert find_done(tmp_path / "study", fingerprint(_config())) == tmp_path / "study" / "good"


def test_a_damaged_metrics_line_is_skipped_and_the_rest_still_read(tmp_path, caplog):
    _write_run(tmp_path / "r", status="completed", steps=6)
    path = tmp_path / "r" / "metrics.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[2] = b"42"                      # valid JSON, not a record
    lines[3] = b"\xff\xfe garbage \x00"   # not UTF-8
    path.write_bytes(b"\n".join(lines))
    df = read_metrics(tmp_path / "r")
    assert list(df["step"]) == [0, 1, 4, 5], "the lines after the damage are still read"
    assert any("metrics.jsonl" in r.getMessage() and "2 line(s) skipped" in r.getMessage() for r in caplog.records)


def test_a_damaged_run_is_counted_in_the_study_frame(tmp_path):
    from bnlab.analysis.frames import frame_from_store, outcome_counts

    _write_run(tmp_path / "s" / "a", status="completed")
    _write_run(tmp_path / "s" / "b", status="completed", lr=0.3)
    (tmp_path / "s" / "b" / "run.json").write_bytes(b"\x00\x01\x02")
    runs = frame_from_store(tmp_path / "s")
    counts = outcome_counts(runs)
    assert counts["damaged"] == 1 and counts["did not learn"] + counts["learned"] == 1


def test_a_new_group_of_keys_at_their_neutral_defaults_leaves_the_fingerprint_unchanged():
    """model.ln / model.gn / model.noise arrived as whole nodes: a run made before them has
    no such node at all, and must keep its identity (an empty node left behind would not)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bnlab.resolvers import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("config"), resolve=True)
    before = json.loads(json.dumps(cfg))
    for node in ("ln", "gn", "noise"):
        del before["model"][node]
    assert fingerprint(cfg) == fingerprint(before)
    changed = json.loads(json.dumps(cfg))
    changed["model"]["gn"]["groups"] = 4
    assert fingerprint(changed) != fingerprint(before), "a non-neutral value still counts"
