"""Lu et al. (2018) Fig. 3 panels of the report, drawn when the suite scores ``srm``.

Lu Fig. 3, middle row: "Proportion variance explained by SRM (on the test set)" per
layer, with 95 % confidence intervals; Fig. 2A/3: the correlation between the mean
within-network RSM (wRSM) and the inter-network RSM (iRSM) in the shared space and in
the native space (no alignment). The ``srm`` metric records both correlations in its
details (``irsm_wrsm_corr``, ``irsm_wrsm_corr_native``; MATH.md, :mod:`simbench.metrics.srm`).

Intervals here: mean over pairs ± 1.96 × the standard error of
:func:`simbench.report.leaderboard.relation_means` (between-pair spread and each score's
stderr in quadrature) for the variance explained; ± 1.96 × the standard error over pairs
for the RSM correlations (no interval with a single pair). Lu et al. bootstrap over
simulation runs; the normal interval is the choice made here (stated in the caption).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from simbench.report.leaderboard import relation_means
from simbench.report.plots import (
    Figure,
    _color,
    _new_figure,
    _png,
    _relation_key,
    _relations_sorted,
    slug,
)

Z95 = 1.959963984540054


def _corrs(details: Any) -> tuple[float, float]:
    try:
        d = json.loads(details) if isinstance(details, str) else (details or {})
    except ValueError:
        d = {}
    if not isinstance(d, dict):
        d = {}

    def num(x: Any) -> float:
        try:
            return float(x)
        except (TypeError, ValueError):
            return float("nan")

    return num(d.get("irsm_wrsm_corr")), num(d.get("irsm_wrsm_corr_native"))


def srm_panels(valid: pd.DataFrame, raw_metric: pd.Series, order: list[str]) -> Iterator[Figure]:
    """One figure per SRM label and method: variance explained per layer with 95 % CIs
    (one line per relation), and the iRSM–wRSM correlation in shared vs native space.

    ``raw_metric`` is the plugin name of each row of ``valid`` (its ``metric`` column holds
    display labels such as ``srm(k=10)``).
    """
    srm = valid[(raw_metric.reindex(valid.index) == "srm") & (valid["layer_a"] == valid["layer_b"])]
    if srm.empty:
        return
    srm = srm.assign(relation=_relation_key(srm))
    for (metric, alignment), rows in srm.groupby(["metric", "alignment"], sort=False):
        layers = [x for x in order if x in set(rows["layer_a"])]
        pos = {name: i for i, name in enumerate(layers)}
        means = relation_means(rows)
        fig = _new_figure(max(8.0, 0.9 * len(layers) + 5.0), 3.6)
        ax1, ax2 = fig.subplots(1, 2)
        fig.subplots_adjust(wspace=0.3)
        rels = _relations_sorted(list(means["relation"].unique()))
        for i, rel in enumerate(rels):
            g = means[means["relation"] == rel]
            g = g.assign(x=g["layer"].map(pos)).sort_values("x")
            err = Z95 * g["err"].to_numpy(float)
            ax1.errorbar(g["x"], g["mean"], yerr=np.where(np.isfinite(err), err, 0.0),
                         marker="o", markersize=4, capsize=3, color=_color(rel, i, 0, 0),
                         label=f"{rel} ({int(g['pairs'].max())} pairs)")  # fmt: skip
        ax1.set_ylabel("variance explained (held out)", fontsize=9)
        ax1.set_title("SRM variance explained (Lu Fig. 3, middle)", fontsize=9)
        corr = np.array([_corrs(d) for d in rows.get("details", pd.Series(None, rows.index))])
        c = rows[["layer_a"]].assign(shared=corr[:, 0], native=corr[:, 1])
        have_native = bool(np.isfinite(c["native"]).any())
        for col, color, name in (("shared", "#1f77b4", "shared space (SRM)"),
                                 ("native", "#8c564b", "native space")):  # fmt: skip
            per = c.groupby("layer_a")[col].agg(["mean", "std", "count"]).reindex(layers)
            if not np.isfinite(per["mean"].to_numpy(float)).any():
                continue
            se = per["std"] / np.sqrt(per["count"])
            ax2.errorbar(range(len(layers)), per["mean"],
                         yerr=np.where(np.isfinite(se), Z95 * se, 0.0), marker="o",
                         markersize=4, capsize=3, color=color, label=name)  # fmt: skip
        ax2.set_ylabel("corr(iRSM, wRSM)", fontsize=9)
        ax2.set_title("Inter-network RSM vs within-network RSM", fontsize=9)
        for ax in (ax1, ax2):
            ax.set_xticks(range(len(layers)))
            ax.set_xticklabels(layers, rotation=45 if len(layers) > 6 else 0, fontsize=8)
            ax.set_xlabel("layer (depth order)")
            ax.grid(True, alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8, loc="best")
        fig.suptitle(f"{metric} · {alignment}", fontsize=10)
        yield Figure(
            slug("srm", metric, alignment),
            f"SRM (Lu et al. Fig. 3): {metric} · {alignment}",
            "Left: proportion of variance explained by the shared response model on held-out "
            "samples, mean over the pairs of each relation, error bars 95 % normal intervals "
            "(±1.96 standard errors: spread between pairs and each score's jackknife stderr). "
            "Right: correlation between the mean within-network RSM and the inter-network RSM "
            "in the shared space"
            + (
                " and in the native space (no alignment)"
                if have_native
                else " (native space n/a: the layers' widths differ)"
            )
            + ", mean over pairs ± 1.96 standard errors over pairs.",
            _png(fig),
            alt=f"Two line plots against layer depth ({len(layers)} layers): SRM variance "
            f"explained per relation with confidence intervals, and the iRSM–wRSM correlation "
            f"in shared{' and native' if have_native else ''} space.",
            section="srm",
        )
