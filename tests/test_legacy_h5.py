"""kerasrepair.legacy_h5: legacy HDF5 Keras files (tf.keras `model.save("m.h5")`,
`save_weights("w.h5")`), described without reading weight data; anything
unreadable or unsafe is one ArchiveError line.

Real files: fixtures/keras2/*.h5 (tf.keras 2.15.0, and 2.12.0 for mlp_tf212).
Malformed ones are built here with h5py in the legacy layout.
"""

import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from kerasrepair.errors import ArchiveError
from kerasrepair.legacy_h5 import (
    KERAS3_WEIGHTS,
    MODEL,
    WEIGHTS,
    LegacyWeight,
    read_legacy,
    read_legacy_file,
)

KERAS2 = Path(__file__).resolve().parent.parent / "fixtures" / "keras2"
H5_FIXTURES = [
    "mlp_trained",
    "cnn_batchnorm",
    "teachable_machine",
    "conv_transpose",
    "embedding_lstm",
    "gru_masking",
    "two_input_shared",
    "nested_sequential",
    "mixed_precision",
    "lambda_layer",
    "mlp_tf212",
]


@pytest.mark.parametrize("name", H5_FIXTURES)
def test_reads_every_real_legacy_file(name):
    path = KERAS2 / f"{name}.h5"
    model = read_legacy_file(path)
    assert model.kind == MODEL
    assert model.model_config["class_name"] in ("Sequential", "Functional", "Model")
    assert model.backend == "tensorflow"
    assert model.keras_version.startswith("2.1")
    assert model.top_level == ()
    # the layers in layer_names order, each weight where the file has it
    with h5py.File(path, "r") as h5:
        names = [
            n.decode() if isinstance(n, bytes) else n
            for n in h5["model_weights"].attrs["layer_names"]
        ]
        assert list(model.layers) == names
        for layer, weights in model.layers.items():
            listed = h5[f"model_weights/{layer}"].attrs["weight_names"]
            assert [w.name for w in weights] == [
                n.decode() if isinstance(n, bytes) else n for n in listed
            ]
            for weight in weights:
                dataset = h5[weight.path]
                assert weight.path == f"model_weights/{layer}/{weight.name}"
                assert weight.shape == dataset.shape and weight.dtype == str(dataset.dtype)
        if "optimizer_weights" in h5:
            assert [w.path for w in model.optimizer] == [
                f"optimizer_weights/{n.decode() if isinstance(n, bytes) else n}"
                for n in h5["optimizer_weights"].attrs["weight_names"]
            ]


def test_real_file_details():
    model = read_legacy_file(KERAS2 / "embedding_lstm.h5")
    assert list(model.layers) == ["embedding", "lstm", "dense"]
    assert [w.name for w in model.layers["lstm"]] == [
        "lstm/lstm_cell/kernel:0",
        "lstm/lstm_cell/recurrent_kernel:0",
        "lstm/lstm_cell/bias:0",
    ]
    kernel = model.layers["lstm"][0]
    assert kernel == LegacyWeight(
        "lstm/lstm_cell/kernel:0", "model_weights/lstm/lstm/lstm_cell/kernel:0", (4, 20), "float32"
    )
    assert kernel.short_name == "kernel"
    assert model.optimizer[0].name == "iteration:0" and model.optimizer[0].dtype == "int64"
    assert model.training_config["optimizer_config"]["class_name"] == "Custom>Adam"
    # a nested model is one layer listing its sublayers' weights, trainable first
    nested = read_legacy_file(KERAS2 / "teachable_machine.h5")
    assert [w.name for w in nested.layers["model1"]][-4:] == [
        "batch_normalization/moving_mean:0",
        "batch_normalization/moving_variance:0",
        "batch_normalization_1/moving_mean:0",
        "batch_normalization_1/moving_variance:0",
    ]
    assert nested.optimizer == ()  # saved uncompiled


def test_reads_from_a_file_object_without_reading_weight_data(tmp_path):
    """Only metadata: a file object that counts bytes read stays far below the data."""
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as h5:
        _legacy_model(h5, {"dense": {"dense/kernel:0": np.ones((1000, 1000), "float32")}})

    class Counting(io.FileIO):
        read_bytes = 0

        def readinto(self, b):
            n = super().readinto(b)
            Counting.read_bytes += n or 0
            return n

    with Counting(path, "rb") as file:
        model = read_legacy(file, "big.h5")
    assert model.layers["dense"][0].shape == (1000, 1000)
    assert Counting.read_bytes < 200_000  # of a 4 MB file


def test_weights_only_file(tmp_path):
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as h5:
        _weights_group(h5, {"dense": {"dense/kernel:0": np.ones((2, 3), "float32")}, "flatten": {}})
        h5.attrs["keras_version"] = b"2.15.0"
        h5.attrs["backend"] = b"tensorflow"
    model = read_legacy_file(path)
    assert model.kind == WEIGHTS and model.model_config is None and model.training_config is None
    assert model.keras_version == "2.15.0" and model.backend == "tensorflow"
    assert [w.path for w in model.layers["dense"]] == ["dense/dense/kernel:0"]
    assert model.layers["flatten"] == ()


def test_keras3_weights_file_is_recognised(tmp_path):
    path = tmp_path / "m.weights.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("vars")
        h5["layers/dense/vars/0"] = np.ones((2, 3), "float32")
    model = read_legacy_file(path)
    assert model.kind == KERAS3_WEIGHTS and model.layers == {} and model.optimizer == ()


def test_chunked_name_lists(tmp_path):
    """tf.keras splits a name list over 64 KiB into layer_names0, layer_names1, ..."""
    path = tmp_path / "chunked.h5"
    layers = {f"dense_{i}": {f"dense_{i}/kernel:0": np.zeros((1,), "float32")} for i in range(4)}
    with h5py.File(path, "w") as h5:
        _legacy_model(h5, layers)
        group = h5["model_weights"]
        names = group.attrs["layer_names"]
        del group.attrs["layer_names"]
        group.attrs["layer_names0"] = names[:2]
        group.attrs["layer_names1"] = names[2:]
    model = read_legacy_file(path)
    assert list(model.layers) == [f"dense_{i}" for i in range(4)]


def test_str_and_bytes_attributes(tmp_path):
    path = tmp_path / "str.h5"
    with h5py.File(path, "w") as h5:
        _legacy_model(h5, {"dense": {"dense/kernel:0": np.ones((2,), "float32")}})
        h5.attrs["model_config"] = json.dumps(_config()).encode()  # bytes (older tf.keras)
        h5.attrs["training_config"] = json.dumps({"loss": "mse"})  # str
    model = read_legacy_file(path)
    assert model.model_config == _config() and model.training_config == {"loss": "mse"}


# -- malformed and hostile files: one ArchiveError line each


def _malformed(tmp_path, edit, name="bad.h5"):
    path = tmp_path / name
    with h5py.File(path, "w") as h5:
        _legacy_model(
            h5,
            {
                "dense": {"dense/kernel:0": np.ones((2, 3), "float32"), "dense/bias:0": np.ones(3)},
                "dense_1": {"dense_1/kernel:0": np.ones((3, 1), "float32")},
            },
        )
        edit(h5, tmp_path)
    return path


def _error(path) -> str:
    with pytest.raises(ArchiveError) as caught:
        read_legacy_file(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_not_hdf5(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"PK\x03\x04 not hdf5 at all" * 10)
    assert "is not a readable HDF5 file" in _error(path)


def test_not_a_keras_file(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as h5:
        h5["x"] = np.ones(3)
    assert "not a Keras model or weights file" in _error(path)


def test_missing_layer_group(tmp_path):
    def edit(h5, _):
        del h5["model_weights/dense_1"]

    message = _error(_malformed(tmp_path, edit))
    assert "model_weights/dense_1" in message and "no such group" in message


def test_missing_weight_dataset(tmp_path):
    def edit(h5, _):
        del h5["model_weights/dense/dense/bias:0"]

    message = _error(_malformed(tmp_path, edit))
    assert "model_weights/dense/dense/bias:0" in message and "no such dataset" in message


@pytest.mark.parametrize("text", ['{"class_name": ', "[1, 2]", b"\xff\xfe{"])
def test_bad_model_config(tmp_path, text):
    def edit(h5, _):
        h5.attrs["model_config"] = text

    message = _error(_malformed(tmp_path, edit))
    assert "model_config" in message and ("not valid JSON" in message or "not an object" in message)


def test_soft_link_is_refused(tmp_path):
    def edit(h5, _):
        del h5["model_weights/dense_1/dense_1/kernel:0"]
        h5["model_weights/dense_1/dense_1/kernel:0"] = h5py.SoftLink(
            "/model_weights/dense/dense/kernel:0"
        )

    message = _error(_malformed(tmp_path, edit))
    assert "soft link to '/model_weights/dense/dense/kernel:0'" in message
    assert "not followed" in message


def test_external_link_is_refused_and_not_opened(tmp_path):
    def edit(h5, directory):
        with h5py.File(directory / "other.h5", "w") as other:
            other["secret"] = np.arange(3.0)
        del h5["model_weights/dense/dense/bias:0"]
        h5["model_weights/dense/dense/bias:0"] = h5py.ExternalLink("other.h5", "/secret")

    message = _error(_malformed(tmp_path, edit))
    assert "external link to 'other.h5:/secret'" in message


def test_external_storage_is_refused(tmp_path):
    def edit(h5, directory):
        (directory / "raw.bin").write_bytes(np.ones(3, "float64").tobytes())
        del h5["model_weights/dense/dense/bias:0"]
        h5.create_dataset(
            "model_weights/dense/dense/bias:0",
            shape=(3,),
            dtype="float64",
            external=[(str(directory / "raw.bin"), 0, 24)],
        )

    message = _error(_malformed(tmp_path, edit))
    assert "external files" in message and "raw.bin" in message


def test_absurd_size_is_refused(tmp_path):
    def edit(h5, _):
        del h5["model_weights/dense/dense/bias:0"]
        # declared, never written: no data in the file
        h5.create_dataset("model_weights/dense/dense/bias:0", shape=(2**40,), dtype="float32")

    message = _error(_malformed(tmp_path, edit))
    assert "declares 4398046511104 bytes" in message


def test_non_numeric_weight_is_refused(tmp_path):
    def edit(h5, _):
        del h5["model_weights/dense/dense/bias:0"]
        h5["model_weights/dense/dense/bias:0"] = np.array([b"a", b"b"], dtype=object).astype(
            h5py.string_dtype()
        )

    assert "not a numeric weight" in _error(_malformed(tmp_path, edit))


def test_name_escaping_the_group_is_refused(tmp_path):
    def edit(h5, _):
        h5["model_weights/dense"].attrs["weight_names"] = [
            b"/model_weights/dense_1/dense_1/kernel:0"
        ]

    assert "not a path inside the group" in _error(_malformed(tmp_path, edit))


# -- builders of the legacy layout (as tf.keras's hdf5_format writes it)


def _config():
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": []}}


def _weights_group(group, layers):
    group.attrs["layer_names"] = [name.encode() for name in layers]
    for name, weights in layers.items():
        layer = group.create_group(name)
        layer.attrs["weight_names"] = [w.encode() for w in weights] if weights else np.array([])
        for weight, value in weights.items():
            layer[weight] = value
    group.create_group("top_level_model_weights").attrs["weight_names"] = np.array([])


def _legacy_model(h5, layers):
    h5.attrs["model_config"] = json.dumps(_config())
    h5.attrs["keras_version"] = "2.15.0"
    h5.attrs["backend"] = "tensorflow"
    _weights_group(h5.create_group("model_weights"), layers)
