"""KR601, keras-team/keras#20072: `Rescaling(np.array(...))` saves its scale as a
`__numpy__` object. Keras 3.0.0-3.4.1 load the model, then fail at the first
call ('TrackedDict'); the repair writes the plain list, and every release then
predicts what the original model predicted."""

import pytest

from conftest import FIXTURES, MODELS, assert_identical_to_original, assert_matches_reference
from kerasrepair import fix_archive, open_archive
from kerasrepair import pointer as json_pointer
from kerasrepair.context import Options

FAILING_RELEASES = ["3.0.5", "3.3.3", "3.4.1"]


def test_numpy_objects_become_lists(tmp_path):
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(MODELS / "numpy_rescaling.keras", fixed, Options(keras="3.4"), {"KR601"})
    assert [c.location for c in result.changes] == [
        "/config/layers/1/config/scale",
        "/config/layers/1/config/offset",
    ]
    with open_archive(fixed) as archive:
        scale = json_pointer.get(archive.config, "/config/layers/1/config/scale")
    assert scale == [1 / 255.0, 1 / 127.5, 0.5, 2.0]


def test_numpy_inside_an_initializer_is_left_alone(keras, saved, tmp_path):
    import numpy as np

    initializer = keras.initializers.Constant(np.array([0.5, -0.5], dtype="float32"))
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2, bias_initializer=initializer)]
    )
    source = saved(model, "constant_numpy")
    assert b"__numpy__" in source.read_bytes()
    result = fix_archive(source, tmp_path / "out.keras")
    assert result.changes == [] and result.remaining == []
    assert (tmp_path / "out.keras").read_bytes() == source.read_bytes()


@pytest.mark.releases
@pytest.mark.parametrize("release", FAILING_RELEASES)
def test_repair_is_proven_in_the_release_that_fails(release, tmp_path):
    from releases import probe

    original = FIXTURES / "releases" / f"keras-{release}" / "numpy_rescaling.keras"
    reference = original.with_suffix(".npz")
    before = probe(release, original, reference)
    assert before["status"] == "call_error", before
    assert "TrackedDict" in (before.get("detail") or "") + before["message"], before

    fixed = tmp_path / "fixed.keras"
    result = fix_archive(original, fixed)
    assert {c.code for c in result.changes} == {"KR601"}
    for loader in (release, "3.6.0", "3.15.1"):
        # within the tolerance of the reference saved by the machine that made it;
        # where the original works (3.6.0 on), bit for bit what it predicts there
        after = probe(loader, fixed, reference, compare_with=original)
        assert_matches_reference(after, loader)
        if loader == release:
            assert after["compared"]["status"] == "call_error", (loader, after)
        else:
            assert_identical_to_original(after, loader)
