"""What a fix records (`Edit`): the repaired config.json and operations on the
weight groups of model.weights.h5. Plain data: no file is touched here; the
writer applies the operations (`weights_edit`).

Keras names a model's weight groups after the layer's class and its place in
`model.layers` (`layers/dense`, `layers/dense_1`, ...), so adding a layer or
changing the order renumbers groups: `regroup` turns "this group's content
now comes from that group" into operations that are safe in any order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .findings import Change

# Suffix of the scratch name a group is parked under while groups swap places;
# Keras's group names (snake case and digits) never contain it.
SCRATCH_SUFFIX = ".kerasrepair-scratch"


@dataclass(frozen=True)
class CopyGroup:
    """Copy the group at `source` (and all under it) to `target`, a new path."""

    source: str
    target: str

    def describe(self) -> str:
        return f"copied {self.source} to {self.target}"


@dataclass(frozen=True)
class MoveGroup:
    """Rename the group at `source` to `target`, a new path."""

    source: str
    target: str

    def describe(self) -> str:
        return f"moved {self.source} to {self.target}"


@dataclass(frozen=True)
class DeleteGroup:
    path: str

    def describe(self) -> str:
        return f"deleted {self.path}"


@dataclass(frozen=True)
class SetLayerName:
    """Set the `name` attribute Keras 3.6+ stores on `<group>/vars` (the layer's
    name; Keras only writes it, so this keeps the file honest for readers)."""

    group: str
    layer_name: str

    def describe(self) -> str:
        return f"named {self.group} '{self.layer_name}'"


GroupOp = CopyGroup | MoveGroup | DeleteGroup | SetLayerName


def regroup(sources: Mapping[str, str]) -> list[GroupOp]:
    """Operations that give each target group the content its source group has now.

    `sources` maps target path -> source path, for the groups that change; a
    source may feed several targets (copies). A source that is not also a
    target keeps its place and content; one that is a target is parked under a
    scratch name first, so swaps and shifts (`dense_1` -> `dense_2`,
    `dense` -> `dense_1`) work in any order.
    """
    targets_of: dict[str, list[str]] = {}
    for target, source in sorted(sources.items()):
        if target != source:
            targets_of.setdefault(source, []).append(target)
    parked = sorted(source for source in targets_of if source in sources)
    ops: list[GroupOp] = [MoveGroup(source, source + SCRATCH_SUFFIX) for source in parked]
    for source, targets in sorted(targets_of.items()):
        if source in parked:
            *copies, last = targets
            origin = source + SCRATCH_SUFFIX
            ops += [CopyGroup(origin, target) for target in copies]
            ops.append(MoveGroup(origin, last))
        else:
            ops += [CopyGroup(source, target) for target in targets]
    return ops


@dataclass
class Edit:
    """The repaired config.json, built up fix by fix, the changes made, and the
    operations on the weight groups, applied in order by the writer."""

    config: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    weight_ops: list[GroupOp] = field(default_factory=list)
    # a new weights file laid out as Keras 3 stores it (`keras3_weights.Plan`,
    # KR708: a Keras 2 model); the group operations apply to it
    weights_plan: Any = None
    # a new metadata.json (a Keras 2 archive converted: the release it now is for)
    metadata: dict[str, Any] | None = None
    # config.json's text, made once for each state of `config` (`edited`)
    _json: str | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, config_bytes: bytes) -> Edit:
        # a fresh parse: several times faster than copy.deepcopy of a big config
        return cls(config=json.loads(config_bytes))

    def config_json(self) -> str:
        """config.json as Keras writes it (`json.dumps` defaults), made once
        for the writer and the check of what it writes."""
        if self._json is None:
            self._json = json.dumps(self.config)
        return self._json

    def edited(self) -> None:
        """`config` changed (the runner says so after each fix)."""
        self._json = None
