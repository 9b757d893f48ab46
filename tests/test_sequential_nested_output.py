"""KR306: a Functional model inside a Sequential, its single output saved as a
list of one, which Keras 3.4 and 3.11+ rebuild returning a list
(keras-team/keras#19959)."""

import pytest

from conftest import FIXTURES, assert_matches_reference
from kerasrepair import check_archive, fix_archive, open_archive
from kerasrepair.context import Options

RELEASES = FIXTURES / "releases"
NAME = "sequential_nested_functional"  # Sequential([Input, inner (Functional), Dense])
INNER_OUTPUT = "/config/layers/1/config/output_layers"


def _source(release):
    return RELEASES / f"keras-{release}" / f"{NAME}.keras"


def _kr306(path, target=None):
    return [f for f in check_archive(path, target).findings if f.code == "KR306"]


@pytest.mark.parametrize("saved_by", ["3.3.3", "3.4.1", "3.6.0", "3.10.0"])
def test_reported_for_3_0_to_3_2_3_4_and_3_11_on(saved_by):
    for target in ("3.4", "3.11", "3.15"):
        found = _kr306(_source(saved_by), target)
        assert [(f.location, f.layer, f.fix) for f in found] == [(INNER_OUTPUT, "inner", "safe")]
    for target in ("3.0", "3.2"):  # they read no bare triple either
        found = _kr306(_source(saved_by), target)
        assert [(f.location, f.fix) for f in found] == [(INNER_OUTPUT, None)]
        assert "Keras 3.3 or 3.5-3.10" in found[0].hint
    for target in ("3.3", "3.5", "3.6", "3.10"):  # they unwrap the list
        assert _kr306(_source(saved_by), target) == []


def test_archives_of_3_11_on_save_the_bare_triple():
    assert _kr306(_source("3.11.3"), "3.4") == [] and _kr306(_source("3.15.1"), "3.4") == []


def test_fix_writes_the_bare_triple(tmp_path):
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(_source("3.4.1"), fixed)  # its own release: 3.4.1
    assert [c.code for c in result.changes] == ["KR306"] and result.left == []
    with open_archive(fixed) as archive:
        from kerasrepair import pointer

        assert pointer.get(archive.config, INNER_OUTPUT) == ["inner_dense", 0, 0]
    assert _kr306(fixed, "3.15") == [] and check_archive(fixed, "3.6").findings == []


@pytest.mark.releases
@pytest.mark.parametrize(
    "saved_by,target", [("3.4.1", "3.4.1"), ("3.6.0", "3.4.1"), ("3.6.0", "3.15.1")]
)  # and in 3.0.5, 3.1.1, 3.2.1 their own saves predict a list: manifest.json, observed
def test_the_port_returns_what_the_model_returned(saved_by, target, tmp_path):
    from releases import probe

    source = _source(saved_by)
    reference = source.with_suffix(".npz")
    before = probe(target, source, reference)
    assert before["status"] == "mismatch", before  # a list, not the array
    fixed = tmp_path / "fixed.keras"
    assert fix_archive(source, fixed, Options(keras=target)).left == []
    after = probe(target, fixed, reference)
    assert_matches_reference(after, target)
    assert after["optimizer_iterations"] == 1


@pytest.mark.releases
def test_in_3_0_5_it_predicts_a_list_and_fix_says_so():
    from releases import probe

    source = _source("3.0.5")
    assert probe("3.0.5", source, source.with_suffix(".npz"))["status"] == "mismatch"
    result = fix_archive(source, None)  # its own release
    assert [(f.code, f.fix) for f in result.left] == [("KR306", None)]


def test_a_nested_model_followed_by_a_model_is_left_alone():
    """Teachable Machine's Sequential([model1, sequential_head]): the head takes
    model1's list of one as its tensor (proven loading in 3.0.5 and 3.15.1 by
    test_keras2_proof)."""
    source = FIXTURES / "keras2" / "teachable_machine.h5"
    for target in ("3.0", "3.4", "3.15"):
        assert _kr306(source, target) == []
