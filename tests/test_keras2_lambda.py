"""KR706: tf.keras saves a Lambda's function as [code, defaults, closure] with
`function_type: "lambda"`; the fix writes Keras 3's `__lambda__` object (the
marshalled code unchanged) and drops the keys Keras 3 does not know. A Lambda
wrapping a named function (`function_type: "function"`) is reported, not fixed."""

import copy
import json

import pytest

from conftest import FIXTURES, MODELS, codes_of
from kerasrepair import open_archive
from kerasrepair import pointer as json_pointer
from kerasrepair.api import fix_archive
from kerasrepair.check import check
from kerasrepair.context import Context, Options
from kerasrepair.fix import fix
from kerasrepair.passes import keras2_lambda
from kerasrepair.writer import write_archive

KERAS2 = FIXTURES / "keras2"
KERAS3 = MODELS / "sequential_mlp.keras"
KERAS3_LAMBDA = MODELS / "lambda_global.keras"
LAMBDA = "/config/layers/2/config"
DROPPED = ("function_type", "module", "output_shape_type", "output_shape_module")


def findings(path, keras=None, code="KR706"):
    with open_archive(path) as archive:
        return [f for f in check(archive, keras).findings if f.code == code]


def fixed(path, keras=None):
    with open_archive(path) as archive:
        return fix(archive, Options(keras=keras))


def original(path):
    with open_archive(path) as archive:
        return copy.deepcopy(json_pointer.get(archive.config, LAMBDA))


def variant(tmp_path, edit, name="lambda_layer.keras"):
    """A copy of fixture `name` whose Lambda's arguments `edit` changed."""
    with open_archive(KERAS2 / name) as archive:
        config = copy.deepcopy(archive.config)
        edit(json_pointer.get(config, LAMBDA))
        target = tmp_path / name
        write_archive(archive, target, {"config.json": json.dumps(config).encode()})
    return target


@pytest.mark.parametrize("name", ["lambda_layer.keras", "lambda_layer.h5"])
@pytest.mark.parametrize("keras", [None, "3.0"])
def test_lambda_becomes_a_keras3_lambda_object(name, keras):
    before = original(KERAS2 / name)
    code, defaults, closure = before["function"]
    assert before["function_type"] == "lambda" and isinstance(code, str)
    found = findings(KERAS2 / name, keras)
    assert [(f.location, f.fix, f.layer) for f in found] == [
        (f"{LAMBDA}/function", "safe", "lambda")
    ]
    result = fixed(KERAS2 / name, keras)
    after = json_pointer.get(result.edit.config, LAMBDA)
    assert after["function"] == {
        "class_name": "__lambda__",
        "config": {"code": code, "defaults": defaults, "closure": closure},
    }
    assert after["function"]["config"]["code"] == code  # the bytecode, byte for byte
    assert not set(DROPPED) & set(after)
    # everything else as saved
    assert {k: v for k, v in after.items() if k != "function"} == {
        k: v for k, v in before.items() if k not in (*DROPPED, "function")
    }
    assert after["output_shape"] is None and after["arguments"] == {}
    assert [c.location for c in result.changes if c.code == "KR706"] == [f"{LAMBDA}/function"]


def test_a_lambda_output_shape_is_rewritten_too(tmp_path):
    def lambda_output_shape(arguments):
        arguments["output_shape"] = list(arguments["function"])
        arguments["output_shape_type"] = "lambda"

    path = variant(tmp_path, lambda_output_shape)
    code = original(path)["function"][0]
    after = json_pointer.get(fixed(path).edit.config, LAMBDA)
    expected = {
        "class_name": "__lambda__",
        "config": {"code": code, "defaults": None, "closure": None},
    }
    assert after["function"] == expected
    assert after["output_shape"] == expected
    assert not set(DROPPED) & set(after)


def test_a_raw_output_shape_is_kept(tmp_path):
    def raw_output_shape(arguments):
        arguments["output_shape"] = [3]

    path = variant(tmp_path, raw_output_shape)
    after = json_pointer.get(fixed(path).edit.config, LAMBDA)
    assert after["output_shape"] == [3]
    assert after["function"]["class_name"] == "__lambda__"


def test_a_named_function_is_reported_without_a_fix(tmp_path):
    def named_function(arguments):
        arguments["function"] = "scale_by_two"
        arguments["function_type"] = "function"
        arguments["module"] = "my_package.functions"

    path = variant(tmp_path, named_function)
    found = findings(path)
    assert [(f.location, f.fix) for f in found] == [(f"{LAMBDA}/function", None)]
    assert "register_keras_serializable" in found[0].hint
    result = fixed(path)
    after = json_pointer.get(result.edit.config, LAMBDA)
    assert after["function"] == "scale_by_two"
    assert after["function_type"] == "function"
    assert not [c for c in result.changes if c.code == "KR706"]
    assert ("KR706", f"{LAMBDA}/function") in {(f.code, f.location) for f in result.left}
    out = tmp_path / "out.keras"
    assert fix_archive(path, out).withheld
    assert not out.exists()


@pytest.mark.parametrize("name", ["lambda_layer.keras", "lambda_layer.h5"])
def test_converted_output_needs_nothing_more(tmp_path, name):
    out = tmp_path / "converted.keras"
    first = fix_archive(KERAS2 / name, out)
    assert any(c.code == "KR706" for c in first.changes) and first.output == str(out)
    with open_archive(out) as archive:
        assert json_pointer.get(archive.config, f"{LAMBDA}/function/class_name") == "__lambda__"
        assert codes_of(check(archive).findings) == ["KR903"]  # code, still: a warning
        assert fix(archive).changes == []


def test_detect_finds_nothing_in_keras3_archives():
    with open_archive(KERAS3_LAMBDA) as archive:
        assert b"__lambda__" in archive.config_bytes
    for path in (KERAS3, KERAS3_LAMBDA):
        with open_archive(path) as archive:
            ctx = Context(archive, archive.config, Options())
            assert keras2_lambda.detect(ctx) == []
        assert findings(path) == []


@pytest.mark.parametrize("keras", ["3.10", "3.15"])
def test_what_fix_says_is_left_is_what_check_says_of_the_converted_archive(tmp_path, keras):
    """A .h5 model converted to a .keras archive is loaded as one: its Lambda's
    code runs only with safe_mode=False there, whatever the release (KR903 a
    warning); written as .h5 again, Keras 3.10 runs it even in safe mode (an
    error). What fix reports as left is what check says of what it wrote."""
    out = tmp_path / "converted.keras"
    result = fix_archive(KERAS2 / "lambda_layer.h5", out, Options(keras=keras))
    with open_archive(out) as archive:
        checked = check(archive, keras).findings
    assert [(f.code, f.severity, f.message) for f in result.remaining] == [
        (f.code, f.severity, f.message) for f in checked
    ]
    assert [(f.code, f.severity) for f in checked] == [("KR903", "warning")]
    assert "safe_mode=False runs it" in checked[0].message and not result.left
    as_h5 = fix_archive(KERAS2 / "lambda_layer.h5", tmp_path / "repaired.h5", Options(keras=keras))
    said = [(f.code, f.severity) for f in as_h5.remaining]
    assert said == [("KR903", "error" if keras == "3.10" else "warning")]
