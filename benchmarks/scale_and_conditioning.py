"""Figures of issue 13 (items 6-7): linear CKA and the Procrustes distance on inputs
scaled by 1e±75..1e±200, and the Procrustes distance at feature scales spanning 4
decades against an SVD reference. Run it on a checkout to compare before and after::

    PYTHONPATH=. python benchmarks/scale_and_conditioning.py
"""

from __future__ import annotations

import time
import warnings

import numpy as np

import simbench


def _procrustes_svd_reference(X: np.ndarray, Y: np.ndarray) -> float:
    Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)
    Xc, Yc = Xc / np.linalg.norm(Xc), Yc / np.linalg.norm(Yc)
    return float(np.arccos(min(1.0, np.linalg.svd(Xc.T @ Yc, compute_uv=False).sum())))


def main() -> None:
    warnings.simplefilter("ignore")
    cka = simbench.get_metric("cka")
    pd = simbench.get_metric("procrustes_distance")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 10))
    Y = X @ rng.normal(size=(10, 10)) + rng.normal(size=(200, 10))
    print(f"unit scale: cka {cka(X, Y):.12g}  procrustes {pd(X, Y):.12g}")
    for s in (1e75, 1e100, 1e150, 1e200, 1e-200):
        out = []
        for m in (cka, pd):
            try:
                out.append(f"{m(s * X, s * Y):.12g}")
            except Exception as exc:  # the figure to report, whatever it is
                out.append(f"{type(exc).__name__}: {str(exc)[:60]}")
        print(f"scale {s:g}: cka {out[0]}  procrustes {out[1]}")
    for n, d in ((10000, 512), (2000, 128)):
        X = rng.normal(size=(n, d)) * np.logspace(0, -4, d)  # feature std 1 .. 1e-4
        Y = X + 0.01 * X.std(axis=0) * rng.normal(size=(n, d))  # 1 % noise
        t = time.perf_counter()
        value = pd(X, Y)
        seconds = time.perf_counter() - t
        ref = _procrustes_svd_reference(X, Y)
        m = pd.accumulator()
        for start in range(0, n, 1000):
            m.update(X[start : start + 1000], Y[start : start + 1000])
        rel = abs(value - ref) / ref
        print(
            f"procrustes n={n} d={d}: in memory {value:.9g}, streamed {pd(m):.9g}, "
            f"SVD reference {ref:.9g} (relative error {rel:.1e}; {seconds:.2f} s)"
        )


if __name__ == "__main__":
    main()
