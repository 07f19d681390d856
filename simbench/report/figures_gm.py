"""Guth & Ménard (2024) figures of the report: Fig. 3 eigenvector-similarity heatmaps from
the results, and Fig. 1 (spatial eigenfilters) and Fig. 2 (accuracy against projection
rank) from the trained weights in the run's cache, when it is there.

GM Fig. 3 caption: "The colormap range is defined in terms of the expected level of
correlation between two random vectors (which is 1/√d), so that this base level
corresponds to the color white and statistically significant correlations (5 times this
base level) correspond to the color black. The axis arrows indicate the effective rank of
the corresponding weight covariance spectra." One figure per alignment, drawn once: the
weight metrics of a cell (``bures``, ``bures_cosine``, ``effective_rank``...) all point at
the same ``|V_aᵀ V_b|`` array, which is therefore shown once, not once per metric.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simbench.report.plots import Figure, _new_figure, _png, _relation_key, _relations_sorted, slug

#: a heatmap panel shows at most this many leading components (said in the caption)
MAX_COMPONENTS = 128
#: GM Fig. 3: white at the chance level 1/√d, black at 5/√d
SIGNIFICANCE_FACTOR = 5.0


def artifact_paths(value: Any, column: str) -> dict[str, str]:
    """``.npy`` paths referenced by one cell: a path string or a JSON object of them."""
    if not isinstance(value, str) or not value.strip():
        return {}
    text = value.strip()
    if text.lower().endswith(".npy"):
        return {column: text}
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            return {}
        found: dict[str, str] = {}
        stack: list[tuple[str, Any]] = [(column, obj)]
        while stack:
            key, v = stack.pop()
            if isinstance(v, dict):
                stack.extend((str(k), x) for k, x in v.items())
            elif isinstance(v, str) and v.lower().endswith(".npy"):
                found[key] = v
        return found
    return {}


def _details(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            got = json.loads(value)
        except ValueError:
            return {}
        return got if isinstance(got, dict) else {}
    return {}


def _load_array(path: str, root: Path) -> np.ndarray | None:
    p = Path(path)
    for cand in [p] if p.is_absolute() else [root / p, root / "cache" / p]:
        if cand.is_file():
            try:
                arr = np.load(cand, allow_pickle=False)
            except (OSError, ValueError):
                return None
            return arr if isinstance(arr, np.ndarray) and arr.ndim == 2 else None
    return None


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _cells(rows: pd.DataFrame, artifact_columns: list[str]) -> dict[tuple[str, str], dict]:
    """Per (relation, layer): the array path of the first pair (sorted by model ids) and
    what the rows pointing at that same array record (effective ranks ``r_x``/``r_y``,
    the chance level)."""
    cells: dict[tuple[str, str], dict] = {}
    sort_cols = [c for c in ("model_a", "model_b", "draw") if c in rows.columns]
    for _, r in rows.sort_values(sort_cols, kind="stable").iterrows():
        refs: dict[str, str] = {}
        for col in artifact_columns:
            refs.update(artifact_paths(r.get(col), col))
        if not refs:
            continue
        key = next(
            (k for k in refs if "overlap" in k.lower() or "eig" in k.lower()), next(iter(refs))
        )
        cell = cells.setdefault((str(r["relation"]), str(r["layer_a"])), {"path": refs[key]})
        if cell["path"] != refs[key]:  # another pair, or another shrinkage of this one
            continue
        det = _details(r.get("details"))
        for k in ("r_x", "r_y"):
            if _num(det.get(k)) is not None:
                cell.setdefault(k, _num(det[k]))
        if _num(det.get("eigenvector_chance")) is not None:
            cell.setdefault("chance", _num(det["eigenvector_chance"]))
    return cells


def _arrow(ax: Any, pos: float, n: int, axis: str) -> None:
    """A short arrow outside the panel pointing at component ``pos`` (0-based) of an axis;
    ``n`` is the panel's extent along the other axis."""
    kw = {"arrowprops": {"arrowstyle": "-|>", "color": "#d62728", "lw": 1.2},
          "textcoords": "offset points", "annotation_clip": False}  # fmt: skip
    if axis == "x":
        ax.annotate("", xy=(pos, n - 0.5), xytext=(0, -11), **kw)
    else:
        ax.annotate("", xy=(-0.5, pos), xytext=(-11, 0), **kw)


def eigenvector_heatmaps(
    valid: pd.DataFrame, order: list[str], root: Path, artifact_columns: list[str]
) -> tuple[list[Figure], int]:
    """GM Fig. 3: ``|V_aᵀ V_b|`` per relation (rows) and layer (columns, every layer), one
    figure per alignment, on GM's colour scale with effective-rank arrows.

    ``valid`` has the report's display columns (``alignment`` = the method). Returns the
    figures and the number of referenced arrays that could not be read (the report says
    so instead of failing).
    """
    figures: list[Figure] = []
    missing = 0
    if not artifact_columns or valid.empty:
        return figures, missing
    diag = valid[valid["layer_a"] == valid["layer_b"]]
    diag = diag.assign(relation=_relation_key(diag))
    for alignment, rows in diag.groupby("alignment", sort=False):
        cells = _cells(rows, artifact_columns)
        arrays: dict[tuple[str, str], np.ndarray] = {}
        for key, cell in cells.items():
            arr = _load_array(cell["path"], root)
            if arr is None:
                missing += 1
            else:
                arrays[key] = np.abs(arr)
        if not arrays:
            continue
        figures.append(_heatmap_figure(str(alignment), arrays, cells, order))
    return figures, missing


def _heatmap_figure(
    alignment: str,
    arrays: dict[tuple[str, str], np.ndarray],
    cells: dict[tuple[str, str], dict],
    order: list[str],
) -> Figure:
    from matplotlib.colors import Normalize

    rels = _relations_sorted(list(dict.fromkeys(r for r, _ in arrays)))
    layers = [x for x in order if any(lay == x for _, lay in arrays)]
    layers += [lay for _, lay in arrays if lay not in layers]
    # GM's scale needs 1/√d for every panel; results without it (schema < 3) get 0-1
    gm_scale = all(cells[k].get("chance") for k in arrays)
    fig = _new_figure(1.7 * len(layers) + 1.6, 1.8 * len(rels) + 0.9)
    axes = fig.subplots(len(rels), len(layers), squeeze=False)
    fig.subplots_adjust(wspace=0.3, hspace=0.3, top=1 - 0.5 / fig.get_figheight())
    norm = Normalize(1.0, SIGNIFICANCE_FACTOR) if gm_scale else Normalize(0.0, 1.0)
    im, arrows, capped = None, False, False
    for i, rel in enumerate(rels):
        for j, layer in enumerate(layers):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(layer, fontsize=8)
            if j == 0:
                ax.set_ylabel(rel, fontsize=8, labelpad=12)
            A = arrays.get((rel, layer))
            if A is None:
                ax.set_facecolor("#eeeeee")
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", fontsize=7,
                        transform=ax.transAxes, color="#777777")  # fmt: skip
                continue
            capped |= max(A.shape) > MAX_COMPONENTS
            A = A[:MAX_COMPONENTS, :MAX_COMPONENTS]
            cell = cells[(rel, layer)]
            shown = A / cell["chance"] if gm_scale else A
            im = ax.imshow(shown, norm=norm, cmap="Greys", interpolation="nearest")
            for k, axis, n in (("r_y", "x", A.shape[0]), ("r_x", "y", A.shape[1])):
                r = cell.get(k)
                if r is not None:
                    arrows = True
                    _arrow(ax, min(r, A.shape[1 if axis == "x" else 0]) - 1.0, n, axis)
    label = (
        r"$|v_{a,i}^{\top} v_{b,j}|\;\sqrt{d}$  (1 = chance, 5 = significant)"
        if gm_scale
        else r"$|v_{a,i}^{\top} v_{b,j}|$"
    )
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=label)
    fig.suptitle(f"Eigenvector similarity (GM Fig. 3) · alignment {alignment}", fontsize=10)
    n_shown = len(arrays)
    caption = (
        "Absolute cosine similarity |v_a,iᵀ v_b,j| between the leading eigenvectors (rank "
        "order, kept after shrinkage) of the two aligned weight covariances, for the first "
        "pair of each relation (rows) at every layer (columns); "
        + (
            "GM's colour scale: white at the chance level 1/√d of two random unit vectors "
            "in the layer's input dimension d, black at 5/√d (significant)"
            if gm_scale
            else "linear scale from 0 (white) to 1 (black): these results do not record the "
            "layer's input dimension d, so GM's 1/√d to 5/√d scale cannot be drawn"
        )
        + (
            "; red arrows: effective rank of each covariance (B on the horizontal axis, "
            "A on the vertical)"
            if arrows
            else "; no effective-rank arrows: the suite has no `effective_rank` metric"
        )
        + (f"; at most {MAX_COMPONENTS} components shown" if capped else "")
        + ("; grey: no array for that cell." if n_shown < len(rels) * len(layers) else ".")
    )
    return Figure(
        slug("eigvec", alignment),
        f"Eigenvector similarity: {alignment}",
        caption,
        _png(fig),
        alt=f"Grid of {n_shown} heatmaps of eigenvector cosine similarity under the "
        f"{alignment} alignment: rows are relations ({', '.join(rels)}), columns are the "
        f"layers {', '.join(layers)}; dark cells mark eigenvectors more aligned than chance.",
        section="eigvec",
    )


# -- GM Fig. 1 and Fig. 2: from the trained weights in the run's cache ------------------------
#: at most this many models get a Fig. 1 (spatial eigenfilters) figure
MAX_FILTER_MODELS = 4
#: GM Fig. 1 shows the first 9 eigenvectors of larger kernels
MAX_FILTERS = 9
#: test images (seeded random subset) for the accuracy against projection rank
PROJECTION_IMAGES = 300


def _checkpoints(root: Path) -> list[Path]:
    """The final weights of the models the run trained (``<output>/cache/models``)."""
    return sorted((root / "cache" / "models").glob("*/model.safetensors"))


def _model_label(meta: dict[str, Any]) -> str:
    spec = meta.get("spec") or {}
    arch = (spec.get("architecture") or {}).get("name", "?")
    data = meta.get("dataset") or (spec.get("dataset") or {}).get("name", "?")
    return f"{arch} on {data}, seed {spec.get('seed', '?')}"


def weight_figures(root: Path) -> tuple[list[Figure], list[str]]:
    """GM Fig. 1 (spatial eigenfilters per layer, one figure per trained model) and GM
    Fig. 2 bottom right (test accuracy against projection rank, first true-label model),
    from the checkpoints in the run's cache. Returns the figures and notes saying what
    could not be drawn and why."""
    from simbench.train.checkpoint import load_model

    paths = _checkpoints(root)
    if not paths:
        why = (
            "GM Fig. 1 (spatial eigenfilters) and Fig. 2 (accuracy against projection rank) "
            "are drawn from the trained weights, and this results folder holds no "
            "`cache/models/*/model.safetensors` (a committed or moved results folder, or "
            "a suite whose `cache:` lies elsewhere): not drawn."
        )
        return [], [why]
    figures: list[Figure] = []
    notes: list[str] = []
    sidecars = {p: _sidecar(p) for p in paths}
    true = [p for p in paths if "random" not in str(sidecars[p].get("spec", {}).get("dataset"))]
    loaded: dict[Path, Any] = {}

    def model(p: Path) -> Any:
        if p not in loaded:
            try:
                loaded[p] = load_model(p)
            except (ValueError, OSError, KeyError) as exc:
                notes.append(f"checkpoint {p.parent.name} could not be loaded ({exc})")
                loaded[p] = None
        return loaded[p]

    for p in paths[:MAX_FILTER_MODELS]:
        got = model(p)
        fig = _eigenfilter_figure(*got) if got is not None else None
        if fig is not None:
            figures.append(fig)
    if len(paths) > MAX_FILTER_MODELS:
        notes.append(
            f"GM Fig. 1 drawn for the first {MAX_FILTER_MODELS} of {len(paths)} trained models"
        )
    if loaded and not any(f.name.startswith("eigenfilters-") for f in figures):
        notes.append("no GM Fig. 1: the models have no spatial (k > 1) convolution")
    got = model(true[0]) if true else None
    if got is not None:
        fig, why = _projection_figure(*got)
        if fig is not None:
            figures.append(fig)
        else:
            notes.append(f"no GM Fig. 2: {why}")
    elif not true:
        notes.append("no GM Fig. 2: every trained model has random labels")
    return figures, notes


def _sidecar(path: Path) -> dict[str, Any]:
    try:
        got = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def _eigenfilter_figure(model: Any, arch: Any, meta: dict[str, Any]) -> Figure | None:
    """One image: a mosaic of every layer's leading eigenfilters (one ``imshow``, not one
    axes per filter, which made this figure the slowest of the report)."""
    from simbench.compare import spatial_eigenvectors

    eig = spatial_eigenvectors(model, arch)
    if not eig:
        return None
    layers = list(eig)
    ncols = min(MAX_FILTERS, max(len(f) for _, f in eig.values()))
    k = max(f.shape[1] for _, f in eig.values())
    cell = k + 1  # one blank pixel between filters
    mosaic = np.full((len(layers) * cell - 1, ncols * cell - 1), np.nan)
    for i, layer in enumerate(layers):
        filt = eig[layer][1]
        for j in range(min(ncols, len(filt))):
            f = filt[j] / (float(np.abs(filt[j]).max()) or 1.0)
            r0, c0 = i * cell + (k - f.shape[0]) // 2, j * cell + (k - f.shape[1]) // 2
            mosaic[r0 : r0 + f.shape[0], c0 : c0 + f.shape[1]] = f
    fig = _new_figure(0.55 * ncols + 1.3, 0.55 * len(layers) + 0.9)
    ax = fig.add_subplot()
    from matplotlib import colormaps

    cmap = colormaps["RdBu_r"].with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([j * cell + (k - 1) / 2 for j in range(ncols)])
    ax.set_xticklabels([str(j + 1) for j in range(ncols)], fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks([i * cell + (k - 1) / 2 for i in range(len(layers))])
    ax.set_yticklabels(layers, fontsize=7)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    who = _model_label(meta)
    ax.set_title(f"Spatial eigenfilters (GM Fig. 1): {who}\nrank →", fontsize=8)
    return Figure(
        slug("eigenfilters", who),
        f"Spatial eigenfilters: {who}",
        "Leading eigenvectors (columns, by decreasing eigenvalue; at most "
        f"{MAX_FILTERS}) of each layer's k² × k² spatial filter covariance, averaged over "
        'the output and input channels (GM section 2.2, MATH.md "Spatial eigenvectors"); '
        "red positive, blue negative, each filter scaled to its largest magnitude.",
        _png(fig),
        alt=f"Grid of spatial eigenfilters of {who}: one row per convolutional layer "
        f"({', '.join(layers)}), the first {ncols} eigenvectors as small colour images.",
        section="gm12",
    )


def _projection_figure(model: Any, arch: Any, meta: dict[str, Any]) -> tuple[Figure | None, str]:
    from simbench.compare import rank_projection_accuracy
    from simbench.train.checkpoint import create_plugin

    spec = meta.get("spec") or {}
    ds = spec.get("dataset") or {}
    norm = meta.get("normalization")
    if not ds.get("name") or not norm:
        return None, "the checkpoint records no dataset or normalization"
    try:
        data = create_plugin("dataset", ds["name"], ds.get("params") or {}).load()
    except Exception as exc:  # a dataset that is not on this machine
        return None, f"its dataset {ds['name']!r} cannot be loaded here ({exc})"
    n = len(data.y_test)
    if n == 0:
        return None, "its dataset has no test split"
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(n, size=min(n, PROJECTION_IMAGES), replace=False))
    d_max = max(int(np.prod(s.weight(model).shape[1:])) for s in arch.layers(model) if not s.frozen)
    ranks = sorted({*(2**k for k in range(int(math.log2(d_max)) + 1)), d_max})
    table = rank_projection_accuracy(
        model, arch, data.x_test[idx], np.asarray(data.y_test)[idx], norm, ranks
    )
    full = float(table["accuracy"].iloc[-1])
    se = np.sqrt(table["accuracy"] * (1 - table["accuracy"]) / len(idx))
    fig = _new_figure(5.5, 3.4)
    ax = fig.add_subplot()
    ax.errorbar(table["rank"], table["accuracy"], yerr=se, marker="o", markersize=4, capsize=3)
    ax.axhline(1.0 / data.num_classes, color="0.5", ls=":", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("projection rank r (every layer: W ← W V_r V_rᵀ)")
    ax.set_ylabel("test accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    who = _model_label(meta)
    ax.set_title(f"Accuracy against projection rank (GM Fig. 2): {who}", fontsize=9)
    return (
        Figure(
            slug("projection", who),
            f"Accuracy against projection rank: {who}",
            "Test accuracy when every layer's weight is projected onto the top-r "
            "eigenvectors of its covariance WᵀW (r capped at the layer's input dimension; "
            "GM Fig. 2, bottom right), on a seeded random subset of "
            f"{len(idx)} test images; error bars: binomial standard error; the last point "
            f"(r = {ranks[-1]}) is the unprojected model ({full:.3f}).",
            _png(fig),
            alt=f"Line plot of {who}'s test accuracy against the projection rank r on a "
            f"log scale from 1 to {ranks[-1]}, with the chance level as a dotted line.",
            section="gm12",
        ),
        "",
    )
