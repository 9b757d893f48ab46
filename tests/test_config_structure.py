"""KR201/KR202: config.json and metadata.json against the structure every Keras 3
release writes (schemas/config.schema.json). Archives real releases saved match it;
a config damaged by hand is reported where it is damaged, in one finding each."""

import json
from pathlib import Path

import pytest

from conftest import FIXTURES, MODELS
from kerasrepair import check, objects, open_archive, schema, write_archive
from kerasrepair.archive import CONFIG, METADATA

REAL_ARCHIVES = sorted(MODELS.glob("*.keras")) + sorted((FIXTURES / "releases").glob("*/*.keras"))
STRUCTURE_CODES = {"KR201", "KR202"}


def _codes(result, codes=STRUCTURE_CODES):
    return [(f.code, f.location) for f in result.findings if f.code in codes]


@pytest.mark.parametrize("path", REAL_ARCHIVES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_archives_saved_by_real_releases_match_the_structure(path):
    result = check.check_archive(path)
    assert _codes(result) == []


def test_the_schemas_are_valid_draft_2020_12():
    from jsonschema import Draft202012Validator

    for name in ("config.schema.json", "metadata.schema.json"):
        Draft202012Validator.check_schema(schema.load(name))


def _edited(tmp_path: Path, source: Path, edit, entry: str = CONFIG) -> Path:
    """A copy of a real archive with one entry's JSON edited by `edit(document)`."""
    with open_archive(source) as archive:
        document = json.loads(archive.read(entry))
        document = edit(document) or document
        target = tmp_path / f"edited_{source.name}"
        write_archive(archive, target, {entry: json.dumps(document).encode()})
    return target


def _set(pointer: str, value):
    def edit(document):
        *parents, last = pointer.strip("/").split("/")
        node = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


def _drop(pointer: str):
    def edit(document):
        *parents, last = pointer.strip("/").split("/")
        node = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return edit


NESTED = MODELS / "functional_nested_shared.keras"
SHARED = MODELS / "shared_layer_reused_later.keras"
NUMPY = MODELS / "numpy_rescaling.keras"


@pytest.mark.parametrize(
    ("source", "edit", "location"),
    [
        # a call fed by node -1 of a layer: the loader indexes the wrong node
        (
            SHARED,
            _set("/config/layers/2/inbound_nodes/0/args/0/config/keras_history/1", -1),
            "/config/layers/2/inbound_nodes/0/args/0/config/keras_history/1",
        ),
        # a model without outputs
        (SHARED, _drop("/config/output_layers"), "/config"),
        # a layer of a Functional model without the name its callers use
        (SHARED, _drop("/config/layers/1/name"), "/config/layers/1"),
        # a legacy list-form node whose node index is a string
        (SHARED, _set("/config/layers/2/inbound_nodes/0", [["x", "0", 0, {}]]), None),
        # a numpy array without its dtype
        (NUMPY, _drop("/config/layers/1/config/scale/config/dtype"), None),
        # an object Keras would look up as a class of that name
        (NUMPY, _set("/config/layers/1/config/scale/class_name", "__numpyy__"), None),
        # a layer whose class name is not a string
        (SHARED, _set("/config/layers/1/class_name", 3), "/config/layers/1/class_name"),
    ],
    ids=[
        "negative-node-index",
        "no-output-layers",
        "layer-without-name",
        "legacy-node-string-index",
        "numpy-without-dtype",
        "unknown-special-object",
        "class-name-not-a-string",
    ],
)
def test_a_damaged_config_is_reported_where_it_is_damaged(tmp_path, source, edit, location):
    clean = check.check_archive(source)
    result = check.check_archive(_edited(tmp_path, source, edit))
    new = [f for f in result.findings if f not in clean.findings]
    structure = [f for f in new if f.code == "KR201"]
    assert structure, new
    assert all(f.severity == "error" for f in structure)
    if location is not None:
        assert location in [f.location for f in structure], structure
    assert result.failed()


def test_metadata_without_a_version_is_a_warning_and_the_newest_release_is_the_target(tmp_path):
    edited = _edited(tmp_path, NESTED, _drop("/keras_version"), entry=METADATA)
    result = check.check_archive(edited)
    codes = [f.code for f in result.findings]
    assert "KR202" in codes and "KR207" in codes
    newest = schema.release(schema.release_names()[-1]).keras_version
    assert result.target == newest


def test_memoized_validation_reports_what_validating_every_object_reports(monkeypatch):
    """Objects alike in their keys and value types share validation results;
    on real archives checked against an older release (many findings), that
    gives exactly the findings of validating each object on its own."""
    paths = [NESTED, FIXTURES / "releases" / "keras-3.6.0" / "layer_zoo.keras"]
    with_memo = [check.check_archive(p, keras="3.0").findings for p in paths]
    monkeypatch.setattr(objects, "_memo_key", lambda ref, instance: None)
    monkeypatch.setattr(schema, "signature_decides", lambda ref: False)
    without_memo = [check.check_archive(p, keras="3.0").findings for p in paths]
    assert with_memo == without_memo
    assert all(with_memo)


def test_a_keras_tensor_alike_in_signature_to_valid_ones_keeps_its_own_errors(tmp_path):
    """Valid keras tensors share their result by signature; an invalid one is
    validated on its own, so its finding names its own place and value."""

    def negative_index(config):
        config["config"]["layers"][1]["inbound_nodes"][0]["args"][0]["config"]["keras_history"][
            1
        ] = -3

    edited = _edited(tmp_path, NESTED, negative_index)
    found = [f for f in check.check_archive(edited).findings if f.code == "KR201"]
    assert [f.location for f in found] == [
        "/config/layers/1/inbound_nodes/0/args/0/config/keras_history/1"
    ]
    assert "-3 is less than the minimum of 0" in found[0].message
    assert schema.signature_decides(f"{schema.CONFIG_ID}#/$defs/__keras_tensor__")
    assert not schema.signature_decides(f"{schema.CONFIG_ID}#/$defs/functional_layer")
