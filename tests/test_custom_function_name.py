"""KR214: a custom function (a loss, a metric) saved by Keras 3.0-3.6 by its
bare name, which 3.7 and 3.8 cannot find even when it is registered
(keras-team/keras#20806: `Could not locate function 'halved_squared_error'`).

The fixture is a small model saved by 3.0.5 and by 3.6.0, compiled with the
loss `fixtures>halved_squared_error` and the metric `fixtures>absolute_gap`
(fixtures/custom_objects.py) and trained two steps; its activation
`fixtures>soft_clip` is saved with its package by every release. The package
of the loss and the metric is not in the file, so the rule repairs nothing: it
says what to pass to `load_model`, which the release tests prove works.
"""

import json
import zipfile

import pytest

from conftest import FIXTURES, assert_matches_reference
from kerasrepair import check_archive, fix_archive
from kerasrepair.context import Options

RELEASES = FIXTURES / "releases"
SAVED = {
    "3.0.5": RELEASES / "keras-3.0.5" / "custom_function_loss.keras",
    "3.6.0": RELEASES / "keras-3.6.0" / "custom_function_loss.keras",
}
LOSS = "/compile_config/loss/config"
METRIC = "/compile_config/metrics/0/config"
BARE = {"halved_squared_error": LOSS, "absolute_gap": METRIC}
# every release we have, and whether it loads the archives (fixtures/manifest.json)
LOADS = {
    "3.0.5": True,
    "3.6.0": True,
    "3.7.0": False,
    "3.8.0": False,
    "3.9.2": True,
    "3.15.1": True,
}


def _kr214(path, target):
    return [f for f in check_archive(path, target).findings if f.code == "KR214"]


def _errors(path, target):
    return [f for f in check_archive(path, target).findings if f.severity == "error"]


def _variant(source, target, loss=None, keras_version=None):
    """`source` with the loss's saved name and the saving release changed."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            body = zin.read(info)
            if info.filename == "config.json" and loss is not None:
                config = json.loads(body)
                config["compile_config"]["loss"]["config"] = loss
                body = json.dumps(config).encode()
            if info.filename == "metadata.json" and keras_version is not None:
                metadata = json.loads(body)
                metadata["keras_version"] = keras_version
                body = json.dumps(metadata).encode()
            zout.writestr(info, body)
    return target


@pytest.mark.parametrize("saved_by", sorted(SAVED))
@pytest.mark.parametrize("target", ["3.7", "3.8"])
def test_the_loss_and_the_metric_are_reported_for_3_7_and_3_8(saved_by, target):
    found = _kr214(SAVED[saved_by], target)
    assert [(f.location, f.fix, f.severity) for f in found] == [
        (LOSS, None, "error"),
        (METRIC, None, "error"),
    ]
    assert "Could not locate function 'halved_squared_error'" in found[0].message
    assert "compile_config loss" in found[0].message
    assert "compile_config metrics[0]" in found[1].message
    # what the user must do, with every bare name of the archive
    wanted = "custom_objects={'absolute_gap': absolute_gap, 'halved_squared_error': "
    assert all(wanted + "halved_squared_error}" in f.hint for f in found)
    assert "Keras 3.9 or newer" in found[0].hint
    # the activation is saved with its package: not reported
    assert not any("soft_clip" in f.message for f in found)


@pytest.mark.parametrize("saved_by", sorted(SAVED))
@pytest.mark.parametrize("target", sorted(LOADS))
def test_check_reports_an_error_exactly_where_the_release_fails(saved_by, target):
    errors = _errors(SAVED[saved_by], target)
    if LOADS[target]:
        assert errors == [], errors
    else:
        assert {f.code for f in errors} == {"KR214"}, errors


def test_names_3_7_writes_and_keras_functions_are_not_reported(tmp_path):
    source = SAVED["3.6.0"]
    # the loss as 3.7+ save it ("package>name") is found by every release
    packaged = _variant(source, tmp_path / "packaged.keras", loss="fixtures>halved_squared_error")
    assert [f.location for f in _kr214(packaged, "3.8")] == [METRIC]
    # a Keras loss function saved by name: 3.7-3.8 find it in keras.losses
    builtin = _variant(source, tmp_path / "builtin.keras", loss="mean_squared_error")
    assert [f.location for f in _kr214(builtin, "3.8")] == [METRIC]
    # saved by 3.7+: a bare name is an unregistered function, not this rule
    later = _variant(source, tmp_path / "later.keras", keras_version="3.7.0")
    assert _kr214(later, "3.8") == []


def test_fix_repairs_nothing_and_writes_no_half_ported_archive(tmp_path):
    out = tmp_path / "fixed.keras"
    result = fix_archive(SAVED["3.6.0"], out, Options(keras="3.8"))
    assert [(f.code, f.location) for f in result.left] == [("KR214", LOSS), ("KR214", METRIC)]
    assert not [c for c in result.changes if c.code == "KR214"]
    assert not out.exists()


# ------------------------------------------------------------------ releases


@pytest.mark.releases
@pytest.mark.parametrize("saved_by", sorted(SAVED))
@pytest.mark.parametrize("release", sorted(LOADS))
def test_3_7_and_3_8_fail_on_the_archive_the_others_load(saved_by, release):
    from releases import probe

    archive = SAVED[saved_by]
    result = probe(
        release, archive, archive.with_suffix(".npz"), custom_objects_module="custom_objects"
    )
    if LOADS[release]:
        assert_matches_reference(result, release)
        assert result["optimizer_iterations"] == 2
    else:
        assert result["status"] == "load_error", result
        assert "Could not locate function 'halved_squared_error'" in result["message"]
        assert _kr214(archive, release)


LOAD_WITH_CUSTOM_OBJECTS = """
import json, sys
import numpy as np
import keras
import custom_objects
path, names = sys.argv[1], sys.argv[2].split(",")
model = keras.saving.load_model(
    path, custom_objects={name: getattr(custom_objects, name) for name in names}
)
reference = np.load(path[: -len(".keras")] + ".npz")
y = model.predict(reference["x"], verbose=0)
print(json.dumps({
    "max_abs_diff": float(np.abs(y - reference["y"]).max()),
    "iterations": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
    "loss": model.loss.__name__,
}))
"""


@pytest.mark.releases
@pytest.mark.parametrize("release", ["3.7.0", "3.8.0"])
def test_what_the_finding_says_to_pass_loads_the_model_there(release):
    import subprocess

    from releases import _child_env, python_for

    archive = SAVED["3.6.0"]
    names = sorted(BARE)
    assert all(f"'{name}': {name}" in _kr214(archive, release)[0].hint for name in names)
    done = subprocess.run(
        [str(python_for(release)), "-c", LOAD_WITH_CUSTOM_OBJECTS, str(archive), ",".join(names)],
        env=_child_env("custom_objects"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["max_abs_diff"] <= 1e-6 and loaded["iterations"] == 2, loaded
    assert loaded["loss"] == "halved_squared_error"
