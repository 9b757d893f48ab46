"""KR210: Orthogonal / Identity initializers under their Keras 3.7+ names,
which older releases cannot resolve inside a layer (Orthogonal: 3.0-3.3)."""

import pytest

from conftest import FIXTURES, assert_matches_reference
from kerasrepair import check_archive, fix_archive, open_archive
from kerasrepair.context import Options

RELEASES = FIXTURES / "releases"
GRU = "/config/layers/9/config/recurrent_initializer/class_name"  # layer_zoo's GRU


@pytest.mark.parametrize("saved_by", ["3.7.0", "3.15.1"])
def test_the_new_name_is_reported_for_3_0_to_3_3_only(saved_by):
    source = RELEASES / f"keras-{saved_by}" / "layer_zoo.keras"
    for target in ("3.0", "3.3"):
        found = [f for f in check_archive(source, target).findings if f.code == "KR210"]
        assert [(f.location, f.layer, f.fix) for f in found] == [(GRU, "gru", "safe")]
    for target in ("3.4", "3.6", "3.15"):  # "Orthogonal": OrthogonalInitializer, # Legacy
        assert "KR210" not in {f.code for f in check_archive(source, target).findings}


def test_archives_of_3_0_to_3_6_write_the_old_name_and_are_left_alone():
    source = RELEASES / "keras-3.6.0" / "layer_zoo.keras"
    with open_archive(source) as archive:
        from kerasrepair import pointer

        assert pointer.get(archive.config, GRU) == "OrthogonalInitializer"
    assert "KR210" not in {f.code for f in check_archive(source, "3.0").findings}


def test_fix_writes_the_old_name(tmp_path):
    fixed = tmp_path / "fixed.keras"
    source = RELEASES / "keras-3.7.0" / "layer_zoo.keras"
    result = fix_archive(source, fixed, Options(keras="3.3"))
    assert [c.description for c in result.changes if c.code == "KR210"] == [
        "Orthogonal -> OrthogonalInitializer"
    ]
    assert result.left == []
    with open_archive(fixed) as archive:
        from kerasrepair import pointer

        assert pointer.get(archive.config, GRU) == "OrthogonalInitializer"


@pytest.mark.releases
def test_a_3_7_gru_ported_to_3_3_loads_there(tmp_path):
    from releases import probe

    source = RELEASES / "keras-3.7.0" / "layer_zoo.keras"
    reference = source.with_suffix(".npz")
    before = probe("3.3.3", source, reference)
    assert before["status"] == "load_error", before
    fixed = tmp_path / "fixed.keras"
    assert fix_archive(source, fixed, Options(keras="3.3")).left == []
    assert_matches_reference(probe("3.3.3", fixed, reference), "3.3.3")
    # 3.4 reads the short name itself: loaded as saved
    assert_matches_reference(probe("3.4.1", source, reference), "3.4.1")


def test_the_old_name_is_known_to_every_release():
    """3.7+ keep "OrthogonalInitializer" in ALL_OBJECTS_DICT "For compatibility":
    an archive of 3.0-3.6 is no unknown class to them."""
    source = RELEASES / "keras-3.0.5" / "layer_zoo.keras"
    for target in ("3.0", "3.6", "3.7", "3.12", "3.15"):
        assert check_archive(source, target).findings == [], target


@pytest.mark.releases
def test_an_archive_of_3_0_5_loads_in_3_15_as_check_says():
    from releases import probe

    source = RELEASES / "keras-3.0.5" / "layer_zoo.keras"
    assert check_archive(source, "3.15").findings == []
    assert_matches_reference(probe("3.15.1", source, source.with_suffix(".npz")), "3.15.1")
