"""KR401, keras-team/keras#20409: a subclassed model rebuilt from input shapes
alone. When its call needs a boolean mask, Keras warns, keeps fresh random
weights and predicts something else. No archive edit can fix it: the finding
says what to change in the code (and `verify` shows the weights were dropped,
see test_verify.py)."""

from typer.testing import CliRunner

from conftest import MODELS
from kerasrepair import fix_archive
from kerasrepair.cli import app


def test_the_risk_is_reported_with_the_code_fixes():
    result = fix_archive(MODELS / "subclassed_bool_mask.keras", None)
    assert result.changes == []
    [finding] = result.remaining
    assert (finding.code, finding.severity, finding.fix) == ("KR401", "warning", None)
    assert "'mask': [4, 3]" in finding.message
    assert "4 stored weights" in finding.message
    assert "build_from_config" in finding.hint


def test_a_warning_does_not_fail_fix():
    result = CliRunner().invoke(
        app, ["fix", "--dry-run", str(MODELS / "subclassed_bool_mask.keras")]
    )
    assert result.exit_code == 0
    assert "fixed 0, 0 left, 1 warning" in result.output


def test_functional_models_are_not_reported():
    result = fix_archive(MODELS / "functional_nested_shared.keras", None)
    assert "KR401" not in {f.code for f in result.remaining}
