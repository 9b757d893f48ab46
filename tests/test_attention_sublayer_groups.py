"""KR211: MultiHeadAttention's projections stored as `query_dense`... (3.0.5+),
which Keras 3.0.0 reads as `_query_dense`..."""

import h5py
import pytest

from conftest import FIXTURES, assert_matches_reference
from kerasrepair import check_archive, fix_archive, open_archive
from kerasrepair.context import Options

ZOO = FIXTURES / "releases" / "keras-3.15.1" / "layer_zoo.keras"
MHA = "layers/multi_head_attention"
SUBLAYERS = ("query_dense", "key_dense", "value_dense", "output_dense")


def test_reported_for_3_0_0_only():
    found = [f for f in check_archive(ZOO, "3.0.0").findings if f.code == "KR211"]
    assert [(f.layer, f.fix) for f in found] == [("attention", "safe")]
    for target in ("3.0", "3.6", "3.15"):
        assert "KR211" not in {f.code for f in check_archive(ZOO, target).findings}


def test_the_groups_move_and_their_values_stay(tmp_path):
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(ZOO, fixed, Options(keras="3.0.0"))
    assert result.left == []
    moved = [c.location for c in result.changes if c.code == "KR211"]
    assert moved == [f"model.weights.h5:{MHA}/{sub}" for sub in SUBLAYERS]
    weights = {}
    for path, name in ((ZOO, "before"), (fixed, "after")):
        with open_archive(path) as archive:
            (tmp_path / f"{name}.h5").write_bytes(archive.read("model.weights.h5"))
        weights[name] = h5py.File(tmp_path / f"{name}.h5", "r")
    for sub in SUBLAYERS:
        assert f"{MHA}/{sub}" not in weights["after"]
        before = weights["before"][f"{MHA}/{sub}/vars/0"][()]
        assert (weights["after"][f"{MHA}/_{sub}/vars/0"][()] == before).all()
    assert check_archive(fixed, "3.0.0").findings == []


@pytest.mark.releases
def test_a_transformer_block_saved_by_3_15_loads_in_3_0_0(tmp_path):
    from releases import probe

    reference = ZOO.with_suffix(".npz")
    fixed = tmp_path / "fixed.keras"
    fix_archive(ZOO, fixed, Options(keras="3.0.0"))
    without = tmp_path / "without.keras"  # every other repair, not this one
    fix_archive(ZOO, without, Options(keras="3.0.0"), skip={"KR211"})
    failed = probe("3.0.0", without, reference)
    assert failed["status"] == "load_error" and "received 0 variables" in str(failed), failed
    after = probe("3.0.0", fixed, reference)
    assert_matches_reference(after, "3.0.0")
    assert after["optimizer_iterations"] == 1 and after["warnings"] == []
