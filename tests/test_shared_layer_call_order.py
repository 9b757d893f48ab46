"""KR301, keras-team/keras#20307: a shared layer called again after a later
layer. Keras 3.0.0-3.6.0 fail to load it ("Layer node index out of bounds");
the repair rewrites exactly the calls the loader meets too early into the
legacy list form, and the model loads and predicts as before."""

import json

from conftest import MODELS
from kerasrepair import open_archive
from kerasrepair.repair import fix_archive


def _node(archive_path, pointer):
    from kerasrepair import graph

    with open_archive(archive_path) as archive:
        return graph.resolve(archive.config, pointer)


def test_the_second_call_becomes_a_legacy_node(tmp_path):
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(MODELS / "shared_layer_reused_later.keras", fixed)
    assert [c.location for c in result.changes] == ["/config/layers/1/inbound_nodes/1"]
    assert _node(fixed, "/config/layers/1/inbound_nodes/1") == [["between", 0, 0, {}]]
    # the first call, which the loader can make at once, is left as Keras wrote it
    assert _node(fixed, "/config/layers/1/inbound_nodes/0")["args"][0]["class_name"] == (
        "__keras_tensor__"
    )


def test_a_layer_used_three_times_also_needs_the_call_that_waits_on_it(tmp_path):
    result = fix_archive(MODELS / "shared_layer_three_uses.keras", tmp_path / "fixed.keras")
    # shared: call 2 waits for between_1; between_2 then waits for shared's call 2;
    # shared's call 3 waits for between_2
    assert [c.location for c in result.changes] == [
        "/config/layers/1/inbound_nodes/1",
        "/config/layers/3/inbound_nodes/0",
        "/config/layers/1/inbound_nodes/2",
    ]


def test_healthy_shared_layers_are_left_alone():
    # `t(t(x))`: the second call's input exists when the loader gets there
    result = fix_archive(MODELS / "functional_nested_shared.keras", None)
    assert result.changes == [] and result.remaining == []


def test_repaired_fixture_loads_in_keras_3_15_with_reference_predictions(keras, tmp_path):
    import numpy as np

    for name in ("shared_layer_reused_later", "shared_layer_three_uses"):
        fixed = tmp_path / f"{name}.keras"
        fix_archive(MODELS / f"{name}.keras", fixed)
        model = keras.saving.load_model(fixed)
        with np.load(MODELS / f"{name}.npz") as reference:
            np.testing.assert_array_equal(model.predict(reference["x"], verbose=0), reference["y"])
        json.dumps(model.get_config())  # the loaded model serializes again
