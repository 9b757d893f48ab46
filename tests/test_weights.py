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


def _with_weights_edited(source, target, edit):
    """Copy `source` to `target` with its model.weights.h5 changed by `edit(h5file)`."""
    import io

    import h5py

    from kerasrepair import write_archive

    with open_archive(source) as archive:
        buffer = io.BytesIO(archive.read("model.weights.h5"))
        with h5py.File(buffer, "a") as h5:
            edit(h5)
        write_archive(archive, target, {"model.weights.h5": buffer.getvalue()})
    return target


def test_virtual_datasets_are_reported_not_read(tmp_path):
    import h5py

    from conftest import MODELS

    def add_virtual(h5):
        layout = h5py.VirtualLayout(shape=(3,), dtype="float32")
        layout[:] = h5py.VirtualSource("/etc/passwd.h5", "data", shape=(3,))
        h5.create_virtual_dataset("layers/dense/vars/2", layout)

    path = _with_weights_edited(MODELS / "sequential_mlp.keras", tmp_path / "v.keras", add_virtual)
    report = inspect_archive(path)
    assert report["weights"]["problems"] == [
        {
            "path": "layers/dense/vars/2",
            "problem": "virtual dataset mapping '/etc/passwd.h5:data' (not read)",
        }
    ]
    assert "layers/dense/vars/2" not in {v["path"] for v in report["weights"]["tree"]}


def test_weights_no_layer_claims_are_reported(tmp_path):
    from conftest import MODELS

    def add_orphan(h5):
        h5.create_dataset("layers/dense_7/vars/0", data=np.zeros((2, 3), "float32"))

    path = _with_weights_edited(MODELS / "sequential_mlp.keras", tmp_path / "o.keras", add_orphan)
    warnings = inspect_archive(path)["warnings"]
    orphan = [w for w in warnings if w["kind"] == "unclaimed_weights"]
    assert [w["location"] for w in orphan] == ["model.weights.h5:layers/dense_7"]
    assert "6 values" in orphan[0]["message"]
