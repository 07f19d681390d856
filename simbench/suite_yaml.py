"""Reading a suite file within bounds: size, nesting depth and alias expansion.

A suite is small YAML; its loader must not be hung or crashed by its input (issue 13).
:func:`read_suite_text` refuses what is not a regular file (``/dev/zero``, FIFOs,
folders) and files over :data:`MAX_SUITE_BYTES` from ``stat`` before reading a byte.
:func:`compose_bounded` composes the YAML node tree with :class:`BoundedLoader`, a
``yaml.SafeLoader`` that stops at :data:`MAX_DEPTH` nested collections (the composer
recurses once per level: 10,000 levels would be a ``RecursionError``) and at
:data:`MAX_ALIASES` aliases, then counts the values the tree expands to with every
alias followed once per use (memoised per node, so linear in the file) and refuses a
tree of more than :data:`MAX_EXPANDED_VALUES` values (an alias bomb: nine levels of
nine aliases are 9⁹ values) or a recursive alias. Every refusal is a
:class:`BoundError` carrying the 1-based line it points at.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent

__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_EXPANDED_VALUES",
    "MAX_SUITE_BYTES",
    "BoundError",
    "BoundedLoader",
    "compose_bounded",
    "read_suite_text",
]

#: largest suite file read (bytes); real suites are a few kB
MAX_SUITE_BYTES = 1 << 20
#: deepest nesting of collections (real suites: under 10)
MAX_DEPTH = 100
#: most aliases (``*name``) in one suite
MAX_ALIASES = 10_000
#: most values (scalars and collections) the document may expand to, aliases followed
MAX_EXPANDED_VALUES = 100_000


class BoundError(ValueError):
    """Input beyond a bound of the suite loader; ``line`` is 1-based."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


def read_suite_text(path: str | os.PathLike) -> str:
    """The UTF-8 text of the regular file ``path``, refused (:class:`BoundError`, line 1)
    when it is not a regular file or larger than :data:`MAX_SUITE_BYTES`; ``OSError``
    and ``UnicodeDecodeError`` pass through."""
    p = Path(path)
    st = os.stat(p)  # follows symlinks: a link to /dev/zero is /dev/zero
    if stat.S_ISDIR(st.st_mode):
        raise BoundError(1, "the suite path is a folder, not a YAML file")
    if not stat.S_ISREG(st.st_mode):
        raise BoundError(
            1, "the suite is not a regular file (a device, FIFO or socket): it is not read"
        )
    if st.st_size > MAX_SUITE_BYTES:
        raise BoundError(
            1,
            f"the suite is {st.st_size:,} bytes, over the limit of {MAX_SUITE_BYTES:,} "
            "(a suite is a few kB of YAML)",
        )
    with open(p, "rb") as fh:
        data = fh.read(MAX_SUITE_BYTES + 1)  # the file may have grown since stat
    if len(data) > MAX_SUITE_BYTES:
        raise BoundError(1, f"the suite is over the limit of {MAX_SUITE_BYTES:,} bytes")
    return data.decode("utf-8")


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses deep nesting and too many aliases while composing
    (see the module docstring); ``alias_marks`` keeps where each alias was used."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self.depth = 0
        self.alias_marks: list[tuple[Any, Any]] = []  # (target node id, mark) per alias use

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # the scanner reads ahead of the composer, and its cost per token grows with the
        # number of open flow collections ('[[[[...'): stop it at the depth limit
        if self.flow_level >= MAX_DEPTH:
            line = self.get_mark().line + 1
            raise BoundError(
                line, f"nesting deeper than {MAX_DEPTH} levels (a suite needs fewer than 10)"
            )
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(AliasEvent):
            mark = self.peek_event().start_mark
            if len(self.alias_marks) >= MAX_ALIASES:
                raise BoundError(mark.line + 1, f"more than {MAX_ALIASES:,} aliases")
            node = super().compose_node(parent, index)
            self.alias_marks.append((id(node), mark))
            return node
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise BoundError(
                    mark.line + 1,
                    f"nesting deeper than {MAX_DEPTH} levels (a suite needs fewer than 10)",
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def compose_bounded(text: str) -> yaml.Node | None:
    """The YAML node tree of ``text`` (``None`` for an empty document), within the bounds
    of the module docstring; ``yaml.YAMLError`` for invalid YAML."""
    loader = BoundedLoader(text)
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()
    if root is not None and loader.alias_marks:
        _check_expansion(root, loader.alias_marks)
    return root


def _check_expansion(root: yaml.Node, alias_marks: list[tuple[Any, Any]]) -> None:
    """Refuse a tree expanding to over :data:`MAX_EXPANDED_VALUES` values, nested deeper
    than :data:`MAX_DEPTH` through aliases, or holding a cycle (``&a [*a]``)."""
    memo: dict[int, tuple[int, int]] = {}  # node id -> (expanded values, height)
    in_progress: set[int] = set()
    first_alias: dict[int, Any] = {}
    for target, mark in alias_marks:
        first_alias.setdefault(target, mark)

    def line_of(node: yaml.Node) -> int:
        return first_alias.get(id(node), node.start_mark).line + 1

    def expanded(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if depth > MAX_DEPTH:  # checked before recursing: the recursion stays shallow
            raise BoundError(
                line_of(node), f"nesting deeper than {MAX_DEPTH} levels through aliases"
            )
        if key in in_progress:
            raise BoundError(line_of(node), "a recursive alias (an anchor used inside itself)")
        if key not in memo:
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [x for kv in node.value for x in kv]
            else:
                children = []
            in_progress.add(key)
            total, height = 1, 1
            for child in children:
                n, h = expanded(child, depth + 1)
                total, height = total + n, max(height, h + 1)
                if total > MAX_EXPANDED_VALUES:
                    raise BoundError(
                        line_of(child),
                        f"the suite expands to more than {MAX_EXPANDED_VALUES:,} values "
                        "through its aliases (an alias bomb?)",
                    )
            in_progress.discard(key)
            memo[key] = (total, height)
        if depth + memo[key][1] - 1 > MAX_DEPTH:
            raise BoundError(
                line_of(node), f"nesting deeper than {MAX_DEPTH} levels through aliases"
            )
        return memo[key]

    expanded(root, 1)
