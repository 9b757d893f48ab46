"""schemas/keras/X.Y.json: generated from the real releases by dev/generate_schemas.py.

The committed files are what the script writes from the releases themselves
(checked here for releases the suite has environments for), are valid JSON
Schemas, and say what changed between releases."""

import json
import subprocess
import sys

import pytest
from jsonschema import Draft202012Validator

from conftest import ROOT
from kerasrepair import schema

GENERATE = ROOT / "dev" / "generate_schemas.py"
MINORS = [f"3.{n}" for n in range(16)]
NAMES = ["3.0.0", *MINORS]  # 3.0.0 differs from the newest 3.0 patch (keras.DTypePolicy)


def test_every_minor_release_from_3_0_to_3_15_has_a_schema():
    assert schema.release_names() == tuple(NAMES)
    for name in NAMES:
        release = schema.release(name)
        assert schema.minor_key(release.keras_version) == schema.minor_key(name)
        assert schema.name_for(release.keras_version) == name
        Draft202012Validator.check_schema(release.document)
        defs = release.document["$defs"]
        assert set(release.document["names"].values()) <= set(defs)
        assert "keras.layers.Dense" in defs
        # 3.0.0 cannot find the dtype policies of archives saved by 3.6 and newer
        assert ("keras.DTypePolicy" in release.document["names"]) == (name != "3.0.0")


@pytest.mark.releases
@pytest.mark.parametrize(
    ("version", "name"), [("3.0.0", "3.0.0"), ("3.4.1", "3.4"), ("3.10.0", "3.10")]
)
def test_the_committed_schema_is_what_the_release_itself_gives(version, name, tmp_path):
    """Regenerated from the real release, byte for byte."""
    done = subprocess.run(
        [sys.executable, GENERATE, "--releases", version, "--out", tmp_path],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    written = (tmp_path / f"{name}.json").read_bytes()
    assert written == (ROOT / "schemas" / "keras" / f"{name}.json").read_bytes()


def test_diff_names_the_arguments_a_release_added():
    done = subprocess.run(
        [sys.executable, GENERATE, "--diff", "3.12", "3.13"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Keras 3.12.4 -> 3.13.2"
    dense = lines.index("  keras.layers.Dense")
    assert "quantization_config" in lines[dense + 1] and "arguments added" in lines[dense + 1]


def test_argument_schemas_follow_the_release():
    dense = {m: schema.release(m).definition("keras.layers.Dense") for m in MINORS}
    assert [m for m in MINORS if "quantization_config" in dense[m]["properties"]] == MINORS[13:]
    assert all(d["additionalProperties"] is False for d in dense.values())
    assert all(d["required"] == ["units"] for d in dense.values())
    # the release's own get_config() defaults
    assert dense["3.15"]["properties"]["use_bias"] == {"default": True}


def test_argument_schemas_are_judged_by_keys_alone():
    """What lets `check` share results between alike objects: no argument
    schema constrains a value (see schema.type_only_properties)."""
    for name in NAMES:
        release = schema.release(name)
        for key in release.document["$defs"]:
            assert schema.type_only_properties(f"{release.id}#/$defs/{key}") is not None, key


def test_schemas_are_compact_one_class_per_line():
    for name in NAMES:
        path = ROOT / "schemas" / "keras" / f"{name}.json"
        assert path.stat().st_size < 200_000
        lines = path.read_text().splitlines()
        assert any(line.startswith('    "keras.layers.Dense": {') for line in lines)
        json.loads(path.read_text())
