"""JSON pointers (RFC 6901) into config.json: `/config/layers/3/inbound_nodes/0`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def of(path: Iterable[str | int]) -> str:
    """The pointer of a path of keys and indices; `()` is the whole document, ``""``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def get(document: Any, pointer: str) -> Any:
    """The value at `pointer`."""
    for token in pointer.split("/")[1:]:
        token = _unescape(token)
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document


def parent(document: Any, pointer: str) -> tuple[Any, Any]:
    """The container `pointer` ends in, and its key (or index) there."""
    parent_pointer, _, token = pointer.rpartition("/")
    container = get(document, parent_pointer)
    token = _unescape(token)
    return container, int(token) if isinstance(container, list) else token


def set(document: Any, pointer: str, value: Any) -> None:  # noqa: A001 (the pointer verb)
    """Set the value at `pointer` (its parent must exist)."""
    container, key = parent(document, pointer)
    container[key] = value


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")
