"""Reference implementations for linear_regression, gulp and distance_correlation.

Each entry names a simbench metric with its parameters and a callable ``fn(X, Y)`` that
computes the same quantity with the authors' (or a standard) implementation: only
imports and calls, plus the input convention the reference expects. A reference that
is not importable raises ImportError (the harness skips it). Sources:

- ``dcor`` (PyPI) for distance correlation;
- ReSi (github mklabunde/resi, package ``repsim``) and the GULP authors' repository
  (github sgstepaniants/GULP, module ``distance_functions``): not on PyPI; put their
  checkouts on ``SIMBENCH_REFERENCE_PATHS`` (the harness adds those dirs to sys.path);
- scikit-learn (PyPI) for cross-validated least squares.
"""

from __future__ import annotations

import math

import numpy as np


def _dcor(X: np.ndarray, Y: np.ndarray) -> float:
    import dcor

    return float(dcor.distance_correlation(X, Y))


def _dcor_sqr(X: np.ndarray, Y: np.ndarray) -> float:
    import dcor

    return float(dcor.distance_correlation_sqr(X, Y))


def _dcor_u_sqr(X: np.ndarray, Y: np.ndarray) -> float:
    import dcor

    return float(dcor.u_distance_correlation_sqr(X, Y))


def _resi_dcor(X: np.ndarray, Y: np.ndarray) -> float:
    from repsim.measures.distance_correlation import distance_correlation

    return float(distance_correlation(X, Y, shape="nd"))


def _resi_linear_reg(X: np.ndarray, Y: np.ndarray) -> float:
    from repsim.measures.linear_regression import linear_reg

    # ReSi's linear_reg(R, Rp) predicts R from Rp: simbench's x_to_y is linear_reg(Y, X)
    return float(linear_reg(Y, X, shape="nd"))


def _sklearn_cv_ols(X: np.ndarray, Y: np.ndarray, folds: int = 5) -> float:
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import PredefinedSplit, cross_val_predict

    fold = np.arange(X.shape[0]) % folds  # simbench's interleaved folds
    pred = cross_val_predict(LinearRegression(), X, Y, cv=PredefinedSplit(fold))
    ss_res = float(np.sum((Y - pred) ** 2))
    ss_tot = 0.0
    for k in range(folds):  # deviations from each held-out fold's own mean
        Yk = Y[fold == k]
        ss_tot += float(np.sum((Yk - Yk.mean(axis=0)) ** 2))
    return 1.0 - ss_res / ss_tot


def _gulp_authors(lam: float):
    def fn(X: np.ndarray, Y: np.ndarray) -> float:
        from distance_functions import predictor_dist

        def prepare(R: np.ndarray) -> np.ndarray:
            # the authors' input convention (cifar_experiments/compute_dists.py): features ×
            # samples, each row centred, the whole matrix scaled to Frobenius norm √n
            A = R.T - R.T.mean(axis=1, keepdims=True)
            return math.sqrt(A.shape[1]) * A / np.linalg.norm(A)

        return float(predictor_dist(prepare(X), prepare(Y), lmbda=lam))

    return fn


def _resi_gulp(lam: float):
    def fn(X: np.ndarray, Y: np.ndarray) -> float:
        from repsim.measures.gulp import gulp

        return float(gulp(X, Y, shape="nd", lmbda=lam))

    return fn


REFERENCES: list[dict] = [
    {
        "metric": "distance_correlation",
        "params": {},
        "source": "dcor.distance_correlation",
        "fn": _dcor,
    },
    {
        "metric": "distance_correlation",
        "params": {"squared": True},
        "source": "dcor.distance_correlation_sqr",
        "fn": _dcor_sqr,
    },
    {
        "metric": "distance_correlation",
        "params": {"bias_corrected": True},
        "source": "dcor.u_distance_correlation_sqr",
        "fn": _dcor_u_sqr,
    },
    {
        "metric": "distance_correlation",
        "params": {},
        "source": "ReSi repsim.measures.distance_correlation.distance_correlation",
        "fn": _resi_dcor,
    },
    {
        "metric": "linear_regression",
        "params": {"folds": 1, "alpha": 0.0, "direction": "x_to_y"},
        "source": "ReSi repsim.measures.linear_regression.linear_reg(Y, X)",
        "fn": _resi_linear_reg,
    },
    {
        "metric": "linear_regression",
        "params": {"folds": 5, "alpha": 0.0, "direction": "x_to_y"},
        "source": "sklearn cross_val_predict(LinearRegression, PredefinedSplit(i mod 5))",
        "fn": _sklearn_cv_ols,
    },
]
for _lam in (0.0, 1e-2, 1.0):
    REFERENCES += [
        {
            "metric": "gulp",
            "params": {"lam": _lam, "squared": True},
            "source": f"GULP distance_functions.predictor_dist(lmbda={_lam:g})",
            "fn": _gulp_authors(_lam),
        },
        {
            "metric": "gulp",
            "params": {"lam": _lam, "squared": True},
            "source": f"ReSi repsim.measures.gulp.gulp(lmbda={_lam:g})",
            "fn": _resi_gulp(_lam),
        },
    ]
