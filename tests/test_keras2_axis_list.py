"""KR703: tf.keras saves BatchNormalization's `axis` as a list ([3]); Keras 3
takes one int. A list of one axis becomes that axis; a list of several is
reported without a fix."""

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
from kerasrepair.passes import keras2_axis_list
from kerasrepair.writer import write_archive

KERAS2 = FIXTURES / "keras2"
KERAS3 = MODELS / "sequential_mlp.keras"
BATCH_NORMALIZATION = "/config/layers/2"  # of cnn_batchnorm


def findings(path, keras=None, code="KR703"):
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


def with_axis(axis):
    def edit(config):
        layer = json_pointer.get(config, BATCH_NORMALIZATION)
        assert layer["class_name"] == "BatchNormalization"
        layer["config"]["axis"] = axis

    return edit


@pytest.mark.parametrize("name", ["cnn_batchnorm.keras", "cnn_batchnorm.h5"])
@pytest.mark.parametrize("keras", [None, "3.0"])
def test_one_axis_becomes_an_int(name, keras):
    location = f"{BATCH_NORMALIZATION}/config/axis"
    with open_archive(KERAS2 / name) as archive:
        assert json_pointer.get(archive.config, location) == [3]
    found = findings(KERAS2 / name, keras)
    assert [(f.location, f.fix, f.layer) for f in found] == [
        (location, "safe", "batch_normalization")
    ]
    result = fixed(KERAS2 / name, keras)
    assert json_pointer.get(result.edit.config, location) == 3
    assert [(c.location, c.description) for c in result.changes if c.code == "KR703"] == [
        (location, "[3] -> 3")
    ]
    arguments = json_pointer.get(result.edit.config, f"{BATCH_NORMALIZATION}/config")
    assert (arguments["momentum"], arguments["epsilon"]) == (0.99, 0.001)


def test_batch_normalizations_inside_a_nested_model():
    locations = [
        "/config/layers/1/config/layers/2/config/axis",
        "/config/layers/1/config/layers/5/config/axis",
    ]
    assert [f.location for f in findings(KERAS2 / "teachable_machine.keras")] == locations
    config = fixed(KERAS2 / "teachable_machine.keras").edit.config
    assert [json_pointer.get(config, where) for where in locations] == [3, 3]


def test_negative_axis(tmp_path):
    path = variant(tmp_path, "cnn_batchnorm.keras", with_axis([-1]))
    assert [f.fix for f in findings(path)] == ["safe"]
    config = fixed(path).edit.config
    assert json_pointer.get(config, f"{BATCH_NORMALIZATION}/config/axis") == -1


def test_several_axes_are_reported_without_a_fix(tmp_path):
    path = variant(tmp_path, "cnn_batchnorm.keras", with_axis([1, 2]))
    found = findings(path)
    assert [(f.location, f.fix) for f in found] == [(f"{BATCH_NORMALIZATION}/config/axis", None)]
    assert "LayerNormalization" in found[0].hint
    result = fixed(path)
    assert json_pointer.get(result.edit.config, f"{BATCH_NORMALIZATION}/config/axis") == [1, 2]
    assert not [c for c in result.changes if c.code == "KR703"]
    assert [(f.code, f.location) for f in result.left] == [
        ("KR703", f"{BATCH_NORMALIZATION}/config/axis")
    ]
    # a Keras 2 model that cannot be fully converted is not written
    out = tmp_path / "out.keras"
    assert fix_archive(path, out).withheld
    assert not out.exists()


def test_an_axis_that_is_already_an_int_is_left_alone(tmp_path):
    path = variant(tmp_path, "cnn_batchnorm.keras", with_axis(3))
    assert findings(path) == []
    assert not [c for c in fixed(path).changes if c.code == "KR703"]


def test_layer_normalization_keeps_its_list(tmp_path):
    def layer_normalization(config):
        layer = json_pointer.get(config, BATCH_NORMALIZATION)
        layer["class_name"] = "LayerNormalization"
        layer["config"] = {"name": "layer_normalization", "axis": [3], "epsilon": 0.001}

    path = variant(tmp_path, "cnn_batchnorm.keras", layer_normalization)
    assert findings(path) == []
    config = fixed(path).edit.config
    assert json_pointer.get(config, f"{BATCH_NORMALIZATION}/config/axis") == [3]


@pytest.mark.parametrize(
    "name", ["cnn_batchnorm.keras", "cnn_batchnorm.h5", "teachable_machine.h5"]
)
def test_converted_output_needs_nothing_more(tmp_path, name):
    out = tmp_path / "converted.keras"
    first = fix_archive(KERAS2 / name, out)
    assert any(c.code == "KR703" for c in first.changes) and first.output == str(out)
    with open_archive(out) as archive:
        assert check(archive).findings == []
        assert fix(archive).changes == []


def test_detect_finds_nothing_in_a_keras3_archive():
    with open_archive(KERAS3) as archive:
        ctx = Context(archive, archive.config, Options())
        assert keras2_axis_list.detect(ctx) == []
    assert findings(KERAS3) == []
