"""What a tf.keras 2.15 (Keras 2) model file holds that Keras 3 releases do not take.

Compares the Keras 2 catalog `schemas/keras2/2.15.json` (`dev/generate_keras2_catalog.py`)
with kerasrepair's Keras 3 schemas (`kerasrepair.schema`) and prints markdown, per release:

  (a) tf.keras classes with no Keras 3 class of the same `class_name`;
  (b) the constructor arguments Keras 2 writes that the release does not accept, with the
      Keras 2 default;
  (c) modules that differ: the `module.class_name` Keras 2 writes in a `.keras` file that
      the release does not resolve, and the class it has under that `class_name`;
  (d) function names of compile configs (and activations) that the release's schema does
      not know: `has_function` holds only exported `keras.<module>.<name>` functions;
  (e) arguments both accept whose Keras 2 default differs from the release's;
  (f) with --probe: initializers, regularizers and constraints as tf.keras writes them
      that the release's own `get()` does not build.

    .venv/bin/python dev/keras2_differences.py                     # 3.0 3.3 3.6 3.10 3.15
    .venv/bin/python dev/keras2_differences.py --releases 3.15
    .venv/bin/python dev/keras2_differences.py --probe             # + ask the real releases

`--probe` also asks each release itself, in its environment `.venvs/keras-<version>/`
where one exists: its `losses.get` / `metrics.get` / `activations.get` of the names of (d)
(Keras 3 resolves aliases such as "mse" through tables the schemas do not hold), its
`from_config` of each argument of (b) at the Keras 2 default, and (f). Standard
library and kerasrepair only; no TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from kerasrepair import schema

REPO = Path(__file__).resolve().parent.parent
CATALOG = REPO / "schemas" / "keras2" / "2.15.json"
RELEASES = ("3.0", "3.3", "3.6", "3.10", "3.15")
# Keras 3's `serialization_lib.BUILTIN_MODULES`: where a `{"module": "builtins", "class_name":
# "function"}` entry (a function object in a tf.keras `.keras` compile config) is looked up.
BUILTIN_MODULES = (
    "activations",
    "constraints",
    "initializers",
    "losses",
    "metrics",
    "optimizers",
    "regularizers",
)
# Strings Keras 3's compile (and its `.h5` loader) keeps as they are and resolves from the
# model's outputs and loss, as tf.keras does.
SPECIAL_METRICS = ("accuracy", "acc", "crossentropy", "ce")


def load_catalog(path: Path = CATALOG) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- classes


def keras3_class(release: schema.ReleaseSchema, entry: dict) -> tuple[str | None, str]:
    """The Keras 3 class (`$defs` key) for a Keras 2 class and how it was found:
    "same" (its `module.class_name` resolves), "moved" (a class of that class_name and
    kind elsewhere), or "missing"."""
    key = release.resolve(entry["module"], entry["class_name"])
    if key is not None:
        return key, "same"
    keys = {
        k
        for name, k in release.document["names"].items()
        if name.rpartition(".")[2] == entry["class_name"]
    }
    kind = {k for k in keys if release.definition(k).get("x-kind") == entry["kind"]}
    keys = kind or keys
    if len(keys) == 1:
        return keys.pop(), "moved"
    if keys:  # several: prefer the one of the same public module family
        family = entry["module"].split(".")[1] if "." in entry["module"] else ""
        same = sorted(k for k in keys if k.split(".")[1:2] == [family])
        return (same or sorted(keys))[0], "moved"
    return None, "missing"


def public_names(release: schema.ReleaseSchema, key: str) -> list[str]:
    """The names a release resolves for the class `key`, public ones first."""
    names = [n for n, k in release.document["names"].items() if k == key]
    return sorted(names, key=lambda n: (n.startswith("keras.src."), len(n), n))


def fmt(value) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return f"`{text}`" if len(text) <= 80 else f"`{text[:77]}...`"


def unaccepted_arguments(catalog: dict, release: schema.ReleaseSchema) -> list[dict]:
    """(b): each argument a Keras 2 class writes that the release's schema rejects."""
    rows = []
    for written, entry in sorted(catalog["classes"].items()):
        key, _ = keras3_class(release, entry)
        if key is None:
            continue
        definition = release.definition(key)
        if definition.get("additionalProperties", True) is not False:
            continue  # takes any key (models: structure)
        accepted = definition.get("properties", {})
        for argument in entry["config_keys"]:
            if argument in accepted:
                continue
            row = {"written": written, "key": key, "argument": argument}
            if argument in entry["defaults"]:
                row["default"] = entry["defaults"][argument]
                row["required"] = {a: v for a, v in entry["required"].items() if v is not None}
                row["shown"] = fmt(entry["defaults"][argument])
            elif argument in entry["required"]:
                row["shown"] = "(required)"
            else:
                row["shown"] = "(no fixed default)"
            rows.append(row)
    return rows


def class_sections(catalog: dict, release: schema.ReleaseSchema, probed: dict | None) -> list[str]:
    missing, modules = [], []
    for written, entry in sorted(catalog["classes"].items()):
        key, how = keras3_class(release, entry)
        if key is None:
            missing.append(f"| `{written}` | {entry['kind']} | {_alternative(entry)} |")
        elif how == "moved":
            names = ", ".join(f"`{n}`" for n in public_names(release, key)[:3])
            modules.append(f"| `{written}` | `{key}` | {names} |")
    unaccepted = []
    checked = (probed or {}).get("arguments", {})
    for row in unaccepted_arguments(catalog, release):
        real = "not probed" if probed is None else "n/a"
        real = checked.get(f"{row['key']}|{row['argument']}", real)
        unaccepted.append(f"| `{row['written']}` | `{row['argument']}` | {row['shown']} | {real} |")
    return [
        f"### (a) tf.keras classes with no Keras {release.name} class of that class_name",
        "",
        *_table(["Keras 2 writes", "kind", "note"], missing),
        f"### (b) Arguments tf.keras writes that Keras {release.name}'s schema rejects",
        "",
        "Only classes whose Keras 3 schema rejects unknown keys; the Keras 2 default is the",
        "value a porting rule may drop when the config holds exactly it. The last column is",
        "the release's own `from_config` of the required arguments plus this one at that",
        "default (`accepts`: the schema misses an argument the release takes).",
        "",
        *_table(["Keras 2 class", "argument", "Keras 2 default", "from_config"], unaccepted),
        f"### (c) Modules tf.keras writes that Keras {release.name} does not resolve",
        "",
        "A `.keras` file names `module.class_name`; Keras 3 finds a class of that",
        "class_name (and kind) elsewhere.",
        "",
        *_table(["Keras 2 writes", f"Keras {release.name} class", "its names"], modules),
    ]


def default_section(catalog: dict, release: schema.ReleaseSchema) -> list[str]:
    """Arguments both accept whose Keras 2 default is not the release's own (`dtype` and
    `name` aside: Keras 3 takes a dtype string, and a name is a label; nested objects
    compared by class and common config)."""
    rows = []
    for written, entry in sorted(catalog["classes"].items()):
        key, _ = keras3_class(release, entry)
        if key is None:
            continue
        accepted = release.definition(key).get("properties", {})
        for argument, value in sorted(entry["defaults"].items()):
            theirs = accepted.get(argument, {})
            if argument in ("dtype", "name") or "default" not in theirs:
                continue
            if not same_value(value, theirs["default"]):
                rows.append(
                    f"| `{written}` | `{argument}` | {fmt(value)} | {fmt(theirs['default'])} |"
                )
    return [
        f"### (e) Arguments both accept, with another default in Keras {release.name}",
        "",
        "tf.keras writes every default into the config, so these only matter where Keras 3",
        'rejects the value or reads it differently (e.g. a loss\'s `reduction: "auto"`).',
        "",
        *_table(["Keras 2 class", "argument", "Keras 2 default", f"Keras {release.name}"], rows),
    ]


def same_value(ours, theirs) -> bool:
    """JSON values alike: floats to float32 precision, objects by module, class_name and
    the config keys both have."""
    if isinstance(ours, float) and isinstance(theirs, (int, float)) and theirs is not True:
        return math.isclose(ours, theirs, rel_tol=1e-6)
    if isinstance(ours, dict) and isinstance(theirs, dict) and "class_name" in ours:
        if (ours.get("module"), ours["class_name"]) != (
            theirs.get("module"),
            theirs.get("class_name"),
        ):
            return False
        a, b = ours.get("config") or {}, theirs.get("config") or {}
        return all(same_value(a[key], b[key]) for key in a.keys() & b.keys())
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(map(same_value, ours, theirs))
    return ours == theirs and type(ours) is type(theirs)


def _alternative(entry: dict) -> str:
    """What is known of a Keras 2 class that a Keras 3 release lacks."""
    notes = {
        "SyncBatchNormalization": "Keras 3: `BatchNormalization(synchronized=True)`",
        "Policy": "Keras 3: `keras.DTypePolicy` (same `name` config)",
        "ThresholdedReLU": "Keras 3: `ReLU(threshold=...)`",
    }
    return notes.get(entry["class_name"], "")


def _table(header: list[str], rows: list[str]) -> list[str]:
    if not rows:
        return ["None.", ""]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *rows,
        f"\n{len(rows)} row(s).",
        "",
    ]


# --------------------------------------------------------------------------- functions


def function_rows(catalog: dict) -> list[dict]:
    """Every name (kind, given) with what Keras 3 has to resolve for it: the string as
    given (.keras compile_config, .h5 loss), the function's own name (a function object:
    `builtins` in .keras, a bare name in .h5), and a `.h5` MeanMetricWrapper's `fn`."""
    rows = []
    for kind, names in sorted(catalog["functions"].items()):
        for given, entry in sorted(names.items()):
            written_h5 = entry["h5"].get("string")
            fn = written_h5["config"].get("fn") if isinstance(written_h5, dict) else None
            by_function = entry["keras"].get("function")
            if isinstance(by_function, dict):
                by_function = by_function["config"]
            rows.append(
                {
                    "kind": kind,
                    "given": given,
                    "keras2": entry.get("function") or entry.get("class"),
                    "written": entry["keras"]["string"],
                    "function": by_function,
                    "h5_fn": fn,
                    "resolved_by_tf_keras": entry.get("resolved_by_get", True),
                }
            )
    return rows


def known_by_schema(release: schema.ReleaseSchema, kind: str, name: str) -> str | None:
    """How the release's schema knows `name` of a compile config (kind losses/metrics) or
    a layer's `activation`; None when it does not."""
    module = f"keras.{kind}"
    if release.has_function(f"{module}.{name}"):
        return "function"
    if kind != "activations" and release.resolve(module, name):
        return "class"
    if kind == "metrics" and name in SPECIAL_METRICS:
        return "special"
    return None


def known_builtin(release: schema.ReleaseSchema, name: str) -> bool:
    """Whether a `{"module": "builtins", "config": name}` function resolves."""
    return any(release.has_function(f"keras.{m}.{name}") for m in BUILTIN_MODULES)


def function_section(
    catalog: dict, release: schema.ReleaseSchema, probed: dict | None
) -> list[str]:
    rows = []
    for row in function_rows(catalog):
        kind, given = row["kind"], row["given"]
        as_string = known_by_schema(release, kind, row["written"])
        as_function = row["function"] is None or known_builtin(release, row["function"])
        h5_fn = row["h5_fn"] is None or release.has_function(f"keras.metrics.{row['h5_fn']}")
        got = None if probed is None else probed["found"].get(kind, {}).get(row["written"])
        if as_string and as_function and h5_fn and got is not False:
            continue
        problems = []
        if not as_string:
            problems.append(f"string `{row['written']}`")
        if not as_function:
            problems.append(f"function `{row['function']}`")
        if not h5_fn:
            problems.append(f".h5 fn `{row['h5_fn']}`")
        real = "not probed" if probed is None else "n/a"
        if got is not None:
            real = "resolves" if got else "**fails**"
        note = "" if row["resolved_by_tf_keras"] is True else " (tf.keras's get() fails too)"
        rows.append(
            f"| {kind} | `{given}` | `{row['keras2']}` | {', '.join(problems) or '-'}{note} "
            f"| {real} |"
        )
    return [
        f"### (d) Function names Keras {release.name}'s schema does not know",
        "",
        "Strings are written as given in a `.keras` compile_config and an `.h5` loss; a",
        "function object as `builtins` + its name (`.keras`) or its name (`.h5`); an `.h5`",
        "metric as `MeanMetricWrapper` with `fn`. The schema knows exported functions and",
        "classes only; the last column is the release's own `get()` of the string.",
        "",
        *_table(["kind", "given", "tf.keras resolves to", "unknown to schema", "get()"], rows),
    ]


PROBE = """
import importlib, json, sys, warnings
warnings.simplefilter("ignore")
import logging
logging.disable(logging.WARNING)
import keras
asked = json.load(sys.stdin)
found = {}
for kind, given in asked["names"].items():
    get = {"losses": keras.losses.get, "metrics": keras.metrics.get,
           "activations": keras.activations.get}[kind]
    found[kind] = {}
    for name in given:
        try:
            got = get(name)
            found[kind][name] = got is not None and not isinstance(got, str)
        except Exception:
            found[kind][name] = False

def cls_of(key):
    module, _, name = key.rpartition(".")
    obj = keras
    try:
        for part in key.split(".")[1:]:
            obj = getattr(obj, part)
        return obj
    except AttributeError:
        return getattr(importlib.import_module(module), name)

def first(exc):
    text = str(exc).strip().splitlines()
    return type(exc).__name__ + (": " + text[0][:70] if text else "")

arguments = {}
for key, required, argument, value in asked["arguments"]:
    label = key + "|" + argument
    try:
        cls = cls_of(key)
        cls.from_config(dict(required))
    except Exception as exc:
        arguments[label] = "n/a (" + first(exc) + ")"
        continue
    try:
        cls.from_config({**required, argument: value})
        arguments[label] = "**accepts**"
    except Exception as exc:
        arguments[label] = "rejects"
nested = {}
for written, kind, obj in asked["nested"]:
    get = getattr(keras, kind + "s").get
    try:
        get(obj)
        nested[written] = "resolves"
    except Exception as exc:
        nested[written] = "**fails** (" + first(exc) + ")"
json.dump(
    {"keras": keras.__version__, "found": found, "arguments": arguments, "nested": nested},
    sys.stdout,
)
"""


# Objects nested in a layer's config, which Keras 3 builds through `keras.<kind>s.get()`
# (its table of built-ins, not always the exported names the schema records).
NESTED_KINDS = ("initializer", "regularizer", "constraint")


def nested_object(entry: dict) -> dict:
    """The object tf.keras writes for a default instance of a class (`.keras` form)."""
    config = {**entry["defaults"], **{a: v for a, v in entry["required"].items() if v is not None}}
    return {
        "module": entry["module"],
        "class_name": entry["class_name"],
        "config": config,
        "registered_name": entry["registered_name"],
    }


def nested_section(release: schema.ReleaseSchema, probed: dict | None) -> list[str]:
    if probed is None:
        return []
    rows = [
        f"| `{written}` | {status} |"
        for written, status in sorted(probed["nested"].items())
        if status != "resolves"
    ]
    return [
        f"### (f) Nested objects Keras {release.name}'s `get()` does not build (probed)",
        "",
        "Initializers, regularizers and constraints as tf.keras writes them inside a layer",
        "config, given to the release's `keras.<kind>s.get()`.",
        "",
        *_table(["Keras 2 writes", f"Keras {release.name}"], rows),
    ]


def probe(release: schema.ReleaseSchema, catalog: dict) -> dict | None:
    """The release's own `get()` of every string of (d) and `from_config` of every
    defaulted argument of (b), in its venv; None without one."""
    python = REPO / ".venvs" / f"keras-{release.keras_version}" / "bin" / "python"
    if not python.exists():
        return None
    names: dict[str, list[str]] = {}
    for row in function_rows(catalog):
        names.setdefault(row["kind"], []).append(row["written"])
    arguments = [
        [row["key"], row["required"], row["argument"], row["default"]]
        for row in unaccepted_arguments(catalog, release)
        if "default" in row
    ]
    nested = [
        [written, entry["kind"], nested_object(entry)]
        for written, entry in sorted(catalog["classes"].items())
        if entry["kind"] in NESTED_KINDS and entry["defaults_from"] == "config"
    ]
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [str(python), "-c", PROBE],
        input=json.dumps({"names": names, "arguments": arguments, "nested": nested}),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    data = json.loads(result.stdout)
    if data["keras"] != release.keras_version:
        raise RuntimeError(f"{python} has keras {data['keras']}, not {release.keras_version}")
    # Keras 3's compile keeps these strings and resolves them from the model itself
    data["found"].setdefault("metrics", {}).update(dict.fromkeys(SPECIAL_METRICS, True))
    return data


# --------------------------------------------------------------------------- main


def report(catalog: dict, releases: list[str], with_probe: bool) -> str:
    lines = [
        "# tf.keras 2.15 configs in Keras 3",
        "",
        f"Catalog `schemas/keras2/2.15.json` (tensorflow {catalog['tensorflow']}, keras "
        f"{catalog['keras']}): {len(catalog['classes'])} classes, "
        + ", ".join(f"{len(v)} {k}" for k, v in sorted(catalog["functions"].items()))
        + ".",
        "",
    ]
    for name in releases:
        release = schema.release_for(name)
        probed = probe(release, catalog) if with_probe else None
        lines += [f"## Keras {release.name} ({release.keras_version})", ""]
        lines += class_sections(catalog, release, probed)
        lines += function_section(catalog, release, probed)
        lines += default_section(catalog, release)
        lines += nested_section(release, probed)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", nargs="+", default=list(RELEASES))
    parser.add_argument("--catalog", type=Path, default=CATALOG)
    parser.add_argument("--probe", action="store_true", help="ask the real releases too")
    args = parser.parse_args(argv)
    sys.stdout.write(report(load_catalog(args.catalog), args.releases, args.probe))


if __name__ == "__main__":
    main()
