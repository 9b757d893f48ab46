"""KR909: a name that is a path. Keras makes layer names into directory and group
paths while it saves and loads: a layer named `..` sent Keras 3.14's DiskIOStore out
of its working directory (CVE-2026-12479), a NUL cuts a C path short. Keras never
writes such a name (Keras 3 refuses '/' in a layer's name), so the names of every
real archive pass."""

from __future__ import annotations

import copy

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, HOSTILE, MODELS
from kerasrepair import check_archive, open_archive
from kerasrepair.cli import app
from kerasrepair.context import Context
from kerasrepair.passes import object_name_path

SOURCE = MODELS / "sequential_mlp.keras"


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("name_traversal.keras", "'../../evil' (config/name): the name has a '..' path component"),
        ("name_nul.keras", "'batch_norm\\x00.h5' (config/name): the name has a NUL character"),
    ],
)
def test_a_layer_named_with_a_path(name, said):
    path = HOSTILE / name
    [finding] = check_archive(path).findings
    assert (finding.code, finding.severity, finding.location) == (
        "KR909",
        "error",
        "/config/layers/3/config/name",
    )
    assert finding.message == f"BatchNormalization named {said}, and Keras makes names paths"
    assert "CVE-2026-12479 (Keras 3.14.0)" in finding.hint
    ran = CliRunner().invoke(app, ["check", str(path)])
    assert ran.exit_code == 1 and "KR909 error" in ran.output


def _detect(edit, source=SOURCE):
    with open_archive(source) as archive:
        config = copy.deepcopy(archive.config)
        edit(config)
        return [f.location for f in object_name_path.detect(Context(archive, config))]


def _name(value, field="name"):
    def edit(config):
        config["config"]["layers"][1]["config"][field] = value

    return edit


@pytest.mark.parametrize("name", ["..", "..\\..\\evil", "a/b", "x\\y", "head/..", "\x00"])
def test_path_names(name):
    assert _detect(_name(name)) == ["/config/layers/1/config/name"]


@pytest.mark.parametrize("name", ["v1..2", "dense..", "...", "dense_in", "", "a b", "ü"])
def test_names(name):
    """Two dots inside a name make one harmless path component."""
    assert _detect(_name(name)) == []


def test_the_name_beside_the_config_and_the_registered_name():
    def edit(config):
        config["config"]["layers"][2]["name"] = "../x"
        config["config"]["layers"][4]["registered_name"] = "pkg>..\\Dense"

    assert _detect(edit) == ["/config/layers/2/name", "/config/layers/4/registered_name"]


@pytest.mark.parametrize("value", [None, 3, ["../x"], {"name": "../x"}])
def test_any_json_as_a_name(value):
    assert _detect(_name(value)) == []


def test_tf_keras_names_with_a_slash_are_kr709s():
    """keras.applications.DenseNet121 of tf.keras names layers `conv1/conv`: KR709
    renames them; `check` reads the archive renamed, and the rule leaves them."""
    for path in (FIXTURES / "keras2" / "slash_names.keras", FIXTURES / "keras2" / "slash_names.h5"):
        codes = [f.code for f in check_archive(path).findings]
        assert "KR709" in codes and "KR909" not in codes
        assert _detect(lambda config: None, path) == []
