"""Ground-truth tests (the ``test`` plugin kind) and the boards they score (MATH.md).

- :mod:`simbench.groundtruth.base`: :class:`GroundTruthTest`, :class:`UnitScores`, the
  bootstrap;
- :mod:`simbench.groundtruth.context`: :class:`TestContext` (results, models, per-model data);
- :mod:`simbench.groundtruth.from_results`, :mod:`simbench.groundtruth.from_models`: the
  built-in tests;
- :mod:`simbench.groundtruth.board`: boards, overall score, ranks, ties.
"""

from simbench.groundtruth.base import GroundTruthTest, Row, TestUnavailable, UnitScores
from simbench.groundtruth.board import Boards, plan_tests, score_boards
from simbench.groundtruth.context import ModelInfo, TestContext

__all__ = [
    "Boards",
    "GroundTruthTest",
    "ModelInfo",
    "Row",
    "TestContext",
    "TestUnavailable",
    "UnitScores",
    "plan_tests",
    "score_boards",
]
