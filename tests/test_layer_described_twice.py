"""KR303, the VAE case: the outer model's outputs use a tensor inside a nested
model (`encoder.get_layer("z_mean").output`), so config.json describes z_mean
twice, and the mark Keras writes to have both descriptions built as one layer
(`shared_object_id`) is lost on the copy inside the nested model. Every Keras
release from 3.3 on builds two layers and fails: "Layer 'z_mean' expected 2
variables, but received 0 variables during loading", and skips the optimizer
state. The repair gives both descriptions the mark: one layer is built, the
weights and the optimizer state are restored where they are stored, and the
model predicts what it did."""

import json

import pytest

from conftest import (
    FIXTURES,
    MODELS,
    assert_matches_reference,
    assert_predicts_reference,
    raw_entries,
)
from kerasrepair import fix_archive, inspect_archive, open_archive, write_archive
from kerasrepair import pointer as json_pointer

VAE = MODELS / "vae_nested_outputs.keras"  # saved by Keras 3.15.1
OUTER_Z_MEAN = "/config/layers/3"
INNER_Z_MEAN = "/config/layers/2/config/layers/2"  # inside `encoder`


def _layer(archive_path, pointer):
    with open_archive(archive_path) as archive:
        return json_pointer.get(archive.config, pointer)


def _with_config(source, target, edit):
    """`source` with config.json changed by `edit(config)`."""
    with open_archive(source) as archive:
        config = json.loads(archive.config_bytes)
        edit(config)
        write_archive(archive, target, {"config.json": json.dumps(config).encode()})
    return target


def test_the_copy_inside_the_nested_model_gets_the_mark_keras_lost(tmp_path):
    mark = _layer(VAE, OUTER_Z_MEAN)["shared_object_id"]
    assert "shared_object_id" not in _layer(VAE, INNER_Z_MEAN)

    fixed = tmp_path / "fixed.keras"
    result = fix_archive(VAE, fixed)
    assert [(c.code, c.location) for c in result.changes] == [
        ("KR303", f"{INNER_Z_MEAN}/shared_object_id")
    ]
    assert result.remaining == []
    assert _layer(fixed, INNER_Z_MEAN)["shared_object_id"] == mark
    assert _layer(fixed, OUTER_Z_MEAN)["shared_object_id"] == mark

    # config only: every other entry, the weights included, is copied byte for byte
    before, after = raw_entries(VAE), raw_entries(fixed)
    assert before.pop("config.json") != after.pop("config.json")
    assert before == after

    again = tmp_path / "again.keras"
    assert fix_archive(fixed, again).changes == []
    assert again.read_bytes() == fixed.read_bytes()


def test_the_finding_names_the_empty_weights_the_optimizer_and_the_code_fix():
    from kerasrepair.context import Context
    from kerasrepair.passes import layer_described_twice as described_twice

    with open_archive(VAE) as archive:
        [finding] = described_twice.detect(Context(archive, archive.config))
    assert finding.location == OUTER_Z_MEAN and finding.layer == "z_mean"
    assert "stored once, at 'layers/functional/layers/dense_1'" in finding.message
    assert "finds none at 'layers/dense_1'" in finding.message
    assert "expected 2 variables, but received 0 variables" in finding.message
    assert "the 18 optimizer variables are not restored either" in finding.message
    assert finding.fix == "safe"
    assert "`encoder(inputs)[0]` instead of `encoder.get_layer('z_mean').output`" in finding.hint


def test_inspect_warns_only_about_the_copy_the_loader_builds_apart(tmp_path):
    """`hidden` is described twice as well, but Keras marked both copies: the
    loader builds one layer from them, so only z_mean is a problem."""
    report = inspect_archive(VAE)
    twice = [w for w in report["warnings"] if w["kind"] == "described_twice"]
    assert [w["location"] for w in twice] == [OUTER_Z_MEAN]

    fixed = tmp_path / "fixed.keras"
    fix_archive(VAE, fixed)
    assert not [w for w in inspect_archive(fixed)["warnings"] if w["kind"] == "described_twice"]


def test_without_the_mark_on_any_copy_the_finding_has_no_fix(tmp_path):
    """Nothing in the archive then says the copies are one object: reported,
    with what to change in the code, and left alone."""

    def drop_marks(config):
        json_pointer.get(config, OUTER_Z_MEAN).pop("shared_object_id")

    unmarked = _with_config(VAE, tmp_path / "unmarked.keras", drop_marks)
    result = fix_archive(unmarked, tmp_path / "out.keras")
    assert result.changes == []
    [finding] = result.remaining
    assert finding.code == "KR303" and finding.fix is None
    assert "no copy carries a shared_object_id" in finding.message
    assert "encoder(inputs)[0]" in finding.hint


def test_copies_configured_differently_are_not_merged(tmp_path):
    def change_outer(config):
        json_pointer.get(config, OUTER_Z_MEAN)["config"]["activation"] = "tanh"

    different = _with_config(VAE, tmp_path / "different.keras", change_outer)
    result = fix_archive(different, None)
    assert result.changes == []
    [finding] = result.remaining
    assert finding.fix is None and "configured differently" in finding.message


def test_repaired_3_15_fixture_loads_with_one_z_mean_and_its_optimizer_state(keras, tmp_path):
    import numpy as np

    with pytest.raises(ValueError, match="expected 2 variables, but received 0 variables"):
        keras.saving.load_model(VAE)

    fixed = tmp_path / "fixed.keras"
    fix_archive(VAE, fixed)
    model = keras.saving.load_model(fixed)
    assert model.get_layer("encoder").get_layer("z_mean") is model.get_layer("z_mean")
    with open_archive(fixed) as archive:
        stored = len(archive.weights().optimizer_variables)
    assert len(model.optimizer.variables) == stored
    with np.load(MODELS / "vae_nested_outputs.npz") as reference:
        predicted = model.predict(reference["x"], verbose=0)
        # saved on the machine that made the fixtures: within the tolerance
        assert_predicts_reference(predicted, [reference["y0"], reference["y1"]])


# The proof: archives saved by each release, loaded there before and after the
# repair, and in 3.7.0 and the newest release (a 3.15 archive loads only in 3.15).
SAVED = {
    "3.3.3": FIXTURES / "releases" / "keras-3.3.3" / "vae_nested_outputs.keras",
    "3.4.1": FIXTURES / "releases" / "keras-3.4.1" / "vae_nested_outputs.keras",
    "3.6.0": FIXTURES / "releases" / "keras-3.6.0" / "vae_nested_outputs.keras",
    "3.15.1": VAE,
}


@pytest.mark.releases
@pytest.mark.parametrize("release", sorted(SAVED))
def test_repair_is_proven_in_the_release_that_saved_it_and_later(release, tmp_path):
    from releases import probe

    original = SAVED[release]
    reference = original.with_suffix(".npz")
    with open_archive(original) as archive:
        assert archive.keras_version == release
        stored_optimizer = len(archive.weights().optimizer_variables)
    assert stored_optimizer > 0

    before = probe(release, original, reference)
    assert before["status"] == "load_error", before
    assert (
        "Layer 'z_mean' expected 2 variables, but received 0 variables"
        in (before.get("detail") or "") + before["message"]
    )
    assert any("Skipping variable loading for optimizer" in w for w in before["warnings"])

    fixed = tmp_path / "fixed.keras"
    result = fix_archive(original, fixed)
    assert [c.code for c in result.changes] == ["KR303"]
    assert result.remaining == []
    assert raw_entries(fixed)["model.weights.h5"] == raw_entries(original)["model.weights.h5"]
    assert fix_archive(fixed, None).changes == []

    loaders = [release] if release == "3.15.1" else [release, "3.7.0", "3.15.1"]
    for loader in dict.fromkeys(loaders):
        # the original fails in every loader (in the same child): the saved
        # reference is what the repair must match, within the tolerance
        after = probe(loader, fixed, reference, compare_with=original)
        assert_matches_reference(after, loader)
        assert after["compared"]["status"] == "load_error", (loader, after["compared"])
        assert after["optimizer_variables"] == stored_optimizer, (loader, after)
        assert not any("Skipping variable loading" in w for w in after["warnings"]), after
