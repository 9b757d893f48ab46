"""What an archive's weights hold, described from their metadata: the tree of
variables and `vars` groups that `weights` reads (and `prefetch`'s child sends
back as JSON), with no h5py or numpy to import."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .edit import CopyGroup, DeleteGroup, GroupOp, SetLayerName

OPTIMIZER = "optimizer/"
_OPTIMIZER_GROUPS = (OPTIMIZER, "optimizer_weights/")  # Keras 3's, a legacy HDF5 model's


@dataclass(frozen=True)
class Variable:
    path: str  # e.g. "layers/dense/vars/0"
    shape: tuple[int, ...]
    dtype: str
    nbytes: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)


# A dataset that declares more than BOMB_FLOOR bytes must store at least
# 1/BOMB_RATIO of it, or be a shape bomb (KR910). Below the floor a lie costs
# at most 64 MiB, and the storage size is not even asked: no cost on the
# thousands of small weights of a big model. Deflate, HDF5's one built-in
# compressor, cannot pass ~1032:1 (an all-zero float32 dataset gzip'd in one
# chunk: 1029x), so a real weight, even all zeros, stays within 2000x; beyond
# it, chunks were never written, and reading allocates what is declared
# (CVE-2026-0897). Keras 3.15 refuses beyond 4 GiB and 1000x; this is stricter
# and never fires on weights Keras wrote (contiguous, uncompressed: 1x).
BOMB_FLOOR = 64 << 20
BOMB_RATIO = 2000


def bomb_text(shape: tuple, dtype: str, declared: int, stored: int, file_size: int) -> str:
    """What KR910 says of a dataset that declares `declared` bytes and stores `stored`."""
    return (
        f"declares {shape} {dtype} ({bytes_text(declared)}) but stores "
        f"{bytes_text(stored)} in a file of {bytes_text(file_size)} (not read)"
    )


def soft_link_text(value: bytes | str) -> str:
    """What KR901 says of a soft link to `value`."""
    return f"soft link to '{name_text(value)}' (not followed)"


def name_text(value: bytes | str, limit: int = 200) -> str:
    """A name from the file, for a message: decoded, and cut if absurdly long."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text if len(text) <= limit else text[:limit] + "..."


def bytes_text(count: int) -> str:
    """`4.0 TiB`, `24.5 KiB`, `17 bytes`."""
    size, unit = float(count), "bytes"
    for bigger in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{count} bytes" if unit == "bytes" else f"{size:,.1f} {unit}"


@dataclass(frozen=True)
class WeightsProblem:
    path: str
    what: str
    # the rule that reports it: KR901 (a link or storage outside the file, or
    # unreadable), KR910 (declares far more data than it stores)
    code: str = "KR901"


class VarGroups(Mapping):
    """`vars` group path -> the layer name Keras 3.6+ stores on it (None where
    none is), in the order the walk found the groups.

    The names of the groups in `unread` are read on first use of a name
    (`read(unread)` gives them): the `name` attributes are a quarter of the
    walk, and only findings about weights that do not match config.json use
    them. Which groups there are is known without reading any."""

    def __init__(
        self,
        names: dict[str, str | None],
        unread: Sequence[str] = (),
        read: Callable[[list[str]], dict[str, str | None]] | None = None,
    ):
        self._names = dict(names)
        self.unread = list(unread) if read is not None else []
        self._read = read

    def known(self) -> dict[str, str | None]:
        """The names read so far (None for the unread), reading none."""
        return dict(self._names)

    def read_all(self) -> None:
        """Read the names not read yet; on damage, raise the ArchiveError and
        leave them unread (a later use raises it again)."""
        self._all()

    def _all(self) -> dict[str, str | None]:
        if self.unread:
            self._names.update(self._read(self.unread))  # raises again until it reads
            self._read, self.unread = None, []
        return self._names

    def __getitem__(self, group: str) -> str | None:
        return self._all()[group]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, group: object) -> bool:
        return group in self._names

    def __repr__(self) -> str:
        return f"VarGroups({self._names!r}, unread={self.unread!r})"


@dataclass
class WeightsTree:
    format: str  # "h5", "npz", "none", or "legacy-h5" (a Keras 2 HDF5 model's model_weights)
    entry: str | None
    variables: list[Variable] = field(default_factory=list)
    # group path of each `vars` group -> the layer name Keras stored on it
    # (Keras 3.6+ writes a `name` attribute), or None; a `VarGroups` reads
    # the names when one is first used
    var_groups: Mapping[str, str | None] = field(default_factory=dict)
    problems: list[WeightsProblem] = field(default_factory=list)
    optimizer_iterations: int | None = None
    # npz keys holding pickled object arrays: never unpickled, so not described
    pickled: list[str] = field(default_factory=list)
    _params_by_group: dict[str, int] | None = field(default=None, repr=False)

    @property
    def model_variables(self) -> list[Variable]:
        return [v for v in self.variables if not v.path.startswith(_OPTIMIZER_GROUPS)]

    @property
    def optimizer_variables(self) -> list[Variable]:
        return [v for v in self.variables if v.path.startswith(_OPTIMIZER_GROUPS)]

    def listing(self) -> list[str]:
        """One line per `vars` group (`path/`) and per variable (`path shape
        dtype`), in natural order: what `fix --diff` compares."""
        lines = [(path, f"{path}/") for path in self.var_groups]
        lines += [(v.path, f"{v.path} {v.shape} {v.dtype}") for v in self.variables]
        return [line for _, line in sorted(lines, key=lambda item: natural_key(item[0]))]

    def params_under(self, group: str) -> int:
        """Number of weight values stored under a group path, e.g. `layers/dense`."""
        if self._params_by_group is None:
            totals: dict[str, int] = {}
            for variable in self.variables:
                parts = variable.path.split("/")
                for end in range(1, len(parts)):
                    prefix = "/".join(parts[:end])
                    totals[prefix] = totals.get(prefix, 0) + variable.size
            self._params_by_group = totals
        return self._params_by_group.get(group.rstrip("/"), 0)

    def unclaimed_groups(self, claimed: set[str]) -> list[str]:
        """The groups holding model weights (not the optimizer's) under none of
        the `claimed` paths (the layers' groups, `layers/dense`), sorted."""

        def under_claimed(group: str) -> bool:
            parts = group.split("/")
            return any("/".join(parts[:end]) in claimed for end in range(1, len(parts) + 1))

        return sorted(
            group
            for group in {path.removesuffix("/vars") for path in self.var_groups}
            if group != "vars"
            and not (group + "/").startswith(OPTIMIZER)
            and not under_claimed(group)
            and self.params_under(group)
        )

    def edited(self, ops: list[GroupOp]) -> WeightsTree:
        """The tree the group operations `ops` leave, computed from the paths
        alone (what `weights_edit.apply_ops` does to the file, which the writer
        checks against this)."""
        variables = {v.path: v for v in self.variables}
        groups = dict(self.var_groups)
        for op in ops:
            if isinstance(op, SetLayerName):
                key = f"{op.group}/vars"
                if groups.get(key) is not None:
                    groups[key] = op.layer_name
                continue
            source = op.path if isinstance(op, DeleteGroup) else op.source
            if not any(_under(path, source) for path in (*variables, *groups)):
                continue  # as in the file: Keras stored nothing there
            moved_variables = {p: v for p, v in variables.items() if _under(p, source)}
            moved_groups = {p: n for p, n in groups.items() if _under(p, source)}
            if not isinstance(op, CopyGroup):
                for path in moved_variables:
                    del variables[path]
                for path in moved_groups:
                    del groups[path]
            if isinstance(op, DeleteGroup):
                continue
            if any(_under(path, op.target) for path in (*variables, *groups)):
                raise ValueError(f"{op.describe()}: {op.target} exists already")
            for path, variable in moved_variables.items():
                new = op.target + path[len(source) :]
                variables[new] = dataclasses.replace(variable, path=new)
            for path, name in moved_groups.items():
                groups[op.target + path[len(source) :]] = name
        tree = WeightsTree(
            format=self.format,
            entry=self.entry,
            variables=sorted(variables.values(), key=lambda v: natural_key(v.path)),
            var_groups=dict(sorted(groups.items(), key=lambda item: natural_key(item[0]))),
            problems=list(self.problems),
            optimizer_iterations=self.optimizer_iterations
            if any(p.startswith(OPTIMIZER) for p in variables)
            else None,
            pickled=list(self.pickled),
        )
        return tree


def _under(path: str, group: str) -> bool:
    return path == group or path.startswith(group + "/")


def natural_key(path: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def tree_to_dict(tree: WeightsTree) -> dict[str, Any]:
    """The tree as JSON values, its unread names left unread (`tree_from_dict`)."""
    groups = tree.var_groups
    return {
        "format": tree.format,
        "entry": tree.entry,
        "variables": [dataclasses.asdict(v) for v in tree.variables],
        "names": groups.known() if isinstance(groups, VarGroups) else dict(groups),
        "unread": groups.unread if isinstance(groups, VarGroups) else [],
        "problems": [dataclasses.asdict(problem) for problem in tree.problems],
        "optimizer_iterations": tree.optimizer_iterations,
        "pickled": list(tree.pickled),
    }


def tree_from_dict(
    data: dict[str, Any], read: Callable[[list[str]], dict[str, str | None]] | None = None
) -> WeightsTree:
    """The tree `tree_to_dict` made `data` of; `read` reads its unread names."""
    return WeightsTree(
        format=data["format"],
        entry=data["entry"],
        variables=[
            Variable(v["path"], tuple(v["shape"]), v["dtype"], v["nbytes"])
            for v in data["variables"]
        ],
        var_groups=VarGroups(data["names"], data["unread"], read),
        problems=[WeightsProblem(**problem) for problem in data["problems"]],
        optimizer_iterations=data["optimizer_iterations"],
        pickled=list(data["pickled"]),
    )
