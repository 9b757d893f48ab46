"""KR704: a tf.keras mixed-precision `Policy` object as a layer's dtype becomes
the policy's name ("mixed_float16"), which every Keras 3 release reads."""

import copy
import json

import pytest

from conftest import FIXTURES, MODELS
from kerasrepair import open_archive
from kerasrepair import pointer as json_pointer
from kerasrepair.api import fix_archive
from kerasrepair.check import check
from kerasrepair.context import Context, Options
from kerasrepair.fix import fix
from kerasrepair.passes import keras2_dtype_policy
from kerasrepair.writer import write_archive

KERAS2 = FIXTURES / "keras2"
KERAS3 = MODELS / "sequential_mlp.keras"
DTYPES = ["/config/layers/1/config/dtype", "/config/layers/2/config/dtype"]


def findings(path, keras=None, code="KR704"):
    with open_archive(path) as archive:
        return [f for f in check(archive, keras).findings if f.code == code]


def fixed(path, keras=None):
    with open_archive(path) as archive:
        return fix(archive, Options(keras=keras))


@pytest.mark.parametrize("name", ["mixed_precision.keras", "mixed_precision.h5"])
@pytest.mark.parametrize("keras", [None, "3.0", "3.3"])
def test_policy_object_becomes_its_name(name, keras):
    with open_archive(KERAS2 / name) as archive:
        policy = json_pointer.get(archive.config, DTYPES[0])
        assert policy["class_name"] == "Policy"
        assert policy["config"] == {"name": "mixed_float16"}
    found = findings(KERAS2 / name, keras)
    assert [(f.location, f.fix, f.layer) for f in found] == [
        (DTYPES[0], "safe", "dense"),
        (DTYPES[1], "safe", "dense_1"),
    ]
    assert "'mixed_float16'" in found[0].message
    result = fixed(KERAS2 / name, keras)
    config = result.edit.config
    assert [json_pointer.get(config, where) for where in DTYPES] == ["mixed_float16"] * 2
    assert json_pointer.get(config, "/config/layers/0/config/dtype") == "float32"  # InputLayer
    assert [(c.location, c.description) for c in result.changes if c.code == "KR704"] == [
        (where, "Policy -> 'mixed_float16'") for where in DTYPES
    ]
    assert result.left == []


def test_a_policy_anywhere_but_a_dtype_is_not_touched(tmp_path):
    """Only a dtype is read as a policy: an object of class Policy elsewhere
    (here a layer argument of that name) is someone's own."""

    def elsewhere(config):
        dense = config["config"]["layers"][1]["config"]
        dense["policy"] = dense.pop("dtype")

    with open_archive(KERAS2 / "mixed_precision.keras") as archive:
        config = copy.deepcopy(archive.config)
        elsewhere(config)
        path = tmp_path / "elsewhere.keras"
        write_archive(archive, path, {"config.json": json.dumps(config).encode()})
    assert [f.location for f in findings(path)] == [DTYPES[1]]
    result = fixed(path)
    assert json_pointer.get(result.edit.config, "/config/layers/1/config/policy")["class_name"] == (
        "Policy"
    )


@pytest.mark.parametrize("name", ["mixed_precision.keras", "mixed_precision.h5"])
def test_converted_output_needs_nothing_more(tmp_path, name):
    out = tmp_path / "converted.keras"
    first = fix_archive(KERAS2 / name, out)
    assert any(c.code == "KR704" for c in first.changes) and first.output == str(out)
    with open_archive(out) as archive:
        assert '"Policy"' not in archive.config_bytes.decode()
        assert check(archive).findings == []
        assert fix(archive).changes == []


def test_detect_finds_nothing_in_a_keras3_archive():
    with open_archive(KERAS3) as archive:
        ctx = Context(archive, archive.config, Options())
        assert keras2_dtype_policy.detect(ctx) == []
    assert findings(KERAS3) == []
