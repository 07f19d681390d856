"""The ``test`` plugin kind: a ground-truth test that scores every metric of a board.

MATH.md "Ground-truth tests a metric is scored on". A test is one class (a subclass of
:class:`GroundTruthTest` with a ``name``) registered through the hook
``simbench_register_tests``, like a metric. It declares:

- ``boards``: the boards it applies to (``representations``, ``weights``, or both);
- ``unit``: its resampling unit (``seed pairs``, ``layers``, ``models``, ...);
- ``needs``: one line saying which relations, model families or per-model data it reads;
- ``missing(ctx)``: why a suite lacks its inputs (``None`` when it has them), used for the
  default test selection and ``simbench run --dry-run``;
- ``score(ctx, row)``: the row's :class:`UnitScores`: its units and the score as a
  function of how often each unit is drawn, so that the bootstrap (one per test, and one
  joint for the overall score) resamples units without knowing what the test computes.
  A row the test cannot score raises :class:`TestUnavailable` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from simbench.plugin import Plugin

if TYPE_CHECKING:
    from simbench.groundtruth.context import TestContext

#: the boards (one per metric kind; MATH.md "Boards and ranking")
BOARDS = ("representations", "weights")
#: MATH.md: "≥ 1000 seeded resamples"
RESAMPLES = 1000


class TestUnavailable(Exception):
    """A test cannot score one row; the message is the reason shown on the board."""

    __test__ = False  # not a pytest class


@dataclass(frozen=True)
class Row:
    """One row of a board: a metric (plugin name and parameters) under one alignment."""

    board: str
    metric: str
    metric_params: str | None  # canonical JSON (sorted keys) or None
    alignment: str | None  # None for representation metrics (they are not aligned)
    label: str  # display label: metric + params
    higher_is_better: bool

    @property
    def sign(self) -> float:
        """+1 when higher values mean more similar, else -1 (MATH.md "Similarity")."""
        return 1.0 if self.higher_is_better else -1.0


Fn = Callable[[np.ndarray], np.ndarray]


@dataclass
class UnitScores:
    """A test's result for one row: its units and ``fn(counts) -> scores``.

    ``counts`` is an ``(R, n_units)`` integer array (how often each unit is drawn in each
    of ``R`` resamples; all ones is the data as observed); ``fn`` returns ``(R,)`` scores
    in [0, 1] (NaN when a resample leaves nothing to score). ``detail`` holds what the
    board shows beside the score (features used, counts, ...).
    """

    unit: str
    units: list[str]
    fn: Fn
    detail: dict[str, Any] = field(default_factory=dict)

    def point(self) -> float:
        """The score on the data as observed (every unit once)."""
        return float(self.fn(np.ones((1, len(self.units)), dtype=np.int64))[0])

    @classmethod
    def rate(cls, unit: str, units: list[str], num: Any, den: Any, **detail: Any) -> UnitScores:
        """Score = Σ counts·num / Σ counts·den (a conformity rate pooled over units)."""
        num_a, den_a = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
        if len(units) == 0 or num_a.shape != (len(units),) or den_a.shape != num_a.shape:
            raise TestUnavailable("no unit to score")

        def fn(counts: np.ndarray) -> np.ndarray:
            c = np.asarray(counts, dtype=float)
            d = c @ den_a
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(d > 0, (c @ num_a) / np.where(d > 0, d, 1.0), np.nan)

        return cls(unit, list(units), fn, dict(detail))

    @classmethod
    def mean(cls, unit: str, units: list[str], values: Any, **detail: Any) -> UnitScores:
        """Score = the mean of per-unit scores."""
        v = np.asarray(values, dtype=float)
        return cls.rate(unit, units, v, np.ones_like(v), **detail)


def draw_counts(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """``(resamples, n)`` counts of ``n`` units drawn ``n`` times with replacement."""
    if n == 0:
        return np.zeros((resamples, 0), dtype=np.int64)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of the finite bootstrap ``samples`` (NaN if none)."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(s, [a, 1.0 - a])
    return float(lo), float(hi)


def bootstrap(us: UnitScores, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of one test's score (units resampled, seeded)."""
    if resamples < 1000:
        raise ValueError(f"MATH.md asks for at least 1000 resamples; got {resamples}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xB007]))
    return percentile_ci(us.fn(draw_counts(rng, len(us.units), resamples)))


class GroundTruthTest(Plugin):
    """Base of the ground-truth tests (the ``test`` plugin kind; module docstring)."""

    __test__ = False  # not a pytest class
    kind: ClassVar[str] = "test"
    boards: ClassVar[frozenset[str]] = frozenset(BOARDS)
    unit: ClassVar[str] = ""
    needs: ClassVar[str] = ""

    def missing(self, ctx: TestContext) -> str | None:
        """Why the suite lacks this test's inputs, or ``None`` when it can run."""
        return None

    def score(self, ctx: TestContext, row: Row) -> UnitScores:
        """The row's units and score function; raise :class:`TestUnavailable` if it cannot."""
        raise NotImplementedError
