"""KR905: config.json names a Keras API that is no part of a model. Keras
deserializes any public function config.json names: a Lambda whose function is
`keras.utils.get_file` downloads, `keras.config.enable_unsafe_deserialization`
turns safe_mode off for the Lambda after it (CVE-2025-8747, CVE-2025-9906). And a
URL in a config: Keras never writes one, a loader reading one fetches it."""

from __future__ import annotations

import copy

import pytest
from typer.testing import CliRunner

from conftest import HOSTILE, MODELS
from kerasrepair import check_archive, open_archive
from kerasrepair.cli import app
from kerasrepair.context import Context
from kerasrepair.passes import non_modelling_api

SOURCE = MODELS / "sequential_mlp.keras"


def _found(path):
    return [(f.code, f.severity, f.location) for f in check_archive(path).findings]


def _detect(edit):
    with open_archive(SOURCE) as archive:
        config = copy.deepcopy(archive.config)
        edit(config)
        return [(f.location, f.message) for f in non_modelling_api.detect(Context(archive, config))]


def _function(module, name):
    return {"module": module, "class_name": "function", "config": name, "registered_name": None}


def _set_activation(value, layer=4):
    def edit(config):
        config["config"]["layers"][layer]["config"]["activation"] = value

    return edit


def test_get_file_as_a_lambdas_function():
    path = HOSTILE / "get_file_lambda.keras"
    assert _found(path) == [("KR905", "error", "/config/layers/2/config/function")]
    [finding] = check_archive(path).findings
    assert finding.message == (
        "the function 'get_file' in Lambda 'fetch' names keras.utils.get_file, which is not "
        "a model part: the loader would call it"
    )
    assert "CVE-2025-8747 (Keras >= 3.0.0, < 3.11.0; fixed in 3.11.0)" in finding.hint
    assert "CVE-2025-9906 (Keras < 3.11.0; fixed in 3.11.0)" in finding.hint
    assert CliRunner().invoke(app, ["check", str(path)]).exit_code == 1


def test_get_file_as_an_initializer_by_its_keras_src_module():
    """The same function under the module that defines it; Keras 3.15 does not know
    such an initializer either (KR205)."""
    assert _found(HOSTILE / "get_file_initializer.keras") == [
        ("KR205", "error", "/config/layers/4/config/kernel_initializer/class_name"),
        ("KR905", "error", "/config/layers/4/config/kernel_initializer"),
    ]


def test_a_url_in_a_config_string():
    path = HOSTILE / "url_in_config.keras"
    assert _found(path) == [("KR905", "error", "/config/layers/4/config/activation")]
    [finding] = check_archive(path).findings
    assert finding.message == (
        "config.json names a URL at /config/layers/4/config/activation: "
        "'https://attacker.invalid/act.py'"
    )


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("keras.config", "enable_unsafe_deserialization"),
        ("keras.models", "load_model"),
        ("keras.saving", "load_model"),
        ("keras.src.saving.saving_api", "load_model"),
        ("keras.src.utils.file_utils", "get_file"),
        ("keras.utils", "register_keras_serializable"),
    ],
)
def test_non_modelling_functions_and_their_keras_src_spellings(module, name):
    assert _detect(_set_activation(_function(module, name))) == [
        (
            "/config/layers/4/config/activation",
            f"the function '{name}' in Dense 'dense_out' names {module}.{name}, which is not "
            "a model part: the loader would call it",
        )
    ]


def test_as_a_class_a_registered_name_or_a_plain_string():
    assert [location for location, _ in _detect(_set_activation("keras.utils.get_file"))] == [
        "/config/layers/4/config/activation"
    ]

    def registered(config):
        config["config"]["layers"][4]["registered_name"] = "keras.models>load_model"

    assert [location for location, _ in _detect(registered)] == ["/config/layers/4"]


@pytest.mark.parametrize(
    "url",
    [
        "http://example.invalid/x",
        "ftp://example.invalid/x",
        "file:///etc/passwd",
        "s3://bucket/key",
        "gs://bucket/key",
        "hf://user/model",
        "see https://example.invalid/x",
    ],
)
def test_urls_of_any_scheme(url):
    assert [location for location, _ in _detect(_set_activation(url))] == [
        "/config/layers/4/config/activation"
    ]


def test_modelling_functions_and_plain_text_are_not_reported():
    assert _detect(_set_activation(_function("keras.activations", "relu"))) == []
    assert _detect(_set_activation("keras.layers is not a URL: relu")) == []


def test_a_lookup_layers_vocabulary_is_kr908s():
    """The URL of a vocabulary is reported once, by KR908; a vocabulary list that
    holds URLs as its tokens is data, fetched by no one."""
    assert _found(HOSTILE / "lookup_vocabulary_url.keras") == [
        ("KR908", "error", "/config/layers/2/config/vocabulary")
    ]

    def tokens(config):
        config["config"]["layers"].insert(
            2,
            {
                "module": "keras.layers",
                "class_name": "StringLookup",
                "config": {"name": "urls", "vocabulary": ["https://a.invalid", "http://b"]},
            },
        )

    assert _detect(tokens) == []
