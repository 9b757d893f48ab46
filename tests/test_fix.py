"""`kerasrepair fix`: what it writes, what it never touches, how it exits."""

import hashlib
import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, MODELS, raw_entries
from kerasrepair import fix_archive, open_archive
from kerasrepair.cli import app

HEALTHY = ["sequential_mlp", "functional_nested_shared", "subclassed", "with_assets"]


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_fixtures_pass_through_byte_identical(name, tmp_path):
    source = MODELS / f"{name}.keras"
    result = _run("fix", source, "-o", tmp_path / "out.keras")
    assert result.exit_code == 0, result.output
    assert "fixed 0, 0 left" in result.output
    assert (tmp_path / "out.keras").read_bytes() == source.read_bytes()


@pytest.mark.parametrize("application", ["MobileNetV3Small", "DenseNet121"])
def test_healthy_applications_pass_through_byte_identical(keras, saved, application, tmp_path):
    source = saved(getattr(keras.applications, application)(weights=None), application)
    result = fix_archive(source, tmp_path / "out.keras")
    assert result.changes == [] and result.remaining == []
    assert (tmp_path / "out.keras").read_bytes() == source.read_bytes()


@pytest.mark.parametrize(
    "path,code",
    [
        ("releases/keras-3.6.0/numpy_rescaling.keras", "KR601"),  # breaks in 3.0-3.4
        ("models/shared_layer_reused_later.keras", "KR301"),  # 3.15.1; breaks in 3.0-3.6
    ],
)
def test_fix_repairs_for_its_target_release_only(path, code, tmp_path):
    """An archive its own release loads is left as it is; `--keras` of a release
    it breaks in gets the repair (as `check` reports it for that release)."""
    source = FIXTURES / path
    assert _run("check", source).exit_code == 0
    result = _run("fix", source, "-o", tmp_path / "out.keras")
    assert result.exit_code == 0, result.output
    assert "fixed 0, 0 left" in result.output
    assert (tmp_path / "out.keras").read_bytes() == source.read_bytes()
    assert _run("check", source, "--keras", "3.0").exit_code == 1
    result = _run("fix", source, "-o", tmp_path / "old.keras", "--keras", "3.0")
    assert result.exit_code == 0, result.output
    assert f"{code} " in result.output
    assert _run("check", tmp_path / "old.keras", "--keras", "3.0").exit_code == 0


def test_config_only_repair_keeps_weights_bit_identical(tmp_path):
    source = MODELS / "shared_layer_reused_later.keras"
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    result = _run("fix", source, "-o", tmp_path / "fixed.keras", "--keras", "3.0")
    assert result.exit_code == 0, result.output
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before  # input untouched
    original, fixed = raw_entries(source), raw_entries(tmp_path / "fixed.keras")
    assert fixed["model.weights.h5"] == original["model.weights.h5"]
    assert fixed["metadata.json"] == original["metadata.json"]
    assert fixed["config.json"] != original["config.json"]


def test_fix_is_idempotent(tmp_path):
    first, second = tmp_path / "first.keras", tmp_path / "second.keras"
    source = MODELS / "shared_layer_three_uses.keras"
    assert _run("fix", source, "-o", first, "--keras", "3.0").exit_code == 0
    result = _run("fix", first, "-o", second, "--keras", "3.0")
    assert "fixed 0, 0 left" in result.output
    assert second.read_bytes() == first.read_bytes()


def test_same_input_same_output(tmp_path):
    for name in ("a", "b"):
        _run(
            "fix",
            MODELS / "numpy_rescaling.keras",
            "-o",
            tmp_path / f"{name}.keras",
            "--keras",
            "3.0",
        )
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()


def test_dry_run_writes_nothing_and_diff_shows_the_change(tmp_path):
    result = _run("fix", MODELS / "numpy_rescaling.keras", "--dry-run", "--diff", "--keras", "3.0")
    assert result.exit_code == 0
    assert "KR601 /config/layers/1/config/scale" in result.output
    assert re.search(r'^-\s+"class_name": "__numpy__",$', result.output, re.MULTILINE)
    assert "+++ b/config.json" in result.output
    assert "dry run, nothing written" in result.output


def test_only_and_skip_choose_passes(tmp_path):
    source, old = MODELS / "numpy_rescaling.keras", ("--keras", "3.0")
    skipped = json.loads(_run("fix", source, "--dry-run", "--skip", "KR601", "--json", *old).output)
    assert "KR601" not in {c["code"] for c in skipped["changes"]}
    assert "KR601" in {f["code"] for f in skipped["remaining"]}  # skipped, still reported
    only = _run("fix", source, "--dry-run", "--only", "kr601", *old)
    assert "fixed 2" in only.output
    unknown = _run("fix", MODELS / "numpy_rescaling.keras", "--dry-run", "--only", "KR999")
    assert unknown.exit_code == 2


def test_json_output(tmp_path):
    result = _run(
        "fix",
        MODELS / "shared_layer_reused_later.keras",
        "--dry-run",
        "--json",
        "--keras",
        "3.6",
        "--only",
        "KR301",
    )
    report = json.loads(result.output)
    assert report["output"] is None
    assert [c["code"] for c in report["changes"]] == ["KR301"]
    assert report["changes"][0]["location"] == "/config/layers/1/inbound_nodes/1"
    assert "KR301" not in {f["code"] for f in report["remaining"]}


def test_in_place_replaces_the_file_and_drops_the_backup(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes((MODELS / "numpy_rescaling.keras").read_bytes())
    result = _run("fix", target, "--in-place", "--keras", "3.4")
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]
    with open_archive(target) as archive:
        assert archive.config["config"]["layers"][1]["config"]["scale"][3] == 2.0


def test_in_place_on_bad_input_leaves_the_file_and_no_backup(tmp_path):
    from conftest import HOSTILE

    target = tmp_path / "model.keras"
    target.write_bytes((HOSTILE / "bad_json.keras").read_bytes())
    result = _run("fix", target, "--in-place")
    assert result.exit_code == 2
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]
    assert target.read_bytes() == (HOSTILE / "bad_json.keras").read_bytes()


def test_an_output_option_is_required():
    assert _run("fix", MODELS / "numpy_rescaling.keras").exit_code == 2
    assert _run("fix", MODELS / "numpy_rescaling.keras", "--dry-run", "--in-place").exit_code == 2


def test_bad_input_exits_2_and_writes_nothing(tmp_path):
    from conftest import HOSTILE

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kerasrepair",
            "fix",
            HOSTILE / "truncated.keras",
            "-o",
            "out.keras",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_explain_and_rules():
    explained = _run("explain", "KR301")
    assert explained.exit_code == 0
    assert "Layer node index out of bounds" in explained.output
    listed = _run("rules")
    assert "KR301" in listed.output and "KR601" in listed.output
    assert _run("explain", "KR000").exit_code == 2


ARCHIVES = sorted(
    path
    for path in (MODELS.parent).rglob("*.keras")
    if "hostile" not in path.parts and ".venvs" not in path.parts
)


@pytest.mark.parametrize("keras", [None, "3.0", "3.6"])
@pytest.mark.parametrize("path", ARCHIVES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fix_says_0_left_only_when_check_of_its_output_is_clean(path, keras, tmp_path):
    """The invariant, over every fixture saved by a real release, for its own
    release and two older targets: fix exits 0 exactly when `check` of what it
    wrote exits 0 for the same target; what fix leaves is what check reports."""
    out = tmp_path / "out.keras"
    target = ["--keras", keras] if keras else []
    defines = ["--define", "CONV_WIDTH=3"] if "lambda" in path.stem else []
    fixed = _run("fix", path, "-o", out, "--unsafe-fixes", *defines, *target, "--json")
    assert fixed.exit_code in (0, 1), fixed.output
    if json.loads(fixed.output)["withheld"]:  # a port the target would reject: nothing written
        assert fixed.exit_code == 1 and json.loads(fixed.output)["remaining"], fixed.output
        assert not out.exists()
        return
    checked = _run("check", out, *target, "--json")
    assert checked.exit_code in (0, 1), checked.output
    assert (fixed.exit_code == 0) == (checked.exit_code == 0), (fixed.output, checked.output)
    left = {(f["code"], f["location"]) for f in json.loads(fixed.output)["remaining"]}
    [result] = json.loads(checked.output)["results"]
    errors = {(f["code"], f["location"]) for f in result["findings"] if f["severity"] == "error"}
    assert errors <= left


def test_skip_chooses_fixes_never_hides_findings(tmp_path):
    """Keras 3.10 rejects the quantization_config Keras 3.15 writes: skipping
    its repair leaves the archive broken, and fix says so."""
    source = MODELS / "sequential_mlp.keras"
    skipped = _run("fix", source, "--skip", "KR203", "--keras", "3.10", "--dry-run")
    assert skipped.exit_code == 1, skipped.output
    assert "KR203" in skipped.output and "0 left" not in skipped.output
    repaired = _run("fix", source, "--only", "KR203", "--keras", "3.10", "--dry-run")
    assert repaired.exit_code == 0, repaired.output
    assert "0 left" in repaired.output


def test_the_api_reads_a_release_as_the_cli_does(tmp_path):
    from kerasrepair.context import Options

    source = MODELS / "sequential_mlp.keras"
    for keras in ("3.10", "3.10.0"):
        result = fix_archive(source, None, Options(keras=keras))
        assert result.target == "3.10.0"
        assert result.changes and result.left == []
    with pytest.raises(ValueError, match="no schema for Keras 2.9"):
        fix_archive(source, None, Options(keras="2.9"))
    assert _run("fix", source, "--keras", "2.9", "--dry-run").exit_code == 2


def test_output_naming_the_input_is_refused(tmp_path):
    copy = tmp_path / "model.keras"
    copy.write_bytes((MODELS / "shared_layer_reused_later.keras").read_bytes())
    before = copy.read_bytes()
    result = _run("fix", copy, "-o", copy)
    assert result.exit_code == 2
    assert "--in-place" in result.output
    assert copy.read_bytes() == before


def test_a_port_the_target_would_reject_is_not_written(tmp_path):
    """Keras 3.0-3.2 rebuild a Sequential's nested Functional returning a list
    (KR306, unfixable there): fix says so, writes nothing, and the input is untouched."""
    source = MODELS.parent / "releases" / "keras-3.6.0" / "sequential_nested_functional.keras"
    before = source.read_bytes()
    out = tmp_path / "out.keras"
    ran = _run("fix", source, "-o", out, "--keras", "3.0")
    assert ran.exit_code == 1, ran.output
    assert "KR306" in ran.output
    assert "nothing written: the port from Keras 3.6.0 to 3.0.5 is incomplete" in ran.output
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert source.read_bytes() == before


def test_repairs_for_the_saving_release_are_written_with_what_is_left(tmp_path):
    """Not a port: what fix repairs is written, and what it cannot is reported."""
    source = MODELS.parent / "releases" / "keras-3.6.0" / "subclassed_unbuilt.keras"
    out = tmp_path / "out.keras"
    ran = _run("fix", source, "-o", out, "--json")
    result = json.loads(ran.output)
    assert ran.exit_code == 1 and not result["withheld"], ran.output
    assert result["remaining"] and out.exists()


def test_the_edits_json_is_its_config_after_every_fix():
    """`Edit.config_json` is made once for each state of the config (the
    writer's and KR905's): the runner says when a fix changed it."""
    from kerasrepair import registry, runner
    from kerasrepair.context import Context, Options
    from kerasrepair.edit import Edit
    from kerasrepair.findings import SAFE

    path = FIXTURES / "releases" / "keras-3.4.1" / "shared_layer_reused_later.keras"
    with open_archive(path) as archive:
        edit = Edit.of(archive.config_bytes)
        ctx = Context(archive, edit.config, Options(), edit=edit)
        before = edit.config_json()
        assert ctx.config_json == before.encode()
        repairing = [module for module in registry.MODULES if registry.repairs(module)]
        ctx, _ = runner.run(ctx, edit, repairing, lambda finding: finding.fix == SAFE)
        assert edit.changes
        assert edit.config_json() == json.dumps(edit.config) != before
        assert ctx.config_json == edit.config_json().encode()
