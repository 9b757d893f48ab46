"""KR403: a layer the loader builds finds no variables at the group its place
names, and no other group of model.weights.h5 holds them: the weights are
gone. `check` reports it (exit 1) and `fix` leaves it (exit 1), also when
another rule repairs something else in the archive (KR303).

The fixtures are archives re-saved through `keras.saving.KerasFileEditor`
(fixtures/make_resaved_models.py, Keras 3.6.0 and 3.15.1): the editor skips
every group whose own `vars` is empty, with all under it, so a nested model's
layers and a MultiHeadAttention's or LSTM's sub-layers lose their weights.
Keras then fails with "A total of 3 objects could not be loaded ... Layer
'dec_hidden' expected 2 variables, but received 0 variables during loading".
"""

import json
import re
import zipfile

import h5py
import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, MODELS
from kerasrepair import check_archive, fix_archive, open_archive, write_archive
from kerasrepair.cli import app

RELEASES = FIXTURES / "releases"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]
RESAVED = sorted(
    path for path, entry in MANIFEST.items() if entry["script"] == "make_resaved_models.py"
)
GONE = {
    "resaved_nested_decoder": ["dec_hidden", "dec_norm", "reconstruction"],
    "resaved_attention": ["attention", "lstm"],
}
VAE = MODELS / "vae_nested_outputs.keras"  # z_mean described twice (KR303)
VAE_SAVED = [
    VAE,
    *(RELEASES / f"keras-{v}" / "vae_nested_outputs.keras" for v in ("3.3.3", "3.4.1", "3.6.0")),
]
MLP = MODELS / "sequential_mlp.keras"  # Input, Dense, Dropout, BatchNormalization, Dense


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _kr403(path, **kwargs):
    return [f for f in check_archive(path, **kwargs).findings if f.code == "KR403"]


def _with_weights(source, target, edit):
    """`source` with its model.weights.h5 changed by `edit(h5py.File)`."""
    scratch = target.with_suffix(".weights.h5")
    with zipfile.ZipFile(source) as archive:
        scratch.write_bytes(archive.read("model.weights.h5"))
    with h5py.File(scratch, "r+") as h5:
        edit(h5)
    with open_archive(source) as archive:
        write_archive(archive, target, {"model.weights.h5": scratch})
    return target


def _deleting(*groups):
    def edit(h5):
        for group in groups:
            del h5[group]

    return edit


# -- the archives KerasFileEditor re-saved


def test_the_fixtures_are_saved_by_the_releases_that_have_the_editor():
    expected = [
        f"releases/keras-{v}/{name}.keras"
        for v in ("3.15.1", "3.6.0")
        for name in ("resaved_attention", "resaved_nested_decoder")
    ]
    assert expected == RESAVED


@pytest.mark.parametrize("path", RESAVED)
def test_check_names_every_layer_whose_weights_are_gone(path):
    name = path.rsplit("/", 1)[1].removesuffix(".keras")
    result = check_archive(FIXTURES / path)
    assert result.failed()
    assert {f.code for f in result.findings} == {"KR403"}
    assert [f.layer for f in result.findings] == GONE[name]
    for finding in result.findings:
        assert finding.severity == "error" and finding.fix is None
        assert "No other group of the file holds them: the weights are gone" in finding.message
        assert "fix cannot recover them" in finding.message
        assert "model.load_weights(archive, skip_mismatch=True)" in finding.hint


@pytest.mark.parametrize("path", [p for p in RESAVED if "nested_decoder" in p])
def test_the_finding_quotes_the_error_the_release_that_saved_it_raised(path):
    """The manifest's record of the load (fixtures/make_resaved_models.py, a
    fresh process of the release): the first layer Keras names is the first
    finding, in the same words, and it counts as many objects as there are
    findings."""
    entry = MANIFEST[path]
    observed = entry["observed"][entry["keras_version"]]
    assert observed["sha256"] == entry["sha256"]
    assert observed["status"] == "load_error"
    assert observed["message"].startswith("A total of 3 objects could not be loaded")
    findings = _kr403(FIXTURES / path)
    assert len(findings) == 3
    assert "Layer 'dec_hidden' expected 2 variables, but received 0 variables during loading" in (
        findings[0].message
    )
    assert observed["detail"].startswith(
        "Layer 'dec_hidden' expected 2 variables, but received 0 variables during loading"
    )
    assert "'layers/functional/layers/dense'" in findings[0].message


def test_sub_layers_are_named_by_keras_the_layer_by_kerasrepair():
    [attention, lstm] = _kr403(RELEASES / "keras-3.15.1" / "resaved_attention.keras")
    assert "'layers/multi_head_attention'" in attention.message
    assert "'layers/lstm'" in lstm.message
    assert "Keras fails on each of its sub-layers" in attention.message


@pytest.mark.parametrize("path", RESAVED)
def test_fix_leaves_the_finding_and_exits_1(path, tmp_path):
    count = len(GONE[path.rsplit("/", 1)[1].removesuffix(".keras")])
    checked = _cli("check", FIXTURES / path)
    assert checked.exit_code == 1, checked.output
    assert checked.output.count("KR403") == count

    done = _cli("fix", FIXTURES / path, "-o", tmp_path / "out.keras")
    assert done.exit_code == 1, done.output
    assert f"fixed 0, {count} left" in done.output
    result = fix_archive(FIXTURES / path, None)
    assert result.changes == []
    assert [f.code for f in result.left] == ["KR403"] * count


def test_what_is_left_loads_with_skip_mismatch_as_the_hint_says(keras):
    """The hint: build the model from config.json, load what the archive holds."""
    path = RELEASES / "keras-3.15.1" / "resaved_nested_decoder.keras"
    with pytest.raises(ValueError, match="A total of 3 objects could not be loaded"):
        keras.saving.load_model(path)
    with zipfile.ZipFile(path) as archive:
        model = keras.models.model_from_json(archive.read("config.json").decode())
    with pytest.warns(UserWarning, match="A total of 3 objects could not be loaded"):
        model.load_weights(path, skip_mismatch=True)


# -- the weights are elsewhere: KR303's, not KR403's


@pytest.mark.parametrize("path", VAE_SAVED, ids=lambda p: p.parent.name)
def test_vae_weights_are_in_the_archive_kr303_repairs_it(path):
    """z_mean's variables are stored once, at the copy inside `encoder`
    (layers/functional/layers/dense_1); the outer copy's group is empty. KR303
    makes the loader build one layer that reads them there: nothing is gone,
    before or after the repair."""
    with open_archive(path) as archive:
        tree = archive.weights()
        assert [v.shape for v in tree.variables if v.path.startswith("layers/dense_1/")] == []
        stored = [v.shape for v in tree.variables if v.path.startswith("layers/functional/")]
        assert (3, 2) in stored and (2,) in stored
    assert _kr403(path) == []
    result = fix_archive(path, None)
    assert [c.code for c in result.changes] == ["KR303"]
    assert result.remaining == []


def test_kr303_repairs_but_fix_does_not_claim_success_when_other_weights_are_gone(tmp_path):
    """The issue's case: KR303 marks z_mean, but the decoder's weights are gone."""
    broken = _with_weights(VAE, tmp_path / "no_decoder.keras", _deleting("layers/functional_1"))
    found = check_archive(broken).findings
    assert [(f.code, f.layer) for f in found] == [("KR303", "z_mean"), ("KR403", "reconstruction")]

    done = _cli("fix", broken, "-o", tmp_path / "out.keras")
    assert done.exit_code == 1, done.output
    assert "fixed 1, 1 left" in done.output
    result = fix_archive(broken, None)
    assert [c.code for c in result.changes] == ["KR303"]
    assert [(f.code, f.layer) for f in result.left] == [("KR403", "reconstruction")]
    assert _cli("check", tmp_path / "out.keras").exit_code == 1


def test_when_the_stored_copy_is_gone_each_description_is_reported(tmp_path, keras):
    """Without z_mean's stored group no copy holds its weights: KR303 has
    nothing to share, and the loader builds two z_mean layers that fail."""
    broken = _with_weights(
        VAE, tmp_path / "no_z_mean.keras", _deleting("layers/functional/layers/dense_1")
    )
    found = check_archive(broken).findings
    assert [(f.code, f.layer, f.location) for f in found] == [
        ("KR403", "z_mean", "/config/layers/2/config/layers/2"),
        ("KR403", "z_mean", "/config/layers/3"),
    ]
    with pytest.raises(ValueError, match="A total of 2 objects could not be loaded") as raised:
        keras.saving.load_model(broken)
    assert str(raised.value).count("<Dense name=z_mean") == 3  # the example, then the list


# -- synthetic edits of healthy archives, checked against Keras 3.15.1


def test_a_deleted_group_is_named_and_keras_agrees(tmp_path, keras):
    broken = _with_weights(MLP, tmp_path / "mlp.keras", _deleting("layers/dense_1"))
    [finding] = _kr403(broken)
    assert finding.location == "/config/layers/4" and finding.layer == "dense_out"
    assert "the loader reads them at 'layers/dense_1', which holds no variables" in finding.message
    quoted = re.search(r'"(Layer .* during loading)"', finding.message).group(1)
    with pytest.raises(ValueError, match="A total of 1 objects could not be loaded") as raised:
        keras.saving.load_model(broken)
    assert quoted in str(raised.value)


def test_batch_normalization_counts_its_moving_statistics(tmp_path, keras):
    broken = _with_weights(MLP, tmp_path / "mlp.keras", _deleting("layers/batch_normalization"))
    [finding] = _kr403(broken)
    assert "expected 4 variables, but received 0 variables during loading" in finding.message
    with pytest.raises(ValueError, match="expected 4 variables, but received 0 variables"):
        keras.saving.load_model(broken)


def test_the_layers_of_the_zoo_with_sub_layers(tmp_path, keras):
    zoo = RELEASES / "keras-3.15.1" / "layer_zoo.keras"
    with open_archive(zoo) as archive:
        groups = {v.path.split("/")[1] for v in archive.weights().variables}
    assert {"gru", "multi_head_attention", "embedding"} <= groups
    broken = _with_weights(
        zoo, tmp_path / "zoo.keras", _deleting("layers/gru", "layers/multi_head_attention")
    )
    assert [f.layer for f in _kr403(broken)] == ["attention", "gru"]
    with pytest.raises(ValueError, match="A total of 5 objects could not be loaded"):
        keras.saving.load_model(broken)  # the attention's 4 EinsumDense, the GRU's cell


def test_weights_no_layer_claims_are_not_called_gone(tmp_path):
    """Moved to a group no layer maps to (KR402): maybe they are this layer's."""

    def move(h5):
        h5.move("layers/dense_1", "layers/dense_9")

    moved = _with_weights(MLP, tmp_path / "moved.keras", move)
    [finding] = _kr403(moved)
    assert "the weights are gone" not in finding.message
    # Keras 3.6+ names the vars group after its layer
    assert (
        "The group 'layers/dense_9', named 'dense_out', holds weights no layer" in finding.message
    )
    assert finding.hint == "use the config.json and model.weights.h5 that were saved together"


def test_an_archive_without_a_weights_file(tmp_path, keras):
    with open_archive(MLP) as archive:
        write_archive(archive, tmp_path / "none.keras", remove=["model.weights.h5"])
    [finding] = _kr403(tmp_path / "none.keras")
    assert "Expected a model.weights.h5 or model.weights.npz file." in finding.message
    assert "3 layer(s) ('dense_in', 'batch_norm', 'dense_out')" in finding.message
    with pytest.raises(ValueError, match="Expected a model.weights.h5 or model.weights.npz file"):
        keras.saving.load_model(tmp_path / "none.keras")


# -- what is not reported


def test_layers_that_are_never_built_expect_no_weights(tmp_path, keras, saved):
    """A Sequential model without an input is not built: nothing is stored,
    nothing expected, and Keras loads it."""
    path = saved(keras.Sequential([keras.layers.Dense(2, name="later")]), "unbuilt")
    with open_archive(path) as archive:
        assert archive.weights().variables == []
    assert _kr403(path) == []
    keras.saving.load_model(path)


def test_custom_classes_are_not_judged(tmp_path):
    """A class of the user's, even one named Dense, may hold no variables."""
    broken = _with_weights(MLP, tmp_path / "mlp.keras", _deleting("layers/dense_1"))
    with open_archive(broken) as archive:
        config = json.loads(archive.config_bytes)
        config["config"]["layers"][4].update(module="my_layers", registered_name="my_layers>Dense")
        write_archive(
            archive, tmp_path / "custom.keras", {"config.json": json.dumps(config).encode()}
        )
    assert [f.layer for f in _kr403(broken)] == ["dense_out"]
    assert _kr403(tmp_path / "custom.keras") == []


@pytest.mark.parametrize(
    "path", sorted(p for p, e in MANIFEST.items() if e["kind"] == "healthy"), ids=str
)
def test_no_healthy_fixture_is_reported(path):
    assert _kr403(FIXTURES / path) == []


# -- proven in the releases


@pytest.mark.releases
@pytest.mark.parametrize("path", RESAVED)
def test_the_release_that_saved_it_fails_as_check_predicts(path):
    from releases import probe

    entry = MANIFEST[path]
    release = entry["keras_version"]
    result = probe(release, FIXTURES / path, FIXTURES / entry["reference"]["path"])
    assert result["status"] == "load_error", result
    findings = _kr403(FIXTURES / path)
    assert "expected 2 variables, but received 0 variables during loading" in result["detail"]
    if "nested_decoder" in path:
        assert result["message"].startswith("A total of 3 objects could not be loaded")
        assert result["detail"].startswith(
            re.search(r'"(Layer .* during loading)"', findings[0].message).group(1)
        )
    else:  # the attention's four EinsumDense and the LSTM's cell
        assert result["message"].startswith("A total of 5 objects could not be loaded")
        assert [f.layer for f in findings] == ["attention", "lstm"]


@pytest.mark.releases
def test_after_kr303_the_release_still_fails_on_the_gone_weights(tmp_path):
    """A 3.6.0 VAE whose decoder group is gone: KR303's repair is made, and the
    release then fails on the decoder alone, as the finding left says."""
    from releases import probe

    original = RELEASES / "keras-3.6.0" / "vae_nested_outputs.keras"
    broken = _with_weights(original, tmp_path / "broken.keras", _deleting("layers/functional_1"))
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(broken, fixed)
    assert [c.code for c in result.changes] == ["KR303"]
    assert [(f.code, f.layer) for f in result.left] == [("KR403", "reconstruction")]
    after = probe("3.6.0", fixed, original.with_suffix(".npz"))
    assert after["status"] == "load_error", after
    assert after["message"].startswith("A total of 1 objects could not be loaded"), after
    assert (
        "Layer 'reconstruction' expected 2 variables, but received 0 variables during loading"
        in after["detail"]
    )


@pytest.mark.releases
@pytest.mark.parametrize("release", ["3.0.5", "3.3.3"])
def test_releases_before_the_editor_fail_the_same_way(release, tmp_path):
    """A group deleted from an archive the release saved (its healthy_mlp):
    the same error in the releases before KerasFileEditor existed."""
    from releases import probe

    original = RELEASES / f"keras-{release}" / "healthy_mlp.keras"
    broken = _with_weights(
        original,
        tmp_path / "broken.keras",
        _deleting("layers/dense_1", "layers/batch_normalization"),
    )
    findings = _kr403(broken)
    assert [f.layer for f in findings] == ["batch_norm", "dense_out"]
    result = probe(release, broken, original.with_suffix(".npz"))
    assert result["status"] == "load_error", result
    assert result["message"].startswith("A total of 2 objects could not be loaded"), result
    quoted = re.search(r'"(Layer .* during loading)"', findings[0].message).group(1)
    assert result["detail"].startswith(quoted), (quoted, result["detail"])
