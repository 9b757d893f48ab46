"""KR404: a subclassed model saved unbuilt, without `build_config` (the keras.io VAE).

A VAE trained by a `train_step` that calls only its encoder and decoder is never
built, and saved without `build_config`. Every Keras 3 release loads its weights
(the encoder and decoder are built from their own configs) but leaves its
optimizer unbuilt and skips the optimizer state: "Skipping variable loading for
optimizer 'adam', because it has 2 variables whereas the saved optimizer has 22
variables". The repair adds a top-level `build_config` with the encoder's input
shape: the loader builds the model and its optimizer, and restores the iteration
count and every slot. A model whose own layers hold weights (their shapes are not
in the archive) has no safe repair: check and fix exit 1 and say why.

Fixtures: fixtures/releases/keras-<release>/vae_unbuilt.keras and
subclassed_unbuilt.keras, saved by each release (fixtures/make_subclassed_models.py).
"""

import json

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, assert_matches_reference, raw_entries
from kerasrepair import check, fix_archive, open_archive, write_archive
from kerasrepair.cli import app

RELEASES = ("3.0.5", "3.6.0", "3.15.1")
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]
OPTIMIZER_WARNING = (
    "Skipping variable loading for optimizer 'adam', because it has 2 variables whereas "
    "the saved optimizer has {} variables."
)


def _fixture(release, name):
    return FIXTURES / "releases" / f"keras-{release}" / f"{name}.keras"


def _entry(release, name):
    return MANIFEST[f"releases/keras-{release}/{name}.keras"]


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _config(path):
    with open_archive(path) as archive:
        return json.loads(archive.config_bytes)


def _with_config(source, target, edit):
    """`source` with config.json changed by `edit(config)`."""
    with open_archive(source) as archive:
        config = json.loads(archive.config_bytes)
        edit(config)
        write_archive(archive, target, {"config.json": json.dumps(config).encode()})
    return target


def _kr404(path):
    return [f for f in check.check_archive(path).findings if f.code == "KR404"]


@pytest.mark.parametrize("release", RELEASES)
def test_the_unbuilt_vae_is_found_with_a_safe_fix(release):
    original = _fixture(release, "vae_unbuilt")
    assert "build_config" not in _config(original)
    [finding] = _kr404(original)
    assert (finding.severity, finding.fix, finding.location) == ("error", "safe", "/build_config")
    assert "22 optimizer variables" in finding.message
    assert "'encoder', [null, 4, 4, 1]" in finding.message


@pytest.mark.parametrize("release", RELEASES)
def test_fix_adds_the_encoders_input_shape_and_touches_nothing_else(release, tmp_path):
    original = _fixture(release, "vae_unbuilt")
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(original, fixed)
    assert [(c.code, c.location) for c in result.changes] == [("KR404", "/build_config")]
    assert result.remaining == []
    config = _config(fixed)
    assert config["build_config"] == {"input_shape": [None, 4, 4, 1]}
    # where Keras writes it, before compile_config
    keys = list(config)
    assert keys.index("build_config") == keys.index("compile_config") - 1
    before, after = raw_entries(original), raw_entries(fixed)
    assert before.pop("config.json") != after.pop("config.json")
    assert before == after  # the weights, byte for byte
    assert fix_archive(fixed, None).changes == []  # nothing more to do


@pytest.mark.parametrize("release", RELEASES)
def test_cli_fix_exits_0_and_check_of_its_output_is_clean(release, tmp_path):
    fixed = tmp_path / "fixed.keras"
    done = _run("fix", _fixture(release, "vae_unbuilt"), "-o", fixed)
    assert done.exit_code == 0, done.output
    assert "fixed 1, 0 left" in done.output
    checked = _run("check", fixed, "--strict", "--json")
    assert checked.exit_code == 0, checked.output
    [result] = json.loads(checked.output)["results"]
    assert {f["code"] for f in result["findings"]} <= {"KR206"}  # the custom class, a note


@pytest.mark.parametrize("release", RELEASES)
def test_no_shape_in_the_archive_check_and_fix_exit_1_and_say_why(release, tmp_path):
    original = _fixture(release, "subclassed_unbuilt")
    [finding] = _kr404(original)
    assert (finding.severity, finding.fix) == ("error", None)
    assert "10 optimizer variables" in finding.message
    assert "own layers ('head', 'hidden')" in finding.message
    assert "4 stored weights are silently not restored" in finding.message
    assert "no repair: the input shape cannot be read from the archive" in finding.message
    assert "model(x[:1])" in finding.hint

    checked = _run("check", original)
    assert checked.exit_code == 1, checked.output
    assert "KR404" in checked.output
    out = tmp_path / "out.keras"
    fixed = _run("fix", original, "-o", out)
    assert fixed.exit_code == 1, fixed.output
    assert "KR404" in fixed.output and "0 left" not in fixed.output


VAE = _fixture("3.15.1", "vae_unbuilt")


def test_a_built_model_is_not_reported(tmp_path):
    def built(config):
        config["build_config"] = {"input_shape": [None, 4, 4, 1]}

    assert _kr404(_with_config(VAE, tmp_path / "built.keras", built)) == []


def test_nothing_lost_nothing_reported(tmp_path):
    """Not compiled, every weight in the encoder and the decoder: the load
    restores everything without the model's build."""

    def uncompiled(config):
        del config["compile_config"]

    assert _kr404(_with_config(VAE, tmp_path / "uncompiled.keras", uncompiled)) == []


def test_a_first_model_taking_integers_gives_no_fix(tmp_path):
    def int_input(config):
        config["config"]["encoder"]["config"]["layers"][0]["config"]["dtype"] = "int32"

    [finding] = _kr404(_with_config(VAE, tmp_path / "ints.keras", int_input))
    assert finding.fix is None
    assert "'encoder', takes int32 inputs" in finding.message


def test_weights_outside_what_the_config_holds_give_no_fix(tmp_path):
    """The weights are stored under the attribute names (`encoder/...`); an
    attribute not named as its config key leaves them to the model's own build."""

    def renamed(config):
        inner = config["config"]
        inner["the_encoder"] = inner.pop("encoder")

    [finding] = _kr404(_with_config(VAE, tmp_path / "renamed.keras", renamed))
    assert finding.fix is None
    assert "own layers ('encoder/layers/dense'" in finding.message


def test_a_sequential_first_model_gives_its_input_shape(tmp_path):
    def sequential(config):
        inner = config["config"]
        encoder = inner.pop("encoder")
        inner.pop("decoder")
        layers = encoder["config"]["layers"]
        inner["encoder"] = {
            "module": "keras",
            "class_name": "Sequential",
            "config": {"name": "encoder", "layers": layers[:1]},
            "registered_name": None,
        }
        inner["decoder"] = {
            "module": "keras",
            "class_name": "Sequential",
            "config": {"name": "decoder", "layers": []},
            "registered_name": None,
            "build_config": {"input_shape": [8, 2]},
        }

    [finding] = _kr404(_with_config(VAE, tmp_path / "sequential.keras", sequential))
    assert finding.fix == "safe"
    assert "'encoder', [null, 4, 4, 1]" in finding.message


# -- proof in the releases that saved the fixtures


@pytest.mark.releases
@pytest.mark.parametrize("release", RELEASES)
def test_repaired_vae_restores_the_optimizer_state_in_the_release_that_saved_it(release, tmp_path):
    from releases import probe

    original = _fixture(release, "vae_unbuilt")
    entry = _entry(release, "vae_unbuilt")
    assert entry["keras_version"] == release and entry["built"] is False
    saved = entry["optimizer"]  # the in-memory optimizer, at save time
    assert (saved["iterations"], saved["variables"]) == (2, 22)
    reference = FIXTURES / entry["reference"]["path"]

    fixed = tmp_path / "fixed.keras"
    assert [c.code for c in fix_archive(original, fixed).changes] == ["KR404"]
    after = probe(
        release,
        fixed,
        reference,
        custom_objects_module="custom_objects",
        compare_with=original,
    )
    assert_matches_reference(after, release)
    assert after["warnings"] == [], after["warnings"]
    assert after["optimizer_variables"] == 22, after
    assert after["optimizer_iterations"] == 2, after
    assert after["optimizer_digests"] == saved["digests"], after  # every slot

    # the original, in the same child: the weights load, the optimizer state is skipped
    before = after["compared"]
    assert before["status"] == "ok" and before["identical"], before
    assert before["warnings"] == [f"UserWarning: {OPTIMIZER_WARNING.format(22)}"], before
    alone = probe(release, original, reference, custom_objects_module="custom_objects")
    assert_matches_reference(alone, release)
    assert (alone["optimizer_variables"], alone["optimizer_iterations"]) == (2, 0), alone
    assert alone["optimizer_digests"] != saved["digests"]


@pytest.mark.releases
@pytest.mark.parametrize("release", RELEASES)
def test_unbuilt_model_with_its_own_layers_loses_its_weights(release):
    """What the finding without a fix says: the release skips the optimizer state
    and the weights of the model's own layers (predictions from fresh weights)."""
    from releases import probe

    original = _fixture(release, "subclassed_unbuilt")
    entry = _entry(release, "subclassed_unbuilt")
    loaded = probe(
        release,
        original,
        FIXTURES / entry["reference"]["path"],
        custom_objects_module="custom_objects",
    )
    assert loaded["status"] == "mismatch", loaded
    assert loaded["warnings"] == [f"UserWarning: {OPTIMIZER_WARNING.format(10)}"], loaded
    assert (loaded["optimizer_variables"], loaded["optimizer_iterations"]) == (2, 0), loaded
