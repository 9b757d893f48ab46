"""What a repair pass sees (`Context`) and what it records its repair in (`Edit`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .archive import Archive
from .findings import Change


@dataclass(frozen=True)
class Options:
    unsafe_fixes: bool = False


DEFAULTS = Options()


@dataclass
class Edit:
    """The repaired config.json, built up pass by pass; no file is touched."""

    config: dict[str, Any]
    changes: list[Change] = field(default_factory=list)

    @classmethod
    def of(cls, archive: Archive) -> Edit:
        return cls(config=copy.deepcopy(archive.config))


@dataclass(frozen=True)
class Context:
    """The archive, and config.json as the passes before this one left it.

    `detect` only reads `config`; `apply` changes `edit.config` (the same dict).
    """

    archive: Archive
    config: dict[str, Any]
    options: Options = DEFAULTS
