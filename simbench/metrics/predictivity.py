"""Prediction-based metrics: cross-validated ridge regression R² and GULP.

Both are closed forms in the second moments, so neither needs the samples in memory.

**linear_regression** (Brain-Score / ReSi "linear regression"). For the direction X→Y
and fold ``k`` (sample ``i`` is in fold ``i mod K``, :mod:`simbench.numerics.folded`),
fit ridge regression with an intercept on the other folds — centred training scatters
``Sxx, Sxy``, training means ``μx, μy``::

    B = (Sxx + λ I)⁻¹ Sxy,   λ = α · tr(Sxx) / d_x,   ŷ(x) = μy + Bᵀ (x − μx)

(``α`` is relative to the mean eigenvalue of the training scatter, so the value does not
depend on the data's units; ``α = 0`` is least squares with the minimum-norm solution
when ``Sxx`` is singular). On the held-out fold, with its own centred scatters
``Hxx, Hxy, Hyy``, size ``n_k`` and mean offsets ``δx = x̄_k − μx``, ``δy = ȳ_k − μy``,
the residual ``(ỹ − Bᵀx̃) + (δy − Bᵀδx)`` (tildes: centred on the fold's means) has a
first part summing to zero over the fold, so exactly::

    SS_res,k = tr Hyy − 2 tr(Bᵀ Hxy) + tr(Bᵀ Hxx B) + n_k ‖δy − Bᵀ δx‖²
    SS_tot,k = tr Hyy                      (deviations from the fold's own mean)

    R² = 1 − Σ_k SS_res,k / Σ_k SS_tot,k

pooled over folds and over output dimensions, i.e. variance-weighted (scikit-learn's
``r2_score(..., multioutput="variance_weighted")`` per fold, with sums instead of a
per-fold average). R² ≤ 1; it is about 0 (slightly negative: the fitted noise adds to
the error) for independent X and Y, and can be far below 0 when the fit overfits.
``folds=1`` scores in sample (train = test = all samples): with ``alpha=0`` this is
ReSi's ``linear_reg`` (``‖Q_Xᵀ Yc‖²_F / ‖Yc‖²_F`` with ``Q_X`` an orthonormal basis of
the centred X; note ReSi's argument order: ``linear_reg(R, Rp)`` predicts ``R`` from
``Rp``). ``direction="both"`` averages X→Y and Y→X.

**gulp** (Boix-Adserà, Lawrence, Stepaniants & Rigollet 2022; the authors'
``predictor_dist`` in sgstepaniants/GULP). Each side is centred and scaled to unit total
variance (the authors' ``rep·√n/‖rep‖_F`` on centred data: ``Σ = S / tr S``). With
``Σx, Σy, Σxy`` (``1/n`` covariances of the normalised data) and ridge ``λ``::

    d²_λ = tr[(Σx(Σx+λI)⁻¹)²] + tr[(Σy(Σy+λI)⁻¹)²] − 2 tr[(Σx+λI)⁻¹ Σxy (Σy+λI)⁻¹ Σyx]

which is ``‖H_X − H_Y‖²_F`` for the ridge prediction ("hat") operators
``H_X = X (XᵀX/n + λI)⁻¹ Xᵀ / n`` of the two normalised representations: the squared
distance between their λ-ridge linear predictors, summed over targets. The metric is
``d_λ = √d²_λ`` (the paper's distance, which satisfies the triangle inequality; the
authors' function returns ``d²_λ``: ``squared=True``). ``λ`` is relative to the total
variance (the authors' normalisation). With ``λ = 0`` the inverses are pseudo-inverses
(eigenvalues below the rounding floor are dropped) and ``d²_0 = r_x + r_y − 2 Σ ρᵢ²``
(ranks and canonical correlations).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.linalg
from pydantic import NonNegativeFloat, conint

from simbench.metrics.base import Metric
from simbench.metrics.prepared import PreparedMoments
from simbench.numerics.cca import ridge
from simbench.numerics.folded import FoldedMoments
from simbench.numerics.moments import Moments
from simbench.plugin import ALL_INVARIANCES, Invariance, Score

_EPS = float(np.finfo(np.float64).eps)
#: with no ridge, scatter eigenvalues below ``_RANK_FACTOR · d · ε · max`` are treated as
#: zero (the rounding floor of a Gram-based quantity; as in :mod:`simbench.numerics.cca`)
_RANK_FACTOR = 100.0
_NOT_LINEAR = ALL_INVARIANCES - {Invariance.INVERTIBLE_LINEAR}


def _inverse_spectrum(s: np.ndarray, lam: float) -> np.ndarray:
    """``1/(s + λ)`` for ``λ > 0``; the pseudo-inverse spectrum (``1/s`` or 0) for ``λ = 0``."""
    if lam > 0:
        return 1.0 / (s + lam)
    keep = s > _RANK_FACTOR * s.size * _EPS * float(s.max(initial=0.0))
    return np.where(keep, 1.0 / np.where(keep, s, 1.0), 0.0)


def ridge_coefficients(sxx: np.ndarray, sxy: np.ndarray, alpha: float) -> np.ndarray:
    """``B = (Sxx + λI)⁻¹ Sxy`` with ``λ = α·tr(Sxx)/d`` (module docstring).

    ``α = 0`` gives the minimum-norm least-squares coefficients (pseudo-inverse of
    ``Sxx``, eigenvalues at the rounding floor dropped).
    """
    if alpha > 0:
        try:
            factor = scipy.linalg.cho_factor(ridge(sxx, alpha), lower=True, check_finite=False)
            return scipy.linalg.cho_solve(factor, sxy, check_finite=False)
        except np.linalg.LinAlgError:
            pass  # not numerically positive definite (α at rounding level): eigen route
    s, V = np.linalg.eigh(sxx)
    s = np.maximum(s, 0.0)
    lam = alpha * float(s.sum()) / s.size
    return V @ (_inverse_spectrum(s, lam)[:, None] * (V.T @ sxy))


def is_constant(m: Moments, side: Literal["x", "y"] = "x") -> bool:
    """Every column's variance is at the rounding level of its squared mean (or zero).

    The criterion of :func:`simbench.numerics.cca.cholesky_factor`: centring a constant
    column leaves rounding noise of about ``ε·|mean|`` per entry, not exact zeros.
    """
    S, mean = (m.sxx, m.mean_x) if side == "x" else (m.syy, m.mean_y)
    return bool(np.all(np.diag(S) <= 1e3 * _EPS * m.n * mean**2))


def _check_variance(m: Moments, where: str, names: tuple[str, str]) -> None:
    if is_constant(m, "x"):
        raise ValueError(
            f"{names[0]} (the predictor) is constant on {where}: the regression is undefined"
        )


def cv_r2(parts: list[Moments], alpha: float, names: tuple[str, str] = ("X", "Y")) -> float:
    """Pooled held-out R² of ridge regression from X to Y over folds (module docstring).

    ``parts`` are the folds' paired moments (X the predictor); one part means in-sample.
    """
    ss_res = ss_tot = 0.0
    for k, test in enumerate(parts):
        if len(parts) == 1:
            train = test
        else:
            train = Moments()
            for j, part in enumerate(parts):
                if j != k:
                    train.merge(part)
        _check_variance(train, "the training folds" if len(parts) > 1 else "the data", names)
        B = ridge_coefficients(train.sxx, train.sxy, alpha)
        r = (test.mean_y - train.mean_y) - B.T @ (test.mean_x - train.mean_x)
        tot = float(np.trace(test.syy))
        res = (
            tot
            - 2.0 * float(np.vdot(B, test.sxy))
            + float(np.vdot(B, test.sxx @ B))
            + test.n * float(r @ r)
        )
        ss_res += max(res, 0.0)  # a sum of squares: clip rounding below zero
        ss_tot += tot
    if not ss_tot > 0:
        raise ValueError(f"{names[1]} (the target) is constant within folds: R² is undefined")
    return 1.0 - ss_res / ss_tot


class LinearRegression(Metric):
    """Cross-validated ridge regression R² between representations (Brain-Score/ReSi).

    Pooled held-out R² ``1 − Σ SS_res / Σ SS_tot`` over ``folds`` interleaved folds
    (sample ``i`` in fold ``i mod folds``) and over output dimensions (variance-weighted);
    ``folds=1`` is in-sample R² (ReSi's ``linear_reg`` when ``alpha=0``). ``alpha`` is the
    ridge relative to the mean eigenvalue of the training scatter. ``direction`` is
    ``"x_to_y"`` (predict Y from X), ``"y_to_x"`` or ``"both"`` (their mean; symmetric).
    Streams through :meth:`accumulator` (a :class:`FoldedMoments`, ``O(folds·d²)``
    memory); ``streaming`` is False because a single pooled :class:`Moments` (what the
    runner streams) cannot be cross-validated. ``details``: the R² of each direction.
    """

    name = "linear_regression"
    symmetric = True
    higher_is_better = True
    invariances = _NOT_LINEAR
    streaming = False
    cost = "moments"

    def __init__(
        self,
        folds: conint(ge=1) = 5,  # type: ignore[valid-type]
        alpha: NonNegativeFloat = 1e-2,
        direction: Literal["x_to_y", "y_to_x", "both"] = "both",
    ) -> None:
        self.folds = folds
        self.alpha = alpha
        self.direction = direction
        self.symmetric = direction == "both"  # type: ignore[misc]
        # every held-out fold needs two samples, every training set variance
        self.min_samples = max(2, 2 * folds)  # type: ignore[misc]

    def accumulator(self) -> FoldedMoments:  # type: ignore[override]
        """An empty :class:`FoldedMoments` to ``update(xb, yb)`` batch by batch."""
        return FoldedMoments(self.folds)

    def evaluate(self, X: Any, Y: Any | None = None) -> Score:
        if isinstance(X, FoldedMoments):
            if Y is not None:
                raise TypeError("pass the accumulator alone: metric(acc)")
            return self._from_folded(X)
        if isinstance(X, Moments):
            raise TypeError(
                f"{self.name} cross-validates, which pooled Moments cannot do: stream the "
                "batches into metric.accumulator() (a FoldedMoments) instead"
            )
        return super().evaluate(X, Y)

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> Score:
        return self._from_folded(FoldedMoments.from_arrays(X, Y, self.folds, validated=True))

    def _from_folded(self, fm: FoldedMoments) -> Score:
        if fm.folds != self.folds:
            raise ValueError(f"the accumulator has {fm.folds} folds; this metric uses {self.folds}")
        if fm.n < self.min_samples:
            raise ValueError(
                f"{self.name} with {self.folds} fold(s) needs at least {self.min_samples} "
                f"samples; got {fm.n}"
            )
        pooled = fm.pooled()
        for side, name in (("x", "X"), ("y", "Y")):
            if is_constant(pooled, side):  # type: ignore[arg-type]
                raise ValueError(f"{name} is constant: {self.name} is undefined")
        details: dict[str, float] = {}
        if self.direction in ("x_to_y", "both"):
            details["x_to_y"] = cv_r2(fm.parts, self.alpha, ("X", "Y"))
        if self.direction in ("y_to_x", "both"):
            swapped = [p.swapped() for p in fm.parts]
            details["y_to_x"] = cv_r2(swapped, self.alpha, ("Y", "X"))
        return Score(float(np.mean(list(details.values()))), details=details)


def gulp_squared(m: Moments, lam: float) -> float:
    """GULP ``d²_λ`` from paired moments (module docstring)."""
    for side in ("x", "y"):
        if is_constant(m, side):  # type: ignore[arg-type]
            raise ValueError(f"{side.upper()} is constant: GULP is undefined")
    tx, ty = float(np.trace(m.sxx)), float(np.trace(m.syy))
    sx, Vx = np.linalg.eigh(m.sxx / tx)
    sy, Vy = np.linalg.eigh(m.syy / ty)
    sx, sy = np.maximum(sx, 0.0), np.maximum(sy, 0.0)
    ix, iy = _inverse_spectrum(sx, lam), _inverse_spectrum(sy, lam)
    t1 = float(np.sum((sx * ix) ** 2))
    t2 = float(np.sum((sy * iy) ** 2))
    # (Σx+λ)^{-1/2} Σxy (Σy+λ)^{-1/2} in the eigenbases; T3 is its squared Frobenius norm
    M = (Vx.T @ m.sxy @ Vy) / np.sqrt(tx * ty)
    M *= np.sqrt(ix)[:, None]
    M *= np.sqrt(iy)[None, :]
    return t1 + t2 - 2.0 * float(np.sum(M * M))


class GULP(PreparedMoments, Metric):
    """GULP distance between λ-ridge linear predictors (Boix-Adserà et al. 2022).

    ``d_λ = √(tr[(Σx(Σx+λ)⁻¹)²] + tr[(Σy(Σy+λ)⁻¹)²] − 2 tr[(Σx+λ)⁻¹Σxy(Σy+λ)⁻¹Σyx])`` on
    centred data scaled to unit total variance (the authors' normalisation; ``lam`` is in
    those units). ``squared=True`` returns ``d²_λ``, the value of the authors'
    ``predictor_dist``. Streams from :class:`Moments`. With ``lam=0`` it is also invariant
    to invertible linear maps.
    """

    name = "gulp"
    symmetric = True
    higher_is_better = False
    invariances = _NOT_LINEAR
    streaming = True
    cost = "moments"

    def __init__(self, lam: NonNegativeFloat = 1e-2, squared: bool = False) -> None:
        self.lam = lam
        self.squared = squared

    def claimed_invariances(self) -> frozenset[Invariance]:
        return ALL_INVARIANCES if self.lam == 0 else self.invariances

    def _from_moments(self, m: Moments) -> float:
        d2 = max(gulp_squared(m, self.lam), 0.0)  # a squared distance: clip rounding
        return d2 if self.squared else float(np.sqrt(d2))
