"""Comparing two trained models layer by layer: aligned weights and representations.

For every pair of comparable layers (MATH.md "Pulling weights back", GM section 3):

1. stream the probe set through both models, accumulating the paired moments of each
   layer's *input* representation (for the alignment) and *output* representation
   (for representation metrics) — memory independent of the probe size;
2. fit the alignment on the input moments: ``Y ≈ X T``;
3. pull B's weights back into A's input basis, ``W_B Tᵀ`` (taps handled);
4. normalised covariances with each layer's real init variance, shrinkage, Bures
   cosine, normalised ``S`` with error bars, effective ranks, eigenvector overlaps.

Also: the spatial eigenfilters of any conv model (GM Fig. 1) and the accuracy of a
model whose weights are projected onto their top-``r`` covariance eigenvectors (GM
Fig. 2, bottom right).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

import simbench
from simbench.extract import LayerPair, image_batches, pair_layers, stream_moments_at
from simbench.metrics.base import Consumes
from simbench.models.base import Architecture
from simbench.numerics.covariance import (
    WeightCovariance,
    eigenvector_similarity,
    spatial_eigenfilters,
)
from simbench.numerics.moments import Moments
from simbench.registry import default_registry


@dataclass
class LayerComparison:
    """Everything measured on one layer pair."""

    layer: str
    alignment: str
    T: np.ndarray
    cov_a: WeightCovariance
    cov_b: WeightCovariance
    scores: dict[str, simbench.Score] = field(default_factory=dict)
    eigenvectors: Any = None  # EigenvectorSimilarity | None

    def row(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "layer": self.layer,
            "alignment": self.alignment,
            "d_in": self.cov_a.d_in,
            "r_eff_a": _safe(lambda: self.cov_a.effective_rank),
            "r_eff_b": _safe(lambda: self.cov_b.effective_rank),
        }
        for name, score in self.scores.items():
            out[name] = score.value
            if score.stderr is not None:
                out[f"{name}_stderr"] = score.stderr
        return out


def _safe(f) -> float:
    try:
        return float(f())
    except ValueError:
        return float("nan")


def paired_probe_batches(
    images: np.ndarray,
    norm_a: dict[str, Sequence[float]],
    norm_b: dict[str, Sequence[float]],
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """The same uint8 images normalised for each model (its own training statistics) and,
    where its ``normalization`` has an ``input_size`` (foreign weights), resized and
    center-cropped to it (:func:`simbench.data.resize.resize_center_crop`)."""
    from simbench.data.resize import resize_center_crop

    def prep(norm: dict[str, Any]) -> Iterable[torch.Tensor]:
        size, crop = norm.get("input_size"), float(norm.get("crop_pct", 1.0))
        for x in image_batches(images, norm["mean"], norm["std"], batch_size, device):
            yield resize_center_crop(x, size, crop)

    return zip(prep(norm_a), prep(norm_b), strict=True)


def weight_covariances(
    pair: LayerPair,
    model_a: nn.Module,
    model_b: nn.Module,
    T: np.ndarray,
    shrinkage: str = "gm",
) -> tuple[WeightCovariance, WeightCovariance]:
    """A's covariance and B's, B's weights pulled back into A's basis: ``W_B Tᵀ``."""
    WA = pair.a.weight(model_a).double().cpu().numpy()
    WB = pair.b.weight(model_b).double().cpu().numpy()
    if WB.shape[1] != T.shape[1] or WA.shape[1] != T.shape[0]:
        raise ValueError(
            f"layer {pair.name}: T is {T.shape} but the weights have {WA.shape[1]} and "
            f"{WB.shape[1]} input channels"
        )
    WB_A = np.einsum("oi...,ji->oj...", WB, T)  # contract B's input channels with Tᵀ
    cov_a = WeightCovariance.from_weight(WA, init_var=pair.a.init_variance, shrinkage=shrinkage)
    cov_b = WeightCovariance.from_weight(WB_A, init_var=pair.b.init_variance, shrinkage=shrinkage)
    return cov_a, cov_b


def compare_models(
    model_a: nn.Module,
    arch_a: Architecture,
    model_b: nn.Module,
    arch_b: Architecture,
    batches: Iterable[torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
    *,
    alignment: str = "procrustes",
    metrics: Sequence[str] = ("bures", "bures_cosine", "cka", "svcca"),
    layers: Sequence[str] | None = None,
    shrinkage: str = "gm",
    eigen_k: int | None = None,
    positions: int | None = 16,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[LayerComparison]]:
    """Per-layer comparison table of two models on the probe ``batches``.

    Weight metrics (``consumes == weights``) score A's covariance against B's aligned
    covariance; representation metrics must stream (they score the layers' output
    moments). Returns the table (one row per layer) and the detailed comparisons.
    """
    ms = {name: _metric(name, shrinkage) for name in metrics}
    for name, m in ms.items():
        if m.consumes is Consumes.REPRESENTATIONS and not m.streaming:
            raise ValueError(
                f"metric {name!r} needs whole activation matrices; compare streams moments "
                "only (use simbench.extract.collect_activations for it)"
            )
    pairs = [
        p
        for p in pair_layers(arch_a.layers(model_a), arch_b.layers(model_b), layers)
        if not (p.a.frozen or p.b.frozen)
    ]
    fourth = any(getattr(m, "streaming_fourth", False) for m in ms.values())
    moments = stream_moments_at(
        model_a, model_b, pairs, batches, positions=positions, seed=seed, fourth=fourth
    )
    out: list[LayerComparison] = []
    for pair in pairs:
        T = simbench.get_alignment(alignment).fit(moments["input"][pair.name]).T
        cov_a, cov_b = weight_covariances(pair, model_a, model_b, T, shrinkage)
        comp = LayerComparison(pair.name, alignment, T, cov_a, cov_b)
        for name, m in ms.items():
            comp.scores[name] = _score(m, cov_a, cov_b, moments["output"][pair.name])
        if cov_a.rank and cov_b.rank:
            k = min(eigen_k or cov_a.rank, cov_a.rank, cov_b.rank)
            comp.eigenvectors = eigenvector_similarity(cov_a, cov_b, k)
        out.append(comp)
    return pd.DataFrame([c.row() for c in out]), out


def _metric(name: str, shrinkage: str) -> simbench.Metric:
    cls = default_registry().get("metric", name).obj
    if cls.consumes is Consumes.WEIGHTS and "shrinkage" in cls.param_defaults():
        return simbench.get_metric(name, shrinkage=shrinkage)  # the covariances' shrinkage
    return simbench.get_metric(name)


def _score(metric, cov_a, cov_b, moments: Moments) -> simbench.Score:
    try:
        if metric.consumes is Consumes.WEIGHTS:
            return metric.evaluate(cov_a, cov_b)
        return metric.evaluate(moments)
    except ValueError as exc:  # e.g. nothing left after shrinkage: a documented NaN
        return simbench.Score(float("nan"), details={"error": str(exc)})


def spatial_eigenvectors(model: nn.Module, arch: Architecture) -> dict[str, tuple]:
    """GM Fig. 1: ``{layer: (eigenvalues, eigenfilters (k², k, k))}`` for spatial convs."""
    out = {}
    for spec in arch.layers(model):
        w = spec.weight(model)
        if w.ndim == 4 and w.shape[-1] > 1 and w.shape[-2] > 1:
            out[spec.name] = spatial_eigenfilters(w.double().cpu().numpy())
    return out


@torch.no_grad()
def rank_projection_accuracy(
    model: nn.Module,
    arch: Architecture,
    images: np.ndarray,
    labels: np.ndarray,
    normalization: dict[str, Sequence[float]],
    ranks: Sequence[int],
    batch_size: int = 500,
) -> pd.DataFrame:
    """GM Fig. 2 (bottom right): test accuracy when every comparable layer's weight is
    projected onto the top-``r`` eigenvectors of its covariance ``WᵀW`` (``W ← W V_r V_rᵀ``,
    ``r`` capped at each layer's input dimension). Batch-norm statistics are kept."""
    specs = [s for s in arch.layers(model) if not s.frozen]
    modules = {s.name: model.get_submodule(s.weight_module) for s in specs}
    originals = {name: m.weight.detach().clone() for name, m in modules.items()}
    # a weight flattened to (n_out, d_in) in memory order equals its LayerSpec view flattened
    flat = {name: w.double().reshape(w.shape[0], -1) for name, w in originals.items()}
    # right singular vectors = eigenvectors of WᵀW, by decreasing eigenvalue
    bases = {name: torch.linalg.svd(w, full_matrices=False)[2] for name, w in flat.items()}
    device = next(model.parameters()).device
    rows = []
    try:
        for r in ranks:
            if r < 1:
                raise ValueError(f"ranks must be >= 1; got {r}")
            for name, module in modules.items():
                V = bases[name][:r]
                proj = (flat[name] @ V.T) @ V
                module.weight.copy_(proj.reshape(module.weight.shape).to(module.weight.dtype))
            correct = 0
            batches = image_batches(
                images, normalization["mean"], normalization["std"], batch_size, device
            )
            for i, x in enumerate(batches):
                y = torch.from_numpy(labels[i * batch_size : (i + 1) * batch_size]).to(device)
                correct += int((model.eval()(x).argmax(1) == y).sum())
            rows.append({"rank": int(r), "accuracy": correct / len(labels)})
    finally:
        for name, module in modules.items():
            module.weight.copy_(originals[name])
    return pd.DataFrame(rows)


class _CallableModule(types.ModuleType):
    """``simbench.compare`` is this module (``import simbench.compare`` rebinds the package
    attribute to it) and, called, :func:`simbench.compare_any.compare`."""

    def __call__(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        from simbench.compare_any import compare

        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
