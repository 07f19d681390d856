"""Standard error, interval and chance level of any score (MATH.md: Uncertainty and chance
of one score).

- **Standard error**: the leave-one-block-out jackknife over ``B`` contiguous blocks of
  probe images, ``se² = (B−1)/B · Σ_b (θ_(−b) − θ̄_(−·))²``, combined with the metric's
  own Monte-Carlo error (``se² = se_jack² + se_MC²``); the 95 % interval is
  ``θ ± 1.96 se``. ``method="bootstrap"``: ``resamples`` seeded resamples of blocks with
  replacement, ``se_probe`` their standard deviation, the interval their percentile
  interval (the Monte-Carlo error enters ``stderr`` only).
- **Chance level**: ``θ`` on ``R`` seeded derangements of the probe images (B's image
  ``k`` paired with A's image ``π(k)``, positions kept), ``null_mean``, ``null_sd``
  (``ddof=1``) and ``z = (θ − null_mean)/sqrt(null_sd² + se²)``. ``z`` is not oriented:
  it is negative for a distance (``higher_is_better=False``) below its chance level.
  Weight metrics report their own zero point instead (:meth:`Metric.chance_level`).

Any metric gets this with no code of its own: a streaming metric is re-scored on the
leave-one-out merges of :class:`~simbench.numerics.blocks.BlockMoments` (no data pass),
any other metric on the arrays with a block's rows removed (or re-paired, for the null).
A metric may override the jackknife with :meth:`Metric.analytic_stderr`. A failure of a
leave-one-out or null evaluation (``ValueError``) leaves that part NaN and its message in
``details["uncertainty_error"]``; the value itself is unaffected.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from simbench.numerics.blocks import (
    BlockMoments,
    _units,
    block_edges,
    null_permutation,
    rows_of,
)
from simbench.numerics.moments import Moments
from simbench.plugin import Score

__all__ = [
    "Uncertainty",
    "as_uncertainty",
    "evaluate_with_uncertainty",
    "jackknife_se",
    "score_block_moments",
    "summarize",
]


@dataclass(frozen=True)
class Uncertainty:
    """How a score's uncertainty and chance level are estimated (suite ``probe.blocks``,
    ``probe.null_pairings``; ``positions``: consecutive rows per probe image; ``chunk``:
    derangements are drawn within consecutive chunks of this many images — the runner
    uses ``probe.batch_size``, ``None`` one chunk)."""

    blocks: int = 20
    null_pairings: int = 4
    seed: int = 0
    method: Literal["jackknife", "bootstrap"] = "jackknife"
    resamples: int = 1000
    positions: int = 1
    chunk: int | None = None
    level: float = 0.95

    def __post_init__(self) -> None:
        def whole(name: str, lo: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
                raise ValueError(f"uncertainty {name} must be an integer >= {lo}; got {v!r}")

        whole("blocks", 2)
        whole("null_pairings", 0)
        whole("seed", 0)
        whole("resamples", 2)
        whole("positions", 1)
        if self.null_pairings == 1:
            raise ValueError("null_pairings must be 0 (no null) or >= 2 (for null_sd); got 1")
        if self.chunk is not None:
            whole("chunk", 1)
        if self.method not in ("jackknife", "bootstrap"):
            raise ValueError(f"method must be 'jackknife' or 'bootstrap'; got {self.method!r}")
        if self.method == "bootstrap" and self.resamples < 1000:
            raise ValueError(f"the block bootstrap needs >= 1000 resamples; got {self.resamples}")
        if not 0.0 < float(self.level) < 1.0:
            raise ValueError(f"level must be in (0, 1); got {self.level!r}")


def as_uncertainty(u: Any) -> Uncertainty:
    """``True`` → defaults; a dict → its fields; an :class:`Uncertainty` as is."""
    if u is True:
        return Uncertainty()
    if isinstance(u, Uncertainty):
        return u
    if isinstance(u, Mapping):
        unknown = set(u) - {f.name for f in dataclasses.fields(Uncertainty)}
        if unknown:
            raise ValueError(f"unknown uncertainty option(s) {sorted(unknown)}")
        return Uncertainty(**u)
    raise TypeError(f"uncertainty must be True, a dict or an Uncertainty; got {u!r}")


def jackknife_se(values: np.ndarray) -> float:
    """``sqrt((B−1)/B · Σ (θ_b − mean θ)²)`` over the ``B`` leave-one-out values."""
    v = np.asarray(values, dtype=np.float64)
    B = v.size
    return float(math.sqrt((B - 1) / B * float(np.sum((v - v.mean()) ** 2))))


def summarize(
    full: Score,
    cfg: Uncertainty,
    *,
    loo: np.ndarray | None = None,
    boot: np.ndarray | None = None,
    nulls: np.ndarray | None = None,
    analytic: float | None = None,
    chance: tuple[float, float] | None = None,
    errors: Iterable[str] = (),
) -> Score:
    """The :class:`Score` ``full`` with ``stderr``, ``ci``, ``null_*`` and ``z`` filled.

    ``loo``: leave-one-block-out values; ``boot``: block-bootstrap values; ``nulls``: the
    derangement values; ``analytic``: a metric's own standard error (replaces the
    resampling one); ``chance``: a metric's own ``(null_mean, null_sd)``.
    """
    v = float(full.value)
    se_mc = float(full.stderr) if full.stderr is not None else 0.0
    nan = float("nan")
    q = statistics.NormalDist().inv_cdf(0.5 + cfg.level / 2)  # 1.96 at 95 %
    if analytic is not None:
        how, se_probe = "analytic", float(analytic)
    elif cfg.method == "bootstrap":
        how = "bootstrap"
        se_probe = float(np.std(boot, ddof=1)) if boot is not None else nan
    else:
        how = "jackknife"
        se_probe = jackknife_se(loo) if loo is not None else nan
    se = math.sqrt(se_probe**2 + se_mc**2)
    if how == "bootstrap" and boot is not None:
        lo, hi = np.percentile(boot, [50 * (1 - cfg.level), 50 * (1 + cfg.level)])
        ci = (float(lo), float(hi))
    else:
        ci = (v - q * se, v + q * se)
    if chance is not None:
        null_mean, null_sd = (float(c) for c in chance)
    elif nulls is not None and len(nulls) >= 2:
        null_mean, null_sd = float(np.mean(nulls)), float(np.std(nulls, ddof=1))
    else:
        null_mean = null_sd = nan
    den = math.sqrt(null_sd**2 + se**2)
    if den > 0:
        z = (v - null_mean) / den
    elif math.isfinite(null_mean):
        z = 0.0 if v == null_mean else math.copysign(math.inf, v - null_mean)
    else:
        z = nan
    details = dict(full.details or {})
    details.update(
        uncertainty=how,
        se_probe=se_probe,
        se_mc=se_mc,
        blocks=cfg.blocks,
        null_pairings=0 if chance is not None else cfg.null_pairings,
    )
    if nulls is not None and len(nulls):
        details["null_values"] = [float(x) for x in nulls]
    errs = list(dict.fromkeys(errors))
    if errs:
        details["uncertainty_error"] = "; ".join(errs)
    return dataclasses.replace(
        full, stderr=se, ci=ci, null_mean=null_mean, null_sd=null_sd, z=z, details=details
    )


def _values(fn: Callable[[Any], Any], items: Iterable[Any], errors: list[str]) -> np.ndarray:
    """``fn(item).value`` for every item; a ``ValueError`` gives NaN and records its text."""
    out = []
    for it in items:
        try:
            out.append(float(fn(it).value))
        except ValueError as exc:
            errors.append(str(exc))
            out.append(float("nan"))
    return np.asarray(out)


def _finite_or_none(a: np.ndarray) -> np.ndarray | None:
    return a if a.size and np.isfinite(a).all() else None


def score_block_moments(
    metric: Any, bm: BlockMoments, cfg: Uncertainty, full: Score | None = None
) -> Score:
    """Value, jackknife (or bootstrap) and null of a streaming metric from block moments."""
    if not metric.streaming:
        raise TypeError(f"metric {metric.name!r} needs the full matrices; it does not stream")
    if full is None:
        full = metric.evaluate(bm.total())
    errors: list[str] = []
    loo = boot = None
    if cfg.method == "jackknife":
        pairs = sorted(bm.leave_one_out(), key=lambda t: t[0])
        loo = _values(metric.evaluate, (m for _, m in pairs), errors)
    else:
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x626F6F74]))
        idx = (rng.integers(0, bm.n_blocks, bm.n_blocks) for _ in range(cfg.resamples))
        boot = _values(metric.evaluate, (bm.resample(i) for i in idx), errors)
    R = len(bm.nulls) if cfg.null_pairings else 0  # the nulls accumulated; 0 disables
    nulls = _values(metric.evaluate, (bm.null(r) for r in range(R)), errors)
    return summarize(
        full,
        cfg,
        loo=None if loo is None else _finite_or_none(loo),
        boot=None if boot is None else _finite_or_none(boot),
        nulls=_finite_or_none(nulls),
        errors=errors,
    )


def _score_arrays(metric: Any, X: np.ndarray, Y: np.ndarray, cfg: Uncertainty, full: Score):
    """Generic path: re-evaluate on the arrays without a block / re-paired (axis 0)."""
    n_rows, P = X.shape[0], cfg.positions
    units = _units(n_rows, P)
    edges = block_edges(units, cfg.blocks) * P
    errors: list[str] = []
    loo = boot = None
    if cfg.method == "jackknife":
        keeps = (np.r_[0 : edges[b], edges[b + 1] : n_rows] for b in range(cfg.blocks))
        loo = _values(lambda k: metric.evaluate(X[k], Y[k]), keeps, errors)
    else:
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x626F6F74]))
        sel = (rng.integers(0, cfg.blocks, cfg.blocks) for _ in range(cfg.resamples))
        rows = (np.concatenate([np.arange(edges[b], edges[b + 1]) for b in s]) for s in sel)
        boot = _values(lambda k: metric.evaluate(X[k], Y[k]), rows, errors)
    perms = (
        rows_of(null_permutation(units, cfg.seed, r, cfg.chunk), P)
        for r in range(cfg.null_pairings)
    )
    nulls = _values(lambda k: metric.evaluate(X[k], Y), perms, errors)
    return summarize(
        full,
        cfg,
        loo=None if loo is None else _finite_or_none(loo),
        boot=None if boot is None else _finite_or_none(boot),
        nulls=_finite_or_none(nulls),
        errors=errors,
    )


def evaluate_with_uncertainty(
    metric: Any, X: Any, Y: Any, uncertainty: Any = True, *, full: Score | None = None
) -> Score:
    """``metric.evaluate(X, Y, uncertainty=...)``: see the module docstring.

    ``full``: the value already computed (e.g. by ``metric.score_prepared``, equal to
    ``metric.evaluate(X, Y)`` to 1e-12) for array inputs; it is not recomputed.

    ``X, Y``: arrays (rows image-major, ``positions`` rows per image), or ``X`` a
    :class:`BlockMoments` (streaming metrics), or two weights (weight metrics: the probe
    does not enter, so the standard error is the Monte-Carlo one and the chance level
    the metric's own zero point).
    """
    from simbench.metrics.base import Consumes

    cfg = as_uncertainty(uncertainty)
    if metric.consumes is Consumes.WEIGHTS:
        full = metric.evaluate(X, Y)
        analytic = metric.analytic_stderr(X, Y)
        return summarize(
            full,
            cfg,
            loo=np.zeros(cfg.blocks),
            analytic=analytic,
            chance=metric.chance_level(X, Y, full),
        )
    if isinstance(X, BlockMoments):
        if Y is not None:
            raise TypeError("pass BlockMoments alone: metric.evaluate(blocks, uncertainty=True)")
        analytic = metric.analytic_stderr(X, None)
        out = score_block_moments(metric, X, cfg)
        return out if analytic is None else _with_analytic(out, cfg, analytic)
    if isinstance(X, Moments):
        raise ValueError(
            "one Moments accumulator has no blocks to leave out: accumulate "
            "simbench.BlockMoments (or pass the arrays) for uncertainty=True"
        )
    if Y is None:
        raise TypeError(f"{metric.name} needs two arguments: metric(X, Y)")
    Xa, Ya = metric.validate(X, Y)
    if full is None:
        full = metric.evaluate(Xa, Ya)
    analytic = metric.analytic_stderr(X, Y)
    # Block moments hold (blocks + null pairings) (d_x + d_y)² floats: with more features
    # than rows (flattened conv maps) re-scoring row subsets is cheaper in memory and time.
    if metric.streaming and Xa.ndim == 2 and Xa.shape[1] + Ya.shape[1] <= Xa.shape[0]:
        bm = BlockMoments.from_data(
            Xa,
            Ya,
            positions=cfg.positions,
            blocks=cfg.blocks,
            null_pairings=cfg.null_pairings,
            seed=cfg.seed,
            chunk=cfg.chunk,
            fourth=bool(getattr(metric, "streaming_fourth", False)),
        )
        out = score_block_moments(metric, bm, cfg, full)
    else:
        out = _score_arrays(metric, Xa, Ya, cfg, full)
    return out if analytic is None else _with_analytic(out, cfg, analytic)


def _with_analytic(out: Score, cfg: Uncertainty, analytic: float) -> Score:
    base = dataclasses.replace(out, stderr=out.details.get("se_mc") or None)
    nulls = out.details.get("null_values")
    return summarize(
        base, cfg, analytic=analytic, nulls=None if nulls is None else np.asarray(nulls)
    )
