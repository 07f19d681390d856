"""Normalised weight covariances and their comparison (MATH.md: Weight-covariance similarity).

Guth & Ménard 2024 ("GM") section 3.2. A layer's weights ``W (n_out, d_in)`` define the
normalised covariance ``C = WᵀW / (n_out σ²_init)`` (init-variance units), whose
eigenvalues are shrunk (GM eq. 3, a pluggable :class:`simbench.Shrinkage`) to estimate
the "learned" component. :class:`WeightCovariance` keeps ``C`` in low-rank eigen form
``V diag(s) Vᵀ`` (only the eigenpairs that survive shrinkage), so that every comparison
works on ``r × r`` cores and never forms a ``d × d`` matrix square root:

- :func:`effective_rank` (GM eq. 4), :func:`bures_cosine` (GM eq. 5),
- :func:`normalized_bures` (GM eq. 6) with Monte-Carlo zero point and upper bound,
- :func:`eigenvector_similarity` (GM Fig. 3), :func:`spatial_eigenfilters` (GM 2.2).

Monte-Carlo draws never touch ``d``-dimensional random matrices: a Haar-random frame
``O V`` only enters through ``Vᵀ O V`` and a resampled covariance only through its
Gram matrix and ``V``-coordinates, whose exact distributions are sampled directly
(Bartlett decomposition of the Wishart part; see :func:`_haar_core` and
:func:`_resampled_core`).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg as sla

from simbench.numerics.arrays import ArrayLike, to_numpy
from simbench.plugin import Score

__all__ = [
    "BuresReference",
    "EigenvectorSimilarity",
    "WeightCovariance",
    "bures_cosine",
    "bures_reference",
    "effective_rank",
    "eigenvector_similarity",
    "init_variance",
    "normalized_bures",
    "pytorch_default_init_variance",
    "spatial_eigenfilters",
]

_EPS = np.finfo(np.float64).eps


# -- initialisation variance -------------------------------------------------------------
def pytorch_default_init_variance(fan_in: int) -> float:
    """Variance of PyTorch's default ``nn.Linear``/``nn.ConvNd`` weight init (MATH.md).

    ``reset_parameters`` calls ``kaiming_uniform_(w, a=√5)``: ``gain = √(2/(1+a²))``,
    ``bound = gain·√(3/fan_in)``, and ``U(−b, b)`` has variance ``b²/3``, i.e.
    ``1/(3·fan_in)``.
    """
    if isinstance(fan_in, bool) or int(fan_in) != fan_in or fan_in < 1:
        raise ValueError(f"fan_in must be a positive integer; got {fan_in!r}")
    a = math.sqrt(5.0)
    gain = math.sqrt(2.0 / (1.0 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in)
    return bound * bound / 3.0


def init_variance(module: Any) -> float:
    """Init variance of a torch ``nn.Linear`` / ``nn.ConvNd`` from its own weight's fan-in.

    The fan-in is PyTorch's (``torch.nn.init._calculate_fan_in_and_fan_out``, so grouped
    convolutions count ``C_in/groups · k·k``), as used by the module's
    ``reset_parameters``. Other module types have no known default: ``ValueError``.
    """
    import torch

    conv = torch.nn.modules.conv._ConvNd
    if not isinstance(module, (torch.nn.Linear, conv)):
        raise ValueError(
            f"no known default init for {type(module).__name__}; pass init_var explicitly "
            "(only nn.Linear and nn.ConvNd use kaiming_uniform(a=√5) by default)"
        )
    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(module.weight)
    return pytorch_default_init_variance(int(fan_in))


# -- shrinkage lookup and eigen-decomposition helpers -------------------------------------
def _get_shrinker(shrinkage: Any) -> tuple[str, Any]:
    """``(name, instance)`` of a shrinkage given by registry name or as an instance."""
    from simbench.shrinkage import Shrinkage

    if isinstance(shrinkage, Shrinkage):
        return shrinkage.name or type(shrinkage).__name__, shrinkage
    if not isinstance(shrinkage, str):
        raise ValueError(f"shrinkage must be a registered name or a Shrinkage; got {shrinkage!r}")
    import simbench
    from simbench.errors import UnknownPluginError

    try:
        return shrinkage, simbench.get_shrinkage(shrinkage)
    except UnknownPluginError as exc:
        raise ValueError(str(exc)) from None


def _shrink(shrinker: Any, lam: np.ndarray, gamma: float) -> np.ndarray:
    s = np.asarray(shrinker(lam, gamma), dtype=np.float64)
    if s.shape != lam.shape or not np.isfinite(s).all() or (s < 0).any():
        raise ValueError(
            f"shrinkage {getattr(shrinker, 'name', shrinker)!r} must return finite, "
            f"non-negative eigenvalues of shape {lam.shape}"
        )
    return s


def _zero_below(shrinker: Any, gamma: float) -> float | None:
    """A λ at or below which ``shrinker`` returns exactly 0 for every eigenvalue, if known.

    Known for the built-in GM shrinkage (the bulk edge ``(1+√γ)²``, eq. 3) and for any
    plugin defining ``zero_below(gamma)``; ``None`` otherwise (then the whole spectrum is
    computed and passed to the plugin).
    """
    from simbench.shrinkage import GMShrinkage

    if type(shrinker) is GMShrinkage:
        return (1.0 + math.sqrt(gamma)) ** 2
    hook = getattr(shrinker, "zero_below", None)
    return float(hook(gamma)) if callable(hook) else None


def _kept_eig(
    G: np.ndarray, shrinker: Any, gamma: float, tol_dim: int, full_spectrum: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Eigen-decomposition of the PSD ``G`` restricted to eigenpairs surviving shrinkage.

    Returns ``(lam, s, w, U)``: all eigenvalues of ``G`` descending (values below the
    rank tolerance ``tol_dim·eps·λ_max`` set to 0: numerically zero), the kept shrunk
    eigenvalues ``s > 0`` sorted descending, the matching raw eigenvalues ``w`` and
    eigenvectors ``U``. Eigenpairs with a numerically zero raw eigenvalue are dropped
    whatever the shrinkage returns (their direction is not determined by the data).
    With ``full_spectrum=False`` and a shrinkage whose zero region is known
    (:func:`_zero_below`), only the eigenpairs above it are computed (one
    tridiagonalisation instead of two) and ``lam`` holds only those.
    """
    p = G.shape[0]
    from simbench.shrinkage import NoShrinkage

    if type(shrinker) is NoShrinkage:
        # every eigenpair above the rank tolerance is kept, so all the vectors are needed:
        # one eigh gives values and vectors (eigvalsh first would tridiagonalise twice)
        ev, U = np.linalg.eigh(G)
        lam, U = ev[::-1].copy(), U[:, ::-1]
        lam[lam <= tol_dim * _EPS * max(lam[0] if p else 0.0, 0.0)] = 0.0
        s_all = _shrink(shrinker, lam, gamma)
        m = int(np.count_nonzero((s_all > 0) & (lam > 0)))  # a prefix: lam is descending
        return lam, s_all[:m], lam[:m], U[:, :m]
    cut = None if full_spectrum else _zero_below(shrinker, gamma)
    if cut is not None:
        w, U = sla.eigh(G, subset_by_value=(cut, np.inf), driver="evr")
        w, U = w[::-1].copy(), U[:, ::-1]
        s = _shrink(shrinker, w, gamma)
        keep = s > 0
        return w, s[keep], w[keep], U[:, keep]
    lam = np.linalg.eigvalsh(G)[::-1].copy()
    top = lam[0] if p else 0.0
    lam[lam <= tol_dim * _EPS * max(top, 0.0)] = 0.0
    s_all = _shrink(shrinker, lam, gamma)
    keep = (s_all > 0) & (lam > 0)
    m = int(keep.sum())
    if m == 0:
        return lam, np.zeros(0), np.zeros(0), np.zeros((p, 0))
    if keep[:m].all() and 2 * m <= p:
        # the kept set is the top block (monotone shrinkage): only compute those vectors
        w, U = sla.eigh(G, subset_by_index=(p - m, p - 1), driver="evr")
        U = U[:, ::-1]
        idx = np.arange(m)
    else:
        _, U = np.linalg.eigh(G)
        U = U[:, ::-1]
        idx = np.flatnonzero(keep)
        U = U[:, idx]
    s, w = s_all[idx], lam[idx]
    order = np.argsort(-s, kind="stable")  # eq. 4 ranks the *shrunk* values
    return lam, s[order], w[order], U[:, order]


def _weight_matrix(W: ArrayLike, name: str) -> np.ndarray:
    arr = to_numpy(W)
    if arr.ndim not in (2, 3, 4, 5):
        raise ValueError(
            f"{name} must be a weight matrix (n_out, d_in) or a conv weight "
            f"(C_out, C_in, k, ...); got shape {arr.shape}"
        )
    if min(arr.shape) == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    return arr.reshape(arr.shape[0], -1)  # PyTorch memory order: (C_in, kh, kw) flattened


def _check_gram(G: np.ndarray, A: np.ndarray, name: str) -> None:
    """Input checks read off the Gram ``AᵀA`` or ``AAᵀ`` instead of extra passes over ``A``:
    its trace is NaN/inf iff ``A`` has a non-finite entry (or squares overflow), 0 iff
    ``A`` is all zeros."""
    tr = float(np.trace(G))
    if not math.isfinite(tr):
        bad = int((~np.isfinite(A)).sum())
        if bad:
            raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf).")
        raise ValueError(f"{name} is too large: its squared entries overflow float64")
    if tr == 0.0:
        raise ValueError(f"{name} is all zeros: its covariance has no eigen-directions")


# -- the normalised covariance ----------------------------------------------------------
@dataclass(frozen=True, eq=False)
class WeightCovariance:
    """``C = WᵀW/(n_out σ²_init)`` after shrinkage, as ``V diag(s) Vᵀ`` (MATH.md; GM 3.2).

    ``s`` (r,) are the shrunk eigenvalues ``> 0`` in descending order and ``V`` (d_in, r)
    their orthonormal eigenvectors; ``eigenvalues`` holds the raw (unshrunk) spectrum of
    ``C``, descending (from a weight its ``min(n_out, d_in)`` possibly non-zero values,
    from a matrix all ``d``); ``shrinkage`` is the name of the shrinkage applied and
    ``shrinker`` the instance; ``init_var`` is ``σ²_init`` (``None`` from a matrix).
    """

    s: np.ndarray
    V: np.ndarray
    n_out: int
    d_in: int
    shrinkage: str
    eigenvalues: np.ndarray
    init_var: float | None = None
    shrinker: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # private read-only copies (cheap: r values, d × r vectors): the object is immutable
        s = np.array(self.s, dtype=np.float64)
        V = np.array(self.V, dtype=np.float64)
        lam = np.array(self.eigenvalues, dtype=np.float64)
        if s.ndim != 1 or V.shape != (self.d_in, s.size):
            raise ValueError(f"need s (r,) and V (d_in={self.d_in}, r); got {s.shape}, {V.shape}")
        if not (np.isfinite(s).all() and np.isfinite(V).all()) or (s <= 0).any():
            raise ValueError("eigenvalues s must be finite and > 0, eigenvectors finite")
        if np.any(np.diff(s) > 0):
            raise ValueError("eigenvalues s must be sorted in descending order")
        if self.n_out < 1 or self.d_in < 1:
            raise ValueError(f"n_out and d_in must be >= 1; got {self.n_out}, {self.d_in}")
        if self.shrinker is None:
            object.__setattr__(self, "shrinker", _get_shrinker(self.shrinkage)[1])
        for name, a in (("s", s), ("V", V), ("eigenvalues", lam)):
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    # -- constructors --
    @classmethod
    def from_weight(
        cls, W: ArrayLike, init_var: float | None = None, shrinkage: Any = "gm"
    ) -> WeightCovariance:
        """From a weight ``(n_out, d_in)`` or conv weight ``(C_out, C_in, k, k)``.

        ``init_var`` is ``σ²_init``; by default PyTorch's default-init variance for
        ``fan_in = d_in`` (:func:`pytorch_default_init_variance`) — exact for an
        ungrouped ``nn.Linear``/``nn.Conv2d``; pass :func:`init_variance` of the module
        (or the architecture's own value) otherwise. Uses the ``n_out × n_out`` Gram
        ``WWᵀ`` when ``n_out < d_in``, so no ``d × d`` matrix is formed.
        """
        A = _weight_matrix(W, "W")
        n, d = A.shape
        if init_var is None:
            # MATH.md: σ² of PyTorch's default kaiming_uniform(a=√5) init, from fan_in = d_in
            init_var = pytorch_default_init_variance(d)
        init_var = float(init_var)
        if not (np.isfinite(init_var) and init_var > 0):
            raise ValueError(f"init_var must be a positive finite variance; got {init_var}")
        name, shrinker = _get_shrinker(shrinkage)
        # C = AᵀA with A = W/√(n σ²): the scale goes on the small Gram, not on a copy of W
        c = 1.0 / (n * init_var)
        gamma = d / n
        if n < d:
            G = A @ A.T
            _check_gram(G, A, "W")
            G *= c
            lam, s, w, U = _kept_eig(G, shrinker, gamma, max(n, d))
            V = (A.T @ U) * (math.sqrt(c) / np.sqrt(w))  # right singular vectors v = Aᵀu/σ
        else:
            G = A.T @ A
            _check_gram(G, A, "W")
            G *= c
            lam, s, _, V = _kept_eig(G, shrinker, gamma, max(n, d))
        return cls(s, V, n, d, name, lam[: min(n, d)], init_var, shrinker)

    @classmethod
    def from_matrix(cls, C: ArrayLike, n_out: int, shrinkage: Any = "gm") -> WeightCovariance:
        """From a normalised covariance ``C (d, d)`` estimated from ``n_out`` neurons."""
        M = to_numpy(C)
        if M.ndim != 2 or M.shape[0] != M.shape[1] or M.shape[0] == 0:
            raise ValueError(f"C must be a square (d, d) matrix; got shape {M.shape}")
        if not np.isfinite(M).all():
            raise ValueError("C contains non-finite value(s) (NaN or inf).")
        if isinstance(n_out, bool) or int(n_out) != n_out or n_out < 1:
            raise ValueError(f"n_out must be a positive integer; got {n_out!r}")
        scale = float(np.abs(M).max())
        if scale == 0:
            raise ValueError("C is all zeros: it has no eigen-directions")
        if np.abs(M - M.T).max() > 1e-10 * scale:
            raise ValueError("C must be symmetric")
        d = M.shape[0]
        M = (M + M.T) / 2
        ev = np.linalg.eigvalsh(M)
        if ev[0] < -1e-10 * max(ev[-1], 0.0) * d or ev[-1] <= 0:
            raise ValueError(f"C must be positive semi-definite; smallest eigenvalue {ev[0]:.3g}")
        name, shrinker = _get_shrinker(shrinkage)
        lam, s, _, V = _kept_eig(M, shrinker, d / n_out, d)
        return cls(s, V, int(n_out), d, name, lam, None, shrinker)

    # -- derived quantities --
    @property
    def rank(self) -> int:
        """Number of eigenpairs kept after shrinkage."""
        return int(self.s.size)

    @property
    def gamma(self) -> float:
        """``γ = d_in / n_out`` (GM eq. 3)."""
        return self.d_in / self.n_out

    @property
    def trace(self) -> float:
        return float(self.s.sum())

    @property
    def effective_rank(self) -> float:
        """GM eq. 4 on the shrunk spectrum (:func:`effective_rank`)."""
        return effective_rank(self.s)

    def dense(self) -> np.ndarray:
        """The ``d × d`` matrix ``V diag(s) Vᵀ`` (for small ``d`` and tests only)."""
        return (self.V * self.s) @ self.V.T


def _factor(A: np.ndarray, name: str) -> tuple[np.ndarray, str] | None:
    """A factor ``F`` with ``AᵀA = F Fᵀ`` and how it multiplies: the Cholesky factor ``L``
    of ``AᵀA`` (``"L"``, ``d × d``) when ``n ≥ d``, else ``Aᵀ`` itself (``"At"``).

    ``None`` when ``A`` is not clearly of full rank (a Cholesky pivot within 1e6 times the
    rank tolerance of the eigen route, or a pivot ratio below 1e-6): then the caller
    falls back to the eigendecomposition, whose rank cut it must reproduce.
    """
    n, d = A.shape
    G = A.T @ A if n >= d else A @ A.T
    _check_gram(G, A, name)
    top = float(np.max(np.diag(G)))
    try:
        L = sla.cholesky(G, lower=True, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    piv = np.diag(L) ** 2
    if piv.min() <= 1e6 * max(n, d) * _EPS * top or piv.min() < 1e-6 * piv.max():
        return None
    return (L, "L") if n >= d else (A, "At")


def bures_cosine_unshrunk(W1: ArrayLike, W2: ArrayLike) -> tuple[float, int, int] | None:
    """GM eq. 5 without shrinkage, from factors instead of eigendecompositions.

    For any ``F_i`` with ``C_i ∝ F_i F_iᵀ``, ``C_i^½ = F_i Q_i`` for an orthogonal
    ``Q_i``, so ``||C1^½ C2^½||_* = ||F1ᵀ F2||_*``: the Cholesky factor of the ``d × d``
    Gram when ``n_out ≥ d_in`` (``d³/3`` instead of an eigendecomposition) and ``Wᵀ``
    itself otherwise (no decomposition but the final SVD). Returns
    ``(cos, rank_1, rank_2)``, or ``None`` when a side is not clearly of full rank (the
    caller then uses :func:`bures_cosine` on the eigendecompositions).
    """
    A1, A2 = _weight_matrix(W1, "X"), _weight_matrix(W2, "Y")
    if A1.shape[1] != A2.shape[1]:
        return None  # the caller's own path raises the documented error
    f1, f2 = _factor(A1, "X"), _factor(A2, "Y")
    if f1 is None or f2 is None:
        return None
    (F1, k1), (F2, k2) = f1, f2
    # F1ᵀ F2 with F = L (d × d) or F = Aᵀ (d × n):
    left = F1.T if k1 == "L" else F1  # F1ᵀ
    right = F2 if k2 == "L" else F2.T  # F2
    nuc = _nuclear(left @ right)
    tr1, tr2 = float(np.vdot(A1, A1)), float(np.vdot(A2, A2))
    return nuc / math.sqrt(tr1 * tr2), min(A1.shape), min(A2.shape)


def _check_cov(C: Any, name: str) -> WeightCovariance:
    if not isinstance(C, WeightCovariance):
        raise ValueError(f"{name} must be a WeightCovariance; got {type(C).__name__}")
    if C.rank == 0:
        raise ValueError(
            f"{name} has no eigenvalue left after {C.shrinkage!r} shrinkage (all below the "
            "noise bulk): it has no learned component to compare. Use shrinkage='none' to "
            "compare raw covariances."
        )
    return C


def _check_pair(C1: Any, C2: Any) -> tuple[WeightCovariance, WeightCovariance]:
    C1, C2 = _check_cov(C1, "C1"), _check_cov(C2, "C2")
    if C1.d_in != C2.d_in:
        raise ValueError(
            f"the covariances live in different input spaces: d_in {C1.d_in} != {C2.d_in}; "
            "align the weights into a common input basis first (MATH.md: pulling weights back)"
        )
    return C1, C2


# -- effective rank (GM eq. 4) ----------------------------------------------------------
def effective_rank(s: ArrayLike) -> float:
    """``r_eff = Σ_k k·λ_k / Σ_k λ_k`` over the shrunk eigenvalues sorted descending, k ≥ 1.

    Zeros (shrunk-away eigenvalues) do not change it. An all-zero spectrum (no learned
    component) makes eq. 4 0/0: a ``ValueError``, never a silent 0 or NaN.
    """
    lam = np.asarray(to_numpy(s), dtype=np.float64).ravel()
    if lam.size == 0 or not np.isfinite(lam).all() or (lam < 0).any():
        raise ValueError("eigenvalues must be a non-empty array of finite values >= 0")
    total = lam.sum()
    if total <= 0:
        raise ValueError("effective rank of an all-zero spectrum is undefined (eq. 4 is 0/0)")
    lam = np.sort(lam)[::-1]
    return float(np.arange(1, lam.size + 1) @ lam / total)


# -- Bures cosine (GM eq. 5) ------------------------------------------------------------
def _nuclear(M: np.ndarray) -> float:
    if M.size == 0:
        return 0.0
    return float(sla.svdvals(M, check_finite=False).sum())


def _cos_core(rs1: np.ndarray, P: np.ndarray, rs2: np.ndarray, tr1: float, tr2: float) -> float:
    """``||diag(√s1) P diag(√s2)||_* / √(tr1 tr2)`` with ``P = V1ᵀV2``."""
    return _nuclear(rs1[:, None] * P * rs2[None, :]) / math.sqrt(tr1 * tr2)


def bures_cosine(C1: WeightCovariance, C2: WeightCovariance) -> float:
    """GM eq. 5: ``||C1^½ C2^½||_* / √(tr C1 tr C2)`` on the ``r1 × r2`` core.

    With ``C_i = V_i diag(s_i) V_iᵀ``, ``C1^½ C2^½ = V1 [diag(√s1) V1ᵀV2 diag(√s2)] V2ᵀ``
    and the outer factors have orthonormal columns, so the nuclear norm is that of the
    bracket. No ``d × d`` square root is formed.
    """
    C1, C2 = _check_pair(C1, C2)
    return _cos_core(np.sqrt(C1.s), C1.V.T @ C2.V, np.sqrt(C2.s), C1.trace, C2.trace)


# -- normalised Bures similarity (GM eq. 6) ----------------------------------------------
def _wishart_factor(rng: np.random.Generator, p: int, dof: int) -> np.ndarray:
    """``F`` with ``F Fᵀ ~ Wishart_p(I, dof)``: Bartlett's lower-triangular factor
    (``F_ii² ~ χ²(dof−i)``, i from 0, ``N(0,1)`` below) when ``dof ≥ p``, else an
    explicit ``p × dof`` Gaussian."""
    if dof <= 0:
        return np.zeros((p, 0))
    if dof < p:
        return rng.standard_normal((p, dof))
    L = np.tril(rng.standard_normal((p, p)), -1)
    L[np.diag_indices(p)] = np.sqrt(rng.chisquare(dof - np.arange(p)))
    return L


def _haar_core(rng: np.random.Generator, r: int, d: int) -> np.ndarray:
    """A draw of ``V1ᵀ O V1`` (r × r) for Haar-random ``O ∈ O(d)``.

    ``O V1`` is a uniform ``d × r`` orthonormal frame, equal in law to ``Q`` from the
    sign-fixed QR of a ``d × r`` Gaussian ``G``; by rotation invariance ``V1ᵀQ`` has the
    law of ``Q``'s first ``r`` rows, ``G_top R⁻¹``. ``R`` depends on ``G`` only through
    ``GᵀG = G_topᵀG_top + Wishart_r(d − r)``, so the QR of the stacked
    ``[G_top; Fᵀ]`` (``F`` a Wishart factor) gives it with ``O(r³)`` work.
    """
    Z = np.vstack([rng.standard_normal((r, r)), _wishart_factor(rng, r, d - r).T])
    Q, R = np.linalg.qr(Z)
    sign = np.where(np.diag(R) < 0, -1.0, 1.0)
    return Q[:r] * sign


def _resampled_core(rng: np.random.Generator, C: WeightCovariance) -> tuple[np.ndarray, np.ndarray]:
    """A draw of ``(ŝ, V1ᵀV̂)`` for ``Ĉ``: the shrunk normalised covariance of ``n_out``
    Gaussian samples with covariance ``C + I`` (GM eq. 6 upper bound).

    In the basis ``[V1, V1⊥]`` the samples are ``Y = [A, H]`` with ``A = N diag(√(s+1))``
    (n × r) and ``H`` (n × (d−r)) i.i.d. Gaussian. If ``n ≤ d`` only ``YYᵀ = AAᵀ + HHᵀ`` is
    needed, ``HHᵀ ~ Wishart_n(d−r)``; ``V1ᵀv̂ = Aᵀu/σ``. If ``n > d``, with ``A = Q_A R``,
    ``YᵀY = BᵀB`` for ``B = [[R, K], [0, Fᵀ]]``, ``K = Q_AᵀH`` i.i.d. and
    ``FFᵀ ~ Wishart_{d−r}(n−r)``; ``V1ᵀv̂`` is the first ``r`` rows of ``BᵀB``'s
    eigenvectors. Either way no ``d``-dimensional sample is drawn when ``d > n``.
    """
    n, d, r = C.n_out, C.d_in, C.rank
    A = rng.standard_normal((n, r)) * np.sqrt(C.s + 1.0)
    if n <= d:
        B = np.hstack([A, _wishart_factor(rng, n, d - r)]) / math.sqrt(n)
        _, s, w, U = _kept_eig(B @ B.T, C.shrinker, C.gamma, max(n, d), False)
        P = (A.T @ U) / (math.sqrt(n) * np.sqrt(w)) if s.size else np.zeros((r, 0))
    else:
        _, R = np.linalg.qr(A)
        K = rng.standard_normal((r, d - r))
        F = _wishart_factor(rng, d - r, n - r)
        B = np.zeros((r + F.shape[1], d))
        B[:r, :r], B[:r, r:], B[r:, r:] = R, K, F.T
        B /= math.sqrt(n)
        _, s, w, U = _kept_eig(B.T @ B, C.shrinker, C.gamma, max(n, d), False)
        P = U[:r]
    return s, P


class BuresReference(NamedTuple):
    """Per-draw Monte-Carlo values of the zero point ``z`` and upper bound ``u`` of a
    reference covariance (GM eq. 6)."""

    z: np.ndarray
    u: np.ndarray


#: memo of bures_reference per covariance object (immutable; identity-hashed): a cell's
#: jackknife (simbench.uncertainty) rescores with one side's covariance unchanged
_REFERENCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def bures_reference(C: WeightCovariance, draws: int = 8, seed: int = 0) -> BuresReference:
    """Memoised :func:`_bures_reference` (same object, draws and seed: same draws)."""
    if not (
        isinstance(C, WeightCovariance)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in (draws, seed))
    ):
        return _bures_reference(C, draws, seed)  # validates and raises
    memo = _REFERENCES.setdefault(C, {})
    if (draws, seed) not in memo:
        memo[(draws, seed)] = _bures_reference(C, draws, seed)
    return memo[(draws, seed)]


def _bures_reference(C: WeightCovariance, draws: int = 8, seed: int = 0) -> BuresReference:
    """``draws`` seeded draws of ``cos(C, O C Oᵀ)`` (Haar ``O``) and ``cos(C, Ĉ)`` (GM eq. 6).

    Draw ``i`` uses the generator ``default_rng(SeedSequence(seed).spawn(draws)[i])``, so
    results are deterministic and draw ``i`` does not depend on ``draws``. A resampled
    ``Ĉ`` with nothing left after shrinkage has recovered nothing: its cosine counts as 0.
    """
    C = _check_cov(C, "C")
    if isinstance(draws, bool) or int(draws) != draws or draws < 2:
        raise ValueError(f"draws must be an integer >= 2 (for a standard error); got {draws!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    rs, tr, r = np.sqrt(C.s), C.trace, C.rank
    z, u = np.empty(draws), np.empty(draws)
    for i, child in enumerate(np.random.SeedSequence(int(seed)).spawn(int(draws))):
        rng = np.random.default_rng(child)
        z[i] = _cos_core(rs, _haar_core(rng, r, C.d_in), rs, tr, tr)
        s_hat, P = _resampled_core(rng, C)
        u[i] = _cos_core(rs, P, np.sqrt(s_hat), tr, float(s_hat.sum())) if s_hat.size else 0.0
    return BuresReference(z, u)


def _normalized(c: float, ref: BuresReference) -> tuple[float, np.ndarray, dict[str, float]]:
    """``S = (c − z̄)/(ū − z̄)`` and its per-draw linearisation ``∂S/∂z̄·z_i + ∂S/∂ū·u_i``."""
    zb, ub = float(ref.z.mean()), float(ref.u.mean())
    span = ub - zb
    if not span > 0:
        raise ValueError(
            f"normalisation undefined: upper bound u = {ub:.4g} is not above the zero point "
            f"z = {zb:.4g} (the learned component is indistinguishable from a random rotation)"
        )
    S = (c - zb) / span
    infl = (c - ub) / span**2 * ref.z - (c - zb) / span**2 * ref.u
    k = math.sqrt(ref.z.size)
    info = {
        "z": zb,
        "u": ub,
        "z_stderr": float(ref.z.std(ddof=1) / k),
        "u_stderr": float(ref.u.std(ddof=1) / k),
    }
    return S, infl, info


def normalized_bures(
    C1: WeightCovariance,
    C2: WeightCovariance,
    draws: int = 8,
    seed: int = 0,
    symmetric: bool = True,
) -> Score:
    """GM eq. 6: ``S(C1, C2) = (cos(C1, C2) − z)/(u − z)``, ``z``/``u`` from ``C1`` draws.

    ``z = E_O cos(C1, O C1 Oᵀ)`` (Haar ``O``), ``u = E cos(C1, Ĉ1)`` (``Ĉ1`` the same
    shrinkage applied to ``n_out`` Gaussian samples of covariance ``C1 + I``), each a mean
    over ``draws`` seeded draws (:func:`bures_reference`). ``S`` is asymmetric;
    ``symmetric=True`` returns ``(S(C1, C2) + S(C2, C1))/2``, both references drawn from
    the same seed (common random numbers: exactly symmetric in its arguments).

    Standard error (delta method): ``S`` is a smooth function of the Monte-Carlo means
    (``cos`` is exact), so with the per-draw linearisation ``h_i = Σ ∂S/∂m · m_i`` over
    the means ``m`` involved, ``stderr = std(h, ddof=1)/√draws``; draws paired across
    directions and between ``z`` and ``u`` keep their covariances in it.
    """
    C1, C2 = _check_pair(C1, C2)
    c = bures_cosine(C1, C2)
    S12, h12, info12 = _normalized(c, bures_reference(C1, draws, seed))
    details: dict[str, Any] = {"cos": c, "draws": int(draws), "seed": int(seed)}
    if not symmetric:
        details.update(info12, symmetrized=False, reference="C1")
        return Score(float(S12), float(h12.std(ddof=1) / math.sqrt(draws)), details)
    S21, h21, info21 = _normalized(c, bures_reference(C2, draws, seed))
    h = (h12 + h21) / 2
    details.update(
        {f"{k}_x": v for k, v in info12.items()} | {f"{k}_y": v for k, v in info21.items()},
        S_xy=float(S12),
        S_yx=float(S21),
        symmetrized=True,
        note="mean of S(C_X, C_Y) and S(C_Y, C_X); S alone is asymmetric (GM eq. 6)",
    )
    return Score(float((S12 + S21) / 2), float(h.std(ddof=1) / math.sqrt(draws)), details)


# -- eigenvectors (GM Fig. 3) and spatial eigenfilters (GM 2.2) ------------------------------
class EigenvectorSimilarity(NamedTuple):
    """``overlap[i, j] = |v1_iᵀ v2_j|`` for the leading ``k`` eigenvectors, with the chance
    level ``1/√d`` of two random unit vectors and the significance level ``5/√d``."""

    overlap: np.ndarray
    chance: float
    significance: float


def eigenvector_similarity(
    C1: WeightCovariance, C2: WeightCovariance, k: int | None = None
) -> EigenvectorSimilarity:
    """GM Fig. 3: ``|V1ᵀV2|`` restricted to the leading ``k`` kept eigenvectors of each.

    ``k`` defaults to ``min(r1, r2)``, the ranks kept after shrinkage; a larger ``k`` is a
    ``ValueError`` (shrunk-away directions are not estimated).
    """
    C1, C2 = _check_pair(C1, C2)
    kmax = min(C1.rank, C2.rank)
    if k is None:
        k = kmax
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= kmax:
        raise ValueError(f"k must be an integer in [1, min(r1, r2) = {kmax}]; got {k!r}")
    k = int(k)
    overlap = np.abs(C1.V[:, :k].T @ C2.V[:, :k])
    d = C1.d_in
    return EigenvectorSimilarity(overlap, 1.0 / math.sqrt(d), 5.0 / math.sqrt(d))


def spatial_eigenfilters(W: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (k²,) and eigenfilters (k², k, k) of a conv weight's spatial covariance.

    MATH.md "Spatial eigenvectors": the ``k² × k²`` matrix ``FᵀF / (C_out C_in)`` with
    ``F`` the ``(C_out·C_in, k²)`` stack of all filters (uncentred, like ``C = WᵀW``),
    eigenvalues descending. Sign convention: each filter's entry of largest magnitude
    is positive (ties within 1e-8 relative: the first such in row-major order).
    """
    arr = to_numpy(W)
    if arr.ndim != 4 or min(arr.shape) == 0:
        raise ValueError(f"W must be a conv weight (C_out, C_in, kh, kw); got shape {arr.shape}")
    co, ci, kh, kw = arr.shape
    if not np.isfinite(arr).all():
        raise ValueError("W contains non-finite value(s) (NaN or inf).")
    if not np.any(arr):
        raise ValueError("W is all zeros: its spatial covariance has no eigen-directions")
    F = arr.reshape(co * ci, kh * kw)
    lam, U = np.linalg.eigh(F.T @ F / (co * ci))
    lam, U = np.clip(lam[::-1], 0.0, None), U[:, ::-1].copy()
    mag = np.abs(U)
    first = np.argmax(mag >= (1 - 1e-8) * mag.max(axis=0), axis=0)
    U *= np.where(U[first, np.arange(U.shape[1])] < 0, -1.0, 1.0)
    return lam, U.T.reshape(kh * kw, kh, kw)
