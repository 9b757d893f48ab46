"""Generate schemas/keras2/2.15.json: what tf.keras 2.15 (Keras 2) writes in model files.

The catalog the Keras 2 -> Keras 3 porting rules read: for every public serializable class
of tf.keras 2.15 the `module` / `class_name` / `registered_name` its `.keras` format writes,
the class name its `.h5` format writes, the keys of its `get_config()` and their defaults;
and for the activations, losses and metrics that configs name by string or by function,
what the `.keras` `compile_config` and the `.h5` `training_config` (or a layer's
`activation`) hold for them. Found by building instances, compiling a small model and
saving it in both formats, then reading the files back; nothing is copied by hand.

It needs TensorFlow 2.15 with its tf.keras (keras 2.15), the venv `.venvs/tf-2.15/`:

    .venvs/tf-2.15/bin/python dev/generate_keras2_catalog.py            # writes the file
    .venvs/tf-2.15/bin/python dev/generate_keras2_catalog.py --out /tmp/c.json

(`python -m venv .venvs/tf-2.15 && .venvs/tf-2.15/bin/pip install tensorflow-cpu==2.15.1`
builds it; about a minute to run on two cores.) The output is deterministic: regenerating
gives the same bytes. `dev/keras2_differences.py` compares it with the Keras 3 schemas.

Entries of `classes` are keyed `<module>.<class_name>`, as written in a `.keras` file (the
same form as `names` in `schemas/keras/X.Y.json`): a bare `class_name` is not unique in
Keras 2 (`Adam` is in `keras.optimizers` and `keras.optimizers.legacy`,
`MeanSquaredError` in `keras.losses` and `keras.metrics`); `by_class_name` indexes them.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import re
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "schemas" / "keras2" / "2.15.json"
GENERATED_BY = "dev/generate_keras2_catalog.py"
EXPECTED = {"tensorflow": "2.15.1", "keras": "2.15.0"}

# Public modules of tf.keras whose serializable classes are catalogued ("" = `keras`).
MODULES = (
    "",
    "models",
    "layers",
    "layers.experimental",
    "layers.experimental.preprocessing",
    "initializers",
    "regularizers",
    "constraints",
    "optimizers",
    "optimizers.experimental",
    "optimizers.legacy",
    "optimizers.schedules",
    "losses",
    "metrics",
    "mixed_precision",
)
HELPERS = {"get", "serialize", "deserialize"}
# Strings that tf.keras's compile resolves by the model's loss and output shape.
SPECIAL_METRICS = ("accuracy", "acc", "crossentropy", "ce")
# (output units, loss) of the compile probes: the special metrics resolve differently in each.
SETTINGS = {
    "binary": (1, "binary_crossentropy"),
    "categorical": (3, "categorical_crossentropy"),
    "sparse_categorical": (3, "sparse_categorical_crossentropy"),
}


def _samples(tf, k):
    """Two values for each required constructor argument, by parameter name: an argument
    whose config value is not the same in both instances depends on them (no default)."""
    layers = k.layers
    return {
        "units": (1, 2),
        "filters": (1, 2),
        "kernel_size": (1, 2),
        "rate": (0.5, 0.25),
        "activation": ("relu", "tanh"),
        "axes": (1, 2),
        "boundaries": ([1], [2]),
        "values": ([0.1, 0.01], [0.2, 0.02]),
        "cell": (lambda: layers.SimpleRNNCell(1), lambda: layers.SimpleRNNCell(2)),
        "cells": (lambda: [layers.SimpleRNNCell(1)], lambda: [layers.SimpleRNNCell(2)]),
        "decay_rate": (0.9, 0.8),
        "decay_steps": (10, 20),
        "first_decay_steps": (10, 20),
        "initial_learning_rate": (0.1, 0.2),
        "dims": ((1,), (1,)),
        "equation": ("ab,bc->ac", "ab,bc->ac"),
        "output_shape": (2, 3),
        "factor": (0.1, 0.2),
        "feature_columns": (
            lambda: [tf.feature_column.numeric_column("a")],
            lambda: [tf.feature_column.numeric_column("b")],
        ),
        "fn": (k.losses.mean_squared_error, k.losses.mean_absolute_error),
        "function": (lambda: lambda x: x, lambda: lambda x: x + 1),
        "height": (2, 3),
        "width": (2, 3),
        "height_factor": (0.1, 0.2),
        "width_factor": (0.1, 0.2),
        "input_dim": (2, 3),
        "output_dim": (1, 2),
        "key_dim": (2, 3),
        "num_heads": (2, 3),
        "layer": (lambda: layers.Dense(1), lambda: layers.Dense(2)),
        "n": (2, 3),
        "name": ("float32", "float16"),
        "normalizer": ([1.0], [2.0]),
        "num_bins": (2, 3),
        "num_classes": (2, 3),
        "precision": (0.5, 0.6),
        "recall": (0.5, 0.6),
        "sensitivity": (0.5, 0.6),
        "specificity": (0.5, 0.6),
        "scale": (1.0, 2.0),
        "stddev": (0.1, 0.2),
        "target_class_ids": ([0], [1]),
        "target_shape": ((1,), (2,)),
    }


def _overrides(k):
    """Arguments some classes need beyond their signature's required ones."""
    layers = k.layers
    return {
        "InputLayer": ({"input_shape": (2,)}, {"input_shape": (3,)}),
        "CategoryEncoding": ({"num_tokens": 2}, {"num_tokens": 3}),
        "Bidirectional": ({"layer": layers.LSTM(1)}, {"layer": layers.LSTM(2)}),
        "LossScaleOptimizer": (
            {"inner_optimizer": k.optimizers.SGD()},
            {"inner_optimizer": k.optimizers.SGD(0.1)},
        ),
        "Policy": ({"name": "float32"}, {"name": "mixed_float16"}),
        "Optimizer": ({"name": "a"}, {"name": "b"}),
        "OptimizerV2": ({"name": "a"}, {"name": "b"}),
    }


# What the catalog's fields hold (written into it).
FIELDS = {
    "classes": "<module>.<class_name> as a .keras file writes it -> the class's entry",
    "classes.*.module / class_name / registered_name": "what serialize_keras_object writes",
    "classes.*.h5_class_name": "the class_name an .h5 file writes, where it differs",
    "classes.*.api_name / api_names": "tf.keras's canonical public name / all public names",
    "classes.*.config_keys": "the keys get_config() writes (signature names if no instance)",
    "classes.*.required": "arguments passed to build it -> what it wrote for them (or null)",
    "classes.*.defaults": "config values that do not depend on the required arguments",
    "classes.*.defaults_from": "config (two instances), signature, or none (Lambda, models)",
    "functions.<kind>.<name>.function": "the function tf.keras resolves the name to",
    "functions.<kind>.<name>.keras / h5": "what each format writes: string = given as name, "
    "function = given as the function object; h5.string_by_setting for accuracy/acc/ce/"
    "crossentropy, resolved by output units and loss (SETTINGS)",
    "functions.<kind>.<name>.resolved_by_get": "false: tf.keras's own get() does not resolve it",
    "compile_examples": "whole .keras compile_config / .h5 training_config of some compiles",
}
SETTINGS_DOC = {name: {"units": u, "loss": loss} for name, (u, loss) in SETTINGS.items()}

# Classes whose config is structure (a model) or code (Lambda): no defaults recorded.
NO_DEFAULTS = {"Lambda", "Sequential", "Functional", "Model"}


def _jsonable(value):
    return json.loads(json.dumps(value, sort_keys=True, allow_nan=False))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT}")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    import keras

    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    if versions != EXPECTED:
        sys.exit(f"needs {EXPECTED}, found {versions}")
    k = tf.keras
    with tempfile.TemporaryDirectory() as tmp:
        catalog = {
            "title": "What tf.keras 2.15 (Keras 2) writes for its built-in objects",
            "generated_by": GENERATED_BY,
            **versions,
            "fields": FIELDS,
            "settings": SETTINGS_DOC,
            "classes": {},
            "functions": {},
        }
        classes, coverage = _classes(tf, k)
        catalog["classes"] = classes
        index: dict[str, list[str]] = {}
        for key, entry in classes.items():
            index.setdefault(entry["class_name"], []).append(key)
        catalog["by_class_name"] = {name: sorted(keys) for name, keys in index.items()}
        catalog["coverage"] = coverage
        catalog["functions"] = _functions(tf, k, Path(tmp))
        catalog["compile_examples"] = _compile_examples(k, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(catalog, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(classes)} classes, {len(text) + 1} bytes", file=sys.stderr)


# --------------------------------------------------------------------------- classes


def _kinds(k):
    from keras.src.engine import functional

    return (
        ("model", (k.Model, functional.Functional)),
        ("metric", (k.metrics.Metric,)),  # a Layer in Keras 2
        ("layer", (k.layers.Layer,)),
        ("initializer", (k.initializers.Initializer,)),
        ("regularizer", (k.regularizers.Regularizer,)),
        ("constraint", (k.constraints.Constraint,)),
        ("optimizer", (k.optimizers.Optimizer, k.optimizers.legacy.Optimizer)),
        ("learning_rate_schedule", (k.optimizers.schedules.LearningRateSchedule,)),
        ("loss", (k.losses.Loss,)),
        ("dtype_policy", (k.mixed_precision.Policy,)),
    )


def _public(k):
    """{class: [public API names]} of the serializable classes in MODULES."""
    from keras.src.engine import functional

    kinds = _kinds(k)
    found: dict[type, set[str]] = {functional.Functional: set()}
    for path in MODULES:
        module = k
        for part in filter(None, path.split(".")):
            module = getattr(module, part)
        prefix = f"keras.{path}" if path else "keras"
        for name in dir(module):
            value = getattr(module, name)
            if name.startswith("_") or not inspect.isclass(value):
                continue
            if any(issubclass(value, bases) for _, bases in kinds):
                found.setdefault(value, set()).add(f"{prefix}.{name}")
    return {cls: sorted(names) for cls, names in found.items()}


def _kind_of(k, cls) -> str:
    for kind, bases in _kinds(k):
        if issubclass(cls, bases):
            return kind
    raise AssertionError(cls)


def _required(cls) -> list[str]:
    try:
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in parameters if p.default is p.empty and p.kind in kinds]


def _signature_defaults(cls) -> dict:
    """JSON defaults of the __init__ chain's named parameters, while each passes **kwargs."""
    found = {}
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        try:
            parameters = list(inspect.signature(init).parameters.values())[1:]
        except (TypeError, ValueError):
            break
        for p in parameters:
            if p.default is p.empty or p.name in found:
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            try:
                found[p.name] = _jsonable(p.default)
            except (TypeError, ValueError):
                continue
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return found


def _instances(tf, k, cls, required):
    """Two instances made with different values of the required arguments, and those."""
    overrides = _overrides(k).get(cls.__name__)
    if overrides:
        return [cls(**{a: _made(v) for a, v in kw.items()}) for kw in overrides], sorted(
            overrides[0]
        )
    samples = _samples(tf, k)
    missing = [a for a in required if a not in samples]
    if missing:
        raise LookupError(f"no sample for {missing}")
    made = [cls(**{a: _made(samples[a][i]) for a in required}) for i in (0, 1)]
    return made, list(required)


def _made(value):
    return value() if callable(value) and getattr(value, "__name__", "") == "<lambda>" else value


def _serialized(instance) -> dict:
    """What a `.keras` file holds for `instance` (module, class_name, config...)."""
    from keras.src.saving import serialization_lib

    return _jsonable(serialization_lib.serialize_keras_object(instance))


def _classes(tf, k):
    from keras.src.engine import functional
    from keras.src.saving import object_registration, serialization_lib
    from tensorflow.python.util import tf_export

    public = _public(k)
    classes = {}
    without_instance = []
    for cls, api_names in sorted(public.items(), key=lambda item: _qualname(item[0])):
        entry: dict = {"kind": _kind_of(k, cls), "python": _qualname(cls)}
        entry["api_names"] = api_names
        entry["api_name"] = tf_export.get_canonical_name_for_symbol(cls, api_name="keras")
        required = _required(cls)
        written = None
        try:
            if cls is functional.Functional:
                inputs = k.Input((2,))
                made = [k.Model(inputs, k.layers.Dense(1)(inputs))]
                supplied = []
            else:
                made, supplied = _instances(tf, k, cls, required)
            configs = []
            for instance in made:
                written = _serialized(instance)
                configs.append(written["config"])
        except Exception as exc:
            made, supplied, configs = [], required, []
            message = re.sub(r" at 0x[0-9a-f]+", "", str(exc).splitlines()[0])[:160]
            entry["no_instance"] = f"{type(exc).__name__}: {message}"
            without_instance.append(_qualname(cls))
        if written is None or type(made[0]) is not cls:
            written = serialization_lib.serialize_with_public_class(cls) or {
                "module": cls.__module__,
                "class_name": cls.__name__,
                "registered_name": object_registration.get_registered_name(cls),
            }
        entry["module"] = written["module"]
        entry["class_name"] = written["class_name"]
        entry["registered_name"] = written["registered_name"]
        h5_name = object_registration.get_registered_name(cls)
        if h5_name != entry["class_name"]:
            entry["h5_class_name"] = h5_name
        # the required arguments, with what the first instance wrote for them (None: unwritten)
        written_first = configs[0] if configs and isinstance(configs[0], dict) else {}
        entry["required"] = {a: written_first.get(a) for a in sorted(supplied)}
        if cls.__name__ in NO_DEFAULTS:
            entry["defaults_from"] = "none"
            entry["config_keys"] = sorted(configs[0]) if configs else []
            entry["defaults"] = {}
        elif configs and isinstance(configs[0], dict):
            first, second = configs[0], configs[-1]
            entry["defaults_from"] = "config"
            entry["config_keys"] = sorted(first)
            entry["defaults"] = {
                key: value
                for key, value in first.items()
                if key not in supplied and key in second and second[key] == value
            }
        else:
            defaults = _signature_defaults(cls)
            entry["defaults_from"] = "signature"
            entry["config_keys"] = sorted({*defaults, *required})
            entry["defaults"] = {
                key: v for key, v in defaults.items() if key not in required and key != "name"
            }
        key = f"{entry['module']}.{entry['class_name']}"
        if key in classes:
            raise RuntimeError(f"{key} written for two classes: {classes[key]['python']}, {cls}")
        classes[key] = entry
    coverage = {"classes": len(classes), "without_instance": sorted(without_instance)}
    return classes, coverage


def _qualname(obj) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


# --------------------------------------------------------------------------- functions


def _public_functions(module) -> list[str]:
    return sorted(
        name
        for name in dir(module)
        if not name.startswith("_")
        and name not in HELPERS
        and inspect.isfunction(getattr(module, name))
    )


def _saved(model, folder: Path, tag: str) -> tuple[dict, dict]:
    """(config.json of a `.keras` file, root attributes of an `.h5` file) of `model`."""
    import h5py

    keras_path, h5_path = folder / f"{tag}.keras", folder / f"{tag}.h5"
    model.save(keras_path)
    model.save(h5_path)
    with zipfile.ZipFile(keras_path) as archive:
        config = json.loads(archive.read("config.json"))
    with h5py.File(h5_path, "r") as h5:
        attributes = {
            name: json.loads(h5.attrs[name])
            for name in ("model_config", "training_config")
            if name in h5.attrs
        }
    keras_path.unlink()
    h5_path.unlink()
    return config, attributes


def _functions(tf, k, folder: Path) -> dict:
    return {
        "activations": _activations(k, folder),
        "losses": _losses(k, folder),
        "metrics": _metrics(k, folder),
    }


def _function_name(k, module_name: str, fn) -> str | None:
    """`keras.<module>.<name>` of a built-in function, by the name it is defined with."""
    module = getattr(k, module_name)
    name = getattr(fn, "__name__", None)
    if name and getattr(module, name, None) is fn:
        return f"keras.{module_name}.{name}"
    return None


def _activations(k, folder: Path) -> dict:
    """What a layer's `activation` holds in each format, given by name or by function:
    the names of `keras.activations` and the TensorFlow ops its module resolves too."""
    from keras.src import activations as module

    names = sorted({*_public_functions(k.activations), *_public_functions(module)})
    layers = [k.Input((2,))]
    for name in names:
        layers.append(k.layers.Dense(2, activation=name, name=f"s_{name}"))
        layers.append(k.layers.Dense(2, activation=k.activations.get(name), name=f"f_{name}"))
    model = k.Sequential(layers)
    config, h5 = _saved(model, folder, "activations")

    def by_layer(model_config):
        return {
            layer["config"]["name"]: layer["config"]["activation"]
            for layer in model_config["config"]["layers"]
            if "activation" in layer["config"]
        }

    new, old = by_layer(config), by_layer(h5["model_config"])
    found = {}
    for name in names:
        fn = k.activations.get(name)
        found[name] = {
            "function": _function_name(k, "activations", fn) or _qualname(fn),
            "keras": {"string": new[f"s_{name}"], "function": new[f"f_{name}"]},
            "h5": {"string": old[f"s_{name}"], "function": old[f"f_{name}"]},
        }
    return found


def _model(k, units: int):
    inputs = k.Input((3,))
    return k.Model(inputs, k.layers.Dense(units, name="out")(inputs))


def _compiled(k, folder, units, tag, **compile_args):
    """(compile_config of the `.keras` file, training_config of the `.h5` file)."""
    k.backend.clear_session()  # names as in a fresh program ("auc", not "auc_4")
    model = _model(k, units)
    model.compile(optimizer="sgd", **compile_args)
    config, h5 = _saved(model, folder, tag)
    return config["compile_config"], h5["training_config"]


def _loss_names(k) -> list[str]:
    names = _public_functions(k.losses)
    for name in dir(k.losses):
        value = getattr(k.losses, name)
        if inspect.isclass(value) and issubclass(value, k.losses.Loss) and _constructs(value):
            names.append(name)
    return sorted(n for n in names if n != "Loss")


def _metric_names(k) -> list[str]:
    names = [*_public_functions(k.metrics), *SPECIAL_METRICS]
    for name in dir(k.metrics):
        value = getattr(k.metrics, name)
        if inspect.isclass(value) and issubclass(value, k.metrics.Metric) and _constructs(value):
            names.append(name)
    return sorted(set(names))


def _constructs(cls) -> bool:
    try:
        cls()
    except Exception:
        return False
    return True


def _resolved(get, name: str) -> dict:
    """What tf.keras's `losses.get` / `metrics.get` makes of `name`."""
    try:
        resolved = get(name)
    except Exception as exc:
        return {"resolved_by_get": f"{type(exc).__name__}"}
    if isinstance(resolved, str):
        return {"resolved_by_get": False}  # compile keeps it; training would fail
    if inspect.isfunction(resolved):
        return {}
    return {"class": _qualname(type(resolved))}


def _losses(k, folder: Path) -> dict:
    """What compile's `loss` is written as, given by name (and, for functions, as one)."""
    units, loss = SETTINGS["categorical"]
    found = {}
    for name in _loss_names(k):
        fn = getattr(k.losses, name)
        entry = {"function": None, "keras": {}, "h5": {}, **_resolved(k.losses.get, name)}
        if inspect.isfunction(fn):
            entry["function"] = _function_name(k, "losses", fn)
            by_function = _compiled(k, folder, units, "loss_f", loss=fn)
            entry["keras"]["function"] = by_function[0]["loss"]
            entry["h5"]["function"] = by_function[1]["loss"]
        by_string = _compiled(k, folder, units, "loss_s", loss=name)
        entry["keras"]["string"] = by_string[0]["loss"]
        entry["h5"]["string"] = by_string[1]["loss"]
        found[name] = _jsonable(entry)
    return found


def _metrics(k, folder: Path) -> dict:
    """What compile's `metrics` hold for one metric, given by name (or as a function); the
    special strings for each SETTINGS (the `.h5` file writes what they resolved to)."""
    found = {}
    for name in _metric_names(k):
        entry = {"function": None, "keras": {}, "h5": {}}
        if name not in SPECIAL_METRICS:
            entry.update(_resolved(k.metrics.get, name))
            fn = getattr(k.metrics, name)
            if inspect.isfunction(fn):
                entry["function"] = _function_name(k, "metrics", fn)
                written = _compiled(k, folder, 1, "metric_f", loss="mse", metrics=[fn])
                entry["keras"]["function"] = written[0]["metrics"][0]
                entry["h5"]["function"] = _only_metric(written[1])
        by_setting = {}
        settings = SETTINGS if name in SPECIAL_METRICS else {"binary": SETTINGS["binary"]}
        for setting, (units, loss) in settings.items():
            written = _compiled(k, folder, units, "metric_s", loss=loss, metrics=[name])
            entry["keras"]["string"] = written[0]["metrics"][0]
            by_setting[setting] = _only_metric(written[1])
        if name in SPECIAL_METRICS:
            entry["h5"]["string_by_setting"] = by_setting
        else:
            entry["h5"]["string"] = by_setting["binary"]
        found[name] = _jsonable(entry)
    return found


def _only_metric(training_config: dict):
    """The one metric of a single-output model's `.h5` training_config (`[[metric]]`)."""
    (per_output,) = training_config["metrics"]
    (metric,) = per_output
    return metric


def _compile_examples(k, folder: Path) -> list:
    """Whole compile configs as written, for the cases the porting rules start from."""
    cases = [
        (
            "loss='mse', metrics=['mae', 'accuracy', 'mse']",
            dict(loss="mse", metrics=["mae", "accuracy", "mse"]),
        ),
        (
            "loss=keras.losses.MeanSquaredError(), metrics=[keras.metrics.MeanAbsoluteError()]",
            dict(loss=k.losses.MeanSquaredError(), metrics=[k.metrics.MeanAbsoluteError()]),
        ),
        (
            "loss=keras.losses.mse, metrics=[keras.metrics.mae, keras.metrics.binary_accuracy]",
            dict(loss=k.losses.mse, metrics=[k.metrics.mae, k.metrics.binary_accuracy]),
        ),
        (
            "loss='categorical_crossentropy', metrics=['acc'], weighted_metrics=['ce']",
            dict(loss="categorical_crossentropy", metrics=["acc"], weighted_metrics=["ce"]),
        ),
        (
            "loss={'out': 'mse'}, metrics={'out': ['mae']}, loss_weights={'out': 0.5}",
            dict(loss={"out": "mse"}, metrics={"out": ["mae"]}, loss_weights={"out": 0.5}),
        ),
    ]
    examples = []
    for call, kwargs in cases:
        units = 3 if kwargs["loss"] == "categorical_crossentropy" else 1
        compile_config, training_config = _compiled(k, folder, units, "example", **kwargs)
        training_config = {n: v for n, v in training_config.items() if n != "optimizer_config"}
        examples.append(
            {
                "compile": f"compile(optimizer='sgd', {call})",
                "output_units": units,
                "keras_compile_config": compile_config,
                "h5_training_config": training_config,
            }
        )
    return _jsonable(examples)


if __name__ == "__main__":
    main()
