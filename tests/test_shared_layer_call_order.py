"""KR301, keras-team/keras#20307: a shared layer called again after a later
layer. Keras 3.0.0-3.6.0 fail to load it ("Layer node index out of bounds");
the repair rewrites exactly the calls the loader meets too early into the
legacy list form, and the model loads and predicts as before."""

import json

import pytest

from conftest import (
    FIXTURES,
    MODELS,
    assert_identical_to_original,
    assert_matches_reference,
    assert_predicts_reference,
)
from kerasrepair import fix_archive, open_archive
from kerasrepair.context import Options

RELEASE_FIXTURES = FIXTURES / "releases"

OLD = Options(keras="3.6")  # fixtures of models/ are saved by 3.15.1, which loads them


def _node(archive_path, pointer):
    from kerasrepair import pointer as json_pointer

    with open_archive(archive_path) as archive:
        return json_pointer.get(archive.config, pointer)


def test_the_second_call_becomes_a_legacy_node(tmp_path):
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(MODELS / "shared_layer_reused_later.keras", fixed, OLD, {"KR301"})
    assert [c.location for c in result.changes] == ["/config/layers/1/inbound_nodes/1"]
    assert _node(fixed, "/config/layers/1/inbound_nodes/1") == [["between", 0, 0, {}]]
    # the first call, which the loader can make at once, is left as Keras wrote it
    assert _node(fixed, "/config/layers/1/inbound_nodes/0")["args"][0]["class_name"] == (
        "__keras_tensor__"
    )


def test_a_layer_used_three_times_also_needs_the_call_that_waits_on_it(tmp_path):
    source = MODELS / "shared_layer_three_uses.keras"
    result = fix_archive(source, tmp_path / "fixed.keras", OLD, {"KR301"})
    # shared: call 2 waits for between_1; between_2 then waits for shared's call 2;
    # shared's call 3 waits for between_2
    assert [c.location for c in result.changes] == [
        "/config/layers/1/inbound_nodes/1",
        "/config/layers/3/inbound_nodes/0",
        "/config/layers/1/inbound_nodes/2",
    ]


def test_healthy_shared_layers_are_left_alone():
    # `t(t(x))`: the second call's input exists when the loader gets there
    result = fix_archive(MODELS / "functional_nested_shared.keras", None, OLD, {"KR301"})
    assert result.changes == []
    assert "KR301" not in {finding.code for finding in result.remaining}


def test_repaired_fixture_loads_in_keras_3_15_with_reference_predictions(keras, tmp_path):
    import numpy as np

    for name in ("shared_layer_reused_later", "shared_layer_three_uses"):
        fixed = tmp_path / f"{name}.keras"
        fix_archive(MODELS / f"{name}.keras", fixed, OLD, {"KR301"})
        model = keras.saving.load_model(fixed)
        original = keras.saving.load_model(MODELS / f"{name}.keras")  # 3.15 loads it
        with np.load(MODELS / f"{name}.npz") as reference:
            predicted = model.predict(reference["x"], verbose=0)
            # the reference was saved on the machine that made the fixtures: within
            # the tolerance; the original, in this process: bit for bit
            assert_predicts_reference(predicted, reference["y"])
            np.testing.assert_array_equal(predicted, original.predict(reference["x"], verbose=0))
        json.dumps(model.get_config())  # the loaded model serializes again


# The proof: archives saved by each release that fails, loaded there before and
# after the repair, and in the first fixed release and the newest.
FAILING_RELEASES = ["3.0.5", "3.3.3", "3.4.1", "3.6.0"]
SHARED = [
    "shared_layer_reused_later",
    "shared_layer_three_uses",
    "shared_add_reused",
    "shared_submodel_reused",
]


PROVEN = [(release, name) for release in FAILING_RELEASES for name in SHARED]
# Keras 3.0-3.2 also read the output `sub[2]` (call 2 of a nested model) one
# node too far: KR304 gives it an Identity layer for those releases
ALSO_KR304 = {("3.0.5", "shared_submodel_reused")}


@pytest.mark.releases
@pytest.mark.parametrize("release,name", PROVEN)
def test_repair_is_proven_in_the_release_that_fails(release, name, tmp_path):
    from releases import probe

    original = RELEASE_FIXTURES / f"keras-{release}" / f"{name}.keras"
    reference = original.with_suffix(".npz")
    before = probe(release, original, reference)
    assert before["status"] == "load_error", before
    assert "Layer node index out of bounds" in before["message"]

    fixed = tmp_path / f"{name}.keras"
    result = fix_archive(original, fixed)
    expected = {"KR301", "KR304"} if (release, name) in ALSO_KR304 else {"KR301"}
    assert {c.code for c in result.changes} == expected
    assert result.remaining == []

    for loader in (release, "3.7.0", "3.15.1"):
        # within the tolerance of the reference saved by the machine that made it;
        # where the original loads (3.7.0 on), bit for bit what it predicts there
        after = probe(loader, fixed, reference, compare_with=original)
        assert_matches_reference(after, loader)
        if loader == release:
            assert after["compared"]["status"] == "load_error", (loader, after)
        else:
            assert_identical_to_original(after, loader)


@pytest.mark.releases
def test_shared_submodel_saved_by_3_0_still_loads_in_fixed_releases_after_repair(tmp_path):
    from releases import probe

    original = RELEASE_FIXTURES / "keras-3.0.5" / "shared_submodel_reused.keras"
    fixed = tmp_path / "fixed.keras"
    fix_archive(original, fixed)
    for loader in ("3.7.0", "3.15.1"):
        after = probe(loader, fixed, original.with_suffix(".npz"))
        assert after["status"] == "ok", (loader, after)
