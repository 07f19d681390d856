"""Compute every installed similarity metric on two arrays — the simbench API in one page.

Run:  python examples/all_metrics.py

Two "networks" share a 6-dimensional latent code but mix it differently and add
independent noise; network B's weights are a noisy copy of A's with their input basis
rotated. Each metric is looked up in the plugin registry, so metrics from installed
third-party packages appear here too.
"""

from __future__ import annotations

import numpy as np

import simbench
from simbench import Consumes


def main() -> None:
    rng = np.random.default_rng(0)
    n, k = 5000, 6
    Z = rng.normal(size=(n, k))
    X = np.maximum(Z @ rng.normal(size=(k, 64)), 0) + 0.3 * rng.normal(size=(n, 64))
    Y = np.maximum(Z @ rng.normal(size=(k, 48)), 0) + 0.3 * rng.normal(size=(n, 48))

    # Align B's representation onto A's basis, then compare weights in that basis.
    proc = simbench.get_alignment("procrustes").fit(X, Y)
    print(
        f"procrustes T: {proc.T.shape}, residual "
        f"{np.linalg.norm(Y - Y.mean(0) - (X - X.mean(0)) @ proc.T) / np.linalg.norm(Y):.3f}"
    )

    print(f"\n{'metric':<22}{'value':>10}{'± s.e.':>10}  {'better':<7} consumes")
    for rec in simbench.list_plugins("metric").itertuples():
        metric = simbench.get_metric(rec.name)
        cls = type(metric)
        if cls.consumes is Consumes.REPRESENTATIONS and cls.input_ndim == 2:
            a, b = X, Y
        else:  # weights, or conv activations: the metric's own example inputs
            a, b = cls.example_inputs(rng)
        try:
            score = metric.evaluate(a, b)
        except ValueError:  # e.g. riemannian_distance needs more features than samples
            score = metric.evaluate(*cls.example_inputs(rng))
        se = "" if score.stderr is None else f"{score.stderr:.3f}"
        better = "higher" if cls.higher_is_better else "lower"
        print(f"{rec.name:<22}{score.value:>10.4f}{se:>10}  {better:<7} {cls.consumes.value}")


if __name__ == "__main__":
    main()
