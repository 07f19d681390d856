"""Plugin discovery through pluggy: built-ins and entry points of the group ``simbench``.

The registry calls every implementation of every kind's hook separately so that each
plugin is attributed to the package that provides it; two plugins of one kind and name
are an error naming both packages, and an unknown name suggests the closest ones.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pluggy

from simbench import hookspecs
from simbench.errors import DuplicatePluginError, UnknownPluginError


@dataclass(frozen=True)
class PluginRecord:
    """One registered plugin: its kind, name, providing package and class."""

    kind: str
    name: str
    package: str
    version: str
    summary: str
    obj: type

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "package": self.package,
            "version": self.version,
            "summary": self.summary,
        }


def _summary(obj: Any) -> str:
    if hasattr(obj, "summary"):
        return obj.summary()
    doc = (obj.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def suggest(name: str, choices: list[str], n: int = 3) -> list[str]:
    """Closest names to ``name`` among ``choices`` (difflib ratio, case-insensitive)."""
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[c] for c in close]


class Registry:
    """All plugins visible to this process, indexed by ``(kind, name)``."""

    def __init__(self, *, entry_points: bool = True, extra: list[ModuleType] | None = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        if entry_points:
            self.pm.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP)
        from simbench import builtin

        if not self.pm.is_registered(builtin):  # running from a source tree, not installed
            self.pm.register(builtin, name="builtin")
        for module in extra or []:
            self.pm.register(module)
        self._records = self._collect()

    def _package_of(self, plugin: object) -> tuple[str, str]:
        from simbench import builtin

        if plugin is builtin:
            return "simbench", _version("simbench")
        for plug, dist in self.pm.list_plugin_distinfo():
            if plug is plugin:
                name = dist.metadata["name"]
                return name, dist.version
        module = getattr(plugin, "__name__", type(plugin).__name__)
        return module.split(".")[0], _version(module.split(".")[0])

    def _collect(self) -> dict[tuple[str, str], PluginRecord]:
        records: dict[tuple[str, str], PluginRecord] = {}
        for kind, hook_name in hookspecs.KIND_HOOKS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                package, version = self._package_of(impl.plugin)
                for obj in impl.function() or ():
                    name = getattr(obj, "name", "")
                    if not name:
                        raise TypeError(f"{package} registers a {kind} without a name: {obj!r}")
                    key = (kind, name)
                    if key in records:
                        raise DuplicatePluginError(
                            f"two packages register a {kind} named {name!r}: "
                            f"{records[key].package} and {package}. Uninstall one of them "
                            "or rename its plugin."
                        )
                    records[key] = PluginRecord(kind, name, package, version, _summary(obj), obj)
        return records

    def records(self, kind: str | None = None) -> list[PluginRecord]:
        """Every plugin record, optionally of one kind, sorted by kind then name."""
        if kind is not None and kind not in hookspecs.KINDS:
            close = suggest(kind, list(hookspecs.KINDS))
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownPluginError(
                f"unknown plugin kind {kind!r}.{hint} Kinds: {', '.join(hookspecs.KINDS)}."
            )
        order = {k: i for i, k in enumerate(hookspecs.KINDS)}
        out = [r for r in self._records.values() if kind is None or r.kind == kind]
        return sorted(out, key=lambda r: (order[r.kind], r.name))

    def names(self, kind: str) -> list[str]:
        return [r.name for r in self.records(kind)]

    def get(self, kind: str, name: str) -> PluginRecord:
        """The record of ``kind``/``name``; ``UnknownPluginError`` suggests the closest names."""
        try:
            return self._records[(kind, name)]
        except KeyError:
            known = self.names(kind)
            close = suggest(name, known)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            listing = ", ".join(known) if known else "none installed"
            raise UnknownPluginError(
                f"unknown {kind} {name!r}.{hint} Known {kind}s: {listing}."
            ) from None

    def resolve(self, kind: str, name: str) -> tuple[PluginRecord, dict[str, Any]]:
        """The record for ``name`` and the parameters its name carries.

        A parametric name ``prefix:argument`` (``timm:resnet18``) resolves to the plugin
        ``prefix`` when that class declares ``name_argument`` (here ``model_name``), which
        then receives ``argument``.
        """
        if (kind, name) not in self._records and ":" in name:
            prefix, argument = name.split(":", 1)
            rec = self._records.get((kind, prefix))
            field = getattr(rec.obj, "name_argument", None) if rec else None
            if rec is not None and field:
                return rec, {field: argument}
        return self.get(kind, name), {}

    def create(self, kind: str, name: str, **params: Any) -> Any:
        """Instantiate the plugin ``kind``/``name`` with validated ``params``."""
        rec, from_name = self.resolve(kind, name)
        clash = set(from_name) & set(params)
        if clash:
            raise ValueError(
                f"{name!r} already sets {', '.join(sorted(clash))}; do not pass it too"
            )
        return rec.obj(**from_name, **params)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The process-wide registry (built once; see :func:`reload`)."""
    return Registry()


def reload() -> Registry:
    """Rebuild the registry, e.g. after installing a plugin package in this process."""
    default_registry.cache_clear()
    return default_registry()
