"""KR212: a keras.ops operation saved with its name (Keras 3.11+), which the
operations of 3.0-3.10 do not take (`Cast.__init__() got an unexpected
keyword argument 'name'`)."""

import pytest

from conftest import FIXTURES, assert_matches_reference
from kerasrepair import check_archive, fix_archive, open_archive
from kerasrepair.context import Options

RELEASES = FIXTURES / "releases"
OPS_3_15 = RELEASES / "keras-3.15.1" / "ops_graph.keras"  # cast, multiply, exp, tanh, Dense
CAST = "/config/layers/1/config/name"


def _kr212(path, target):
    return [f for f in check_archive(path, target).findings if f.code == "KR212"]


@pytest.mark.parametrize("target", ["3.0", "3.6", "3.10"])
def test_an_operation_with_arguments_and_a_name_is_reported_up_to_3_10(target):
    found = _kr212(OPS_3_15, target)
    assert [(f.location, f.layer, f.fix) for f in found] == [(CAST, "cast_2", "safe")]
    assert "got an unexpected keyword argument 'name'" in found[0].message


def test_releases_that_take_the_name_and_archives_without_it_are_not_told():
    assert _kr212(OPS_3_15, "3.11") == [] and _kr212(OPS_3_15, "3.15") == []
    # 3.10 saves Cast without its name; Multiply, Exp, Tanh (no arguments) keep theirs
    assert _kr212(RELEASES / "keras-3.10.0" / "ops_graph.keras", "3.0") == []


def test_fix_drops_the_name_and_keeps_the_wiring(tmp_path):
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(OPS_3_15, fixed, Options(keras="3.10"))
    assert result.left == []
    assert [c.description for c in result.changes if c.code == "KR212"] == [
        "dropped 'name' ('cast_2')"
    ]
    with open_archive(fixed) as archive:
        cast = archive.config["config"]["layers"][1]
    assert cast["config"] == {"dtype": "float32"} and cast["name"] == "cast_2"
    assert _kr212(fixed, "3.10") == []


@pytest.mark.releases
@pytest.mark.parametrize("release", ["3.0.5", "3.10.0"])
def test_a_graph_of_3_15_ported_down_loads_there(release, tmp_path):
    from releases import probe

    reference = OPS_3_15.with_suffix(".npz")
    before = probe(release, OPS_3_15, reference)
    assert before["status"] == "load_error", before
    fixed = tmp_path / "fixed.keras"
    assert fix_archive(OPS_3_15, fixed, Options(keras=release)).left == []
    after = probe(release, fixed, reference)
    assert_matches_reference(after, release)
    assert after["optimizer_iterations"] == 1
