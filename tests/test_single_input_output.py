"""KR305: a single input or output saved as a bare triple (Keras 3.11+), which
Keras 3.0-3.3 cannot read; and the port of a 3.15.1 archive down to them."""

import json

import pytest

from conftest import FIXTURES, assert_matches_reference, codes_of
from kerasrepair import check_archive, fix_archive, open_archive, write_archive
from kerasrepair.context import Options

RELEASES = FIXTURES / "releases"
ZOO_3_15 = RELEASES / "keras-3.15.1" / "layer_zoo.keras"  # output_layers: ["flatten", 0, 0]


@pytest.mark.parametrize("target", ["3.0", "3.3"])
def test_a_bare_output_triple_is_reported_for_3_0_to_3_3(target):
    found = [f for f in check_archive(ZOO_3_15, target).findings if f.code == "KR305"]
    assert [(f.location, f.fix) for f in found] == [("/config/output_layers", "safe")]
    assert "get_tensor() takes 3 positional arguments but 8 were given" in found[0].message


@pytest.mark.parametrize("target", ["3.4", "3.10", "3.15"])
def test_releases_that_read_a_bare_triple_are_not_told(target):
    assert "KR305" not in codes_of(check_archive(ZOO_3_15, target).findings)


def test_fix_writes_a_list_of_one(tmp_path):
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(ZOO_3_15, fixed, Options(keras="3.3"))
    assert result.left == []
    assert "KR305" in codes_of(result.changes)
    with open_archive(fixed) as archive:
        config = archive.config["config"]
    assert config["output_layers"] == [["flatten", 0, 0]]
    assert config["input_layers"] == [["x", 0, 0], ["ids", 0, 0]]  # already a list
    assert check_archive(fixed, "3.3").findings == []


def test_a_nested_model_and_a_single_input_are_read_too(tmp_path):
    source = RELEASES / "keras-3.0.5" / "nested_model_output.keras"
    with open_archive(source) as archive:
        config = archive.config
        config["config"]["input_layers"] = ["x", 0, 0]
        decoder = next(layer for layer in config["config"]["layers"] if layer["name"] == "decoder")
        decoder["config"]["output_layers"] = decoder["config"]["output_layers"][0]
        bare = write_archive(
            archive, tmp_path / "bare.keras", {"config.json": json.dumps(config).encode()}
        )
    found = [f.location for f in check_archive(bare, "3.3").findings if f.code == "KR305"]
    assert found == ["/config/input_layers", "/config/layers/2/config/output_layers"]


# -- proof: a model saved by the newest release, ported down and loaded there


@pytest.mark.releases
@pytest.mark.parametrize("release", ["3.0.5", "3.3.3"])
def test_a_3_15_archive_ported_down_loads_with_its_predictions_and_optimizer(release, tmp_path):
    from releases import probe

    reference = ZOO_3_15.with_suffix(".npz")
    before = probe(release, ZOO_3_15, reference)
    assert before["status"] == "load_error", before
    assert check_archive(ZOO_3_15, release).findings  # check predicts it
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(ZOO_3_15, fixed, Options(keras=release))
    assert result.left == []
    assert {"KR203", "KR210", "KR305"} <= set(codes_of(result.changes))
    after = probe(release, fixed, reference)
    assert_matches_reference(after, release)
    assert after["warnings"] == [], after
    original = probe("3.15.1", ZOO_3_15, reference)
    assert after["optimizer_iterations"] == original["optimizer_iterations"] == 1
