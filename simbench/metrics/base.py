"""The metric protocol (DESIGN.md: plugin kinds; hookspec ``simbench_register_metrics``).

A metric class declares what it consumes, its symmetry, direction, claimed
invariances and cost, and takes its parameters in ``__init__``. Subclasses implement
``_compute(X, Y)`` on validated float64 arrays, and streaming metrics also
``_from_moments(m)`` on a :class:`~simbench.numerics.moments.Moments`.
"""

from __future__ import annotations

import functools
import math
from enum import Enum
from typing import Any, ClassVar

import numpy as np

from simbench.numerics.arrays import ArrayLike, as_matrix, check_paired, is_torch
from simbench.numerics.blocks import BlockMoments
from simbench.numerics.moments import Moments
from simbench.numerics.scaling import LIMIT_EXP, max_abs, rescale_pow2
from simbench.plugin import Invariance, Plugin, Score


class Consumes(str, Enum):
    """What a metric scores."""

    REPRESENTATIONS = "representations"  # (n, d) activations of two layers on the same inputs
    WEIGHTS = "weights"  # weight matrices / normalised weight covariances (aligned)


class Metric(Plugin):
    """Base class of every metric: ``metric(X, Y) -> float``."""

    kind: ClassVar[str] = "metric"
    consumes: ClassVar[Consumes] = Consumes.REPRESENTATIONS
    symmetric: ClassVar[bool] = True
    higher_is_better: ClassVar[bool] = True
    invariances: ClassVar[frozenset[Invariance]] = frozenset()
    #: accepts batch-accumulated statistics (``Moments``); memory independent of n
    streaming: ClassVar[bool] = False
    #: needs the fourth-order sums of ``Moments(fourth=True)`` when streaming
    streaming_fourth: ClassVar[bool] = False
    #: True when the score is only meaningful after an alignment (weights metrics)
    needs_alignment: ClassVar[bool] = False
    #: "moments" O(n d²), "gram" O(n² d), "weights" O(d³), "cheap"
    cost: ClassVar[str] = "moments"
    #: smallest number of samples the metric is defined for
    min_samples: ClassVar[int] = 2
    #: dimensions of one input: 2 for (n, d) matrices, 4 for (B, C, H, W) conv activations
    input_ndim: ClassVar[int] = 2
    #: ``(smallest, largest)`` magnitude ``max |X|`` of a representation input at which the
    #: metric computes accurately in float64; outside it (all-zero inputs aside) ``evaluate``
    #: raises ``ValueError`` naming the scale. Not applied to metrics claiming
    #: ``ISOTROPIC_SCALING``: ``evaluate`` rescales their inputs exactly (by ``2^k``), so
    #: any finite scale works. A metric whose products are of higher order narrows it.
    input_scale_range: ClassVar[tuple[float, float]] = (1e-100, 1e100)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a plugin that overrides evaluate still gets ``uncertainty=True`` for free
        ev = cls.__dict__.get("evaluate")
        if ev is not None and not getattr(ev, "_simbench_uncertainty", False):
            cls.evaluate = _with_uncertainty(ev)  # type: ignore[method-assign]

    # -- public API ---------------------------------------------------------------
    def __call__(self, X: Any, Y: Any | None = None) -> float:
        """The score as a float (``evaluate(X, Y).value``)."""
        return self.evaluate(X, Y).value

    def evaluate(self, X: Any, Y: Any | None = None) -> Score:
        """The score with its standard error where the metric has one.

        ``X`` and ``Y`` are ``(n, d)`` numpy arrays or torch tensors (any device), or
        ``X`` is a paired :class:`Moments` and ``Y`` is omitted (streaming metrics).
        ``uncertainty=True`` (or an :class:`~simbench.uncertainty.Uncertainty`, or a dict
        of its fields) adds the block-jackknife standard error, 95 % interval and the
        derangement null (:func:`simbench.uncertainty.evaluate_with_uncertainty`); ``X``
        may then also be a :class:`~simbench.numerics.blocks.BlockMoments`.
        """
        if isinstance(X, BlockMoments):
            X = X.total()
        if isinstance(X, Moments):
            if Y is not None:
                raise TypeError("pass Moments alone: metric(moments)")
            return self._checked(self.score_moments, X)
        if Y is None:
            raise TypeError(f"{self.name} needs two arguments: metric(X, Y)")
        if self.consumes is Consumes.REPRESENTATIONS:
            X, Y = self.validate(X, Y)
            if all(isinstance(a, np.ndarray) for a in (X, Y)):
                X, Y = self._fit_scale(X, "X"), self._fit_scale(Y, "Y")
        return self._checked(self._compute, X, Y)

    def _checked(self, fn: Any, *args: Any) -> Score:
        """``fn(*args)`` as a :class:`Score`; a LAPACK failure or a NaN becomes a
        ``ValueError`` that says so (never LAPACK's text, never a silent NaN)."""
        try:
            score = _as_score(fn(*args))
        except np.linalg.LinAlgError:
            raise ValueError(
                f"{self.name}: an eigen- or singular-value decomposition failed to converge on "
                "these inputs: they are extremely ill-conditioned or of extreme magnitude"
            ) from None
        if math.isnan(score.value):
            raise ValueError(
                f"{self.name} gave NaN on these inputs: a float64 overflow or a 0/0 inside the "
                "metric (a bug: please report it)"
            )
        return score

    def _fit_scale(self, A: np.ndarray, name: str) -> np.ndarray:
        """``A`` exactly rescaled by ``2^k`` (scale-invariant metrics), or checked against
        :attr:`input_scale_range` (others)."""
        on_torch = is_torch(A)  # a prepare on a torch tensor: see numerics.torch_ops
        if on_torch:
            from simbench.numerics.torch_ops import max_abs_t, rescale_pow2_t
        if Invariance.ISOTROPIC_SCALING in self.claimed_invariances():
            # exact: products of 1e±200 inputs neither overflow nor underflow, and the
            # value is that of the unit-scale input
            return rescale_pow2_t(A, LIMIT_EXP) if on_torch else rescale_pow2(A)
        lo, hi = self.input_scale_range
        top = max_abs_t(A) if on_torch else max_abs(A)
        if top != 0.0 and not lo <= top <= hi:
            raise ValueError(
                f"{name} has max |value| = {top:.3g}, outside the range [{lo:.0e}, {hi:.0e}] "
                f"where {self.name} (not invariant to scaling) computes in float64 without "
                "overflow or underflow: change the inputs' units"
            )
        return A

    def analytic_stderr(self, X: Any, Y: Any | None = None) -> float | None:
        """An analytic standard error replacing the block jackknife (``None``: use it).

        Called with the arguments given to ``evaluate(..., uncertainty=True)``.
        """
        return None

    def chance_level(self, X: Any, Y: Any, score: Score) -> tuple[float, float] | None:
        """``(null_mean, null_sd)`` of a metric with its own zero point (weight metrics);
        ``None``: representation metrics use the derangement null instead."""
        return None

    def validate(self, X: ArrayLike, Y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Convert to float64 ``(n, d)`` arrays, raising ``ValueError`` on bad input."""
        Xa = as_matrix(X, "X", min_rows=self.min_samples)
        Ya = as_matrix(Y, "Y", min_rows=self.min_samples)
        check_paired(Xa, Ya)
        return Xa, Ya

    def accumulator(self) -> Moments:
        """An empty :class:`Moments` of the kind this metric reads when streaming."""
        if not self.streaming:
            raise TypeError(f"metric {self.name!r} needs the full matrices; it does not stream")
        return Moments(fourth=self.streaming_fourth)

    def score_moments(self, m: Moments) -> Score | float:
        """Score from batch-accumulated statistics (streaming metrics only)."""
        if not self.streaming:
            raise TypeError(f"metric {self.name!r} needs the full matrices; it does not stream")
        if not m.paired:
            raise ValueError("the moments must be accumulated on paired (X, Y) batches")
        if m.n < self.min_samples:
            raise ValueError(f"{self.name} needs at least {self.min_samples} samples; got {m.n}")
        if self.streaming_fourth and not m.fourth:
            raise ValueError(f"{self.name} needs Moments(fourth=True) when streaming")
        return self._from_moments(m)

    # -- per-representation precomputation (COORD.md §3; many-model scoring) ----------
    def prepare(self, X: Any) -> Any:
        """What the metric can compute from one representation alone, reused across pairs.

        ``None`` (the default): not supported, score pairs with :meth:`evaluate`. A metric
        that overrides it returns an opaque object (e.g. a centred Gram matrix, a side's
        moments) that :meth:`score_prepared` combines with another one; the value equals
        ``evaluate(X, Y).value`` to 1e-12 (tests/test_prepared.py). It may also return
        ``None`` for inputs where it does not pay (then use :meth:`evaluate`).
        """
        return None

    def score_prepared(self, pa: Any, pb: Any) -> Score:
        """The score of the pair whose sides ``prepare`` returned ``pa`` and ``pb``."""
        raise TypeError(f"metric {self.name!r} has no per-representation precomputation")

    def _prepared_input(self, X: Any, name: str = "X") -> np.ndarray:
        """One representation as ``evaluate`` sees it: validated float64 ``(n, d)``,
        exactly rescaled (scale-invariant metrics) or checked against the scale range.
        A torch tensor stays a tensor on its device (:mod:`simbench.numerics.torch_ops`)."""
        if is_torch(X):
            from simbench.numerics.torch_ops import as_matrix_t

            return self._fit_scale(as_matrix_t(X, name, self.min_samples), name)
        return self._fit_scale(as_matrix(X, name, min_rows=self.min_samples), name)

    def claimed_invariances(self) -> frozenset[Invariance]:
        """Invariances this instance claims; the class's unless they depend on parameters."""
        return self.invariances

    @classmethod
    def info(cls) -> dict[str, Any]:
        """Declared metadata, for ``simbench list`` and the leaderboard."""
        return {
            "name": cls.name,
            "consumes": cls.consumes.value,
            "symmetric": cls.symmetric,
            "higher_is_better": cls.higher_is_better,
            "invariances": sorted(i.value for i in cls.invariances),
            "streaming": cls.streaming,
            "needs_alignment": cls.needs_alignment,
            "cost": cls.cost,
            "input_ndim": cls.input_ndim,
            "params": {k: repr(v) for k, v in cls.param_defaults().items()},
        }

    @classmethod
    def example_inputs(cls, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A small valid, related input pair; the registry-wide tests run every metric on it.

        Axis 1 is the feature axis that invariance transforms act on. Override for
        metrics with other inputs (e.g. 4-D conv activations).
        """
        if cls.consumes is Consumes.WEIGHTS:
            # spiked weights in init-variance units (MATH.md: normalised covariance):
            # W = σ G (I + V diag(l) Vᵀ)^½ with σ² = 1/(3 d_in), PyTorch's default init
            n_out, d_in, k = 96, 24, 4
            V = np.linalg.qr(rng.normal(size=(d_in, k)))[0]
            root = np.eye(d_in) + V @ np.diag(np.sqrt(1.0 + np.array([40.0, 25, 15, 9])) - 1) @ V.T
            sigma = np.sqrt(1.0 / (3 * d_in))
            W1 = sigma * rng.normal(size=(n_out, d_in)) @ root
            W2 = sigma * rng.normal(size=(n_out, d_in)) @ root
            return W1, W2
        n, dx, dy, k = 120, 8, 6, 4
        Z = rng.normal(size=(n, k))
        X = Z @ rng.normal(size=(k, dx)) + 0.5 * rng.normal(size=(n, dx))
        Y = Z @ rng.normal(size=(k, dy)) + 0.5 * rng.normal(size=(n, dy))
        return X, Y

    # -- to implement ---------------------------------------------------------------
    def _compute(self, X: np.ndarray, Y: np.ndarray) -> Score | float:
        if self.streaming:
            return self._from_moments(
                Moments.from_arrays(X, Y, fourth=self.streaming_fourth, validated=True)
            )
        raise TypeError(f"{type(self).__name__} defines neither _compute nor streaming=True")

    def _from_moments(self, m: Moments) -> Score | float:
        raise TypeError(f"{type(self).__name__} sets streaming=True but lacks _from_moments")


def _with_uncertainty(fn: Any) -> Any:
    """Wrap an ``evaluate`` so that ``uncertainty=...`` is handled before it is called."""

    @functools.wraps(fn)
    def evaluate(self: Metric, X: Any, Y: Any | None = None, *, uncertainty: Any = False) -> Score:
        if uncertainty is not False and uncertainty is not None:
            from simbench.uncertainty import evaluate_with_uncertainty

            return evaluate_with_uncertainty(self, X, Y, uncertainty)
        return fn(self, X, Y)

    evaluate._simbench_uncertainty = True  # type: ignore[attr-defined]
    return evaluate


Metric.evaluate = _with_uncertainty(Metric.evaluate)  # type: ignore[method-assign]


def _as_score(value: Score | float) -> Score:
    if isinstance(value, Score):
        return value
    return Score(float(value))
