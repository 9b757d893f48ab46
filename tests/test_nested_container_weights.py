"""KR405: sub-layers held in nested lists, stored under `container` groups since
Keras 3.15.0 (keras-team/keras#22362), which 3.0-3.14 never read.

The story, as the releases tell it (fixtures/make_container_models.py, observed
in manifest.json): a subclassed model saved by 3.15.1 fails in 3.14.1, 3.6.0 and
3.0.5 ("Layer 'dense' expected 2 variables, but received 0 variables during
loading": they read its sub-layers from `layers/`); once its container groups
are moved there it loads with the original's predictions. A layer's nested
sub-layers are read by no release before 3.15: the load succeeds with fresh
weights, and no change of the archive helps (an error, without a fix). Archives
saved before 3.15 load in 3.15 (keras#22891): nothing to do porting up, except
that a layer's nested sub-layers were never saved (nothing in the archive says
so).
"""

import json

import h5py
import pytest

from conftest import FIXTURES, assert_matches_reference
from kerasrepair import check_archive, fix_archive, open_archive
from kerasrepair.context import Options
from kerasrepair.passes import nested_container_weights as rule
from kerasrepair.weights import Variable, WeightsTree

RELEASES = FIXTURES / "releases"
NEW = RELEASES / "keras-3.15.1"
MODEL = NEW / "nested_container_model.keras"
PAIRS = NEW / "nested_container_pairs.keras"
LAYER = NEW / "nested_container_layer.keras"
OLDER = [
    RELEASES / f"keras-{version}" / f"nested_container_{name}.keras"
    for version in ("3.6.0", "3.14.1")
    for name in ("model", "pairs", "layer")
]
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]
OWN = sorted(
    path for path, entry in MANIFEST.items() if entry["script"] == "make_container_models.py"
)

MODEL_MOVES = [
    ("blocks/container/dense", "layers/dense"),
    ("blocks/container/dense_1", "layers/dense_1"),
    ("blocks/container_1/dense", "layers/dense_2"),
    ("blocks/container_1/dense_1", "layers/dense_3"),
    ("branches/container/dense", "layers/dense_4"),
    ("branches/container_1/dense", "layers/dense_5"),
]


def kr405(path, target):
    return [f for f in check_archive(path, target).findings if f.code == "KR405"]


def weights_of(path, tmp_path, name):
    with open_archive(path) as archive:
        (tmp_path / f"{name}.h5").write_bytes(archive.read("model.weights.h5"))
    return h5py.File(tmp_path / f"{name}.h5", "r")


def groups_with_variables(h5):
    found = set()
    h5.visititems(
        lambda name, item: (
            found.add(name.rsplit("/vars/", 1)[0]) if isinstance(item, h5py.Dataset) else None
        )
    )
    return found


# ------------------------------------------------------------------ finding


@pytest.mark.parametrize("path", [MODEL, PAIRS])
def test_a_model_saved_by_3_15_is_reported_for_3_14_and_older(path):
    for target in ("3.14", "3.6", "3.0.5"):
        [found] = kr405(path, target)
        assert (found.location, found.fix, found.severity) == ("/", "safe", "error")
        assert "blocks/container/dense" in found.message
        assert "received 0 variables during loading" in found.message
    assert kr405(path, "3.15") == []


def test_a_layer_saved_by_3_15_is_an_error_without_a_fix():
    [found] = kr405(LAYER, "3.14")
    assert (found.location, found.layer, found.fix) == ("/config/layers/1", "nested_layer", None)
    assert "keep fresh initial values" in found.message
    assert "Keras 3.15 or newer" in found.hint and "set_weights" in found.hint
    assert kr405(LAYER, "3.15") == []


@pytest.mark.parametrize("path", OLDER, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_archives_saved_before_3_15_have_no_container_groups(path):
    for target in ("3.0.5", "3.14", "3.15"):
        assert kr405(path, target) == []


# ------------------------------------------------------------------ repair


def test_the_groups_move_and_their_values_stay(tmp_path):
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(MODEL, fixed, Options(keras="3.14.1"))
    assert result.left == []
    assert [(c.location, c.description) for c in result.changes if c.code == "KR405"] == [
        (f"model.weights.h5:{source}", f"moved {source} to {target}")
        for source, target in MODEL_MOVES
    ] + [(f"model.weights.h5:{a}", f"deleted {a} (empty)") for a in ("blocks", "branches")]
    before, after = weights_of(MODEL, tmp_path, "before"), weights_of(fixed, tmp_path, "after")
    for source, target in MODEL_MOVES:
        assert source not in after
        for index in before[f"{source}/vars"]:
            value = before[f"{source}/vars/{index}"][()]
            assert (after[f"{target}/vars/{index}"][()] == value).all()
    assert "blocks" not in after and "branches" not in after
    assert [f for f in check_archive(fixed, "3.14.1").findings if f.severity == "error"] == []
    assert kr405(fixed, "3.15") == []
    again = fix_archive(fixed, tmp_path / "again.keras", Options(keras="3.14.1"))
    assert again.changes == []  # idempotent


@pytest.mark.parametrize("name", ["model", "pairs"])
def test_the_ported_weights_are_laid_out_as_3_14_saves_them(tmp_path, name):
    """The repaired file has the groups Keras 3.14.1 wrote for the same model."""
    fixed = tmp_path / "fixed.keras"
    fix_archive(NEW / f"nested_container_{name}.keras", fixed, Options(keras="3.14.1"))
    saved_by_3_14 = RELEASES / "keras-3.14.1" / f"nested_container_{name}.keras"
    ported = weights_of(fixed, tmp_path, "ported")
    written = weights_of(saved_by_3_14, tmp_path, "written")
    assert groups_with_variables(ported) == groups_with_variables(written)


# ------------------------------------------------------------------ placing


def tree(*groups, names=None):
    """A weights tree of `vars` groups holding one variable each."""
    names = names or {}
    return WeightsTree(
        format="h5",
        entry="model.weights.h5",
        variables=[Variable(f"{g}/vars/0", (2,), "float32", 8) for g in groups],
        var_groups={f"{g}/vars": names.get(g) for g in groups},
    )


def test_own_attributes_are_placed_by_keras_automatic_names():
    names = {"head": "dense_3", "blocks/container/dense": "dense_1"}
    names |= {"blocks/container_1/dense": "dense_2", "layers/dense": "dense"}
    groups = ("head", "blocks/container/dense", "blocks/container_1/dense", "layers/dense")
    weights = tree(*groups, names=names)
    [owner] = rule._owners(weights)
    assert owner.fix == "safe"
    assert owner.targets == {
        "blocks/container/dense": "layers/dense_1",
        "blocks/container_1/dense": "layers/dense_2",
    }


def test_own_attributes_with_given_names_make_the_fix_unsafe():
    names = {"head": "head", "blocks/container/dense": "a", "blocks/container_1/dense": "b"}
    weights = tree("head", "blocks/container/dense", "blocks/container_1/dense", names=names)
    [owner] = rule._owners(weights)
    assert owner.fix == "unsafe"
    assert owner.targets["blocks/container_1/dense"] == "layers/dense_1"


def test_a_list_mixing_layers_and_lists_of_one_class_is_not_guessed():
    weights = tree("blocks/container/dense", "blocks/container/container/dense")
    [owner] = rule._owners(weights)
    assert owner.fix is None and owner.why_not == "order"


def test_a_layer_attribute_named_container_is_no_container():
    assert rule._owners(tree("layers/custom/container", "layers/dense")) == []


# ------------------------------------------------------------------ check = load


@pytest.mark.parametrize("path", OWN)
def test_check_reports_an_error_exactly_when_the_release_loads_it_wrongly(path):
    """Against every release the fixture script loaded it with (manifest.json).
    The one exception: a layer's nested sub-layers that a release before 3.15
    never saved (fixture kind "broken"): every release loads fresh weights, and
    nothing in the archive tells (no error is reported, none can be)."""
    entry = MANIFEST[path]
    for version, seen in sorted(entry["observed"].items()):
        errors = [
            f for f in check_archive(FIXTURES / path, version).findings if f.severity == "error"
        ]
        if entry["kind"] == "broken" and seen["status"] == "mismatch":
            assert not any(f.code == "KR405" for f in errors), (path, version)
            continue
        assert bool(errors) == (seen["status"] != "ok"), (path, version, seen, errors)


# ------------------------------------------------------------------ proof


def without_kr405(source, target, output):
    """Every other repair for `target` (the archive is written although KR405's
    error is left: fix withholds a half-done port)."""
    from kerasrepair.fix import fix
    from kerasrepair.writer import write_edit

    with open_archive(source) as archive:
        write_edit(archive, fix(archive, Options(keras=target), skip={"KR405"}).edit, output)
    return output


@pytest.mark.releases
@pytest.mark.parametrize(
    "path, target",
    [(MODEL, "3.14.1"), (MODEL, "3.0.5"), (PAIRS, "3.6.0")],
    ids=["model-3.14.1", "model-3.0.5", "pairs-3.6.0"],
)
def test_a_model_saved_by_3_15_loads_in_older_releases_once_moved(tmp_path, path, target):
    from releases import probe

    reference = path.with_suffix(".npz")
    without = without_kr405(path, target, tmp_path / "without.keras")
    failed = probe(target, without, reference, custom_objects_module="custom_objects")
    assert failed["status"] == "load_error", failed
    assert "received 0 variables during loading" in str(failed["detail"]), failed
    fixed = tmp_path / "fixed.keras"
    assert fix_archive(path, fixed, Options(keras=target)).left == []
    after = probe(target, fixed, reference, custom_objects_module="custom_objects")
    assert_matches_reference(after, target)
    assert after["warnings"] == []


@pytest.mark.releases
def test_the_ported_model_still_loads_in_3_15(tmp_path):
    """The 3.14 layout is the one 3.15 reads from older files (keras#22891)."""
    from releases import probe

    fixed = tmp_path / "fixed.keras"
    fix_archive(MODEL, fixed, Options(keras="3.14.1"))
    reference = MODEL.with_suffix(".npz")
    after = probe("3.15.1", fixed, reference, custom_objects_module="custom_objects")
    assert_matches_reference(after, "3.15.1")
    assert any("Skipping nested container" in w for w in after["warnings"]), after


@pytest.mark.releases
def test_a_layer_saved_by_3_15_keeps_fresh_weights_in_3_14(tmp_path):
    """What check's error says: every other repair made, 3.14.1 loads the archive
    without a word and predicts with fresh sub-layers."""
    from releases import probe

    reference = LAYER.with_suffix(".npz")
    without = without_kr405(LAYER, "3.14.1", tmp_path / "without.keras")
    assert [f.code for f in check_archive(without, "3.14.1").findings if f.severity == "error"] == [
        "KR405"
    ]
    loaded = probe("3.14.1", without, reference, custom_objects_module="custom_objects")
    assert loaded["status"] == "mismatch" and loaded["warnings"] == [], loaded
    assert_matches_reference(
        probe("3.15.1", LAYER, reference, custom_objects_module="custom_objects"), "3.15.1"
    )


@pytest.mark.releases
def test_a_model_saved_by_3_14_loads_in_3_15_as_it_is():
    """Porting up needs no move: 3.15 finds the sub-layers in `layers/`."""
    from releases import probe

    old = RELEASES / "keras-3.14.1" / "nested_container_model.keras"
    assert [f for f in check_archive(old, "3.15.1").findings if f.severity == "error"] == []
    loaded = probe("3.15.1", old, old.with_suffix(".npz"), custom_objects_module="custom_objects")
    assert_matches_reference(loaded, "3.15.1")
