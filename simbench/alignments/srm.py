"""Deterministic shared response model (Chen et al. 2015; MATH.md: Alignments, srm).

For networks ``i = 1..N`` with ``X_i (n, d_i)``, SRM (SRM paper eq. 1, written with
samples as rows) finds ``W_i (d_i, k)`` with orthonormal columns and a shared response
``S (n, k)`` minimising ``Σ_i ||X_i − S W_iᵀ||²``. It alternates

    S = (1/N) Σ_i X_i W_i          and          W_i = polar(X_iᵀ S)

(each step minimises the objective over its block, so the objective never increases)
until the objective stops decreasing. Both steps need only the block cross-product
matrix ``C = ZᵀZ`` of the concatenation ``Z = [X_1 … X_N]``: ``X_iᵀS = (1/N) (C W)_i``
and, with ``S`` optimal for ``W`` (the stacked ``W_i``),
``Σ_i ||X_i − S W_iᵀ||² = tr C − tr(Wᵀ C W) / N``. Every iteration therefore costs
``O(D² k)`` (``D = Σ d_i``) plus ``N`` small SVDs, whatever ``n``, and the two-network
fit streams from a paired :class:`~simbench.numerics.moments.Moments`. Fitted from
arrays with fewer samples than features (``n < D``), ``C`` is kept in factored form
``ZᵀZ`` instead (:class:`CrossProduct`): ``O(n D k)`` per iteration.

Initialisation (MATH.md is silent; Chen et al. and BrainIAK draw random orthonormal
``W_i``). ``init="pca"`` (default) takes the top-``k`` eigenvectors ``V`` of ``C`` (the
principal axes of the concatenated data) and sets ``W_i = polar(V_i)``: it is
deterministic, needs no seed, is symmetric in the networks and equivariant under
orthogonal maps of any one network (so a fitted score inherits those invariances
exactly, converged or not), and it recovers planted orthogonal copies at once.
``init="random"`` draws ``W_i = polar(G_i)`` with ``G_i`` standard normal ``(d_i, k)``
from ``numpy.random.default_rng(seed)``, in network order (BrainIAK-style).

``srm_prob`` is the probabilistic SRM of the same paper (BrainIAK's EM ``SRM``), fitted
from the same block cross-product matrix (:func:`solve_srm_prob`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.linalg
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveInt

from simbench.alignments.base import Alignment
from simbench.alignments.basic import polar
from simbench.errors import NotFittedError
from simbench.numerics.arrays import ArrayLike, as_matrix, check_paired, to_numpy
from simbench.numerics.moments import Moments


@dataclass
class SRMSolution:
    """Result of :func:`solve_srm`: the maps, the objective history and convergence."""

    W: list[np.ndarray]
    objective: list[float]
    n_iter: int
    converged: bool


def resolve_k(k: int | None, dims: Sequence[int]) -> int:
    """``k`` or its default ``min d_i``; ``ValueError`` if it exceeds a network's width."""
    if k is None:
        return int(min(dims))
    if k > min(dims):
        raise ValueError(
            f"k={k} exceeds the width of the narrowest network ({min(dims)} features; "
            f"widths {list(dims)}): each W_i (d_i, k) needs orthonormal columns"
        )
    return int(k)


class CrossProduct:
    """The block cross-product ``C = ZᵀZ`` ``(D, D)`` of ``Z = [X_1 … X_N]`` ``(n, D)``.

    The SRM solvers touch ``C`` only through ``C @ W``, traces and its top eigenvectors.
    With at least as many samples as features (``n ≥ D``) ``C`` is formed once
    (``O(n D²)``) and each product costs ``O(D² k)``; with fewer (``n < D``, the usual
    case for wide layers and a few thousand probe images) ``C`` is rank-deficient and
    only ``Z`` is kept: ``C W = Zᵀ(Z W)`` costs ``O(n D k)`` and the top eigenvectors
    are the leading right singular vectors of ``Z``, from the top eigenpairs of the
    ``(n, n)`` Gram ``Z Zᵀ`` when ``k ≤ n/4`` (else an SVD of ``Z``), ``O(n² D)`` instead of
    an ``O(D³)`` eigendecomposition. Both give the same ``C`` up to rounding.
    """

    def __init__(self, C: np.ndarray | None = None, *, Z: np.ndarray | None = None):
        if (C is None) == (Z is None):
            raise TypeError("CrossProduct takes exactly one of C or Z")
        if Z is not None and Z.shape[0] >= Z.shape[1]:
            C, Z = Z.T @ Z, None  # as cheap to form as to keep, and every product is cheaper
        self.C, self.Z = C, Z
        self.dim = int(C.shape[0]) if C is not None else int(Z.shape[1])
        if C is not None and C.shape != (self.dim, self.dim):
            raise ValueError(f"C must be square; got shape {C.shape}")

    @classmethod
    def of(cls, Xs: Sequence[np.ndarray], center: bool) -> tuple[CrossProduct, list[np.ndarray]]:
        """``C`` of ``Z = [X_1 … X_N]`` (columns centred when ``center``), and the means."""
        means = [X.mean(axis=0) for X in Xs]
        Z = np.hstack([X - m for X, m in zip(Xs, means, strict=True)] if center else list(Xs))
        return cls(Z=Z), means

    def __matmul__(self, W: np.ndarray) -> np.ndarray:
        return self.C @ W if self.C is not None else self.Z.T @ (self.Z @ W)

    def block_trace(self, b: slice = slice(None)) -> float:
        """``tr C[b, b]``: the sum of squares of the block's columns."""
        if self.C is not None:
            return float(np.trace(self.C[b, b]))
        Zb = self.Z[:, b]
        return float(np.vdot(Zb, Zb))

    def top_eigvecs(self, k: int, gram: np.ndarray | None = None) -> np.ndarray:
        """The ``k`` leading eigenvectors of ``C`` ``(D, k)``, by decreasing eigenvalue
        (``gram``: ``Z Zᵀ`` when the caller already has it)."""
        if self.Z is not None:
            Z, n = self.Z, self.Z.shape[0]
            if 4 * k <= n:  # a few leading directions: from the (n, n) Gram, O(n² D)
                G = Z @ Z.T if gram is None else gram
                w, U = scipy.linalg.eigh(G, subset_by_index=[n - k, n - 1])
                # V = Zᵀ U Λ^(-1/2) is exact while every kept eigenvalue stands clear of
                # rounding; otherwise (rank below k) fall through to the SVD
                if w[0] > n * np.finfo(float).eps * w[-1]:
                    return (Z.T @ (U / np.sqrt(w)))[:, ::-1]
            # k > n needs null-space directions too (arbitrary, as eigh's would be)
            _, _, Vt = np.linalg.svd(Z, full_matrices=k > n)
            return Vt[:k].T
        D = self.dim
        if 4 * k <= D:  # a partial decomposition pays off only for a small fraction
            _, V = scipy.linalg.eigh(self.C, subset_by_index=[D - k, D - 1], check_finite=False)
        else:
            _, V = np.linalg.eigh(self.C)
            V = V[:, D - k :]
        return V[:, ::-1]


def _as_cross(C: np.ndarray | CrossProduct) -> CrossProduct:
    return C if isinstance(C, CrossProduct) else CrossProduct(np.asarray(C, dtype=float))


def _check_blocks(
    C: CrossProduct, dims: Sequence[int], k: int | None
) -> tuple[list[int], list[slice], int]:
    dims = [int(d) for d in dims]
    N, D = len(dims), int(sum(dims))
    if N < 2:
        raise ValueError(f"SRM needs at least 2 networks; got {N}")
    if C.dim != D:
        raise ValueError(f"C has shape {(C.dim, C.dim)}; the widths {dims} need ({D}, {D})")
    k = resolve_k(k, dims)
    edges = np.concatenate([[0], np.cumsum(dims)])
    blocks = [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]
    return dims, blocks, k


def _initial_maps(
    C: CrossProduct,
    dims: list[int],
    blocks: list[slice],
    k: int,
    init: str,
    seed: int,
    gram: np.ndarray | None = None,
) -> np.ndarray:
    """Stacked initial ``W_i`` (module docstring: ``pca`` or ``random``)."""
    if init == "pca":
        V = C.top_eigvecs(k, gram)
        return np.vstack([polar(V[b]) for b in blocks])
    if init == "random":
        rng = np.random.default_rng(seed)
        return np.vstack([polar(rng.standard_normal((d, k))) for d in dims])
    raise ValueError(f"init must be 'pca' or 'random'; got {init!r}")


def solve_srm(
    C: np.ndarray | CrossProduct,
    dims: Sequence[int],
    k: int | None = None,
    *,
    max_iter: int = 100,
    tol: float = 1e-10,
    init: str = "pca",
    seed: int = 0,
) -> SRMSolution:
    """Deterministic SRM from the block cross-product matrix ``C = ZᵀZ`` (module docstring).

    ``C`` is the ``(D, D)`` array or a :class:`CrossProduct`; ``dims`` are the widths
    ``d_i`` of its blocks (``Σ d_i = D``).
    ``objective[t] = Σ_i ||X_i − S W_iᵀ||²`` for the maps after ``t`` updates (``S`` the
    optimal shared response for them); ``objective[0]`` is the initialisation's. It
    stops after ``max_iter`` updates, or when one update lowers the objective by at
    most ``tol · tr C`` (``converged=True``; an update that would raise it by rounding is
    discarded and also counts as converged).
    """
    C = _as_cross(C)
    dims, blocks, k = _check_blocks(C, dims, k)
    if init not in ("pca", "random"):
        raise ValueError(f"init must be 'pca' or 'random'; got {init!r}")
    if C.Z is not None and _sample_space_pays(C.Z.shape[0], dims, k, max_iter, init):
        sol = _solve_srm_sample_space(C, dims, blocks, k, max_iter, tol, init, seed)
        if sol is not None:
            return sol
    N = len(dims)
    W = _initial_maps(C, dims, blocks, k, init, seed)

    total = C.block_trace()
    G = C @ W
    f = total - float(np.vdot(W, G)) / N
    history = [max(f, 0.0)]  # a sum of squares; rounding can take the difference below 0
    converged = False
    n_iter = 0
    for _ in range(max_iter):
        # W_i = polar(X_iᵀ S) with S = (1/N) Σ_j X_j W_j, i.e. polar of block i of C W
        W_new = np.vstack([polar(G[b]) for b in blocks])
        G_new = C @ W_new
        f_new = total - float(np.vdot(W_new, G_new)) / N
        if f_new > f:  # only rounding can raise it: we are at the floor
            converged = True
            break
        decrease = f - f_new
        W, G, f = W_new, G_new, f_new
        history.append(max(f, 0.0))
        n_iter += 1
        if decrease <= tol * total:
            converged = True
            break
    return SRMSolution([W[b].copy() for b in blocks], history, n_iter, converged)


#: the sample-space iteration needs every ``G_iᵀG_i`` this well conditioned (its
#: inverse square root then loses < ~1e-12 relative against the SVD polar factor)
_SAMPLE_SPACE_MIN_RCOND = 1e-8


def _sample_space_pays(n: int, dims: list[int], k: int, max_iter: int, init: str) -> bool:
    """Whether iterating in sample space costs less (flop count) than in feature space.

    Per iteration ``N n² k`` against ``2 n D k``; the Grams ``K_i`` (``n² D`` in all) come
    free with the PCA initialisation, which needs their sum, and are paid for otherwise.
    """
    N, D = len(dims), sum(dims)
    grams = 0 if init == "pca" else n * n * D
    return grams + max_iter * N * n * n * k < max_iter * 2 * n * D * k


def _solve_srm_sample_space(
    C: CrossProduct,
    dims: list[int],
    blocks: list[slice],
    k: int,
    max_iter: int,
    tol: float,
    init: str,
    seed: int,
) -> SRMSolution | None:
    """:func:`solve_srm` with fewer samples than features, iterated in sample space.

    With ``M = Z W`` ``(n, k)`` and the per-network Grams ``K_i = X_i X_iᵀ`` ``(n, n)``,
    block ``i`` of ``C W`` is ``G_i = X_iᵀ M`` and, when it has full column rank,
    ``polar(G_i) = G_i (G_iᵀG_i)^{−1/2}`` with ``G_iᵀG_i = Mᵀ K_i M``. The update
    ``W_i ← polar(G_i)`` is then ``M ← Σ_i K_i M P_i`` with ``P_i = (Mᵀ K_i M)^{−1/2}``,
    and the objective ``tr C − ‖M‖²/N``: ``O(N n² k)`` per iteration instead of
    ``O(n D k)`` (the ``K_i`` sum to the Gram the PCA initialisation needs anyway), and
    the maps ``W_i = X_iᵀ M P_i`` are formed once at the end. The same iterates as the
    feature-space loop, to rounding; ``None`` (use that loop) when some ``G_iᵀG_i`` is
    too ill-conditioned for the inverse square root.
    """
    Z = C.Z
    Xs = [np.ascontiguousarray(Z[:, b]) for b in blocks]
    K = [X @ X.T for X in Xs]
    N = len(Xs)
    W0 = _initial_maps(C, dims, blocks, k, init, seed, gram=sum(K[1:], K[0].copy()))
    M = sum(X @ W0[b] for X, b in zip(Xs, blocks, strict=True))
    total = C.block_trace()
    f = total - float(np.vdot(M, M)) / N
    history = [max(f, 0.0)]
    converged, n_iter = False, 0
    source: tuple[np.ndarray, list[np.ndarray]] | None = None  # (M, P_i) of the last update
    for _ in range(max_iter):
        KM = [Ki @ M for Ki in K]
        P = []
        for A in KM:
            lam, Q = np.linalg.eigh(M.T @ A)  # G_iᵀ G_i
            if lam[0] <= _SAMPLE_SPACE_MIN_RCOND * lam[-1]:
                return None
            P.append((Q / np.sqrt(lam)) @ Q.T)
        M_new = sum(A @ Pi for A, Pi in zip(KM, P, strict=True))
        f_new = total - float(np.vdot(M_new, M_new)) / N
        if f_new > f:  # only rounding can raise it: we are at the floor
            converged = True
            break
        decrease = f - f_new
        source, M, f = (M, P), M_new, f_new
        history.append(max(f, 0.0))
        n_iter += 1
        if decrease <= tol * total:
            converged = True
            break
    if source is None:
        W = [W0[b].copy() for b in blocks]
    else:
        M_src, P = source
        W = [X.T @ (M_src @ Pi) for X, Pi in zip(Xs, P, strict=True)]
    return SRMSolution(W, history, n_iter, converged)


@dataclass
class ProbSRMSolution:
    """Result of :func:`solve_srm_prob`."""

    W: list[np.ndarray]
    sigma_s: np.ndarray
    rho2: np.ndarray
    sigma_post: np.ndarray
    loglik: list[float]
    n_iter: int
    converged: bool


#: noise variances are kept at or above this fraction of the mean variance per feature,
#: so that noise-free (exactly shared) data leave the likelihood finite
RHO2_FLOOR = 1e-10


def solve_srm_prob(
    C: np.ndarray | CrossProduct,
    dims: Sequence[int],
    n: int,
    k: int | None = None,
    *,
    max_iter: int = 100,
    tol: float = 1e-9,
    init: str = "pca",
    seed: int = 0,
) -> ProbSRMSolution:
    """Probabilistic SRM by EM from the centred block cross-product ``C`` of ``n`` samples.

    Model (Chen et al. 2015, BrainIAK ``SRM``): ``x_i = W_i s + ε_i`` for every sample,
    ``s ~ N(0, Σ_s)``, ``ε_i ~ N(0, ρ_i² I)``, ``W_iᵀW_i = I``. With
    ``A = Σ_s⁻¹ + (Σ_i ρ_i⁻²) I`` and ``Σ_post = A⁻¹``, the E-step gives
    ``Ŝ = (Σ_i X_i W_i / ρ_i²) Σ_post`` and the M-step
    ``Σ_s = Σ_post + ŜᵀŜ/n``, ``W_i = polar(X_iᵀŜ)``,
    ``ρ_i² = (||X_i||² − 2 tr(W_iᵀX_iᵀŜ) + n tr Σ_s) / (n d_i)`` (kept at or above
    ``RHO2_FLOOR`` times the mean variance per feature). ``loglik[t]`` is the Gaussian
    log-likelihood ``Σ_t log N(x_t; 0, W Σ_s Wᵀ + Ψ)`` (Woodbury) of the parameters after
    ``t`` EM steps; it never decreases. Initialisation: ``W_i`` as for :func:`solve_srm`,
    ``Σ_s = v I`` with ``v`` the mean variance per feature, ``ρ_i²`` network ``i``'s mean
    variance per feature. Stops after ``max_iter`` steps or when a step raises the
    log-likelihood by at most ``tol · n · Σ d_i`` (``converged=True``).
    """
    C = _as_cross(C)
    dims, blocks, k = _check_blocks(C, dims, k)
    D = sum(dims)
    total = C.block_trace()
    if n < 2 or total <= 0.0:
        raise ValueError(
            "every representation is constant: the probabilistic SRM's noise variances "
            "are undefined"
        )
    W = _initial_maps(C, dims, blocks, k, init, seed)
    tr = np.array([C.block_trace(b) for b in blocks])
    d = np.array(dims, dtype=float)
    floor = RHO2_FLOOR * total / (n * D)
    rho2 = np.maximum(tr / (n * d), floor)
    sigma_s = np.eye(k) * (total / (n * D))
    log2pi = np.log(2.0 * np.pi)

    def e_step(W, sigma_s, rho2):
        prec = 1.0 / rho2
        Wt = np.vstack([W[b] * p for b, p in zip(blocks, prec, strict=True)])  # Ψ⁻¹ W
        G = C @ Wt
        Ls = np.linalg.cholesky(sigma_s)
        A = scipy.linalg.cho_solve((Ls, True), np.eye(k)) + prec.sum() * np.eye(k)
        La = np.linalg.cholesky((A + A.T) / 2)
        sigma_post = scipy.linalg.cho_solve((La, True), np.eye(k))
        M = Wt.T @ G  # WᵀΨ⁻¹ C Ψ⁻¹W
        quad = float(prec @ tr) - float(np.vdot(sigma_post, M))
        logdet = (
            float(d @ np.log(rho2))
            + 2.0 * float(np.log(np.diag(Ls)).sum())
            + 2.0 * float(np.log(np.diag(La)).sum())
        )
        loglik = -0.5 * (n * (D * log2pi + logdet) + quad)
        return loglik, G, M, (sigma_post + sigma_post.T) / 2

    L, G, M, sigma_post = e_step(W, sigma_s, rho2)
    history = [L]
    converged = False
    n_iter = 0
    for _ in range(max_iter):
        XtS = G @ sigma_post  # stacked X_iᵀ Ŝ
        sigma_s = sigma_post + sigma_post @ M @ sigma_post / n
        sigma_s = (sigma_s + sigma_s.T) / 2
        W = np.vstack([polar(XtS[b]) for b in blocks])
        ts = float(np.trace(sigma_s))
        fit = np.array([float(np.vdot(W[b], XtS[b])) for b in blocks])
        rho2 = np.maximum((tr - 2.0 * fit + n * ts) / (n * d), floor)
        L_new, G, M, sigma_post = e_step(W, sigma_s, rho2)
        history.append(L_new)
        n_iter += 1
        if L_new - L <= tol * n * D:
            converged = True
            break
        L = L_new
    return ProbSRMSolution(
        [W[b].copy() for b in blocks], sigma_s, rho2, sigma_post, history, n_iter, converged
    )


class SharedResponseModel(Alignment):
    """Common machinery of the SRM alignments (not a plugin: it has no ``name``).

    Subclasses implement ``_solve(C, dims, n)``, which fits the model from the block
    cross-product matrix and stores ``W_`` and the rest, and ``_shared(Xc)``, the shared
    response of centred training data.
    """

    family = "orthogonal"
    streaming = True
    center: bool = True

    # -- fitting ------------------------------------------------------------------
    def fit_many(self, Xs: Sequence[ArrayLike]) -> SharedResponseModel:
        """Fit ``N ≥ 2`` networks sharing the same ``n`` samples; returns ``self``."""
        if isinstance(Xs, np.ndarray) or not isinstance(Xs, Sequence):
            raise ValueError("fit_many needs a list of N >= 2 representations [X_1, ..., X_N]")
        if len(Xs) < 2:
            raise ValueError(f"SRM needs at least 2 networks; got {len(Xs)}")
        arrays = [as_matrix(X, f"Xs[{i}]") for i, X in enumerate(Xs)]
        for i, X in enumerate(arrays[1:], start=1):
            check_paired(arrays[0], X, ("Xs[0]", f"Xs[{i}]"))
        self._fit_arrays(arrays)
        self.T_ = self.map(0, 1)
        return self

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        self._fit_arrays([X, Y])
        return self.map(0, 1)

    def _fit_arrays(self, arrays: list[np.ndarray]) -> None:
        dims = [X.shape[1] for X in arrays]
        resolve_k(self.k, dims)  # fail before the O(n D²) product
        C, means = CrossProduct.of(arrays, self.center)
        self.means_ = means
        self._solve(C, dims, arrays[0].shape[0])
        Xs = [X - m for X, m in zip(arrays, means, strict=True)] if self.center else arrays
        self.S_ = self._shared(Xs)

    def _fit_moments(self, m: Moments) -> np.ndarray:
        resolve_k(self.k, [m.d_x, m.d_y])
        sxx, syy, sxy = m.sxx, m.syy, m.sxy
        if not self.center:
            sxx = sxx + m.n * np.outer(m.mean_x, m.mean_x)
            syy = syy + m.n * np.outer(m.mean_y, m.mean_y)
            sxy = sxy + m.n * np.outer(m.mean_x, m.mean_y)
        C = CrossProduct(np.block([[sxx, sxy], [sxy.T, syy]]))
        self.means_ = [np.asarray(m.mean_x, float), np.asarray(m.mean_y, float)]
        self._solve(C, [m.d_x, m.d_y], m.n)
        self.S_ = None
        return self.map(0, 1)

    def _solve(self, C: CrossProduct, dims: list[int], n: int) -> None:
        raise TypeError(f"{type(self).__name__} must define _solve(C, dims, n)")

    def _shared(self, Xs: list[np.ndarray]) -> np.ndarray:
        raise TypeError(f"{type(self).__name__} must define _shared(Xs)")

    # -- using the fit --------------------------------------------------------------
    def _maps(self) -> list[np.ndarray]:
        try:
            return self.W_
        except AttributeError:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted; call fit(X, Y) or fit_many(Xs)"
            ) from None

    def _index(self, i: int) -> int:
        N = len(self._maps())
        if not -N <= i < N:
            raise ValueError(f"network index {i} is out of range for {N} fitted networks")
        return i % N

    def map(self, i: int, j: int) -> np.ndarray:
        """``T_{i→j} = W_i W_jᵀ`` ``(d_i, d_j)``: ``X_j ≈ X_i T_{i→j}`` (centred data)."""
        W = self._maps()
        return W[self._index(i)] @ W[self._index(j)].T

    def transform_shared(self, X: ArrayLike, i: int) -> np.ndarray:
        """Network ``i``'s responses in the shared space: ``(X − mean_i) W_i``.

        The mean is network ``i``'s training mean (subtracted only when centring), so
        for deterministic SRM the average over networks of the training data's is ``S_``.
        """
        W = self._maps()[self._index(i)]
        Xa = to_numpy(X)
        if Xa.ndim != 2 or Xa.shape[1] != W.shape[0]:
            raise ValueError(
                f"network {i} has {W.shape[0]} features; X must be (n, {W.shape[0]}), "
                f"got {Xa.shape}"
            )
        if self.center:
            Xa = Xa - self.means_[self._index(i)]
        return Xa @ W


class SRM(SharedResponseModel):
    """Deterministic shared response model (Chen et al. 2015): ``T_{i→j} = W_i W_jᵀ``.

    ``fit(X, Y)`` fits two networks and sets ``T = W_0 W_1ᵀ`` (orthogonal when
    ``k = d_x = d_y``, semi-orthogonal when ``k = min(d_x, d_y)``, a rank-``k`` partial
    isometry otherwise); ``fit_many([X_1, …, X_N])`` fits ``N ≥ 2`` networks, sets
    ``T = map(0, 1)``, and ``map(i, j)`` returns ``T_{i→j}``. ``k`` defaults to
    ``min d_i``. ``center=True`` (default) removes each network's column means before
    fitting (the model has no offset; ``transform_shared`` subtracts the same means).
    ``max_iter``, ``tol``, ``init`` and ``seed`` control the iterations (module
    docstring, :func:`solve_srm`). After fitting: ``W_`` (list), ``S_`` (``(n, k)``,
    ``None`` when fitted from moments), ``objective_`` (history, non-increasing),
    ``n_iter_``, ``converged_``, ``means_``.
    """

    name = "srm"

    def __init__(
        self,
        k: PositiveInt | None = None,
        center: bool = True,
        max_iter: NonNegativeInt = 100,
        tol: NonNegativeFloat = 1e-10,
        init: Literal["pca", "random"] = "pca",
        seed: int = 0,
    ):
        self.k = k
        self.center = center
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.seed = seed

    def _solve(self, C: CrossProduct, dims: list[int], n: int) -> None:
        sol = solve_srm(
            C, dims, self.k, max_iter=self.max_iter, tol=self.tol, init=self.init, seed=self.seed
        )
        self.W_ = sol.W
        self.objective_ = sol.objective
        self.n_iter_ = sol.n_iter
        self.converged_ = sol.converged

    def _shared(self, Xs: list[np.ndarray]) -> np.ndarray:
        return sum(X @ W for X, W in zip(Xs, self.W_, strict=True)) / len(Xs)


class ProbabilisticSRM(SharedResponseModel):
    """Probabilistic shared response model (Chen et al. 2015; BrainIAK's EM ``SRM``).

    The model of :func:`solve_srm_prob`: ``x_i = W_i s + μ_i + ε_i`` with
    ``s ~ N(0, Σ_s)``, ``ε_i ~ N(0, ρ_i² I)``, ``W_iᵀW_i = I``, fitted by EM; ``μ_i``'s
    maximum-likelihood estimate is the column mean, so the data are always centred.
    ``T_{i→j} = W_i W_jᵀ`` as for ``srm``. After fitting: ``W_``, ``S_`` (posterior
    mean of the shared response, ``None`` when fitted from moments), ``sigma_s_``,
    ``rho2_``, ``loglik_`` (history, non-decreasing), ``n_iter_``, ``converged_``,
    ``means_``.
    """

    name = "srm_prob"

    def __init__(
        self,
        k: PositiveInt | None = None,
        max_iter: NonNegativeInt = 100,
        tol: NonNegativeFloat = 1e-9,
        init: Literal["pca", "random"] = "pca",
        seed: int = 0,
    ):
        self.k = k
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.seed = seed

    def _solve(self, C: CrossProduct, dims: list[int], n: int) -> None:
        sol = solve_srm_prob(
            C,
            dims,
            n,
            self.k,
            max_iter=self.max_iter,
            tol=self.tol,
            init=self.init,
            seed=self.seed,
        )
        self.W_ = sol.W
        self.sigma_s_ = sol.sigma_s
        self.rho2_ = sol.rho2
        self.loglik_ = sol.loglik
        self.n_iter_ = sol.n_iter
        self.converged_ = sol.converged
        self._sigma_post = sol.sigma_post

    def _shared(self, Xs: list[np.ndarray]) -> np.ndarray:
        # E[s | x] = Σ_post Σ_i W_iᵀ x_i / ρ_i²   (rows: Σ_i X_i W_i / ρ_i² · Σ_post)
        acc = sum(X @ W / r for X, W, r in zip(Xs, self.W_, self.rho2_, strict=True))
        return acc @ self._sigma_post
