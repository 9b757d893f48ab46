"""KR503: a Lambda whose function has default arguments.

`Lambda(lambda x, w=CONV_WIDTH: x[:, -w:, :])` is saved with `"defaults": [3]`,
and every Keras 3 release passes that JSON list to `types.FunctionType`, which
takes a tuple only: load_model fails ("arg 4 (defaults) must be None or tuple").
The parameter names are read from the marshal data, never by loading it; the
repair gives the defaults by name in the Lambda's `arguments`, and the repaired
archive loads in the release that failed and predicts what the original model did.
"""

import codecs
import json
import marshal
import struct
import sys
import zipfile

import pytest
from typer.testing import CliRunner

from conftest import (
    FIXTURES,
    assert_matches_reference,
    assert_predicts_reference,
    codes_of,
    raw_entries,
)
from kerasrepair import bytecode, check_archive, fix_archive, open_archive
from kerasrepair import pointer as json_pointer
from kerasrepair.cli import app
from kerasrepair.context import Options
from kerasrepair.findings import SAFE, UNSAFE

# a Lambda repaired is still serialized code: KR903's warning is all that is left
STILL_CODE = ["KR903"]

RUNNING = "{}.{}".format(*sys.version_info[:2])
RELEASES = ["3.0.5", "3.6.0", "3.15.1"]  # the fixture saved by each
LAYER = "/config/layers/1/config"
FUNCTION = LAYER + "/function"
FAILURE = "arg 4 (defaults) must be None or tuple"

SCALE = 2.0  # a module global of this file, read by a Lambda's code below


def fixture(release):
    return FIXTURES / "releases" / f"keras-{release}" / "lambda_default_global.keras"


def layer_config(path, at=LAYER):
    with zipfile.ZipFile(path) as zf:
        return json_pointer.get(json.loads(zf.read("config.json")), at)


def saved_code(function) -> str:
    """A function's code as Keras's func_dump saves it."""
    return codecs.encode(marshal.dumps(function.__code__), "base64").decode("ascii")


def causes(exc):
    """The messages of an exception and of every exception it was raised from."""
    found = []
    while exc is not None:
        found.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(found)


# -- reading the parameters


@pytest.mark.parametrize(
    "function, parameters, positional_only, keyword_only, defaulted",
    [
        (lambda x, w=3, scale=1.0: x, ("x", "w", "scale"), 0, (), ("w", "scale")),
        (lambda x, w=2, /, *rest, k=1, **kw: (lambda: w)(), ("x", "w"), 2, ("k",), ("w",)),
        (
            lambda x, mask=None, training=None: x,
            ("x", "mask", "training"),
            0,
            (),
            ("mask", "training"),
        ),
        (lambda x, y: lambda z: x + y + z, ("x", "y"), 0, (), None),  # cells
        (lambda: 1, (), 0, (), None),
    ],
    ids=["defaults", "positional-only-and-keyword-only", "mask-training", "cells", "none"],
)
def test_parameters_are_read_without_unmarshalling(
    monkeypatch, function, parameters, positional_only, keyword_only, defaulted
):
    code = saved_code(function)
    monkeypatch.setattr(marshal, "loads", None)  # would raise if the reader called it
    found = bytecode.read_lambda(code)
    assert found.python == RUNNING
    co = function.__code__
    assert found.parameters == parameters == co.co_varnames[: co.co_argcount]
    assert found.positional_only == positional_only == co.co_posonlyargcount
    assert found.keyword_only == keyword_only
    count = len(function.__defaults__ or ())
    assert found.defaulted(count) == (defaulted or ())
    assert found.defaulted(len(parameters) + 1) is None


def test_python_310_layout_parameters():
    """`lambda x, w=3: x[-w:]` as Python 3.10 marshals it, hand-encoded (this
    machine has no Python 3.10): varnames hold the parameters first."""
    units = [(124, 0), (124, 1), (11, 0), (100, 0), (133, 2), (25, 0), (83, 0)]
    raw = (
        b"\xe3"
        + struct.pack("<6i", 2, 0, 0, 2, 3, 0x43)  # argcount 2, nlocals 2
        + b"".join(
            marshal.dumps(v)
            for v in (bytes(b for unit in units for b in unit), (None,), (), ("x", "w"), (), ())
        )
        + marshal.dumps("<stdin>")
        + marshal.dumps("<lambda>")
        + struct.pack("<i", 1)
        + marshal.dumps(b"")
    )
    found = bytecode.read_lambda(codecs.encode(raw, "base64").decode())
    assert found.python == "3.9/3.10"
    assert found.parameters == ("x", "w") and found.defaulted(1) == ("w",)
    assert found.missing == ()


# -- the fixtures saved by real releases


@pytest.mark.parametrize("release", RELEASES)
def test_check_finds_the_defaults_by_parameter_name(release):
    path = fixture(release)
    with open_archive(path) as archive:
        assert archive.metadata["keras_version"] == release
    function = layer_config(path, FUNCTION)
    assert function["config"]["defaults"] == [3, 1.0]
    # `w=CONV_WIDTH` read the global when the lambda was made: the code reads only
    # its parameters, so KR501 has nothing to say
    code = bytecode.read_lambda(function["config"]["code"])
    assert code.globals_read == () and code.parameters == ("x", "w", "scale")
    result = check_archive(path)
    [finding] = [f for f in result.findings if f.severity == "error"]
    assert finding.code == "KR503" and finding.location == FUNCTION
    assert finding.layer == "last_steps" and finding.fix == SAFE
    assert "w=3, scale=1.0" in finding.message and FAILURE in finding.message
    assert result.failed()


@pytest.mark.parametrize("release", RELEASES)
def test_fix_gives_the_defaults_by_name_in_arguments(release, tmp_path):
    original = fixture(release)
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(original, fixed)
    assert [(c.code, c.location) for c in result.changes] == [
        ("KR503", FUNCTION + "/config/defaults")
    ]
    assert codes_of(result.remaining) == STILL_CODE
    before, after = layer_config(original), layer_config(fixed)
    # `scale` was given by `arguments` already (its default was never used): it stays
    assert before["arguments"] == {"scale": 2.0}
    assert after["arguments"] == {"scale": 2.0, "w": 3}
    assert after["function"]["config"]["defaults"] is None
    assert after["function"]["config"]["code"] == before["function"]["config"]["code"]
    before["arguments"], before["function"]["config"]["defaults"] = after["arguments"], None
    assert after == before  # nothing else in the layer changed
    raw_before, raw_after = raw_entries(original), raw_entries(fixed)
    assert [name for name in raw_before if raw_before[name] != raw_after[name]] == ["config.json"]
    assert codes_of(check_archive(fixed).findings) == STILL_CODE
    # fix on its own output changes nothing
    again = tmp_path / "again.keras"
    rerun = fix_archive(fixed, again)
    assert rerun.changes == [] and again.read_bytes() == fixed.read_bytes()


def test_fix_exits_0_only_when_check_of_its_output_is_clean(tmp_path):
    original, fixed = fixture("3.6.0"), tmp_path / "fixed.keras"
    runner = CliRunner()
    checked = runner.invoke(app, ["check", str(original)])
    assert checked.exit_code == 1 and "KR503" in checked.output
    done = runner.invoke(app, ["fix", str(original), "-o", str(fixed)])
    assert done.exit_code == 0, done.output
    assert "fixed 1, 0 left" in done.output
    checked = runner.invoke(app, ["check", str(fixed)])
    assert checked.exit_code == 0, checked.output
    assert "KR903 warning" in checked.output and "1 warning in 1 archive" in checked.output


def test_repaired_3_15_fixture_loads_here_with_the_reference(keras, tmp_path):
    """This process runs Keras 3.15.1, which saved the fixture and fails on it."""
    import numpy as np

    original = fixture("3.15.1")
    with pytest.raises(TypeError) as failed:
        keras.saving.load_model(original, safe_mode=False)
    assert FAILURE in causes(failed.value)
    fixed = tmp_path / "fixed.keras"
    fix_archive(original, fixed)
    model = keras.saving.load_model(fixed, safe_mode=False)
    with np.load(original.with_suffix(".npz")) as reference:
        assert_predicts_reference(model.predict(reference["x"], verbose=0), reference["y"])


# -- models saved here (Keras 3.15.1), loaded here


def save_and_load(keras, saved, model, name):
    """Save `model`; the load of the archive fails (with the defaults' TypeError)."""
    path = saved(model, name)
    with pytest.raises(TypeError) as failed:
        keras.saving.load_model(path, safe_mode=False)
    assert FAILURE in causes(failed.value)
    return path


def sequential(keras, layer):
    return keras.Sequential([keras.Input((6, 2)), layer, keras.layers.Dense(2, name="head")])


def test_inputs_mask_and_training_defaults_are_dropped(keras, saved, tmp_path):
    """Keras passes the inputs, `mask` and `training` at every call."""
    import numpy as np

    lam = keras.layers.Lambda(lambda x=None, mask=None, training=None, k=2.0: x * k, name="scaled")
    model = sequential(keras, lam)
    source = save_and_load(keras, saved, model, "dropped")
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(source, fixed)
    [change] = result.changes
    assert "x, mask, training" in change.description
    assert codes_of(result.remaining) == STILL_CODE
    assert layer_config(fixed)["arguments"] == {"k": 2.0}
    x = np.arange(24, dtype="float32").reshape(2, 6, 2)
    loaded = keras.saving.load_model(fixed, safe_mode=False)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_default_and_a_missing_global_are_both_repaired(keras, saved, tmp_path):
    """KR501 patches the code's read of SCALE; KR503 moves `w` into `arguments`."""
    import numpy as np

    lam = keras.layers.Lambda(lambda x, w=3: x[:, -w:, :] * SCALE, name="last_steps")
    model = sequential(keras, lam)
    source = save_and_load(keras, saved, model, "default_and_global")
    assert {f.code for f in check_archive(source).findings} == {"KR501", "KR503", "KR903"}
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(source, fixed, options=Options(defines={"SCALE": "2.0"}))
    assert sorted(c.code for c in result.changes) == ["KR501", "KR503"]
    assert codes_of(result.remaining) == codes_of(check_archive(fixed).findings) == STILL_CODE
    x = np.arange(24, dtype="float32").reshape(2, 6, 2)
    loaded = keras.saving.load_model(fixed, safe_mode=False)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_list_default_is_an_unsafe_repair(keras, saved, tmp_path):
    """A tuple default is a list in config.json, and `arguments` passes a list."""
    import numpy as np

    lam = keras.layers.Lambda(lambda x, window=(1, 4): x[:, window[0] : window[1], :])
    model = sequential(keras, lam)
    source = save_and_load(keras, saved, model, "list_default")
    [finding] = [f for f in check_archive(source).findings if f.code == "KR503"]
    assert finding.fix == UNSAFE and "window" in finding.hint and "--unsafe-fixes" in finding.hint
    assert fix_archive(source, None).changes == []
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(source, fixed, options=Options(unsafe_fixes=True))
    assert len(result.changes) == 1 and codes_of(result.remaining) == STILL_CODE
    assert layer_config(fixed)["arguments"] == {"window": [1, 4]}
    x = np.arange(24, dtype="float32").reshape(2, 6, 2)
    loaded = keras.saving.load_model(fixed, safe_mode=False)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_output_shape_and_positional_only_defaults_are_reported_not_repaired(keras, saved):
    cases = {
        "output_shape": keras.layers.Lambda(
            lambda x: x * 2.0, output_shape=lambda shape, k=1: shape, name="doubled"
        ),
        "positional_only": keras.layers.Lambda(lambda x, w=3, /: x * w, name="times"),
    }
    for name, lam in cases.items():
        source = save_and_load(keras, saved, sequential(keras, lam), name)
        [finding] = [f for f in check_archive(source).findings if f.code == "KR503"]
        assert finding.fix is None, name
        assert ("input shape only" if name == "output_shape" else "positional-only") in (
            finding.hint
        )
        assert "arguments" in finding.hint
        result = fix_archive(source, None)
        code = STILL_CODE * (2 if name == "output_shape" else 1)  # the function, its shape's
        assert result.changes == [] and codes_of(result.remaining) == ["KR503", *code]


def test_keyword_only_defaults_are_not_saved_at_all(keras, saved):
    """func_dump saves `__defaults__`, not `__kwdefaults__`: the model loads, and
    its first call lacks `w`. The value is not in the archive: reported only."""
    import numpy as np

    lam = keras.layers.Lambda(lambda x, *, w=3: x[:, -w:, :], name="last_steps")
    path = saved(sequential(keras, lam), "keyword_only")
    assert layer_config(path, FUNCTION)["config"]["defaults"] is None
    loaded = keras.saving.load_model(path, safe_mode=False)
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'w'"):
        loaded.predict(np.zeros((1, 6, 2), "float32"), verbose=0)
    [finding] = [f for f in check_archive(path).findings if f.code != "KR903"]
    assert finding.code == "KR503" and finding.fix is None and "'w': VALUE" in finding.hint
    # given by `arguments`, nothing is missing
    lam = keras.layers.Lambda(lambda x, *, w=3: x[:, -w:, :], arguments={"w": 2}, name="last_steps")
    assert codes_of(check_archive(saved(sequential(keras, lam), "keyword_given")).findings) == (
        STILL_CODE
    )


# -- the proof in the releases that fail


@pytest.mark.releases
@pytest.mark.parametrize("release", RELEASES)
def test_repair_is_proven_in_the_release_that_fails(release, tmp_path):
    from releases import probe

    original = fixture(release)
    reference = original.with_suffix(".npz")
    before = probe(release, original, reference, safe_mode=False)
    assert before["status"] == "load_error" and before["exception"] == "TypeError", before
    assert FAILURE in before["detail"] and "could not be deserialized" in before["message"]

    fixed = tmp_path / "fixed.keras"
    result = fix_archive(original, fixed)
    assert [c.code for c in result.changes] == ["KR503"]
    assert codes_of(result.remaining) == STILL_CODE
    for loader in dict.fromkeys([release, "3.15.1"]):
        # the original fails in both (in the same child): match the saved reference,
        # the outputs of the original model in the process that saved it
        after = probe(loader, fixed, reference, safe_mode=False, compare_with=original)
        assert_matches_reference(after, loader)
        assert after["compared"]["status"] == "load_error", (loader, after)
        assert FAILURE in after["compared"]["detail"], (loader, after)
