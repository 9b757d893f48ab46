"""What a repair pass sees (`Context`) and what it records its repair in (`Edit`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from . import graph
from .archive import Archive
from .findings import Change
from .graph import ModelGraph
from .weights_edit import GroupOp


@dataclass(frozen=True)
class Options:
    unsafe_fixes: bool = False
    # --define NAME=VALUE: values for the globals a Lambda's code reads (KR501)
    defines: dict[str, str] = field(default_factory=dict)
    # --keras X.Y: the release the repaired archive must load in (KR203), as the
    # name of its schema (`schema.name_for`)
    keras: str | None = None


DEFAULTS = Options()


@dataclass
class Edit:
    """The repaired config.json, built up pass by pass, and the operations on
    the weight groups of model.weights.h5, applied in order by the writer's
    caller (`weights_edit.edited_weights`); no file is touched."""

    config: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    weight_ops: list[GroupOp] = field(default_factory=list)

    @classmethod
    def of(cls, archive: Archive) -> Edit:
        # a fresh parse: several times faster than copy.deepcopy of a big config
        return cls(config=json.loads(archive.config_bytes))


@dataclass(frozen=True)
class Context:
    """The archive, and config.json as the passes before this one left it.

    `detect` only reads `config`; `apply` changes `edit.config` (the same dict).
    """

    archive: Archive
    config: dict[str, Any]
    options: Options = DEFAULTS

    @cached_property
    def graph(self) -> ModelGraph:
        """The graph of `config`, built once per pass (apply changes the config
        only after its own detect has read it)."""
        return graph.build(self.config)
