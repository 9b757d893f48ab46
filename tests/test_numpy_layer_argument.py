"""KR601, keras-team/keras#20072: `Rescaling(np.array(...))` saves its scale as a
`__numpy__` object. Keras 3.0.0-3.4.1 load the model, then fail at the first
call ('TrackedDict'); the repair writes the plain list, and every release then
predicts what the original model predicted."""

import pytest

from conftest import FIXTURES, MODELS
from kerasrepair import graph, open_archive
from kerasrepair.repair import fix_archive

FAILING_RELEASES = ["3.0.5", "3.3.3", "3.4.1"]


def test_numpy_objects_become_lists(tmp_path):
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(MODELS / "numpy_rescaling.keras", fixed)
    assert [c.location for c in result.changes] == [
        "/config/layers/1/config/scale",
        "/config/layers/1/config/offset",
    ]
    with open_archive(fixed) as archive:
        scale = graph.resolve(archive.config, "/config/layers/1/config/scale")
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
        after = probe(loader, fixed, reference)
        assert after["status"] == "ok", (loader, after)
        assert after["max_abs_diff"] == 0.0, (loader, after)
