"""KR405: sub-layers held in nested lists, stored under `container` groups (Keras 3.15+).

Keras saves the sub-layers a layer holds in a list under the list's attribute
(`blocks/dense`, `blocks/dense_1`). Before 3.15 the saver and the loader
skipped a list inside that list (or a tuple, or a dict's values); since 3.15.0
(keras-team/keras#22362) they recurse into it, naming each nested container
`container`, `container_1`, ... (`blocks/container_1/dense`). 3.15 also reads
files written before (keras-team/keras#22891, in 3.15.0 as well).

A subclassed model also lists every sub-layer in `model.layers`, which the
saver walks in attribute order: before 3.15 a sub-layer of a nested list is
stored there, `layers/<class>[_<n>]` (numbered per class in `model.layers`
order); since 3.15 it is stored under its container when the attribute sorts
before `layers`, and its `layers/...` group is left out. Keras 3.14 and older
look for it in `layers/` and fail. A plain layer has no `layers` list: before
3.15 its nested sub-layers are neither stored nor read.

Decided from the weights file's group paths (and the layer names Keras stores
on `vars` groups) alone: a group named `container` or `container_<n>` with no
variables of its own, under an attribute group with none either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..context import Context
from ..edit import DeleteGroup, Edit, MoveGroup
from ..findings import ERROR, SAFE, SOMETIMES, UNSAFE, Change, Finding, Rule

if TYPE_CHECKING:
    from ..weights_tree import WeightsTree

EXPLANATION = """\
Keras stores the weights of the sub-layers a layer or model holds in a list
under the list's attribute (`blocks/dense`, `blocks/dense_1`). Since Keras
3.15.0 (keras-team/keras#22362) it also stores those of a list inside that
list, a tuple (KerasHub holds its layers in lists of tuples) or a dict's
values, under `container` groups: `self.blocks = [[Dense, Dense], [Dense,
Dense]]` is stored as `blocks/container/dense`, `blocks/container/dense_1`,
`blocks/container_1/dense`, `blocks/container_1/dense_1`. Keras 3.0-3.14 skip
nested containers, saving and loading:

- a subclassed model also lists these sub-layers in `model.layers`, where
  3.0-3.14 store and read them (`layers/dense` ... `layers/dense_3`, numbered
  per class in `model.layers` order). A 3.15 archive has them under
  `container` groups only, and 3.0-3.14 fail:

    ValueError: Layer 'dense' expected 2 variables, but received 0 variables
    during loading. Expected: ['kernel', 'bias']

- a layer (not a model) has no such list: 3.0-3.14 neither store nor read
  its nested sub-layers. They load a 3.15 archive without a warning, and
  the sub-layers keep fresh initial values: the predictions are wrong.

Keras 3.15 reads the older layout too (keras-team/keras#22891, also in
3.15.0): it warns "Skipping nested container ..." and finds a model's
sub-layers in `layers/`. Archives of a layer saved by 3.0-3.14 hold no
weights for its nested sub-layers at all, in any release; kerasrepair cannot
tell that from the archive (a layer may hold no variables).

Fix (with `--keras 3.14` or older): a model's container groups are moved to
the `layers/` groups 3.0-3.14 read, numbered per class after the groups
already there. Safe when every sub-layer stored elsewhere is in a container;
when the model also keeps sub-layers in attributes of its own (`self.head`,
stored under `head`), their places in `model.layers` are read from Keras's
automatic layer names (`dense_7`), and the fix is unsafe when the names do
not tell. A layer's nested sub-layers cannot be made readable to 3.0-3.14:
load with Keras 3.15+, or copy the weights through your code
(`model.get_weights()` in 3.15+, `model.set_weights(...)` in the older
release), or hold the sub-layers in flat lists, which every release stores.
"""

RULE = Rule(
    code="KR405",
    name="nested-container-weights",
    severity=ERROR,
    summary="Sub-layers held in nested lists stored under `container` groups (Keras 3.15+): "
    "3.0-3.14 cannot read them",
    explanation=EXPLANATION,
    fix=SOMETIMES,
    breaks_in=("3.0", "3.14"),
)

CONTAINER = re.compile(r"container(?:_(\d+))?")
NUMBERED = re.compile(r"(.+?)(?:_(\d+))?")
LAYERS = "layers"
# what a model stores besides its sub-layers (never a container's owner attribute)
NOT_LAYERS = frozenset({"vars", LAYERS, "optimizer"})


@dataclass
class Owner:
    """A layer or model (its group, "" for the archive's model) with sub-layers
    stored under container groups."""

    path: str
    # attribute groups holding container groups, e.g. "blocks"
    attributes: list[str] = field(default_factory=list)
    # the sub-layer groups under them, in the order the saver visits them
    stored: list[str] = field(default_factory=list)
    # where 3.0-3.14 read each (None when it is not a model, or cannot be told)
    targets: dict[str, str] = field(default_factory=dict)
    fix: str | None = None
    why_not: str = ""


def detect(ctx: Context) -> list[Finding]:
    weights = ctx.weights()
    if weights.format != "h5":
        return []
    owners = _owners(weights)
    if not owners:
        return []
    pointers = {layer.weights_path: layer for layer in ctx.graph.walk() if layer.weights_path}
    return [_finding(ctx, owner, weights, pointers) for owner in owners]


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    weights = ctx.weights()
    by_location = {_location(ctx, owner.path): owner for owner in _owners(weights)}
    changes = []
    chosen = [by_location[f.location] for f in findings if f.location in by_location]
    # deepest owners first: an owner's groups move with the groups above them
    for owner in sorted(chosen, key=lambda o: -o.path.count("/") - bool(o.path)):
        for source in owner.stored:
            operation = MoveGroup(source, owner.targets[source])
            edit.weight_ops.append(operation)
            changes.append(Change(RULE.code, f"{weights.entry}:{source}", operation.describe()))
        for attribute in owner.attributes:  # left empty: as 3.0-3.14 write it, no group
            if not any(
                _under(path, attribute) and not any(_under(path, s) for s in owner.stored)
                for path in (*weights.var_groups, *(v.path for v in weights.variables))
            ):
                operation = DeleteGroup(attribute)
                edit.weight_ops.append(operation)
                changes.append(
                    Change(
                        RULE.code, f"{weights.entry}:{attribute}", f"{operation.describe()} (empty)"
                    )
                )
    return changes


def _under(path: str, group: str) -> bool:
    return path == group or path.startswith(group + "/")


# ------------------------------------------------------------------ structure


def _groups(weights: WeightsTree) -> set[str]:
    """Every group path of the file (the parents of `vars` groups and variables)."""
    found: set[str] = set()
    for path in (*weights.var_groups, *(v.path for v in weights.variables)):
        parts = path.split("/")
        for end in range(1, len(parts)):
            found.add("/".join(parts[:end]))
    return found


def _join(*parts: str) -> str:
    return "/".join(part for part in parts if part)


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _last(path: str) -> str:
    return path.rpartition("/")[2]


def _owners(weights: WeightsTree) -> list[Owner]:
    groups = _groups(weights)

    def own_vars(path: str) -> bool:
        return f"{path}/vars" in weights.var_groups

    def is_container(path: str) -> bool:
        return (
            CONTAINER.fullmatch(_last(path)) is not None
            and not own_vars(path)
            and path.count("/") >= 1
            and not own_vars(_parent(path))
            and not (_parent(path) + "/").startswith("optimizer/")
        )

    containers = {path for path in groups if is_container(path) and weights.params_under(path)}
    # the outermost: under an attribute group, not under another container
    outermost = sorted(path for path in containers if _parent(path) not in containers)
    owners: dict[str, Owner] = {}
    for path in outermost:
        attribute = _parent(path)
        owner = owners.setdefault(_parent(attribute), Owner(_parent(attribute)))
        if attribute not in owner.attributes:
            owner.attributes.append(attribute)
    for owner in owners.values():
        owner.attributes.sort(key=_last)  # the saver walks attributes in sorted order
        for attribute in owner.attributes:
            owner.stored += _stored_under(attribute, groups, containers, weights)
        _place(owner, groups, weights)
    # only owners whose every container sits where no other owner's moves it
    return sorted(owners.values(), key=lambda owner: owner.path)


def _stored_under(
    attribute: str, groups: set[str], containers: set[str], weights: WeightsTree
) -> list[str]:
    """The sub-layer groups in the nested containers of `attribute` (the
    first group under a chain of containers), each holding variables."""
    found = []
    for path in sorted(groups, key=_natural):
        if not path.startswith(attribute + "/") or path in containers:
            continue
        chain = path[len(attribute) + 1 :].split("/")[:-1]
        walked = [_join(attribute, *chain[: end + 1]) for end in range(len(chain))]
        if walked and all(step in containers for step in walked) and weights.params_under(path):
            found.append(path)
    return found


def _natural(path: str) -> list:
    """`container_2` before `container_10`, `dense` before `dense_1`."""
    key: list = []
    for part in path.split("/"):
        match = NUMBERED.fullmatch(part)
        key.append((match[1], int(match[2] or 0)) if match else (part, 0))
    return key


def _class_and_number(group: str) -> tuple[str, int]:
    match = NUMBERED.fullmatch(_last(group))
    return (match[1], int(match[2] or 0)) if match else (_last(group), 0)


def _place(owner: Owner, groups: set[str], weights: WeightsTree) -> None:
    """Where 3.0-3.14 read each stored sub-layer: `<owner>/layers/<class>[_n]`,
    the n-th sub-layer of its class in `model.layers`."""
    layers = _join(owner.path, LAYERS)
    is_model = owner.path == "" or layers in groups
    if not is_model:
        owner.why_not = "layer"
        return
    present: dict[str, set[int]] = {}
    for group in groups:
        if _parent(group) == layers:
            name, number = _class_and_number(group)
            present.setdefault(name, set()).add(number)
    # sub-layers held by attributes of their own, stored before `layers` by
    # every release: they take places of `model.layers` too
    own = [
        group
        for group in groups
        if _parent(group) == owner.path
        and _last(group) not in NOT_LAYERS
        and group not in owner.attributes
        and weights.params_under(group)
        and not _last(group).startswith("_")  # private attributes come last
        and _last(group) < LAYERS
    ]
    by_class: dict[str, list[str]] = {}
    for group in owner.stored:
        by_class.setdefault(_class_and_number(group)[0], []).append(group)
    owner.fix = SAFE
    for name, stored in by_class.items():
        if _nested_order_unclear(stored):
            owner.fix, owner.why_not = None, "order"
            return
        numbers = _numbers_by_name(name, stored, own, present, layers, weights)
        if numbers is None and own:
            owner.fix = UNSAFE  # assumes the attributes' own sub-layers are of other classes
        taken = set(present.get(name, ()))
        free = (n for n in range(len(stored) + len(taken) + len(own) + 1) if n not in taken)
        for group, number in zip(stored, numbers or free, strict=False):
            owner.targets[group] = _join(layers, name if number == 0 else f"{name}_{number}")


def _nested_order_unclear(stored: list[str]) -> bool:
    """A container holding a sub-layer of a class directly and another in a
    container of its own: their order in the list is not in the names."""
    parents = {_parent(group) for group in stored}
    return any(
        _parent(group) != parent and group.startswith(parent + "/")
        for parent in parents
        for group in stored
    )


def _numbers_by_name(
    name: str,
    stored: list[str],
    own: list[str],
    present: dict[str, set[int]],
    layers: str,
    weights: WeightsTree,
) -> list[int] | None:
    """The places in `model.layers` of the `stored` sub-layers of class `name`,
    read from the automatic names Keras gave the layers (`dense_7`): a layer's
    number counts the layers of its class made before it. None when the names do
    not tell, or disagree with the groups stored in `layers/`."""
    automatic = re.compile(rf"{re.escape(name)}(?:_(\d+))?")

    def made(group: str) -> int | None:
        stored_name = weights.var_groups.get(f"{group}/vars")
        match = automatic.fullmatch(stored_name) if stored_name else None
        return int(match[1] or 0) if match else None

    in_layers = [
        _join(layers, name if n == 0 else f"{name}_{n}") for n in sorted(present.get(name, ()))
    ]
    of_class = [group for group in own if made(group) is not None]
    everyone = stored + of_class + in_layers
    order = [made(group) for group in everyone]
    if None in order or len(set(order)) != len(order):
        return None
    places = {
        group: place for place, (_, group) in enumerate(sorted(zip(order, everyone, strict=True)))
    }
    if any(places[group] != _class_and_number(group)[1] for group in in_layers):
        return None
    return [places[group] for group in stored]


# ------------------------------------------------------------------ findings


def _location(ctx: Context, owner: str) -> str:
    if owner == "":
        return ctx.graph.pointer or "/"
    for layer in ctx.graph.walk():
        if layer.weights_path == owner:
            return layer.pointer
    return f"model.weights.h5:{owner}"


def _finding(ctx: Context, owner: Owner, weights: WeightsTree, pointers: dict) -> Finding:
    target = f"Keras {ctx.target.name}"
    name = weights.var_groups.get(_join(owner.path, "vars")) or owner.path or ctx.graph.name
    example = owner.stored[0]
    count = len(owner.stored)
    stored = (
        f"stores {count} sub-layer(s) held in nested lists or tuples under `container` "
        f"groups, as Keras 3.15+ write them (e.g. '{example}')"
    )
    if owner.why_not == "layer":
        return Finding(
            RULE.code,
            f"layer '{name}' {stored}; {target} never reads a layer's nested containers: the "
            "load succeeds without a warning, and these sub-layers keep fresh initial "
            "values (the predictions are wrong). No change of the archive makes them "
            f"readable to {target}",
            _location(ctx, owner.path),
            ERROR,
            layer=name,
            hint="load the archive with Keras 3.15 or newer; to use it with an older "
            "release, copy the weights through your code: in Keras 3.15+ "
            "`weights = keras.saving.load_model(path).get_weights()`, in the older release "
            "`model = keras.saving.load_model(path); model.set_weights(weights)`; or hold the "
            "sub-layers in flat lists (or as attributes), which every release stores",
        )
    fails = (
        f"{target} reads a model's sub-layers from its `layers` list ('{_parent(example)}' is "
        "not read) and fails: \"Layer '...' expected ... variables, but received 0 "
        'variables during loading"'
    )
    if owner.fix is None:
        return Finding(
            RULE.code,
            f"model '{name}' {stored}; {fails}. Where each belongs in `layers/` cannot be "
            "told from the archive (a list holds layers of one class both directly and in a "
            "nested list)",
            _location(ctx, owner.path),
            ERROR,
            layer=name,
            hint="load the archive with Keras 3.15 or newer, and save the weights with "
            "`model.get_weights()`; in the older release load the archive and call "
            "`model.set_weights(weights)`",
        )
    first = owner.targets[example]
    how = (
        ""
        if owner.fix == SAFE
        else " (unsafe: the model keeps other sub-layers in attributes of its own, whose "
        "places in `model.layers` the layer names do not tell)"
    )
    return Finding(
        RULE.code,
        f"model '{name}' {stored}; {fails}. Fix: move them to the groups {target} reads "
        f"('{example}' to '{first}'){how}",
        _location(ctx, owner.path),
        ERROR,
        layer=name,
        fix=owner.fix,
    )
