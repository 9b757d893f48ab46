"""KR905: config.json names a Keras API that is not a model part (get_file,
load_model, enable_unsafe_deserialization), or a URL."""

from __future__ import annotations

import re

from .. import advisories, pointer, security
from ..context import Context
from ..findings import ERROR, NEVER, Finding, Rule

RULE = Rule(
    code="KR905",
    name="non-modelling-api",
    severity=ERROR,
    summary="A Keras API that is not a model part (get_file, load_model, "
    "enable_unsafe_deserialization), or a URL, in config.json",
    explanation="""\
Keras deserializes any function or class of its own public API that
config.json names, modelling or not. A crafted archive names
`keras.utils.get_file` (it downloads and writes files), `keras.models.load_model`
or `keras.config.enable_unsafe_deserialization` (it turns safe_mode off for
the Lambda that follows) as a Lambda's function, an initializer or an
activation, and the loader calls it (CVE-2025-8747, CVE-2025-9906). Keras
3.11+ refuse such names (serialization_lib.NON_MODELING_APIS); the
`keras.src.` spellings name the same functions.

kerasrepair reports those names wherever they are: an object's module and
class name or function name, its registered name, and any string of the
config. It reports any URL (`http://`, `https://`, `ftp://`, `file://`, `s3://`,
`gs://`, `hf://` ...) in a string of the config too: Keras never writes one
into a model's config, and a loader reading one fetches it. A lookup layer's
vocabulary and a TFSMLayer's path are KR908's and KR907's.

There is no fix: no model needs these. Do not load the file.""",
    fix=NEVER,
)

# keras/src/saving/serialization_lib.py, NON_MODELING_APIS (Keras 3.15.1)
NON_MODELLING_APIS = frozenset(
    (
        "keras.backend.clear_session",
        "keras.config.enable_unsafe_deserialization",
        "keras.models.load_model",
        "keras.models.model_from_json",
        "keras.models.save_model",
        "keras.preprocessing.image_dataset_from_directory",
        "keras.preprocessing.image.load_img",
        "keras.preprocessing.image.save_img",
        "keras.preprocessing.text_dataset_from_directory",
        "keras.saving.deserialize_keras_object",
        "keras.saving.load_model",
        "keras.saving.load_weights",
        "keras.saving.register_keras_serializable",
        "keras.saving.save_model",
        "keras.saving.save_weights",
        "keras.saving.serialize_keras_object",
        "keras.utils.audio_dataset_from_directory",
        "keras.utils.clear_session",
        "keras.utils.deserialize_keras_object",
        "keras.utils.get_file",
        "keras.utils.image_dataset_from_directory",
        "keras.utils.load_img",
        "keras.utils.register_keras_serializable",
        "keras.utils.save_img",
        "keras.utils.serialize_keras_object",
        "keras.utils.text_dataset_from_directory",
    )
)
# their names, which the `keras.src.` modules that define them export too
# (keras.src.utils.file_utils.get_file, keras.src.saving.saving_api.load_model)
NON_MODELLING_NAMES = frozenset(api.rpartition(".")[2] for api in NON_MODELLING_APIS)
DOTTED = re.compile(r"\bkeras(?:\.[A-Za-z_]\w*)+")
URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://")


def non_modelling(name: str) -> bool:
    """Whether a dotted name is one of those APIs (any `keras.src.` spelling too)."""
    if name in NON_MODELLING_APIS:
        return True
    return name.startswith("keras.src.") and name.rpartition(".")[2] in NON_MODELLING_NAMES


def detect(ctx: Context) -> list[Finding]:
    if _nothing_to_find(ctx):
        return []
    said = advisories.advised(RULE.code)
    found: dict[str, tuple[tuple, Finding]] = {}  # one finding per location
    for path, obj, owner in ctx.serialized_objects:
        api = next((name for name in _named(obj) if non_modelling(name)), None)
        if api is not None:
            where = pointer.of(path)
            found[where] = path, _api(where, security.describe(obj, owner), api, said)
    files = security.file_argument_pointers(ctx)
    for path, text in security.strings(ctx.config, _suspect):
        if "://" in text:
            api, url = None, URL.search(text)
        else:
            api, url = next((m for m in DOTTED.findall(text) if non_modelling(m)), None), None
        if api is None and url is None:
            continue
        where = pointer.of(path)
        if where in found or any(where == f or where.startswith(f + "/") for f in files):
            continue  # a lookup layer's vocabulary, a TFSMLayer's path: KR907, KR908
        if api is not None:
            found[where] = path, _api(where, "a string", api, said)
        else:
            found[where] = path, _url(where, text, said)
    return [finding for _, finding in sorted(found.values(), key=lambda item: _order(item[0]))]


def _nothing_to_find(ctx: Context) -> bool:
    """Whether the config's text holds no URL and no API name, nor an escape
    that could spell one: then neither the objects nor the strings can name
    one, and a large config is not walked. The text: config.json's own, or
    for a config a fix edited, its JSON (every string as it is, unless it
    holds an escape: 10 ms for EfficientNetB7's, a third of the walk)."""
    try:
        text = ctx.config_json
    except RecursionError:
        return False  # deeper than json writes: walked (iteratively)
    if b"\\" in text or b"://" in text:
        return False
    return not any(name.encode() in text for name in NON_MODELLING_NAMES)


def _suspect(text: str) -> bool:
    """What may name an API or a URL (most strings are names, dtypes, modes)."""
    return "://" in text or "keras." in text


def _url(where: str, text: str, said: str) -> Finding:
    return Finding(
        RULE.code,
        f"config.json names a URL at {where or '/'}: {_short(text)}",
        where,
        ERROR,
        hint="Keras never writes a URL into a model's config; a loader that reads it "
        f"fetches it. Do not load this file. Advisories: {said}",
    )


def _named(obj: dict) -> list[str]:
    """The dotted names a serialized object can be found by: its module and class
    name (or function name), and its registered name."""
    module, class_name, arguments = obj.get("module"), obj["class_name"], obj["config"]
    names = []
    if isinstance(module, str) and isinstance(class_name, str):
        names.append(f"{module}.{class_name}")
        if class_name == "function" and isinstance(arguments, str):
            names.append(f"{module}.{arguments}")
    registered = obj.get("registered_name")
    if isinstance(registered, str):
        names.append(registered.replace(">", "."))
    return names


def _api(where: str, who: str, api: str, said: str) -> Finding:
    return Finding(
        RULE.code,
        f"{who} names {api}, which is not a model part: the loader would call it",
        where,
        ERROR,
        hint=f"no model needs {api.rpartition('.')[2]}: do not load this file. Advisories: {said}",
    )


def _order(path: tuple) -> tuple:
    """Document order of paths (indices as numbers)."""
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in path)


def _short(text: str, limit: int = 120) -> str:
    text = repr(text)
    return text if len(text) <= limit else text[: limit - 4] + "...'"
