"""KR708: weights laid out as Keras 2 stored them.

A legacy HDF5 model keeps its weights under `model_weights/<layer>/<layer>/
kernel:0`; a `.keras` of tf.keras stores the optimizer's iterations and slots
but not its learning rate (Keras 3 expects it at `optimizer/vars/1` and drops
the whole optimizer state otherwise), and tf.keras 2.13 named its layer groups
`_layer_checkpoint_dependencies/...`. The repair re-lays the weights file as
Keras 3 stores it: `layers/<class>[_n]/vars/<i>` in `model.layers` order.
"""

from __future__ import annotations

from .. import keras2, schema
from ..context import Context
from ..edit import Edit
from ..findings import ERROR, NOTE, SAFE, SOMETIMES, WARNING, Change, Finding, Rule

EXPLANATION = """\
Keras 3 reads a model's weights by where Keras 3 would have stored them: each
layer's variables at `layers/<class name in snake case>[_n]/vars/<i>`
(numbered per class in `model.layers` order; nested models and sub-layers such
as an LSTM's `cell` below their layer's group), the optimizer's at
`optimizer/vars/<i>`: iteration, learning rate, then its slots.

Keras 2 stored them otherwise:

- a legacy HDF5 model (model.save("m.h5")): `model_weights/<layer name>/
  <weight name>:0`, listed per layer by the `layer_names` and `weight_names`
  attributes, and `optimizer_weights/...` by name (`Adam/m/dense/kernel:0`);
- a `.keras` of tf.keras 2.13-2.15: Keras 3's layer layout (2.13: under
  `_layer_checkpoint_dependencies/`), but the optimizer's iteration then its
  slots with no learning rate, so Keras 3 skips the whole optimizer state
  ("Skipping variable loading for optimizer 'adam', because it has 10
  variables whereas the saved optimizer has 9").

Fix (safe): write a new model.weights.h5 in Keras 3's layout, dataset by
dataset (values, dtypes and shapes unchanged; the learning rate from the
optimizer's config), and convert an HDF5 model into a `.keras` archive
(`kerasrepair fix old.h5 -o new.keras`). A layer whose weights kerasrepair
cannot place (a custom layer with sub-layers) is reported, and nothing is
written: save that model's weights with model.save_weights in the Keras that
made it, rebuild the model in code in Keras 3 and load them there.
"""

RULE = Rule(
    code="KR708",
    name="keras2-weights-layout",
    severity=ERROR,
    summary="Weights laid out as Keras 2 stored them: Keras 3 reads its own layout",
    explanation=EXPLANATION,
    fix=SOMETIMES,
)


def detect(ctx: Context) -> list[Finding]:
    if not keras2.applies(ctx.archive) or ctx.edited_weights is not None:
        return []
    plan = _plan(ctx)
    if plan is None:
        return []
    entry = "model_weights" if ctx.archive.format == "h5" else "model.weights.h5"
    if plan.problems:
        return [
            Finding(
                RULE.code,
                f"weights cannot be re-laid for Keras 3: {problem}",
                entry,
                ERROR,
                hint="save the weights with model.save_weights in the Keras that made the "
                "model, rebuild it in code in Keras 3 and load them there",
            )
            for problem in plan.problems
        ]
    found = [Finding(RULE.code, _summary(ctx, plan), entry, _severity(ctx, plan), fix=SAFE)]
    found += [
        Finding(RULE.code, f"optimizer state not carried over: {reason}", entry, WARNING)
        for reason in plan.dropped
    ]
    return found


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    plan = _plan(ctx)
    edit.weights_plan = plan
    moved = sum(1 for path, origin in plan.datasets if getattr(origin, "path", None) != path)
    return [
        Change(
            RULE.code,
            "model.weights.h5",
            f"re-laid as Keras 3 stores them: {len(plan.datasets)} variables "
            f"({moved} moved or added)",
        )
    ]


def _plan(ctx: Context):
    from .. import keras3_weights  # h5py: only for Keras 2 archives

    compile_config = ctx.config.get("compile_config")
    optimizer = compile_config.get("optimizer") if isinstance(compile_config, dict) else None
    if isinstance(optimizer, str):
        optimizer = _by_name(optimizer, keras3_weights.OPTIMIZER_NAMES)
    optimizer = optimizer if isinstance(optimizer, dict) else None
    if ctx.archive.format == "h5":
        return keras3_weights.plan_from_legacy(ctx.config, ctx.archive.legacy, optimizer)
    tree = ctx.archive.weights()
    if tree.format != "h5":
        return None
    plan = keras3_weights.plan_from_keras2_archive(ctx.config, tree, optimizer)
    if (
        not plan.problems
        and all(getattr(origin, "path", None) == path for path, origin in plan.datasets)
        and len(plan.datasets) == len(tree.variables)
    ):
        return None  # the layout Keras 3 reads already
    return plan


def _by_name(name: str, names: dict[str, str]) -> dict | str:
    """compile(optimizer="sgd"): the optimizer with tf.keras 2.15's default
    learning rate (SGD: 0.01, Adam: 0.001), the value its state carries."""
    class_name = names.get(name.lower(), name)
    keras2 = schema.keras2_release()
    for module in ("keras.optimizers", "keras.optimizers.experimental"):
        key = keras2.resolve(module, class_name)
        if key is not None:
            rate = keras2.definition(key)["properties"].get("learning_rate", {})
            if "default" in rate:
                return {"class_name": class_name, "config": {"learning_rate": rate["default"]}}
    return name


def _severity(ctx: Context, plan) -> str:
    """A note for an HDF5 model (Keras 3's HDF5 loader reads its layout: only a
    .keras needs Keras 3's); an error when Keras 3 would miss layer weights; a
    warning when it loads but skips the optimizer state."""
    if ctx.archive.format == "h5":
        return NOTE
    moved = {path for path, origin in plan.datasets if getattr(origin, "path", None) != path}
    return WARNING if all(path.startswith("optimizer/") for path in moved) else ERROR


def _summary(ctx: Context, plan) -> str:
    count = sum(1 for path, _ in plan.datasets if not path.startswith("optimizer/"))
    slots = len(plan.datasets) - count
    if ctx.archive.format == "h5":
        return (
            f"the HDF5 model's {count} weights need Keras 3's layout (layers/<class>/vars/<i>)"
            + (f", and {slots} optimizer variables" if slots else "")
        )
    return f"the weights file needs Keras 3's layout ({len(plan.datasets)} variables re-laid)"
