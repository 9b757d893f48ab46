"""KR501: a Lambda whose code reads a module-level name the archive does not save.

`Lambda(lambda x: x[:, -CONV_WIDTH:, :])` is saved as marshaled bytecode; its
globals are not saved, and the loader gives the code only builtins and the
globals of `keras/src/utils/python_utils.py`. The names the code reads are found
by parsing the marshal data (`bytecode.py`), never by loading it. With
`--define NAME=VALUE` the code is patched in a child process of the Python
version that wrote it (`lambda_child.py`): each read of NAME loads VALUE instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .. import bytecode, pointer
from ..archive import CONFIG
from ..context import Context
from ..edit import Edit
from ..errors import RepairError
from ..findings import ERROR, SAFE, SOMETIMES, WARNING, Change, Finding, Rule

EXPLANATION = """\
A Lambda layer's function is saved as Python bytecode (marshal, base64) in
config.json. The values of the module-level names it reads are not saved:

    CONV_WIDTH = 3
    keras.layers.Lambda(lambda x: x[:, -CONV_WIDTH:, :])

When Keras loads the model (with safe_mode=False, as Lambda layers require),
the code runs with only the builtins and a few names of Keras's own module, so
every Keras 3 release fails:

    3.5 and newer:  NameError: name 'CONV_WIDTH' is not defined  (first call)
    3.0 to 3.4:     a misleading error from Sequential while it builds the
                    model ("...has already been configured to use input shape")

The same happens for modules the code uses (`np`, `tf`, `ops`).

kerasrepair reads the bytecode without running it and lists the names it reads
that the loader will not provide. Repair (safe; config only) by giving each
name the value it had when the model was saved:

    kerasrepair fix model.keras -o fixed.keras --define CONV_WIDTH=3
    kerasrepair fix model.keras -o fixed.keras --define np=module:numpy

A VALUE is a Python literal (number, string, tuple, list, dict, None, True,
False) or `module:NAME` for a module (`module:keras.ops`). The code is patched
so that each read of the name loads that constant (or imports the module);
nothing else in it changes, and it still runs only in the Python version that
wrote it. Marshaled code is unmarshalled only in a child process of that same
Python version (3.10 bytes crash 3.11's loader, 3.12 bytes can segfault it),
after the version has been read from the bytes' layout.

Better still, replace the Lambda with a layer class of your own, or pass the
value through `Lambda(..., arguments={"width": 3})`.
"""


RULE = Rule(
    code="KR501",
    name="lambda-missing-global",
    severity=ERROR,
    summary="A Lambda reads a module-level name that is not saved: it fails in every Keras 3",
    explanation=EXPLANATION,
    fix=SOMETIMES,
    breaks_in=None,
)

CHILD = Path(__file__).resolve().parent.parent / "lambda_child.py"
RUNNING_PYTHON = "{}.{}".format(*sys.version_info[:2])


def detect(ctx: Context) -> list[Finding]:
    findings = []
    defines = ctx.options.defines
    for layer in ctx.graph.walk():
        for location, function in _lambdas(layer):
            try:
                code = bytecode.read_lambda(str(function["config"].get("code", "")))
            except bytecode.MarshalError as e:
                findings.append(_unreadable(layer, location, str(e)))
                continue
            if code.python not in bytecode.OPCODES:
                findings.append(_unreadable(layer, location, f"Python {code.python}"))
                continue
            if not code.missing:
                continue
            names = ", ".join(code.missing)
            undefined = [name for name in code.missing if name not in defines]
            if undefined:
                fix, hint = (
                    None,
                    (
                        "give each name the value it had when the model was saved: "
                        + " ".join(f"--define {name}=VALUE" for name in undefined)
                        + " (`kerasrepair explain KR501`)"
                    ),
                )
            elif RUNNING_PYTHON not in code.python.split("/"):
                fix, hint = (
                    None,
                    (
                        f"this code was written by Python {code.python}; run kerasrepair "
                        f"under Python {code.python.split('/')[-1]} to patch it"
                    ),
                )
            else:
                fix, hint = SAFE, ""
            findings.append(
                Finding(
                    code=RULE.code,
                    message=(
                        f"{layer.class_name} '{layer.name}' reads the global name(s) {names}, "
                        "which the archive does not save: every Keras 3 release fails to run "
                        f"it (NameError: name '{code.missing[0]}' is not defined)"
                    ),
                    location=location,
                    layer=layer.name,
                    fix=fix,
                    hint=hint,
                )
            )
    return findings


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    for finding in findings:
        function = pointer.get(edit.config, finding.location)
        code = bytecode.read_lambda(function["config"]["code"])
        defines = {name: ctx.options.defines[name] for name in code.missing}
        try:
            patched = patch_code(function["config"]["code"], code.python, defines)
        except LambdaPatchError as e:
            raise RepairError(
                f"{ctx.archive.path}:{CONFIG} {finding.location}",
                f"the Lambda's code could not be patched: {e}",
                "check the --define values, or replace the Lambda in your code",
            ) from None
        function["config"]["code"] = patched
        given = ", ".join(f"{name} now loads {value}" for name, value in defines.items())
        changes.append(
            Change(
                RULE.code,
                f"{finding.location}/config/code",
                f"patched the Lambda's Python {code.python} bytecode: each read of {given}",
            )
        )
    return changes


PATCH_SECONDS = 60  # the child patches a few KB of bytecode in well under a second


def patch_code(code_base64: str, python: str, defines: dict[str, str]) -> str:
    """The code with each read of a defined name replaced, patched by a child
    process (isolated, no site) of this Python, which must be `python`."""
    request = json.dumps({"code": code_base64, "python": python, "defines": defines})
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", str(CHILD)],
            input=request,
            capture_output=True,
            text=True,
            timeout=PATCH_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise LambdaPatchError(f"the Lambda code patcher ran past {PATCH_SECONDS} s") from None
    if done.returncode != 0:
        raise LambdaPatchError(
            f"the Lambda code patcher died (exit {done.returncode}): "
            f"{done.stderr.strip().splitlines()[-1:] or 'no message'}"
        )
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and "error" in answer:
        raise LambdaPatchError(str(answer["error"]))
    if not (isinstance(answer, dict) and isinstance(answer.get("code"), str)):
        raise LambdaPatchError(f"the Lambda code patcher answered no code ({done.stdout[:80]!r})")
    return answer["code"]


class LambdaPatchError(ValueError):
    """The child could not patch the code (bad --define value, no room, crash)."""


def _lambdas(layer):
    """(pointer, object) of each serialized Python lambda of a layer: a Lambda's
    `function`, and an `output_shape` or `mask` given as a lambda (the only
    places Keras writes `__lambda__`)."""
    for key in ("function", "output_shape", "mask"):
        value = layer.config.get(key)
        is_lambda = isinstance(value, dict) and value.get("class_name") == "__lambda__"
        if is_lambda and isinstance(value.get("config"), dict):
            yield f"{layer.pointer}/config/{key}", value


def _unreadable(layer, location: str, why: str) -> Finding:
    return Finding(
        code=RULE.code,
        message=f"{layer.class_name} '{layer.name}': its saved code cannot be read ({why}), "
        "so the names it needs are unknown",
        location=location,
        severity=WARNING,
        layer=layer.name,
        hint="load it in the Python version that saved the model",
    )
