"""What a rule sees: the archive, config.json as the fixes before it left it,
the options, and the release it is checked for (`Context`)."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from . import graph, schema
from .archive import Archive
from .findings import Finding
from .graph import ModelGraph
from .objects import CLASS_CODES, ObjectChecker, serialized_objects

if TYPE_CHECKING:
    from .edit import Edit
    from .weights_tree import WeightsTree


@dataclass(frozen=True)
class Options:
    unsafe_fixes: bool = False
    # --define NAME=VALUE: values for the globals a Lambda's code reads (KR501)
    defines: dict[str, str] = field(default_factory=dict)
    # --keras X.Y: the release to check and repair for ("3.10", "3.10.0");
    # None: the release that saved the archive
    keras: str | None = None
    # the format `fix` writes, when not the archive's: "keras" for an HDF5
    # model converted to a .keras archive, which Keras loads as one
    written_as: str | None = None


DEFAULTS = Options()


def parse_define(item: str) -> tuple[str, str]:
    """One `--define NAME=VALUE`: VALUE a Python literal or `module:NAME`.
    ValueError says what is wrong with it."""
    name, equals, value = item.partition("=")
    name, value = name.strip(), value.strip()
    if not equals or not name.isidentifier():
        raise ValueError(f"--define {item!r}: expected NAME=VALUE, e.g. --define CONV_WIDTH=3")
    if value.startswith("module:"):
        module = value.removeprefix("module:")
        if not all(part.isidentifier() for part in module.split(".")):
            raise ValueError(f"--define {item!r}: {module!r} is not a module name")
        return name, value
    try:
        ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise ValueError(
            f"--define {item!r}: {value!r} is not a Python literal (a number, a quoted "
            "string, a tuple, list or dict of those, None, True, False) nor module:NAME"
        ) from None
    return name, value


@dataclass(frozen=True)
class Context:
    """The archive, config.json as the fixes before this one left it, and the
    weights tree as their group operations leave it.

    `detect` only reads; `apply` changes `edit.config`, and the runner makes a
    new context for the next rule. What is derived from the config (the
    graph, the object walk) is computed once per context.
    """

    archive: Archive
    config: dict[str, Any]
    options: Options = DEFAULTS
    # the weights after the group operations recorded so far; None: the archive's
    edited_weights: WeightsTree | None = None
    # the fixes' Edit, when `config` is its config (its JSON is made once)
    edit: Edit | None = None

    @property
    def config_json(self) -> bytes:
        """`config` as JSON: config.json's own bytes for the archive's config,
        the Edit's JSON for an edited one (the writer's), else made now."""
        if self.config is self.archive.config:
            return self.archive.config_bytes
        if self.edit is not None and self.edit.config is self.config:
            return self.edit.config_json().encode()
        return json.dumps(self.config).encode()

    @cached_property
    def target(self) -> schema.ReleaseSchema:
        """The release checked for: `--keras`, else the one that saved the archive
        (the newest kerasrepair knows when it has no schema for that one)."""
        if self.options.keras is not None:
            return schema.release_for(self.options.keras)
        if self.saved.name.startswith("2."):
            return schema.newest()  # a Keras 2 archive is loaded by Keras 3
        return self.saved

    @cached_property
    def saved(self) -> schema.ReleaseSchema:
        return schema.saved_release(self.archive.keras_version)

    @cached_property
    def graph(self) -> ModelGraph:
        return graph.build(self.config)

    @cached_property
    def serialized_objects(self) -> list[tuple[tuple, dict, tuple[str, str] | None]]:
        """`objects.serialized_objects` of the config, walked once: the rules
        that look at objects share it."""
        return list(serialized_objects(self.config))

    @cached_property
    def objects(self) -> list[Finding]:
        """Every serialized object against the target release (`objects`), in
        the codes of the rules that report them."""
        return ObjectChecker(self.target, self.saved).findings(self.serialized_objects)

    @cached_property
    def classes(self) -> list[Finding]:
        """What the object walk says of classes alone (KR205, KR206): no validation,
        for `inspect`, which shows custom objects but checks nothing."""
        checker = ObjectChecker(self.target, self.saved, validate=False)
        return checker.findings(self.serialized_objects)

    def objects_of(self, code: str) -> list[Finding]:
        """The object walk's findings of one code (the class codes from the cheap
        walk, unless the whole walk is done already)."""
        walked = self.__dict__.get("objects")
        if walked is None:
            walked = self.classes if code in CLASS_CODES else self.objects
        return [finding for finding in walked if finding.code == code]

    def weights(self) -> WeightsTree:
        if self.edited_weights is not None:
            return self.edited_weights
        return self.archive.weights()
