"""The study-design rules of DESIGN.md ("Pre-registered hypotheses"), checked on the real study
files and the committed runs: one primary hypothesis per claim and dataset, and no selection
that reads test data."""
import numpy as np
import pytest

from bnlab.analysis.frames import frame_from_csv
from bnlab.analysis.claim_measures import claim_measure
from bnlab.analysis.selection import best_settings, gain_choice, where
from bnlab.analysis.spec import (DATASETS, PRIMARY_CLAIMS, check_primaries, list_studies, load_spec,
                                 primaries)
from bnlab.errors import ConfigError
from bnlab.resolvers import REPO_ROOT

RESULTS = REPO_ROOT / "results"


def test_the_studies_hold_one_primary_per_claim_and_dataset():
    specs = [load_spec(n) for n in list_studies()]
    check_primaries(specs, complete=True)  # raises on two, or on one missing
    found = {(c, d) for s in specs for c, d, _ in primaries(s)}
    assert found == {(c, d) for c in PRIMARY_CLAIMS for d in DATASETS}


def _study_file(tmp_path, name, claims):
    (tmp_path / f"{name}.yaml").write_text(
        f"name: {name}\nanalysis:\n  arm_key: model.norm\n  baseline: none\n  treatment: batch\n  claims:\n"
        + "".join(f"    - {{claim: {c}, id: {i}, family: {f}, kind: compare, metric: best/test/acc}}\n"
                  for c, i, f in claims))


def test_two_primaries_for_one_claim_and_dataset_fail_in_one_line(tmp_path):
    _study_file(tmp_path, "twice", [("accuracy", "a1", "primary"), ("accuracy", "a2", "primary")])
    with pytest.raises(ConfigError) as err:
        load_spec("twice", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "two primary hypotheses" in msg and "a1" in msg and "a2" in msg
    # across studies too, and a family that does not exist
    _study_file(tmp_path, "one", [("accuracy", "a1", "primary")])
    _study_file(tmp_path, "other", [("accuracy", "b1", "primary")])
    with pytest.raises(ConfigError, match="one:a1 and other:b1"):
        check_primaries([load_spec("one", tmp_path), load_spec("other", tmp_path)])
    with pytest.raises(ConfigError, match="no primary hypothesis for"):
        check_primaries([load_spec("one", tmp_path)], complete=True)
    _study_file(tmp_path, "bad", [("accuracy", "a1", "headline")])
    with pytest.raises(ConfigError, match="allowed: primary, mechanism"):
        load_spec("bad", tmp_path)


def _scramble_test_columns(runs):
    """Every test-data column replaced by noise: a selection that reads any of them changes."""
    rng = np.random.default_rng(0)
    out = runs.copy()
    cols = [c for c in out.columns if "test/" in c or c.startswith("test")]
    for c in cols:
        out[c] = rng.uniform(0, 1, len(out))
    out["curves"] = [{k: v for k, v in c.items() if "test/" not in k} for c in out["curves"]]
    return out, cols


TUNED = [n for n in list_studies() if load_spec(n).tune and (RESULTS / n / "runs.csv").is_file()]


def test_the_tuned_studies_with_committed_runs_are_all_checked():
    assert {"ioffe_fig1", "mnist_mlp", "dropout_wide_mnist", "dropout_cifar", "noisy_bn_mnist"} <= set(TUNED)


@pytest.mark.parametrize("name", TUNED)
def test_no_selection_reads_test_data(name):
    """Every setting a study chooses (each claim's, gain claims' chosen and reference values) is
    the same when every test-data column is noise: selection reads validation data only."""
    spec = load_spec(name)
    runs = frame_from_csv(RESULTS / name / "runs.csv")
    scrambled, cols = _scramble_test_columns(runs)
    assert cols, "the committed runs have test columns to scramble"
    assert not spec.select_on.startswith(("test", "best/test"))
    for claim in spec.claims:
        assert "test/" not in str(claim.get("select_on", "")), claim
        for comp in spec.claim_comparisons(claim):
            s = spec.for_comparison(comp)
            if claim.get("kind") == "gain":
                assert gain_choice(runs, s, claim) == gain_choice(scrambled, s, claim), claim.get("id")
                continue
            real, c_real = claim_measure(where(runs, claim), s, claim)
            noise, c_noise = claim_measure(where(scrambled, claim), s, claim)
            assert c_real.get("target_value") == c_noise.get("target_value")
            assert best_settings(real, s, c_real) == best_settings(noise, s, c_noise), (name, claim.get("id"))


def test_every_citation_links_the_work_it_names_first():
    """A claim's `url` is the page of the first work its `literature` names (a timing row once
    linked Garbin et al. to Ioffe's paper); every cited work is in the report's list."""
    from bnlab.views.citations import named_works

    for name in list_studies():
        for c in load_spec(name).claims:
            lit, url = c.get("literature", ""), c.get("url", "")
            works = named_works(lit)
            where = f"{name}: {c.get('id', c['claim'])}"
            assert lit and works, f"{where}: its literature names no work of bnlab.views.citations.WORKS"
            assert url == works[0][1], f"{where}: url {url} is not {works[0][0]}'s page {works[0][1]}"


def test_no_study_note_says_missing_what_the_code_has():
    """Notes and descriptions that call a norm, model or control "not implemented" go stale when
    it lands (the ICS row said so of noisy BN long after it existed)."""
    import re
    from bnlab.norms import NORMS
    from bnlab.models import MODELS

    stale = re.compile(r"not (yet )?implemented|is missing|to be added", re.I)
    for name in list_studies():
        spec = load_spec(name)
        for text in [spec.description] + [c.get(k, "") for c in spec.claims for k in ("note", "literature")]:
            assert not stale.search(text), f"{name}: {text[:120]!r}"
    assert {"none", "batch", "noisy_batch", "noise", "layer", "group"} <= set(NORMS)
    assert {"mlp", "vgg", "resnet20"} <= set(MODELS)


def test_a_misspelt_claim_key_is_a_one_line_error_at_load(tmp_path):
    """Claims are typed records (bnlab.analysis.records.Claim): a key that is no field of one
    fails at load, naming the key and the allowed ones, before any analysis."""
    from bnlab.analysis.records import CLAIM_KEYS

    text = (REPO_ROOT / "experiments" / "lr_mnist.yaml").read_text().replace("min_effect:", "min_efect:", 1)
    (tmp_path / "typo.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_spec("typo", tmp_path)
    message = str(err.value)
    assert "\n" not in message and "analysis.claims[0].min_efect" in message and "min_effect" in message
    assert "min_effect" in CLAIM_KEYS and "target_value" not in CLAIM_KEYS  # set as it is judged, never written
