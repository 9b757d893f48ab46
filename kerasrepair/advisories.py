"""The published advisories each security rule (KR9xx) reports, from
`schemas/advisories.json`: the releases they affect, where they are fixed.

A finding names them in one line, `advised(code)`: "CVE-2025-1550 (Keras
>= 3.0.0, < 3.9.0; fixed in 3.9.0)"; `kerasrepair explain` lists them whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from . import schema

FILE = "advisories.json"


@dataclass(frozen=True)
class Advisory:
    id: str  # "CVE-2025-1550"
    ghsa: str | None
    title: str | None
    affected: tuple[str, ...] | None  # ranges of Keras releases; None: not found
    fixed: tuple[str, ...] | None
    url: str | None
    codes: tuple[str, ...]  # the rules that report it
    note: str = ""

    @property
    def releases(self) -> str:
        """ "Keras >= 3.0.0, < 3.9.0; fixed in 3.9.0" """
        if not self.affected:
            return "affected releases not found"
        said = "Keras " + " or ".join(self.affected)
        if self.fixed:
            said += "; fixed in " + ", ".join(self.fixed)
        return said

    @property
    def line(self) -> str:
        return f"{self.id} ({self.releases})"


@cache
def all_advisories() -> tuple[Advisory, ...]:
    text = (schema.files() / FILE).read_bytes()
    return tuple(
        Advisory(
            id=id_,
            ghsa=entry.get("ghsa"),
            title=entry.get("title"),
            affected=_tuple(entry.get("affected")),
            fixed=_tuple(entry.get("fixed")),
            url=entry.get("url"),
            codes=tuple(entry["codes"]),
            note=entry.get("note") or "",
        )
        for id_, entry in json.loads(text)["advisories"].items()
    )


def of(code: str) -> tuple[Advisory, ...]:
    """The advisories rule `code` reports, in the file's order."""
    return tuple(a for a in all_advisories() if code in a.codes)


def advised(code: str) -> str:
    """What a finding of `code` says of its advisories, in one line."""
    return "; ".join(a.line for a in of(code))


def described(code: str) -> str:
    """The advisories of `code` for `kerasrepair explain` ("" when it has none)."""
    blocks = []
    for advisory in of(code):
        ids = f"{advisory.id} / {advisory.ghsa}" if advisory.ghsa else advisory.id
        lines = [f"{ids}: {advisory.releases}"]
        if advisory.title:
            lines.append(f"  {advisory.title}")
        if advisory.url:
            lines.append(f"  {advisory.url}")
        if advisory.note:
            lines.append(f"  {advisory.note}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def _tuple(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(value) if isinstance(value, list) else (value,)
