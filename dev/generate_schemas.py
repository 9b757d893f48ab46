"""Generate schemas/keras/<major>.<minor>.json from the real Keras releases.

For every Keras 3 minor release (at its newest patch) this script takes the cached virtual
environment of that exact keras that the tests use (`dev/releases.py`, under
`.venvs/keras-<version>/`, built on first use), then re-runs itself inside it (`--child`) to
introspect the release: which names a config may use for a class, which keyword arguments
each class's `from_config` accepts and which it requires. A development tool: it stays out
of the wheel, which ships only the files it writes (as `kerasrepair.schemas`).

    .venv/bin/python dev/generate_schemas.py                      # all releases
    .venv/bin/python dev/generate_schemas.py --releases 3.4 3.10  # some releases
    .venv/bin/python dev/generate_schemas.py --releases 3.10 --out /tmp/s   # elsewhere
    .venv/bin/python dev/generate_schemas.py --diff 3.10 3.11     # compare two generated files

The parent part uses the standard library only; the child part uses keras and the standard
library only (plus what keras itself imports).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT_DIR = REPO / "schemas" / "keras"
SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"
GENERATED_BY = "dev/generate_schemas.py"

# The environments of the releases (keras pinned exactly, with the jax, numpy and h5py of
# its period) are the ones the tests prove repairs with: dev/releases.py, one pin table.
sys.path.insert(0, str(HERE))
from releases import RELEASES, python_for  # noqa: E402


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def schema_name(version: str) -> str:
    """The file of a release: "3.4" for the newest patch of 3.4 in RELEASES, "3.0.0"
    for an older patch (kept where it differs from the newest: 3.0.0)."""
    newest = max((v for v in RELEASES if minor(v) == minor(version)), key=_key)
    return minor(version) if version == newest else version


def release_for(arg: str) -> str:
    """The release of "3.0.0" (that patch) or "3.0" (the newest 3.0 patch)."""
    if arg in RELEASES:
        return arg
    patches = [v for v in RELEASES if minor(v) == arg]
    if not patches:
        raise SystemExit(f"unknown release {arg!r}; known: {', '.join(map(schema_name, RELEASES))}")
    return max(patches, key=_key)


# --------------------------------------------------------------------------- parent side


def generate(version: str, log, out_dir: Path = OUT_DIR) -> tuple[str, float, dict]:
    """Introspect Keras `version` in its environment; write `<out_dir>/X.Y.json`."""
    start = time.monotonic()
    log(f"{version}: introspecting")
    python = python_for(version)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_", "PYTHON"))}
    env.update(
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        CUDA_VISIBLE_DEVICES="",
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONHASHSEED="0",
        KERAS_HOME=tempfile.gettempdir() + "/schemagen-keras-home",
    )
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.json"
        cmd = [str(python), str(Path(__file__).resolve()), "--child", str(raw)]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp)
        if result.returncode != 0:
            raise RuntimeError(f"child failed for keras {version}:\n{result.stderr[-5000:]}")
        data = json.loads(raw.read_text())
    if data["keras_version"] != version:
        raise RuntimeError(f"venv has keras {data['keras_version']}, wanted {version}")
    path = out_dir / f"{schema_name(version)}.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_schema(build_schema(data)), encoding="utf-8")
    return version, time.monotonic() - start, data["coverage"]


def build_schema(data: dict) -> dict:
    version = data["keras_version"]
    return {
        "$schema": SCHEMA_URI,
        "$id": f"urn:kerasrepair:schemas:keras:{schema_name(version)}",
        "title": f"Keyword arguments of Keras {version}'s built-in serializable objects",
        "keras_version": version,
        "generated_by": GENERATED_BY,
        "names": data["names"],
        "functions": data["functions"],
        "coverage": data["coverage"],
        "$defs": data["defs"],
    }


def _compact(value) -> str:
    return json.dumps(
        value, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    )


def dump_schema(schema: dict) -> str:
    """The outer object indented, one `names`/`functions`/`$defs` entry a line."""
    lines = ["{"]
    items = list(schema.items())
    for index, (key, value) in enumerate(items):
        comma = "," if index < len(items) - 1 else ""
        if key in ("names", "$defs") and value:
            lines.append(f"  {_compact(key)}: {{")
            entries = sorted(value.items())
            for i, (k, v) in enumerate(entries):
                sep = "," if i < len(entries) - 1 else ""
                lines.append(f"    {_compact(k)}: {_compact(v)}{sep}")
            lines.append(f"  }}{comma}")
        elif key == "functions" and value:
            lines.append(f"  {_compact(key)}: [")
            for i, name in enumerate(sorted(value)):
                sep = "," if i < len(value) - 1 else ""
                lines.append(f"    {_compact(name)}{sep}")
            lines.append(f"  ]{comma}")
        elif key == "coverage":
            lines.append(f"  {_compact(key)}: {{")
            entries = sorted(value.items())
            for i, (k, v) in enumerate(entries):
                sep = "," if i < len(entries) - 1 else ""
                if isinstance(v, list) and v:
                    lines.append(f"    {_compact(k)}: [")
                    lines.extend(
                        f"      {_compact(x)}{',' if j < len(v) - 1 else ''}"
                        for j, x in enumerate(v)
                    )
                    lines.append(f"    ]{sep}")
                else:
                    lines.append(f"    {_compact(k)}: {_compact(v)}{sep}")
            lines.append(f"  }}{comma}")
        else:
            lines.append(f"  {_compact(key)}: {_compact(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def load(arg: str) -> dict:
    path = OUT_DIR / f"{schema_name(release_for(arg))}.json"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist; generate it first with --releases {arg}")
    return json.loads(path.read_text(encoding="utf-8"))


def diff(old_arg: str, new_arg: str) -> str:
    old, new = load(old_arg), load(new_arg)
    out = [f"Keras {old['keras_version']} -> {new['keras_version']}"]

    def section(title: str, values) -> None:
        values = sorted(values)
        if values:
            out.append(f"{title} ({len(values)}):")
            out.extend(f"  {v}" for v in values)

    old_defs, new_defs = old["$defs"], new["$defs"]
    section("classes added", new_defs.keys() - old_defs.keys())
    section("classes removed", old_defs.keys() - new_defs.keys())
    section("names added", new["names"].keys() - old["names"].keys())
    section("names removed", old["names"].keys() - new["names"].keys())
    moved = [
        f"{n}: {old['names'][n]} -> {new['names'][n]}"
        for n in old["names"].keys() & new["names"].keys()
        if old["names"][n] != new["names"][n]
    ]
    section("names resolving to another class", moved)
    section("functions added", set(new["functions"]) - set(old["functions"]))
    section("functions removed", set(old["functions"]) - set(new["functions"]))
    changed = []
    for key in sorted(old_defs.keys() & new_defs.keys()):
        a, b = old_defs[key], new_defs[key]
        a_props, b_props = set(a.get("properties", {})), set(b.get("properties", {}))
        a_req, b_req = set(a.get("required", [])), set(b.get("required", [])) & b_props
        a_req = a_req & a_props
        lines = []
        if b_props - a_props:
            lines.append(f"    arguments added: {', '.join(sorted(b_props - a_props))}")
        if a_props - b_props:
            lines.append(f"    arguments removed: {', '.join(sorted(a_props - b_props))}")
        common = a_props & b_props
        if (b_req - a_req) & common:
            lines.append(f"    now required: {', '.join(sorted((b_req - a_req) & common))}")
        if (a_req - b_req) & common:
            lines.append(f"    now optional: {', '.join(sorted((a_req - b_req) & common))}")
        if b_req - a_req - common:
            lines.append(f"    new and required: {', '.join(sorted(b_req - a_req - common))}")
        a_extra, b_extra = a.get("additionalProperties"), b.get("additionalProperties")
        if a_extra != b_extra:
            lines.append(f"    additionalProperties: {a_extra} -> {b_extra}")
        if a.get("x-kind") != b.get("x-kind"):
            lines.append(f"    x-kind: {a.get('x-kind')} -> {b.get('x-kind')}")
        if lines:
            changed.append(f"  {key}")
            changed.extend(lines)
    if changed:
        out.append(f"classes changed ({sum(1 for c in changed if c[3] != ' ')}):")
        out.extend(changed)
    if len(out) == 1:
        out.append("no differences")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--releases", nargs="+", metavar="X.Y", help="only these releases")
    parser.add_argument("--diff", nargs=2, metavar=("OLD", "NEW"), help="compare two files")
    parser.add_argument("--jobs", type=int, default=2, help="releases generated at once")
    parser.add_argument(
        "--out", type=Path, default=OUT_DIR, help="where to write X.Y.json (default: %(default)s)"
    )
    parser.add_argument("--child", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0
    if args.diff:
        print(diff(*args.diff))
        return 0
    versions = [release_for(r) for r in args.releases] if args.releases else list(RELEASES)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    start = time.monotonic()
    failures = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(generate, v, log, args.out): v for v in versions}
        for future in concurrent.futures.as_completed(futures):
            version = futures[future]
            try:
                _, seconds, cov = future.result()
            except Exception as exc:  # report every release, fail at the end
                failures += 1
                log(f"{version}: FAILED: {exc}")
                continue
            log(
                f"{version}: wrote {args.out / schema_name(version)}.json in {seconds:.0f} s: "
                f"{cov['classes']} classes, {cov['default_instances']} default instances"
            )
    log(f"done in {time.monotonic() - start:.0f} s")
    return 1 if failures else 0


# --------------------------------------------------------------------------- child side
# Runs inside a release's venv: keras + standard library only.

PROBE_ARG = "kerasrepair_probe_arg"

# Legacy keyword arguments a base class may still pop; which ones really are accepted is
# found by constructing a trivial instance with each.
LAYER_LEGACY = {
    "input_dim": 2,
    "input_shape": (2,),
    "batch_input_shape": (None, 2),
    "batch_shape": (None, 2),
    "batch_size": 1,
    "weights": None,
    "dynamic": False,
    "input_dtype": "float32",
    "implementation": 1,
}
OPTIMIZER_LEGACY = {"lr": 0.01, "decay": 0.0, "is_legacy_optimizer": False, "jit_compile": True}

# Words of the errors that say "this keyword argument is not accepted".
UNKNOWN_ARG_WORDS = (
    "unrecognized",
    "unexpected keyword",
    "multiple values",
    "not recognized",
    "invalid keyword",
    "no longer supported",
    "not supported anymore",
    "unknown argument",
)


def _samples(keras):
    """Values for required constructor arguments, by parameter name."""
    layers = keras.layers
    return {
        "units": lambda: 2,
        "filters": lambda: 2,
        "kernel_size": lambda: 1,
        "rate": lambda: 0.5,
        "axis": lambda: -1,
        "layer": lambda: layers.Dense(2),
        "cell": lambda: layers.SimpleRNNCell(2),
        "cells": lambda: [layers.SimpleRNNCell(2)],
        "pool_size": lambda: 2,
        "size": lambda: 2,
        "padding": lambda: 1,
        "cropping": lambda: 1,
        "target_shape": lambda: (2,),
        "dims": lambda: (1,),
        "n": lambda: 2,
        "function": lambda: keras.activations.relu,
        "fn": lambda: keras.losses.mean_squared_error,
        "input_dim": lambda: 4,
        "output_dim": lambda: 2,
        "num_heads": lambda: 2,
        "key_dim": lambda: 2,
        "head_dim": lambda: 2,
        "num_query_heads": lambda: 2,
        "num_key_value_heads": lambda: 1,
        "equation": lambda: "ab,bc->ac",
        "output_shape": lambda: 2,
        "height": lambda: 2,
        "width": lambda: 2,
        "factor": lambda: 0.1,
        "height_factor": lambda: 0.1,
        "width_factor": lambda: 0.1,
        "x_factor": lambda: 0.1,
        "y_factor": lambda: 0.1,
        "scale": lambda: 1.0,
        "value_range": lambda: (0, 255),
        "num_bins": lambda: 2,
        "num_tokens": lambda: 2,
        "max_tokens": lambda: 2,
        "max_number": lambda: 2,
        "num_classes": lambda: 2,
        "target_class_ids": lambda: [0],
        "thresholds": lambda: 0.5,
        "recall": lambda: 0.5,
        "precision": lambda: 0.5,
        "specificity": lambda: 0.5,
        "sensitivity": lambda: 0.5,
        "k": lambda: 1,
        "learning_rate": lambda: 0.01,
        "initial_learning_rate": lambda: 0.1,
        "decay_steps": lambda: 10,
        "decay_rate": lambda: 0.9,
        "first_decay_steps": lambda: 10,
        "boundaries": lambda: [1],
        "values": lambda: [0.1, 0.01],
        "inner_optimizer": lambda: keras.optimizers.SGD(),
        "optimizer": lambda: keras.optimizers.SGD(),
        "name": lambda: "float32",
        "mode": lambda: "int8",
        "source_name": lambda: "float32",
        "l1": lambda: 0.01,
        "l2": lambda: 0.01,
        "value": lambda: 0.0,
        "shape": lambda: (2,),
        "vocabulary": lambda: ["a", "b"],
        "mean": lambda: 0.0,
        "variance": lambda: 1.0,
        "layers": lambda: [layers.Dense(2)],
        "transforms": lambda: [layers.Rescaling(1.0)],
        "activation": lambda: "relu",
        "output_size": lambda: 2,
        "axes": lambda: 1,
        "stddev": lambda: 0.1,
    }


# Extra keyword arguments that some classes need to construct at all (recorded defaults
# never include the arguments passed here).
# Values are made anew for each attempt; "derived" config keys follow from what was passed.
OVERRIDES = {
    "InputLayer": lambda keras: [{"shape": (2,)}],
    "Bidirectional": lambda keras: [{"layer": keras.layers.LSTM(2)}],
    "CategoryEncoding": lambda keras: [{"num_tokens": 2}],
    "Discretization": lambda keras: [{"num_bins": 2}],
    "RandomPosterization": lambda keras: [{"factor": 2}],
    "QuantizedFloat8DTypePolicy": lambda keras: [{"mode": "float8"}],
    "Int4DTypePolicy": lambda keras: [{"mode": "int4"}, {"mode": "int4/128"}],
    "GPTQDTypePolicy": lambda keras: [{"mode": "gptq/4/128"}],
    "AWQDTypePolicy": lambda keras: [{"mode": "awq/4/128"}],
}
DERIVED = {"InputLayer": {"batch_shape"}}


def _jsonable(value):
    """The JSON value of `value`, or raises if it has none."""
    return json.loads(json.dumps(value, sort_keys=True, allow_nan=False))


def _is_unknown_arg_error(exc: BaseException, arg: str) -> bool:
    text = str(exc).lower()
    return any(word in text for word in UNKNOWN_ARG_WORDS) and arg.lower() in text


def _names_alternative(exc: BaseException, arg: str, props, config) -> bool:
    """Whether the error of a config without `arg` asks for another argument instead
    ("either `a` or `b`", or InputLayer's "You must pass a `shape`" once `batch_shape` is
    gone): then `arg` is not required on its own."""
    text = str(exc)
    others = [p for p in props if p != arg]
    if any(f"`{p}`" in text and p not in config for p in others):
        return True
    if " or " not in text and "either" not in text.lower():
        return False
    return any(p in text for p in others)


class _Timeout(Exception):
    pass


def child_main(out: str) -> None:
    import copy
    import inspect
    import logging
    import signal
    import types
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    import keras
    from keras.src import api_export
    from keras.src.saving import serialization_lib

    def on_alarm(signum, frame):
        raise _Timeout()

    signal.signal(signal.SIGALRM, on_alarm)

    def resolve(module: str, class_name: str):
        """The object this release's deserializer finds for (module, class_name)."""
        full = {"module": module, "class_name": class_name, "config": {}}
        full["registered_name"] = None
        try:
            return serialization_lib._retrieve_class_or_fn(
                class_name, None, module, "class", full, custom_objects={}
            )
        except Exception:
            return None

    # -- family bases
    def attr(path: str):
        obj = keras
        for part in path.split(".")[1:]:
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj

    layer_base = attr("keras.layers.Layer")
    model_base = attr("keras.Model")
    try:
        from keras.src.optimizers.base_optimizer import BaseOptimizer as optimizer_base
    except ImportError:
        optimizer_base = attr("keras.optimizers.Optimizer")
    try:
        from keras.src.ops.operation import Operation as operation_base
    except ImportError:
        operation_base = None
    families = [
        ("model", model_base),
        ("layer", layer_base),
        ("initializer", attr("keras.initializers.Initializer")),
        ("regularizer", attr("keras.regularizers.Regularizer")),
        ("constraint", attr("keras.constraints.Constraint")),
        ("loss", attr("keras.losses.Loss")),
        ("metric", attr("keras.metrics.Metric")),
        ("optimizer", optimizer_base),
        ("learning_rate_schedule", attr("keras.optimizers.schedules.LearningRateSchedule")),
        ("dtype_policy", attr("keras.mixed_precision.DTypePolicy")),
    ]
    families = [(kind, base) for kind, base in families if isinstance(base, type)]

    def kind_of(cls) -> str | None:
        for kind, base in families:
            if issubclass(cls, base):
                return kind
        if cls.__module__.startswith("keras.src.dtype_policies"):
            return "dtype_policy"
        if callable(getattr(cls, "from_config", None)) or callable(
            getattr(cls, "get_config", None)
        ):
            return "other"
        return None

    # -- every public module, by the path a config would name it with
    public: dict[str, types.ModuleType] = {}

    def walk(path: str, module) -> None:
        if path in public or not isinstance(module, types.ModuleType):
            return
        public[path] = module
        for name, value in sorted(vars(module).items()):
            if isinstance(value, types.ModuleType) and not name.startswith("_"):
                # keras.api (3.3-3.9) is where those releases keep the generated API that
                # keras.* re-exports; resolvable, but no release writes it: left out
                # (3.3-3.9 name their public modules keras.api.*: the path is what counts)
                if value.__name__.startswith(("keras.src", "keras._tf_keras")):
                    continue
                if f"{path}.{name}" == "keras.api":
                    continue
                if value.__name__.startswith("keras"):
                    walk(f"{path}.{name}", value)

    walk("keras", keras)

    # -- candidate (module, class_name) pairs: registry names, public attributes, internals
    registry = api_export.REGISTERED_NAMES_TO_OBJS
    candidates: set[tuple[str, str]] = set()
    for name, obj in registry.items():
        if isinstance(obj, type) and not name.startswith("keras._"):
            candidates.add(tuple(name.rsplit(".", 1)))
    for path, module in public.items():
        for name, value in vars(module).items():
            if isinstance(value, type) and not name.startswith("_"):
                candidates.add((path, name))
    classes = {}
    for module, name in candidates:
        obj = resolve(module, name)
        if isinstance(obj, type) and kind_of(obj):
            classes.setdefault(obj, set()).add(f"{module}.{name}")
    # classes that are not exported but that configs name by their module (Functional...):
    # those of the families above defined in the keras.src modules the release imports
    for module_name, module in sorted(sys.modules.items()):
        if not module_name.startswith("keras.src.") or not isinstance(module, types.ModuleType):
            continue
        for name, value in sorted(vars(module).items()):
            if (
                isinstance(value, type)
                and value not in classes
                and value.__module__ == module_name
                and kind_of(value) not in (None, "other")
                and resolve(module_name, name) is value
            ):
                classes[value] = set()
    for cls in list(classes):
        internal = (cls.__module__, cls.__name__)
        if resolve(*internal) is cls:
            classes[cls].add(".".join(internal))

    def canonical(cls) -> str:
        registered = api_export.REGISTERED_OBJS_TO_NAMES.get(cls)
        if registered and registered in classes[cls]:
            return registered
        public_names = [n for n in classes[cls] if not n.startswith("keras.src.")]
        return min(public_names or classes[cls], key=lambda n: (len(n), n))

    keys = {cls: canonical(cls) for cls in classes}
    names = {name: keys[cls] for cls, all_names in classes.items() for name in all_names}

    # -- builtin functions that configs may name
    builtin_modules = {f"keras.{m}" for m in serialization_lib.BUILTIN_MODULES}
    functions = set()
    helpers = {"get", "serialize", "deserialize"}
    for name, obj in registry.items():
        module, short = name.rsplit(".", 1)
        if module in builtin_modules and inspect.isfunction(obj) and short not in helpers:
            functions.add(name)
    for path in builtin_modules & public.keys():
        for short, value in vars(public[path]).items():
            if inspect.isfunction(value) and short not in helpers and not short.startswith("_"):
                functions.add(f"{path}.{short}")

    samples = _samples(keras)

    def legacy_accepted(factory, candidates_) -> dict:
        accepted = {}
        for arg, value in candidates_.items():
            try:
                factory(**{arg: value})
            except Exception as exc:
                if _is_unknown_arg_error(exc, arg):
                    continue
            accepted[arg] = value
        return accepted

    legacy = {}
    if layer_base is not None:
        legacy[layer_base] = legacy_accepted(lambda **kw: keras.layers.Dense(2, **kw), LAYER_LEGACY)
    if optimizer_base is not None:
        legacy[optimizer_base] = legacy_accepted(
            lambda **kw: keras.optimizers.SGD(**kw), OPTIMIZER_LEGACY
        )
    stop_at = {base for base in (layer_base, optimizer_base, operation_base) if base}

    def signature_walk(cls):
        """Named arguments of the __init__ chain, while each passes **kwargs on."""
        props: dict[str, inspect.Parameter | None] = {}
        required: list[str] = []
        first = True
        for klass in cls.__mro__:
            if klass is object:
                break
            if "__init__" not in vars(klass):
                continue
            try:
                params = list(inspect.signature(klass.__init__).parameters.values())[1:]
            except (TypeError, ValueError):
                break
            named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            for p in params:
                if p.kind not in named or p.name in props:
                    continue
                if first:
                    props[p.name] = p
                    if p.default is inspect.Parameter.empty:
                        required.append(p.name)
                elif p.default is not inspect.Parameter.empty:
                    props[p.name] = p  # a base's argument the subclass passes on
            first = False
            if klass in stop_at:
                for arg in legacy.get(klass, {}):
                    props.setdefault(arg, None)
                break
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
                break
        return props, required

    def timed(fn, seconds=20):
        signal.alarm(seconds)
        try:
            return fn()
        finally:
            signal.alarm(0)

    def construct(cls):
        """Two instances with required arguments from the samples, and the kwargs used."""
        props, required = signature_walk(cls)
        attempts = []
        if all(r in samples for r in required):
            attempts.append(lambda: {r: samples[r]() for r in required})
        for i in range(len(OVERRIDES[cls.__name__](keras)) if cls.__name__ in OVERRIDES else 0):

            def make(i=i):
                base = {r: samples[r]() for r in required if r in samples}
                return {**base, **OVERRIDES[cls.__name__](keras)[i]}

            attempts.append(make)
        last_error = None
        for make_kwargs in attempts:
            try:
                kwargs = make_kwargs()
                first = timed(lambda kw=kwargs: cls(**kw))
                second = timed(lambda mk=make_kwargs: cls(**mk()))
                return first, second, kwargs
            except (Exception, _Timeout) as exc:
                last_error = exc
        if os.environ.get("SCHEMAGEN_DEBUG"):
            print(f"no default {cls.__name__}: {last_error!r}"[:300], file=sys.stderr)
        return None, None, last_error

    def copy_config(config):
        try:
            return copy.deepcopy(config)
        except Exception:
            return dict(config)

    defs = {}
    without_default = []
    default_instances = 0
    for cls in sorted(classes, key=lambda c: keys[c]):
        key = keys[cls]
        kind = kind_of(cls)
        props, required = signature_walk(cls)
        if kind == "model":
            properties = {p: {} for p in props}
            defs[key] = {
                "x-kind": kind,
                "type": "object",
                "properties": dict(sorted(properties.items())),
                "additionalProperties": True,
            }
            continue
        first, second, kwargs = construct(cls)
        accepts_unknown = False
        defaults = {}
        if first is None:
            without_default.append(key)
            accepted = set(props)
        else:
            try:
                config = timed(first.get_config)
                other = timed(second.get_config)
                if not isinstance(config, dict):
                    raise TypeError("get_config did not return a dict")
            except (Exception, _Timeout):
                config, other = None, None
            if config is None:
                without_default.append(key)
                accepted = set(props)
            else:
                default_instances += 1
                for k, v in config.items():
                    if k in kwargs or k not in other or k in DERIVED.get(cls.__name__, ()):
                        continue
                    try:
                        a, b = _jsonable(v), _jsonable(other[k])
                    except (TypeError, ValueError):
                        continue
                    if a == b:
                        defaults[k] = a
                try:
                    timed(lambda cls=cls, config=config: cls.from_config(copy_config(config)))
                    roundtrip = True
                except (Exception, _Timeout):
                    roundtrip = False

                def probe(
                    extra=None,
                    drop=None,
                    config=config,
                    roundtrip=roundtrip,
                    cls=cls,
                    kwargs=kwargs,
                ):
                    """The error from loading the config changed so, or None."""
                    if roundtrip:
                        cfg = copy_config(config)
                        fn = cls.from_config
                    else:
                        cfg = dict(kwargs)
                        fn = cls
                    if drop is not None:
                        cfg.pop(drop, None)
                    cfg.update(extra or {})
                    try:
                        timed(lambda fn=fn, cfg=cfg, cls=cls: fn(**cfg) if fn is cls else fn(cfg))
                    except (Exception, _Timeout) as exc:
                        return exc
                    return None

                accepts_unknown = probe({PROBE_ARG: 1}) is None
                accepted = set(config)
                for arg, param in props.items():
                    if arg in accepted:
                        continue
                    if accepts_unknown:
                        accepted.add(arg)
                        continue
                    if param is not None and param.default is not inspect.Parameter.empty:
                        value = param.default
                    elif param is None and arg in LAYER_LEGACY:
                        value = LAYER_LEGACY[arg]
                    elif param is None and arg in OPTIMIZER_LEGACY:
                        value = OPTIMIZER_LEGACY[arg]
                    elif arg in samples:
                        value = samples[arg]()
                    else:
                        accepted.add(arg)
                        continue
                    error = probe({arg: value})
                    if error is None or not _is_unknown_arg_error(error, arg):
                        accepted.add(arg)
                # required: what the release cannot load without
                if roundtrip:
                    sig_required = required
                    required = [r for r in sig_required if r not in config]
                    for k in config:
                        error = probe(drop=k)
                        if error is not None and not _names_alternative(error, k, props, config):
                            required.append(k)
                    if os.environ.get("SCHEMAGEN_DEBUG") and set(required) != set(sig_required):
                        print(
                            f"required {key}: sig {sorted(sig_required)} probe {required}",
                            file=sys.stderr,
                        )
        required = set(required)
        properties = {}
        for arg in sorted(accepted | required):
            properties[arg] = {"default": defaults[arg]} if arg in defaults else {}
        entry = {"x-kind": kind, "type": "object", "properties": properties}
        if required:
            entry["required"] = sorted(required)
        entry["additionalProperties"] = accepts_unknown
        defs[key] = entry

    data = {
        "keras_version": keras.__version__,
        "names": dict(sorted(names.items())),
        "functions": sorted(functions),
        "coverage": {
            "classes": len(defs),
            "default_instances": default_instances,
            "without_default_instance": sorted(without_default),
        },
        "defs": defs,
    }
    Path(out).write_text(json.dumps(data, sort_keys=True, indent=1))


if __name__ == "__main__":
    sys.exit(main())
