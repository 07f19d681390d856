"""Extraction: per-layer representations of a probe set, streamed through forward hooks.

For moment-based metrics and alignments, :func:`stream_moments` accumulates, batch by
batch, the float64 :class:`~simbench.numerics.moments.Moments` of paired layers of two
networks, so peak memory does not grow with the number of probe images. Where a metric
needs the matrices themselves, :func:`collect_activations` returns them.

MATH.md conventions: conv activations ``(B, C, H, W)`` become ``(B·H·W, C)`` (every
spatial position a sample). ``positions`` bounds the positions taken per image; they
are drawn deterministically from ``(seed, batch index, H, W)`` — so two networks whose
paired layers share a spatial size read the same positions of the same images.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from simbench.models.base import LayerSpec
from simbench.numerics.moments import Moments

Where = Literal["input", "output"]


def probe_indices(n_available: int, n: int | None, seed: int) -> np.ndarray:
    """``n`` distinct indices of ``range(n_available)`` drawn with ``seed`` (sorted)."""
    if n is None or n >= n_available:
        return np.arange(n_available)
    if n < 1:
        raise ValueError(f"the probe set needs at least one image; got n={n}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_available, size=n, replace=False))


def image_batches(
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> Iterator[torch.Tensor]:
    """Normalised float32 NCHW batches from uint8 NHWC ``images`` (one batch in memory).

    ``mean``/``std`` are the per-channel statistics the model was trained with (its
    checkpoint's ``normalization``), as in :func:`simbench.train.augment.normalize`.
    """
    from simbench.train.augment import normalize

    m = torch.tensor(mean, dtype=torch.float32, device=device)
    s = torch.tensor(std, dtype=torch.float32, device=device)
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
        yield normalize(x.to(device).permute(0, 3, 1, 2), m, s)


class LayerTaps(contextlib.AbstractContextManager):
    """Forward hooks recording the input or output representation of each layer.

    ``on_value(name, tensor)``: called from the hook instead of recording the tensor in
    ``values``, so that the forward pass frees it as a plain forward does (holding every
    layer's output until the pass ends costs fresh memory, ~15% of a small CNN's CPU
    forward time)."""

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[LayerSpec],
        where: Where = "input",
        on_value: Callable[[str, torch.Tensor], None] | None = None,
    ):
        self.model, self.layers, self.where = model, list(layers), where
        self.on_value = on_value
        self.values: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> LayerTaps:
        for spec in self.layers:
            if self.where == "input":
                module = self.model.get_submodule(spec.input_module)
                hook = module.register_forward_pre_hook(self._pre(spec.name))
            else:
                module = self.model.get_submodule(spec.weight_module)
                hook = module.register_forward_hook(self._post(spec.name))
            self._handles.append(hook)
        return self

    def _take(self, name: str, value: torch.Tensor) -> None:
        if self.on_value is None:
            self.values[name] = value.detach()
        else:
            self.on_value(name, value.detach())

    def _pre(self, name: str):
        def hook(_module, args):
            self._take(name, args[0])

        return hook

    def _post(self, name: str):
        def hook(_module, _args, output):
            self._take(name, output)

        return hook

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def channel_samples(
    act: torch.Tensor, positions: int | None, seed: int, batch_index: int
) -> torch.Tensor:
    """``(B, C, H, W) -> (B·P, C)`` with ``P = min(positions, H·W)`` positions per image.

    The positions are drawn from a generator seeded by ``(seed, batch_index, H, W)``;
    ``positions=None`` keeps every position. 2-D activations are returned unchanged.
    """
    if act.ndim == 2:
        return act
    if act.ndim != 4:
        raise ValueError(f"expected (B, C) or (B, C, H, W) activations; got {tuple(act.shape)}")
    b, c, h, w = act.shape
    if positions is None or positions >= h * w:
        return act.permute(0, 2, 3, 1).reshape(b * h * w, c)
    idx = _positions(int(seed), int(batch_index), b, h, w, int(positions)).to(act.device)
    # gathered in (B, C, H·W) layout: only the picked positions are copied
    picked = torch.gather(act.reshape(b, c, h * w), 2, idx[:, None, :].expand(b, c, positions))
    return picked.permute(0, 2, 1).reshape(b * positions, c)


@functools.lru_cache(maxsize=64)
def _positions(seed: int, batch_index: int, b: int, h: int, w: int, positions: int) -> torch.Tensor:
    """The ``(b, positions)`` position indices of :func:`channel_samples` (memoised: every
    layer of the same spatial size, at both sites and in every model, reads the same)."""
    state = np.random.SeedSequence([seed, batch_index, h, w]).generate_state(1)[0]
    gen = torch.Generator().manual_seed(int(state))
    return torch.argsort(torch.rand(b, h * w, generator=gen), dim=1)[:, :positions]


@dataclass(frozen=True)
class LayerPair:
    """Two comparable layers, one of each network, compared on the same inputs."""

    a: LayerSpec
    b: LayerSpec

    @property
    def name(self) -> str:
        return self.a.name if self.a.name == self.b.name else f"{self.a.name}~{self.b.name}"


def pair_layers(
    layers_a: Sequence[LayerSpec], layers_b: Sequence[LayerSpec], names: Sequence[str] | None = None
) -> list[LayerPair]:
    """Pair layers by name (default: every name the two models share, in A's order)."""
    by_b = {spec.name: spec for spec in layers_b}
    wanted = [s.name for s in layers_a if s.name in by_b] if names is None else list(names)
    by_a = {spec.name: spec for spec in layers_a}
    missing = [n for n in wanted if n not in by_a or n not in by_b]
    if missing:
        raise ValueError(
            f"layer(s) {missing} are not in both models; shared layers: "
            f"{[s.name for s in layers_a if s.name in by_b]}"
        )
    if not wanted:
        raise ValueError("the two models share no comparable layer name")
    return [LayerPair(by_a[n], by_b[n]) for n in wanted]


@torch.no_grad()
def stream_moments(
    model_a: nn.Module,
    model_b: nn.Module,
    pairs: Sequence[LayerPair],
    batches: Iterable[torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
    *,
    where: Where = "input",
    positions: int | None = 16,
    seed: int = 0,
    fourth: bool = False,
) -> dict[str, Moments]:
    """Paired :class:`Moments` of every layer pair over the probe ``batches``.

    A batch is one tensor fed to both models, or a pair ``(x_a, x_b)`` of the same
    images preprocessed for each (models trained with different normalisations).
    Memory holds one batch of activations plus ``O(d²)`` statistics per pair, whatever
    the number of probe images (DESIGN.md: streaming statistics).
    """
    return stream_moments_at(
        model_a,
        model_b,
        pairs,
        batches,
        sites=(where,),
        positions=positions,
        seed=seed,
        fourth=fourth,
    )[where]


@torch.no_grad()
def stream_moments_at(
    model_a: nn.Module,
    model_b: nn.Module,
    pairs: Sequence[LayerPair],
    batches: Iterable[torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
    *,
    sites: Sequence[Where] = ("input", "output"),
    positions: int | None = 16,
    seed: int = 0,
    fourth: bool = False,
) -> dict[str, dict[str, Moments]]:
    """:func:`stream_moments` at several sites in one pass: ``{site: {layer: Moments}}``."""
    model_a.eval()
    model_b.eval()
    moments = {w: {p.name: Moments(fourth=fourth) for p in pairs} for w in sites}
    with contextlib.ExitStack() as stack:
        taps = {
            w: (
                stack.enter_context(LayerTaps(model_a, [p.a for p in pairs], w)),
                stack.enter_context(LayerTaps(model_b, [p.b for p in pairs], w)),
            )
            for w in sites
        }
        for i, batch in enumerate(batches):
            xa, xb = batch if isinstance(batch, tuple) else (batch, batch)
            model_a(xa)
            model_b(xb)
            for w, (taps_a, taps_b) in taps.items():
                for p in pairs:
                    sa, sb = paired_channel_samples(
                        taps_a.values[p.a.name],
                        taps_b.values[p.b.name],
                        positions,
                        seed,
                        i,
                        f"layers {p.a.name!r} and {p.b.name!r} at their {w}",
                    )
                    moments[w][p.name].update(sa.double(), sb.double())
    return moments


def require_same_grid(hw_a: Sequence[int], hw_b: Sequence[int], what: str) -> None:
    """``ValueError`` naming ``what`` when two layers' spatial sizes differ (paired channel
    samples need the same positions, :func:`channel_samples`)."""
    if tuple(hw_a) != tuple(hw_b):
        raise ValueError(
            f"{what}: spatial sizes {tuple(hw_a)} and {tuple(hw_b)} differ; "
            "paired samples need the same positions"
        )


def paired_channel_samples(
    ya: torch.Tensor,
    yb: torch.Tensor,
    positions: int | None,
    seed: int,
    batch_index: int,
    what: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`channel_samples` of two layers at the same positions; ``ValueError`` naming
    ``what`` (e.g. "layers 'a' and 'b' ... at their output") when their spatial sizes
    differ, since paired samples need the same positions."""
    require_same_grid(ya.shape[2:], yb.shape[2:], what)
    return (
        channel_samples(ya, positions, seed, batch_index),
        channel_samples(yb, positions, seed, batch_index),
    )


@torch.no_grad()
def collect_activations(
    model: nn.Module,
    layers: Sequence[LayerSpec],
    batches: Iterable[torch.Tensor],
    *,
    where: Where = "output",
    mode: Literal["channels", "flat"] = "channels",
    positions: int | None = 16,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Whole activation matrices (float64) for metrics that need more than moments.

    ``mode="channels"`` gives ``(B·P, C)`` (same positions as :func:`stream_moments`);
    ``mode="flat"`` gives ``(B, C·H·W)``, needed to compare layers of different sizes.
    """
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {s.name: [] for s in layers}
    with LayerTaps(model, layers, where) as taps:
        for i, x in enumerate(batches):
            model(x)
            for s in layers:
                act = taps.values[s.name]
                if mode == "flat":
                    out = act.reshape(act.shape[0], -1)
                else:
                    out = channel_samples(act, positions, seed, i)
                chunks[s.name].append(out.double().cpu().numpy())
    return {k: np.concatenate(v) for k, v in chunks.items()}
