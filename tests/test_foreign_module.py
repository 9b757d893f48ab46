"""KR904: an object named by a module that holds no model code. Keras 3.0-3.8 import
whatever module config.json names and take the class or function from it
(CVE-2025-1550): `os`, `subprocess`, `builtins.eval`. Such an object used to be a
KR206 note ("a custom object, the loader must be given it", exit 0); it is an
error now, and KR206 keeps the user's own classes."""

from __future__ import annotations

import copy

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, HOSTILE, MODELS
from kerasrepair import check_archive, open_archive
from kerasrepair.cli import app
from kerasrepair.context import Context
from kerasrepair.passes import custom_object, foreign_module

SOURCE = MODELS / "sequential_mlp.keras"


def _found(path):
    return [(f.code, f.severity, f.location) for f in check_archive(path).findings]


def _detect(edit, source=SOURCE):
    """KR904's and KR206's findings on a copy of `source`'s config changed by `edit`."""
    with open_archive(source) as archive:
        config = copy.deepcopy(archive.config)
        edit(config)
        ctx = Context(archive, config)
        return [
            (f.code, f.location) for f in foreign_module.detect(ctx) + custom_object.detect(ctx)
        ]


def _dense_out(**changes):
    def edit(config):
        config["config"]["layers"][4].update(changes)

    return edit


@pytest.mark.parametrize(
    ("name", "location", "said"),
    [
        ("module_os.keras", "/config/layers/4", "module 'os' (Python's standard library)"),
        (
            "builtins_eval.keras",
            "/config/layers/1/config/activation",
            "module 'builtins' (Python's builtins ('eval'))",
        ),
        (
            "registered_popen.keras",
            "/config/layers/4",
            "registered_name 'subprocess>Popen' (Python's standard library)",
        ),
    ],
)
def test_a_module_that_holds_no_model_class_is_an_error(name, location, said):
    path = HOSTILE / name
    assert _found(path) == [("KR904", "error", location)]  # and no KR206 note
    [finding] = check_archive(path).findings
    assert said in finding.message
    assert finding.hint.startswith("this is not a model class: do not load this file")
    assert "CVE-2025-1550 (Keras >= 3.0.0, < 3.9.0; fixed in 3.9.0)" in finding.hint
    ran = CliRunner().invoke(app, ["check", str(path)])
    assert ran.exit_code == 1 and "KR904 error" in ran.output


def test_keras_3_9_and_later_refuse_it(keras):
    """Keras 3.15 never imports `os` for it: it cannot find the class."""
    with pytest.raises(TypeError, match="Could not locate class 'Dense'"):
        keras.saving.load_model(HOSTILE / "module_os.keras")


@pytest.mark.parametrize(
    "module",
    [
        "subprocess",
        "os.path",
        "posix",
        "importlib",
        "pickle",
        "ctypes",
        "runpy",
        "shutil",
        "socket",
        "sys",
        "builtins",
        "dill",
        "joblib",
    ],
)
def test_standard_library_builtins_and_non_modelling_packages(module):
    assert _detect(_dense_out(module=module)) == [("KR904", "/config/layers/4")]


@pytest.mark.parametrize("module", ["my_project.layers", "__main__", "keras_hub.layers"])
def test_a_users_own_package_stays_a_custom_object(module):
    assert _detect(_dense_out(module=module, registered_name="my_project>Dense")) == [
        ("KR206", "/config/layers/4")
    ]


def test_keras_own_custom_functions_are_not_foreign():
    """Keras 3.0-3.6 write a custom function as module 'builtins', class 'function':
    only a name of Python's builtins there is foreign."""
    path = FIXTURES / "releases" / "keras-3.6.0" / "custom_function_loss.keras"
    assert not [f for f in check_archive(path).findings if f.code == "KR904"]

    def activation(name):
        def edit(config):
            config["config"]["layers"][1]["config"]["activation"] = {
                "module": "builtins",
                "class_name": "function",
                "config": name,
                "registered_name": "function",
            }

        return edit

    assert _detect(activation("my_package>soft_clip")) == []  # a registered function
    for name in ("exec", "open", "__import__", "getattr"):
        assert _detect(activation(name)) == [("KR904", "/config/layers/1/config/activation")]


def test_a_tf_keras_lambda_whose_module_is_os():
    """tf.keras looks a Lambda's function up in the globals of its `module`."""
    source = FIXTURES / "keras2" / "lambda_layer.keras"

    def edit(config):
        lam = config["config"]["layers"][2]["config"]
        lam.update(function="system", function_type="function", module="os")

    assert ("KR904", "/config/layers/2/config/module") in _detect(edit, source)


@pytest.mark.parametrize("value", [None, 7, 1.5, True, [], ["os"], {"os": 1}, ""])
def test_any_json_at_the_module_keys(value):
    """A module that is a number or a list names no module: no finding, no crash."""
    found = _detect(_dense_out(module=value, registered_name=value, fn_module=value))
    assert [code for code, _ in found if code == "KR904"] == []
