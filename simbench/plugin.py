"""What every plugin class shares: a name, a one-line summary, validated parameters.

Parameters live in ``__init__`` (netrep/scikit-learn style): every keyword argument is
stored under the same attribute name and validated by pydantic from its type hint,
so a wrong type or value is a ``ValueError`` naming the parameter.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import pydantic


class Invariance(str, Enum):
    """Transforms of one argument under which a metric may claim to be unchanged."""

    PERMUTATION = "permutation"
    ORTHOGONAL = "orthogonal"
    ISOTROPIC_SCALING = "isotropic_scaling"
    INVERTIBLE_LINEAR = "invertible_linear"
    TRANSLATION = "translation"


ALL_INVARIANCES: frozenset[Invariance] = frozenset(Invariance)


@dataclass(frozen=True)
class Score:
    """A metric value with its standard error (``None`` if not estimated) and details.

    A plain evaluation's ``stderr`` is the metric's own Monte-Carlo error (``None`` if
    deterministic). ``metric.evaluate(X, Y, uncertainty=True)`` also fills (MATH.md:
    Uncertainty and chance of one score) ``stderr`` (block jackknife combined with the
    Monte-Carlo error), ``ci`` (95 % interval), and the chance level of the score:
    ``null_mean``, ``null_sd`` over seeded derangements of the probe images and
    ``z = (value − null_mean)/sqrt(null_sd² + stderr²)``.
    """

    value: float
    stderr: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    ci: tuple[float, float] | None = None
    null_mean: float | None = None
    null_sd: float | None = None
    z: float | None = None

    def __float__(self) -> float:
        return float(self.value)


class Plugin:
    """Base of every plugin class: metrics, alignments, shrinkages (and #3/#4 kinds)."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    #: for parametric names ``name:argument`` (e.g. ``timm:resnet18``), the ``__init__``
    #: parameter that receives ``argument``; ``None`` when the plugin takes no such name
    name_argument: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_simbench_validated", False):
            wrapped = pydantic.validate_call(
                config=pydantic.ConfigDict(arbitrary_types_allowed=True)
            )(init)
            wrapped._simbench_validated = True  # type: ignore[attr-defined]
            cls.__init__ = wrapped  # type: ignore[method-assign]

    @classmethod
    def summary(cls) -> str:
        """First line of the class docstring."""
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """Parameters of ``__init__`` and their defaults (``inspect.Parameter.empty`` if none)."""
        sig = inspect.signature(cls.__init__)
        return {
            k: p.default
            for k, p in sig.parameters.items()
            if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def get_params(self) -> dict[str, Any]:
        """Current parameter values (each stored under its own name by ``__init__``)."""
        return {k: getattr(self, k) for k in self.param_defaults()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
