"""KR701: a built-in class named by a Keras 2 module path, or by none.

tf.keras 2.13-2.15 write `keras.src.engine.functional` (Functional),
`keras.src.engine.sequential`, `keras.optimizers.experimental`; an HDF5
model's config names its layers by class name alone. Keras 3 imports the
module it reads and fails:

    TypeError: Could not deserialize class 'Functional' because its parent
    module keras.src.engine.functional cannot be imported.
"""

from __future__ import annotations

from .. import keras2, objects, pointer
from ..context import Context
from ..edit import Edit
from ..findings import ERROR, SAFE, SOMETIMES, Change, Finding, Rule

EXPLANATION = """\
Keras 3 finds a built-in class by the `module` and `class_name` config.json
gives it: it imports the module and takes the class from it. Keras 2 (tf.keras)
wrote its own module paths, which Keras 3 does not have:

    keras.src.engine.functional   (Functional; Keras 3: keras.src.models.functional)
    keras.src.engine.sequential   (Sequential; Keras 3: keras)
    keras.optimizers.experimental (Adam, ...; Keras 3: keras.optimizers)

and a legacy HDF5 model (model.save("m.h5")) names its layers by class name
alone, with no module, which Keras 3 reads only through its legacy loader.
Loading fails with

    TypeError: Could not deserialize class 'Functional' because its parent
    module keras.src.engine.functional cannot be imported.

tf.keras names the recurrent layers' default initializer `Orthogonal` (and
`Identity`); Keras 3.0-3.3 find `Orthogonal` inside a layer only as
`OrthogonalInitializer` (3.0-3.6 `Identity` only as `IdentityInitializer`:
"Could not interpret initializer identifier"); later releases read both.

Fix (safe, config only): write the module Keras 3 has the same class in
(and, for an older target, the initializer names it reads), found by
class name in the target release's schema. A class no Keras 3
release has under that name is reported instead: it is custom code, which
must be registered (keras.saving.register_keras_serializable) in Keras 3.
"""

RULE = Rule(
    code="KR701",
    name="keras2-module",
    severity=ERROR,
    summary="A built-in class under a Keras 2 module path (or none): Keras 3 cannot import it",
    explanation=EXPLANATION,
    fix=SOMETIMES,
)


def detect(ctx: Context) -> list[Finding]:
    if not keras2.applies(ctx.archive):
        return []
    found = []
    for path, obj, _owner in ctx.serialized_objects:
        class_name = obj.get("class_name")
        if not isinstance(class_name, str) or class_name in objects.SPECIAL_OBJECTS:
            continue
        renamed = _renamed(ctx, obj)
        if renamed:
            found.append(
                Finding(
                    RULE.code,
                    f"{class_name} is not found by Keras {ctx.target.name} inside a layer "
                    f"(Could not interpret initializer identifier); it reads {renamed}",
                    pointer.of(path),
                    ERROR,
                    fix=SAFE,
                )
            )
            continue
        module = obj.get("module")
        if isinstance(module, str) and ctx.target.resolve(module, class_name):
            continue  # Keras 3 finds it where it is
        if isinstance(module, str) and not module.startswith("keras"):
            continue  # a custom object (KR206)
        key = keras2.builtin_key(ctx.target, obj, path)
        if key is None:
            continue  # no built-in class of that name: KR205 / KR206 say so
        new = keras2.module_of(key)
        said = f"module '{module}'" if module else "no module"
        found.append(
            Finding(
                RULE.code,
                f"{class_name} has {said}; Keras {ctx.target.name} has it in '{new}'",
                pointer.of(path),
                ERROR,
                fix=SAFE,
            )
        )
    return found


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    for finding in findings:
        try:
            obj = pointer.get(edit.config, finding.location)
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if not isinstance(obj, dict):
            continue  # an object inside the `module` of one rewritten before it
        renamed = _renamed(ctx, obj)
        if renamed:
            old = obj["class_name"]
            obj["class_name"] = renamed
            obj.setdefault("module", "keras.initializers")
            changes.append(Change(RULE.code, finding.location, f"class {old} -> {renamed}"))
            continue
        key = keras2.builtin_key(ctx.target, obj, _path(finding.location))
        old = obj.get("module")
        new = keras2.module_of(key)
        # Keras 3 writes the module first; keep the order of a saved object
        rebuilt = {"module": new, **{k: v for k, v in obj.items() if k != "module"}}
        rebuilt.setdefault("registered_name", None)
        obj.clear()
        obj.update(rebuilt)
        changes.append(
            Change(
                RULE.code,
                finding.location,
                f"module '{old}' -> '{new}'" if old else f"module '{new}' added",
            )
        )
    return changes


def _renamed(ctx: Context, obj: dict) -> str | None:
    """The name Keras 3 writes for a class tf.keras names otherwise, or None."""
    key = keras2.builtin_key(ctx.target, obj)
    if key is None:
        return None
    renamed = objects.older_initializer_name(keras2.module_of(key), obj["class_name"], ctx.target)
    return renamed[0] if renamed else None


def _path(location: str) -> tuple:
    return tuple(token for token in location.split("/")[1:])
