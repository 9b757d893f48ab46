"""KR213: objects named by their keras.src module (as Keras 3.0.0 writes every
object): Keras 3.11+ import those paths only for KerasSaveable classes, so a
learning-rate schedule fails; the rest is no unknown class."""

import pytest

from conftest import FIXTURES, assert_matches_reference
from kerasrepair import check_archive, fix_archive, open_archive, pointer
from kerasrepair.context import Options

RELEASES = FIXTURES / "releases"
ZOO_3_0_0 = RELEASES / "keras-3.0.0" / "layer_zoo.keras"  # Adam with an ExponentialDecay
SCHEDULE = "/compile_config/optimizer/config/learning_rate/module"


def test_the_schedule_is_reported_for_3_11_on_and_nothing_else():
    for target in ("3.11", "3.15"):
        found = check_archive(ZOO_3_0_0, target).findings
        assert [(f.code, f.location, f.fix) for f in found] == [("KR213", SCHEDULE, "safe")]
    for target in ("3.0.0", "3.0", "3.6", "3.10"):
        assert check_archive(ZOO_3_0_0, target).findings == []


def test_layers_and_initializers_under_their_module_paths_are_known_to_3_15():
    """healthy_mlp of 3.0.0 (Dense, BatchNormalization, GlorotUniform, Zeros ... all
    under keras.src paths) loads in 3.15.1: the manifest's observation, and below."""
    assert check_archive(RELEASES / "keras-3.0.0" / "healthy_mlp.keras", "3.15").findings == []


def test_fix_writes_the_public_module(tmp_path):
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(ZOO_3_0_0, fixed, Options(keras="3.15"))
    assert [(c.code, c.location) for c in result.changes] == [("KR213", SCHEDULE)]
    with open_archive(fixed) as archive:
        assert pointer.get(archive.config, SCHEDULE) == "keras.optimizers.schedules"
    assert check_archive(fixed, "3.15").findings == []


@pytest.mark.releases
def test_an_archive_of_3_0_0_ported_to_3_15_loads_there(tmp_path):
    from releases import probe

    reference = ZOO_3_0_0.with_suffix(".npz")
    before = probe("3.15.1", ZOO_3_0_0, reference)
    assert "not a KerasSaveable subclass" in str(before), before
    fixed = tmp_path / "fixed.keras"
    assert fix_archive(ZOO_3_0_0, fixed, Options(keras="3.15")).left == []
    after = probe("3.15.1", fixed, reference)
    assert_matches_reference(after, "3.15.1")
    assert (
        after["optimizer_iterations"]
        == probe("3.0.0", ZOO_3_0_0, reference)["optimizer_iterations"]
    )
    healthy = RELEASES / "keras-3.0.0" / "healthy_mlp.keras"
    assert_matches_reference(probe("3.15.1", healthy, healthy.with_suffix(".npz")), "3.15.1")
