"""KR908: a lookup layer whose vocabulary is a file path or URL, which the loader reads."""

from __future__ import annotations

import re

from .. import advisories, pointer, schema, security
from ..context import Context
from ..findings import ERROR, NEVER, WARNING, Finding, Rule

RULE = Rule(
    code="KR908",
    name="lookup-file",
    severity=ERROR,
    summary="A StringLookup, IntegerLookup or TextVectorization whose vocabulary is a "
    "file path or URL, read when the model is loaded",
    explanation="""\
StringLookup, IntegerLookup and TextVectorization take their vocabulary as a
list, or as the path of a text file. Keras 3.0-3.11 save the path as given
and read it again when the model is loaded (`tf.io.gfile`, which also
fetches `gs://`, `s3://`, `http://` URLs): a crafted archive makes the loader
read any file of its machine into the layer (where get_vocabulary() returns
it) or request any URL (CVE-2025-12058). Keras 3.12+ save the vocabulary in
the archive and refuse a path while safe_mode=True. (`idf_weights` is never
read from a file: only `vocabulary` is.)

An error for a URL, an absolute path or a path with '..': what it reads is
outside the model. A plain relative name (`vocab.txt`) is how Keras 3.0-3.11
saved a layer built from a file in the working directory: a warning for
those releases (the loader reads that name in the directory it runs in), an
error for 3.12+ (which refuse to load it in safe_mode).

There is no fix in the file: the vocabulary is not in it. If you made the
model, build the layer from the vocabulary list (or save it with Keras
3.12+, which stores it in the archive); otherwise do not load the file.""",
    fix=NEVER,
)

LOOKUP_CLASSES = frozenset(("StringLookup", "IntegerLookup", "TextVectorization", "IndexLookup"))
URL = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*://")
ABSOLUTE = re.compile(r"^\s*([/\\~]|[A-Za-z]:[/\\])")
REFUSED_FROM = (3, 12)  # keras-team/keras#21751


def detect(ctx: Context) -> list[Finding]:
    said = advisories.advised(RULE.code)
    refused = schema.minor_key(ctx.target.keras_version) >= REFUSED_FROM
    found = []
    for path, obj, argument in security.file_arguments(ctx):
        value = obj["config"].get(argument)
        if obj["class_name"] not in LOOKUP_CLASSES or not isinstance(value, str):
            continue
        what = _kind(value)
        severity = ERROR if what or refused else WARNING
        name = obj["config"].get("name")
        found.append(
            Finding(
                RULE.code,
                f"{obj['class_name']} '{name}' reads its vocabulary from "
                f"{what or 'the file'} {value!r} when the model is loaded, not from the archive",
                pointer.of((*path, "config", argument)),
                severity,
                layer=name if isinstance(name, str) else None,
                hint=_hint(what, refused, ctx.target.keras_version) + f" Advisories: {said}",
            )
        )
    return found


def _kind(value: str) -> str | None:
    """ "the URL", "the absolute path", "the path" (with '..'); None for a plain name."""
    if URL.match(value):
        return "the URL"
    if ABSOLUTE.match(value):
        return "the absolute path"
    if ".." in re.split(r"[/\\]", value):
        return "the path"
    return None


def _hint(what: str | None, refused: bool, release: str) -> str:
    if refused:
        said = f"Keras {release} refuses it in safe_mode (the vocabulary is not in the archive)."
    else:
        said = f"Keras {release} reads it from the machine that loads the model."
    if what:
        return said + " Do not load this file unless you trust its source."
    return (
        said + " If you made the model, build the layer from the vocabulary list, or save it "
        "with Keras 3.12+, which stores the vocabulary in the archive."
    )
