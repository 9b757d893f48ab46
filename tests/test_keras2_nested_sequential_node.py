"""KR705: tf.keras numbers the first call of a nested Sequential built with an
input node 1 (its own graph is node 0); Keras 3 numbers it 0. References to
such a Sequential's calls count from 0 after the fix; nested Functional models
(which Keras 3 itself reads at Keras 2's numbering) are not touched."""

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
from kerasrepair.passes import keras2_nested_sequential_node
from kerasrepair.writer import write_archive

KERAS2 = FIXTURES / "keras2"
KERAS3 = MODELS / "sequential_mlp.keras"
CALL = "/config/layers/2/inbound_nodes/0/0"  # dense_2 reads inner_sequential


def findings(path, keras=None, code="KR705"):
    with open_archive(path) as archive:
        return [f for f in check(archive, keras).findings if f.code == code]


def fixed(path, keras=None):
    with open_archive(path) as archive:
        return fix(archive, Options(keras=keras))


def variant(tmp_path, edit, name="nested_sequential.keras"):
    """A copy of fixture `name` whose config.json `edit` changed."""
    with open_archive(KERAS2 / name) as archive:
        config = copy.deepcopy(archive.config)
        edit(config)
        target = tmp_path / name
        write_archive(archive, target, {"config.json": json.dumps(config).encode()})
    return target


@pytest.mark.parametrize("name", ["nested_sequential.keras", "nested_sequential.h5"])
@pytest.mark.parametrize("keras", [None, "3.0"])
def test_first_call_is_read_at_node_0(name, keras):
    with open_archive(KERAS2 / name) as archive:
        assert json_pointer.get(archive.config, CALL) == ["inner_sequential", 1, 0, {}]
    found = findings(KERAS2 / name, keras)
    assert [(f.location, f.fix, f.layer) for f in found] == [(CALL, "safe", "inner_sequential")]
    result = fixed(KERAS2 / name, keras)
    config = result.edit.config
    assert json_pointer.get(config, CALL) == ["inner_sequential", 0, 0, {}]
    # the Sequential's own input and the model's inputs and outputs are untouched
    assert json_pointer.get(config, "/config/layers/1/inbound_nodes") == [[["input_1", 0, 0, {}]]]
    assert config["config"]["input_layers"] == [["input_1", 0, 0]]
    assert config["config"]["output_layers"] == [["dense_2", 0, 0]]
    assert [(c.location, c.description) for c in result.changes if c.code == "KR705"] == [
        (CALL, "node 1 -> 0")
    ]


@pytest.mark.parametrize("name", ["teachable_machine.keras", "teachable_machine.h5"])
def test_nothing_for_a_nested_functional(name):
    assert findings(KERAS2 / name) == []
    result = fixed(KERAS2 / name)
    assert not [c for c in result.changes if c.code == "KR705"]
    assert result.left == []


def test_a_model_output_read_from_the_sequential(tmp_path):
    def output_is_the_sequential(config):
        inner = config["config"]
        del inner["layers"][2]  # dense_2
        inner["output_layers"] = [["inner_sequential", 1, 0]]

    path = variant(tmp_path, output_is_the_sequential)
    assert [f.location for f in findings(path)] == ["/config/output_layers/0"]
    config = fixed(path).edit.config
    assert config["config"]["output_layers"] == [["inner_sequential", 0, 0]]


def test_a_sequential_called_twice(tmp_path):
    def called_twice(config):
        inner = config["config"]
        sequential = inner["layers"][1]
        sequential["inbound_nodes"] = [[["input_1", 0, 0, {}]], [["input_1", 0, 0, {}]]]
        inner["layers"][2]["inbound_nodes"] = [[["inner_sequential", 2, 0, {}]]]
        inner["output_layers"] = [["dense_2", 0, 0], ["inner_sequential", 1, 0]]

    path = variant(tmp_path, called_twice)
    assert [f.location for f in findings(path)] == [CALL, "/config/output_layers/1"]
    config = fixed(path).edit.config
    assert json_pointer.get(config, CALL) == ["inner_sequential", 1, 0, {}]
    assert config["config"]["output_layers"] == [["dense_2", 0, 0], ["inner_sequential", 0, 0]]


def test_a_sequential_built_with_input_shape_but_saved_without_input_layer(tmp_path):
    """Keras 2.2-2.3 saved a Sequential built with `input_shape=` without its
    InputLayer, the shape on its first layer (KR702 inserts the InputLayer).
    Such a Sequential is a graph network with its own node 0 all the same, and
    once KR702 has given it its InputLayer, `fix`'s own check reports KR705 on
    the node 1 it left: KR705 (which runs before KR702) must see it too."""

    def legacy_sequential(config):
        inner_layers = config["config"]["layers"][1]["config"]["layers"]
        del inner_layers[0]  # the InputLayer
        inner_layers[0]["config"]["batch_input_shape"] = [None, 3]

    path = variant(tmp_path, legacy_sequential)
    result = fixed(path)
    config = result.edit.config
    inner_layers = config["config"]["layers"][1]["config"]["layers"]
    assert inner_layers[0]["class_name"] == "InputLayer"  # KR702's
    assert inner_layers[0]["config"]["batch_shape"] == [None, 3]
    assert [f.location for f in result.remaining if f.code == "KR705"] == []
    assert json_pointer.get(config, CALL) == ["inner_sequential", 0, 0, {}]
    assert [f.location for f in findings(path)] == [CALL]


@pytest.mark.parametrize("name", ["nested_sequential.keras", "nested_sequential.h5"])
def test_converted_output_needs_nothing_more(tmp_path, name):
    out = tmp_path / "converted.keras"
    first = fix_archive(KERAS2 / name, out)
    assert any(c.code == "KR705" for c in first.changes) and first.output == str(out)
    with open_archive(out) as archive:
        assert json_pointer.get(archive.config, CALL) == ["inner_sequential", 0, 0, {}]
        assert check(archive).findings == []
        assert fix(archive).changes == []


def test_detect_finds_nothing_in_keras3_archives():
    for path in (KERAS3, MODELS / "functional_nested_shared.keras"):
        with open_archive(path) as archive:
            ctx = Context(archive, archive.config, Options())
            assert keras2_nested_sequential_node.detect(ctx) == []
        assert findings(path) == []
