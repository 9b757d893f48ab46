"""KR701: a built-in class under a Keras 2 module path (tf.keras's
`keras.src.engine.functional`), or under none (a legacy HDF5 config), gets the
module the target Keras 3 release has it in; tf.keras's `Orthogonal` is
`OrthogonalInitializer` for a target before 3.6."""

import copy
import json

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, MODELS
from kerasrepair import objects, open_archive
from kerasrepair import pointer as json_pointer
from kerasrepair.api import fix_archive
from kerasrepair.check import check
from kerasrepair.cli import app
from kerasrepair.context import Context, Options
from kerasrepair.fix import fix
from kerasrepair.passes import keras2_module
from kerasrepair.writer import write_archive

KERAS2 = FIXTURES / "keras2"
KERAS3 = MODELS / "sequential_mlp.keras"


def findings(path, keras=None, code="KR701"):
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


def test_check_reports_the_keras2_functional_module():
    found = findings(KERAS2 / "nested_sequential.keras")
    assert [(f.location, f.fix) for f in found] == [("", "safe")]
    assert "'keras.src.engine.functional'" in found[0].message
    assert "'keras.src.models.functional'" in found[0].message


@pytest.mark.parametrize("keras", [None, "3.0", "3.15"])
def test_fix_writes_the_keras3_module_of_functional(keras):
    result = fixed(KERAS2 / "nested_sequential.keras", keras)
    config = result.edit.config
    assert config["module"] == "keras.src.models.functional"
    assert next(iter(config)) == "module"  # first, as Keras 3 writes it
    assert config["class_name"] == "Functional"
    assert config["registered_name"] == "Functional"  # what was saved stays
    assert [(c.location, c.description) for c in result.changes if c.code == "KR701"] == [
        ("", "module 'keras.src.engine.functional' -> 'keras.src.models.functional'")
    ]
    # the nested Sequential's module ("keras") is one Keras 3 has: untouched
    assert json_pointer.get(config, "/config/layers/1/module") == "keras"


def test_h5_config_gets_a_module_on_every_layer_and_initializer():
    path = KERAS2 / "mlp_tf212.h5"  # tf.keras 2.12: no module anywhere
    expected = {
        "": "keras",
        "/config/layers/0": "keras.layers",
        "/config/layers/1": "keras.layers",
        "/config/layers/1/config/kernel_initializer": "keras.initializers",
        "/config/layers/1/config/bias_initializer": "keras.initializers",
        "/config/layers/2": "keras.layers",
        "/config/layers/2/config/kernel_initializer": "keras.initializers",
        "/config/layers/2/config/bias_initializer": "keras.initializers",
    }
    with open_archive(path) as archive:
        assert archive.format == "h5"
        assert "module" not in json_pointer.get(
            archive.config, "/config/layers/1/config/kernel_initializer"
        )
    found = findings(path)
    assert {f.location for f in found} == set(expected)
    assert {f.fix for f in found} == {"safe"}
    config = fixed(path).edit.config
    for location, module in expected.items():
        obj = json_pointer.get(config, location)
        assert obj["module"] == module, location
        assert next(iter(obj)) == "module", location
        assert obj["registered_name"] is None, location
    assert json_pointer.get(config, "/config/layers/1/class_name") == "Dense"
    assert json_pointer.get(config, "/config/layers/1/config/kernel_initializer/class_name") == (
        "GlorotUniform"
    )


def test_every_object_of_a_converted_h5_has_a_module():
    config = fixed(KERAS2 / "nested_sequential.h5").edit.config
    walked = [
        (json_pointer.of(path), obj)
        for path, obj, _ in objects.serialized_objects(config)
        if obj["class_name"] not in objects.SPECIAL_OBJECTS
    ]
    assert len(walked) > 10
    missing = [where for where, obj in walked if not isinstance(obj.get("module"), str)]
    assert missing == []
    assert config["module"] == "keras.src.models.functional"
    assert json_pointer.get(config, "/config/layers/1/module") == "keras"  # nested Sequential


@pytest.mark.parametrize("keras", ["3.0", "3.3"])
@pytest.mark.parametrize("name", ["gru_masking.keras", "gru_masking.h5"])
def test_orthogonal_is_renamed_for_a_release_before_3_4(name, keras):
    locations = [
        "/config/layers/2/config/recurrent_initializer",
        "/config/layers/3/config/recurrent_initializer",
    ]
    found = {f.location: f for f in findings(KERAS2 / name, keras)}
    for location in locations:
        assert found[location].fix == "safe"
        assert "OrthogonalInitializer" in found[location].message
    result = fixed(KERAS2 / name, keras)
    for location in locations:
        initializer = json_pointer.get(result.edit.config, location)
        assert initializer["class_name"] == "OrthogonalInitializer"
        assert initializer["module"] == "keras.initializers"
        assert initializer["config"]["gain"] == 1.0  # its arguments kept
    renamed = [
        c for c in result.changes if c.description == "class Orthogonal -> OrthogonalInitializer"
    ]
    assert [c.location for c in renamed] == locations
    assert result.left == []


@pytest.mark.parametrize("keras", [None, "3.4", "3.6", "3.15"])
def test_orthogonal_keeps_its_name_from_3_4(keras):  # "Orthogonal": ..., # Legacy (3.4.0)
    location = "/config/layers/2/config/recurrent_initializer"
    assert location not in {f.location for f in findings(KERAS2 / "gru_masking.keras", keras)}
    result = fixed(KERAS2 / "gru_masking.keras", keras)
    assert json_pointer.get(result.edit.config, location)["class_name"] == "Orthogonal"
    assert not [c for c in result.changes if "OrthogonalInitializer" in c.description]


def test_keras2_optimizer_module_in_compile_config(tmp_path):
    def experimental_optimizer(config):
        config["compile_config"]["optimizer"] = {
            "module": "keras.optimizers.experimental",
            "class_name": "Adam",
            "config": {"name": "Adam", "learning_rate": 0.01, "jit_compile": False},
            "registered_name": None,
        }

    path = variant(tmp_path, "mlp_trained.keras", experimental_optimizer)
    assert [(f.location, f.fix) for f in findings(path)] == [("/compile_config/optimizer", "safe")]
    optimizer = fixed(path).edit.config["compile_config"]["optimizer"]
    assert optimizer["module"] == "keras.optimizers"
    assert optimizer["class_name"] == "Adam"
    assert optimizer["config"]["learning_rate"] == 0.01


def test_custom_module_is_left_to_the_custom_object_rules(tmp_path):
    def custom(config):
        config["config"]["layers"][1]["module"] = "my_package.layers"
        config["config"]["layers"][1]["class_name"] = "MyDense"

    path = variant(tmp_path, "mlp_trained.keras", custom)
    assert findings(path) == []
    assert [f.location for f in findings(path, code="KR206")] == ["/config/layers/1"]
    layer = fixed(path).edit.config["config"]["layers"][1]
    assert layer["module"] == "my_package.layers"


def test_unknown_class_under_a_keras_module_is_not_given_a_module(tmp_path):
    def unknown(config):
        config["config"]["layers"][1]["module"] = "keras.src.engine.base_layer"
        config["config"]["layers"][1]["class_name"] = "MyDense"

    path = variant(tmp_path, "mlp_trained.keras", unknown)
    assert findings(path) == []
    assert [f.location for f in findings(path, code="KR205")] == ["/config/layers/1/class_name"]
    result = fixed(path)
    assert result.edit.config["config"]["layers"][1]["module"] == "keras.src.engine.base_layer"
    assert {f.code for f in result.left} == {"KR205"}


@pytest.mark.parametrize(
    "name", ["nested_sequential.keras", "mlp_tf212.h5", "teachable_machine.h5", "gru_masking.h5"]
)
@pytest.mark.parametrize("keras", [None, "3.0"])
def test_converted_output_needs_nothing_more(tmp_path, name, keras):
    out = tmp_path / "converted.keras"
    first = fix_archive(KERAS2 / name, out, Options(keras=keras))
    assert any(c.code == "KR701" for c in first.changes)
    assert first.output == str(out) and first.left == []
    with open_archive(out) as archive:
        assert not archive.keras2
        assert check(archive, keras).findings == []
        assert fix(archive, Options(keras=keras)).changes == []


def test_detect_finds_nothing_in_a_keras3_archive():
    with open_archive(KERAS3) as archive:
        ctx = Context(archive, archive.config, Options())
        assert keras2_module.detect(ctx) == []
        ctx = Context(archive, archive.config, Options(keras="3.0"))
        assert keras2_module.detect(ctx) == []
    assert findings(KERAS3) == []


def test_cli_converts_an_h5_model(tmp_path):
    out = tmp_path / "mlp.keras"
    runner = CliRunner()
    before = runner.invoke(app, ["check", str(KERAS2 / "mlp_tf212.h5")])
    assert before.exit_code == 1, before.output
    assert "KR701" in before.output
    result = runner.invoke(app, ["fix", str(KERAS2 / "mlp_tf212.h5"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with open_archive(out) as archive:
        assert archive.config["module"] == "keras"
        assert archive.config["config"]["layers"][1]["module"] == "keras.layers"
    after = runner.invoke(app, ["check", str(out)])
    assert after.exit_code == 0, after.output
