"""Similarity of aligned weight covariances (MATH.md: Weight-covariance similarity; GM 3.2).

Inputs are two weight matrices ``(n_out, d_in)`` (or conv weights ``(C_out, C_in, k, k)``)
already expressed in a common input basis (MATH.md: pulling weights back), or two
:class:`~simbench.numerics.covariance.WeightCovariance`. Each is turned into its shrunk
normalised covariance ``C = WᵀW/(n_out σ²_init)`` and compared.

Invariances are those of the *weights* ``W`` under transforms of their input (feature)
axis, ``W ↦ W M``, i.e. ``C ↦ MᵀCM``. Rotating or permuting one network's input basis
changes every comparison of eigenvectors, hence no orthogonal/permutation invariance
for the pairwise covariance comparisons; the shrinkage is not homogeneous (the
noise-bulk edge is fixed in init-variance units), so isotropic scaling is only an
invariance without shrinkage (``shrinkage="none"``) and for scale-free quantities.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field

from simbench.metrics.base import Consumes, Metric
from simbench.numerics.covariance import (
    WeightCovariance,
    _cos_core,
    _get_shrinker,
    _haar_core,
    bures_cosine,
    bures_cosine_unshrunk,
    eigenvector_similarity,
    normalized_bures,
)
from simbench.numerics.moments import Moments
from simbench.plugin import Invariance, Score

PositiveVar = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _WeightMetric(Metric):
    """Shared input handling of the weight-covariance metrics (not registered: no name)."""

    consumes: ClassVar[Consumes] = Consumes.WEIGHTS
    needs_alignment: ClassVar[bool] = True
    cost: ClassVar[str] = "weights"
    min_samples: ClassVar[int] = 1
    #: claims with the default (GM) shrinkage / without shrinkage (``"none"``)
    invariances_unshrunk: ClassVar[frozenset[Invariance]] = frozenset()

    def _set_common(
        self, init_var: PositiveVar | tuple[PositiveVar, PositiveVar] | None, shrinkage: str
    ) -> None:
        self.init_var = init_var
        self.shrinkage = shrinkage
        _get_shrinker(shrinkage)  # unknown name -> ValueError now, not at the first call

    @classmethod
    def example_inputs(cls, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Two independent draws of one spiked weight distribution (init-variance units).

        ``W = σ G (I + V diag(l) Vᵀ)^½`` with ``σ² = 1/(3 d_in)`` (PyTorch default init),
        as in :meth:`Metric.example_inputs`, but with strong spikes that stay above the GM
        noise bulk after any isotropic scaling by ``e^{±2}`` (weights shrunk to pure
        noise have no learned component: a ``ValueError`` for every metric here) and one
        weak spike that a moderate down-scaling pushes into the bulk (so the rank kept
        after shrinkage, hence e.g. ``eigenvector_overlap``'s ``k``, depends on scale).
        """
        n_out, d_in = 96, 24
        spikes = np.array([400.0, 250.0, 150.0, 3.0])
        V = np.linalg.qr(rng.normal(size=(d_in, spikes.size)))[0]
        root = np.eye(d_in) + (V * (np.sqrt(1.0 + spikes) - 1.0)) @ V.T
        sigma = np.sqrt(1.0 / (3 * d_in))
        W1 = sigma * rng.normal(size=(n_out, d_in)) @ root
        W2 = sigma * rng.normal(size=(n_out, d_in)) @ root
        return W1, W2

    def claimed_invariances(self) -> frozenset[Invariance]:
        # only "none" is known to commute with scaling; any other shrinkage is nonlinear
        return self.invariances_unshrunk if self.shrinkage == "none" else self.invariances

    def covariance(self, W: Any, which: int = 0) -> WeightCovariance:
        """The :class:`WeightCovariance` of one input (``which`` picks a pair's init_var).

        A ``WeightCovariance`` is used as is (it carries its own σ²_init; ``init_var`` is
        ignored) but must have been shrunk with this metric's ``shrinkage``.
        """
        name = "XY"[which]
        if isinstance(W, WeightCovariance):
            if W.shrinkage != self.shrinkage:
                raise ValueError(
                    f"{name} was shrunk with {W.shrinkage!r} but this metric uses "
                    f"shrinkage={self.shrinkage!r}"
                )
            return W
        if isinstance(W, Moments):
            raise TypeError(f"metric {self.name!r} compares weights; it does not stream")
        iv = self.init_var[which] if isinstance(self.init_var, tuple) else self.init_var
        try:
            return WeightCovariance.from_weight(W, init_var=iv, shrinkage=self.shrinkage)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None

    def evaluate(self, X: Any, Y: Any | None = None) -> Score:
        """Score two aligned weights (or ``WeightCovariance``); see the class docstring."""
        if Y is None:
            raise TypeError(f"{self.name} needs two arguments: metric(W_x, W_y)")
        score = self._compute(X, Y)
        return score if isinstance(score, Score) else Score(float(score))

    def _compute(self, X: Any, Y: Any) -> Score | float:
        C1, C2 = self.covariance(X, 0), self.covariance(Y, 1)
        if C1.d_in != C2.d_in:
            raise ValueError(
                f"X and Y must be weights on a common input basis: d_in {C1.d_in} != "
                f"{C2.d_in}; align them first (MATH.md: pulling weights back)"
            )
        return self._compare(C1, C2)

    def _compare(self, C1: WeightCovariance, C2: WeightCovariance) -> Score | float:
        raise TypeError(f"{type(self).__name__} must define _compare")


class NormalizedBures(_WeightMetric):
    """Normalised Bures similarity of aligned weight covariances (GM eq. 6).

    ``S = (cos − z)/(u − z)``: ``cos`` the Bures cosine (eq. 5), ``z`` its mean for a
    Haar-random rotation of the reference, ``u`` its mean for a resampled reference
    (``n_out`` Gaussian neurons of covariance ``C + I``), ``draws`` seeded draws each.
    ``symmetric=True`` reports the mean of ``S(C_X, C_Y)`` and ``S(C_Y, C_X)``
    (``details["symmetrized"]``); ``stderr`` is the delta-method Monte-Carlo error.
    Not invariant to isotropic scaling even without shrinkage: ``u`` depends on the
    size of ``C`` relative to the identity (init variance).
    """

    name = "bures"
    symmetric = True
    higher_is_better = True
    invariances = frozenset()

    def __init__(
        self,
        draws: Annotated[int, Field(ge=2)] = 8,
        seed: Annotated[int, Field(ge=0)] = 0,
        symmetric: bool = True,
        init_var: PositiveVar | tuple[PositiveVar, PositiveVar] | None = None,
        shrinkage: str = "gm",
    ):
        self.draws = draws
        self.seed = seed
        self.symmetric = symmetric  # instance value shadows the class claim when False
        self._set_common(init_var, shrinkage)

    def _compare(self, C1: WeightCovariance, C2: WeightCovariance) -> Score:
        sc = normalized_bures(C1, C2, self.draws, self.seed, self.symmetric)
        sc.details.update(shrinkage=self.shrinkage, rank_x=C1.rank, rank_y=C2.rank)
        return sc

    def chance_level(self, X: Any, Y: Any, score: Score) -> tuple[float, float] | None:
        """GM eq. 6's zero point: ``S = 0`` by construction, its Monte-Carlo error
        ``se(z̄)/(ū − z̄)`` (the mean over both directions when symmetrised)."""
        d = score.details
        keys = ("_x", "_y") if d.get("symmetrized") else ("",)
        try:
            sds = [d[f"z_stderr{k}"] / (d[f"u{k}"] - d[f"z{k}"]) for k in keys]
        except KeyError:
            return None
        return 0.0, float(np.mean(sds))


class BuresCosine(_WeightMetric):
    """Bures cosine ``||C1^½C2^½||_* / √(tr C1 tr C2)`` of aligned weight covariances (GM eq. 5).

    Invariant to isotropic scaling of one weight only without shrinkage
    (``shrinkage="none"``): then ``C ↦ c²C`` and the cosine is scale-free.
    """

    name = "bures_cosine"
    symmetric = True
    higher_is_better = True
    invariances = frozenset()
    invariances_unshrunk = frozenset({Invariance.ISOTROPIC_SCALING})

    def __init__(
        self,
        init_var: PositiveVar | tuple[PositiveVar, PositiveVar] | None = None,
        shrinkage: str = "gm",
    ):
        self._set_common(init_var, shrinkage)

    def _compute(self, X: Any, Y: Any) -> Score | float:
        if self.shrinkage == "none" and not any(
            isinstance(A, (WeightCovariance, Moments)) for A in (X, Y)
        ):
            # no shrinkage: factors of the covariances suffice, no eigendecomposition
            fast = bures_cosine_unshrunk(X, Y)
            if fast is not None:
                return Score(fast[0], None, {"rank_x": fast[1], "rank_y": fast[2]})
        return super()._compute(X, Y)

    def _compare(self, C1: WeightCovariance, C2: WeightCovariance) -> Score:
        return Score(bures_cosine(C1, C2), None, {"rank_x": C1.rank, "rank_y": C2.rank})

    def chance_level(self, X: Any, Y: Any, score: Score) -> tuple[float, float] | None:
        """GM eq. 6's zero point ``z = E_O cos(C, O C Oᵀ)`` (Haar ``O``), the mean over
        both covariances as references, from 8 seeded draws each (the draws of
        ``bures``' zero point at seed 0); ``null_sd`` its Monte-Carlo standard error."""
        draws = 8
        per = np.zeros(draws)
        for C in (self.covariance(X, 0), self.covariance(Y, 1)):
            if C.rank == 0:
                return None
            rs, tr = np.sqrt(C.s), C.trace
            for i, child in enumerate(np.random.SeedSequence(0).spawn(draws)):
                rng = np.random.default_rng(child)
                per[i] += _cos_core(rs, _haar_core(rng, C.rank, C.d_in), rs, tr, tr) / 2
        return float(per.mean()), float(per.std(ddof=1) / np.sqrt(draws))


class EffectiveRankRatio(_WeightMetric):
    """Agreement of effective ranks (GM eq. 4): ``min(r_x, r_y)/max(r_x, r_y)`` in (0, 1].

    ``r`` is the eigenvalue-weighted mean rank of the shrunk spectrum; the ratio is 1 for
    equal dimensionality. It depends on the spectra only, so it is invariant to any
    orthogonal map (permutations included) of either input basis, and, without
    shrinkage, to isotropic scaling.
    """

    name = "effective_rank"
    symmetric = True
    higher_is_better = True
    invariances = frozenset({Invariance.ORTHOGONAL, Invariance.PERMUTATION})
    invariances_unshrunk = invariances | {Invariance.ISOTROPIC_SCALING}

    def __init__(
        self,
        init_var: PositiveVar | tuple[PositiveVar, PositiveVar] | None = None,
        shrinkage: str = "gm",
    ):
        self._set_common(init_var, shrinkage)

    def _compare(self, C1: WeightCovariance, C2: WeightCovariance) -> Score:
        r1, r2 = _effective_rank(C1, "X"), _effective_rank(C2, "Y")
        return Score(min(r1, r2) / max(r1, r2), None, {"r_x": r1, "r_y": r2})


def _effective_rank(C: WeightCovariance, name: str) -> float:
    if C.rank == 0:
        raise ValueError(
            f"{name} has no eigenvalue left after {C.shrinkage!r} shrinkage: its effective "
            "rank is undefined (no learned component)"
        )
    return C.effective_rank


class EigenvectorOverlap(_WeightMetric):
    """Mean ``|v_xᵢᵀ v_yᵢ|`` over the leading ``k`` rank-matched eigenvectors (GM Fig. 3).

    ``k`` defaults to ``min(r_x, r_y)`` (ranks kept after shrinkage). ``details`` holds the
    per-rank values and the chance (``1/√d``) and significance (``5/√d``) levels.
    Without shrinkage, invariant to isotropic scaling (the eigenvectors do not change).
    """

    name = "eigenvector_overlap"
    symmetric = True
    higher_is_better = True
    invariances = frozenset()
    invariances_unshrunk = frozenset({Invariance.ISOTROPIC_SCALING})

    def __init__(
        self,
        k: Annotated[int, Field(ge=1)] | None = None,
        init_var: PositiveVar | tuple[PositiveVar, PositiveVar] | None = None,
        shrinkage: str = "gm",
    ):
        self.k = k
        self._set_common(init_var, shrinkage)

    def _compare(self, C1: WeightCovariance, C2: WeightCovariance) -> Score:
        ev = eigenvector_similarity(C1, C2, self.k)
        diag = np.diag(ev.overlap)
        details = {
            "per_rank": diag.tolist(),
            "chance": ev.chance,
            "significance": ev.significance,
            "k": int(diag.size),
        }
        return Score(float(diag.mean()), None, details)

    def chance_level(self, X: Any, Y: Any, score: Score) -> tuple[float, float] | None:
        """GM Fig. 3's chance level ``1/√d``; ``null_sd`` the standard deviation of the
        mean of ``k`` overlaps ``|uᵀv|`` of independent random unit vectors,
        ``sqrt((1 − 2/π)/d)/√k``."""
        chance, k = score.details.get("chance"), score.details.get("k")
        if not chance or not k:
            return None
        d = 1.0 / chance**2
        return float(chance), float(np.sqrt((1 - 2 / np.pi) / d / k))
