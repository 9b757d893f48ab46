"""`kerasrepair verify`: real Keras, in a child process, says whether an archive
loads, whether its weights were restored, and whether it predicts as the
original did."""

import json
import os

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, MODELS
from kerasrepair import fix_archive
from kerasrepair.cli import app
from kerasrepair.verify import verify


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.releases
def test_a_repaired_archive_is_verified_in_the_release_that_failed(tmp_path):
    from releases import python_for

    original = FIXTURES / "releases" / "keras-3.4.1" / "numpy_rescaling.keras"
    fixed = tmp_path / "fixed.keras"
    fix_archive(original, fixed)
    python = python_for("3.4.1")

    before = _run("verify", original, "--against", original.with_suffix(".npz"), "--python", python)
    assert before.exit_code == 1
    assert "TrackedDict" in before.output and "NOT verified" in before.output

    after = _run("verify", fixed, "--against", original.with_suffix(".npz"), "--python", python)
    assert after.exit_code == 0, after.output
    assert "loaded with Keras 3.4.1" in after.output
    assert "2 variables loaded of 2 stored" in after.output


def test_against_the_original_archive(tmp_path):
    fixed = tmp_path / "fixed.keras"
    fix_archive(MODELS / "shared_layer_three_uses.keras", fixed)
    report = verify(fixed, against=MODELS / "shared_layer_three_uses.keras")
    assert report["ok"], report
    assert report["original"]["status"] == "ok"
    # the original is loaded in the same child, on the same inputs: bit for bit
    assert report["load"]["max_abs_diff"] == 0.0
    assert report["original"]["identical"], report


def test_weights_left_unrestored_are_caught(monkeypatch):
    """keras#20409: the subclassed model loads with a warning and random weights."""
    monkeypatch.chdir(FIXTURES)  # where `custom_objects` can be imported from
    result = _run(
        "verify",
        "models/subclassed_bool_mask.keras",
        "--custom-objects",
        "custom_objects",
        "--json",
    )
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["load"]["status"] == "ok"  # no error: that is the trap
    assert report["weights"] == {"stored": 4, "loaded": 0, "restored": False}
    assert any("cannot be built automatically" in w for w in report["load"]["warnings"])


def test_a_missing_interpreter_is_bad_input(tmp_path):
    result = _run("verify", MODELS / "sequential_mlp.keras", "--python", tmp_path / "python")
    assert result.exit_code == 2
    assert "no such interpreter" in result.output


@pytest.mark.parametrize("name", ["original.keras", "reference.npz"])
def test_an_original_that_is_a_fifo_is_refused_before_the_child_opens_it(name, tmp_path):
    fifo = tmp_path / name
    os.mkfifo(fifo)  # the child's load_model or np.load would block on it
    result = _run("verify", MODELS / "functional_nested_shared.keras", "--against", fifo)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"kerasrepair: error: {fifo}: is a FIFO (named pipe), not a regular file (not read); "
        "give the path of a .keras or .h5 file; save a stream to a file first"
    )
