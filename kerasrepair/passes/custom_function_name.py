"""KR214: a custom function saved by Keras 3.0-3.6 under its bare name, which
Keras 3.7 and 3.8 cannot find although it is registered
(keras-team/keras#20806).

Up to 3.6, `serialize_keras_object` writes a function (a loss or a metric
given to `compile()`) as `{"module": "builtins", "class_name": "function",
"config": "<its __name__>", "registered_name": "function"}`, leaving out the
package it was registered under. 3.0-3.6 found it anyway, by any registered
key ending with the name. keras-team/keras#20406 (3.7.0) saves the registered
name (`"my_package>my_loss"`) and dropped that fallback; keras-team/keras#20824
(3.9.0) restored it for keys ending with `">my_loss"`. An activation is saved
with its package by every release (`activations.serialize`), so it loads.
"""

from __future__ import annotations

from .. import pointer, schema
from ..context import Context
from ..findings import ERROR, NEVER, Finding, Rule

EXPLANATION = """\
Keras 3.0 to 3.6 save a custom function given to compile() (a loss, a
metric) by its bare name, without the package it was registered under:

    @keras.saving.register_keras_serializable(package="my_package")
    def my_loss(y_true, y_pred): ...

    {"module": "builtins", "class_name": "function", "config": "my_loss",
     "registered_name": "function"}

Keras 3.7 and 3.8 look the function up by its full registered name
("my_package>my_loss") only, so loading fails even with the function
imported and registered (keras-team/keras#20806):

    TypeError: Could not locate function 'my_loss'. Make sure custom classes
    are decorated with `@keras.saving.register_keras_serializable()`.

3.0-3.6 and 3.9 or newer load the archive (3.9.0 restored the lookup by
bare name, keras-team/keras#20824).

Not repairable in the file: the package is not in it, and 3.7-3.8 need the
exact "package>name" key. What works in 3.7 and 3.8 is passing every such
function by its bare name:

    keras.saving.load_model(path, custom_objects={"my_loss": my_loss})

or loading with Keras 3.9 or newer (or 3.6), or re-saving the model with
Keras 3.7 or newer, which writes "my_package>my_loss".
"""

RULE = Rule(
    code="KR214",
    name="custom-function-name",
    severity=ERROR,
    summary="A custom function saved by Keras 3.0-3.6 by bare name: 3.7-3.8 cannot find it",
    explanation=EXPLANATION,
    fix=NEVER,
    breaks_in=("3.7", "3.8"),
)

# the bare name is written by these releases; 3.7+ write "package>name"
SAVED_BARE = ((3, 0), (3, 6))
# the Keras modules whose functions 3.7-3.8 find by bare name (serialization_lib
# BUILTIN_MODULES: the ones of these the schemas list)
BUILTIN_FUNCTIONS = ("keras.activations", "keras.losses", "keras.metrics")


def detect(ctx: Context) -> list[Finding]:
    if not _saved_bare(ctx.archive.keras_version):
        return []
    found = list(_bare_functions(ctx))
    names = sorted({name for _, name, _, _ in found})
    loader = ", ".join(f"'{name}': {name}" for name in names)
    return [
        Finding(
            RULE.code,
            f"function '{name}' ({where}) is saved by its bare name "
            f"(Keras {ctx.archive.keras_version} leaves out the package it was registered "
            f'under): Keras {ctx.target.name} fails with "Could not locate function '
            f"'{name}'\" even with it registered (keras-team/keras#20806)",
            pointer.of((*path, "config")),
            ERROR,
            layer=layer,
            hint=f"in Keras {ctx.target.name}, pass custom_objects={{{loader}}} to "
            "keras.saving.load_model; or load with Keras 3.9 or newer (or 3.0-3.6), or re-save "
            "the model with Keras 3.7 or newer, which writes 'package>name'",
        )
        for path, name, where, layer in found
    ]


def _saved_bare(version: str | None) -> bool:
    try:
        saved = schema.minor_key(version or "")
    except ValueError:
        return False
    return SAVED_BARE[0] <= saved <= SAVED_BARE[1]


def _bare_functions(ctx: Context):
    """The functions saved by name only that are not Keras's own (which every
    release finds in BUILTIN_FUNCTIONS): path, name, where it is said to be,
    the layer it is in."""
    for path, obj, owner in ctx.serialized_objects:
        name = obj["config"]
        if (
            obj["class_name"] != "function"
            or obj.get("module") != "builtins"
            or not isinstance(name, str)
            or ">" in name
        ):
            continue
        if any(
            release.has_function(f"{module}.{name}")
            for release in (ctx.target, ctx.saved)
            for module in BUILTIN_FUNCTIONS
        ):
            continue
        if len(path) > 1 and path[0] == "compile_config":
            key, *indices = path[1:]
            where = f"compile_config {key}" + "".join(f"[{index}]" for index in indices)
            yield path, name, where, None
        elif owner is not None:
            yield path, name, f"in {owner[0]} '{owner[1]}'", owner[1]
        else:
            yield path, name, f"at {pointer.of(path)}", None
