"""KR301, unsafe: a shared call of several tensors gets its own copy of the layer.

`attention(x, x)`, `Dense`, `attention(h, x)`: Keras 3.0.0-3.6.0 fail to load it
("Layer node index out of bounds", keras-team/keras#20307), and the second call
takes two tensors, which the legacy list form (the safe repair) cannot hold.
With --unsafe-fixes the call moves to a copy of the layer that starts with the
same weights: config.json lists the copy where Keras will, model.weights.h5
gets the copy's weight group and the later groups of the class renumbered,
the optimizer state (whose slots no longer line up) is dropped, and the model
loads and predicts exactly as before, with its weights no longer tied.
"""

import hashlib

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import (
    FIXTURES,
    assert_identical_to_original,
    assert_matches_reference,
    raw_entries,
)
from kerasrepair import fix_archive, graph, open_archive, write_archive
from kerasrepair.archive import WEIGHTS_H5
from kerasrepair.cli import app
from kerasrepair.context import Options
from kerasrepair.edit import CopyGroup, DeleteGroup, SetLayerName, regroup
from kerasrepair.weights_edit import apply_ops, edited_weights

RELEASES = FIXTURES / "releases"
NAME = "shared_mha_reused_later"
FAILING_RELEASES = ["3.0.5", "3.3.3", "3.4.1", "3.6.0"]
UNSAFE = Options(unsafe_fixes=True)
MHA = "layers/multi_head_attention"


def original(release="3.4.1"):
    return RELEASES / f"keras-{release}" / f"{NAME}.keras"


def h5_datasets(h5, group):
    """Every dataset under `group`, by its path relative to the group."""
    found = {}
    h5[group].visititems(
        lambda name, item: (
            found.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
        )
    )
    return found


def assert_same_datasets(a, b):
    assert a.keys() == b.keys() and a
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def weights_file(archive_path, tmp_path):
    """model.weights.h5 of an archive, extracted to a file for h5py."""
    with open_archive(archive_path) as archive:
        path = tmp_path / f"{archive_path.stem}.weights.h5"
        path.write_bytes(archive.read(WEIGHTS_H5))
    return path


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the story: reported without --unsafe-fixes, repaired with it


def test_without_unsafe_fixes_the_call_is_reported_with_an_unsafe_fix(tmp_path):
    out = tmp_path / "out.keras"
    result = fix_archive(original(), out)
    assert result.changes == []
    finding = result.remaining[0]
    assert (finding.code, finding.layer, finding.fix) == ("KR301", "attention", "unsafe")
    assert finding.location == "/config/layers/1/inbound_nodes/1"
    assert "--unsafe-fixes" in finding.hint
    assert out.read_bytes() == original().read_bytes()  # nothing fixed: copied whole


def test_the_copy_takes_the_call_and_the_references_follow_it(tmp_path):
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(original(), fixed, options=UNSAFE)
    assert result.remaining == []
    assert [c.location for c in result.changes] == [
        "/config/layers/3",
        "model.weights.h5:optimizer",
    ]
    assert "no longer shared" in result.changes[0].description
    with open_archive(fixed) as archive:
        model = graph.build(archive.config)
    layers = {layer.name: layer for layer in model.layers}
    # Keras lists the copy after `between`, whose output it reads
    assert list(layers) == ["x", "attention", "between", "attention_call_2", "attention_after"]
    assert [ref.layer for ref in layers["attention"].nodes[0].inputs] == ["x", "x"]
    assert layers["attention_call_2"].calls == 1
    assert [(r.layer, r.node_index) for r in layers["attention_call_2"].nodes[0].inputs] == [
        ("between", 0),
        ("x", 0),
    ]
    # the later layer read call 2 of `attention` (node 1): it now reads the copy
    assert [(r.layer, r.node_index) for r in layers["attention_after"].nodes[0].inputs] == [
        ("attention_call_2", 0),
        ("attention", 0),
    ]
    assert layers["attention_call_2"].config["name"] == "attention_call_2"
    assert layers["attention_call_2"].weights_path == f"{MHA}_1"
    assert layers["attention_after"].weights_path == f"{MHA}_2"


def test_weight_groups_are_copied_renumbered_and_the_optimizer_state_dropped(tmp_path):
    fixed = tmp_path / "fixed.keras"
    fix_archive(original("3.6.0"), fixed, options=UNSAFE)
    before = h5py.File(weights_file(original("3.6.0"), tmp_path))
    after = h5py.File(weights_file(fixed, tmp_path))
    with before, after:
        assert_same_datasets(h5_datasets(after, MHA), h5_datasets(before, MHA))
        assert_same_datasets(h5_datasets(after, f"{MHA}_1"), h5_datasets(before, MHA))
        assert_same_datasets(h5_datasets(after, f"{MHA}_2"), h5_datasets(before, f"{MHA}_1"))
        assert_same_datasets(
            h5_datasets(after, "layers/dense"), h5_datasets(before, "layers/dense")
        )
        assert "optimizer" in before and "optimizer" not in after
        # Keras 3.6+ names the layer on its group
        assert after[f"{MHA}_1/vars"].attrs["name"] == "attention_call_2"
        assert after[f"{MHA}_2/vars"].attrs["name"] == "attention_after"
    # every other entry is copied as it was stored
    entries_before, entries_after = raw_entries(original("3.6.0")), raw_entries(fixed)
    assert entries_after["metadata.json"] == entries_before["metadata.json"]
    with open_archive(original("3.6.0")) as a, open_archive(fixed) as b:
        assert a.entry(WEIGHTS_H5).method == b.entry(WEIGHTS_H5).method
        assert a.entry(WEIGHTS_H5).info.date_time == b.entry(WEIGHTS_H5).info.date_time


def test_fix_on_its_own_output_changes_nothing(tmp_path):
    fixed, again = tmp_path / "fixed.keras", tmp_path / "again.keras"
    fix_archive(original(), fixed, options=UNSAFE)
    result = fix_archive(fixed, again, options=UNSAFE)
    assert result.changes == [] and result.remaining == []
    assert again.read_bytes() == fixed.read_bytes()


def test_the_input_archive_is_never_touched(tmp_path):
    digest = sha256(original())
    fix_archive(original(), tmp_path / "fixed.keras", options=UNSAFE)
    fix_archive(original(), None, options=UNSAFE)  # dry run: the edit is made on scratch
    assert sha256(original()) == digest
    assert list(tmp_path.iterdir()) == [tmp_path / "fixed.keras"]  # no scratch left


def test_diff_shows_the_weights_tree(tmp_path):
    result = CliRunner().invoke(
        app, ["fix", str(original()), "--dry-run", "--diff", "--unsafe-fixes"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "+++ b/model.weights.h5" in lines
    assert f"+{MHA}_2/query_dense/vars/0 (4, 2, 2) float32" in lines
    assert "-optimizer/vars/0 () int32" in lines
    assert "fixed 2, 0 left; dry run, nothing written" in lines


# -- in Keras 3.15.1: the repaired model is the original model, untied


def test_repaired_model_predicts_exactly_what_the_original_does_and_trains(keras, tmp_path):
    fixed = tmp_path / "fixed.keras"
    fix_archive(original(), fixed, options=UNSAFE)
    with pytest.warns(UserWarning, match="Skipping variable loading for optimizer"):
        model = keras.saving.load_model(fixed)
    reference = keras.saving.load_model(original())
    # Keras lists the layers in the order the repair wrote them
    with open_archive(fixed) as archive:
        assert [layer.name for layer in model.layers] == [
            layer["name"] for layer in archive.config["config"]["layers"]
        ]
    x = np.load(original().with_suffix(".npz"))["x"]
    np.testing.assert_array_equal(model.predict(x, verbose=0), reference.predict(x, verbose=0))
    copy, attention = model.get_layer("attention_call_2"), model.get_layer("attention")
    assert copy is not attention
    for a, b in zip(copy.weights, attention.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # compiled, with a fresh optimizer built for the new variables: training works
    assert model.optimizer.iterations.numpy() == 0
    model.fit(x, x, epochs=1, verbose=0)
    assert not np.array_equal(copy.weights[0].numpy(), attention.weights[0].numpy())


def test_a_layer_called_three_times_gets_a_copy_per_call_met_too_early(keras, saved, tmp_path):
    x = keras.Input((3, 4), name="x")
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2, name="attention")
    h = keras.layers.Dense(4, name="between_1")(attention(x, x))
    h = keras.layers.Dense(4, name="between_2")(attention(h, x))
    out = attention(h, h)
    model = keras.Model(x, out)
    path = saved(model, "mha_three_uses")  # by this Keras, which loads it: fixed for 3.6
    fixed = tmp_path / "fixed.keras"
    options = Options(unsafe_fixes=True, keras="3.6")
    result = fix_archive(path, fixed, options=options, only={"KR301"})
    assert "KR301" not in {finding.code for finding in result.remaining}
    with open_archive(fixed) as archive:
        layers = graph.build(archive.config).layers
    assert [(layer.name, layer.calls, layer.weights_path) for layer in layers] == [
        ("x", 0, "layers/input_layer"),
        ("attention", 1, MHA),
        ("between_1", 1, "layers/dense"),
        ("attention_call_2", 1, f"{MHA}_1"),
        ("between_2", 1, "layers/dense_1"),
        ("attention_call_3", 1, f"{MHA}_2"),
    ]
    inputs = np.random.default_rng(0).random((2, 3, 4), dtype=np.float32)
    np.testing.assert_array_equal(
        keras.saving.load_model(fixed).predict(inputs, verbose=0),
        model.predict(inputs, verbose=0),
    )


def test_keras_layer_order_is_the_order_keras_gives_model_layers(keras, saved):
    x = keras.Input((4,), name="x")
    y = keras.Input((4,), name="y")
    unused = keras.Input((2,), name="unused")
    t = keras.layers.Dense(4, name="t")
    a = t(x)
    b = t(y)  # the same layer on two branches: its depth is its deepest call's
    c = keras.layers.Dense(4, name="c")(keras.layers.Concatenate(name="cat")([a, b]))
    d = keras.layers.Dense(4, name="d")(a)
    e = t(keras.layers.Add(name="add")([c, d]))
    model = keras.Model([x, y, unused], [e, d])
    with open_archive(saved(model, "layer_order")) as archive:
        assert graph.keras_layer_order(graph.build(archive.config)) == [
            layer.name for layer in model.layers
        ]


# -- the proof: archives saved by each release that fails


@pytest.mark.releases
@pytest.mark.parametrize("release", FAILING_RELEASES)
def test_repair_is_proven_in_the_release_that_fails(release, tmp_path):
    from releases import probe

    reference = original(release).with_suffix(".npz")
    before = probe(release, original(release), reference)
    assert before["status"] == "load_error", before
    assert "Layer node index out of bounds" in before["message"]

    fixed = tmp_path / "fixed.keras"
    result = fix_archive(original(release), fixed, options=UNSAFE)
    assert {c.code for c in result.changes} == {"KR301"} and result.remaining == []

    # the original fails there: the saved reference is what to match, within the tolerance
    after = probe(release, fixed, reference, compare_with=original(release))
    assert_matches_reference(after)
    assert after["compared"]["status"] == "load_error", after
    # Keras 3.7.0+ load the original: the repaired archive predicts exactly what it
    # does there, both loaded in one child (and within the tolerance of the reference)
    for loader in ("3.7.0", "3.15.1"):
        exact = probe(loader, fixed, reference, compare_with=original(release))
        assert_matches_reference(exact, loader)
        assert_identical_to_original(exact, loader)


# -- weights_edit, on real archives


def test_regroup_shifts_groups_up_and_copies_one_into_the_gap(tmp_path):
    ops = regroup({f"{MHA}_2": f"{MHA}_1", f"{MHA}_1": MHA})
    with open_archive(original()) as archive, edited_weights(archive, ops, tmp_path) as path:
        scratch = path.parent
        before = h5py.File(weights_file(original(), tmp_path))
        with before, h5py.File(path) as after:
            assert_same_datasets(h5_datasets(after, MHA), h5_datasets(before, MHA))
            assert_same_datasets(h5_datasets(after, f"{MHA}_1"), h5_datasets(before, MHA))
            assert_same_datasets(h5_datasets(after, f"{MHA}_2"), h5_datasets(before, f"{MHA}_1"))
            assert sorted(after["layers"]) == sorted([*before["layers"], "multi_head_attention_2"])
    assert not scratch.exists()


def test_regroup_swaps_groups(tmp_path):
    ops = regroup({MHA: f"{MHA}_1", f"{MHA}_1": MHA})
    with open_archive(original()) as archive, edited_weights(archive, ops, tmp_path) as path:
        before = h5py.File(weights_file(original(), tmp_path))
        with before, h5py.File(path) as after:
            assert_same_datasets(h5_datasets(after, MHA), h5_datasets(before, f"{MHA}_1"))
            assert_same_datasets(h5_datasets(after, f"{MHA}_1"), h5_datasets(before, MHA))
            assert sorted(after["layers"]) == sorted(before["layers"])


def test_group_ops_refuse_to_overwrite_and_skip_what_was_never_stored(tmp_path):
    path = weights_file(original("3.6.0"), tmp_path)
    with pytest.raises(ValueError, match="exists already"):
        apply_ops(path, [CopyGroup(MHA, "layers/dense")])
    apply_ops(
        path,
        [
            CopyGroup("layers/no_such_layer", "layers/copy"),
            DeleteGroup("optimizer"),
            SetLayerName("layers/dense", "renamed"),
        ],
    )
    with h5py.File(path) as h5:
        assert "layers/copy" not in h5 and "optimizer" not in h5
        assert h5["layers/dense/vars"].attrs["name"] == "renamed"


def test_writer_streams_a_replacement_file_under_the_entry_it_replaces(tmp_path):
    path = weights_file(original(), tmp_path)
    apply_ops(path, [DeleteGroup("optimizer")])
    out = tmp_path / "out.keras"
    with open_archive(original()) as archive:
        write_archive(archive, out, {WEIGHTS_H5: path})
        stored = archive.entry(WEIGHTS_H5)
    with open_archive(out) as written:
        assert written.read(WEIGHTS_H5) == path.read_bytes()
        entry = written.entry(WEIGHTS_H5)
        assert (entry.method, entry.info.date_time) == (stored.method, stored.info.date_time)
    before, after = raw_entries(original()), raw_entries(out)
    assert [name for name in before if before[name] != after[name]] == [WEIGHTS_H5]
