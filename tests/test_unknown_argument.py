"""KR203: an archive saved by a newer Keras names arguments an older release does
not have (`quantization_config`, `renorm`, `input_axes`, `seed`, ...), and the
older `load_model` fails with "Unrecognized keyword arguments passed to Dense".
`fix --keras X.Y` drops those the model leaves at their defaults; the archive then
loads in X.Y, with every weight and the optimizer state, and predicts as before."""

import pytest
from releases import PROVING, probe
from typer.testing import CliRunner

from conftest import (
    FIXTURES,
    MODELS,
    assert_identical_to_original,
    assert_matches_reference,
    raw_entries,
)
from kerasrepair import fix_archive, open_archive
from kerasrepair.check import check_archive
from kerasrepair.cli import app
from kerasrepair.context import Options

RELEASES = FIXTURES / "releases"
# (archive, saved by, the older release that fails on it)
FAILING = [
    (RELEASES / "keras-3.15.1" / "layer_zoo.keras", "3.15.1", "3.10.0"),
    (MODELS / "sequential_mlp.keras", "3.15.1", "3.10.0"),
    (RELEASES / "keras-3.13.2" / "layer_zoo.keras", "3.13.2", "3.7.0"),
    (RELEASES / "keras-3.4.1" / "layer_zoo.keras", "3.4.1", "3.3.3"),
    (RELEASES / "keras-3.6.0" / "layer_zoo.keras", "3.6.0", "3.0.5"),
]


def _minor(version):
    return version.rpartition(".")[0]


@pytest.mark.releases
@pytest.mark.parametrize(
    ("archive", "saved_by", "older"), FAILING, ids=lambda v: getattr(v, "stem", v)
)
def test_the_older_release_loads_the_repaired_archive(archive, saved_by, older, tmp_path):
    reference = archive.with_suffix(".npz")
    original = probe(older, archive, reference=reference)
    assert original["status"] == "load_error", original
    assert "Unrecognized keyword arguments" in f"{original['detail']} {original['message']}"

    fixed = tmp_path / "fixed.keras"
    result = fix_archive(archive, fixed, options=Options(keras=_minor(older)))
    assert result.changes and all(c.code == "KR203" for c in result.changes)
    assert result.remaining == []
    assert check_archive(fixed, keras=_minor(older)).findings == []

    # only config.json changed: the weights are bit-identical
    before, after = raw_entries(archive), raw_entries(fixed)
    assert {n for n in before if before[n] != after.get(n)} == {"config.json"}

    loaded = probe(older, fixed, reference=reference)
    # the older release computes with its own jax: within the tolerance, as its own
    # archives are
    assert_matches_reference(loaded)
    with open_archive(archive) as source:
        stored = len(source.weights().model_variables)
    assert loaded["variables"] == stored
    # in the release that saved it (or the newest, where the suite has no environment
    # of that release), the repaired archive predicts as before: within the tolerance of
    # the saved reference, and exactly what the original does there, in the same child
    newer = saved_by if saved_by in PROVING else PROVING[-1]
    same = probe(newer, fixed, reference=reference, compare_with=archive)
    assert_matches_reference(same, newer)
    assert_identical_to_original(same, newer)


def test_an_argument_the_model_uses_is_not_dropped(keras, saved, tmp_path):
    """BatchNormalization(renorm=True) needs Keras 3.14: dropping `renorm` would
    change the model, so the finding stays, with no fix."""
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.BatchNormalization(renorm=True, name="bn")]
    )
    path = saved(model, "renorm")
    [finding] = [
        f
        for f in check_archive(path, keras="3.10").findings
        if f.location.endswith("/config/renorm")
    ]
    assert finding.fix is None and "sets it to true, not its default" in finding.hint
    result = fix_archive(path, tmp_path / "fixed.keras", options=Options(keras="3.10"))
    assert all(not c.location.endswith("/renorm") for c in result.changes)
    assert any(f.location.endswith("/config/renorm") for f in result.remaining)
    cli = CliRunner().invoke(app, ["fix", str(path), "--keras", "3.10", "--dry-run"])
    assert cli.exit_code == 1 and "KR203" in cli.output


def test_without_keras_nothing_is_dropped():
    """An archive's own release accepts every argument it wrote."""
    result = fix_archive(RELEASES / "keras-3.15.1" / "layer_zoo.keras", None)
    assert result.changes == [] and result.remaining == []


def test_fix_is_idempotent(tmp_path):
    once, twice = tmp_path / "once.keras", tmp_path / "twice.keras"
    options = Options(keras="3.10")
    fix_archive(RELEASES / "keras-3.15.1" / "layer_zoo.keras", once, options=options)
    result = fix_archive(once, twice, options=options)
    assert result.changes == []
    assert twice.read_bytes() == once.read_bytes()


@pytest.mark.parametrize("keras", ["2.15", "4.0", "ten"])
def test_a_release_without_a_schema_is_a_usage_error(keras, tmp_path):
    result = CliRunner().invoke(
        app, ["fix", str(MODELS / "sequential_mlp.keras"), "--keras", keras, "--dry-run"]
    )
    assert result.exit_code == 2 and "--keras" in result.output
