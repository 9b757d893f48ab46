"""KR503: a Lambda whose function has default arguments, which no Keras 3 loads.

`Lambda(lambda x, w=CONV_WIDTH: x[:, -w:, :])` is saved with its defaults as a
JSON list beside the marshaled code; `Lambda.from_config` hands that list to
`types.FunctionType`, which takes only a tuple. The parameters the defaults
belong to are read from the marshal data (`bytecode.py`), never by loading it;
the repair gives them to the function by name through the Lambda's `arguments`.
"""

from __future__ import annotations

from typing import Any

from .. import bytecode, pointer
from ..context import Context
from ..edit import Edit
from ..findings import ERROR, SAFE, SOMETIMES, UNSAFE, Change, Finding, Rule

EXPLANATION = """\
A Lambda layer's function is saved as marshaled bytecode together with its
default argument values, which JSON stores as a list:

    CONV_WIDTH = 3
    keras.layers.Lambda(lambda x, w=CONV_WIDTH: x[:, -w:, :])

    "function": {"class_name": "__lambda__",
                 "config": {"code": "4wMAAAAA...", "defaults": [3], "closure": null}}

Every Keras 3 release (3.0 to 3.15) passes that list unchanged to
`types.FunctionType`, which accepts only a tuple, so load_model fails even with
safe_mode=False:

    TypeError: <class '...Sequential'> could not be deserialized properly. ...
    Exception encountered: arg 4 (defaults) must be None or tuple

Parameters after `*` lose their defaults instead: Keras does not save them at
all, so the model loads and then fails at the first call (TypeError: <lambda>()
missing 1 required keyword-only argument: 'w'). Their values are not in the
archive; kerasrepair reports them, and you give them in `arguments`.

The defaults are values computed when the lambda was made: `w=CONV_WIDTH`
saved the number 3, and the code reads the parameter `w`, not the global
(KR501 is about globals the code itself reads).

kerasrepair reads the parameter names from the bytecode without running it and
repairs the config (safe; the code is not touched, so any Python can do it):
each default is given to the function by name in the Lambda's `arguments`,
which Keras passes as keyword arguments at every call, and `defaults` is set
to null. A name the `arguments` already give keeps its value there (the default
was never used). The first parameter (the inputs), `mask` and `training` are
always passed by Keras, so their defaults are dropped.

A default that is a list in config.json was a tuple or a list; JSON cannot
tell them apart and Keras passes `arguments` values as lists, so such a repair
is unsafe (--unsafe-fixes): check that the function treats a list as it did
the tuple. Not repaired: defaults of an `output_shape` lambda (Keras calls it
with the input shape only) and defaults of positional-only parameters. Better
still, pass the values with `Lambda(..., arguments={"w": 3})` and no defaults,
or write a layer class.
"""

RULE = Rule(
    code="KR503",
    name="lambda-default-argument",
    severity=ERROR,
    summary="A Lambda's function has default arguments: every Keras 3 release fails to load it",
    explanation=EXPLANATION,
    fix=SOMETIMES,
    breaks_in=None,
)

# passed by Keras at every call whenever the function has them (Lambda.call)
ALWAYS_PASSED = ("mask", "training")


def detect(ctx: Context) -> list[Finding]:
    findings = []
    for layer in ctx.graph.walk():
        if layer.class_name != "Lambda":
            continue
        lost = _lost_keyword_only(layer.config)
        if lost:
            findings.append(
                Finding(
                    code=RULE.code,
                    message=(
                        f"{layer.class_name} '{layer.name}': its function has keyword-only "
                        f"parameter(s) {', '.join(lost)}, whose defaults Keras does not save: "
                        "every Keras 3 release fails when it runs the function (TypeError: "
                        f"<lambda>() missing 1 required keyword-only argument: '{lost[0]}')"
                    ),
                    location=f"{layer.pointer}/config/function",
                    layer=layer.name,
                    hint="the archive does not hold their values: give them in the Lambda's "
                    "`arguments` (Lambda(..., arguments={"
                    + ", ".join(f"'{name}': VALUE" for name in lost)
                    + "})) and save the model again",
                )
            )
        for key in ("function", "output_shape"):
            defaults = _defaults(layer.config.get(key))
            if defaults is None:
                continue
            location = f"{layer.pointer}/config/{key}"
            plan = _plan(layer.config, key)
            shown = (
                ", ".join(f"{name}={value!r}" for name, value in plan.defaults.items())
                if plan.defaults
                else repr(defaults)
            )
            findings.append(
                Finding(
                    code=RULE.code,
                    message=(
                        f"{layer.class_name} '{layer.name}': its {key} has default "
                        f"argument(s) {shown}, saved as a JSON list: every Keras 3 release "
                        "fails to load it (TypeError: arg 4 (defaults) must be None or tuple)"
                    ),
                    location=location,
                    layer=layer.name,
                    fix=plan.fix,
                    hint=plan.hint,
                )
            )
    return findings


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    for finding in findings:
        config = pointer.get(edit.config, finding.location.rsplit("/", 1)[0])
        plan = _plan(config, "function")
        existing = config.get("arguments") or {}
        added = {name: value for name, value in plan.passed.items() if name not in existing}
        if added:
            config["arguments"] = {**existing, **added}
        config["function"]["config"]["defaults"] = None
        said = []
        if added:
            given = ", ".join(f"{name}={value!r}" for name, value in added.items())
            said.append(f"gave {given} by name in `arguments`")
        kept = [name for name in plan.passed if name in existing]
        if kept:
            said.append(f"kept `arguments`' own {', '.join(kept)}")
        if plan.dropped:
            said.append(f"dropped the defaults of {', '.join(plan.dropped)} (Keras passes them)")
        changes.append(
            Change(
                RULE.code,
                f"{finding.location}/config/defaults",
                "set the Lambda's `defaults` to null: " + "; ".join(said),
            )
        )
    return changes


class _Plan:
    """Where each default of a lambda goes, and whether that can be done."""

    def __init__(self) -> None:
        self.defaults: dict[str, Any] = {}  # parameter -> saved default
        self.passed: dict[str, Any] = {}  # given by name in `arguments`
        self.dropped: list[str] = []  # always passed by Keras
        self.fix: str | None = SAFE
        self.hint = ""

    def refuse(self, hint: str) -> _Plan:
        self.fix, self.hint = None, hint
        return self


def _defaults(value) -> Any:
    """The saved `defaults` of a `__lambda__` object; None when it has none."""
    if isinstance(value, dict) and value.get("class_name") == "__lambda__":
        inner = value.get("config")
        if isinstance(inner, dict):
            return inner.get("defaults")
    return None


def _lost_keyword_only(config: dict) -> list[str]:
    """The keyword-only parameters of a Lambda's function that `arguments` does
    not give: func_dump saves `__defaults__` but not `__kwdefaults__`."""
    function = config.get("function") if isinstance(config, dict) else None
    if not (isinstance(function, dict) and function.get("class_name") == "__lambda__"):
        return []
    inner = function.get("config")
    try:
        code = bytecode.read_lambda(str(inner.get("code", "") if isinstance(inner, dict) else ""))
    except bytecode.MarshalError:
        return []  # KR501 says the code cannot be read
    arguments = config.get("arguments")
    given = arguments if isinstance(arguments, dict) else {}
    return [name for name in code.keyword_only if name not in given]


def _plan(config: dict, key: str) -> _Plan:
    plan = _Plan()
    function = config[key]
    defaults = function["config"]["defaults"]
    rewrite = (
        "define the lambda without default arguments and pass the values with "
        "Lambda(..., arguments={...}), then save the model again"
    )
    try:
        code = bytecode.read_lambda(str(function["config"].get("code", "")))
    except bytecode.MarshalError as e:
        return plan.refuse(f"its code cannot be read ({e}): {rewrite}")
    names = code.defaulted(len(defaults)) if isinstance(defaults, list) else None
    if names is None:
        return plan.refuse(
            f"the saved defaults do not match the function's parameters "
            f"({', '.join(code.parameters) or 'none'}): {rewrite}"
        )
    plan.defaults = dict(zip(names, defaults, strict=True))
    if key != "function":
        return plan.refuse(
            f"Keras calls the {key} lambda with the input shape only, so its defaults "
            f"cannot be given by name: give {key} as a tuple, or {rewrite}"
        )
    first = code.parameters[0] if code.parameters else None
    for index, name in enumerate(code.parameters):
        if name not in plan.defaults:
            continue
        if name == first or name in ALWAYS_PASSED:
            plan.dropped.append(name)
        elif index < code.positional_only:
            return plan.refuse(
                f"'{name}' is a positional-only parameter, which `arguments` cannot give: "
                + rewrite
            )
        else:
            plan.passed[name] = plan.defaults[name]
    arguments = config.get("arguments")
    if arguments is not None and not isinstance(arguments, dict):
        return plan.refuse(f"the Lambda's `arguments` is not an object: {rewrite}")
    lists = [
        name
        for name, value in plan.passed.items()
        if isinstance(value, list) and name not in (arguments or {})
    ]
    if lists:
        plan.fix = UNSAFE
        plan.hint = (
            f"the default of {', '.join(lists)} is a list in config.json: it was a tuple or "
            "a list, and `arguments` passes a list; with --unsafe-fixes, check that the "
            "function treats a list as it did the saved value"
        )
    return plan
