"""KR708: a Keras 2 model's weights re-laid as Keras 3 stores them.

On models saved by tf.keras 2.15 / 2.13 / 2.12 (fixtures/keras2/): the legacy
HDF5 layout becomes `layers/<class>/vars/<i>` with every value unchanged; a
tf.keras `.keras` gets the learning rate Keras 3 expects at `optimizer/vars/1`;
tf.keras 2.13's `_layer_checkpoint_dependencies/` groups become `layers/`.
(That real Keras 3 releases load the results: tests/test_keras2_proof.py.)
"""

import io
import json
import zipfile

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FIXTURES
from kerasrepair.api import fix_archive
from kerasrepair.archive import open_archive
from kerasrepair.check import check
from kerasrepair.cli import app
from kerasrepair.context import Options

KERAS2 = FIXTURES / "keras2"
MANIFEST = json.loads((KERAS2 / "manifest.json").read_text())["files"]


def weights_of(archive_path) -> dict[str, np.ndarray]:
    """Every dataset of a .keras archive's model.weights.h5, by path."""
    with zipfile.ZipFile(archive_path) as zf:
        data = zf.read("model.weights.h5")
    found = {}
    with h5py.File(io.BytesIO(data), "r") as h5:
        h5.visititems(
            lambda name, obj: (
                found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return found


def kr708(path) -> list:
    with open_archive(path) as archive:
        return [f for f in check(archive).findings if f.code == "KR708"]


@pytest.mark.parametrize(
    ("name", "severity"),
    [
        ("mlp_trained.h5", "note"),  # Keras 3's HDF5 loader reads it; a .keras needs it
        ("teachable_machine.h5", "note"),
        ("mlp_trained.keras", "warning"),  # loads, but Keras 3 skips the optimizer state
        ("mlp_tf213.keras", "error"),  # Keras 3 finds no layer weights
    ],
)
def test_check_says_the_weights_need_keras_3s_layout(name, severity):
    found = [f for f in kr708(KERAS2 / name) if f.fix]
    assert [(f.fix, f.severity) for f in found] == [("safe", severity)], found


def test_a_keras_3_archive_needs_nothing():
    assert kr708(FIXTURES / "models" / "sequential_mlp.keras") == []


def test_hdf5_weights_keep_every_value_in_keras_3s_layout(tmp_path):
    out = tmp_path / "mlp.keras"
    result = fix_archive(KERAS2 / "mlp_trained.h5", out, Options())
    assert not result.left
    converted = weights_of(out)
    with h5py.File(KERAS2 / "mlp_trained.h5", "r") as h5:
        kernel = h5["model_weights/dense/dense/kernel:0"][()]
        bias = h5["model_weights/dense_1/dense_1/bias:0"][()]
        iterations = h5["optimizer_weights/iteration:0"][()]
        slots = sorted(h5["optimizer_weights"].attrs["weight_names"])
    assert np.array_equal(converted["layers/dense/vars/0"], kernel)
    assert np.array_equal(converted["layers/dense_1/vars/1"], bias)
    assert not any(path.startswith("model_weights") for path in converted)
    # iteration, learning rate, then the slots (Adam: m and v of 4 variables)
    assert converted["optimizer/vars/0"] == iterations == 1
    assert converted["optimizer/vars/1"] == np.float32(0.001)
    optimizer = [p for p in converted if p.startswith("optimizer/vars/")]
    assert len(optimizer) == len(slots) + 1  # the HDF5 lists the iteration; + learning rate


def test_keras_archive_gets_the_learning_rate_before_the_slots(tmp_path):
    source = KERAS2 / "mlp_trained.keras"
    before = weights_of(source)
    out = tmp_path / "mlp.keras"
    assert not fix_archive(source, out, Options()).left
    after = weights_of(out)
    assert after["optimizer/vars/0"] == before["optimizer/vars/0"] == 1
    assert after["optimizer/vars/1"] == np.float32(0.001)  # compile(optimizer="adam")
    slots = len([p for p in before if p.startswith("optimizer/vars/")]) - 1
    for i in range(1, slots + 1):
        assert np.array_equal(after[f"optimizer/vars/{i + 1}"], before[f"optimizer/vars/{i}"])
    for path, value in before.items():
        if path.startswith("layers/"):
            assert np.array_equal(after[path], value), path
    # Keras 3 keeps no metric state: tf.keras's is left out, not carried
    assert not any(path.startswith("metrics/") for path in after)


def test_sgd_by_name_gets_tf_keras_default_learning_rate(tmp_path):
    """compile(optimizer="sgd") in tf.keras 2.15 is SGD(learning_rate=0.01):
    the state carries 0.01, not another optimizer's default."""
    out = tmp_path / "two.keras"
    assert not fix_archive(KERAS2 / "two_input_shared.keras", out, Options()).left
    assert weights_of(out)["optimizer/vars/1"] == np.float32(0.01)


def test_tf_keras_2_13_groups_become_keras_3s(tmp_path):
    source = KERAS2 / "mlp_tf213.keras"
    assert any(p.startswith("_layer_checkpoint_dependencies/") for p in weights_of(source))
    out = tmp_path / "mlp213.keras"
    assert not fix_archive(source, out, Options()).left
    after = weights_of(out)
    assert "layers/dense/vars/0" in after and "layers/dense_1/vars/1" in after
    assert not any(p.startswith("_layer_checkpoint_dependencies") for p in after)


def test_conversion_is_idempotent_and_deterministic(tmp_path):
    first, second, again = tmp_path / "a.keras", tmp_path / "b.keras", tmp_path / "c.keras"
    fix_archive(KERAS2 / "teachable_machine.h5", first, Options())
    fix_archive(KERAS2 / "teachable_machine.h5", second, Options())
    assert first.read_bytes() == second.read_bytes()
    result = fix_archive(first, again, Options())
    assert result.changes == [] and not result.left
    assert again.read_bytes() == first.read_bytes()


def test_unplaceable_weights_write_nothing(tmp_path):
    """A layer class kerasrepair cannot lay out (here: a custom class holding an
    LSTM's cell weights) stops the conversion: nothing half-converted is written."""
    source = tmp_path / "custom.h5"
    source.write_bytes((KERAS2 / "embedding_lstm.h5").read_bytes())
    with h5py.File(source, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        assert config["config"]["layers"][2]["class_name"] == "LSTM"
        config["config"]["layers"][2]["class_name"] = "MyLSTM"
        h5.attrs["model_config"] = json.dumps(config)
    out = tmp_path / "custom.keras"
    result = fix_archive(source, out, Options())
    assert [f.code for f in result.left] == ["KR708"] and result.withheld
    assert "MyLSTM" in result.left[0].message
    assert not out.exists()
    ran = CliRunner().invoke(app, ["fix", str(source), "-o", str(out)])
    assert ran.exit_code == 1
    assert "nothing written" in ran.output
    assert not out.exists()


def test_a_keras_3_weights_file_is_refused_with_what_to_do(tmp_path):
    """A `.weights.h5` (model.save_weights) has no architecture."""
    with zipfile.ZipFile(FIXTURES / "models" / "sequential_mlp.keras") as zf:
        weights = tmp_path / "model.weights.h5"
        weights.write_bytes(zf.read("model.weights.h5"))
    ran = CliRunner().invoke(app, ["inspect", str(weights)])
    assert ran.exit_code == 2
    assert "weights-only" in ran.output and "load_weights" in ran.output
    assert "Traceback" not in ran.output


def test_hdf5_model_named_keras_opens_as_what_it_is(tmp_path):
    """fixtures/hostile/legacy_h5.keras: a Keras 3 HDF5 model under a .keras
    name, which Keras cannot load under that name; kerasrepair converts it."""
    hostile = FIXTURES / "hostile" / "legacy_h5.keras"
    ran = CliRunner().invoke(app, ["inspect", str(hostile)])
    assert ran.exit_code == 0, ran.output
    assert "a legacy HDF5 model" in ran.output
    out = tmp_path / "real.keras"
    assert not fix_archive(hostile, out, Options()).left
    assert zipfile.is_zipfile(out)
    with open_archive(out) as archive:
        assert archive.format == "keras" and check(archive).findings == []


def test_config_only_archive_edit_keeps_other_entries(tmp_path):
    """A Keras 2 .keras whose weights need no change keeps them bit for bit
    (teachable_machine: not compiled, Keras 3's layer layout already)."""
    source = KERAS2 / "teachable_machine.keras"
    out = tmp_path / "tm.keras"
    assert not fix_archive(source, out, Options()).left
    with zipfile.ZipFile(source) as a, zipfile.ZipFile(out) as b:
        assert a.read("model.weights.h5") == b.read("model.weights.h5")
        metadata = json.loads(b.read("metadata.json"))
    assert metadata["converted_from"] == "2.15.0"
    assert metadata["keras_version"].startswith("3.")


def test_hdf5_repaired_as_hdf5_keeps_its_weights(tmp_path):
    """`fix old.h5 -o new.h5`: model_config rewritten, the weights untouched."""
    out = tmp_path / "mlp.h5"
    assert not fix_archive(KERAS2 / "mlp_trained.h5", out, Options()).left
    with h5py.File(out, "r") as new, h5py.File(KERAS2 / "mlp_trained.h5", "r") as old:
        assert np.array_equal(
            new["model_weights/dense/dense/kernel:0"][()],
            old["model_weights/dense/dense/kernel:0"][()],
        )
        config = json.loads(new.attrs["model_config"])
    assert "compile_config" not in config
    assert config["config"]["layers"][0]["config"]["batch_shape"] == [None, 5]
    with open_archive(out) as archive:
        assert archive.format == "h5"
        assert [f.code for f in check(archive).findings if f.severity == "error"] == []
