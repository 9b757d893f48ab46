"""The command line: `inspect` for people and for programs, `python -m`."""

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from kerasrepair.cli import app


@pytest.fixture(scope="module")
def shared_model_archive(keras, saved):
    inputs = keras.Input((3,), name="features")
    shared = keras.layers.Dense(3, name="shared_dense")
    out = keras.layers.Dense(1, name="head")(shared(shared(inputs)))
    return saved(keras.Model(inputs, out, name="cli_model"), "cli_model")


def test_inspect_prints_entries_layers_and_weights(shared_model_archive):
    result = CliRunner().invoke(app, ["inspect", str(shared_model_archive)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "model.weights.h5" in out
    assert "Model 'cli_model': Functional" in out
    shared_row = next(line for line in out.splitlines() if line.strip().startswith("shared_dense"))
    assert "2 (shared)" in shared_row
    assert "features[0][0] | shared_dense[0][0]" in shared_row
    assert "Weights (model.weights.h5): 4 variables, 16 parameters" in out


def test_inspect_json_is_the_api_report(shared_model_archive):
    from kerasrepair import inspect_archive

    result = CliRunner().invoke(app, ["inspect", "--json", str(shared_model_archive)])
    assert result.exit_code == 0
    assert json.loads(result.output) == inspect_archive(shared_model_archive)


def test_inspect_weights_lists_every_variable(shared_model_archive):
    result = CliRunner().invoke(app, ["inspect", "--weights", str(shared_model_archive)])
    assert re.search(r"layers/dense/vars/0\s+\(3, 3\)\s+float32\s+36", result.output)
    assert re.search(r"layers/dense_1/vars/1\s+\(1,\)\s+float32\s+4", result.output)


def test_python_dash_m_and_console_script_agree(shared_model_archive):
    by_module = subprocess.run(
        [sys.executable, "-m", "kerasrepair", "inspect", "--json", str(shared_model_archive)],
        capture_output=True,
        text=True,
        check=True,
    )
    script = subprocess.run(
        [
            sys.executable,
            "-c",
            "from kerasrepair.cli import main; main()",
            "inspect",
            "--json",
            str(shared_model_archive),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(by_module.stdout) == json.loads(script.stdout)
    assert json.loads(by_module.stdout)["weights"]["params"] == 16


def test_usage_errors_exit_2():
    result = CliRunner().invoke(app, ["inspect"])
    assert result.exit_code == 2
    result = CliRunner().invoke(app, ["no-such-command"])
    assert result.exit_code == 2
