"""`inspect` describes real Keras archives without Keras: the parameter counts
it reads from the weights file equal Keras's own `count_params()`."""

import json
import sys

import numpy as np
import pytest

from kerasrepair import inspect_archive


def _application(keras, name):
    return getattr(keras.applications, name)(weights=None)


@pytest.mark.parametrize("name", ["MobileNetV3Small", "EfficientNetB0", "DenseNet121"])
def test_params_of_applications_equal_count_params(keras, saved, name):
    model = _application(keras, name)
    report = inspect_archive(saved(model, name))

    assert report["weights"]["params"] == model.count_params()
    # each layer's share, read from its weight group, equals Keras's per-layer
    # count; `keras.ops` calls in the graph are listed too, as operations
    rows = report["model"]["layers"]
    by_name = {row["name"]: row["params"] for row in rows if not row["operation"]}
    assert by_name == {layer.name: layer.count_params() for layer in model.layers}
    assert all(row["params"] == 0 for row in rows if row["operation"])


def _shared_nested_functional(keras):
    layers = keras.layers
    inner = keras.Sequential([keras.Input((4,)), layers.Dense(4, name="inner_dense")], name="inner")
    inputs = keras.Input((4,), name="x")
    shared = layers.Dense(4, name="shared")
    h = shared(shared(inputs))  # one layer object, called twice in a row
    h = inner(h)
    h = layers.Reshape((2, 2))(h)
    out = layers.MultiHeadAttention(num_heads=2, key_dim=2, name="mha")(h, h)
    return keras.Model(inputs, out, name="shared_nested")


def test_shared_and_nested_layers(keras, saved):
    model = _shared_nested_functional(keras)
    report = inspect_archive(saved(model, "shared_nested"))
    layers = {layer["name"]: layer for layer in report["model"]["layers"]}

    assert report["model"]["kind"] == "functional"
    assert report["model"]["inputs"] == ["x[0][0]"]
    assert report["model"]["outputs"] == ["mha[0][0]"]
    assert layers["shared"]["calls"] == 2
    assert layers["shared"]["inbound"] == [["x[0][0]"], ["shared[0][0]"]]
    assert layers["mha"]["inbound"] == [["reshape[0][0]", "reshape[0][0]"]]
    nested = layers["inner"]["model"]
    assert nested["kind"] == "sequential"
    assert [layer["name"] for layer in nested["layers"]][-1] == "inner_dense"
    assert nested["layers"][-1]["weights_path"] == "layers/sequential/layers/dense"
    assert layers["inner"]["params"] == model.get_layer("inner").count_params()
    assert layers["mha"]["params"] == model.get_layer("mha").count_params()
    assert report["weights"]["params"] == model.count_params()
    assert report["warnings"] == []


def test_sequential_with_optimizer_state(keras, saved):
    layers = keras.layers
    model = keras.Sequential(
        [keras.Input((5,)), layers.Dense(3), layers.BatchNormalization(), layers.Dense(1)]
    )
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((8, 5)), np.zeros((8, 1)), epochs=3, batch_size=4, verbose=0)
    report = inspect_archive(saved(model, "sequential_adam"))

    assert report["model"]["kind"] == "sequential"
    assert report["weights"]["params"] == model.count_params()
    optimizer = report["weights"]["optimizer"]
    assert optimizer["class_name"] == "Adam"
    assert optimizer["iterations"] == 6  # 3 epochs of 2 batches
    # Adam: iterations, learning rate, then 2 slots per trainable variable
    assert optimizer["variables"] == 2 + 2 * len(model.trainable_variables)


def test_subclassed_model(keras, saved):
    @keras.saving.register_keras_serializable(package="tests")
    class TwoDense(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first = keras.layers.Dense(3)
            self.second = keras.layers.Dense(1)

        def call(self, x):
            return self.second(self.first(x))

    model = TwoDense()
    model(np.zeros((1, 5)))
    report = inspect_archive(saved(model, "subclassed"))

    assert report["model"]["kind"] == "subclassed"
    assert report["model"]["class_name"] == "TwoDense"
    assert report["weights"]["params"] == model.count_params() == 22
    # Keras saves a subclassed model's layers by attribute, in sorted order:
    # `first`, then the `layers` list (where `second` is met first), then `second`
    groups = {g["path"]: g["layer_name"] for g in report["weights"]["groups"]}
    assert groups["first/vars"] == model.first.name
    assert groups["layers/dense_1/vars"] == model.second.name
    assert [w["kind"] for w in report["warnings"]] == ["subclassed_model"]


def test_lambda_and_custom_layers_are_warned_about(keras, saved):
    @keras.saving.register_keras_serializable(package="tests")
    class Double(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    inputs = keras.Input((3,))
    out = keras.layers.Lambda(lambda x: x + 1, name="plus_one")(Double(name="double")(inputs))
    report = inspect_archive(saved(keras.Model(inputs, out), "lambda_custom"))

    kinds = {(w["kind"], w["location"]) for w in report["warnings"]}
    layers = {layer["name"]: layer for layer in report["model"]["layers"]}
    assert ("lambda_layer", "/config/layers/2") in kinds
    assert ("custom_object", "/config/layers/1") in kinds
    assert layers["plus_one"]["class_name"] == "Lambda"


def test_lambda_code_is_described_from_its_bytes(keras, saved):
    """The Python version, the globals it needs and risky calls, read without
    loading the code (it would run `eval` when called)."""
    inputs = keras.Input((3,))
    risky = keras.layers.Lambda(
        lambda x: x * eval("1") + OFFSET,  # noqa: F821  (never defined: never called)
        output_shape=(3,),
        name="risky",
    )
    out = risky(inputs)
    report = inspect_archive(saved(keras.Model(inputs, out), "lambda_risky"))
    [warning] = [w for w in report["warnings"] if w["kind"] == "lambda_layer"]
    python = "{}.{}".format(*sys.version_info[:2])
    assert f"(Python {python}, " in warning["message"]
    assert "globals the archive does not save: OFFSET" in warning["message"]
    assert "it calls eval: load it only if you trust its source" in warning["message"]


def test_report_is_json_serialisable_with_stable_keys(keras, saved):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    report = inspect_archive(saved(model, "tiny"))
    assert json.loads(json.dumps(report)) == report
    assert set(report) == {
        "report_version",
        "path",
        "file_size",
        "format",
        "written_by",
        "entries",
        "metadata",
        "model",
        "weights",
        "assets",
        "warnings",
    }
    assert report["metadata"]["keras_version"] == keras.__version__
    assert (report["format"], report["written_by"]) == ("keras", "keras3")
    assert [e["name"] for e in report["entries"]] == [
        "metadata.json",
        "config.json",
        "model.weights.h5",
    ]


def test_layer_serialized_twice_is_reported():
    """The VAE case: the outer model's outputs use the encoder's inner `z_mean`,
    so config.json describes it twice but the file holds its weights once."""
    from conftest import MODELS

    report = inspect_archive(MODELS / "vae_nested_outputs.keras")
    twice = {
        w["location"]: w["message"] for w in report["warnings"] if w["kind"] == "described_twice"
    }
    assert "/config/layers/3" in twice
    assert "'z_mean'" in twice["/config/layers/3"]
    assert "finds none at 'layers/dense_1'" in twice["/config/layers/3"]
    assert not [w for w in report["warnings"] if w["kind"] == "unclaimed_weights"]


def test_warnings_are_the_findings_of_rules():
    """Each warning names the rule that found it; `explain` tells the rest."""
    from conftest import MODELS
    from kerasrepair import registry

    for name in ("vae_nested_outputs", "lambda_global", "subclassed", "weights_npz"):
        for warning in inspect_archive(MODELS / f"{name}.keras")["warnings"]:
            rule = registry.by_code(warning["code"]).RULE
            assert warning["kind"] in {
                "archive",
                "custom_object",
                "subclassed_model",
                "described_twice",
                "unclaimed_weights",
                "lambda_layer",
                "weights_problem",
                "pickled_weights",
                "serialized_code",
            }
            assert rule.code == warning["code"]
    kinds = {
        (w["kind"], w["code"]) for w in inspect_archive(MODELS / "lambda_global.keras")["warnings"]
    }
    # what the code is (KR502), and the security finding check reports too (KR903)
    assert {("lambda_layer", "KR502"), ("serialized_code", "KR903")} <= kinds


@pytest.mark.parametrize(
    "name, kind",
    [
        ("module_os", "foreign_module"),
        ("get_file_initializer", "non_modelling_api"),
        ("torch_module_os_system", "torch_module_pickle"),
        ("tfsm_layer", "saved_model_path"),
        ("lookup_vocabulary_url", "lookup_file"),
        ("name_traversal", "object_name_path"),
        ("h5_shape_bomb", "weights_shape_bomb"),
        ("prepended_elf", "prepended_data"),
        ("h5_soft_link", "weights_problem"),
    ],
)
def test_security_findings_are_inspect_warnings(name, kind):
    """What `check` reports as a security finding, `inspect` shows as a warning."""
    from conftest import HOSTILE

    assert kind in {w["kind"] for w in inspect_archive(HOSTILE / f"{name}.keras")["warnings"]}
