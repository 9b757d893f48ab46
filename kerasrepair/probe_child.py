"""Load one archive with the Keras of whatever interpreter runs this file.

    python probe_child.py --out result.json ARCHIVE [--reference REF.npz]
        [--compare-with OTHER.keras] [--write-reference OUT.npz]
        [--custom-objects MODULE] [--unsafe]

Run as a script, in a child process, by `kerasrepair verify` and by the tests'
`releases.probe` (any Keras 3 release, so: standard library, numpy and keras
only; never imported by kerasrepair itself). Writes one JSON object to
``--out``: keras, jax, python, status (ok | load_error | call_error | mismatch |
probe_error), stage, exception, message (first line), detail (root cause when
the first line is only a wrapper), max_abs_diff, variables (how many the loaded
model has), optimizer_variables (how many its optimizer has, or null: the
archive's optimizer state is restored only when this equals the number it
stores), optimizer_iterations (its iteration count), optimizer_digests (a
digest of each optimizer variable, in order: `optimizer_digests`; equal lists,
equal iteration counts and slots), warnings (first lines
of the warnings raised while loading), compared (with ``--compare-with``, else null; see below).
Everything raised is caught and recorded; a child that dies leaves no file,
which the parent reports as ``crashed``. ``--write-reference`` predicts on
generated inputs and saves them with the outputs, to compare another archive.

``--compare-with OTHER`` loads a second archive (the original, when ARCHIVE is
its repair) in this same process, after ARCHIVE, and predicts both on the same
inputs (the reference's, else inputs generated for ARCHIVE). ``compared`` then
holds OTHER's status (ok | load_error | call_error | probe_error: its own load
and predict), exception, message, detail, variables, ``max_abs_diff`` between
the two predictions, ``within_tolerance`` (the rule below) and ``identical``
(bit for bit, NaN equal to NaN). Without ``--reference``, OTHER's predictions
are ARCHIVE's reference: ARCHIVE's status and max_abs_diff are against them.
Only a comparison inside one process can demand ``identical``: XLA's CPU
results differ in the last bits between processors, and sometimes between runs.

Predictions match a reference when, element by element,
``|actual - expected| <= tol + tol * |expected|`` (numpy's allclose with
rtol = atol = tol), where ``tol = tolerance(expected.dtype)``: 1e-6 for float32
(and wider, and for integer and bool outputs), 8 units in the last place for
narrower floats (float16: 7.8e-3, bfloat16: 6.3e-2). float32's machine epsilon
is 1.19e-7, so for the outputs of order 1 of the fixture models 1e-6 is about
8 ulps: room for the reassociation of a few sums by another processor or XLA
build, and far below what a wiring or weight error shows (1e-3 and more). The
relative term keeps the same few-ulps margin for large outputs. This is the one
definition: the tests (``assert_matches_reference``) and the fixture scripts
judge by the ``status`` it gives.
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
# "Predicts what the reference says" (see the module docstring for why these bounds).
TOLERANCE = 1e-6  # float32 and wider: about 8 ulps of float32 for outputs of order 1
ULPS = 8  # narrower floats: 8 units in the last place of their own precision
NARROW_EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7}


# --tolerance T: a wider bound asked for (predictions of another framework:
# tf.keras's reference for a model converted from Keras 2)
WIDER = [0.0]


def tolerance(dtype):
    """rtol = atol for predictions of `dtype` (the reference's)."""
    return max(TOLERANCE, ULPS * NARROW_EPS.get(str(dtype), 0.0), WIDER[0])


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
    """(max_abs_diff, within_tolerance, identical) of two prediction structures;
    (None, False, False) when their structures or shapes differ."""
    import numpy as np

    if isinstance(expected, dict):
        if not isinstance(actual, dict) or sorted(actual) != sorted(expected):
            return None, False, False
        pairs = [(expected[k], actual[k]) for k in sorted(expected)]
    elif isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            return None, False, False
        pairs = list(zip(expected, actual, strict=True))
    else:
        if isinstance(actual, (list, tuple)) and len(actual) == 1:
            actual = actual[0]
        pairs = [(expected, actual)]
    worst, within, identical = 0.0, True, True
    for want, got in pairs:
        want, got = np.asarray(want), np.asarray(got)
        if want.shape != got.shape:
            return None, False, False
        if not want.size:
            continue
        diff = np.abs(want.astype("float64") - got.astype("float64"))
        finite = diff[np.isfinite(diff)]
        worst = max(worst, float(finite.max()) if finite.size else 0.0)
        tol = tolerance(want.dtype)
        within = within and bool(np.allclose(got, want, rtol=tol, atol=tol, equal_nan=True))
        same = want == got
        if want.dtype.kind in "fc" and got.dtype.kind in "fc":
            same = same | (np.isnan(want) & np.isnan(got))
        identical = identical and bool(np.all(same))
    return worst, within, identical


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


def digest(value):
    """16 hex digits of the sha256 of an array's dtype, shape and bytes."""
    import hashlib

    import numpy as np

    array = np.ascontiguousarray(value)
    hashed = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    hashed.update(array.tobytes())
    return hashed.hexdigest()[:16]


def optimizer_digests(keras, optimizer):
    """The digest of each of the optimizer's variables (iterations, learning rate,
    slots...), in its order: what the archive restored, comparable with the
    digests of the optimizer that was saved (fixtures/make_subclassed_models.py).
    None when a variable cannot be read as an array."""
    try:
        return [digest(keras.ops.convert_to_numpy(v)) for v in optimizer.variables]
    except Exception:  # noqa: BLE001 - a variable numpy cannot hold: no digests
        return None


def load(keras, path, unsafe, seen):
    """The model; the first lines of the warnings raised while loading it go to
    `seen`, also when loading raises."""
    # Layers left unbuilt get fresh random weights: make those reproducible.
    keras.utils.set_random_seed(1234)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return keras.saving.load_model(path, safe_mode=not unsafe)
        finally:
            for w in caught:
                line = f"{w.category.__name__}: {first_line(w.message)}"
                if line not in seen:
                    seen.append(line)
            del seen[10:]


def judge(record, expected, predicted, what):
    """Set record's max_abs_diff and status (ok | mismatch) against `expected`."""
    record["max_abs_diff"], within, _ = compare(expected, predicted)
    if within:
        record["status"] = "ok"
        return
    record["status"] = "mismatch"
    record["message"] = (
        f"predictions differ from {what} beyond the tolerance (rtol = atol = "
        f"{max(TOLERANCE, WIDER[0])} for float32)"
        if record["max_abs_diff"] is not None
        else f"predictions do not have the structure or shapes of {what}'s"
    )


def failure(record, exc):
    record["status"] = {
        "load": "load_error",
        "predict": "call_error",
    }.get(record["stage"], "probe_error")
    record["exception"] = type(exc).__name__
    record["message"] = first_line(exc)
    detail = root_cause(exc)
    if detail:
        record["detail"] = detail


def compare_other(keras, args, x, predicted):
    """Load `args.compare_with` here, predict on `x`; how it compares with `predicted`."""
    other = {
        "archive": args.compare_with,
        "status": None,
        "stage": "load",
        "exception": None,
        "message": None,
        "max_abs_diff": None,
        "within_tolerance": None,
        "identical": None,
        "variables": None,
        "warnings": [],
        "predictions": None,
    }
    try:
        model = load(keras, args.compare_with, args.unsafe, other["warnings"])
        other["variables"] = len(model.weights)
        other["stage"] = "predict"
        other["predictions"] = model.predict(x, verbose=0)
        diff, within, identical = compare(other["predictions"], predicted)
        other.update(max_abs_diff=diff, within_tolerance=within, identical=identical)
        other["status"] = "ok"
    except BaseException as exc:  # noqa: BLE001 - every failure is a result
        failure(other, exc)
    return other


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
        "optimizer_iterations": None,
        "optimizer_digests": None,
        "warnings": [],
        "compared": None,
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
        record["stage"] = "load"
        model = load(keras, args.archive, args.unsafe, record["warnings"])
        record["variables"] = len(model.weights)
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            record["optimizer_variables"] = len(optimizer.variables)
            iterations = getattr(optimizer, "iterations", None)
            if iterations is not None:
                record["optimizer_iterations"] = int(keras.ops.convert_to_numpy(iterations))
            record["optimizer_digests"] = optimizer_digests(keras, optimizer)
        if args.write_reference:
            record["stage"] = "predict"
            generated = generate_inputs(model)
            save_reference(args.write_reference, generated, model.predict(generated, verbose=0))
        record["status"] = "ok"
        if args.reference or args.compare_with:
            record["stage"] = "predict"
            if x is None:
                x = generate_inputs(model)
            predicted = model.predict(x, verbose=0)
            if args.reference:
                judge(record, y, predicted, "the reference")
            if args.compare_with:
                other = compare_other(keras, args, x, predicted)
                expected = other.pop("predictions")
                record["compared"] = other
                if not args.reference and other["status"] == "ok":
                    judge(record, expected, predicted, args.compare_with)
    except BaseException as exc:  # noqa: BLE001 - every failure is a result
        failure(record, exc)
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive")
    parser.add_argument("--out", required=True)
    parser.add_argument("--reference")
    parser.add_argument("--write-reference")
    parser.add_argument("--compare-with", help="another archive to predict with, here")
    parser.add_argument("--custom-objects")
    parser.add_argument("--unsafe", action="store_true", help="load with safe_mode=False")
    parser.add_argument("--tolerance", type=float, default=0.0, help="a wider rtol = atol")
    args = parser.parse_args()
    WIDER[0] = args.tolerance
    record = run(args)
    with open(args.out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(record, f, sort_keys=True, default=str)
    os.replace(args.out + ".tmp", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
