"""Version drift: an archive saved by one Keras release, loaded by an older one.

Each release's argument schema (schemas/keras/X.Y.json) is generated from that
release itself. `check --keras X.Y` reports what X.Y will reject, and nothing
else: an archive X.Y loads has no errors; one it refuses has a finding naming
the class and argument the real release names in its error."""

import json
import re
import zipfile

import pytest
from releases import probe

from conftest import FIXTURES, MODELS
from kerasrepair import fix_archive, schema
from kerasrepair.check import check_archive
from kerasrepair.context import Options

RELEASES = FIXTURES / "releases"
SAVED = sorted(RELEASES.glob("keras-*/*.keras")) + sorted(MODELS.glob("*.keras"))
HEALTHY = sorted(RELEASES.glob("keras-*/healthy_mlp.keras")) + sorted(
    RELEASES.glob("keras-*/layer_zoo.keras")
)
SCHEMA_CODES = {"KR201", "KR203", "KR204", "KR205"}


def _errors(result):
    return [f for f in result.findings if f.severity == "error"]


@pytest.mark.parametrize("path", SAVED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_an_archive_is_clean_against_the_schema_of_the_release_that_saved_it(path):
    result = check_archive(path)
    assert result.target == result.saved_with
    assert [f for f in result.findings if f.code in SCHEMA_CODES] == []


@pytest.mark.parametrize("path", HEALTHY, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_healthy_archive_has_no_findings_at_all(path):
    assert check_archive(path).findings == []


def _dense_pointers(path):
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    return [
        f"/config/layers/{i}"
        for i, layer in enumerate(config["config"]["layers"])
        if layer["class_name"] == "Dense"
    ]


@pytest.mark.parametrize("target", ["3.10", "3.7", "3.0"])
def test_a_3_15_archive_checked_for_an_older_release_names_quantization_config_on_every_dense(
    target,
):
    path = MODELS / "sequential_mlp.keras"
    result = check_archive(path, keras=target)
    found = {
        f.location
        for f in result.findings
        if f.code == "KR203" and "'quantization_config'" in f.message
    }
    assert found == {f"{p}/config/quantization_config" for p in _dense_pointers(path)}
    finding = next(f for f in result.findings if f.location in found)
    assert finding.message == (
        f"Dense '{finding.layer}' has argument 'quantization_config', unknown to Keras {target}"
    )
    assert "load with Keras 3.13 or newer" in finding.hint


# (saved by, loaded in): the release just before, and a few further back. The
# loading releases are those the suite builds environments for (releases.PROVING).
PAIRS = [
    ("3.1.1", "3.0.5"),
    ("3.6.0", "3.0.5"),
    ("3.3.3", "3.2.1"),
    ("3.4.1", "3.3.3"),
    ("3.5.0", "3.4.1"),
    ("3.7.0", "3.6.0"),
    ("3.8.0", "3.7.0"),
    ("3.13.2", "3.7.0"),
    ("3.11.3", "3.10.0"),
    ("3.15.1", "3.10.0"),
]
UNKNOWN_KWARGS = re.compile(r"Unrecognized keyword arguments passed to (\w+): \{'(\w+)'")
UNEXPECTED_KWARG = re.compile(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'")


def _rejected(result) -> tuple[str, str] | None:
    """The (class, argument) a failed load names, from the root cause."""
    text = f"{result.get('detail')} {result.get('message')}"
    match = UNKNOWN_KWARGS.search(text) or UNEXPECTED_KWARG.search(text)
    return (match[1], match[2]) if match else None


@pytest.mark.releases
@pytest.mark.parametrize(("saved_by", "loaded_in"), PAIRS, ids=lambda v: v)
def test_check_predicts_what_the_older_release_does(saved_by, loaded_in):
    path = RELEASES / f"keras-{saved_by}" / "layer_zoo.keras"
    errors = _errors(check_archive(path, keras=loaded_in))
    loaded = probe(loaded_in, path, reference=path.with_suffix(".npz"))
    if loaded["status"] == "ok":
        assert errors == [], loaded
        return
    assert loaded["status"] == "load_error", loaded
    rejected = _rejected(loaded)
    assert rejected is not None, loaded
    class_name, argument = rejected
    assert any(
        f.code == "KR203"
        and f.message.startswith(f"{class_name} ")
        and f"'{argument}'" in f.message
        for f in errors
    ), (rejected, errors)


@pytest.mark.releases
def test_the_issue_example_3_15_dense_in_3_10():
    """The real Keras 3.10 fails on the argument check names, on the first Dense."""
    path = MODELS / "sequential_mlp.keras"
    assert _errors(check_archive(path, keras="3.10"))
    loaded = probe("3.10.0", path)
    assert loaded["status"] == "load_error"
    assert _rejected(loaded) == ("Dense", "quantization_config")


@pytest.mark.releases
def test_dtype_policy_objects_of_3_6_are_unknown_to_3_0_0_and_known_to_3_0_5():
    """Keras 3.6 describes every dtype as a `keras.DTypePolicy` object. Keras 3.0.0
    cannot find that class; 3.0.5 (the newest 3.0, what --keras 3.0 means) can."""
    path = RELEASES / "keras-3.6.0" / "healthy_mlp.keras"
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    # the model's own, and each layer's but the InputLayer's (a plain "float32")
    layers = [f"/layers/{i}/config" for i in range(1, len(config["config"]["layers"]))]
    policies = sorted(f"/config{p}/dtype" for p in ["", *layers])
    findings = check_archive(path, keras="3.0.0").findings
    assert "KR205" not in {f.code for f in findings}  # reported once, as KR209 (repaired)
    found = [f for f in findings if f.code == "KR209"]
    assert sorted(f.location for f in found) == policies
    assert all("Could not locate class 'DTypePolicy'" in f.message for f in found)
    assert all(f.fix == "safe" for f in found)
    loaded = probe("3.0.0", path, reference=path.with_suffix(".npz"))
    assert loaded["status"] == "load_error"
    assert "Could not locate class 'DTypePolicy'" in f"{loaded['detail']} {loaded['message']}"

    assert _errors(check_archive(path, keras="3.0")) == []
    assert probe("3.0.5", path, reference=path.with_suffix(".npz"))["status"] == "ok"


def test_a_class_a_release_does_not_have_is_reported_with_the_release_that_added_it(tmp_path):
    """A class only newer releases export (here a 3.15 class checked for 3.0)."""
    newer, older = schema.release("3.15"), schema.release("3.0")
    added = sorted(
        name
        for name in set(newer.document["names"]) - set(older.document["names"])
        if name.startswith("keras.layers.")
    )
    assert added, "no layer was added between 3.0 and 3.15?"
    module, _, class_name = added[0].rpartition(".")
    from kerasrepair import open_archive, write_archive

    source = MODELS / "sequential_mlp.keras"
    with open_archive(source) as archive:
        config = json.loads(archive.config_bytes)
        config["config"]["layers"][1].update(module=module, class_name=class_name)
        edited = tmp_path / "edited.keras"
        write_archive(archive, edited, {"config.json": json.dumps(config).encode()})
    [finding] = [f for f in check_archive(edited, keras="3.0").findings if f.code == "KR205"]
    assert finding.location == "/config/layers/1/class_name"
    assert f"{class_name} " in finding.message and "unknown to Keras 3.0" in finding.message
    first = next(
        m for m in schema.release_names()[1:] if added[0] in schema.release(m).document["names"]
    )
    assert f"load with Keras {first} or newer" in finding.hint


@pytest.mark.releases
def test_an_activation_added_in_3_7_is_reported_for_3_6_which_fails_on_it(keras, saved, tmp_path):
    """celu, squareplus, ... came in Keras 3.7: 3.6 cannot rebuild a layer using one.
    `fix --keras 3.6` drops what it can (KR203) and says what is left."""
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(2, activation="celu", name="d"),
            keras.layers.Activation("squareplus", name="act"),
        ]
    )
    path = saved(model, "celu")
    found = [f for f in check_archive(path, keras="3.6").findings if f.code == "KR208"]
    assert [(f.location, f.message) for f in found] == [
        (
            "/config/layers/1/config/activation",
            "Dense 'd' has activation 'celu', unknown to Keras 3.6",
        ),
        (
            "/config/layers/2/config/activation",
            "Activation 'act' has activation 'squareplus', unknown to Keras 3.6",
        ),
    ]
    assert all("load with Keras 3.7 or newer" in f.hint for f in found)
    assert not [f for f in check_archive(path, keras="3.7").findings if f.code == "KR208"]

    fixed = tmp_path / "for-3.6.keras"
    result = fix_archive(path, fixed, options=Options(keras="3.6"))
    assert result.changes and {c.code for c in result.changes} == {"KR203"}
    assert [f.code for f in result.remaining] == ["KR208", "KR208"]
    assert result.withheld and not fixed.exists()  # a port 3.6 would reject is not written
    # what KR203 alone makes of it (asked for with --only): 3.6 still fails, as check says
    fix_archive(path, fixed, options=Options(keras="3.6"), only={"KR203"})
    loaded = probe("3.6.0", fixed)
    assert loaded["status"] == "load_error"
    assert "Could not interpret activation function identifier" in (
        f"{loaded['detail']} {loaded['message']}"
    )
    assert probe("3.7.0", fixed)["status"] == "ok"
