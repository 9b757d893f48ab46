"""KR906: a TorchModuleWrapper keeps the torch module it wraps as a pickle in its
config (`torch.save`, base64), and loading the model unpickles it
(CVE-2025-49655): a pickle imports and calls what it names. kerasrepair reads the
pickle's opcodes, never unpickles it, and says what it would import: an error for
`os.system` and the like, a warning for torch's own classes (any unpickling runs
code). A pickle it cannot read whole is an error, never a crash."""

from __future__ import annotations

import base64
import collections
import copy
import io
import pickle
import struct
import zipfile

import pytest
from typer.testing import CliRunner

from conftest import HOSTILE, MODELS
from kerasrepair import check_archive, open_archive
from kerasrepair.cli import app
from kerasrepair.context import Context
from kerasrepair.passes import torch_module_pickle
from kerasrepair.passes.torch_module_pickle import PickleError, scan_module

SOURCE = MODELS / "sequential_mlp.keras"


def _framed(body: bytes) -> bytes:
    """PROTO 4, FRAME, `body` (which ends in STOP)."""
    return b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body


def _unicode(text: str) -> bytes:
    return b"\x8c" + bytes([len(text)]) + text.encode() + b"\x94"  # SHORT_BINUNICODE, MEMOIZE


OS_SYSTEM = _framed(_unicode("os") + _unicode("system") + b"\x93\x94" + _unicode("id") + b"\x85R.")


def _torch_zip(pickle_bytes: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/version", b"3\n")
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _detect(module):
    """KR906's findings for a TorchModuleWrapper whose `module` is `module`."""
    with open_archive(SOURCE) as archive:
        config = copy.deepcopy(archive.config)
        config["config"]["layers"].insert(
            2,
            {
                "module": "keras.layers",
                "class_name": "TorchModuleWrapper",
                "config": {"name": "torch_module", "module": module, "output_shape": None},
                "registered_name": None,
            },
        )
        return [
            (f.severity, f.message) for f in torch_module_pickle.detect(Context(archive, config))
        ]


@pytest.fixture
def nothing_is_unpickled(monkeypatch):
    """Unpickling, or running what the hostile pickle names, fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("unpickled or ran something")

    for name in ("load", "loads", "Unpickler", "_Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr("os.system", refuse)


def test_a_pickle_that_imports_os_system(nothing_is_unpickled):
    path = HOSTILE / "torch_module_os_system.keras"
    [finding] = check_archive(path).findings
    assert (finding.code, finding.severity, finding.location) == (
        "KR906",
        "error",
        "/config/layers/2/config/module",
    )
    assert finding.message == (
        "TorchModuleWrapper 'torch_module' holds a torch module pickle that imports os.system: "
        "unpickling it runs that"
    )
    assert "CVE-2025-49655 (Keras >= 3.11.0, < 3.11.3; fixed in 3.11.3)" in finding.hint
    assert "CVE-2026-12484 (affected releases not found)" in finding.hint
    ran = CliRunner().invoke(app, ["check", str(path)])
    assert ran.exit_code == 1 and "KR906 error" in ran.output


def test_every_form_of_the_saved_bytes(nothing_is_unpickled):
    """base64 of torch's zip (Keras 3.11+), of a bare pickle (torch's legacy format),
    a list of byte values, a `__bytes__` object."""
    said = "imports os.system"
    assert said in _detect(_b64(_torch_zip(OS_SYSTEM)))[0][1]
    assert said in _detect(_b64(OS_SYSTEM))[0][1]
    assert said in _detect(list(OS_SYSTEM))[0][1]
    latin = {"class_name": "__bytes__", "config": {"value": OS_SYSTEM.decode("latin-1")}}
    assert _detect(latin)[0][0] == "error"


@pytest.mark.parametrize(
    ("body", "imported"),
    [
        # protocol 0's GLOBAL: b"cos\nsystem\n"
        (b"cos\nsystem\n(S'id'\ntR.", "os.system"),
        # the strings of STACK_GLOBAL fetched back from the memo
        (_unicode("builtins") + _unicode("eval") + b"h\x00h\x01\x93\x94N\x85R.", "builtins.eval"),
        # a string pushed and popped between them does not hide the module
        (
            _unicode("subprocess") + _unicode("decoy") + b"0" + _unicode("Popen") + b"\x93N\x85R.",
            "subprocess.Popen",
        ),
        # INST
        (b"(S'id'\nisubprocess\ncheck_output\n.", "subprocess.check_output"),
        # a name computed while unpickling: nothing tells what it imports
        (b"K\x01K\x02\x93.", "<a name computed while unpickling>"),
    ],
)
def test_what_the_opcodes_import(body, imported, nothing_is_unpickled):
    [(severity, message)] = _detect(_b64(_framed(body)))
    assert severity == "error"
    assert f"imports {imported}" in message


def test_torch_and_the_rebuilders_are_a_warning():
    """What unpickling a real module imports (torch's classes and helpers,
    OrderedDict): no worse than any pickle, which still runs code."""
    body = (
        _unicode("torch.nn.modules.linear")
        + _unicode("Linear")
        + b"\x93\x94)\x81\x94"  # STACK_GLOBAL, EMPTY_TUPLE, NEWOBJ
        + pickle.dumps(collections.OrderedDict(weight=1), protocol=2)[2:-1]
        + b"b."  # BUILD, STOP
    )
    [(severity, message)] = _detect(_b64(_torch_zip(_framed(body))))
    assert severity == "warning"
    assert "imports torch.nn.modules.linear.Linear, collections.OrderedDict" in message


@pytest.mark.parametrize(
    ("module", "said"),
    [
        ("not base64!", "it is not base64"),
        (7, "it is a JSON int, not bytes"),
        ([1, 2, 300], "it is a list, but not of byte values"),
        (_b64(OS_SYSTEM[:-6]), "damaged at byte"),
        (_b64(b"PK\x03\x04" + bytes(40)), "its torch archive is damaged"),
        (_b64(_torch_zip(b"")[:60]), "its torch archive is damaged"),
        (_b64(b"\x80\x04\xff."), "damaged at byte"),
        (_b64(b"h\x05."), "BINGET of memo 5, never stored"),
    ],
)
def test_a_pickle_that_cannot_be_read_is_an_error_not_a_crash(module, said):
    [(severity, message)] = _detect(module)
    assert severity == "error"
    assert message.startswith(
        "TorchModuleWrapper 'torch_module' holds a torch module pickle that cannot be read: "
    )
    assert said in message


def test_the_scan_is_bounded(monkeypatch):
    many = b"".join(_framed(b"N.") for _ in range(20))
    with pytest.raises(PickleError, match="more than 16 pickles"):
        scan_module(_b64(many))
    monkeypatch.setattr(torch_module_pickle, "MAX_OPCODES", 5)
    with pytest.raises(PickleError, match="over 5 opcodes: not scanned whole"):
        scan_module(_b64(OS_SYSTEM))
