"""Build the benchmark archives once (big, so git ignores bench/cache/).

    .venv/bin/python bench/make_archives.py

`efficientnetb7.keras`: keras.applications.EfficientNetB7(weights=None), about
269 MB and 816 layers. `efficientnetb7_numpy.keras`: the same archive with one
numpy literal in a layer argument (which Keras 3.0-3.4 refuse: `fix` repairs it for those),
written by real Keras from a model that holds it.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

CACHE = Path(__file__).resolve().parent / "cache"


def main() -> None:
    CACHE.mkdir(exist_ok=True)
    target = CACHE / "efficientnetb7.keras"
    if target.exists():
        print(f"{target} exists")
    else:
        model = keras.applications.EfficientNetB7(weights=None)
        model.save(target)
        print(f"wrote {target} ({target.stat().st_size:,} bytes, keras {keras.__version__})")
    numpy_target = CACHE / "efficientnetb7_numpy.keras"
    if numpy_target.exists():
        print(f"{numpy_target} exists")
        return
    base = keras.applications.EfficientNetB7(weights=None)
    inputs = keras.Input(base.input_shape[1:])
    # an array (a 0-d one would be saved as a plain float)
    scale = np.array([1 / 255.0, 1 / 255.0, 1 / 255.0])
    scaled = keras.layers.Rescaling(scale, name="numpy_scale")(inputs)
    keras.Model(inputs, base(scaled)).save(numpy_target)
    print(f"wrote {numpy_target} ({numpy_target.stat().st_size:,} bytes)")


if __name__ == "__main__":
    sys.exit(main())
