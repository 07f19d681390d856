"""Exceptions raised by simbench (all subclass a builtin so callers can catch broadly)."""

from __future__ import annotations


class SimbenchError(Exception):
    """Base class of simbench's own errors."""


class UnknownPluginError(SimbenchError, LookupError):
    """A plugin name that no installed package registers; the message suggests the closest."""


class DuplicatePluginError(SimbenchError, ValueError):
    """Two packages register a plugin of the same kind and name."""


class NotFittedError(SimbenchError, AttributeError):
    """An alignment was used before ``fit``."""
