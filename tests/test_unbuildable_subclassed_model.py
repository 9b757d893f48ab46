"""KR401, keras-team/keras#20409: a subclassed model rebuilt from shapes alone.
When its call needs a boolean mask, or its own build leaves layers to their
first call, Keras keeps fresh random weights and predicts something else. No
archive edit can fix it: the finding says what to change in the code. The
archive cannot tell such a model from one that loads correctly: the finding
says it may be a false alarm and points to `verify`, which tells them apart.

Its reach: `build_config` as `{"input_shape": ...}` and as `{"shapes_dict":
...}` (fixtures/releases/keras-*/subclassed_shapes_dict.keras, saved by each
release: the weights of its Dense layers are skipped without a warning). A
model saved without `build_config` is KR404's (test_missing_build_config.py);
weights stored in a model its config holds are not at risk."""

import json

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, MODELS
from kerasrepair import check, fix_archive
from kerasrepair.cli import app

RELEASES = ("3.0.5", "3.6.0", "3.15.1")


def _fixture(release, name):
    return FIXTURES / "releases" / f"keras-{release}" / f"{name}.keras"


def _kr401(path):
    return [f for f in check.check_archive(path).findings if f.code == "KR401"]


def test_the_risk_is_reported_with_the_code_fixes():
    result = fix_archive(MODELS / "subclassed_bool_mask.keras", None)
    assert result.changes == []
    [finding] = result.remaining
    assert (finding.code, finding.severity, finding.fix) == ("KR401", "warning", None)
    assert "'mask': [4, 3]" in finding.message
    assert "by calling it on float placeholders" in finding.message
    assert "4 stored weights at risk" in finding.message
    assert "build_from_config" in finding.hint


def test_the_message_says_it_may_be_a_false_alarm_and_points_to_verify():
    [finding] = _kr401(MODELS / "subclassed_bool_mask.keras")
    assert "may be a false alarm" in finding.message
    assert "`tf.where` on a bool input" in finding.message
    assert "`keras.ops.where`" in finding.message
    assert "`kerasrepair verify`" in finding.message
    assert "kerasrepair verify" in finding.hint


def test_verify_tells_a_model_that_loads_from_one_that_drops_its_weights(monkeypatch):
    """Both are reported; Keras (3.15.1, this environment) restores the weights of
    the one (`TinySubclassed`) and drops those of the other (`~mask` fails on a
    float placeholder)."""
    monkeypatch.chdir(FIXTURES)  # where `custom_objects` can be imported from
    reports = {}
    for name in ("subclassed", "subclassed_bool_mask"):
        assert _kr401(MODELS / f"{name}.keras"), name
        result = CliRunner().invoke(
            app,
            ["verify", f"models/{name}.keras", "--custom-objects", "custom_objects", "--json"],
        )
        reports[name] = (result.exit_code, json.loads(result.output)["weights"])
    assert reports["subclassed"] == (0, {"stored": 4, "loaded": 4, "restored": True})
    assert reports["subclassed_bool_mask"] == (1, {"stored": 4, "loaded": 0, "restored": False})


@pytest.mark.parametrize("release", RELEASES)
def test_a_dict_of_shapes_is_reported(release):
    [finding] = _kr401(_fixture(release, "subclassed_shapes_dict"))
    assert finding.severity == "warning" and finding.fix is None
    assert "'features_shape': [3, 4], 'keep_shape': [3, 1]" in finding.message
    assert "by calling its build() with them" in finding.message
    assert "5 stored weights at risk" in finding.message


@pytest.mark.parametrize("release", RELEASES)
def test_a_warning_fails_check_only_when_strict(release):
    path = _fixture(release, "subclassed_shapes_dict")
    runner = CliRunner()
    assert runner.invoke(app, ["check", str(path)]).exit_code == 0
    strict = runner.invoke(app, ["check", str(path), "--strict"])
    assert strict.exit_code == 1 and "KR401" in strict.output


def test_a_warning_does_not_fail_fix():
    result = CliRunner().invoke(
        app, ["fix", "--dry-run", str(MODELS / "subclassed_bool_mask.keras")]
    )
    assert result.exit_code == 0
    assert "fixed 0, 0 left, 1 warning" in result.output


@pytest.mark.parametrize("release", RELEASES)
def test_no_build_config_is_left_to_kr404(release):
    path = _fixture(release, "subclassed_unbuilt")
    codes = {f.code for f in check.check_archive(path).findings}
    assert "KR401" not in codes and "KR404" in codes


@pytest.mark.parametrize("release", RELEASES)
def test_weights_in_the_models_its_config_holds_are_not_at_risk(release, tmp_path):
    """The repaired VAE: a build_config, but every weight is in the encoder and
    the decoder, which the loader builds from their own configs."""
    fixed = tmp_path / "fixed.keras"
    fix_archive(_fixture(release, "vae_unbuilt"), fixed)
    assert _kr401(fixed) == []


def test_functional_models_are_not_reported():
    result = fix_archive(MODELS / "functional_nested_shared.keras", None)
    assert "KR401" not in {f.code for f in result.remaining}


@pytest.mark.releases
@pytest.mark.parametrize("release", RELEASES)
def test_a_dict_of_shapes_loses_its_weights_without_a_warning(release):
    """What the finding warns of, in the release that saved the archive: Keras
    calls the model's build() with the stored shapes, its Dense layers stay
    unbuilt, and 4 of the 5 stored weights are skipped, silently."""
    from releases import probe

    loaded = probe(
        release, _fixture(release, "subclassed_shapes_dict"), custom_objects_module="custom_objects"
    )
    assert loaded["status"] == "ok", loaded  # no error: that is the trap
    assert loaded["warnings"] == [], loaded
    assert loaded["variables"] == 1, loaded  # `gain`, of the 5 stored
