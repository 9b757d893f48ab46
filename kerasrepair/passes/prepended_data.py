"""KR911: data before the first entry of the zip (a polyglot file)."""

from __future__ import annotations

import re

from ..context import Context
from ..edit import Edit
from ..findings import ALWAYS, ERROR, SAFE, Change, Finding, Rule

RULE = Rule(
    code="KR911",
    name="prepended-data",
    severity=ERROR,
    summary="Data is prepended before the zip's first entry: the file is something "
    "else too (a script, an executable, a page)",
    explanation="""\
A zip is read from its end: Python's zipfile, and so every Keras release,
finds the central directory there and reads the archive even when other bytes
come first. Keras never writes them. A file that is a shell script, an
executable or an HTML page and a loadable model at once is a classic way to
smuggle one past a check that looks at the start of the file, or to have it
run where it is opened as something else.

No advisory names this against Keras (the zip format allows it); it is
reported as an error because no model needs it.

`fix` (safe: Keras reads the same zip) writes the archive from its first
entry and says what it dropped; `fix --in-place` too. Find out where the
file comes from before you load it, or run what was prepended.""",
    fix=ALWAYS,
)

# what the prepended bytes start with -> what they are
_SIGNATURES = (
    (b"#!", "a script"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows (PE) executable"),
    (b"\xca\xfe\xba\xbe", "a Mach-O executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xfe\xed\xfa\xcf", "a Mach-O executable"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"PK\x03\x04", "another zip archive"),
    (b"PK\x05\x06", "another (empty) zip archive"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "gzip data"),
)
_HEAD = 64  # bytes read to tell what it is


def detect(ctx: Context) -> list[Finding]:
    archive = ctx.archive
    if not archive.prepended:
        return []
    with open(archive.path, "rb") as f:
        head = f.read(min(archive.prepended, _HEAD))
    return [
        Finding(
            code=RULE.code,
            message=f"{archive.prepended:,} bytes before the first entry of the zip: "
            f"{describe(head)}",
            location=f"bytes 0-{archive.prepended - 1}",
            severity=ERROR,
            fix=SAFE,
            hint="a model file is a zip from its first byte: find out where this file "
            "comes from before you load or run it; `fix` writes the archive without them",
        )
    ]


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    """Nothing to edit: the writer copies the entries from the first one on.
    The change says so, and makes `--in-place` rewrite the file."""
    return [
        Change(RULE.code, finding.location, f"not written: {finding.message}")
        for finding in findings
    ]


def describe(head: bytes) -> str:
    """What bytes that start this way look like, and how they start."""
    start = repr(head[:32])
    if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        return f"an HTML page ({start})"
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            if signature == b"#!":
                line = head.split(b"\n", 1)[0][:48]
                shell = re.search(rb"\b(ba|da|k|z)?sh\b", line)
                return f"{'a shell script' if shell else what} ({line!r})"
            return f"{what} ({start})"
    return f"unknown data ({start})"
