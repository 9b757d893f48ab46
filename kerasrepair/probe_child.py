"""Load one archive with the Keras of whatever interpreter runs this file.

    python probe_child.py --out result.json ARCHIVE [--reference REF.npz]
        [--write-reference OUT.npz] [--custom-objects MODULE] [--unsafe]

Run as a script, in a child process, by `kerasrepair verify` and by the tests'
`releases.probe` (any Keras 3 release, so: standard library, numpy and keras
only; never imported by kerasrepair itself). Writes one JSON object to
``--out``: keras, jax, python, status (ok | load_error | call_error | mismatch |
probe_error), stage, exception, message (first line), detail (root cause when
the first line is only a wrapper), max_abs_diff, variables (how many the loaded
model has), optimizer_variables (how many its optimizer has, or null: the
archive's optimizer state is restored only when this equals the number it
stores), warnings (first lines of the warnings raised while loading).
Everything raised is caught and recorded; a child that dies leaves no file,
which the parent reports as ``crashed``. ``--write-reference`` predicts on
generated inputs and saves them with the outputs, to compare another archive.
"""

import argparse
import importlib
import json
import os
import platform
import re
import sys
import warnings

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

ANSI = re.compile(r"\x1b\[[0-9;]*m")
RTOL = ATOL = 1e-6


def lines(text):
    return [line.strip() for line in ANSI.sub("", str(text)).splitlines() if line.strip()]


def first_line(exc):
    found = lines(exc)
    return found[0] if found else repr(exc)


def root_cause(exc):
    """The informative line when the first line of a Keras error is only a wrapper."""
    found = lines(exc)
    if not found:
        return None
    if found[0].startswith("Exception encountered when calling") or found[0].endswith(":"):
        return found[1] if len(found) > 1 else None
    nested = [line for line in found[1:] if line.startswith("Exception encountered:")]
    return nested[-1] if nested else None


def load_reference(path):
    """(x, y) from an .npz: x | x0, x1... | x_<key>, and the same for y."""
    import numpy as np

    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}

    def collect(prefix):
        if prefix in arrays:
            return arrays[prefix]
        keyed = {k[len(prefix) + 1 :]: v for k, v in arrays.items() if k.startswith(prefix + "_")}
        if keyed:
            return keyed
        numbered = sorted(
            (int(k[len(prefix) :]), v) for k, v in arrays.items() if k[len(prefix) :].isdigit()
        )
        if not numbered:
            raise KeyError(f"no '{prefix}' arrays in {path}: {sorted(arrays)}")
        return [v for _, v in numbered]

    return collect("x"), collect("y")


def compare(expected, actual):
    """(max_abs_diff, equal) with the assert_allclose(rtol=1e-6, atol=1e-6) rule."""
    import numpy as np

    if isinstance(expected, dict):
        if not isinstance(actual, dict) or sorted(actual) != sorted(expected):
            return None, False
        pairs = [(expected[k], actual[k]) for k in sorted(expected)]
    elif isinstance(expected, list):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            return None, False
        pairs = list(zip(expected, actual, strict=True))
    else:
        if isinstance(actual, (list, tuple)) and len(actual) == 1:
            actual = actual[0]
        pairs = [(expected, actual)]
    worst, equal = 0.0, True
    for want, got in pairs:
        want, got = np.asarray(want), np.asarray(got)
        if want.shape != got.shape:
            return None, False
        if want.size:
            diff = np.abs(want.astype("float64") - got.astype("float64"))
            finite = diff[np.isfinite(diff)]
            worst = max(worst, float(finite.max()) if finite.size else 0.0)
        equal = equal and bool(np.allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True))
    return worst, equal


def generate_inputs(model, batch=3, seed=0):
    """Inputs of the model's input structure: None dimensions become 4."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def make(tensor):
        shape = [batch] + [4 if d is None else d for d in tensor.shape[1:]]
        dtype = str(getattr(tensor, "dtype", "float32"))
        if dtype == "bool":
            return rng.random(shape) < 0.5
        if "int" in dtype:
            return rng.integers(0, 4, size=shape).astype(dtype)
        return rng.normal(size=shape).astype(dtype)

    structure = model.input
    if isinstance(structure, dict):
        return {key: make(tensor) for key, tensor in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [make(tensor) for tensor in structure]
    return make(structure)


def save_reference(path, x, y):
    """x | x0, x1... | x_<key>, and the same for y, as `load_reference` reads them."""
    import numpy as np

    arrays = {}
    for prefix, value in (("x", x), ("y", y)):
        if isinstance(value, dict):
            arrays.update({f"{prefix}_{key}": np.asarray(v) for key, v in value.items()})
        elif isinstance(value, (list, tuple)):
            arrays.update({f"{prefix}{i}": np.asarray(v) for i, v in enumerate(value)})
        else:
            arrays[prefix] = np.asarray(value)
    np.savez(path, **arrays)


def run(args):
    record = {
        "keras": None,
        "jax": None,
        "python": platform.python_version(),
        "status": None,
        "stage": "import",
        "exception": None,
        "message": None,
        "max_abs_diff": None,
        "variables": None,
        "optimizer_variables": None,
        "warnings": [],
    }
    try:
        x = y = None
        if args.reference:
            record["stage"] = "reference"
            x, y = load_reference(args.reference)
        record["stage"] = "import"
        import keras

        record["keras"] = keras.__version__
        try:
            import jax

            record["jax"] = jax.__version__
        except ImportError:
            pass
        if args.custom_objects:
            importlib.import_module(args.custom_objects)
        # Layers left unbuilt get fresh random weights: make those reproducible.
        keras.utils.set_random_seed(1234)
        record["stage"] = "load"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model = keras.saving.load_model(args.archive, safe_mode=not args.unsafe)
            finally:
                seen = []
                for w in caught:
                    line = f"{w.category.__name__}: {first_line(w.message)}"
                    if line not in seen:
                        seen.append(line)
                record["warnings"] = seen[:10]
        record["variables"] = len(model.weights)
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            record["optimizer_variables"] = len(optimizer.variables)
        if args.write_reference:
            record["stage"] = "predict"
            x = generate_inputs(model)
            save_reference(args.write_reference, x, model.predict(x, verbose=0))
        if args.reference:
            record["stage"] = "predict"
            predicted = model.predict(x, verbose=0)
            record["max_abs_diff"], equal = compare(y, predicted)
            if not equal:
                record["status"] = "mismatch"
                record["message"] = (
                    f"predictions differ from the reference (rtol={RTOL}, atol={ATOL})"
                    if record["max_abs_diff"] is not None
                    else "predictions do not have the reference's structure or shapes"
                )
            else:
                record["status"] = "ok"
        else:
            record["status"] = "ok"
    except BaseException as exc:  # noqa: BLE001 - every failure is a result
        record["status"] = {
            "load": "load_error",
            "predict": "call_error",
        }.get(record["stage"], "probe_error")
        record["exception"] = type(exc).__name__
        record["message"] = first_line(exc)
        detail = root_cause(exc)
        if detail:
            record["detail"] = detail
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive")
    parser.add_argument("--out", required=True)
    parser.add_argument("--reference")
    parser.add_argument("--write-reference")
    parser.add_argument("--custom-objects")
    parser.add_argument("--unsafe", action="store_true", help="load with safe_mode=False")
    args = parser.parse_args()
    record = run(args)
    with open(args.out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(record, f, sort_keys=True, default=str)
    os.replace(args.out + ".tmp", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
