"""Reference implementations of simbench metrics by their authors or standard toolboxes.

- netrep (ahwillia/netrep; not on PyPI: clone it and put the folder holding the
  ``netrep`` package on ``SIMBENCH_REFERENCE_PATHS``): ``LinearMetric`` for
  ``procrustes_distance``, ``LinearCKA`` for ``cka``, ``GaussianStochasticMetric`` for
  ``gaussian_shape``.
- rsatoolbox (PyPI): RDM comparison for ``rsa``; its eigendecomposition route for the
  Bures similarity (``_bures_similarity_second_way``) for unshrunk ``bures_cosine``.
- pyriemann (PyPI): ``distance_riemann`` for ``riemannian_distance``.
- brainiak (PyPI, needs mpi4py): ``DetSRM`` for the ``srm`` fit.

Each ``fn`` imports its reference lazily, so a missing one raises ``ImportError`` and
shows as "not installed". Every reference restates simbench's documented choices
(normalisations, splits) in its own terms; no simbench code is called.
"""

from __future__ import annotations

import numpy as np

# -- inputs --------------------------------------------------------------------------------


def _related(rng, n, dx, dy, k=None, noise=0.5, offset=1.0):
    k = k or max(1, min(dx, dy) // 2)
    Z = rng.normal(size=(n, k))
    X = Z @ rng.normal(size=(k, dx)) + noise * rng.normal(size=(n, dx)) + offset
    Y = Z @ rng.normal(size=(k, dy)) + noise * rng.normal(size=(n, dy)) - offset
    return X, Y


def _n_above_d(rng):
    return [
        ("600x48/40", *_related(rng, 600, 48, 40)),
        ("2000x64/64", *_related(rng, 2000, 64, 64)),
    ]


def _n_below_d(rng):
    return [
        ("60x200/150", *_related(rng, 60, 200, 150)),
        ("200x400/400", *_related(rng, 200, 400, 400)),
    ]


def _conditions(rng, m, g, dx, dy):
    """``m`` conditions of ``g`` contiguous rows: well-separated means, anisotropic noise."""
    C = 3.0 * rng.normal(size=(m, 5))
    X = (C @ rng.normal(size=(5, dx)))[:, None] + rng.normal(size=(m, g, dx)) * np.linspace(
        0.2, 1.0, dx
    )
    Y = (C @ rng.normal(size=(5, dy)))[:, None] + rng.normal(size=(m, g, dy)) * np.linspace(
        0.2, 1.0, dy
    )
    return X.reshape(m * g, dx), Y.reshape(m * g, dy)


def _grouped(rng):
    return [
        ("20 cond x 10 rows, 8/6", *_conditions(rng, 20, 10, 8, 6)),
        ("30 cond x 20 rows, 12/12", *_conditions(rng, 30, 20, 12, 12)),
    ]


def _weights(rng):
    """Spiked weights ``(n_out, d_in)``, PyTorch-default init variance: n_out > d_in and <."""
    out = []
    for n_out, d_in in ((2000, 256), (256, 1024)):
        V = np.linalg.qr(rng.normal(size=(d_in, 16)))[0]
        root = np.eye(d_in) + (V * (np.sqrt(1.0 + np.linspace(40, 400, 16)) - 1.0)) @ V.T
        sigma = np.sqrt(1.0 / (3 * d_in))
        W1 = sigma * rng.normal(size=(n_out, d_in)) @ root
        W2 = sigma * rng.normal(size=(n_out, d_in)) @ root
        out.append((f"W {n_out}x{d_in}", W1, W2))
    return out


def _srm_inputs(rng):
    """A planted 8-dimensional shared response, n < d (so the fits converge to one optimum)."""
    out = []
    for n, d in ((200, 300), (400, 1000)):
        S = rng.normal(size=(n, 8)) * np.linspace(3.0, 1.0, 8)
        Wx = np.linalg.qr(rng.normal(size=(d, 8)))[0]
        Wy = np.linalg.qr(rng.normal(size=(d, 8)))[0]
        X = S @ Wx.T + 0.1 * rng.normal(size=(n, d))
        Y = S @ Wy.T + 0.1 * rng.normal(size=(n, d))
        out.append((f"{n}x{d} planted k=8", X, Y))
    return out


# -- references ----------------------------------------------------------------------------


def _netrep_linear(alpha):
    def fn(X, Y):
        from netrep.metrics import LinearMetric

        return LinearMetric(alpha=alpha).fit_score(X, Y)

    return fn


def _netrep_cka(X, Y):
    from netrep.metrics import LinearCKA

    return float(np.cos(LinearCKA().score(X, Y)))  # netrep reports arccos(CKA)


def _netrep_gaussian(alpha, group_size):
    def fn(X, Y):
        from netrep.metrics import GaussianStochasticMetric

        d = max(X.shape[1], Y.shape[1])

        def gaussians(A):
            A = np.pad(A, ((0, 0), (0, d - A.shape[1])))  # netrep needs equal widths
            G = A.reshape(-1, group_size, d)
            mu = G.mean(axis=1)
            Gc = G - mu[:, None]
            return mu, np.einsum("mgi,mgj->mij", Gc, Gc) / group_size

        metric = GaussianStochasticMetric(alpha=alpha, niter=20000, tol=1e-15)
        return metric.fit_score(gaussians(X), gaussians(Y))

    return fn


def _rsatoolbox_rsa(method):
    def fn(X, Y):
        import rsatoolbox

        rdms = [
            rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(A), method="correlation")
            for A in (X, Y)
        ]
        return float(rsatoolbox.rdm.compare(rdms[0], rdms[1], method=method)[0, 0])

    return fn


def _rsatoolbox_bures(W1, W2):
    from rsatoolbox.rdm.compare import _bures_similarity_second_way

    def cov(W):  # C = WᵀW / (n_out σ²), σ² = 1/(3 d_in); the cosine ignores the scale
        return W.T @ W / (W.shape[0] / (3.0 * W.shape[1]))

    return float(_bures_similarity_second_way(cov(W1), cov(W2)))


def _pyriemann(X, Y):
    from pyriemann.utils.distance import distance_riemann

    return float(distance_riemann(X @ X.T / X.shape[1], Y @ Y.T / Y.shape[1]))


def _brainiak_srm(k, n_iter):
    def fn(X, Y):
        from brainiak.funcalign.srm import DetSRM

        # simbench's documented split: default_rng(0).permutation(n), first half held out
        n = X.shape[0]
        perm = np.random.default_rng(0).permutation(n)
        n_test = min(max(round(0.5 * n), 3), n - 2)
        train, test = np.sort(perm[n_test:]), np.sort(perm[:n_test])
        data = [(A[train] - A[train].mean(axis=0)).T for A in (X, Y)]  # (voxels, samples)
        srm = DetSRM(n_iter=n_iter, features=k, rand_seed=0).fit(data)
        held = [A[test] - A[test].mean(axis=0) for A in (X, Y)]
        shared = sum(H @ W for H, W in zip(held, srm.w_, strict=True))
        return float(np.sum(shared**2) / (2 * sum(np.sum(H**2) for H in held)))

    return fn


NETREP = "netrep (ahwillia/netrep)"

REFERENCES = [
    {
        "metric": "procrustes_distance",
        "params": {},
        "source": f"{NETREP} `LinearMetric(alpha=1)`",
        "fn": _netrep_linear(1.0),
    },
    {
        "metric": "procrustes_distance",
        "params": {"alpha": 0.5, "convention": "netrep"},
        "source": f"{NETREP} `LinearMetric(alpha=0.5)`",
        "fn": _netrep_linear(0.5),
    },
    {
        "metric": "procrustes_distance",
        "params": {"alpha": 0.0},
        "source": f"{NETREP} `LinearMetric(alpha=0)`",
        "fn": _netrep_linear(0.0),
        "inputs": _n_above_d,
        "note": "n > d only: at n < d both whitened sides span the same space and the "
        "distance is arccos(1 − rounding) ≈ 1.5e-8 on either side",
    },
    {
        "metric": "cka",
        "params": {},
        "source": f"{NETREP} `LinearCKA` (cos of its angle)",
        "fn": _netrep_cka,
    },
    {
        "metric": "gaussian_shape",
        "params": {},
        "source": f"{NETREP} `GaussianStochasticMetric(alpha=1)`, zero covariances",
        "fn": _netrep_gaussian(1.0, 1),
    },
    {
        "metric": "gaussian_shape",
        "params": {"group_size": 10},
        "source": f"{NETREP} `GaussianStochasticMetric(alpha=1)`",
        "fn": _netrep_gaussian(1.0, 10),
        "inputs": lambda rng: _grouped(rng)[:1],
    },
    {
        "metric": "gaussian_shape",
        "params": {"group_size": 20},
        "source": f"{NETREP} `GaussianStochasticMetric(alpha=1)`",
        "fn": _netrep_gaussian(1.0, 20),
        "inputs": lambda rng: _grouped(rng)[1:],
    },
    {
        "metric": "gaussian_shape",
        "params": {"alpha": 0.5, "group_size": 10, "convention": "netrep"},
        "source": f"{NETREP} `GaussianStochasticMetric(alpha=0.5)`",
        "fn": _netrep_gaussian(0.5, 10),
        "inputs": lambda rng: _grouped(rng)[:1],
    },
    {
        "metric": "rsa",
        "params": {},
        "source": "rsatoolbox `calc_rdm(correlation)`, `compare(corr)`",
        "fn": _rsatoolbox_rsa("corr"),
    },
    {
        "metric": "rsa",
        "params": {"compare": "spearman"},
        "source": "rsatoolbox `calc_rdm(correlation)`, `compare(spearman)`",
        "fn": _rsatoolbox_rsa("spearman"),
    },
    {
        "metric": "bures_cosine",
        "params": {"shrinkage": "none"},
        "source": "rsatoolbox `_bures_similarity_second_way` (eigh route) on WᵀW/(nσ²)",
        "fn": _rsatoolbox_bures,
        "inputs": _weights,
    },
    {
        "metric": "riemannian_distance",
        "params": {},
        "source": "pyriemann `distance_riemann` on XXᵀ/d",
        "fn": _pyriemann,
        "inputs": _n_below_d,
    },
    {
        "metric": "srm",
        "params": {"k": 8, "max_iter": 200, "tol": 0.0},
        "source": "brainiak `DetSRM(n_iter=200, features=8)`, held-out variance explained",
        "fn": _brainiak_srm(8, 200),
        "inputs": _srm_inputs,
        "note": "different initialisations (PCA vs random): values agree once both converge",
    },
]
