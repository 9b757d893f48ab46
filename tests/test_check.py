"""`kerasrepair check`: what it prints, the JSON and SARIF it writes, how it exits."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, HOSTILE, MODELS, ROOT
from kerasrepair.cli import app

HEALTHY = MODELS / "sequential_mlp.keras"
RELEASES = FIXTURES / "releases"


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_healthy_archive_is_clean_against_its_own_release():
    result = _run("check", HEALTHY)
    assert result.exit_code == 0, result.output
    assert "checked against Keras 3.15.1" in result.output
    assert result.output.rstrip().endswith("no findings in 1 archive")


def test_findings_exit_1_and_say_where_what_and_what_to_do():
    result = _run("check", HEALTHY, "--keras", "3.10")
    assert result.exit_code == 1
    assert "checked against Keras 3.10.0" in result.output
    line = next(line for line in result.output.splitlines() if "KR203" in line)
    assert "/config/layers/" in line and "quantization_config" in line
    assert "Unrecognized keyword arguments passed to Dense" in result.output


def test_notes_and_warnings_do_not_fail_the_check_unless_strict():
    """A custom object is not an error of the archive (a note), and a subclassed
    model rebuilt from shapes may load well (a warning): exit 0; --strict, 1."""
    result = _run("check", MODELS / "subclassed.keras")
    assert "KR206 note" in result.output and "KR401 warning" in result.output
    assert result.exit_code == 0, result.output
    assert _run("check", MODELS / "subclassed.keras", "--strict").exit_code == 1


def test_json_lists_every_archive_with_its_findings():
    paths = [HEALTHY, RELEASES / "keras-3.4.1" / "shared_layer_reused_later.keras"]
    result = _run("check", *paths, "--json")
    assert result.exit_code == 1
    document = json.loads(result.output)
    assert document["report_version"] == 1
    assert [r["path"] for r in document["results"]] == [str(p) for p in paths]
    clean, broken = document["results"]
    assert clean["findings"] == [] and clean["target"] == "3.15.1"
    assert broken["saved_with"] == "3.4.1" and broken["target"] == "3.4.1"
    [finding] = broken["findings"]
    assert finding["code"] == "KR301" and finding["fix"] == "safe"
    assert set(finding) == {"code", "message", "location", "severity", "layer", "fix", "hint"}


def test_a_pass_is_reported_only_for_the_releases_it_breaks():
    """KR301 breaks Keras 3.0-3.6: checked against 3.7 the archive is clean."""
    broken = RELEASES / "keras-3.4.1" / "shared_layer_reused_later.keras"
    assert _run("check", broken, "--keras", "3.6").exit_code == 1
    result = _run("check", broken, "--keras", "3.7")
    assert result.exit_code == 0, result.output


def test_sarif_2_1_0_names_rule_archive_and_json_pointer(tmp_path):
    report = tmp_path / "check.sarif"
    result = _run("check", HEALTHY, "--keras", "3.10", "--sarif", report)
    assert result.exit_code == 1
    log = json.loads(report.read_text())
    assert log["version"] == "2.1.0"
    [run] = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    ids = [rule["id"] for rule in rules]
    assert {"KR201", "KR203", "KR205", "KR206", "KR301", "KR601"} <= set(ids)
    assert run["artifacts"] == [
        {"location": {"uri": HEALTHY.as_posix()}, "roles": ["analysisTarget"]}
    ]
    assert run["results"]
    for sarif_result in run["results"]:
        assert ids[sarif_result["ruleIndex"]] == sarif_result["ruleId"]
        assert sarif_result["level"] in {"error", "warning", "note"}
        [location] = sarif_result["locations"]
        assert location["physicalLocation"]["artifactLocation"]["uri"] == HEALTHY.as_posix()
        [logical] = location["logicalLocations"]
        assert logical["fullyQualifiedName"].startswith("config.json#/config/layers/")
    assert any("quantization_config" in r["message"]["text"] for r in run["results"])


def test_unreadable_input_is_one_line_exit_2_and_no_sarif(tmp_path):
    report = tmp_path / "check.sarif"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kerasrepair",
            "check",
            HOSTILE / "lfs_pointer.keras",
            HEALTHY,
            "--sarif",
            report,
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    # the readable archive is still checked
    assert done.stdout.splitlines()[-1] == "no findings in 1 archive"
    assert line.startswith("kerasrepair: error: ") and "git lfs pull" in line
    assert "Traceback" not in done.stdout + done.stderr
    assert not report.exists()
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_archive_alone_prints_its_one_line_and_nothing_else():
    done = subprocess.run(
        [sys.executable, "-m", "kerasrepair", "check", HOSTILE / "truncated.keras"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize("keras", ["2.15", "3.99", "latest"])
def test_a_release_without_a_schema_is_a_usage_error(keras):
    result = _run("check", HEALTHY, "--keras", keras)
    assert result.exit_code == 2
    assert "--keras" in result.output


def test_rules_lists_checks_and_passes_and_explain_describes_each():
    result = _run("rules")
    assert result.exit_code == 0
    codes = [line.split()[0] for line in result.output.splitlines()]
    assert codes == sorted(codes)
    assert {"KR201", "KR202", "KR203", "KR204", "KR205", "KR206", "KR207"} <= set(codes)
    assert {"KR301", "KR302", "KR303", "KR401", "KR501", "KR601"} <= set(codes)
    for code in codes:
        explained = _run("explain", code.lower())
        assert explained.exit_code == 0 and explained.output.startswith(code)


def test_the_pre_commit_hook_runs_check_on_the_archives_it_is_given():
    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    fields = dict(
        line.strip().lstrip("- ").split(": ", 1) for line in text.splitlines() if ": " in line
    )
    assert fields["id"] == "kerasrepair-check"
    assert fields["files"] == r"\.keras$"
    command = fields["entry"].split()
    assert command[0] == "kerasrepair"
    executable = [sys.executable, "-m", "kerasrepair", *command[1:]]
    clean = subprocess.run([*executable, HEALTHY], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    broken = RELEASES / "keras-3.4.1" / "shared_layer_reused_later.keras"
    failing = subprocess.run([*executable, HEALTHY, broken], capture_output=True, text=True)
    assert failing.returncode == 1 and "KR301" in failing.stdout
