"""KR903: Python code serialized in config.json, which runs when the model is loaded."""

from __future__ import annotations

from .. import advisories, pointer, schema
from ..context import Context
from ..findings import ERROR, NEVER, WARNING, Finding, Rule

RULE = Rule(
    code="KR903",
    name="serialized-code",
    severity=WARNING,
    summary="Serialized Python code (a Lambda, a lambda loss): loading it runs it",
    explanation="""\
A Lambda layer, and any lambda given to compile() or to a layer (a loss, a
metric, an activation), is saved as marshaled Python bytecode: a
`{"class_name": "__lambda__", "config": {"code": ...}}` object (tf.keras:
`"function": [code, defaults, closure]` with `"function_type": "lambda"`).
Loading it runs that code with the loader's permissions. Keras refuses it in
a .keras archive while safe_mode=True (the default), and runs it with
safe_mode=False or after keras.config.enable_unsafe_deserialization(); from a
legacy .h5 model, Keras 3.0-3.11.2 run it even with safe_mode=True.

kerasrepair finds every such object, in nested models, wrappers and
compile_config too, without loading it (KR502 in `inspect` says what the code
reads). A warning: the archive does not load in safe mode, and must be
trusted to load otherwise; an error for a .h5 model checked for a release
that ignores safe_mode there.

There is no fix: replacing the code by anything else changes what the model
computes. Rewrite the Lambda as a layer class registered with
@keras.saving.register_keras_serializable, and the lambda loss or metric as a
registered function, then save the model again.""",
    fix=NEVER,
)

# the advisory of Keras ignoring safe_mode for .h5 models, and the first
# release that does not
H5_ADVISORY = "CVE-2025-9905"
H5_SAFE_FROM = (3, 11, 3)


def detect(ctx: Context) -> list[Finding]:
    h5 = (ctx.options.written_as or ctx.archive.format) == "h5"  # as Keras will load it
    ignores_safe_mode = h5 and _version(ctx.target.keras_version) < H5_SAFE_FROM
    said = "; ".join(a.line for a in advisories.of(RULE.code) if h5 or a.id != H5_ADVISORY)
    runs = (
        f"Keras {ctx.target.keras_version} runs it when it loads this .h5 model, "
        "even with safe_mode=True"
        if ignores_safe_mode
        else "loading the model with safe_mode=False runs it"
    )
    found = []
    for path, who, layer in _code(ctx.serialized_objects):
        found.append(
            Finding(
                RULE.code,
                f"{who} holds serialized Python code: {runs}",
                pointer.of(path),
                ERROR if ignores_safe_mode else WARNING,
                layer=layer,
                hint="load it only if you trust its source; better, rewrite it as a registered "
                f"layer class or function and save the model again. Advisories: {said}",
            )
        )
    return found


def _code(walked) -> list[tuple[tuple, str, str | None]]:
    """Where code is saved, how to name what holds it, and the layer it is in."""
    found = []
    for path, obj, owner in walked:
        class_name, arguments = obj["class_name"], obj["config"]
        if class_name == "__lambda__":
            found.append((path, _holder(path, owner), owner[1] if owner else None))
        elif class_name == "Lambda" and isinstance(arguments, dict):
            # tf.keras's layout: the code is a list (or a string) beside its kind
            name = arguments.get("name")
            for argument, kind in (
                ("function", "function_type"),
                ("output_shape", "output_shape_type"),
            ):
                if arguments.get(kind) == "lambda" and isinstance(
                    arguments.get(argument), (list, str)
                ):
                    where = (*path, "config", argument)
                    found.append((where, f"Lambda layer '{name}' ({argument})", str(name)))
    return found


def _holder(path: tuple, owner: tuple[str, str] | None) -> str:
    """ "Lambda layer 'lam'", "the loss of compile_config", "a lambda in Dense 'd'" """
    if "compile_config" in path[:-1]:
        place = path[path.index("compile_config") + 1]
        return f"the {place} in compile_config" + (f" of {owner[0]} '{owner[1]}'" if owner else "")
    if owner and owner[0] == "Lambda" and path[-2:] == ("config", "function"):
        return f"Lambda layer '{owner[1]}'"
    if owner:
        return f"a lambda in {owner[0]} '{owner[1]}'"
    return "a lambda"


def _version(version: str) -> tuple[int, ...]:
    try:
        major, minor = schema.minor_key(version)
    except ValueError:
        return (0,)
    patch = version.split(".")[2:3]
    return major, minor, int(patch[0]) if patch and patch[0].isdigit() else 0
