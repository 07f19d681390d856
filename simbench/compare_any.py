"""``simbench.compare(module_a, module_b, images, ...)``: any two ``nn.Module``s, layer by layer.

The probe images stream through both models in batches (one batch on the device at a
time), in eval mode and float64 by default (copies of the modules; the originals are left
untouched), each with its own preprocessing. Layers are chosen by name or glob
(:func:`simbench.models.foreign.select_layers`) and read at their output (default) or
input with forward hooks. Two modes:

- paired layers (default): layers of the same name (or, with ``layers_b``, the i-th
  selected layer of A with the i-th of B). Representation metrics score the channel
  samples ``(B·P, C)`` (MATH.md conventions, ``positions`` per image, the runner's
  sampling), streaming metrics from moments only; weight metrics score the selected
  Linear/Conv2d weights with B's pulled back into A's input basis by each alignment, fitted
  on the layers' *input* representations (MATH.md: pulling weights back), each with its
  init variance (column ``init_source_*``: ``pytorch_default`` or ``parameter``);
- ``layer_matrix=True``: every layer of A against every layer of B (any architectures),
  on ``features="pooled"`` (global average over positions, ``(B, C)``) or ``"flat"``
  (``(B, C·H·W)``, Kornblith's convention; memory grows with ``C·H·W``); 4-D metrics
  (``svcca_dft``) on maps pooled to the matrix grid (:mod:`simbench.numerics.grids`).
  Weight metrics are not defined across unpaired layers and are refused in this mode.

Returns a tidy DataFrame, one row per (layer pair, alignment, metric), with the runner's
columns where they apply (schema 3, :mod:`simbench.runner.results`: ``metric`` the plugin
name and ``metric_params`` its JSON; ``alignment``/``alignment_params`` for weight rows,
None for representation rows; ``features`` ``positions``, ``maps``, ``pooled`` or
``flattened``; ``error`` None on success).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from simbench.extract import LayerPair, channel_samples, paired_channel_samples
from simbench.metrics.base import Consumes
from simbench.models.foreign import InitVariance, ModuleTaps, Tap, select_layers
from simbench.numerics.grids import append_matrix_features, common_grid, to_common_grid
from simbench.numerics.moments import Moments
from simbench.plugin import Score
from simbench.registry import default_registry
from simbench.runner.results import params_json

__all__ = ["compare"]

MetricRef = str | Mapping[str, Any]


def _ref(ref: MetricRef) -> tuple[str, dict[str, Any], str]:
    if isinstance(ref, str):
        return ref, {}, ref
    if isinstance(ref, Mapping) and "name" in ref:
        params = dict(ref.get("params") or {})
        label = ref["name"] + (
            "(" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")" if params else ""
        )
        return str(ref["name"]), params, label
    raise ValueError(f"a metric/alignment is a name or {{name, params}}; got {ref!r}")


def _probe(images: Any) -> tuple[np.ndarray, bool]:
    """``(array, preprocessed)``: uint8 NHWC images, or float NCHW already preprocessed."""
    if hasattr(images, "load") and callable(images.load):  # a dataset plugin instance
        images = images.load()
    if hasattr(images, "x_test"):  # ImageData
        images = images.x_test
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.dtype == np.uint8:
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"uint8 images must be (N, H, W, C) with C in 1, 3, 4; got {arr.shape}"
            )
        return arr, False
    if np.issubdtype(arr.dtype, np.floating) and arr.ndim == 4:
        if not np.isfinite(arr).all():
            raise ValueError("the float probe images contain NaN or inf")
        return arr, True
    raise ValueError(
        "images must be uint8 (N, H, W, C) (normalised per model) or preprocessed float "
        f"(N, C, H, W); got dtype {arr.dtype}, shape {arr.shape}"
    )


def _batches(
    images: np.ndarray,
    preprocessed: bool,
    norm: Mapping[str, Any] | None,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
) -> Iterator[torch.Tensor]:
    from simbench.data.resize import resize_center_crop
    from simbench.extract import image_batches

    if preprocessed:
        for s in range(0, len(images), batch_size):
            yield torch.from_numpy(np.ascontiguousarray(images[s : s + batch_size])).to(
                device, dtype
            )
        return
    c = images.shape[-1]
    norm = dict(norm or {})
    mean, std = norm.get("mean", (0.0,) * c), norm.get("std", (1.0,) * c)
    if len(mean) != c or len(std) != c or min(std) <= 0:
        raise ValueError(f"normalization needs {c} means and {c} positive stds; got {norm}")
    for x in image_batches(images, mean, std, batch_size, device):
        x = resize_center_crop(x, norm.get("input_size"), float(norm.get("crop_pct", 1.0)))
        yield x.to(dtype)


def _prepare(module: nn.Module, dtype: torch.dtype | None) -> tuple[nn.Module, torch.device]:
    if not isinstance(module, nn.Module):
        raise ValueError(f"expected a torch.nn.Module; got {type(module).__name__}")
    p = next(iter(module.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    net = copy.deepcopy(module)
    if dtype is not None:
        net = net.to(dtype)
    return net.eval(), device


@torch.no_grad()
def compare(
    module_a: nn.Module,
    module_b: nn.Module,
    images: Any,
    *,
    layers: str | Sequence[str] | None = None,
    layers_b: str | Sequence[str] | None = None,
    metrics: Sequence[MetricRef] = ("cka",),
    alignments: Sequence[MetricRef] = ("procrustes",),
    tap: Tap = "output",
    layer_matrix: bool = False,
    features: Literal["pooled", "flat"] = "pooled",
    normalization: Mapping[str, Any] | None = None,
    normalization_b: Mapping[str, Any] | None = None,
    init_variance: InitVariance = None,
    init_variance_b: InitVariance = None,
    batch_size: int = 64,
    positions: int | None = 16,
    seed: int = 0,
    dtype: torch.dtype | None = torch.float64,
    names: tuple[str, str] = ("a", "b"),
) -> pd.DataFrame:
    """Compare two modules on ``images`` (see the module docstring).

    ``images``: uint8 ``(N, H, W, C)`` (each model gets ``(x/255 − mean)/std`` with its
    ``normalization`` ``{mean, std, input_size, crop_pct}``, default mean 0, std 1, no
    resize) or float ``(N, C, H, W)`` used as given; a dataset plugin (its test split).
    ``layers``/``layers_b``: module names or globs (default: every Linear and ungrouped
    Conv2d). ``metrics``/``alignments``: names or ``{name, params}``. ``init_variance``
    (``_b``): a number or ``{glob: number}`` for layers not initialised by PyTorch's default.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if features not in ("pooled", "flat"):
        raise ValueError(f"features must be 'pooled' or 'flat'; got {features!r}")
    arr, pre = _probe(images)
    if len(arr) < 2:
        raise ValueError(f"need at least 2 probe images; got {len(arr)}")
    reg = default_registry()
    mets = []
    for ref in metrics:
        name, params, label = _ref(ref)
        mets.append(((name, params_json(params)), reg.create("metric", name, **params)))
    if not mets:
        raise ValueError("metrics is empty")
    wants_weights = any(m.consumes is Consumes.WEIGHTS for _, m in mets)
    aligns = [_ref(r) for r in alignments] if wants_weights else []
    if wants_weights and layer_matrix:
        raise ValueError("weight metrics need paired layers; use layer_matrix=False for them")
    if wants_weights and not aligns:
        raise ValueError("weight metrics need at least one alignment")
    for name, params, _ in aligns:
        reg.create("alignment", name, **params)  # validate before the pass

    sel_a = select_layers(module_a, layers, init_variance=init_variance)
    sel_b = select_layers(
        module_b,
        layers if layers_b is None else layers_b,
        init_variance=init_variance if init_variance_b is None else init_variance_b,
    )
    src_a = {s.name: src for s, src in sel_a}
    src_b = {s.name: src for s, src in sel_b}
    specs_a, specs_b = [s for s, _ in sel_a], [s for s, _ in sel_b]
    if layer_matrix:
        pairs = [LayerPair(a, b) for a in specs_a for b in specs_b]
    elif layers_b is not None:
        if len(specs_a) != len(specs_b):
            raise ValueError(
                f"layers selects {len(specs_a)} layer(s) of A and layers_b {len(specs_b)} of "
                "B; paired comparison needs as many (or use layer_matrix=True)"
            )
        pairs = [LayerPair(a, b) for a, b in zip(specs_a, specs_b, strict=True)]
    else:
        by_b = {s.name: s for s in specs_b}
        pairs = [LayerPair(a, by_b[a.name]) for a in specs_a if a.name in by_b]
        if not pairs:
            raise ValueError(
                "the two modules share no selected layer name; pass layers_b=... to pair "
                "layers by position, or layer_matrix=True to compare every layer pair"
            )

    net_a, dev_a = _prepare(module_a, dtype)
    net_b, dev_b = _prepare(module_b, dtype)
    run_dtype = dtype or torch.float32
    ba = _batches(arr, pre, normalization, batch_size, dev_a, run_dtype)
    bb = _batches(
        arr,
        pre,
        normalization if normalization_b is None else normalization_b,
        batch_size,
        dev_b,
        run_dtype,
    )
    need_moments = any(getattr(m, "streaming", False) and m.input_ndim == 2 for _, m in mets)
    need_samples = any(
        m.consumes is Consumes.REPRESENTATIONS and not m.streaming and m.input_ndim == 2
        for _, m in mets
    )
    need_maps = any(m.input_ndim == 4 for _, m in mets)
    fourth = any(getattr(m, "streaming_fourth", False) for _, m in mets)
    la = list(dict.fromkeys(p.a.name for p in pairs))
    lb = list(dict.fromkeys(p.b.name for p in pairs))
    sa = {s.name: s for s in specs_a}
    sb = {s.name: s for s in specs_b}
    wpairs = [p for p in pairs if p.a.kind != "block" and p.b.kind != "block"]

    moments = {p.name: Moments(fourth=fourth) for p in pairs} if not layer_matrix else {}
    inputs = {p.name: Moments() for p in wpairs} if wants_weights else {}
    acts: dict[str, list[np.ndarray]] = {}
    grid: tuple[int, int] | None = None
    with (
        ModuleTaps(net_a, [sa[n] for n in la], tap) as ta,
        ModuleTaps(net_b, [sb[n] for n in lb], tap) as tb,
        ModuleTaps(net_a, [p.a for p in wpairs] if wants_weights else [], "input") as ia,
        ModuleTaps(net_b, [p.b for p in wpairs] if wants_weights else [], "input") as ib,
    ):
        for i, (xa, xb) in enumerate(zip(ba, bb, strict=True)):
            net_a(xa)
            net_b(xb)
            if layer_matrix:
                if need_maps and i == 0:  # the matrix grid (simbench.numerics.grids)
                    grid = common_grid(
                        [tuple(ta.values[n].shape) for n in la]
                        + [tuple(tb.values[n].shape) for n in lb]
                    )
                append_matrix_features(
                    acts,
                    (("a", ta.values, la), ("b", tb.values, lb)),
                    features == "flat",
                    need_maps,
                    grid,
                )
                continue
            for p in pairs:
                ya, yb = ta.values[p.a.name], tb.values[p.b.name]
                xs, ys = paired_channel_samples(
                    ya,
                    yb,
                    positions,
                    seed,
                    i,
                    f"layers {p.a.name!r} and {p.b.name!r} at their {tap} (or use "
                    "layer_matrix=True)",
                )
                xs, ys = xs.double().cpu(), ys.double().cpu()
                if need_moments:
                    moments[p.name].update(xs.numpy(), ys.numpy())
                if need_samples:
                    acts.setdefault(f"{p.name}/a", []).append(xs.numpy())
                    acts.setdefault(f"{p.name}/b", []).append(ys.numpy())
                if need_maps:
                    acts.setdefault(f"{p.name}/map_a", []).append(ya.double().cpu().numpy())
                    acts.setdefault(f"{p.name}/map_b", []).append(yb.double().cpu().numpy())
            for p in wpairs if wants_weights else []:
                xs = channel_samples(ia.values[p.a.name], positions, seed, i).double().cpu()
                ys = channel_samples(ib.values[p.b.name], positions, seed, i).double().cpu()
                inputs[p.name].update(xs.numpy(), ys.numpy())
    cat = {k: np.concatenate(v) for k, v in acts.items()}

    rows = []
    base = {"model_a": names[0], "model_b": names[1], "tap": tap}
    for p in pairs:
        info = {
            **base,
            "layer_a": p.a.name,
            "layer_b": p.b.name,
            "init_variance_a": p.a.init_variance,
            "init_variance_b": p.b.init_variance,
            "init_source_a": src_a[p.a.name],
            "init_source_b": src_b[p.b.name],
        }
        for label, m in mets:
            if m.consumes is Consumes.WEIGHTS:
                for aname, aparams, _ in aligns:
                    fn = partial(_weights, m, p, net_a, net_b, inputs, aname, aparams)
                    align = {"alignment": aname, "alignment_params": params_json(aparams)}
                    rows.append({**info, "features": None, **align, **_row(label, m, fn)})
                continue
            if layer_matrix:
                feats = "flattened" if features == "flat" else "pooled"
                if m.input_ndim == 4:
                    X, Y = cat[f"a/map/{p.a.name}"], cat[f"b/map/{p.b.name}"]
                    fn = partial(_evaluate_on_grid, m, X, Y)
                else:
                    fn = partial(m.evaluate, cat[f"a/{p.a.name}"], cat[f"b/{p.b.name}"])
            else:
                feats = "maps" if m.input_ndim == 4 else "positions"
                if m.input_ndim == 4:
                    fn = partial(m.evaluate, cat[f"{p.name}/map_a"], cat[f"{p.name}/map_b"])
                elif m.streaming:
                    fn = partial(m.evaluate, moments[p.name])
                else:
                    fn = partial(m.evaluate, cat[f"{p.name}/a"], cat[f"{p.name}/b"])
            unaligned = {"alignment": None, "alignment_params": None}
            rows.append({**info, "features": feats, **unaligned, **_row(label, m, fn)})
    cols = [
        "model_a", "model_b", "layer_a", "layer_b", "features", "alignment", "alignment_params",
        "metric", "metric_params", "value", "stderr",
        "higher_is_better", "consumes", "error", "tap", "init_variance_a", "init_variance_b",
        "init_source_a", "init_source_b", "details",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def _evaluate_on_grid(metric: Any, X: np.ndarray, Y: np.ndarray) -> Any:
    return metric.evaluate(*to_common_grid(X, Y))


def _row(label: tuple[str, str | None], metric: Any, fn: Any) -> dict[str, Any]:
    """``label``: the metric's (name, params JSON) (schema 3 of the results table)."""
    try:
        score = fn()
        if not isinstance(score, Score):
            score = Score(float(score))
        value, err = float(score.value), None
        stderr = float("nan") if score.stderr is None else float(score.stderr)
        details = {k: v for k, v in (score.details or {}).items() if np.isscalar(v)}
        if not np.isfinite(value):
            err = "the metric returned a non-finite value"
    except ValueError as exc:  # a documented failure of this cell (e.g. sizes, rank)
        value, stderr, err, details = float("nan"), float("nan"), str(exc), {}
    return {
        "metric": label[0],
        "metric_params": label[1],
        "value": value,
        "stderr": stderr,
        "higher_is_better": bool(metric.higher_is_better),
        "consumes": metric.consumes.value,
        "error": err,
        "details": details,
    }


def _weights(metric, pair, net_a, net_b, inputs, aname, aparams) -> Score:
    """B's weights pulled back into A's input basis by the alignment fitted on the layers'
    input moments; covariances with each layer's init variance (as the runner)."""
    from simbench.numerics.covariance import WeightCovariance

    if pair.name not in inputs:
        raise ValueError(f"layer {pair.a.name!r} or {pair.b.name!r} has no weight to compare")
    T = default_registry().create("alignment", aname, **aparams).fit(inputs[pair.name]).T
    WA = pair.a.weight(net_a).double().cpu().numpy()
    WB = pair.b.weight(net_b).double().cpu().numpy()
    if WB.shape[1] != T.shape[1] or WA.shape[1] != T.shape[0]:
        raise ValueError(
            f"T is {T.shape} but the weights have {WA.shape[1]} and {WB.shape[1]} input channels"
        )
    WB_A = np.einsum("oi...,ji->oj...", WB, T)
    shrinkage = getattr(metric, "shrinkage", None)
    if isinstance(shrinkage, str) and getattr(metric, "init_var", "unset") is None:
        ca = WeightCovariance.from_weight(WA, init_var=pair.a.init_variance, shrinkage=shrinkage)
        cb = WeightCovariance.from_weight(WB_A, init_var=pair.b.init_variance, shrinkage=shrinkage)
        return metric.evaluate(ca, cb)
    return metric.evaluate(WA, WB_A)
