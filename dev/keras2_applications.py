"""Large real Keras 2 models (keras.applications) converted to Keras 3 and loaded by real releases.

Two modes, two interpreters (from the repository root):

    .venvs/tf-2.15/bin/python dev/keras2_applications.py --save [DIR]
    .venv/bin/python dev/keras2_applications.py --convert [DIR] [--originals]

``--save`` (TensorFlow 2.15.1 / keras 2.15.0, made as in fixtures/keras2/make_keras2.py's
docstring) builds MobileNetV2, ResNet50, EfficientNetB0, DenseNet121 and InceptionV3
with ``weights=None`` at their default input sizes (seed 0), saves each as
``<name>.h5`` (legacy HDF5) and ``<name>.keras`` (``model.save``), and a reference
``<name>.npz`` (``x``: 2 random inputs, ``y``: tf.keras predictions: the layout of
``kerasrepair/probe_child.py``) and ``index.json`` (versions, sizes, shapes). DIR defaults
to ``bench/cache/keras2-apps/`` (gitignored: the files weigh 10 to 100 MB each).

``--convert`` (the project's environment, no TensorFlow) runs ``kerasrepair fix SRC -o
OUT --keras X.Y`` on each saved file for each of Keras 3.0.5, 3.3.3, 3.6.0 and 3.15.1
(OUT: ``DIR/converted/<name>.<h5|keras>.<release>.keras``), loads each result in
that release (``dev/releases.py``: the cached envs under ``.venvs/``, JAX backend, a
fresh process per load) and prints a markdown table:
model | source | fix | release | load status | max abs diff. ``--originals`` also loads
the files as saved, for a column of what each release does without the repair.
Everything runs one after the other (each load of a large model takes up to a minute).
Predictions are compared with rtol = atol = 1e-4 (TensorFlow and XLA round
differently); the max abs diff column tells a rounding difference from a wrong model.
``--models NAME ...`` converts only those.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIR = os.path.join(ROOT, "bench", "cache", "keras2-apps")
MODELS = ("MobileNetV2", "ResNet50", "EfficientNetB0", "DenseNet121", "InceptionV3")
RELEASES = ("3.0.5", "3.3.3", "3.6.0", "3.15.1")


# ----------------------------------------------------------------------------- --save


def save(directory):
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import platform

    import keras as keras_package
    import numpy as np
    import tensorflow as tf

    assert tf.__version__ == "2.15.1", tf.__version__
    assert keras_package.__version__ == "2.15.0", keras_package.__version__
    keras = tf.keras
    os.makedirs(directory, exist_ok=True)
    index = {
        "made_by": {
            "tensorflow": tf.__version__,
            "keras": keras_package.__version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "models": {},
    }
    for name in MODELS:
        started = time.time()
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model = getattr(keras.applications, name)(weights=None)
        shape = tuple(model.input_shape[1:])
        # [0, 255): the range EfficientNet's own Rescaling expects; the others see
        # large but finite activations, as any untrained network would
        x = np.random.default_rng(0).uniform(0.0, 255.0, (2, *shape)).astype(np.float32)
        y = np.asarray(model.predict(x, verbose=0))
        files = {}
        for fmt in ("h5", "keras"):
            path = os.path.join(directory, f"{name}.{fmt}")
            model.save(path)
            files[fmt] = {"path": os.path.basename(path), "size": os.path.getsize(path)}
        npz = os.path.join(directory, f"{name}.npz")
        np.savez(npz, x=x, y=y)
        index["models"][name] = {
            "files": files,
            "reference": os.path.basename(npz),
            "input": {"dtype": str(x.dtype), "shape": list(x.shape)},
            "output": {"dtype": str(y.dtype), "shape": list(y.shape)},
            "layers": len(model.layers),
            "params": int(model.count_params()),
        }
        print(
            f"{name}: {len(model.layers)} layers, {model.count_params()} params, "
            f"h5 {files['h5']['size'] / 1e6:.1f} MB, keras {files['keras']['size'] / 1e6:.1f} MB, "
            f"{time.time() - started:.0f} s",
            flush=True,
        )
        del model
    with open(os.path.join(directory, "index.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- --convert


def status(result):
    """The status, and the error: its root cause when the first line is only a wrapper,
    without the configs Keras dumps into it."""
    text = result["status"]
    if result["status"] not in ("ok", "mismatch") and result.get("message"):
        message = result.get("detail") or result["message"]
        message = message.removeprefix("Exception encountered: ")
        message = re.sub(r"(using config=|Full object config: )\{.*", r"\1{...}", message)
        message = message if len(message) <= 160 else message[:157] + "..."
        text += ": " + message.replace("|", "\\|")
    return text


def diff(result):
    value = result.get("max_abs_diff")
    return "" if value is None else f"{value:.3g}"


def convert(directory, originals, models=MODELS):
    sys.path.insert(0, os.path.join(ROOT, "dev"))
    from releases import probe

    converted = os.path.join(directory, "converted")
    os.makedirs(converted, exist_ok=True)
    header = "| model | source | fix | release | load status | max abs diff |"
    if originals:
        header += " original status | original max abs diff |"
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    for name in models:
        reference = os.path.join(directory, f"{name}.npz")
        for fmt in ("h5", "keras"):
            source = os.path.join(directory, f"{name}.{fmt}")
            if not os.path.exists(source):
                print(f"missing {source}: run --save first", file=sys.stderr)
                continue
            for release in RELEASES:  # converted for each release: `fix --keras X.Y`
                out = os.path.join(converted, f"{name}.{fmt}.{release}.keras")
                if os.path.exists(out):
                    os.remove(out)
                command = [sys.executable, "-m", "kerasrepair", "fix", source, "-o", out]
                start = time.perf_counter()
                done = subprocess.run(
                    [*command, "--keras", release], capture_output=True, text=True
                )
                seconds = time.perf_counter() - start
                said = (done.stderr.strip() or done.stdout.strip()).splitlines()
                fixed = f"exit {done.returncode}, {seconds:.2f} s" + (
                    f": {said[-1][:80]}".replace("|", "\\|") if done.returncode and said else ""
                )
                if os.path.exists(out):
                    # TensorFlow's and XLA's kernels round differently: rtol = atol = 1e-4
                    result = probe(release, out, reference=reference, tolerance=1e-4)
                    cells = [status(result), diff(result)]
                else:
                    cells = ["not converted", ""]
                if originals:
                    original = probe(release, source, reference=reference, tolerance=1e-4)
                    cells += [status(original), diff(original)]
                row = f"| {name} | .{fmt} | {fixed} | {release} | " + " | ".join(cells) + " |"
                rows.append(row)
                print(row, file=sys.stderr, flush=True)  # progress
    print("\n".join(rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", nargs="?", const=DEFAULT_DIR, metavar="DIR")
    mode.add_argument("--convert", nargs="?", const=DEFAULT_DIR, metavar="DIR")
    parser.add_argument(
        "--originals", action="store_true", help="--convert: also load the files as saved"
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = parser.parse_args()
    if args.save:
        save(args.save)
    else:
        convert(args.convert, args.originals, args.models)


if __name__ == "__main__":
    main()
