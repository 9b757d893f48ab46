"""KR903: Python code serialized in config.json. A Lambda layer, a lambda loss or
activation is marshaled bytecode that runs when the model is loaded: Keras refuses
it while safe_mode=True, runs it with safe_mode=False, and (Keras 3.0-3.11.2) runs
it from a legacy .h5 model whatever safe_mode says. kerasrepair finds every such
object, in nested models, wrappers and compile_config, from the file alone."""

from __future__ import annotations

import copy

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, HOSTILE, MODELS
from kerasrepair import check_archive, fix_archive, open_archive
from kerasrepair.cli import app
from kerasrepair.context import Context, Options
from kerasrepair.passes import serialized_code

KERAS2 = FIXTURES / "keras2"


def _found(path, keras=None):
    return [
        (f.code, f.severity, f.location)
        for f in check_archive(path, keras).findings
        if f.code == "KR903"
    ]


def _detect(config, source=MODELS / "sequential_mlp.keras", keras=None):
    with open_archive(source) as archive:
        return serialized_code.detect(Context(archive, config, Options(keras=keras)))


def _lambda(code="4wEAAAAAAAAA"):
    return {"class_name": "__lambda__", "config": {"code": code, "defaults": None, "closure": None}}


def test_a_lambda_in_a_nested_model():
    path = HOSTILE / "lambda_nested_model.keras"
    [finding] = check_archive(path).findings
    assert (finding.code, finding.severity, finding.location) == (
        "KR903",
        "warning",
        "/config/layers/2/config/layers/0/config/function",
    )
    assert finding.message == (
        "Lambda layer 'identity_lambda' holds serialized Python code: loading the model "
        "with safe_mode=False runs it"
    )
    assert finding.layer == "identity_lambda"
    assert "CVE-2024-3660 (Keras < 2.13; fixed in 2.13)" in finding.hint
    assert "CVE-2025-9905" not in finding.hint  # a .keras archive: safe_mode is honoured
    ran = CliRunner().invoke(app, ["check", str(path)])
    assert ran.exit_code == 0 and "KR903 warning" in ran.output  # a warning: exit 0
    assert CliRunner().invoke(app, ["check", "--strict", str(path)]).exit_code == 1


def test_a_lambda_loss_in_compile_config():
    [finding] = check_archive(HOSTILE / "lambda_loss.keras").findings
    assert (finding.code, finding.severity, finding.location) == (
        "KR903",
        "warning",
        "/compile_config/loss",
    )
    assert finding.message.startswith(
        "the loss in compile_config of Sequential 'sequential_mlp' holds serialized Python code"
    )


def test_keras_refuses_it_in_safe_mode(keras):
    """Why a warning, not an error: Keras 3 will not run it unless asked to."""
    with pytest.raises(ValueError, match="lambda"):
        keras.saving.load_model(HOSTILE / "lambda_nested_model.keras")


def test_a_legacy_h5_model_and_the_releases_that_ignore_safe_mode():
    """tf.keras's layout (`"function": [code, ...]`) read from `model_config`: Keras
    3.0-3.11.2 load an .h5 model without looking at safe_mode (CVE-2025-9905)."""
    path = KERAS2 / "lambda_layer.h5"
    location = "/config/layers/2/config/function"
    assert _found(path) == [("KR903", "warning", location)]  # for 3.15: refused in safe mode
    [finding] = [f for f in check_archive(path, "3.10").findings if f.code == "KR903"]
    assert (finding.severity, finding.location) == ("error", location)
    assert "Keras 3.10.0 runs it when it loads this .h5 model, even with safe_mode=True" in (
        finding.message
    )
    assert "CVE-2025-9905 (Keras >= 3.0.0, < 3.11.3; fixed in 3.11.3)" in finding.hint
    assert [f.severity for f in check_archive(path, "3.11").findings if f.code == "KR903"] == [
        "warning"  # 3.11.3, the newest 3.11, honours safe_mode
    ]


def test_tf_keras_layout_before_it_is_converted():
    """`check` reads a Keras 2 archive as KR706 converts it; the rule also reads the
    layout tf.keras wrote, for a config nothing converted (`fix --skip KR706`)."""
    with open_archive(KERAS2 / "lambda_layer.keras") as archive:
        found = serialized_code.detect(Context(archive, archive.config))
    assert [(f.location, f.message.split(":")[0]) for f in found] == [
        (
            "/config/layers/2/config/function",
            "Lambda layer 'lambda' (function) holds serialized Python code",
        )
    ]


def test_every_lambda_of_real_archives_is_found():
    assert _found(MODELS / "lambda_global.keras") == [
        ("KR903", "warning", "/config/layers/1/config/function")
    ]
    assert _found(KERAS2 / "lambda_layer.keras") == [
        ("KR903", "warning", "/config/layers/2/config/function")
    ]


def test_lambdas_in_wrappers_activations_and_metrics():
    with open_archive(MODELS / "sequential_mlp.keras") as archive:
        config = copy.deepcopy(archive.config)
    layers = config["config"]["layers"]
    layers[1]["config"]["activation"] = _lambda()
    layers.insert(
        2,
        {
            "module": "keras.layers",
            "class_name": "TimeDistributed",
            "config": {
                "name": "per_step",
                "layer": {
                    "module": "keras.layers",
                    "class_name": "Lambda",
                    "config": {"name": "inner", "function": _lambda()},
                },
            },
        },
    )
    config["compile_config"]["metrics"] = [_lambda()]
    found = _detect(config)
    assert [(f.location, f.message.split(" holds")[0]) for f in found] == [
        ("/config/layers/1/config/activation", "a lambda in Dense 'dense_in'"),
        ("/config/layers/2/config/layer/config/function", "Lambda layer 'inner'"),
        (
            "/compile_config/metrics/0",
            "the metrics in compile_config of Sequential 'sequential_mlp'",
        ),
    ]


def test_fix_never_removes_it(tmp_path):
    """No fix: replacing the code would change what the model computes. The written
    archive still holds it, and `check` of it still says so."""
    target = tmp_path / "out.keras"
    result = fix_archive(HOSTILE / "lambda_loss.keras", target)
    assert result.changes == []
    assert _found(target) == [("KR903", "warning", "/compile_config/loss")]
    assert serialized_code.RULE.fix == "never"
