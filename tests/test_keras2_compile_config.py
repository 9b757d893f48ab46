"""KR707: the compile configuration tf.keras wrote (an HDF5 `training_config`
with `optimizer_config` and MeanMetricWrapper metrics, `.keras` nulls, optimizer
arguments and loss objects of Keras 2) written as Keras 3 reads it."""

import copy
import json
import shutil

import pytest

from conftest import FIXTURES, MODELS
from kerasrepair import open_archive
from kerasrepair.api import fix_archive
from kerasrepair.check import check
from kerasrepair.context import Context, Options
from kerasrepair.fix import fix
from kerasrepair.passes import keras2_compile_config
from kerasrepair.writer import write_archive

KERAS2 = FIXTURES / "keras2"
KERAS3 = MODELS / "sequential_mlp.keras"
KERAS2_ONLY = ("jit_compile", "is_legacy_optimizer")


def findings(path, keras=None, code="KR707"):
    with open_archive(path) as archive:
        return [f for f in check(archive, keras).findings if f.code == code]


def fixed(path, keras=None):
    with open_archive(path) as archive:
        return fix(archive, Options(keras=keras))


def compile_config_after(path, keras=None):
    return fixed(path, keras).edit.config["compile_config"]


def keras_variant(tmp_path, name, edit):
    """A copy of `.keras` fixture `name` whose compile_config `edit` changed."""
    with open_archive(KERAS2 / name) as archive:
        config = copy.deepcopy(archive.config)
        edit(config["compile_config"])
        target = tmp_path / name
        write_archive(archive, target, {"config.json": json.dumps(config).encode()})
    return target


def h5_variant(tmp_path, name, edit):
    """A copy of HDF5 fixture `name` whose training_config `edit` changed."""
    import h5py

    target = tmp_path / name
    shutil.copyfile(KERAS2 / name, target)
    with h5py.File(target, "r+") as h5:
        training_config = json.loads(h5.attrs["training_config"])
        edit(training_config)
        h5.attrs["training_config"] = json.dumps(training_config)
    return target


def loss_object(with_module=True):
    loss = {
        "module": "keras.losses",
        "class_name": "MeanSquaredError",
        "config": {"reduction": "auto", "name": "mean_squared_error", "fn": "mean_squared_error"},
        "registered_name": None,
    }
    if not with_module:
        del loss["module"], loss["registered_name"]
    return loss


@pytest.mark.parametrize("name", ["mlp_trained.h5", "mlp_tf212.h5"])
def test_h5_optimizer_config_becomes_a_keras3_optimizer(name):
    with open_archive(KERAS2 / name) as archive:
        saved = archive.config["compile_config"]["optimizer_config"]
        assert saved["class_name"] == "Custom>Adam"
    found = findings(KERAS2 / name)
    assert found and {(f.location, f.fix) for f in found} == {("/compile_config", "safe")}
    assert any("optimizer_config" in f.message for f in found)
    after = compile_config_after(KERAS2 / name)
    assert "optimizer_config" not in after
    optimizer = after["optimizer"]
    assert optimizer["module"] == "keras.optimizers"
    assert optimizer["class_name"] == "Adam"
    assert optimizer["registered_name"] is None
    assert optimizer["config"] == {k: v for k, v in saved["config"].items() if k not in KERAS2_ONLY}
    assert optimizer["config"]["learning_rate"] == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("name", "metrics"),
    [
        ("mlp_trained.h5", ["mae"]),
        ("mlp_tf212.h5", ["mae"]),
        ("cnn_batchnorm.h5", ["accuracy"]),
        ("embedding_lstm.h5", ["accuracy"]),
    ],
)
def test_h5_metrics_become_their_names(name, metrics):
    with open_archive(KERAS2 / name) as archive:
        (per_output,) = archive.config["compile_config"]["metrics"]
        assert [m["class_name"] for m in per_output] == ["MeanMetricWrapper"]
    assert f"compile configuration: metrics -> {metrics!r}" in {
        f.message for f in findings(KERAS2 / name)
    }
    assert compile_config_after(KERAS2 / name)["metrics"] == metrics


@pytest.mark.parametrize("name", ["mlp_trained.keras", "cnn_batchnorm.keras", "mlp_tf213.keras"])
def test_keras_nulls(name):
    with open_archive(KERAS2 / name) as archive:
        saved = archive.config["compile_config"]
        assert saved["steps_per_execution"] is None and saved["jit_compile"] is None
    after = compile_config_after(KERAS2 / name)
    assert after["steps_per_execution"] == 1
    assert after["run_eagerly"] is False
    assert after.get("jit_compile", "auto") == "auto"  # Keras 3's default
    assert after["optimizer"] == saved["optimizer"] == "adam"
    assert after["metrics"] == saved["metrics"]  # names already


@pytest.mark.parametrize("keras", [None, "3.0"])
def test_loss_scale_optimizer_v3(keras):
    path = KERAS2 / "mixed_precision.h5"
    with open_archive(path) as archive:
        saved = archive.config["compile_config"]["optimizer_config"]
        assert saved["class_name"] == "LossScaleOptimizerV3" and saved["config"]["dynamic"] is True
    messages = {f.message for f in findings(path, keras)}
    assert "compile configuration: optimizer LossScaleOptimizerV3 -> LossScaleOptimizer" in messages
    optimizer = compile_config_after(path, keras)["optimizer"]
    assert optimizer["class_name"] == "LossScaleOptimizer"
    assert optimizer["module"] == "keras.optimizers"
    arguments = optimizer["config"]
    assert "dynamic" not in arguments
    assert (arguments["initial_scale"], arguments["dynamic_growth_steps"]) == (32768.0, 2000)
    inner = arguments["inner_optimizer"]
    assert (inner["module"], inner["class_name"]) == ("keras.optimizers", "Adam")
    assert not set(KERAS2_ONLY) & set(inner["config"])
    assert inner["config"]["beta_1"] == 0.9


def test_a_static_loss_scale_is_not_passed_off_as_converted(tmp_path):
    """Keras 3's loss scale is always dynamic: `dynamic: false` has no Keras 3
    equivalent, so it stays, reported, and nothing is written."""

    def static(training_config):
        training_config["optimizer_config"]["config"]["dynamic"] = False

    path = h5_variant(tmp_path, "mixed_precision.h5", static)
    result = fixed(path)
    assert result.edit.config["compile_config"]["optimizer"]["config"]["dynamic"] is False
    assert "/compile_config/optimizer/config/dynamic" in {f.location for f in result.left}
    assert fix_archive(path, tmp_path / "out.keras").withheld


def test_keras_optimizer_object_loses_keras2_arguments(tmp_path):
    def adam_object(compile_config):
        compile_config["optimizer"] = {
            "module": "keras.optimizers",
            "class_name": "Adam",
            "config": {
                "name": "Adam",
                "learning_rate": 0.01,
                "jit_compile": True,
                "is_legacy_optimizer": False,
            },
            "registered_name": None,
        }

    path = keras_variant(tmp_path, "mlp_trained.keras", adam_object)
    messages = {f.message for f in findings(path)}
    assert "compile configuration: optimizer argument 'jit_compile' (True) dropped" in messages
    optimizer = compile_config_after(path)["optimizer"]
    assert optimizer == {
        "module": "keras.optimizers",
        "class_name": "Adam",
        "config": {"name": "Adam", "learning_rate": 0.01},
        "registered_name": None,
    }


@pytest.mark.parametrize("per_output", [False, True])
def test_keras_loss_object(tmp_path, per_output):
    def with_loss_object(compile_config):
        compile_config["loss"] = {"dense_1": loss_object()} if per_output else loss_object()

    path = keras_variant(tmp_path, "mlp_trained.keras", with_loss_object)
    messages = {f.message for f in findings(path)}
    assert (
        "compile configuration: loss MeanSquaredError reduction 'auto' -> 'sum_over_batch_size'"
        in messages
    )
    loss = compile_config_after(path)["loss"]
    if per_output:
        assert list(loss) == ["dense_1"]
        loss = loss["dense_1"]
    assert loss == {
        "module": "keras.losses",
        "class_name": "MeanSquaredError",
        "config": {"reduction": "sum_over_batch_size", "name": "mean_squared_error"},
        "registered_name": None,
    }


@pytest.mark.parametrize(
    ("class_name", "arguments"),
    [
        ("Huber", {"name": "huber_loss", "delta": 1.0}),
        ("MeanSquaredError", {"name": "mean_squared_error"}),
        ("BinaryCrossentropy", {"name": "binary_crossentropy", "from_logits": True}),
    ],
)
def test_h5_loss_object(tmp_path, keras, class_name, arguments):
    """tf.keras's HDF5 training_config names a loss object by class alone.
    MeanSquaredError and BinaryCrossentropy are also metric classes in Keras 3
    (keras.metrics.MeanSquaredError): by class name alone they are ambiguous,
    but a loss is a keras.losses class. Without a module, Keras 3.15's
    load_model fails: TypeError: Could not locate class 'MeanSquaredError'."""

    def with_loss_object(training_config):
        training_config["loss"] = {
            "class_name": class_name,
            "config": {**arguments, "reduction": "auto"},
        }

    path = h5_variant(tmp_path, "mlp_trained.h5", with_loss_object)
    loss = compile_config_after(path)["loss"]
    assert loss["class_name"] == class_name
    assert loss["config"] == {**arguments, "reduction": "sum_over_batch_size"}
    assert loss.get("module") == "keras.losses"  # KR701's
    # what load_model does with it (Keras 3.15.1 here)
    assert type(keras.saving.deserialize_keras_object(loss)).__name__ == class_name


def test_converted_is_a_fixed_point():
    for name in ("mlp_trained.h5", "mixed_precision.h5", "cnn_batchnorm.keras"):
        with open_archive(KERAS2 / name) as archive:
            outputs = 1
            once, _ = keras2_compile_config.converted(archive.config["compile_config"], outputs)
        twice, said = keras2_compile_config.converted(once, outputs)
        assert said == [] and twice == once, name


@pytest.mark.parametrize(
    "name", ["mlp_trained.h5", "mixed_precision.h5", "cnn_batchnorm.h5", "mlp_trained.keras"]
)
def test_converted_output_needs_nothing_more(tmp_path, name):
    out = tmp_path / "converted.keras"
    first = fix_archive(KERAS2 / name, out)
    assert any(c.code == "KR707" for c in first.changes) and first.output == str(out)
    with open_archive(out) as archive:
        assert "optimizer_config" not in archive.config["compile_config"]
        assert check(archive).findings == []
        assert fix(archive).changes == []


def test_detect_finds_nothing_in_a_keras3_archive():
    with open_archive(KERAS3) as archive:
        ctx = Context(archive, archive.config, Options())
        assert keras2_compile_config.detect(ctx) == []
    assert findings(KERAS3) == []
