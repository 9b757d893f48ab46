"""KR907: a TFSMLayer keeps only the path of the TensorFlow SavedModel it wraps,
and loading the model loads whatever is at that path (CVE-2026-1462): a file of
the loading machine, or a `gs://` URL, becomes part of the model and runs on its
inputs. Keras 3.12.1, 3.13.2 and 3.14+ refuse it in safe_mode; older releases load
it. An error either way."""

from __future__ import annotations

import copy

import pytest
from typer.testing import CliRunner

from conftest import HOSTILE, MODELS
from kerasrepair import check_archive, open_archive
from kerasrepair.cli import app
from kerasrepair.context import Context
from kerasrepair.passes import non_modelling_api, saved_model_path

SOURCE = MODELS / "sequential_mlp.keras"


def test_a_tfsm_layer_with_a_file_path():
    path = HOSTILE / "tfsm_layer.keras"
    [finding] = check_archive(path).findings
    assert (finding.code, finding.severity, finding.location) == (
        "KR907",
        "error",
        "/config/layers/2/config/filepath",
    )
    assert finding.message == (
        "TFSMLayer 'saved_model' loads the SavedModel at '/tmp/attacker_saved_model', outside "
        "the archive, when the model is loaded"
    )
    assert finding.layer == "saved_model"
    assert (
        "CVE-2026-1462 (Keras >= 3.0.0, < 3.12.1 or >= 3.13.0, < 3.13.2; fixed in 3.12.1, 3.13.2)"
        in finding.hint
    )
    ran = CliRunner().invoke(app, ["check", str(path)])
    assert ran.exit_code == 1 and "KR907 error" in ran.output


def _detect(arguments):
    with open_archive(SOURCE) as archive:
        config = copy.deepcopy(archive.config)
        config["config"]["layers"].insert(
            2,
            {
                "module": "keras.layers",
                "class_name": "TFSMLayer",
                "config": {"name": "saved_model", **arguments},
            },
        )
        ctx = Context(archive, config)
        return [(f.code, f.location) for f in saved_model_path.detect(ctx)] + [
            (f.code, f.location) for f in non_modelling_api.detect(ctx)
        ]


@pytest.mark.parametrize("filepath", ["exported", "../models/x", "gs://bucket/model"])
def test_any_path_relative_or_a_url_once(filepath):
    """A URL there is this rule's, not KR905's too."""
    assert _detect({"filepath": filepath}) == [("KR907", "/config/layers/2/config/filepath")]


@pytest.mark.parametrize("arguments", [{}, {"filepath": None}, {"filepath": ["a"]}])
def test_without_a_path_it_still_names_an_outside_savedmodel(arguments):
    found = _detect(arguments)
    assert [code for code, _ in found] == ["KR907"]
