"""``-o key.path=value`` overrides of a suite, as Hydra users expect.

``key.path`` names a key of the suite by dots (list items by their 0-based index:
``models.0.seed``); ``value`` is read as YAML (``3`` an int, ``null`` None,
``[cka, svcca]`` a list, ``{draws: 8}`` a mapping). The overrides are applied to the
file's data in order, then the result is validated exactly as a file
(:func:`simbench.suite.parse_suite`): a problem of an overridden key names the override
(``-o probe.images=abc: probe.images: ...``), the others keep their file line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from simbench.suite import Problem, Suite, SuiteError, _Doc, parse_suite
from simbench.suite_yaml import BoundError, read_suite_text

__all__ = ["Override", "apply_overrides", "format_problems", "load_with_overrides", "parse"]

#: the ``file`` of a problem that an override caused starts with this
OVERRIDE_PREFIX = "-o "


class Override:
    """One parsed ``key.path=value``: ``loc`` (keys and list indices) and ``value``."""

    def __init__(self, text: str, loc: tuple[Any, ...], value: Any):
        self.text, self.loc, self.value = text, loc, value

    @property
    def key(self) -> str:
        return ".".join(map(str, self.loc))


def parse(text: str) -> Override:
    """``"probe.images=500"`` -> ``Override(loc=("probe", "images"), value=500)``.

    Raises :class:`SuiteError` for a text without ``=``, an empty key part, or a value
    that is not YAML."""

    def bad(why: str) -> SuiteError:
        return SuiteError([Problem(0, "", why, OVERRIDE_PREFIX + text)])

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise bad("an override is KEY.PATH=VALUE, e.g. probe.images=500")
    parts = key.split(".")
    if any(not p for p in parts):
        raise bad(f"empty key in {key!r}")
    loc = tuple(int(p) if p.isdigit() else p for p in parts)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise bad(f"the value is not YAML: {str(exc).splitlines()[0]}") from None
    return Override(text, loc, value)


def apply_overrides(data: Any, overrides: Sequence[Override]) -> Any:
    """``data`` (the file's mapping) with every override set, in order (mappings on the
    way are created; a list item must exist). Raises :class:`SuiteError` naming the
    override whose path cannot be followed."""
    for o in overrides:
        if not isinstance(data, dict):
            raise SuiteError(
                [Problem(0, "", "the suite is not a mapping", OVERRIDE_PREFIX + o.text)]
            )
        cur: Any = data
        for i, el in enumerate(o.loc):
            last = i == len(o.loc) - 1
            where = ".".join(map(str, o.loc[: i + 1]))
            if isinstance(cur, list):
                if not isinstance(el, int) or not 0 <= el < len(cur):
                    why = f"{where}: no item {el} in a list of {len(cur)}"
                    raise SuiteError([Problem(0, "", why, OVERRIDE_PREFIX + o.text)])
            elif isinstance(cur, dict):
                el = str(el)
                if not last and not isinstance(cur.get(el), dict | list):
                    cur[el] = {}
            else:
                why = f"{'.'.join(map(str, o.loc[:i]))} is a value, not a mapping or list"
                raise SuiteError([Problem(0, "", why, OVERRIDE_PREFIX + o.text)])
            if last:
                cur[el] = o.value
            else:
                cur = cur[el]
    return data


def _under(path: str, override: Override) -> bool:
    """Whether a problem at ``path`` concerns what ``override`` set (one is a prefix of
    the other)."""
    a, b = path.split("."), override.key.split(".")
    n = min(len(a), len(b))
    return bool(path) and a[:n] == b[:n]


def load_with_overrides(
    path: str | os.PathLike,
    overrides: Sequence[str],
    *,
    text: str | None = None,
    base_dir: str | os.PathLike | None = None,
    registry: Any = None,
) -> Suite:
    """Load the suite ``path`` (or its ``text``, relative paths against ``base_dir``,
    default the file's folder) with ``overrides`` (``key.path=value`` strings) applied.

    The file is checked as YAML first (its own line numbers); then the overridden data is
    validated like a file. Raises :class:`SuiteError`: problems of an overridden key are
    reported against the override, the others at their line of the file."""
    p = Path(path)
    file = str(p)
    if text is None:
        try:
            text = read_suite_text(p)
        except BoundError as exc:
            raise SuiteError([Problem(exc.line, "", str(exc), file)]) from None
        except OSError as exc:
            raise SuiteError(
                [Problem(0, "", f"cannot read the suite: {exc.strerror}", file)]
            ) from None
        except UnicodeDecodeError:
            raise SuiteError([Problem(0, "", "the suite is not UTF-8 text", file)]) from None
    base = Path(base_dir) if base_dir is not None else p.resolve().parent
    if not overrides:
        return parse_suite(text, file=file, base_dir=base, registry=registry)
    parsed = [parse(o) for o in overrides]
    doc = _Doc(text, file)  # YAML errors and limits of the file itself, with its lines
    data = apply_overrides(doc.data if doc.data is not None else {}, parsed)
    merged = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    try:
        return parse_suite(merged, file=file, base_dir=base, registry=registry)
    except SuiteError as exc:
        problems = []
        for pr in exc.problems:
            hit = next((o for o in reversed(parsed) if _under(pr.path, o)), None)
            if hit is not None:
                problems.append(Problem(0, pr.path, pr.message, OVERRIDE_PREFIX + hit.text))
                continue
            loc = [int(x) if x.isdigit() else x for x in pr.path.split(".")] if pr.path else []
            problems.append(Problem(doc.locate(loc), pr.path, pr.message, file))
        raise SuiteError(problems) from None


def format_problems(exc: SuiteError) -> str:
    """The problems one a line: ``FILE:LINE: key: what`` for the file's,
    ``-o KEY=VALUE: key: what`` for an override's."""
    lines = []
    for p in exc.problems:
        if p.file.startswith(OVERRIDE_PREFIX):
            lines.append(f"{p.file}: {p.path}: {p.message}" if p.path else f"{p.file}: {p.message}")
        else:
            lines.append(str(p))
    return "\n".join(lines)
