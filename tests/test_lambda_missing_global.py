"""KR501: a Lambda reading a module global that the archive does not save.

`Lambda(lambda x: x[:, -CONV_WIDTH:, :])` fails in every Keras 3 release (3.0-3.4
while Sequential builds the model, 3.5+ with NameError at the first call). The
names are found by parsing the marshal data, never by loading it; `--define
CONV_WIDTH=3` patches the code in a child process, and the repaired archive then
loads in the release that failed and predicts what the original model did.
"""

import codecs
import json
import marshal
import struct
import subprocess
import sys
import zipfile

import pytest

from conftest import FIXTURES, MODELS, assert_matches_reference, codes_of, raw_entries
from kerasrepair import bytecode, fix_archive, open_archive
from kerasrepair import pointer as json_pointer
from kerasrepair.context import Options
from kerasrepair.passes import lambda_missing_global as lambda_globals

# a Lambda repaired is still serialized code: KR903's warning is all that is left
STILL_CODE = ["KR903"]

RUNNING = "{}.{}".format(*sys.version_info[:2])
FUNCTION = "/config/layers/1/config/function"
RELEASE_FIXTURES = ["3.0.5", "3.3.3", "3.4.1", "3.6.0"]

CONV_WIDTH = 3
SCALE = 2.0


def saved_code(function) -> str:
    """A function's code as Keras's func_dump saves it."""
    return codecs.encode(marshal.dumps(function.__code__), "base64").decode("ascii")


def lambda_code(path) -> str:
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
    return json_pointer.get(config, FUNCTION)["config"]["code"]


def test_globals_are_read_without_unmarshalling(monkeypatch):
    def scaled(width):
        return lambda x: np.sum([t * width + OFFSET for t in x]) + len(x) + ops.mean(x) + os.sep  # noqa: F821

    code = saved_code(scaled(2))
    monkeypatch.setattr(marshal, "loads", None)  # would raise if the reader called it
    found = bytecode.read_lambda(code)
    assert found.python == RUNNING
    # the closure variable `width` is saved; `OFFSET` is read in the nested comprehension
    assert set(found.globals_read) == {"np", "OFFSET", "len", "ops", "os"}
    # builtins and the names of Keras's python_utils module (os) are there at load time
    assert set(found.missing) == {"np", "OFFSET", "ops"}


def test_a_lambda_with_no_globals_has_nothing_missing():
    found = bytecode.read_lambda(saved_code(lambda x, k=2: (x * k, abs(x))))
    assert found.globals_read == ("abs",)
    assert found.missing == ()


def code_310(units: list[tuple[int, int]], names: tuple[str, ...]) -> str:
    """A one-argument lambda's code in the marshal layout of Python 3.8-3.10,
    hand-encoded (this machine has no Python 3.10), base64 as Keras saves it."""
    raw = (
        b"\xe3"
        + struct.pack("<6i", 1, 0, 0, 1, 3, 0x43)
        + b"".join(
            marshal.dumps(v)
            for v in (bytes(b for unit in units for b in unit), (None,), names, ("x",), (), ())
        )
        + marshal.dumps("<stdin>")
        + marshal.dumps("<lambda>")
        + struct.pack("<i", 1)
        + marshal.dumps(b"")
    )
    return codecs.encode(raw, "base64").decode()


def test_python_310_layout_is_told_apart():
    """`lambda x: x[-W:]` as Python 3.10 compiles it."""
    units = [(124, 0), (116, 0), (11, 0), (100, 0), (133, 2), (25, 0), (83, 0)]
    found = bytecode.read_lambda(code_310(units, ("W",)))
    assert found.python == "3.9/3.10"
    assert found.missing == ("W",)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not marshal at all",
        marshal.dumps((1, 2, 3)),
        marshal.dumps((lambda x: x).__code__)[:-7],  # truncated
        b"\xe3" + b"\xff" * 40,
    ],
    ids=["empty", "text", "tuple", "truncated", "garbage"],
)
def test_bytes_that_are_not_a_code_object_are_refused(raw):
    with pytest.raises(bytecode.MarshalError):
        bytecode.read_lambda(codecs.encode(raw, "base64").decode())


def test_finding_names_the_global_and_the_define_to_give(tmp_path):
    result = fix_archive(MODELS / "lambda_global.keras", None)
    assert result.changes == []
    [finding] = [f for f in result.remaining if f.code == "KR501"]
    assert finding.location == FUNCTION and finding.layer == "last_steps"
    assert "CONV_WIDTH" in finding.message
    assert finding.fix is None and "--define CONV_WIDTH=VALUE" in finding.hint


def test_define_patches_only_the_code(tmp_path):
    original = MODELS / "lambda_global.keras"
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(original, fixed, options=Options(defines={"CONV_WIDTH": "3"}))
    assert [(c.code, c.location) for c in result.changes] == [("KR501", FUNCTION + "/config/code")]
    assert codes_of(result.remaining) == STILL_CODE
    patched = bytecode.read_lambda(lambda_code(fixed))
    assert patched.globals_read == () and patched.python == RUNNING
    before, after = raw_entries(original), raw_entries(fixed)
    assert [name for name in before if before[name] != after[name]] == ["config.json"]
    # fix on its own output changes nothing
    again = tmp_path / "again.keras"
    rerun = fix_archive(fixed, again, options=Options(defines={"CONV_WIDTH": "3"}))
    assert rerun.changes == [] and again.read_bytes() == fixed.read_bytes()


def test_the_patcher_refuses_code_of_another_python():
    code = saved_code(lambda x: x[-CONV_WIDTH:])
    with pytest.raises(lambda_globals.LambdaPatchError, match="written by Python 3.12"):
        lambda_globals.patch_code(code, "3.12", {"CONV_WIDTH": "3"})


def test_code_of_another_python_is_reported_not_patched(tmp_path):
    """The fixture's code rewritten as if Python 3.10 had saved it: the finding
    says which Python can patch it, and nothing is written."""
    config = json.loads(zipfile.ZipFile(MODELS / "lambda_global.keras").read("config.json"))
    units = [(124, 0), (116, 0), (83, 0)]  # lambda x: CONV_WIDTH
    json_pointer.get(config, FUNCTION)["config"]["code"] = code_310(units, ("CONV_WIDTH",))
    source = tmp_path / "py310.keras"
    with zipfile.ZipFile(MODELS / "lambda_global.keras") as zin, zipfile.ZipFile(source, "w") as z:
        for item in zin.infolist():
            data = json.dumps(config).encode() if item.filename == "config.json" else None
            z.writestr(item, data if data is not None else zin.read(item))
    result = fix_archive(
        source, tmp_path / "out.keras", options=Options(defines={"CONV_WIDTH": "3"})
    )
    [finding] = [f for f in result.remaining if f.code != "KR903"]
    assert finding.fix is None and "Python 3.9/3.10" in finding.hint
    assert result.changes == []


def test_cli_rejects_a_define_that_is_not_a_literal(tmp_path):
    out = tmp_path / "out.keras"
    done = subprocess.run(
        [sys.executable, "-m", "kerasrepair", "fix", str(MODELS / "lambda_global.keras")]
        + ["-o", str(out), "--define", "CONV_WIDTH=__import__('os')"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not a Python literal" in done.stderr
    assert not out.exists()


@pytest.mark.releases
def test_module_define_makes_the_code_import_it(keras, saved, tmp_path):
    """`ops` and `SCALE` are both module globals of this test file: neither is saved."""
    import numpy as np

    globals()["ops"] = keras.ops  # a global of this module while the model is built
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Lambda(lambda x: ops.flip(x, axis=1) * SCALE)]  # noqa: F821
    )
    x = np.arange(8, dtype="float32").reshape(2, 4)
    reference = tmp_path / "reference.npz"
    np.savez(reference, x=x, y=model.predict(x, verbose=0))
    source = saved(model, "lambda_module")
    assert set(bytecode.read_lambda(lambda_code(source)).missing) == {"ops", "SCALE"}

    from releases import probe

    before = probe("3.15.1", source, reference, safe_mode=False)
    assert before["status"] == "call_error" and "is not defined" in before["detail"], before
    fixed = tmp_path / "fixed.keras"
    defines = {"ops": "module:keras.ops", "SCALE": "2.0"}
    result = fix_archive(source, fixed, options=Options(defines=defines))
    assert len(result.changes) == 1 and codes_of(result.remaining) == STILL_CODE
    # the reference was predicted in this process, the repair in a child: within the
    # tolerance (the original, which fails, cannot be compared with in that child)
    after = probe("3.15.1", fixed, reference, safe_mode=False)
    assert_matches_reference(after)


@pytest.mark.releases
@pytest.mark.parametrize("release", RELEASE_FIXTURES + ["3.15.1"])
def test_repair_is_proven_in_the_release_that_fails(release, tmp_path):
    from releases import probe

    folder = MODELS if release == "3.15.1" else FIXTURES / "releases" / f"keras-{release}"
    original = folder / "lambda_global.keras"
    reference = original.with_suffix(".npz")
    with open_archive(original) as archive:
        assert archive.metadata["keras_version"] == release
    before = probe(release, original, reference, safe_mode=False)
    text = f"{before['message']} {before.get('detail')}"
    if release in ("3.0.5", "3.3.3", "3.4.1"):
        assert before["status"] == "load_error" and "already been configured" in text, before
    else:
        assert before["status"] == "call_error" and "'CONV_WIDTH' is not defined" in text, before

    fixed = tmp_path / "fixed.keras"
    result = fix_archive(original, fixed, options=Options(defines={"CONV_WIDTH": "3"}))
    assert {c.code for c in result.changes} == {"KR501"}
    assert codes_of(result.remaining) == STILL_CODE
    for loader in dict.fromkeys([release, "3.15.1"]):
        # the original fails in both (in the same child): match the saved reference
        after = probe(loader, fixed, reference, safe_mode=False, compare_with=original)
        assert_matches_reference(after, loader)
        assert after["compared"]["status"] in ("load_error", "call_error"), (loader, after)


def test_a_patch_that_cannot_be_made_is_a_repair_error_not_bad_input(tmp_path, monkeypatch):
    """The archive is readable; the repair asked for failed: one line, exit 1,
    nothing written (not exit 2, which says the input is unreadable)."""
    from typer.testing import CliRunner

    from kerasrepair.cli import app

    def refuse(*args):
        raise lambda_globals.LambdaPatchError("no room to replace CONV_WIDTH in <lambda>")

    monkeypatch.setattr(lambda_globals, "patch_code", refuse)
    out = tmp_path / "fixed.keras"
    result = CliRunner().invoke(
        app,
        ["fix", str(MODELS / "lambda_global.keras"), "-o", str(out), "--define", "CONV_WIDTH=3"],
    )
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert "could not be patched: no room to replace CONV_WIDTH" in line
    assert "--define" in line and not out.exists()
    assert list(tmp_path.iterdir()) == []
