"""The weights tree is described from HDF5 metadata alone: weight data is
never read, and nothing pickled is ever loaded."""

import numpy as np
import pytest

from conftest import rezip
from kerasrepair import archive as archive_module
from kerasrepair import inspect_archive, open_archive


@pytest.fixture(scope="module")
def big_dense(keras, saved):
    """A model whose weights (4 MB) dwarf the HDF5 metadata."""
    model = keras.Sequential([keras.Input((1024,)), keras.layers.Dense(1024)])
    return model, saved(model, "big_dense")


def test_weight_data_is_never_read(big_dense, monkeypatch):
    model, path = big_dense
    read = []
    real_readinto = archive_module.EntryFile.readinto

    def counting_readinto(self, buffer):
        count = real_readinto(self, buffer)
        read.append(count)
        return count

    monkeypatch.setattr(archive_module.EntryFile, "readinto", counting_readinto)
    report = inspect_archive(path)
    weights_size = 1024 * 1024 * 4
    assert report["weights"]["bytes"] == weights_size + 1024 * 4
    assert report["weights"]["params"] == model.count_params()
    assert 0 < sum(read) < 64 * 1024, f"read {sum(read)} bytes of a {weights_size}-byte tensor"


def test_variables_have_path_shape_dtype(big_dense):
    model, path = big_dense
    with open_archive(path) as archive:
        tree = archive.weights()
    kernel, bias = tree.model_variables
    assert (kernel.path, kernel.shape, kernel.dtype) == (
        "layers/dense/vars/0",
        (1024, 1024),
        "float32",
    )
    assert (bias.path, bias.shape, bias.nbytes) == ("layers/dense/vars/1", (1024,), 4096)
    # the group is named by class; Keras 3.6+ stores the layer's name on it
    assert tree.var_groups["layers/dense/vars"] == model.layers[0].name


def test_compressed_weights_entry_is_still_described(big_dense, tmp_path):
    model, path = big_dense
    report = inspect_archive(rezip(path, tmp_path / "deflated.keras"))
    assert report["weights"]["params"] == model.count_params()
    assert {e["method"] for e in report["entries"]} == {"deflated"}


def test_npz_weights_are_listed_but_never_unpickled(keras, tmp_path, monkeypatch):
    from keras.src.saving import saving_lib

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path / "npz.keras"
    saving_lib.save_model(model, path, weights_format="npz")

    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(np, "load", refuse)
    report = inspect_archive(path)
    assert report["weights"]["format"] == "npz"
    assert "layers/dense" in report["weights"]["pickled"]
    assert any(w["kind"] == "pickled_weights" for w in report["warnings"])
