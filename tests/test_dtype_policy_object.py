"""KR209: a DTypePolicy object (Keras 3.4+) as a layer's dtype, which Keras
3.0.0 cannot find; quantized policies have no equivalent before 3.4."""

import json

import pytest

from conftest import FIXTURES, assert_matches_reference, codes_of
from kerasrepair import check_archive, fix_archive, open_archive, write_archive
from kerasrepair.context import Options

RELEASES = FIXTURES / "releases"
MLP_3_6 = RELEASES / "keras-3.6.0" / "healthy_mlp.keras"


def test_policy_objects_are_reported_for_3_0_0_once_each():
    found = check_archive(MLP_3_6, "3.0.0").findings
    assert codes_of(found).count("KR209") == 4  # the model's, dense_in, batch_norm, dense_out
    assert "KR205" not in codes_of(found)  # not an unknown class as well
    assert "Could not locate class 'DTypePolicy'" in found[0].message


@pytest.mark.parametrize("target", ["3.0", "3.3", "3.6"])
def test_releases_that_find_the_class_are_not_told(target):
    assert "KR209" not in codes_of(check_archive(MLP_3_6, target).findings)


def test_fix_writes_the_policy_name(tmp_path):
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(MLP_3_6, fixed, Options(keras="3.0.0"))
    assert result.left == []
    assert codes_of(result.changes).count("KR209") == 4
    with open_archive(fixed) as archive:
        config = archive.config["config"]
    assert [layer["config"]["dtype"] for layer in config["layers"]] == ["float32"] * 4
    assert config["dtype"] == "float32"
    assert check_archive(fixed, "3.0.0").findings == []


def test_a_quantized_policy_is_reported_without_a_fix(tmp_path):
    with open_archive(MLP_3_6) as archive:
        config = archive.config
        dense = config["config"]["layers"][1]
        dense["config"]["dtype"] = {
            "module": "keras",
            "class_name": "QuantizedDTypePolicy",
            "config": {"name": "int8_from_float32", "source_name": "float32"},
            "registered_name": None,
        }
        path = write_archive(
            archive, tmp_path / "q.keras", {"config.json": json.dumps(config).encode()}
        )
    result = fix_archive(path, None, Options(keras="3.0.0"))
    left = [f for f in result.left if f.code == "KR209"]
    assert len(left) == 1 and left[0].fix is None
    assert "Keras 3.4 or newer" in left[0].hint


@pytest.mark.releases
@pytest.mark.parametrize(
    "saved_by,name",
    [
        ("3.6.0", "healthy_mlp"),
        ("3.15.1", "layer_zoo"),
    ],  # layer_zoo: KR203, KR210, KR211, KR305 too
)
def test_ported_to_3_0_0_it_loads_there(saved_by, name, tmp_path):
    from releases import probe

    source = RELEASES / f"keras-{saved_by}" / f"{name}.keras"
    reference = source.with_suffix(".npz")
    before = probe("3.0.0", source, reference)
    assert before["status"] == "load_error", before
    fixed = tmp_path / "fixed.keras"
    assert fix_archive(source, fixed, Options(keras="3.0.0")).left == []
    after = probe("3.0.0", fixed, reference)
    assert_matches_reference(after, "3.0.0")
    assert after["warnings"] == [], after
    original = probe(saved_by, source, reference)
    assert after["optimizer_iterations"] == original["optimizer_iterations"] > 0
