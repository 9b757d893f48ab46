"""KR707: a compile configuration as Keras 2 wrote it.

tf.keras's `.keras` writes `steps_per_execution: null` and optimizers with
`jit_compile` / `is_legacy_optimizer`; an HDF5 model's `training_config` holds
`optimizer_config` ("Custom>Adam") and metrics as `MeanMetricWrapper` objects
nested per output. Keras 3 compiles the loaded model from this and fails, or
loads it uncompiled, dropping the optimizer state.
"""

from __future__ import annotations

import copy
from typing import Any

from .. import keras2
from ..context import Context
from ..edit import Edit
from ..findings import ALWAYS, ERROR, NOTE, SAFE, Change, Finding, Rule

EXPLANATION = """\
`load_model` compiles the model again from the saved compile configuration
(`compile_config` in config.json; `training_config` in an HDF5 model), so that
training resumes with the same optimizer and its state. What Keras 2 wrote
there Keras 3 reads otherwise:

- `optimizer_config` {"class_name": "Custom>Adam", ...} (HDF5): Keras 3 reads
  `optimizer`, a serialized keras.optimizers object;
- an optimizer's `jit_compile` and `is_legacy_optimizer`: Keras 3 optimizers
  take neither (XLA is the model's `jit_compile`); mixed precision's
  LossScaleOptimizerV3 is Keras 3's LossScaleOptimizer;
- metrics as [[{"class_name": "MeanMetricWrapper", "config": {"name": "mae",
  "fn": "mean_absolute_error"}}]] (HDF5): Keras 3 has no MeanMetricWrapper by
  that name ("Could not locate class 'MeanMetricWrapper'", "Could not locate
  function 'mse'");
- `steps_per_execution: null` (Keras 3: an int, 1 by default), `run_eagerly:
  null`, `jit_compile: null` (Keras 3: "auto");
- a loss by a short name ("mse"), which Keras 3's HDF5 loader does not find
  ("Could not locate function 'mse'"), or by a name Keras 3 dropped
  ("logcosh", "kullback_leibler_divergence"): the function's full name;
- a loss object's `reduction: "auto"` (Keras 3: "sum_over_batch_size") and its
  `fn` (Keras 3's loss classes take none).

Fix (safe, config only): write each as Keras 3 reads it. Metrics become the
names they were compiled with ("mae", "accuracy"), so the history keys and
callbacks that monitor them keep their names; a metric kerasrepair cannot name
keeps its object.
"""

RULE = Rule(
    code="KR707",
    name="keras2-compile-config",
    severity=ERROR,
    summary="A compile configuration as Keras 2 wrote it: Keras 3 cannot compile the model from it",
    explanation=EXPLANATION,
    fix=ALWAYS,
)

WHERE = "/compile_config"
HDF5_OPTIMIZER = "optimizer_config (HDF5) -> optimizer"
_OPTIMIZER_KERAS2_ONLY = ("jit_compile", "is_legacy_optimizer")
# tf.keras 2.11+ mixed precision wraps the optimizer in this; Keras 3's takes the
# same arguments (`dynamic` only as True)
_RENAMED_OPTIMIZERS = {"LossScaleOptimizerV3": "LossScaleOptimizer"}
_COMPILE_NULLS = {"steps_per_execution": 1, "run_eagerly": False}


def detect(ctx: Context) -> list[Finding]:
    compile_config = ctx.config.get("compile_config")
    if not keras2.applies(ctx.archive) or not isinstance(compile_config, dict):
        return []
    _, said = converted(compile_config, _outputs(ctx))
    return [
        Finding(RULE.code, f"compile configuration: {what}", WHERE, _severity(what), fix=SAFE)
        for what in said
    ]


def _severity(what: str) -> str:
    """The HDF5 form of the optimizer is what Keras 3's HDF5 loader reads: a
    note (a .keras needs the other form); everything else fails to compile."""
    return NOTE if what == HDF5_OPTIMIZER else ERROR


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    new, said = converted(edit.config["compile_config"], _outputs(ctx))
    edit.config["compile_config"] = new
    return [Change(RULE.code, WHERE, what) for what in said]


def converted(compile_config: dict[str, Any], outputs: int) -> tuple[dict[str, Any], list[str]]:
    """The compile configuration as Keras 3 reads it, and what changed."""
    new = copy.deepcopy(compile_config)
    said = []
    if "optimizer_config" in new:
        optimizer = new.pop("optimizer_config")
        if isinstance(optimizer, dict) and isinstance(optimizer.get("class_name"), str):
            class_name = optimizer["class_name"].removeprefix("Custom>")
            optimizer = {
                "module": "keras.optimizers",
                "class_name": class_name,
                "config": optimizer.get("config", {}),
                "registered_name": None,
            }
        new = {"optimizer": optimizer, **new}
        said.append(HDF5_OPTIMIZER)
    said += _optimizer(new.get("optimizer"))
    for key, default in _COMPILE_NULLS.items():
        if key in new and new[key] is None:
            new[key] = default
            said.append(f"{key}: null -> {default}")
    if "jit_compile" in new and new["jit_compile"] is None:
        del new["jit_compile"]
        said.append("jit_compile: null dropped (Keras 3: 'auto')")
    for key in ("metrics", "weighted_metrics"):
        metrics, changed = _metrics(new.get(key), outputs)
        if changed:
            new[key] = metrics
            said.append(f"{key} -> {_short(metrics)}")
    new["loss"], changed = _loss(new.get("loss"))
    said += changed
    if new["loss"] is None and "loss" not in compile_config:
        del new["loss"]
    return new, said


def _optimizer(optimizer: Any, what: str = "optimizer") -> list[str]:
    """Convert a serialized optimizer in place (and a LossScaleOptimizer's
    inner one); what changed."""
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("config"), dict):
        return []
    said = []
    arguments = optimizer["config"]
    if optimizer.get("class_name") in _RENAMED_OPTIMIZERS:
        old = optimizer["class_name"]
        optimizer["class_name"] = _RENAMED_OPTIMIZERS[old]
        said.append(f"{what} {old} -> {optimizer['class_name']}")
    if optimizer.get("class_name") == "LossScaleOptimizer" and arguments.get("dynamic") is True:
        del arguments["dynamic"]  # Keras 3's loss scale is always dynamic
        said.append(f"{what} argument 'dynamic' (True) dropped")
    for key in _OPTIMIZER_KERAS2_ONLY:
        if key in arguments:
            value = arguments.pop(key)
            said.append(f"{what} argument '{key}' ({value}) dropped")
    return said + _optimizer(arguments.get("inner_optimizer"), "inner optimizer")


def _outputs(ctx: Context) -> int:
    outputs = ctx.graph.outputs
    return len(outputs) if outputs else 1


def _metrics(metrics: Any, outputs: int) -> tuple[Any, bool]:
    if not isinstance(metrics, list):
        return metrics, False
    changed = False
    if outputs == 1 and len(metrics) == 1 and isinstance(metrics[0], list):
        metrics = metrics[0]  # HDF5 nests them per output
        changed = True
    named = [_metric(m) for m in metrics]
    return named, changed or named != metrics


def _metric(metric: Any) -> Any:
    if isinstance(metric, list):
        return [_metric(m) for m in metric]
    if not (isinstance(metric, dict) and metric.get("class_name") == "MeanMetricWrapper"):
        return metric
    arguments = metric.get("config")
    if not isinstance(arguments, dict):
        return metric
    name, fn = arguments.get("name"), arguments.get("fn")
    if isinstance(name, str) and name in _KERAS3_METRIC_NAMES:
        return name
    if isinstance(fn, str) and fn in _KERAS3_METRIC_FUNCTIONS:
        return fn
    return metric


def _loss(loss: Any) -> tuple[Any, list[str]]:
    """A Keras 2 loss object as Keras 3 reads it: no `fn` (the class is the
    function), `reduction` "auto" is "sum_over_batch_size"; a dict of losses
    per output, each so."""
    if isinstance(loss, dict) and "config" not in loss:
        said = []
        for key, value in loss.items():
            loss[key], changed = _loss(value)
            said += changed
        return loss, said
    if isinstance(loss, str) and loss in LOSS_ALIASES:
        return LOSS_ALIASES[loss], [f"loss '{loss}' -> '{LOSS_ALIASES[loss]}'"]
    if isinstance(loss, list):
        said = []
        for i, value in enumerate(loss):
            loss[i], changed = _loss(value)
            said += changed
        return loss, said
    arguments = loss.get("config") if isinstance(loss, dict) else None
    if not isinstance(arguments, dict):
        return loss, []
    said = []
    if arguments.get("reduction") == "auto":
        arguments["reduction"] = "sum_over_batch_size"
        said.append(f"loss {loss.get('class_name')} reduction 'auto' -> 'sum_over_batch_size'")
    if isinstance(arguments.get("fn"), str) and loss.get("class_name") != "LossFunctionWrapper":
        said.append(f"loss {loss.get('class_name')} argument 'fn' ({arguments.pop('fn')}) dropped")
    return loss, said


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


# loss names Keras 3 resolves in a .keras but not through its HDF5 loader ("Could
# not locate function 'mse'"), and ones it resolves under another name only
LOSS_ALIASES = {
    "mse": "mean_squared_error",
    "MSE": "mean_squared_error",
    "mae": "mean_absolute_error",
    "MAE": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "MAPE": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
    "MSLE": "mean_squared_logarithmic_error",
    "kld": "kl_divergence",
    "KLD": "kl_divergence",
    "kullback_leibler_divergence": "kl_divergence",
    "logcosh": "log_cosh",
}

# names Keras 3's compile resolves as metrics (keras.metrics.get, and the
# accuracy / crossentropy it picks by the loss)
_KERAS3_METRIC_NAMES = frozenset(
    ("accuracy", "acc", "crossentropy", "ce", "mse", "mae", "mape", "msle", "bce")
)
_KERAS3_METRIC_FUNCTIONS = frozenset(
    (
        "binary_accuracy",
        "binary_crossentropy",
        "categorical_accuracy",
        "categorical_crossentropy",
        "categorical_hinge",
        "hinge",
        "kl_divergence",
        "log_cosh",
        "mean_absolute_error",
        "mean_absolute_percentage_error",
        "mean_squared_error",
        "mean_squared_logarithmic_error",
        "poisson",
        "sparse_categorical_accuracy",
        "sparse_categorical_crossentropy",
        "sparse_top_k_categorical_accuracy",
        "squared_hinge",
        "top_k_categorical_accuracy",
    )
)
