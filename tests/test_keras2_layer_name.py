"""KR709: layer names with '/' (tf.keras allowed them: DenseNet121's "conv1/conv")
renamed, with every reference to them, on fixtures/keras2/slash_names saved by
tf.keras 2.15. (That Keras 3 releases then load it: tests/test_keras2_proof.py.)"""

import json
import zipfile

import pytest

from conftest import FIXTURES, MODELS
from kerasrepair.api import fix_archive
from kerasrepair.archive import open_archive
from kerasrepair.check import check
from kerasrepair.context import Context, Options
from kerasrepair.passes import keras2_layer_name

KERAS2 = FIXTURES / "keras2"


def config_of(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("config.json"))


@pytest.mark.parametrize("source", ["slash_names.keras", "slash_names.h5"])
def test_check_names_each_layer_keras_3_refuses(source):
    with open_archive(KERAS2 / source) as archive:
        found = [f for f in check(archive).findings if f.code == "KR709"]
    assert sorted(f.layer for f in found) == ["block1/bn", "block1/dense", "head/dense"]
    assert all(f.fix == "safe" and f.severity == "error" for f in found)


@pytest.mark.parametrize("source", ["slash_names.keras", "slash_names.h5"])
def test_renamed_with_every_reference(source, tmp_path):
    out = tmp_path / "renamed.keras"
    result = fix_archive(KERAS2 / source, out, Options())
    assert not result.left
    config = config_of(out)["config"]
    names = [layer["config"]["name"] for layer in config["layers"]]
    assert names == ["input", "block1_dense", "block1_bn", "head_dense"]
    assert [layer["name"] for layer in config["layers"]] == names
    text = json.dumps(config)
    assert "block1/" not in text and "head/" not in text
    calls = [layer["inbound_nodes"] for layer in config["layers"][1:]]
    assert [call[0][0][0] for call in calls] == ["input", "block1_dense", "block1_bn"]
    assert config["output_layers"][0][0] == "head_dense"


def test_a_taken_name_gets_a_number(tmp_path):
    """'block1/dense' -> 'block1_dense' is taken by another layer: 'block1_dense_1'."""
    with open_archive(KERAS2 / "slash_names.keras") as archive:
        config = json.loads(archive.config_bytes)
        config["config"]["layers"][0]["config"]["name"] = "block1_dense"
        config["config"]["layers"][0]["name"] = "block1_dense"
        for layer in config["config"]["layers"][1:2]:
            layer["inbound_nodes"][0][0][0] = "block1_dense"
        config["config"]["input_layers"][0][0] = "block1_dense"
        from kerasrepair.edit import Edit

        edit = Edit(config=config)
        ctx = Context(archive, config, Options())
        findings = keras2_layer_name.detect(ctx)
        keras2_layer_name.apply(ctx, edit, findings)
    names = [layer["config"]["name"] for layer in edit.config["config"]["layers"]]
    assert names == ["block1_dense", "block1_dense_1", "block1_bn", "head_dense"]
    assert edit.config["config"]["layers"][2]["inbound_nodes"][0][0][0] == "block1_dense_1"
    assert edit.config["config"]["layers"][1]["inbound_nodes"][0][0][0] == "block1_dense"


def test_keras_3_archives_have_none():
    with open_archive(MODELS / "sequential_mlp.keras") as archive:
        assert keras2_layer_name.detect(Context(archive, archive.config)) == []


def test_weights_are_untouched_by_the_rename(tmp_path):
    """Keras 3 stores weights by class and position: renaming moves nothing."""
    out = tmp_path / "renamed.keras"
    fix_archive(KERAS2 / "slash_names.keras", out, Options())
    with zipfile.ZipFile(KERAS2 / "slash_names.keras") as a, zipfile.ZipFile(out) as b:
        assert a.read("model.weights.h5") == b.read("model.weights.h5")
