"""KR702: Keras 2's `batch_input_shape` becomes an InputLayer's `batch_shape`
(renamed on an InputLayer, dropped on any other layer, moved to a new InputLayer
before the first layer of a Sequential that has none); an Embedding's
`input_length` is dropped."""

import copy
import json

import pytest

from conftest import FIXTURES, MODELS
from kerasrepair import open_archive
from kerasrepair import pointer as json_pointer
from kerasrepair.api import fix_archive
from kerasrepair.check import check
from kerasrepair.context import Context, Options
from kerasrepair.fix import fix
from kerasrepair.passes import keras2_input_shape
from kerasrepair.writer import write_archive

KERAS2 = FIXTURES / "keras2"
KERAS3 = MODELS / "sequential_mlp.keras"


def findings(path, keras=None, code="KR702"):
    with open_archive(path) as archive:
        return [f for f in check(archive, keras).findings if f.code == code]


def fixed(path, keras=None):
    with open_archive(path) as archive:
        return fix(archive, Options(keras=keras))


def variant(tmp_path, name, edit):
    """A copy of fixture `name` whose config.json `edit` changed."""
    with open_archive(KERAS2 / name) as archive:
        config = copy.deepcopy(archive.config)
        edit(config)
        target = tmp_path / name
        write_archive(archive, target, {"config.json": json.dumps(config).encode()})
    return target


def without_input_layer(config):
    """A Sequential as Keras 2.2-2.3 saved it: no InputLayer, the first layer
    holds `batch_input_shape`."""
    layers = config["config"]["layers"]
    assert layers[0]["class_name"] == "InputLayer"
    del layers[0]
    assert "batch_input_shape" in layers[0]["config"]


@pytest.mark.parametrize("name", ["mlp_trained.keras", "mlp_trained.h5", "mlp_tf212.h5"])
def test_sequential_with_input_layer(name):
    found = findings(KERAS2 / name)
    assert [(f.location, f.fix, f.layer) for f in found] == [
        ("/config/layers/0/config/batch_input_shape", "safe", "dense_input"),
        ("/config/layers/1/config/batch_input_shape", "safe", "dense"),
    ]
    layers = fixed(KERAS2 / name).edit.config["config"]["layers"]
    assert [layer["class_name"] for layer in layers] == ["InputLayer", "Dense", "Dense"]
    assert layers[0]["config"]["batch_shape"] == [None, 5]
    assert "batch_input_shape" not in layers[0]["config"]
    assert "batch_input_shape" not in layers[1]["config"]
    assert layers[1]["config"]["units"] == 8


def test_sequential_without_input_layer_gets_one(tmp_path):
    path = variant(tmp_path, "mlp_trained.keras", without_input_layer)
    found = findings(path)
    assert [(f.location, f.fix) for f in found] == [
        ("/config/layers/0/config/batch_input_shape", "safe")
    ]
    result = fixed(path)
    layers = result.edit.config["config"]["layers"]
    assert layers[0] == {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {
            "batch_shape": [None, 5],
            "dtype": "float32",
            "sparse": False,
            "name": "dense_input",
        },
        "registered_name": None,
    }
    assert [layer["config"]["name"] for layer in layers] == ["dense_input", "dense", "dense_1"]
    assert "batch_input_shape" not in layers[1]["config"]
    assert [c.location for c in result.changes if c.code == "KR702"] == [
        "/config/layers/0/config/batch_input_shape"
    ]
    assert not [f for f in result.left if f.code.startswith("KR70") and f.code != "KR708"]


def test_inserted_input_layer_of_a_mixed_precision_model_is_float32(tmp_path, keras):
    """The first Dense's dtype is a Policy (KR704 makes it "mixed_float16"); an
    InputLayer's dtype is a tensor dtype: Keras 3 writes "float32" for it (as
    tf.keras did, see mixed_precision.keras), and InputLayer(dtype=
    "mixed_float16") fails: ValueError: Invalid dtype: mixed_float16."""
    path = variant(tmp_path, "mixed_precision.keras", without_input_layer)
    layers = fixed(path).edit.config["config"]["layers"]
    assert layers[0]["class_name"] == "InputLayer"
    assert layers[0]["config"]["batch_shape"] == [None, 4]
    assert layers[1]["config"]["dtype"] == "mixed_float16"
    # what load_model does with it (Keras 3.15.1 here)
    input_layer = keras.layers.deserialize(layers[0])
    assert tuple(input_layer.batch_shape) == (None, 4)
    assert layers[0]["config"]["dtype"] == "float32"


@pytest.mark.parametrize("name", ["embedding_lstm.keras", "embedding_lstm.h5"])
def test_embedding_input_length_is_dropped(name):
    found = findings(KERAS2 / name)
    assert [(f.location, f.fix) for f in found] == [
        ("/config/layers/0/config/batch_input_shape", "safe"),
        ("/config/layers/1/config/input_length", "safe"),
        ("/config/layers/1/config/batch_input_shape", "safe"),
    ]
    layers = fixed(KERAS2 / name).edit.config["config"]["layers"]
    assert layers[0]["config"]["batch_shape"] == [None, 6]
    embedding = layers[1]["config"]
    assert "input_length" not in embedding and "batch_input_shape" not in embedding
    assert (embedding["input_dim"], embedding["output_dim"], embedding["mask_zero"]) == (
        20,
        4,
        True,
    )


def test_embedding_first_of_a_sequential_without_input_layer(tmp_path):
    path = variant(tmp_path, "embedding_lstm.keras", without_input_layer)
    assert [f.location for f in findings(path)] == [
        "/config/layers/0/config/input_length",
        "/config/layers/0/config/batch_input_shape",
    ]
    layers = fixed(path).edit.config["config"]["layers"]
    assert layers[0]["class_name"] == "InputLayer"
    assert layers[0]["config"]["batch_shape"] == [None, 6]
    assert layers[0]["config"]["name"] == "embedding_input"
    assert layers[1]["class_name"] == "Embedding"
    assert "input_length" not in layers[1]["config"]
    assert "batch_input_shape" not in layers[1]["config"]


def test_input_layers_of_nested_models_are_renamed():
    locations = {
        "/config/layers/0/config": [None, 16, 16, 3],  # the outer Sequential's
        "/config/layers/1/config/layers/0/config": [None, 16, 16, 3],  # nested Functional
        "/config/layers/2/config/layers/0/config": [None, 8],  # nested Sequential
    }
    found = findings(KERAS2 / "teachable_machine.keras")
    assert {f.location for f in found} == {f"{p}/batch_input_shape" for p in locations}
    config = fixed(KERAS2 / "teachable_machine.keras").edit.config
    for where, shape in locations.items():
        arguments = json_pointer.get(config, where)
        assert arguments["batch_shape"] == shape, where
        assert "batch_input_shape" not in arguments
    assert len(config["config"]["layers"]) == 3  # nothing inserted


def test_functional_layer_other_than_an_input_loses_it(tmp_path):
    def on_a_dense(config):
        dense = config["config"]["layers"][2]
        assert dense["class_name"] == "Dense"
        dense["config"]["batch_input_shape"] = [None, 4]

    path = variant(tmp_path, "two_input_shared.keras", on_a_dense)
    assert "/config/layers/2/config/batch_input_shape" in {f.location for f in findings(path)}
    result = fixed(path)
    layers = result.edit.config["config"]["layers"]
    assert [layer["class_name"] for layer in layers][:3] == ["InputLayer", "InputLayer", "Dense"]
    assert "batch_input_shape" not in layers[2]["config"]
    assert [
        c.description for c in result.changes if c.location.startswith("/config/layers/2/")
    ] == ["dropped [None, 4]"]


@pytest.mark.parametrize(
    "name", ["mlp_trained.keras", "embedding_lstm.h5", "teachable_machine.keras", "mlp_trained.h5"]
)
def test_converted_output_needs_nothing_more(tmp_path, name):
    out = tmp_path / "converted.keras"
    first = fix_archive(KERAS2 / name, out)
    assert any(c.code == "KR702" for c in first.changes) and first.output == str(out)
    with open_archive(out) as archive:
        assert "batch_input_shape" not in archive.config_bytes.decode()
        assert check(archive).findings == []
        assert fix(archive).changes == []


def test_converted_sequential_without_input_layer_needs_nothing_more(tmp_path):
    path = variant(tmp_path, "mlp_trained.keras", without_input_layer)
    out = tmp_path / "converted.keras"
    fix_archive(path, out)
    with open_archive(out) as archive:
        assert archive.config["config"]["layers"][0]["class_name"] == "InputLayer"
        assert findings(out) == []
        assert fix(archive).changes == []


def test_detect_finds_nothing_in_a_keras3_archive():
    with open_archive(KERAS3) as archive:
        assert "batch_shape" in archive.config_bytes.decode()
        ctx = Context(archive, archive.config, Options())
        assert keras2_input_shape.detect(ctx) == []
    assert findings(KERAS3) == []
