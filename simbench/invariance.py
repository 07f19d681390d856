"""Invariance checks on a suite's own activations (MATH.md: Ground-truth checks, Invariances).

:func:`check_invariances` applies a random transform of each kind in
:class:`~simbench.plugin.Invariance` to the feature axis (axis 1) of one input and records
the relative change ``|Δ| / max(1, |v|)`` of every metric. A claimed invariance is verified
when the change is at most ``tol`` (1e-6, MATH.md); an unclaimed one is "honestly
unclaimed" when the value does change by more than ``tol``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from simbench.metrics.base import Consumes, Metric
from simbench.plugin import Invariance

#: MATH.md: "value unchanged (to 1e-6)"
TOL = 1e-6

COLUMNS = [
    "metric",
    "invariance",
    "claimed",
    "invariant",
    "passed",
    "max_rel_change",
    "value",
    "error",
]


def haar_orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    """A Haar-distributed ``d × d`` orthogonal matrix (QR of a Gaussian, signs fixed)."""
    Q, R = np.linalg.qr(rng.normal(size=(d, d)))
    return Q * np.sign(np.diag(R))


def _on_features(A: np.ndarray, f: Any) -> np.ndarray:
    """Apply ``f`` to ``A`` with axis 1 moved last (so (n, d) and (B, C, H, W) both work)."""
    return np.moveaxis(f(np.moveaxis(A, 1, -1)), -1, 1)


def transform(A: np.ndarray, inv: Invariance, rng: np.random.Generator) -> np.ndarray:
    """A random transform of kind ``inv`` acting on the feature axis (axis 1) of ``A``.

    Permutation: a uniform random permutation. Orthogonal: Haar. Isotropic scaling:
    ``c = e^u``, ``u ~ U(-2, 2)``. Invertible linear: ``Q₁ diag(s) Q₂`` with ``s`` log-uniform
    in ``[0.3, 3]`` (well conditioned, far from orthogonal). Translation: a Gaussian shift
    of scale three times the mean absolute entry (so it is not negligible).
    """
    A = np.asarray(A, dtype=np.float64)
    d = A.shape[1]
    if inv is Invariance.PERMUTATION:
        return np.take(A, rng.permutation(d), axis=1)
    if inv is Invariance.ORTHOGONAL:
        Q = haar_orthogonal(rng, d)
        return _on_features(A, lambda B: B @ Q)
    if inv is Invariance.ISOTROPIC_SCALING:
        return A * float(np.exp(rng.uniform(-2.0, 2.0)))
    if inv is Invariance.INVERTIBLE_LINEAR:
        s = np.exp(rng.uniform(np.log(0.3), np.log(3.0), size=d))
        M = (haar_orthogonal(rng, d) * s) @ haar_orthogonal(rng, d)
        return _on_features(A, lambda B: B @ M)
    if inv is Invariance.TRANSLATION:
        shift = rng.normal(size=d) * float(np.abs(A).mean()) * 3.0
        return _on_features(A, lambda B: B + shift)
    raise ValueError(f"unknown invariance {inv!r}")


def relative_change(ref: float, got: float) -> float:
    """``|got − ref| / max(1, |ref|)`` (MATH.md tolerance convention); inf if either is NaN."""
    if not (np.isfinite(ref) and np.isfinite(got)):
        return float("inf")
    return abs(got - ref) / max(1.0, abs(ref))


MetricSpec = str | tuple[str, Mapping[str, Any]] | Mapping[str, Any] | Metric


def _build(spec: MetricSpec) -> tuple[str, Metric]:
    """``(label, metric)`` from a name, ``(name, params)``, ``{name, params, label}`` or a Metric.

    The label defaults to the bare name, or ``name(k=v, ...)`` when parameters are given;
    pass ``label`` to match the ``metric`` column of a results table exactly.
    """
    from simbench.registry import default_registry

    if isinstance(spec, Metric):
        return spec.name, spec
    if isinstance(spec, str):
        name, params, label = spec, {}, None
    elif isinstance(spec, tuple):
        if len(spec) != 2:
            raise ValueError(f"a metric given as a tuple must be (name, params); got {spec!r}")
        name, params, label = spec[0], dict(spec[1]), None
    elif isinstance(spec, Mapping):
        unknown = set(spec) - {"name", "params", "label"}
        if "name" not in spec or unknown:
            raise ValueError(
                f"a metric given as a mapping needs 'name' (and optional 'params', 'label'); "
                f"got keys {sorted(spec)}"
            )
        name, params, label = spec["name"], dict(spec.get("params") or {}), spec.get("label")
    else:
        raise ValueError(f"cannot build a metric from {spec!r}")
    metric = default_registry().create("metric", name, **params)
    if label is None:
        label = (
            name if not params else f"{name}({', '.join(f'{k}={v}' for k, v in params.items())})"
        )
    return str(label), metric


def _prepare(A: np.ndarray, ndim: int, rows: np.ndarray | None, what: str) -> np.ndarray:
    """``A`` in the layout a metric reads: 4-D kept for 4-D metrics, else (N·H·W, C)."""
    if A.ndim == ndim:
        out = A
    elif A.ndim == 4 and ndim == 2:
        out = np.moveaxis(A, 1, -1).reshape(-1, A.shape[1])
    else:
        raise ValueError(f"the metric needs {ndim}-D {what}; got an array of shape {A.shape}")
    return out if rows is None else out[rows]


def check_invariances(
    metric_names: Iterable[MetricSpec],
    X: Any,
    Y: Any,
    seed: int = 0,
    *,
    weights: tuple[Any, Any] | None = None,
    trials: int = 2,
    tol: float = TOL,
    max_samples: int | None = 1000,
) -> pd.DataFrame:
    """One row per (metric, invariance): is the metric's claim borne out on ``X``, ``Y``?

    ``X``, ``Y`` are paired activations of one layer, ``(n, d)`` or ``(B, C, H, W)`` (axis 1
    is the feature axis; 4-D arrays are flattened to ``(B·H·W, C)`` for 2-D metrics).
    ``weights`` = ``(W_x, W_y)`` aligned weight matrices for metrics that consume weights;
    without it their rows carry an ``error`` and ``passed`` is missing. Each invariance is
    tried ``trials`` times, alternately on ``X`` and on ``Y``, with transforms seeded by
    ``(seed, metric label, invariance, trial)`` (independent of the order of the metrics).
    At most ``max_samples`` rows (the same for ``X`` and ``Y``, seeded) are used, keeping
    O(n²) metrics cheap; ``None`` uses all rows.

    Columns: ``metric`` (label), ``invariance``, ``claimed`` (the metric instance's
    ``claimed_invariances()``), ``invariant`` (max change ≤ ``tol``), ``passed``
    (``invariant == claimed``: a claimed invariance holds, or an unclaimed one is visibly
    absent), ``max_rel_change`` (max over trials of ``|Δ| / max(1, |v|)``), ``value`` (the
    untransformed score), ``error`` (text when the metric failed, else empty).
    """
    if trials < 1:
        raise ValueError(f"trials must be at least 1; got {trials}")
    if not tol > 0:
        raise ValueError(f"tol must be positive; got {tol}")
    Xa, Ya = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if Xa.ndim not in (2, 4) or Ya.ndim not in (2, 4):
        raise ValueError(f"X and Y must be 2-D or 4-D; got shapes {Xa.shape} and {Ya.shape}")
    if Xa.shape[0] != Ya.shape[0]:
        raise ValueError(
            f"X and Y must be paired (same number of samples); got {Xa.shape[0]} and {Ya.shape[0]}"
        )
    if not (np.isfinite(Xa).all() and np.isfinite(Ya).all()):
        raise ValueError("X and Y must be finite (no NaN or inf)")
    specs = [_build(s) for s in metric_names]
    out: list[dict[str, Any]] = []
    for label, metric in specs:
        claimed = metric.claimed_invariances()
        inputs: tuple[np.ndarray, np.ndarray] | None = None
        error = ""
        try:
            if metric.consumes is Consumes.WEIGHTS:
                if weights is None:
                    raise ValueError("consumes weights: pass weights=(W_x, W_y)")
                inputs = (np.asarray(weights[0], float), np.asarray(weights[1], float))
            else:
                rows = _rows(Xa, metric.input_ndim, max_samples, seed)
                inputs = (
                    _prepare(Xa, metric.input_ndim, rows, "X"),
                    _prepare(Ya, metric.input_ndim, rows, "Y"),
                )
            ref = float(metric(*inputs))
        except Exception as exc:  # a failing metric fails only its own rows
            ref, error = float("nan"), f"{type(exc).__name__}: {exc}"
        for inv_index, inv in enumerate(Invariance):
            row = {
                "metric": label,
                "invariance": inv.value,
                "claimed": inv in claimed,
                "invariant": pd.NA,
                "passed": pd.NA,
                "max_rel_change": float("nan"),
                "value": ref,
                "error": error,
            }
            if not error and inputs is not None:
                try:
                    change = 0.0
                    for t in range(trials):
                        ss = np.random.SeedSequence(
                            [seed, zlib.crc32(label.encode()), inv_index, t]
                        )
                        rng = np.random.default_rng(ss)
                        A, B = inputs
                        got = (
                            metric(transform(A, inv, rng), B)
                            if t % 2 == 0
                            else metric(A, transform(B, inv, rng))
                        )
                        change = max(change, relative_change(ref, float(got)))
                    row["max_rel_change"] = change
                    row["invariant"] = change <= tol
                    row["passed"] = row["invariant"] == row["claimed"]
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"
                    row["passed"] = False if row["claimed"] else pd.NA
            out.append(row)
    df = pd.DataFrame(out, columns=COLUMNS)
    for col in ("claimed",):
        df[col] = df[col].astype(bool)
    for col in ("invariant", "passed"):
        df[col] = df[col].astype("boolean")
    return df


def _rows(A: np.ndarray, ndim: int, max_samples: int | None, seed: int) -> np.ndarray | None:
    """Seeded row subset (sorted) of the metric-layout array, or ``None`` to keep all rows."""
    n = A.shape[0] if A.ndim in (ndim, 2) else A.shape[0] * A.shape[2] * A.shape[3]
    if max_samples is None or n <= max_samples:
        return None
    if max_samples < 1:
        raise ValueError(f"max_samples must be at least 1; got {max_samples}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    return np.sort(rng.choice(n, size=max_samples, replace=False))
