"""KR908: StringLookup, IntegerLookup and TextVectorization take a vocabulary list or
the path of a text file. Keras 3.0-3.11 save the path and read it again at load
time (tf.io.gfile: any local file, or a URL), which a crafted archive points at
/etc/passwd or an internal URL (CVE-2025-12058); Keras 3.12+ store the vocabulary
in the archive and refuse a path in safe_mode."""

from __future__ import annotations

import copy

import pytest
from typer.testing import CliRunner

from conftest import HOSTILE, MODELS
from kerasrepair import check_archive, open_archive
from kerasrepair.cli import app
from kerasrepair.context import Context, Options
from kerasrepair.passes import lookup_file

SOURCE = MODELS / "sequential_mlp.keras"


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("lookup_vocabulary_path.keras", "the absolute path '/etc/passwd'"),
        ("lookup_vocabulary_url.keras", "the URL 'https://attacker.invalid/vocab.txt'"),
    ],
)
def test_a_vocabulary_that_is_a_file_or_a_url(name, said):
    path = HOSTILE / name
    [finding] = check_archive(path).findings  # the URL is not KR905's too
    assert (finding.code, finding.severity, finding.location) == (
        "KR908",
        "error",
        "/config/layers/2/config/vocabulary",
    )
    assert finding.message == (
        f"StringLookup 'lookup' reads its vocabulary from {said} when the model is loaded, "
        "not from the archive"
    )
    assert "CVE-2025-12058 (Keras < 3.12.0; fixed in 3.12.0)" in finding.hint
    ran = CliRunner().invoke(app, ["check", str(path)])
    assert ran.exit_code == 1 and "KR908 error" in ran.output


def _detect(vocabulary, class_name="StringLookup", keras=None, argument="vocabulary"):
    with open_archive(SOURCE) as archive:
        config = copy.deepcopy(archive.config)
        config["config"]["layers"].insert(
            2,
            {
                "module": "keras.layers",
                "class_name": class_name,
                "config": {"name": "lookup", argument: vocabulary},
            },
        )
        ctx = Context(archive, config, Options(keras=keras))
        return [(f.severity, f.message) for f in lookup_file.detect(ctx)]


@pytest.mark.parametrize(
    ("vocabulary", "said"),
    [
        ("../../home/user/.ssh/id_rsa", "the path"),
        ("..\\secrets.txt", "the path"),
        ("~/vocab.txt", "the absolute path"),
        ("C:\\Users\\me\\vocab.txt", "the absolute path"),
        ("s3://bucket/vocab.txt", "the URL"),
    ],
)
@pytest.mark.parametrize("class_name", ["StringLookup", "IntegerLookup", "TextVectorization"])
def test_paths_out_of_the_working_directory_are_errors_in_every_release(
    vocabulary, said, class_name
):
    for keras in ("3.10", None):
        [(severity, message)] = _detect(vocabulary, class_name, keras)
        assert severity == "error"
        assert f"from {said} {vocabulary!r}" in message


def test_a_plain_name_is_how_keras_3_0_to_3_11_saved_a_layer_built_from_a_file():
    """A warning for those releases, which read it in the directory they run in;
    an error for 3.12+, which refuse to load it in safe_mode."""
    [(severity, message)] = _detect("vocab.txt", keras="3.10")
    assert severity == "warning"
    assert "from the file 'vocab.txt'" in message
    [(severity, _)] = _detect("vocab.txt", keras="3.12")
    assert severity == "error"


@pytest.mark.parametrize("vocabulary", [["a", "b"], None, 7, {"path": "/etc/passwd"}])
def test_a_list_or_anything_else_is_not_a_file(vocabulary):
    assert _detect(vocabulary) == []


def test_idf_weights_are_never_read_from_a_file():
    assert _detect("/etc/passwd", argument="idf_weights") == []
