"""Figures of the report as PNG bytes (matplotlib's Agg canvas; no pyplot, no global state).

- depth curves (GM Fig. 4): value against layer in depth order, one line per relation;
- layer × layer similarity matrices (rows with ``layer_a != layer_b``).

GM Fig. 1-3 are in :mod:`simbench.report.figures_gm`, Lu et al. Fig. 3 in
:mod:`simbench.report.figures_srm`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from simbench.report.leaderboard import _direction, relation_means

#: fixed colours so a relation looks the same in every figure
RELATION_COLORS = {
    "seed": "#1f77b4",
    "dataset": "#ff7f0e",
    "labels": "#d62728",
    "random_labels": "#9467bd",
    "other": "#7f7f7f",
}
RELATION_ORDER = ("seed", "dataset", "labels", "random_labels", "checkpoint", "other")


@dataclass(frozen=True)
class Figure:
    """A rendered figure: a file stem, a title, a caption, the PNG bytes, its alt text
    (what the image shows, for readers who cannot see it) and the report section."""

    name: str
    title: str
    caption: str
    png: bytes
    alt: str = ""
    section: str = ""


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    # no layout engine: constrained layout took half the rendering time; the margins are
    # trimmed once when saving (``bbox_inches="tight"``)
    fig = MplFigure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", pad_inches=0.08)
    return buf.getvalue()


def slug(*parts: str) -> str:
    """A file-name-safe stem from ``parts``."""
    text = "-".join(str(p).strip("[]") for p in parts)
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return out.strip("_") or "figure"


def _relation_key(df: pd.DataFrame) -> pd.Series:
    """Relation label per row; checkpoint rows are split by epoch (``checkpoint e3``)."""
    rel = df["relation"].astype(str)
    if "epoch_a" in df.columns or "epoch_b" in df.columns:
        ea = pd.to_numeric(df.get("epoch_a"), errors="coerce")
        eb = pd.to_numeric(df.get("epoch_b"), errors="coerce")
        ep = ea.where(ea.notna(), eb)
        both = ea.notna() & eb.notna()
        ep = ep.where(~both, np.minimum(ea, eb))
        is_ck = (rel == "checkpoint") & ep.notna()
        rel = rel.where(~is_ck, "checkpoint e" + ep.fillna(0).astype(int).astype(str))
    return rel


def _relations_sorted(names: list[str]) -> list[str]:
    def key(r: str) -> tuple[int, float, str]:
        head = r.split(" ")[0]
        idx = RELATION_ORDER.index(head) if head in RELATION_ORDER else len(RELATION_ORDER)
        epoch = float(r.split(" e")[-1]) if r.startswith("checkpoint e") else 0.0
        return idx, epoch, r

    return sorted(names, key=key)


def _color(rel: str, i: int, n_ck: int, ck_index: int) -> Any:
    if rel in RELATION_COLORS:
        return RELATION_COLORS[rel]
    if rel.startswith("checkpoint"):
        from matplotlib import colormaps

        return colormaps["Greens"](0.35 + 0.6 * (ck_index + 1) / max(1, n_ck))
    from matplotlib import colormaps

    return colormaps["tab10"](i % 10)


def _direction_text(sign: float) -> str:
    return "higher = more similar" if sign > 0 else "lower = more similar"


def depth_curves(valid: pd.DataFrame, order: list[str]) -> Iterator[Figure]:
    """GM Fig. 4: one figure per (metric, alignment), one line per relation, error bars."""
    if valid.empty:
        return
    data = valid.assign(relation=_relation_key(valid))
    means = relation_means(data)
    zmean = _mean_z(data[data["layer_a"] == data["layer_b"]], ["relation", "layer_a"])
    marked = False
    for (metric, alignment), m in means.groupby(["metric", "alignment"], sort=False):
        rows = valid[(valid["metric"] == metric) & (valid["alignment"] == alignment)]
        sign = _direction(rows)
        layers = [x for x in order if x in set(m["layer"])]
        if not layers:
            continue
        pos = {name: i for i, name in enumerate(layers)}
        fig = _new_figure(max(5.0, 0.45 * len(layers) + 2.5), 3.6)
        ax = fig.add_subplot()
        rels = _relations_sorted(list(m["relation"].unique()))
        cks = [r for r in rels if r.startswith("checkpoint")]
        for i, rel in enumerate(rels):
            g = m[m["relation"] == rel].copy()
            g["x"] = g["layer"].map(pos)
            g = g.sort_values("x")
            err = g["err"].to_numpy(float)
            pairs = int(g["pairs"].max())
            ax.errorbar(
                g["x"],
                g["mean"],
                yerr=np.where(np.isfinite(err), err, 0.0) if np.isfinite(err).any() else None,
                marker="o",
                markersize=4,
                capsize=3,
                linewidth=1.6,
                color=_color(rel, i, len(cks), cks.index(rel) if rel in cks else 0),
                label=f"{rel} ({pairs} pair{'s' if pairs != 1 else ''})",
            )
            z = zmean.get((metric, alignment), {})
            chance = [abs(z.get((rel, la), np.inf)) < 3 for la in g["layer"]]
            if any(chance):
                marked = True
                mask = np.array(chance)
                ax.scatter(
                    g["x"].to_numpy(float)[mask],
                    g["mean"].to_numpy(float)[mask],
                    s=90,
                    facecolors="none",
                    edgecolors="black",
                    linewidths=1.0,
                    zorder=5,
                )
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels(
            layers,
            rotation=45 if len(layers) > 6 else 0,
            ha="right" if len(layers) > 6 else "center",
            fontsize=8,
        )
        ax.set_xlabel("layer (depth order)")
        ax.set_ylabel(f"{metric} ({_direction_text(sign)})", fontsize=9)
        ax.set_title(f"{metric} · alignment {alignment}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        has_err = bool(np.isfinite(m["err"].to_numpy(float)).any())
        yield Figure(
            slug("depth", metric, alignment),
            f"Depth curve: {metric} · {alignment}",
            "Mean over pairs of each relation, per layer (same layer in both networks)"
            + (
                "; error bars: standard error (between pairs and each score's stderr: "
                "probe-block jackknife and Monte-Carlo error)"
                if has_err
                else "; no error bars: one pair per relation and no stderr in the results"
            )
            + ("; circled: not distinguishable from chance (mean |z| < 3)." if marked else "."),
            _png(fig),
            alt=f"Line plot of {metric} ({alignment}) against layer depth, "
            f"{len(layers)} layers ({layers[0]} to {layers[-1]}), one line per relation: "
            + ", ".join(rels)
            + ".",
            section="depth",
        )


def layer_matrices(valid: pd.DataFrame, order: list[str]) -> Iterator[Figure]:
    """Layer × layer similarity matrices, one panel per relation (mean over pairs, draws)."""
    cross = valid[valid["layer_a"] != valid["layer_b"]]
    if cross.empty:
        return
    from matplotlib.patches import Rectangle

    keys = set(zip(cross["metric"], cross["alignment"], strict=False))
    data = valid.assign(relation=_relation_key(valid))
    for (metric, alignment), rows in data.groupby(["metric", "alignment"], sort=False):
        if (metric, alignment) not in keys:
            continue
        sign = _direction(rows)
        rels = _relations_sorted(list(rows["relation"].unique()))
        panels = []
        for rel in rels:
            g = rows[rows["relation"] == rel]
            # draws first within a pair, then pairs with equal weight; the cell's standard
            # error from the pairs' stderrs (independent pairs), its z the mean over pairs
            cell = ["model_a", "model_b", "layer_a", "layer_b"]
            pm = g.groupby(cell)["value"].mean()
            mat = pm.groupby(level=["layer_a", "layer_b"]).mean().unstack("layer_b")
            if mat.shape[0] < 2 and mat.shape[1] < 2:
                continue
            pse = g.assign(v=pd.to_numeric(g["stderr"], errors="coerce") ** 2).groupby(cell)["v"]
            se = (
                pse.mean()
                .groupby(level=["layer_a", "layer_b"])
                .agg(lambda v: np.sqrt(v.sum()) / len(v))
            )
            zc = pd.to_numeric(g["z"], errors="coerce").groupby([g["layer_a"], g["layer_b"]])
            la = [x for x in order if x in mat.index]
            lb = [x for x in order if x in mat.columns]
            extras = (
                se.unstack("layer_b").reindex(index=la, columns=lb),
                zc.mean().unstack("layer_b").reindex(index=la, columns=lb),
            )
            panels.append((rel, mat.reindex(index=la, columns=lb), *extras))
        if not panels:
            continue
        n = max(max(p.shape) for _, p, *_ in panels)
        side = min(6.0, max(3.0, 0.35 * n + 1.5))
        ncols = 2 if len(panels) == 4 else min(3, len(panels))
        nrows = -(-len(panels) // ncols)
        fig = _new_figure(side * ncols + 1.0, side * nrows)
        grid = fig.subplots(nrows, ncols, squeeze=False)
        fig.subplots_adjust(wspace=0.45, hspace=0.45, right=0.85)
        for extra in grid.ravel()[len(panels) :]:
            extra.set_visible(False)
        axes = grid.ravel()[: len(panels)]
        allv = np.concatenate([p.to_numpy(float).ravel() for _, p, *_ in panels])
        vmin, vmax = np.nanmin(allv), np.nanmax(allv)
        cmap = "viridis" if sign > 0 else "viridis_r"
        im = None
        marked = with_se = False
        for ax, (rel, mat, sem, zm) in zip(axes, panels, strict=True):
            M = mat.to_numpy(float)
            SE, Z = sem.to_numpy(float), zm.to_numpy(float)
            im = ax.imshow(M, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
            for i, j in zip(*np.nonzero(np.isfinite(Z) & (np.abs(Z) < 3)), strict=True):
                marked = True
                ax.add_patch(
                    Rectangle(
                        (j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.85", lw=0
                    )
                )
            ax.set_xticks(range(M.shape[1]))
            ax.set_xticklabels(mat.columns, rotation=90, fontsize=7)
            ax.set_yticks(range(M.shape[0]))
            ax.set_yticklabels(mat.index, fontsize=7)
            ax.set_xlabel("layer of B")
            ax.set_ylabel("layer of A")
            ax.set_title(rel, fontsize=9)
            if M.shape[0] <= 10 and M.shape[1] <= 10:
                mid = (vmin + vmax) / 2
                for (i, j), v in np.ndenumerate(M):
                    if np.isfinite(v):
                        txt = f"{v:.2f}"
                        if np.isfinite(SE[i, j]):
                            with_se = True
                            txt += f"\n±{SE[i, j]:.2f}"
                        ax.text(
                            j,
                            i,
                            txt,
                            ha="center",
                            va="center",
                            fontsize=6,
                            color="white" if (v < mid) == (sign > 0) else "black",
                        )
        fig.colorbar(im, ax=list(axes), shrink=0.8, label=_direction_text(sign))
        fig.suptitle(f"{metric} · alignment {alignment}: layer × layer", fontsize=10)
        yield Figure(
            slug("layers", metric, alignment),
            f"Layer × layer: {metric} · {alignment}",
            "Each cell: the metric between layer i of A and layer j of B, mean over the "
            "pairs of that relation and their draws"
            + ("; ± its standard error" if with_se else "")
            + ("; hatched: not distinguishable from chance (mean |z| < 3)" if marked else "")
            + ".",
            _png(fig),
            alt=f"Heatmaps of {metric} ({alignment}) between every layer of network A (rows) "
            f"and every layer of network B (columns), one panel per relation: "
            + ", ".join(rel for rel, *_ in panels)
            + ".",
            section="layers",
        )


def _mean_z(rows: pd.DataFrame, by: list[str]) -> dict[tuple, dict[tuple, float]]:
    """``{(metric, alignment): {key: mean z}}`` over the rows' pairs and draws."""
    if "z" not in rows.columns or rows.empty:
        return {}
    z = pd.to_numeric(rows["z"], errors="coerce")
    out: dict[tuple, dict[tuple, float]] = {}
    for (metric, alignment, *key), v in z.groupby(
        [rows["metric"], rows["alignment"], *(rows[c] for c in by)], sort=False
    ):
        if v.notna().any():
            out.setdefault((metric, alignment), {})[tuple(key)] = float(v.mean())
    return out


def finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
